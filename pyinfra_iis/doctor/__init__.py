"""``doctor``: why an app fails only under IIS, host by host, without changing anything.

From pyinfra::

    pyinfra inventories/prod.py deploys/doctor.py [--data doctor_format=json] [--data doctor_output=doctor.json]

From Python (any way to run a remote call will do; see :mod:`.evidence`)::

    from pyinfra_iis.doctor import diagnose, render_table
    checks = diagnose(call, target)        # call("Get-HostState", {...}) -> dict
    print(render_table("web01", checks))

A check is a pure function from :class:`Evidence` to :class:`Check` rows (check, status
``ok``/``warn``/``fail``, evidence, fix); one module per group: :mod:`.access` (effective
access from SDDL), :mod:`.modules` (extensions, web.config sections and locks), :mod:`.https`,
:mod:`.pool`, :mod:`.app`, :mod:`.arr` (ARR mode: rule, slots, services), :mod:`.timeouts` (and proxy headers), :mod:`.system` (firewall,
reboot, disk). ``docs/doctor.md`` lists every check with its evidence and fix.

A check whose failure follows from another failed check (``symptom_of``: the request fails
because the pool is stopped) is reported as ``warn`` "follows from ...", so that the checks that
fail are the causes.
"""

from __future__ import annotations

import json
from typing import Iterable

from .access import check_access
from .arr import check_arr
from .app import check_process, check_release, check_request, check_stdout_log
from .evidence import Call, gather, target_from_host_data
from .https import check_https
from .model import FAIL, OK, STATUSES, WARN, Check, CheckFunction, Evidence, Target, redact
from .modules import check_extensions, check_web_config_sections
from .pool import check_pool
from .system import check_firewall, check_host
from .timeouts import check_proxy_headers, check_timeouts

__all__ = ["CHECKS", "Check", "Evidence", "FAIL", "OK", "STATUSES", "Target", "WARN", "diagnose", "failed",
           "gather", "render_json", "render_table", "run_checks", "target_from_host_data"]

#: Every check group, in the order of the table.
CHECKS: tuple[CheckFunction, ...] = (
    check_extensions, check_web_config_sections, check_access, check_pool, check_https, check_release,
    check_arr, check_process, check_stdout_log, check_timeouts, check_proxy_headers, check_firewall, check_host, check_request,
)


def _explains(cause: str, patterns: tuple[str, ...]) -> bool:
    return any(p == "*" or cause == p or (p.endswith(".") and cause.startswith(p)) for p in patterns)


def run_checks(evidence: Evidence, checks: Iterable[CheckFunction] = CHECKS) -> list[Check]:
    """Run ``checks`` on ``evidence``; a failing symptom of another failure becomes ``warn``.

    A check function that raises is reported as a failed ``doctor.<function>`` row (the doctor
    never stops on one broken check). Every row's evidence and fix is redacted of the release's
    secret values (``Target.secrets``) before anything prints or writes it."""

    rows: list[Check] = []
    for function in checks:
        try:
            rows.extend(function(evidence))
        except Exception as exc:  # noqa: BLE001 - one row per broken check, the others still run
            rows.append(Check(f"doctor.{function.__name__}", FAIL, f"the check raised {type(exc).__name__}: {exc}", "report a bug"))
    for row in rows:
        row.evidence, row.fix = redact(row.evidence, evidence.target.secrets), redact(row.fix, evidence.target.secrets)
    # Causes first: a fail without symptom_of; then a symptom is a cause unless a cause explains
    # it; a row that any failure explains ("*", the request) is decided last.
    causes = [row.check for row in rows if row.status == FAIL and not row.symptom_of]
    specific = [row for row in rows if row.status == FAIL and row.symptom_of and "*" not in row.symptom_of]
    for _ in range(2):
        for row in specific:
            found = [c for c in causes if c != row.check and _explains(c, row.symptom_of)]
            if found and row.status == FAIL:
                row.status = WARN
                row.evidence += f" (follows from {', '.join(found)})"
        causes += [row.check for row in specific if row.status == FAIL and row.check not in causes]
    for row in rows:
        if row.status == FAIL and "*" in row.symptom_of:
            found = [c for c in causes if c != row.check]
            if found:
                row.status = WARN
                row.evidence += f" (follows from {', '.join(found)})"
    return rows


def diagnose(call: Call, target: Target) -> list[Check]:
    """Read the host through ``call`` (two read-only remote calls, three in ARR mode) and run every check."""

    return run_checks(gather(call, target))


def failed(checks: Iterable[Check]) -> list[Check]:
    """The rows whose status is ``fail``."""

    return [c for c in checks if c.status == FAIL]


def render_table(host: str, checks: list[Check]) -> str:
    """One table for one host: check, status, evidence and, for a row that is not ok, its fix
    (``-> fix: ...``). Nothing is cut: the JSON output has the same text."""

    first = max([len("check")] + [len(c.check) for c in checks])
    lines = [f"doctor {host}: {sum(c.status == OK for c in checks)} ok, {sum(c.status == WARN for c in checks)} warn, "
             f"{sum(c.status == FAIL for c in checks)} fail",
             f"  {'check':<{first}}  status  evidence  -> fix"]
    for c in checks:
        fix = f"  -> fix: {c.fix}" if c.fix and c.status != OK else ""
        lines.append(f"  {c.check:<{first}}  {c.status.upper():<6}  {c.evidence}{fix}")
    return "\n".join(lines)


def render_json(host: str, checks: list[Check]) -> str:
    """``{"host", "ok": no check failed, "counts", "checks": [{check, status, evidence, fix}]}`` on one line."""

    return json.dumps({"host": host, "ok": not failed(checks),
                       "counts": {status: sum(c.status == status for c in checks) for status in STATUSES},
                       "checks": [c.as_dict() for c in checks]}, sort_keys=False)
