"""File-system ACLs: ``Initialize-Directory``, ``Grant-PathAccess``, ``Revoke-PathAccess``.

An explicit entry is compared with the wanted one through a FileSystemRights bitmask (.NET
``System.Security.AccessControl.FileSystemRights`` values), so ``"ReadAndExecute,
Synchronize"`` as Windows reports it matches a wanted ``ReadAndExecute``: Windows adds
Synchronize to every allow entry it writes.
"""

from __future__ import annotations

from typing import Any, Sequence

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationValueError

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.acl import AclRule
from ..protocol import remote_call
from ..sddl import principal_sid
from ._common import from_arguments

#: FileSystemRights names → values (.NET ``FileSystemRights`` enumeration, Microsoft docs).
RIGHTS: dict[str, int] = {
    "ListDirectory": 0x1, "ReadData": 0x1, "WriteData": 0x2, "CreateFiles": 0x2,
    "CreateDirectories": 0x4, "AppendData": 0x4, "ReadExtendedAttributes": 0x8,
    "WriteExtendedAttributes": 0x10, "Traverse": 0x20, "ExecuteFile": 0x20,
    "DeleteSubdirectoriesAndFiles": 0x40, "ReadAttributes": 0x80, "WriteAttributes": 0x100,
    "Write": 0x116, "Delete": 0x10000, "ReadPermissions": 0x20000, "Read": 0x20089,
    "ReadAndExecute": 0x200A9, "Modify": 0x301BF, "ChangePermissions": 0x40000,
    "TakeOwnership": 0x80000, "Synchronize": 0x100000, "FullControl": 0x1F01FF,
}
SYNCHRONIZE = RIGHTS["Synchronize"]

#: Generic access bits an ACE may carry (inherit-only entries such as CREATOR OWNER's), mapped
#: to the file rights they mean (Microsoft docs, "File Security and Access Rights").
GENERIC: dict[int, int] = {
    0x10000000: RIGHTS["FullControl"],                                   # GENERIC_ALL
    0x20000000: RIGHTS["ExecuteFile"] | RIGHTS["ReadAttributes"] | RIGHTS["ReadPermissions"] | SYNCHRONIZE,  # GENERIC_EXECUTE
    0x40000000: RIGHTS["Write"] | RIGHTS["ReadPermissions"] | SYNCHRONIZE,  # GENERIC_WRITE
    0x80000000: RIGHTS["Read"] | SYNCHRONIZE,                             # GENERIC_READ
}


def rights_mask(rights: Any) -> int:
    """Return the bitmask of ``rights``: ``"ReadAndExecute, Synchronize"``, a sequence of
    names, or a number (as .NET prints unnamed combinations, possibly negative).

    Raises:
        ValueError: an unknown right name.
    """

    if isinstance(rights, int):
        value = rights
    elif isinstance(rights, str) and rights.strip().lstrip("-").isdigit():
        value = int(rights.strip())
    else:
        names = rights.split(",") if isinstance(rights, str) else list(rights)
        value = 0
        lookup = {name.lower(): bit for name, bit in RIGHTS.items()}
        for name in names:
            name = str(name).strip()
            if name.lower() not in lookup:
                raise ValueError(f"unknown FileSystemRights name {name!r}")
            value |= lookup[name.lower()]
    value &= 0xFFFFFFFF
    for bit, mapped in GENERIC.items():
        if value & bit:
            value = (value & ~bit) | mapped
    return value


def same_rights(current: Any, wanted: Any) -> bool:
    """Whether an entry with ``current`` rights grants exactly ``wanted`` (Synchronize aside)."""

    return (rights_mask(current) | SYNCHRONIZE) == (rights_mask(wanted) | SYNCHRONIZE)


def _flags(text: Any) -> frozenset[str]:
    names = text.split(",") if isinstance(text, str) else list(text or ())
    found = frozenset(str(n).strip().lower() for n in names if str(n).strip())
    return found - {"none"}


def path_entry(fact: dict, path: str) -> dict | None:
    """Return the fact's ACL report for ``path`` (case-insensitive), or ``None``."""

    for name, entry in (fact.get("acls") or {}).items():
        if name.lower() == path.lower():
            return entry or {}
    return None


def same_principal(entry: dict, principal: str) -> bool:
    """Whether a fact entry is ``principal``'s: by SID when both are known (the host may be
    unable to name a pool identity whose pool does not exist yet, and spells well-known
    accounts ``BUILTIN\\IIS_IUSRS`` where a rule says ``IIS_IUSRS``), else by name."""

    sid = principal_sid(principal)
    if sid is not None and entry.get("sid"):
        return str(entry["sid"]).upper() == sid.upper()
    return str(entry.get("principal", "")).lower() == principal.lower()


def explicit_entries(report: dict | None, principal: str, type_: str = "Allow") -> list[dict]:
    """The explicit (not inherited) entries of ``principal`` with access type ``type_``."""

    return [
        entry for entry in (report or {}).get("entries") or []
        if not entry.get("inherited")
        and same_principal(entry, principal)
        and str(entry.get("type", "Allow")).lower() == type_.lower()
    ]


def rule_call(path: str, principal: str, **fields: Any) -> dict:
    """The JSON of a ``Grant-PathAccess``/``Revoke-PathAccess`` call: the principal, and its
    SID when the controller can compute it (so the host need not translate the name, and a
    rule for a pool identity can be written before the pool exists)."""

    call = {"path": path, "principal": principal, **fields}
    sid = principal_sid(principal)
    if sid is not None:
        call["sid"] = sid
    return call


def entry_matches(entry: dict, rule: AclRule) -> bool:
    """Whether an explicit entry is exactly what ``rule`` asks: rights (bitmask), inheritance
    and propagation flags."""

    return (
        same_rights(entry.get("rights", 0), rule.rights)
        and _flags(entry.get("inheritance", "None")) == _flags(rule.inheritance)
        and _flags(entry.get("propagation", "None")) == _flags(rule.propagation)
    )


@operation()
def acl(
    rule: AclRule | dict | None = None,
    *,
    path: str | None = None,
    principal: str | None = None,
    rights: str | Sequence[str] | None = None,
    inheritance: str | Sequence[str] | None = None,
    propagation: str | Sequence[str] | None = None,
    present: bool = True,
    create: bool = True,
):
    """
    Make a principal's explicit access entry on a path exactly what the rule says, or remove it.

    Give the rule either as keyword arguments (pyinfra style) or as one model:

    + path: the folder or file on the host (required).
    + principal: who, e.g. ``IIS AppPool\\api`` (required).
    + rights: FileSystemRights names, ``"ReadAndExecute"`` or ``["Read", "Write"]`` (required,
      also with ``present=False``, where it is not compared).
    + inheritance: default ``ContainerInherit, ObjectInherit`` (explicit, never implied);
      ``None`` for a file.
    + propagation: default ``None``.
    + present: ``True`` (default) grants; ``False`` removes the principal's explicit entries
      (the model's ``ensure="absent"``).
    + rule: instead of the keywords, an ``AclRule`` model or dict: ``path``, ``principal``,
      ``rights``, ``inheritance``, ``propagation``, ``ensure`` (present/absent). Giving both is
      an error; with ``rule``, say absent with its ``ensure``, not ``present``.
    + create: ``True`` (default) creates a missing folder; ``False`` leaves a missing path
      alone (a folder another step creates with its own protected ACL, e.g. a release's
      ``releases`` folder).

    Absent removes only the principal's EXPLICIT ALLOW entries on exactly that path: never an
    inherited entry, a Deny entry, another principal's entry or an entry of a child. A rule the
    inventory stops naming (instead of marking it absent) is revoked by ``granted_rights`` only
    when this project recorded granting it (:mod:`pyinfra_iis.operations.rights`).

    Present: nothing happens when the principal has exactly one explicit allow entry with the
    same rights (bitmask; Synchronize aside), inheritance and propagation; otherwise
    ``Grant-PathAccess`` replaces the principal's explicit entries (``SetAccessRule``), leaving
    all others. A missing folder (a rule that inherits to children) is created first with
    ``Initialize-Directory``. Absent: ``Revoke-PathAccess`` when an explicit entry exists.
    Inherited entries are never touched. Deny entries are not supported by the remote contract.

    **Example:**

    .. code:: python

        acl(name="Pool reads the app", path=r"C:\\sites\\api", principal="IIS AppPool\\api",
            rights="ReadAndExecute")
    """

    if rule is not None and present is not True:
        raise OperationValueError("argument 'present' goes with the keyword form; give a rule with ensure='absent' instead")
    model = from_arguments(AclRule, rule, "rule", {
        "path": path, "principal": principal, "rights": rights, "inheritance": inheritance,
        "propagation": propagation, "ensure": None if rule is not None or present else "absent",
    })
    if model.type != "Allow":
        raise OperationValueError("argument 'rule': only Allow entries are supported (Grant-PathAccess)")
    report = path_entry(host_state(host, acl_paths=[model.path]), model.path)
    exists = bool(report and report.get("exists"))
    entries = explicit_entries(report, model.principal)
    label = f"{model.path}: {model.principal}"
    if model.ensure == "absent":
        if not entries:
            host.noop(f"{label} has no explicit entry")
            return
        log_changes(host, f"Will revoke access on {model.path}", [Change(label, ", ".join(str(e.get("rights")) for e in entries), None)])
        yield remote_call("Revoke-PathAccess", rule_call(model.path, model.principal))
        return
    if exists and len(entries) == 1 and entry_matches(entries[0], model):
        host.noop(f"{label} has {model.rights_text}")
        return
    before = "; ".join(f"{e.get('rights')} ({e.get('inheritance')})" for e in entries) or None
    diff = [Change(label, before, f"{model.rights_text} ({model.inheritance_text})")]
    if not exists and model.inheritance != ("None",):
        diff.insert(0, Change(model.path, None, "directory created"))
    if not exists and not create:
        host.noop(f"{model.path} does not exist yet; it is created later with its own ACL")
        return
    log_changes(host, f"Will change access on {model.path}", diff)
    if not exists and model.inheritance != ("None",):
        yield remote_call("Initialize-Directory", {"path": model.path})
    yield remote_call("Grant-PathAccess", rule_call(
        model.path, model.principal, rights=model.rights_text,
        inheritance=model.inheritance_text, propagation=model.propagation_text,
    ))
