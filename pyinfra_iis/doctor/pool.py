"""The application pool: state, rapid-fail protection, bitness, identity, loadUserProfile, start mode.

Evidence: the pool's element in applicationHost.config (explicit attributes; IIS's schema
defaults apply otherwise: ``enable32BitAppOnWin64`` false, ``startMode`` OnDemand,
``processModel/@identityType`` ApplicationPoolIdentity, ``@loadUserProfile`` true,
``failure/@rapidFailProtection`` true), its runtime state (``Get-HostState``), and WAS events of
the System log (``Get-DoctorState``, ``events``): 5002 "Application pool '<pool>' is being
automatically disabled due to a series of failures" (rapid-fail protection), 5009/5010/5011/5013
(a worker process terminated, failed to respond, failed to shut down). Rapid-fail protection:
https://learn.microsoft.com/iis/configuration/system.applicationhost/applicationpools/add/failure;
the event ids and the pool as the events' first insertion string ("Application pool '%1' ...")
are as widely reported from WAS's System log entries [R] (the simulator's injections use the
same texts). A record Windows cannot read is reported (id 0) without losing the others.
"""

from __future__ import annotations

from .model import FAIL, OK, WARN, Check, Evidence

RAPID_FAIL_EVENT = 5002
WORKER_EVENTS = (5009, 5010, 5011, 5013)


def pool_events(evidence: Evidence, pool: str) -> list[dict]:
    """WAS events of ``pool``: the event's ``pool`` (its insertion string %1, as the module reads
    it; the message is localized), else the pool quoted in the message (an older answer)."""

    quoted = f"'{pool}'".casefold()
    events, _ = evidence.part("events")
    return [e for e in events or [] if isinstance(e, dict) and (str(e["pool"]).casefold() == pool.casefold() if e.get("pool")
                                                                 else quoted in str(e.get("message", "")).casefold())]


def event_problems(evidence: Evidence) -> list[str]:
    """Why WAS events could not be read (the part's error, or the module's id-0 entries)."""

    events, error = evidence.part("events")
    return [error] if error is not None else [str(e.get("message")) for e in events or [] if isinstance(e, dict) and e.get("id") == 0]


def check_pool(evidence: Evidence) -> list[Check]:
    """``pool.state``, ``pool.rapid_fail``, ``pool.bitness``, ``pool.identity``,
    ``pool.load_user_profile``, ``pool.start_mode`` for the release's pool."""

    pool = evidence.target.pool
    if not pool or evidence.config is None:
        return []
    element = evidence.pool_element(pool)
    key = f"iis_app_pools[name={pool}]"
    if element is None:
        return [Check("pool.state", FAIL, f"application pool {pool} does not exist", f"{key}: run deploys/site.py")]
    runtime = ((evidence.state.get("iis") or {}).get("runtime") or {}).get("app_pools") or {}
    state = next((v for k, v in runtime.items() if k.casefold() == pool.casefold()), "Unknown")
    events = pool_events(evidence, pool)
    rapid = [e for e in events if e.get("id") == RAPID_FAIL_EVENT]
    worker = [e for e in events if e.get("id") in WORKER_EVENTS]
    checks = []
    if state == "Started":
        checks.append(Check("pool.state", OK, f"{pool} is Started"))
    else:
        checks.append(Check("pool.state", FAIL, f"{pool} is {state}", f"Start-WebAppPool {pool} (after fixing why it stopped); "
                            f"{key}", symptom_of=("pool.rapid_fail",)))
    failure = element.find("failure")
    protection = (failure.get("rapidFailProtection", "true") if failure is not None else "true").lower() == "true"
    if rapid:
        last = rapid[0]
        checks.append(Check("pool.rapid_fail", FAIL, f"rapid-fail protection stopped {pool}: WAS event {RAPID_FAIL_EVENT} at "
                            f"{last.get('time')} ({len(worker)} worker failures before it)",
                            "read the stdout log (app.stdout_log) for the crash, fix the release, then Start-WebAppPool " + pool))
    elif worker:
        checks.append(Check("pool.rapid_fail", WARN, f"{len(worker)} worker process failures of {pool} recently (events "
                            f"{', '.join(str(e.get('id')) for e in worker[:5])}), protection {'on' if protection else 'off'}",
                            "read the stdout log (app.stdout_log)"))
    elif event_problems(evidence):
        checks.append(Check("pool.rapid_fail", WARN, f"could not read the WAS events: {'; '.join(event_problems(evidence))[:300]}; "
                            f"rapid-fail protection {'on' if protection else 'off'}",
                            "check with: Get-WinEvent -FilterHashtable @{LogName='System'; ProviderName='Microsoft-Windows-WAS'}"))
    else:
        checks.append(Check("pool.rapid_fail", OK, f"no WAS failure events for {pool}; rapid-fail protection {'on' if protection else 'off'}"))
    if element.get("enable32BitAppOnWin64", "false").lower() == "true":
        checks.append(Check("pool.bitness", FAIL, "enable32BitAppOnWin64=true: a 32-bit worker process loads no 64-bit "
                            "HttpPlatformHandler module (503)", f"{key}.extra_attributes: {{\"enable32BitAppOnWin64\": \"false\"}}"))
    else:
        checks.append(Check("pool.bitness", OK, "64-bit worker process"))
    model = element.find("processModel")
    identity = (model.get("identityType") if model is not None else None) or "ApplicationPoolIdentity"
    if identity == "LocalSystem":
        checks.append(Check("pool.identity", WARN, "LocalSystem: the app runs with full control of the host",
                            f"{key}.identity_type: ApplicationPoolIdentity"))
    else:
        checks.append(Check("pool.identity", OK, identity if identity != "SpecificUser" else f"SpecificUser {model.get('userName', '')}"))
    profile = (model.get("loadUserProfile", "true") if model is not None else "true").lower() == "true"
    if profile:
        checks.append(Check("pool.load_user_profile", OK, "loadUserProfile=true (TEMP and APPDATA in the pool's profile)"))
    else:
        checks.append(Check("pool.load_user_profile", WARN, "loadUserProfile=false: TEMP is C:\\Windows\\Temp and APPDATA the "
                            "default profile's; libraries writing caches there can fail", f"{key}.load_user_profile: true"))
    mode = element.get("startMode", "OnDemand")
    if mode == "AlwaysRunning":
        checks.append(Check("pool.start_mode", OK, "AlwaysRunning"))
    else:
        checks.append(Check("pool.start_mode", WARN, f"startMode={mode}: the first request after a recycle waits for Python to start",
                            f"{key}.start_mode: AlwaysRunning"))
    return checks
