"""The app: the release the site serves, its process, its restarts, its stdout log, one request.

Evidence: the site's physicalPath (applicationHost.config), the release root's state and stdout
log listing (``Get-HostState``, ``releases``), and from ``Get-DoctorState``: ``processes`` (the
python.exe processes whose command line names the release root, with start times), ``log`` (the
newest stdout log's last bytes), ``request`` (one GET of the health path through the site's
binding, with the binding's Host header, as a client would send it) and ``web_config``.
"""

from __future__ import annotations

import ntpath
import re
from datetime import datetime, timedelta, timezone

from .model import FAIL, OK, WARN, Check, Evidence
from .webconfig import http_platform

#: More app starts than this within :data:`RESTART_WINDOW_MINUTES` is reported (warn): a crash loop.
RESTARTS_WARN = 5
RESTART_WINDOW_MINUTES = 10
_LOG_STAMP = re.compile(r"_(\d{14})_\d+\.log$", re.IGNORECASE)
#: Characters shown of each of the stdout log's last lines (the release's secret values are
#: redacted from every row: :func:`pyinfra_iis.doctor.run_checks`).
LOG_LINE_CHARS = 200
#: The request's failure follows from any other failed check.
ANY_OTHER = ("*",)


def _release_report(evidence: Evidence) -> dict:
    releases = evidence.state.get("releases") or {}
    root = evidence.target.root or ""
    return next((v for k, v in releases.items() if k.casefold() == root.casefold()), {}) or {}


def check_release(evidence: Evidence) -> list[Check]:
    """``app.release``: the site serves a complete release, the one release-state.json names."""

    target = evidence.target
    if not target.site or not target.root or evidence.config is None:
        return []
    if target.arr:  # the release is the active slot's, not the site's physicalPath (wwwroot)
        from .arr import check_release as arr_release

        return arr_release(evidence)
    path = evidence.physical_path()
    report = _release_report(evidence)
    current = report.get("current")
    folder = ntpath.basename(path.rstrip("\\")) if path else ""
    in_releases = bool(path) and ntpath.dirname(path.rstrip("\\")).casefold() == f"{target.root}\\releases".casefold()
    complete = {v["version"] for v in report.get("versions") or [] if v.get("complete")}
    fix = "pyinfra INVENTORY deploys/release.py --data release_version=<version> (or deploys/rollback.py)"
    if not in_releases:
        return [Check("app.release", FAIL, f"site {target.site} serves {path}, not a release under {target.root}\\releases", fix)]
    if folder not in complete:
        return [Check("app.release", FAIL, f"site {target.site} serves {path}, which is not a complete release "
                      f"(complete: {', '.join(sorted(complete)) or 'none'})", fix)]
    if current != folder:
        return [Check("app.release", WARN, f"site serves {folder} but release-state.json names {current}", fix)]
    return [Check("app.release", OK, f"site {target.site} serves release {folder} ({path})")]


def _started(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def check_process(evidence: Evidence) -> list[Check]:
    """``app.process`` (is python.exe of the served release running, since when) and
    ``app.restarts`` (app starts within the last hour, from the stdout log names)."""

    target = evidence.target
    if not target.site or not target.root or evidence.config is None or target.arr:
        return []  # ARR mode: no process under HttpPlatformHandler, no stdout log per start (arr.service instead)
    release = evidence.physical_path() or target.root
    processes, error = evidence.part("processes")
    running = [p for p in processes or [] if release.casefold() in str(p.get("command_line", "")).casefold()]
    checks = []
    if error is not None:
        checks.append(Check("app.process", WARN, f"could not read the processes: {error}", "check with: Get-CimInstance Win32_Process"))
    elif running:
        first = running[0]
        started = _started(first.get("started"))
        age = f", up {int((evidence.now - started).total_seconds())} s" if started else ""
        checks.append(Check("app.process", OK, f"pid {first.get('pid')} started {first.get('started')}{age}: {first.get('name')}"))
    else:
        checks.append(Check("app.process", FAIL, f"no python process runs from {release}", "see app.stdout_log; "
                            f"Restart-WebAppPool {target.pool}", symptom_of=ANY_OTHER))
    logs = _release_report(evidence).get("logs") or []
    since = (evidence.now - timedelta(minutes=RESTART_WINDOW_MINUTES)).strftime("%Y%m%d%H%M%S")
    recent = [log["name"] for log in logs if (m := _LOG_STAMP.search(log.get("name", ""))) and m.group(1) >= since]
    if len(recent) > RESTARTS_WARN:
        checks.append(Check("app.restarts", WARN, f"{len(recent)} app starts in the last {RESTART_WINDOW_MINUTES} minutes "
                            "(one stdout log each): a crash loop?", "read app.stdout_log for the crash"))
    else:
        checks.append(Check("app.restarts", OK, f"{len(recent)} app start(s) in the last {RESTART_WINDOW_MINUTES} minutes"))
    return checks


def check_stdout_log(evidence: Evidence) -> list[Check]:
    """``app.stdout_log``: logging on, and the last lines of the newest stdout log."""

    target = evidence.target
    if not target.site or evidence.config is None:
        return []
    platform = http_platform(evidence)
    fix = "the release's web.config (stdoutLogEnabled, stdoutLogFile under release_app.root\\logs)"
    if platform is None:
        return []
    if not platform.get("stdoutLogEnabled"):
        return [Check("app.stdout_log", FAIL, "stdoutLogEnabled is false: a crash at start leaves no trace", fix)]
    log, error = evidence.part("log")
    if error is not None:
        return [Check("app.stdout_log", WARN, f"could not read the newest stdout log in {target.logs_dir}: {error}", fix)]
    if not log:
        return [Check("app.stdout_log", FAIL, f"no stdout log in {target.logs_dir}: the app never started, or HttpPlatformHandler "
                      "cannot create the file (see access.logs)", fix, symptom_of=("access.logs", "pool.", "module.", "webconfig."))]
    lines = [line for line in str(log.get("tail") or "").splitlines() if line.strip()]
    if len(lines) > 1 and isinstance(log.get("size"), int) and log["size"] > len(str(log.get("tail") or "").encode("utf-8")):
        lines = lines[1:]  # the tail starts inside a line (and maybe inside a secret): not shown
    lines = [line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + "..." for line in lines[-5:]]
    modified = _started(log.get("modified"))
    if not lines and modified is not None and (evidence.now - modified).total_seconds() < 60:
        return [Check("app.stdout_log", OK, f"{log.get('name')} is empty, written {log.get('modified')} (the process is starting)")]
    if not lines:
        return [Check("app.stdout_log", WARN, f"{log.get('name')} is empty (modified {log.get('modified')}): is PYTHONUNBUFFERED set?",
                      fix, symptom_of=("runtime.unbuffered",))]
    return [Check("app.stdout_log", OK, f"{log.get('name')} ({log.get('size')} bytes): " + " | ".join(lines))]


def check_request(evidence: Evidence) -> list[Check]:
    """``app.request``: one request through the site's binding, and what it answered."""

    request = evidence.doctor.get("request")
    if not evidence.target.site or request is None:
        return []
    url = f"{request.get('url')} (Host: {request.get('host')})"
    status = request.get("status")
    body = " ".join(str(request.get("body") or "").split())[:120]
    if status == 200:
        served = ntpath.basename((evidence.physical_path() or "").rstrip("\\"))
        if evidence.target.arr:  # ARR mode: the active slot's release answers
            from .arr import active

            served = active(evidence)[1] or ""
        release = request.get("release")
        from_served = not served or release == served or f'"{served}"' in str(request.get("body") or "")
        if evidence.target.root and (release or '"version"' in str(request.get("body") or "")) and not from_served:
            return [Check("app.request", WARN, f"GET {url} -> 200 from release {release or 'in the body'}, but the site serves {served}: "
                          "an old process still answers?", "see arr.rule_target" if evidence.target.arr else f"Restart-WebAppPool {evidence.target.pool}")]
        return [Check("app.request", OK, f"GET {url} -> 200 {body}")]
    got = f"{status} {body}" if status is not None else f"no answer: {request.get('error')}"
    return [Check("app.request", FAIL, f"GET {url} -> {got}", "the failing checks above; app.stdout_log", symptom_of=ANY_OTHER)]
