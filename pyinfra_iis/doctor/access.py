"""The pool identity's EFFECTIVE access to what the app needs, computed from SDDL.

Not "is there an entry for the pool": Windows' access check walks the DACL in order and, for
each entry whose SID is in the caller's token, denies the bits not yet granted (Deny) or grants
the bits not yet denied (Allow); inherit-only entries do not apply to the object that holds them
(https://learn.microsoft.com/windows/win32/secauthz/how-dacls-control-access-to-an-object).
Generic rights map to the file rights (``GR`` → ``FILE_GENERIC_READ``...,
https://learn.microsoft.com/windows/win32/fileio/file-security-and-access-rights). An object
without a DACL (``D:NO_ACCESS_CONTROL``) grants everything; an empty DACL nothing.

The token of ``IIS AppPool\\<pool>`` (``ApplicationPoolIdentity``): the pool's virtual account
SID (:func:`pyinfra_iis.sddl.app_pool_sid`), IIS_IUSRS (IIS injects it at run time,
https://learn.microsoft.com/iis/manage/configuring-security/application-pool-identities),
Everyone, Authenticated Users, SERVICE; plus every local group whose members (reported raw by
``Get-DoctorState``, ``groups``) include one of those SIDs (Users holds Authenticated Users by
default). A group whose members the host could not read (``null``: ``Get-LocalGroupMember``
throws on an orphaned SID, PowerShell#2996) is not "no members": Windows' built-in membership is
assumed (:data:`BUILTIN_MEMBERS`: Users holds INTERACTIVE and Authenticated Users; the pool is in
IIS_IUSRS at run time) and an access that holds only through such a group is a warning. Other identity types: LocalSystem, LocalService, NetworkService by their well-known
SIDs; a SpecificUser account is not computed (the check says so).

"Bypass traverse checking" is granted to Everyone on Windows, so only each path's own DACL counts.
"""

from __future__ import annotations

from typing import Iterable

from .. import sddl
from .model import FAIL, OK, WARN, Check, Evidence

GENERIC_MAP = {0x80000000: 0x120089, 0x40000000: 0x120116, 0x20000000: 0x1200A0, 0x10000000: 0x1F01FF}
#: What each path needs (access masks without SYNCHRONIZE, which FileSystemAccessRule always adds).
READ_EXECUTE = 0x200A9   # ReadData/List, ReadEA, Execute/Traverse, ReadAttributes, ReadControl
READ = 0x20089           # ReadData, ReadEA, ReadAttributes, ReadControl
WRITE_FOLDER = 0x6       # CreateFiles (add a file), AppendData (add a sub-folder)
WRITE_FILE = 0x6         # WriteData, AppendData on the log file the folder's OI entries give it

EVERYONE, AUTHENTICATED_USERS, SERVICE = "S-1-1-0", "S-1-5-11", "S-1-5-6"
IDENTITY_SIDS = {"LocalSystem": sddl.SYSTEM, "LocalService": "S-1-5-19", "NetworkService": "S-1-5-20"}
#: Members Windows puts in these local groups at setup, assumed when the host cannot list them.
BUILTIN_MEMBERS = {sddl.USERS: ("S-1-5-4", AUTHENTICATED_USERS), sddl.IIS_IUSRS: ()}


def unread_groups(evidence: Evidence) -> list[str]:
    """SIDs of the local groups whose members the host could not read (``null`` in ``groups``)."""

    return [sid for sid, members in (evidence.doctor.get("groups") or {}).items() if members is None]


def map_generic(mask: int) -> int:
    """``mask`` with generic bits replaced by the file rights they stand for."""

    for bit, rights in GENERIC_MAP.items():
        if mask & bit:
            mask = (mask & ~bit) | rights
    return mask


def effective_rights(text: str, token: Iterable[str], for_child_file: bool = False) -> int:
    """The rights a token holding ``token`` (SIDs) gets from the DACL in SDDL ``text``.

    Args:
        text: a security descriptor string (``D:...``).
        token: the SIDs of the caller's token.
        for_child_file: compute what a NEW file created in this folder would get (the entries
            with ``OI``, inherit-only or not), instead of the folder's own rights.

    Raises:
        pyinfra_iis.sddl.SddlError: not a security descriptor string.
    """

    descriptor = sddl.parse_sddl(text)
    if not descriptor.has_dacl or "NO_ACCESS_CONTROL" in descriptor.dacl_flags:
        return 0x1F01FF
    sids = set(token)
    granted = denied = 0
    for ace in descriptor.dacl:
        if for_child_file:
            if "OI" not in ace.flags:
                continue
        elif "IO" in ace.flags:
            continue
        if ace.sid not in sids or ace.type not in ("Allow", "Deny"):
            continue
        mask = map_generic(ace.mask)
        if ace.type == "Deny":
            denied |= mask & ~granted
        else:
            granted |= mask & ~denied
    return granted


def pool_token(evidence: Evidence, pool: str) -> tuple[set[str] | None, str]:
    """``(SIDs of the pool identity's token, identity text)``; ``None`` for a SpecificUser."""

    element = evidence.pool_element(pool)
    model = element.find("processModel") if element is not None else None
    identity = (model.get("identityType") if model is not None else None) or "ApplicationPoolIdentity"
    if identity == "SpecificUser":
        return None, f"SpecificUser {model.get('userName', '')}"
    if identity in IDENTITY_SIDS:
        base = {IDENTITY_SIDS[identity], EVERYONE, AUTHENTICATED_USERS, SERVICE, sddl.IIS_IUSRS}
        name = identity
    else:
        base = {sddl.app_pool_sid(pool), sddl.IIS_IUSRS, EVERYONE, AUTHENTICATED_USERS, SERVICE}
        name = f"IIS AppPool\\{pool}"
    groups = evidence.doctor.get("groups") or {}
    changed = True
    while changed:  # nested local groups: until nothing is added
        changed = False
        for group, members in groups.items():
            members = BUILTIN_MEMBERS.get(group, ()) if members is None else members  # unreadable: Windows' default
            if group not in base and any(member in base for member in members):
                base.add(group)
                changed = True
    return base, name


def _names(acl: dict, sids: Iterable[str]) -> str:
    names = acl.get("sids") or {}
    return ", ".join(sorted({sddl.account_name(sid, names) for sid in sids}))


def _deciding_entries(text: str, token: set[str], need: int, for_child_file: bool = False) -> tuple[list[str], list[str]]:
    """Principals of Deny entries that take needed bits, and of Allow entries that give some."""

    descriptor = sddl.parse_sddl(text)
    denies, allows = [], []
    for ace in descriptor.dacl:
        skip = ("OI" not in ace.flags) if for_child_file else ("IO" in ace.flags)
        if skip or ace.sid not in token:
            continue
        if map_generic(ace.mask) & need:
            (denies if ace.type == "Deny" else allows).append(ace.sid)
    return denies, allows


def path_check(evidence: Evidence, check: str, path: str | None, need: int, what: str, fix_key: str,
               grant: str, token: set[str] | None, identity: str, child_files: bool = False) -> Check:
    """One access check: ``need`` on ``path`` for the token (and for files created in it)."""

    if not path:
        return Check(check, WARN, f"{what}: no path known (the site serves no release?)", fix_key)
    acl = evidence.acl(path)
    if acl is None:
        return Check(check, WARN, f"{what} {path}: not read", fix_key)
    if acl.get("error") is not None:
        return Check(check, WARN, f"{what} {path}: could not read its ACL: {acl['error']}", f"{fix_key}; check with: icacls \"{path}\"")
    if not acl.get("exists"):
        return Check(check, FAIL, f"{what} {path} does not exist", f"{fix_key}; or create it: New-Item -ItemType Directory '{path}'")
    if token is None:
        return Check(check, WARN, f"{what} {path}: pool runs as {identity}; effective access not computed for a user account",
                     "check with: icacls (or Get-Acl) as that account")
    text = acl.get("sddl") or ""
    if identity.casefold().startswith("iis apppool\\"):  # the host may leave a pool's SID untranslated
        pool_sid = sddl.app_pool_sid(identity.split("\\", 1)[1])
        names = dict(acl.get("sids") or {})
        if names.get(pool_sid) in (None, pool_sid):
            names[pool_sid] = identity
        acl = {**acl, "sids": names}
    rights = effective_rights(text, token)
    missing = need & ~rights
    if child_files and not missing:
        missing = WRITE_FILE & ~effective_rights(text, token, for_child_file=True)
    if not missing:
        _, allows = _deciding_entries(text, token, need)
        through = f"{identity} has {sddl.format_rights(rights & need)} on {path} (through {_names(acl, allows) or 'no entry'})"
        assumed = [sid for sid in unread_groups(evidence) if sid in allows and sid != sddl.IIS_IUSRS]  # IIS_IUSRS: in the token itself
        if assumed and not set(allows) - set(assumed):  # only through a group whose members are unknown
            return Check(check, WARN, f"{through}; the members of {_names(acl, assumed)} could not be read: Windows' default "
                         "membership assumed", f"check with: Get-LocalGroupMember -SID {assumed[0]}; {fix_key}")
        return Check(check, OK, through)
    denies, allows = _deciding_entries(text, token, missing, child_files and not (need & ~rights))
    why = []
    if denies:
        why.append(f"Deny entries for {_names(acl, denies)}")
    if acl.get("inheritance_protected"):
        why.append("inheritance is off (protected DACL)")
    if not allows:
        why.append("no Allow entry for the pool, IIS_IUSRS or a group it is in")
    fix = (f"{fix_key}; or: icacls \"{path}\" /remove:d \"{_names(acl, denies).split(', ')[0]}\"" if denies
           else f"{fix_key}; or: icacls \"{path}\" /grant \"{identity}:{grant}\"")
    return Check(check, FAIL, f"{identity} lacks {sddl.format_rights(missing)} on {path}: {'; '.join(why) or 'not granted'}", fix)


def check_access(evidence: Evidence) -> list[Check]:
    """``access.app_folder``, ``access.venv``, ``access.python``, ``access.web_config`` (read) and
    ``access.logs`` (write, also for the log files created there)."""

    target = evidence.target
    if not target.site or not target.pool or evidence.config is None:
        return []
    if target.arr:
        from .arr import check_arr_access

        return check_arr_access(evidence)
    token, identity = pool_token(evidence, target.pool)
    release = evidence.physical_path()
    python = paths_of(evidence)["python"]
    rules = "release_app.root (the release deploy grants the pool ReadAndExecute)"
    return [
        path_check(evidence, "access.app_folder", release, READ_EXECUTE, "app folder", rules, "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.venv", paths_of(evidence)["venv"], READ_EXECUTE, "venv", rules, "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.python", python, READ_EXECUTE, "base Python", "release_python.target_dir (the release deploy "
                   "grants the pool ReadAndExecute; never under a user profile)", "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.web_config", paths_of(evidence)["web_config"], READ, "web.config", rules, "R", token, identity),
        path_check(evidence, "access.logs", target.logs_dir, WRITE_FOLDER, "stdout log folder",
                   "release_app.root (the release deploy grants the pool Modify on <root>\\logs)", "(OI)(CI)M", token, identity,
                   child_files=True),
    ]


def paths_of(evidence: Evidence) -> dict[str, str | None]:
    """The host paths the access checks read: the release folder the site serves, its venv and
    web.config, the base Python and the logs folder (ARR mode: the active slot's release, the
    site's ``wwwroot\\web.config`` and ``<root>\\logs\\services``; :func:`pyinfra_iis.doctor.arr.arr_paths`)."""

    release = evidence.physical_path()
    python = evidence.target.python_dir
    pythons = evidence.state.get("pythons") or {}
    entry = pythons.get(evidence.target.python_version or "") or {}
    if entry.get("installed") and entry.get("target_dir"):
        python = entry["target_dir"]
    if evidence.target.arr:
        from .arr import arr_paths

        return arr_paths(evidence, python)
    return {"release": release, "venv": f"{release}\\venv" if release else None,
            "web_config": f"{release}\\web.config" if release else None, "python": python,
            "logs": evidence.target.logs_dir}
