"""File system ACLs of the simulated host: ``Initialize-Directory``, ``Grant-PathAccess``,
``Revoke-PathAccess``, and :func:`can_read` for tests.

Model (``host.state["acls"]``, keyed by the case-folded Windows path)::

    {"c:\\sites\\api": {"path": "C:\\sites\\api", "protected": false,
                         "entries": [{"principal", "type", "mask", "inheritance", "propagation"}]}}

Only EXPLICIT entries are stored. Inherited entries are computed from the parent folder's
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

import json
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any, Iterable

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


def _entry(principal: str, rights: int | str, inheritance: str = "ContainerInherit, ObjectInherit",
           propagation: str = "None", kind: str = "Allow") -> dict[str, Any]:
    mask = parse_rights(rights) if isinstance(rights, str) else rights
    return {"principal": principal, "type": kind, "mask": mask, "inheritance": inheritance, "propagation": propagation}


def _defaults() -> dict[str, dict[str, Any]]:
    both = "ContainerInherit, ObjectInherit"
    admins_system = [_entry("BUILTIN\\Administrators", "FullControl"), _entry("NT AUTHORITY\\SYSTEM", "FullControl")]
    return {
        "C:\\": {"protected": False, "entries": [
            *admins_system,
            _entry("BUILTIN\\Users", "ReadAndExecute, Synchronize"),
            _entry("BUILTIN\\Users", "AppendData, Synchronize", "ContainerInherit"),
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


def acl_store(host: "SimHost") -> dict[str, Any]:
    """Return ``host.state["acls"]``, seeding the fresh-host defaults once. Call under the lock."""

    acls = host.state.setdefault("acls", {})
    if not host.state.get("acls_seeded"):
        for path, acl in _defaults().items():
            acls.setdefault(_key(path), {"path": path, **acl})
        host.state["acls_seeded"] = True
    return acls


def add_explicit_acls(host: "SimHost", acls: dict[str, dict[str, Any]]) -> None:
    """Install explicit ACLs (``{windows_path: {"protected", "entries"}}``), replacing any
    stored for those paths (used by IIS setup). Call under the lock."""

    store = acl_store(host)
    for path, acl in acls.items():
        store[_key(path)] = {"path": path, **acl}


def _explicit(host: "SimHost", windows_path: str) -> dict[str, Any] | None:
    return acl_store(host).get(_key(windows_path))


def _inherit(parent_entries: Iterable[dict[str, Any]], is_directory: bool) -> list[dict[str, Any]]:
    result = []
    for entry in parent_entries:
        inheritance, propagation = entry["inheritance"], entry["propagation"]
        container = "ContainerInherit" in inheritance
        objects = "ObjectInherit" in inheritance
        no_propagate = "NoPropagateInherit" in propagation
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


def describe_acl(host: "SimHost", windows_path: str) -> dict[str, Any]:
    """Return the contract's ACL object for ``windows_path`` (``{"exists": false}`` when absent)."""

    try:
        local = host.path(windows_path)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None
    if not local.exists():
        return {"exists": False}
    is_directory = local.is_dir()
    with host.lock:
        protected, entries = effective_entries(host, windows_path, is_directory)
    return {
        "exists": True,
        "is_directory": is_directory,
        "inheritance_protected": protected,
        "entries": [
            {"principal": e["principal"], "type": e["type"], "rights": format_rights(e["mask"]),
             "inherited": e["inherited"], "inheritance": e["inheritance"], "propagation": e["propagation"]}
            for e in entries
        ],
    }


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
    with host.lock:
        _, entries = effective_entries(host, windows_path, local.is_dir())
    applicable = [
        e for e in entries
        if "InheritOnly" not in e["propagation"] and e["principal"].casefold() in names and e["mask"] & READ_DATA
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


@sim_function("Initialize-Directory")
def initialize_directory(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path"}`` → ``{"created": bool}``; creates missing parents. Fails when a file is there."""

    path, local = _path_arg(host, payload)
    if local.exists() and not local.is_dir():
        raise SimFunctionError(f"Cannot create directory '{path}': a file with that name already exists")
    created = not local.exists()
    local.mkdir(parents=True, exist_ok=True)
    return json.dumps({"created": created})


@sim_function("Grant-PathAccess")
def grant_path_access(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","principal","rights","inheritance","propagation"}`` → ``{"changed": bool}``.

    Makes the principal's explicit Allow entries on the path exactly this one rule (.NET
    ``SetAccessRule``). Errors: missing path, unknown principal, unknown right or flag.
    """

    path, local = _path_arg(host, payload)
    if not local.exists():
        raise SimFunctionError(f"Cannot find path '{path}' because it does not exist.")
    principal = canonical_principal(host, payload.get("principal", ""))
    mask = parse_rights(payload.get("rights", "")) | SYNCHRONIZE
    default_inheritance = "ContainerInherit, ObjectInherit" if local.is_dir() else "None"
    inheritance = _parse_flags(payload.get("inheritance", default_inheritance), INHERITANCE_FLAGS, "inheritance")
    if not local.is_dir() and inheritance != "None":
        raise SimFunctionError(f"No flags can be set: inheritance flags apply to folders, '{path}' is a file")
    propagation = _parse_flags(payload.get("propagation"), PROPAGATION_FLAGS, "propagation")
    new = _entry(principal, mask, inheritance, propagation)
    with host.lock:
        store = acl_store(host)
        acl = store.setdefault(_key(path), {"path": path, "protected": False, "entries": []})
        mine = [e for e in acl["entries"] if e["type"] == "Allow" and e["principal"].casefold() == principal.casefold()]
        if mine == [new]:
            return json.dumps({"changed": False})
        others = [e for e in acl["entries"] if e not in mine]
        position = next((i for i, e in enumerate(acl["entries"]) if e in mine), len(others))
        others.insert(min(position, len(others)), new)
        acl["entries"] = others
        host.save()
    return json.dumps({"changed": True})


@sim_function("Revoke-PathAccess")
def revoke_path_access(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","principal"}`` → ``{"changed": bool}``: removes the principal's explicit Allow
    entries (.NET ``PurgeAccessRule`` of Allow rules); inherited entries stay."""

    path, local = _path_arg(host, payload)
    if not local.exists():
        raise SimFunctionError(f"Cannot find path '{path}' because it does not exist.")
    principal = payload.get("principal")
    if not isinstance(principal, str) or not principal.strip():
        raise SimFunctionError("'principal' must be an account name")
    try:
        principal = canonical_principal(host, principal)
    except SimFunctionError:
        pass  # an account that no longer resolves can still be purged by name
    with host.lock:
        acl = acl_store(host).get(_key(path))
        if acl is None:
            return json.dumps({"changed": False})
        kept = [e for e in acl["entries"] if not (e["type"] == "Allow" and e["principal"].casefold() == principal.casefold())]
        if len(kept) == len(acl["entries"]):
            return json.dumps({"changed": False})
        acl["entries"] = kept
        host.save()
    return json.dumps({"changed": True})
