"""File system ACLs of the simulated host: ``Initialize-Directory``, ``Grant-PathAccess``,
``Revoke-PathAccess``, and :func:`can_read` for tests.

Model (``host.state["acls"]``, keyed by the case-folded Windows path)::

    {"c:\\sites\\api": {"path": "C:\\sites\\api", "protected": false,
                         "owner": "S-1-5-32-544",
                         "entries": [{"principal", "sid", "type", "mask", "inheritance", "propagation"}]}}

Only EXPLICIT entries are stored, each with its SID (``pyinfra_iis.sddl.principal_sid``; local
users get stable made-up SIDs), so a rule for ``IIS AppPool\\x`` can be written before the pool
exists, as on Windows. ``Get-HostState`` reports each path the way the
PowerShell module does: the DACL as SDDL (explicit entries, then inherited ones with ``ID``) and a
map SID -> account name of the SIDs the host can translate (a pool identity only while its pool
exists). The owner is kept for ``Initialize-Directory``'s check (default Administrators, the owner
of what an administrator creates on Windows Server). Inherited entries are computed from the parent folder's
entries the way NTFS propagates them: an entry with ``ContainerInherit`` reaches sub-folders,
``ObjectInherit`` reaches files (and sub-folders as inherit-only), ``NoPropagateInherit`` stops
after one level, ``InheritOnly`` entries do not apply to the folder that holds them. A path
with ``protected: true`` does not inherit.

Fresh-host defaults (explicit, as ``icacls`` shows on Windows Server 2022): ``C:\\`` grants
Administrators and SYSTEM FullControl, Users ReadAndExecute (+ create folders / append), and
CREATOR OWNER; ``C:\\Windows`` and ``C:\\Windows\\System32\\inetsrv\\config`` are protected
(the latter admins and SYSTEM only, which is why a pool identity cannot read
applicationHost.config); IIS setup adds ``C:\\inetpub`` (protected) and IIS_IUSRS on
``C:\\inetpub\\wwwroot``.

Rights are .NET ``FileSystemRights``: input names are OR-ed, output is printed like .NET's
``Enum.ToString()`` of a flags enum ("ReadAndExecute, Synchronize"). As with
``FileSystemAccessRule``, an Allow rule always includes ``Synchronize``.

Known differences: the simulator's file system is case sensitive for files while ACL lookups
are not; CREATOR OWNER is not replaced by the creator on inheritance; no audit entries.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any, Iterable

from ... import sddl
from ..host import SimPathError
from ..iis.store import load_config, pool_names
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

# .NET System.Security.AccessControl.FileSystemRights (name, value); aliases last.
RIGHTS: tuple[tuple[str, int], ...] = (
    ("ReadData", 1), ("WriteData", 2), ("AppendData", 4), ("ReadExtendedAttributes", 8),
    ("WriteExtendedAttributes", 16), ("ExecuteFile", 32), ("DeleteSubdirectoriesAndFiles", 64),
    ("ReadAttributes", 128), ("WriteAttributes", 256), ("Write", 278), ("Delete", 65536),
    ("ReadPermissions", 131072), ("Read", 131209), ("ReadAndExecute", 131241), ("Modify", 197055),
    ("ChangePermissions", 262144), ("TakeOwnership", 524288), ("Synchronize", 1048576),
    ("FullControl", 2032127),
)
_ALIASES = {"ListDirectory": 1, "CreateFiles": 2, "CreateDirectories": 4, "Traverse": 32}
_RIGHTS_BY_NAME = {name.casefold(): value for name, value in (*RIGHTS, *_ALIASES.items())}
SYNCHRONIZE = 1048576
GENERIC_ALL = 268435456  # how CREATOR OWNER's inherit-only entry shows its rights
READ_DATA = 1

INHERITANCE_FLAGS = ("ContainerInherit", "ObjectInherit")
PROPAGATION_FLAGS = ("NoPropagateInherit", "InheritOnly")

# Well-known accounts as Windows names them, by the short names people type.
_WELL_KNOWN = {
    name.casefold(): name
    for name in (
        "BUILTIN\\Administrators", "BUILTIN\\Users", "BUILTIN\\IIS_IUSRS", "NT AUTHORITY\\SYSTEM",
        "NT AUTHORITY\\IUSR", "NT AUTHORITY\\Authenticated Users", "NT AUTHORITY\\NETWORK SERVICE",
        "NT AUTHORITY\\LOCAL SERVICE", "NT SERVICE\\TrustedInstaller",
    )
}
_SHORT = {full.split("\\", 1)[1].casefold(): full for full in _WELL_KNOWN.values()}
_STANDALONE = {"everyone": "Everyone", "creator owner": "CREATOR OWNER"}
_IIS_ONLY = {"builtin\\iis_iusrs", "nt authority\\iusr"}
#: How Windows prints a pool identity (NTAccount of its SID): "IIS APPPOOL\\api".
APPPOOL_PREFIX = "IIS APPPOOL\\"


# --- rights, flags and principals -------------------------------------------------------


def parse_rights(text: str) -> int:
    """``"ReadAndExecute, Synchronize"`` → mask. Raises ``SimFunctionError`` for unknown names."""

    mask = 0
    for part in str(text).split(","):
        name = part.strip()
        if name.isdigit():
            mask |= int(name)
            continue
        value = _RIGHTS_BY_NAME.get(name.casefold())
        if value is None:
            raise SimFunctionError(f"Cannot convert value \"{text}\" to type \"System.Security.AccessControl.FileSystemRights\": unknown right '{name}'")
        mask |= value
    return mask


def format_rights(mask: int) -> str:
    """Mask → text like .NET's ``FileSystemRights.ToString()`` (largest names first
    consumed, printed in ascending value order; leftover bits as a number)."""

    names = []
    rest = mask
    for name, value in sorted(RIGHTS, key=lambda item: -item[1]):
        if value and rest & value == value:
            names.append((value, name))
            rest &= ~value
    if rest:
        return str(mask)  # .NET prints the number when bits have no name
    return ", ".join(name for _, name in sorted(names)) or "0"


def _parse_flags(text: str | None, allowed: tuple[str, ...], what: str) -> str:
    if text is None or str(text).strip() in ("", "None"):
        return "None"
    found = []
    for part in str(text).split(","):
        name = next((a for a in allowed if a.casefold() == part.strip().casefold()), None)
        if name is None:
            raise SimFunctionError(f"invalid {what} flag '{part.strip()}' (allowed: None, {', '.join(allowed)})")
        if name not in found:
            found.append(name)
    return ", ".join(a for a in allowed if a in found)


def canonical_principal(host: "SimHost", principal: str) -> str:
    """Return the account name as Windows prints it after resolving it (``IIS_IUSRS`` →
    ``BUILTIN\\IIS_IUSRS``, ``IIS AppPool\\api`` → ``IIS APPPOOL\\api``, ``IUSR`` →
    ``NT AUTHORITY\\IUSR``), as the PowerShell module's ``Get-PrincipalName`` does.

    Raises:
        SimFunctionError: the account does not exist ("Some or all identity references could
            not be translated", as .NET says), e.g. a pool identity whose pool is not configured.
    """

    if not isinstance(principal, str) or not principal.strip():
        raise SimFunctionError("'principal' must be an account name")
    name = principal.strip()
    folded = name.casefold()
    iis = "Web-Server" in host.state.get("features", {})
    if folded.startswith("iis apppool\\"):
        pool = name.split("\\", 1)[1]
        config = load_config(host) if iis else None
        names = pool_names(config) if config is not None else []
        match = next((n for n in names if n.casefold() == pool.casefold()), None)
        if match is None:
            raise SimFunctionError(f"Some or all identity references could not be translated: {name} (no application pool '{pool}')")
        return APPPOOL_PREFIX + match
    full = _WELL_KNOWN.get(folded) or _SHORT.get(folded) or _STANDALONE.get(folded)
    if full is not None:
        if full.casefold() in _IIS_ONLY and not iis:
            raise SimFunctionError(f"Some or all identity references could not be translated: {name} (IIS is not installed)")
        return full
    local = folded.split("\\", 1)[1] if folded.startswith((host.hostname.casefold() + "\\", ".\\")) else folded
    for user in host.state.get("users", []):
        if user.casefold() == local:
            return f"{host.hostname}\\{user}"
    raise SimFunctionError(f"Some or all identity references could not be translated: {name}")


def groups_of(principal: str) -> set[str]:
    """Case-folded names of ``principal`` and the groups its token holds.

    ``IIS AppPool\\X`` is in IIS_IUSRS, Users, Authenticated Users and Everyone; SYSTEM and
    local users in Administrators too (the simulator's users are administrators); IUSR in
    Everyone only (an approximation)."""

    folded = principal.casefold()
    everyone = {"everyone"}
    if folded.startswith("iis apppool\\"):
        return {folded, "builtin\\iis_iusrs", "builtin\\users", "nt authority\\authenticated users"} | everyone
    if folded in ("nt authority\\iusr", "iusr"):
        return {"nt authority\\iusr"} | everyone
    if folded in ("nt authority\\system", "system"):
        return {"nt authority\\system", "builtin\\administrators", "nt authority\\authenticated users"} | everyone
    if folded.endswith(("\\users", "\\authenticated users")) or folded in ("users", "authenticated users"):
        return {folded} | everyone
    return {folded, "builtin\\administrators", "builtin\\users", "nt authority\\authenticated users"} | everyone


# --- the ACL store ----------------------------------------------------------------------


def _key(windows_path: str) -> str:
    path = str(PureWindowsPath(windows_path))
    return path.casefold()


def sid_of(principal: str) -> str:
    """The SID of an account name as the simulated host knows it: well-known accounts and pool
    identities as on Windows (:func:`pyinfra_iis.sddl.principal_sid`), other (local) accounts a
    stable made-up ``S-1-5-21-...`` SID."""

    sid = sddl.principal_sid(principal)
    if sid is not None:
        return sid
    digest = hashlib.sha1(principal.split("\\")[-1].casefold().encode("utf-8")).digest()
    return "S-1-5-21-1004336348-1177238915-682003330-" + str(1000 + int.from_bytes(digest[:2], "little"))


def _entry(principal: str, rights: int | str, inheritance: str = "ContainerInherit, ObjectInherit",
           propagation: str = "None", kind: str = "Allow", sid: str | None = None) -> dict[str, Any]:
    mask = parse_rights(rights) if isinstance(rights, str) else rights
    return {"principal": principal, "sid": sid or sid_of(principal), "type": kind, "mask": mask,
            "inheritance": inheritance, "propagation": propagation}


def _defaults() -> dict[str, dict[str, Any]]:
    both = "ContainerInherit, ObjectInherit"
    admins_system = [_entry("BUILTIN\\Administrators", "FullControl"), _entry("NT AUTHORITY\\SYSTEM", "FullControl")]
    return {
        # icacls C:\ on Windows Server: Users (OI)(CI)(RX), (CI)(AD), (CI)(IO)(WD) - no Synchronize
        # on the last two, hence LC and DC in the SDDL (tests/test_sddl.py cites a sample).
        "C:\\": {"protected": False, "entries": [
            *admins_system,
            _entry("BUILTIN\\Users", "ReadAndExecute, Synchronize"),
            _entry("BUILTIN\\Users", "AppendData", "ContainerInherit"),
            _entry("BUILTIN\\Users", "WriteData", "ContainerInherit", "InheritOnly"),
            _entry("CREATOR OWNER", GENERIC_ALL, both, "InheritOnly"),
        ]},
        "C:\\Windows": {"protected": True, "entries": [
            _entry("NT SERVICE\\TrustedInstaller", "FullControl", "ContainerInherit"),
            _entry("NT AUTHORITY\\SYSTEM", "Modify, Synchronize"),
            _entry("BUILTIN\\Administrators", "Modify, Synchronize"),
            _entry("BUILTIN\\Users", "ReadAndExecute, Synchronize"),
            _entry("CREATOR OWNER", GENERIC_ALL, both, "InheritOnly"),
        ]},
        "C:\\Windows\\System32\\inetsrv\\config": {"protected": True, "entries": [
            *admins_system, _entry("NT SERVICE\\TrustedInstaller", "FullControl"),
        ]},
    }


def iis_default_acls() -> dict[str, dict[str, Any]]:
    """Explicit ACLs IIS setup writes (``C:\\inetpub`` protected, IIS_IUSRS on wwwroot)."""

    return {
        "C:\\inetpub": {"protected": True, "entries": [
            _entry("NT SERVICE\\TrustedInstaller", "FullControl"),
            _entry("NT AUTHORITY\\SYSTEM", "FullControl"),
            _entry("BUILTIN\\Administrators", "FullControl"),
            _entry("BUILTIN\\Users", "ReadAndExecute, Synchronize"),
            _entry("CREATOR OWNER", GENERIC_ALL, "ContainerInherit, ObjectInherit", "InheritOnly"),
        ]},
        "C:\\inetpub\\wwwroot": {"protected": False, "entries": [
            _entry("BUILTIN\\IIS_IUSRS", "ReadAndExecute, Synchronize"),
        ]},
    }


def _with_sids(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of a state saved before SIDs were kept get theirs (read compatibility)."""

    return [e if "sid" in e else {**e, "sid": sid_of(e["principal"])} for e in entries]


def acl_store(host: "SimHost") -> dict[str, Any]:
    """Return ``host.state["acls"]``, seeding the fresh-host defaults once. Call under the lock."""

    acls = host.state.setdefault("acls", {})
    if not host.state.get("acls_seeded"):
        for path, acl in _defaults().items():
            acls.setdefault(_key(path), {"path": path, **acl})
        host.state["acls_seeded"] = True
    for acl in acls.values():
        acl["entries"] = _with_sids(acl["entries"])
    return acls


def add_explicit_acls(host: "SimHost", acls: dict[str, dict[str, Any]]) -> None:
    """Install explicit ACLs (``{windows_path: {"protected", "entries", "owner"?}}``), replacing
    any stored for those paths (used by IIS setup and the certificate store). Call under the lock."""

    store = acl_store(host)
    for path, acl in acls.items():
        store[_key(path)] = {"path": path, **acl}


def set_owner(host: "SimHost", windows_path: str, principal: str) -> None:
    """Make ``principal`` the owner of a path (tests: a folder another user created first)."""

    with host.lock:
        acl = acl_store(host).setdefault(_key(windows_path), {"path": windows_path, "protected": False, "entries": []})
        acl["owner"] = sid_of(principal)
        host.save()


def _owner(host: "SimHost", windows_path: str) -> str:
    return (acl_store(host).get(_key(windows_path)) or {}).get("owner") or sddl.ADMINISTRATORS


def _explicit(host: "SimHost", windows_path: str) -> dict[str, Any] | None:
    return acl_store(host).get(_key(windows_path))


def _inherit(parent_entries: Iterable[dict[str, Any]], is_directory: bool) -> list[dict[str, Any]]:
    result = []
    for entry in parent_entries:
        inheritance, propagation = entry["inheritance"], entry["propagation"]
        container = "ContainerInherit" in inheritance
        objects = "ObjectInherit" in inheritance
        no_propagate = "NoPropagateInherit" in propagation
        if entry.get("sid") == "S-1-3-0":
            # CREATOR OWNER: Windows puts the owner's own entry on the child and keeps the
            # CREATOR OWNER entry inherit-only on folders, (A;OICIIOID;GA;;;CO) (tests/test_sddl.py).
            if is_directory and (container or objects) and not no_propagate:
                result.append({**entry, "propagation": "InheritOnly", "inherited": True})
            continue
        if is_directory and container:
            new = ("None", "None") if no_propagate else (inheritance, "None")
        elif is_directory and objects and not no_propagate:
            new = ("ObjectInherit", "InheritOnly")
        elif not is_directory and objects:
            new = ("None", "None")
        else:
            continue
        result.append({**entry, "inheritance": new[0], "propagation": new[1], "inherited": True})
    return result


def effective_entries(host: "SimHost", windows_path: str, is_directory: bool = True) -> tuple[bool, list[dict[str, Any]]]:
    """Return ``(inheritance_protected, entries)`` of a path: its explicit entries, then the
    entries inherited from its parent folder (recursively), each with ``inherited``."""

    path = PureWindowsPath(windows_path)
    explicit = _explicit(host, str(path))
    protected = bool(explicit and explicit.get("protected"))
    entries = [{**e, "inherited": False} for e in (explicit or {}).get("entries", [])]
    if not protected and path.parent != path:
        _, parent_entries = effective_entries(host, str(path.parent), True)
        entries.extend(_inherit(parent_entries, is_directory))
    return protected, entries


_FLAG_CODES = {"ContainerInherit": "CI", "ObjectInherit": "OI", "NoPropagateInherit": "NP", "InheritOnly": "IO"}


def _pool_names(host: "SimHost") -> dict[str, str]:
    """Configured application pools, case-folded name -> name (none until IIS is installed)."""

    if "Web-Server" not in host.state.get("features", {}):
        return {}
    config = load_config(host)
    return {name.casefold(): name for name in (pool_names(config) if config is not None else [])}


def render_acl(host: "SimHost", windows_path: str, is_directory: bool) -> tuple[str, dict[str, str]]:
    """Return ``(sddl, sids)`` of a path as ``GetSecurityDescriptorSddlForm(Access)`` and the
    module's SID translation report it: a pool identity only while its pool exists. Call under
    the lock."""

    protected, entries = effective_entries(host, windows_path, is_directory)
    aces, names, pools = [], {}, None
    for e in entries:
        flags = [_FLAG_CODES[f.strip()] for f in f"{e['inheritance']}, {e['propagation']}".split(",") if f.strip() in _FLAG_CODES]
        if e.get("inherited"):
            flags.append("ID")
        aces.append(sddl.render_ace(e["type"], flags, e["mask"], e["sid"]))
        name = e["principal"]
        if name.casefold().startswith(APPPOOL_PREFIX.casefold()):
            pools = _pool_names(host) if pools is None else pools
            pool = pools.get(name.split("\\", 1)[1].casefold())
            name = APPPOOL_PREFIX + pool if pool else None
        if name is not None:
            names[e["sid"]] = name
    return "D:" + ("PAI" if protected else "AI") + "".join(aces), names


def describe_acl(host: "SimHost", windows_path: str) -> dict[str, Any]:
    """Return the contract's raw ACL report for ``windows_path`` (``{"exists": false}`` when absent)."""

    try:
        local = host.path(windows_path)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None
    if not local.exists() and not local.is_symlink():
        return {"exists": False}
    is_directory = local.is_dir()
    with host.lock:
        text, names = render_acl(host, windows_path, is_directory)
    return {"exists": True, "is_directory": is_directory, "is_reparse_point": local.is_symlink(), "sddl": text, "sids": names}


def can_read(host: "SimHost", principal: str, windows_path: str) -> bool:
    """Whether ``principal`` (``"IIS AppPool\\api"``, ``"IUSR"``, ...) may read the file or list
    the folder at ``windows_path`` on the simulated host (False when it does not exist).

    Uses the path's own effective ACL (Windows grants "bypass traverse checking" to everyone,
    so ancestors do not matter), the principal's groups (:func:`groups_of`) and deny-wins.
    """

    local = host.path(windows_path)
    if not local.exists():
        return False
    names = groups_of(principal)
    # An entry written by SID (a pool's S-1-5-82-... before or after the pool exists) matches too.
    sids = {sid for sid in (sddl.principal_sid(name) for name in names) if sid}
    with host.lock:
        _, entries = effective_entries(host, windows_path, local.is_dir())
    applicable = [
        e for e in entries
        if "InheritOnly" not in e["propagation"] and (e["principal"].casefold() in names or e.get("sid") in sids)
        and e["mask"] & READ_DATA
    ]
    if any(e["type"] == "Deny" for e in applicable):
        return False
    return any(e["type"] == "Allow" for e in applicable)


# --- functions ------------------------------------------------------------------------------


def _path_arg(host: "SimHost", payload: dict[str, Any]) -> tuple[str, Any]:
    value = payload.get("path")
    if not isinstance(value, str):
        raise SimFunctionError("'path' must be a Windows path string")
    try:
        return value, host.path(value)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None


def _entries_of_sddl(host: "SimHost", text: str) -> tuple[bool, list[dict[str, Any]]]:
    """The sim's explicit entries for an SDDL a caller gives (``Initialize-Directory``)."""

    try:
        descriptor = sddl.parse_sddl(text)
    except sddl.SddlError as exc:
        raise SimFunctionError(f"The SDDL form of a security descriptor object is invalid: {exc}") from None
    entries = []
    for ace in descriptor.dacl:
        flags = ace.flags
        inheritance = ", ".join(n for c, n in (("CI", "ContainerInherit"), ("OI", "ObjectInherit")) if c in flags) or "None"
        propagation = ", ".join(n for c, n in (("NP", "NoPropagateInherit"), ("IO", "InheritOnly")) if c in flags) or "None"
        entries.append(_entry(sddl.account_name(ace.sid), ace.mask, inheritance, propagation, ace.type, sid=ace.sid))
    return descriptor.protected, entries


def check_folder_owner(host: "SimHost", windows_path: str, local: Any, function: str) -> None:
    """Refuse a reparse point, or a folder owned by anyone but SYSTEM or Administrators (the
    PowerShell module's ``Initialize-ProtectedFolder`` checks)."""

    if local.is_symlink():
        raise SimFunctionError(f"{function}: {windows_path} is a reparse point (junction or symbolic link); refusing to use it")
    with host.lock:
        owner = _owner(host, windows_path)
    if owner not in (sddl.SYSTEM, sddl.ADMINISTRATORS):
        raise SimFunctionError(f"{function}: {windows_path} is owned by {sddl.account_name(owner)} ({owner}), not SYSTEM or "
                               "Administrators; another account created it first: refusing to use it")


@sim_function("Initialize-Directory")
def initialize_directory(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path", "sddl"?}`` → ``{"created": bool}``; creates missing parents. With ``sddl``, a
    new folder gets it as its (protected) ACL, and an existing one must not be a reparse point
    and must be owned by SYSTEM or Administrators. Fails when a file is there."""

    path, local = _path_arg(host, payload)
    text = payload.get("sddl")
    if text is not None and not isinstance(text, str):
        raise SimFunctionError("Initialize-Directory: 'sddl' must be a string")
    if local.exists() and not local.is_dir():
        raise SimFunctionError(f"Cannot create directory '{path}': a file with that name already exists")
    created = not local.exists() and not local.is_symlink()
    if not created and text:
        check_folder_owner(host, path, local, "Initialize-Directory")
        return json.dumps({"created": False})
    if created and text:
        protected, entries = _entries_of_sddl(host, text)
    local.mkdir(parents=True, exist_ok=True)
    if created and text:
        with host.lock:
            add_explicit_acls(host, {path: {"protected": protected, "entries": entries, "owner": sddl.ADMINISTRATORS}})
            host.save()
    return json.dumps({"created": created})


def _rule_sid(host: "SimHost", payload: dict[str, Any], strict: bool = True) -> tuple[str, str]:
    """``(principal name, SID)`` of a rule: the given ``sid`` (written even when no account
    name translates to it yet, as Windows does) or the translated ``principal``."""

    sid = payload.get("sid")
    principal = payload.get("principal")
    if sid is not None:
        if not isinstance(sid, str) or not sddl._SID_RE.match(sid):
            raise SimFunctionError(f"'sid' must be a SID string (S-1-...), not {sid!r}")
        name = principal if isinstance(principal, str) and principal.strip() else sid
        if name.casefold().startswith("iis apppool\\"):
            name = APPPOOL_PREFIX + name.split("\\", 1)[1]
        else:
            try:
                name = canonical_principal(host, name)
            except SimFunctionError:
                name = sddl.account_name(sid) if name == sid else name
        return name, sid
    if not strict:
        if not isinstance(principal, str) or not principal.strip():
            raise SimFunctionError("'principal' must be an account name")
        try:
            principal = canonical_principal(host, principal)
        except SimFunctionError:
            pass  # an account that no longer resolves can still be purged by name
        return principal, sid_of(principal)
    name = canonical_principal(host, principal or "")
    return name, sid_of(name)


@sim_function("Grant-PathAccess")
def grant_path_access(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","principal"|"sid","rights","inheritance","propagation"}`` → ``{"changed": bool}``.

    Makes the SID's explicit Allow entries on the path exactly this one rule (.NET
    ``SetAccessRule``). Errors: missing path, unknown principal (without ``sid``), unknown
    right or flag.
    """

    path, local = _path_arg(host, payload)
    if not local.exists():
        raise SimFunctionError(f"Cannot find path '{path}' because it does not exist.")
    principal, sid = _rule_sid(host, payload)
    mask = parse_rights(payload.get("rights", "")) | SYNCHRONIZE
    default_inheritance = "ContainerInherit, ObjectInherit" if local.is_dir() else "None"
    inheritance = _parse_flags(payload.get("inheritance", default_inheritance), INHERITANCE_FLAGS, "inheritance")
    if not local.is_dir() and inheritance != "None":
        raise SimFunctionError(f"No flags can be set: inheritance flags apply to folders, '{path}' is a file")
    propagation = _parse_flags(payload.get("propagation"), PROPAGATION_FLAGS, "propagation")
    new = _entry(principal, mask, inheritance, propagation, sid=sid)
    with host.lock:
        store = acl_store(host)
        acl = store.setdefault(_key(path), {"path": path, "protected": False, "entries": []})
        mine = [e for e in acl["entries"] if e["type"] == "Allow" and e["sid"] == sid]
        if len(mine) == 1 and {k: mine[0][k] for k in ("mask", "inheritance", "propagation")} == {k: new[k] for k in ("mask", "inheritance", "propagation")}:
            return json.dumps({"changed": False})
        others = [e for e in acl["entries"] if e not in mine]
        position = next((i for i, e in enumerate(acl["entries"]) if e in mine), len(others))
        others.insert(min(position, len(others)), new)
        acl["entries"] = others
        host.save()
    return json.dumps({"changed": True})


@sim_function("Revoke-PathAccess")
def revoke_path_access(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","principal"|"sid"}`` → ``{"changed": bool}``: removes the SID's explicit Allow
    entries (.NET ``RemoveAccessRuleAll`` of an Allow rule); inherited entries stay."""

    path, local = _path_arg(host, payload)
    if not local.exists():
        raise SimFunctionError(f"Cannot find path '{path}' because it does not exist.")
    principal, sid = _rule_sid(host, payload, strict=False)
    with host.lock:
        acl = acl_store(host).get(_key(path))
        if acl is None:
            return json.dumps({"changed": False})
        kept = [e for e in acl["entries"] if not (e["type"] == "Allow" and (e["sid"] == sid or e["principal"].casefold() == principal.casefold()))]
        if len(kept) == len(acl["entries"]):
            return json.dumps({"changed": False})
        acl["entries"] = kept
        host.save()
    return json.dumps({"changed": True})


#: Where the controller keeps the record of the rights it granted (``operations/rights.py``); the
#: PowerShell module's ``Get-GrantRecord`` reads the same path.
GRANT_RECORD = "C:\\ProgramData\\pyinfra-iis\\grants\\granted.json"


def describe_grant_record(host: "SimHost") -> str | None:
    """The ``grant_record`` part of ``Get-HostState`` (``Get-GrantRecord``): the record's text,
    or ``None`` when it is missing or its folder is a reparse point or not owned by SYSTEM or
    Administrators (a record another account could have written is ignored)."""

    local = host.path(GRANT_RECORD)
    if not local.is_file():
        return None
    folder = GRANT_RECORD.rsplit("\\", 1)[0]
    try:
        check_folder_owner(host, folder, local.parent, "Get-GrantRecord")
    except SimFunctionError:
        return None
    return local.read_text(encoding="utf-8")
