"""Least privilege over time: the record of the rights this project granted, and the revocation
of those the inventory no longer names.

Rights the project grants are file ACEs (``acl``: host data ``iis_acls`` and the release deploy's
rules, :func:`pyinfra_iis.deploys.release.acl_rules`) and private-key readers
(``private_key_access``, certificates with ``grant_private_key_to_pools``). After they are
granted, :func:`granted_rights` writes what holds on the host into a record ON THE HOST,
:data:`GRANT_RECORD`, in a folder only SYSTEM and Administrators can open (created by
``Initialize-Directory`` with :func:`pyinfra_iis.sddl.protected_sddl`; the host's
``Get-GrantRecord`` ignores a record whose folder another account owns). ``Get-HostState`` reports
the record raw (``grant_record``), :mod:`pyinfra_iis.facts.acl_state` parses it (``granted``), and
every decision is made here:

- a recorded grant the inventory still names stays recorded;
- a recorded grant the inventory no longer names is revoked (``Revoke-PathAccess`` by SID) when
  the principal's explicit entries on that path (or key file) are still exactly what was granted;
  changed by hand since (other rights, several entries), it is left as it is and forgotten, with
  a warning; already gone (path, certificate or entry), it is forgotten;
- no record (first run after an upgrade, or an unreadable one): nothing is revoked; the record
  is written from what the inventory names and the host holds.

The record is written last, after the revocations succeeded: a run that fails before leaves
the old record, and the next run finds the revoked entries gone and forgets them. A grant made
by an operation that ran before a failure is recorded by the next run (the inventory still
names it). An entry the inventory names that already held before this project recorded it is
counted as the project's. Rights never recorded are never touched.

Record format (UTF-8 JSON)::

    {"version": 1, "grants": [
      {"kind": "path", "target": "C:\\\\sites\\\\api", "sid": "S-1-5-82-...", "principal": "IIS AppPool\\\\api",
       "rights": "ReadAndExecute", "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"},
      {"kind": "key", "target": "<THUMBPRINT>", "store": "WebHosting", "sid": "...", "principal": "...",
       "rights": "Read", "inheritance": "None", "propagation": "None"}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from pyinfra import host
from pyinfra.api import operation

from ..facts.host_state import host_data_dict, host_state
from ..iis.diff import Change, log_changes
from ..models.acl import AclRule
from ..protocol import remote_call
from ..sddl import principal_sid, protected_sddl
from ._common import warn
from .acl import _flags, explicit_entries, path_entry, same_rights
from .certificates import fact_certificate, pfx_info

#: The record of granted rights on the host (the PowerShell module's ``Get-GrantRecord`` and the
#: simulator read the same path).
GRANT_RECORD = "C:\\ProgramData\\pyinfra-iis\\grants\\granted.json"
GRANT_FOLDER = GRANT_RECORD.rsplit("\\", 1)[0]
RECORD_VERSION = 1


def path_grant(rule: AclRule | dict) -> dict[str, str]:
    """A wanted grant from an ACL rule (an ``AclRule`` or its dict)."""

    model = rule if isinstance(rule, AclRule) else AclRule.model_validate(rule)
    return {"kind": "path", "target": model.path, "principal": model.principal, "rights": model.rights_text,
            "inheritance": model.inheritance_text, "propagation": model.propagation_text}


def key_grant(thumbprint: str, store: str, principal: str) -> dict[str, str]:
    """A wanted grant of Read on a certificate's private key (what ``private_key_access`` gives)."""

    return {"kind": "key", "target": thumbprint.upper(), "store": store, "principal": principal, "rights": "Read",
            "inheritance": "None", "propagation": "None"}


def _declared(item: Any) -> bool:
    """Whether an inventory object is wanted (not marked for removal, however its model says it)."""

    return getattr(item, "ensure", "present") != "absent" and getattr(item, "state", "present") != "absent" \
        and getattr(item, "present", True) is not False


def inventory_grants(current_host: Any = None) -> list[dict[str, str]]:
    """Every grant the host's inventory names: ``iis_acls`` rules (present), Read on the private
    key of each certificate with ``grant_private_key_to_pools`` for every pool, and the release
    deploy's rules for every app of the ``release_*`` data, whichever this run releases
    (``release_only``), with the ARR mode's service account rules for an app in that mode. Both
    deploys compute the same list, so each may revoke.

    Raises:
        InventoryError: invalid host data (as the deploys would).
        OperationValueError: a PFX that cannot be opened (its thumbprint is needed).
    """

    from ..deploys.release import acl_rules, declared_release_targets
    from ..models import load_host_config

    current_host = host if current_host is None else current_host
    config = load_host_config(current_host.name, host_data_dict(current_host))
    wanted = [path_grant(rule) for rule in config.acls if rule.ensure == "present"]
    principals = [pool.principal for pool in config.app_pools if _declared(pool)]
    for cert in config.certificates:
        if cert.present and cert.grant_private_key_to_pools and principals:
            thumbprint = pfx_info(cert).thumbprint
            wanted += [key_grant(thumbprint, cert.store, principal) for principal in principals]
    for target in declared_release_targets(None if current_host is host else current_host):  # the context proxy has no truth value
        wanted += [path_grant(rule) for rule in [*acl_rules(target), *release_folder_rules(target)]]
        if target.settings.mode == "arr":  # the ARR slots' service account (deploys/arr.py): named, so never revoked
            from ..deploys.arr import service_acl_rules

            wanted += [path_grant(rule) for rule in service_acl_rules(target)]
    return wanted


def release_folder_rules(target: Any) -> list[dict[str, str]]:
    """The pool's Read & Execute on a release's ``releases`` and ``artifacts`` folders. The
    release install creates them protected, with the pool of that time in their ACL
    (``operations/release.py``, ``directory_sddl``); when the pool changes, the release deploy
    grants the new pool these rules on the existing folders (``acl`` with ``create=False``) and
    :func:`granted_rights` revokes the old pool's entries.

    Args:
        target: a :class:`pyinfra_iis.deploys.release.ReleaseTarget`.
    """

    settings = target.settings
    return [{"path": path, "principal": target.principal, "rights": "ReadAndExecute"}
            for path in (settings.releases_dir, f"{settings.root}\\artifacts")]


@dataclass
class RightsPlan:
    """What :func:`plan_rights` decided.

    Attributes:
        revoke: recorded grants to revoke, each with ``"path"`` (the folder, file or key file).
        left: recorded grants changed by hand since they were granted (left, forgotten).
        record: the new record's grants (sorted).
        old: the record read (``None``: there was none).
    """

    revoke: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)
    record: list[dict[str, Any]] = field(default_factory=list)
    old: Optional[list[dict[str, Any]]] = None

    @property
    def record_changed(self) -> bool:
        return canonical(self.record) != canonical(self.old or [])


def _norm(kind: str, target: str) -> tuple[str, str]:
    return kind, target.rstrip("\\").lower() if kind == "path" else target.upper()


def canonical(grants: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grants sorted (kind, target, SID), as the record keeps them."""

    return sorted((dict(g) for g in grants), key=lambda g: (*_norm(g["kind"], g["target"]), str(g.get("sid", "")).upper()))


def record_text(grants: Iterable[dict[str, Any]]) -> str:
    """The record file's text for ``grants``."""

    return json.dumps({"version": RECORD_VERSION, "grants": canonical(grants)}, indent=1, sort_keys=True) + "\n"


def _entries_on_host(fact: dict, grant: dict[str, Any]) -> tuple[Optional[str], Optional[list[dict]]]:
    """``(path, entries)`` of a grant's target: the folder/file or the key file, and its ACL
    entries; ``(None, None)`` when the path, the certificate or its key file is not there."""

    if grant["kind"] == "path":
        report = path_entry(fact, grant["target"])
        if not report or not report.get("exists"):
            return None, None
        return grant["target"], report.get("entries") or []
    entry = fact_certificate(fact, grant["target"], grant.get("store") or "My")
    if entry is None or not entry.get("key_path"):
        return None, None
    return entry["key_path"], entry.get("key_entries") or []


def _explicit_of_sid(entries: list[dict], sid: str) -> list[dict]:
    return [e for e in entries if not e.get("inherited") and str(e.get("type", "Allow")).lower() == "allow"
            and str(e.get("sid", "")).upper() == sid.upper()]


def _exactly(entries: list[dict], grant: dict[str, Any]) -> bool:
    """Whether ``entries`` (one principal's explicit Allow entries) are exactly ``grant``."""

    return len(entries) == 1 and same_rights(entries[0].get("rights", 0), grant["rights"]) \
        and _flags(entries[0].get("inheritance", "None")) == _flags(grant.get("inheritance", "None")) \
        and _flags(entries[0].get("propagation", "None")) == _flags(grant.get("propagation", "None"))


def plan_rights(fact: dict, wanted: Iterable[dict[str, Any]]) -> RightsPlan:
    """Decide from the fact (``granted``, ``acls``, ``certificates``) and the wanted grants
    what to revoke and what to record (see the module docstring)."""

    old = fact.get("granted")
    plan = RightsPlan(old=old)
    kept: dict[tuple, dict[str, Any]] = {}
    wanted_keys: set[tuple] = set()
    wanted_names: set[tuple] = set()
    for grant in wanted:
        key = _norm(grant["kind"], grant["target"])
        wanted_names.add((*key, grant["principal"].lower()))
        sid = principal_sid(grant["principal"])
        _, entries = _entries_on_host(fact, grant)
        mine = explicit_entries({"entries": entries or []}, grant["principal"])
        if sid is None and mine:
            sid = str(mine[0].get("sid") or "") or None
        if sid is not None:
            wanted_keys.add((*key, sid.upper()))
        if sid is not None and _exactly(mine, grant):
            kept[(*key, sid.upper())] = {**grant, "sid": sid.upper()}
    for grant in old or []:
        key = (*_norm(grant["kind"], grant["target"]), grant["sid"].upper())
        if key in wanted_keys or (*key[:2], grant["principal"].lower()) in wanted_names:
            kept.setdefault(key, grant)  # still named: recorded even while not (yet) held
            continue
        path, entries = _entries_on_host(fact, grant)
        mine = _explicit_of_sid(entries or [], grant["sid"])
        if not mine:
            continue  # gone already: forgotten
        if _exactly(mine, grant):
            plan.revoke.append({**grant, "path": path})
        else:
            plan.left.append({**grant, "path": path, "now": "; ".join(str(e.get("rights")) for e in mine)})
    plan.record = canonical(kept.values())
    return plan


def _key(grant: dict[str, Any]) -> tuple:
    return (*_norm(grant["kind"], grant["target"]), str(grant.get("sid", "")).upper(), grant.get("rights"))


def _keys(grants: Iterable[dict[str, Any]]) -> set[tuple]:
    return {_key(g) for g in grants}


def _label(grant: dict[str, Any]) -> str:
    if grant["kind"] == "key":
        return f"certificate {grant['target']} private key: {grant['principal']}"
    return f"{grant['target']}: {grant['principal']}"


def _fact_for_record(current_host: Any, wanted: list[dict[str, Any]]) -> dict:
    """The fact, read again with the paths and stores of the record and of ``wanted`` when the
    inventory's arguments do not cover them (a path the inventory no longer names, a release's
    ``releases`` folder)."""

    fact = host_state(current_host)
    grants = [*(fact.get("granted") or []), *wanted]
    paths = [g["target"] for g in grants if g["kind"] == "path" and path_entry(fact, g["target"]) is None]
    stores = sorted({g.get("store") or "My" for g in grants if g["kind"] == "key"})
    if paths or stores:
        fact = host_state(current_host, acl_paths=paths, cert_stores=stores)
    return fact


@operation()
def granted_rights(grants: Optional[Iterable[dict[str, Any]]] = None):
    """
    Revoke the rights this project granted that the inventory no longer names, and record on
    the host the rights it granted (see :mod:`pyinfra_iis.operations.rights`).

    + grants: the wanted grants (dicts from :func:`path_grant` / :func:`key_grant`); default
      every grant the host's inventory names (:func:`inventory_grants`). Give the WHOLE list:
      a recorded grant missing from it is revoked.

    Run it after the operations that grant (both ``Configure IIS`` and ``Release`` end with
    it). Nothing is revoked without a record (first run after an upgrade). ``--diff`` shows
    each revocation and the record's change.

    **Example:**

    .. code:: python

        granted_rights(name="Revoke rights no longer named")
    """

    wanted = list(grants) if grants is not None else inventory_grants(host)
    fact = _fact_for_record(host, wanted)
    if fact.get("grant_record_error"):
        warn([fact["grant_record_error"]])
    plan = plan_rights(fact, wanted)
    warn(f"{_label(g)}: left as it is ({g['now']}; {g['rights']} was granted), changed by hand since" for g in plan.left)
    if not plan.revoke and not plan.record_changed:
        host.noop(f"granted rights: {len(plan.record)} recorded, none to revoke")
        return
    changes = [Change(_label(g), g["rights"], None) for g in plan.revoke]
    old_keys, new_keys = _keys(plan.old or []), _keys(plan.record)
    revoked = _keys(plan.revoke)
    changes += [Change(f"record of granted rights: {_label(g)}", None, g["rights"]) for g in plan.record if _key(g) not in old_keys]
    changes += [Change(f"record of granted rights: {_label(g)}", g["rights"], None) for g in plan.old or []
                if _key(g) not in new_keys and _key(g) not in revoked]
    log_changes(host, "Will revoke rights the inventory no longer names" if plan.revoke else "Will record granted rights", changes)
    for grant in plan.revoke:
        yield remote_call("Revoke-PathAccess", {"path": grant["path"], "principal": grant["principal"], "sid": grant["sid"]})
    yield remote_call("Initialize-Directory", {"path": GRANT_FOLDER, "sddl": protected_sddl()})
    yield remote_call("Write-TextFile", {"path": GRANT_RECORD, "text": record_text(plan.record)})
