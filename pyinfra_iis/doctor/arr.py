"""The doctor in ARR reverse-proxy mode (``release_app.mode: arr``, docs/hosting-modes.md).

In this mode the site's physicalPath is an empty ``<root>\\wwwroot``, the URL Rewrite rule
``pyinfra-iis-arr`` is in applicationHost.config under ``<location path="<site>">`` (no
web.config), and the app runs as two WinSW services (blue and green slots, Uvicorn on loopback
ports) whose active one release-state.json names (``active_slot``, ``slots``). The mode is
known from the inventory (:attr:`Target.arr <pyinfra_iis.doctor.model.Target.arr>`) and
confirmed from the host (``arr.mode``).

Evidence: the rule, ``system.webServer/proxy`` and ``rewrite/allowedServerVariables`` from
``Get-HostState`` (the same converted fact :mod:`pyinfra_iis.operations.arr` plans from), the
release state's ``active_slot``/``slots``, ``Get-AppServiceState`` of the two services, and
``Get-DoctorState`` (ACLs, the request through the binding). No host function of its own.

Checks: ``arr.mode``, ``arr.rule_target``, ``arr.service[<slot>]``, ``access.*`` for the
services' account, and the ARR forms of ``app.release``, ``timeouts.arr_proxy`` and
``proxy.headers``. The timeout rules are :func:`pyinfra_iis.models.arr.check_arr_timeouts`,
run on the release settings with the host's ``proxy/@timeout``.
"""

from __future__ import annotations

from typing import Any

from ..iis import config
from ..iis.defaults import PROXY, SERVER_VARIABLES
from ..models.arr import SLOTS, check_arr_timeouts, other_slot
from ..models.types import Duration
from ..operations.arr import FORWARDED_VARIABLES, RULE_NAME, RULES, rule_target_port, wwwroot
from ..release import services
from .access import AUTHENTICATED_USERS, EVERYONE, READ, READ_EXECUTE, SERVICE, WRITE_FOLDER, path_check
from .model import FAIL, OK, WARN, Check, Evidence
from .webconfig import timespan_seconds

#: The services' account (release/services.py) and the SIDs of its token.
SERVICE_IDENTITY = "NT AUTHORITY\\LOCAL SERVICE"
SERVICE_TOKEN = {services.SERVICE_ACCOUNT_SID, EVERYONE, AUTHENTICATED_USERS, SERVICE}
#: Evidence of an HttpPlatformHandler-only check that ARR mode leaves out or passes.
NOT_ON_PATH = "ARR mode: not on the request path"
FIX_RELEASE = "pyinfra INVENTORY deploys/release.py --data release_version=<version> (or deploys/rollback.py)"


def service_names(target: Any) -> dict[str, str]:
    """``{slot: WinSW service id}`` of the target's release (``pyinfra-iis-<app>-<slot>``)."""

    return {slot: services.service_name(target.settings, slot) for slot in SLOTS}


def release_state(evidence: Evidence) -> dict[str, Any]:
    """The release root's converted state (``facts/release_state.py``): ``current``,
    ``active_slot``, ``slots``, ``versions``..."""

    root = evidence.target.root or ""
    releases = evidence.state.get("releases") or {}
    return next((v for k, v in releases.items() if k.casefold() == root.casefold()), {}) or {}


def active(evidence: Evidence) -> tuple[str | None, str | None]:
    """``(active slot, the version it runs)`` from release-state.json."""

    report = release_state(evidence)
    slot = report.get("active_slot")
    return slot, (report.get("slots") or {}).get(slot) if slot else None


def arr_paths(evidence: Evidence, python: str | None) -> dict[str, str | None]:
    """The access paths in ARR mode: the active slot's release and venv, ``wwwroot\\web.config``,
    the base Python and the services' log folder."""

    settings = evidence.target.settings
    _, version = active(evidence)
    release = f"{settings.root}\\releases\\{version}" if version else None
    return {"release": release, "venv": f"{release}\\venv" if release else None,
            "web_config": f"{wwwroot(settings)}\\web.config", "python": python, "logs": services.service_logs_dir(settings)}


def check_arr_access(evidence: Evidence) -> list[Check]:
    """``access.*`` in ARR mode: LOCAL SERVICE (the services' account) reads the active release,
    its venv and the base Python and writes ``<root>\\logs\\services``; the pool reads the
    site's ``wwwroot`` (``access.web_config``: IIS reads configuration from it)."""

    from .access import pool_token

    paths = arr_paths(evidence, _python(evidence))
    rules = "release_app.root (the ARR release deploy grants LOCAL SERVICE ReadAndExecute)"
    token, identity = SERVICE_TOKEN, SERVICE_IDENTITY
    pool, pool_identity = pool_token(evidence, evidence.target.pool or "")
    folder = wwwroot(evidence.target.settings)
    return [
        path_check(evidence, "access.app_folder", paths["release"], READ_EXECUTE, "app folder", rules, "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.venv", paths["venv"], READ_EXECUTE, "venv", rules, "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.python", paths["python"], READ_EXECUTE, "base Python", "release_python.target_dir (the release "
                   "deploy grants ReadAndExecute; never under a user profile)", "(OI)(CI)RX", token, identity),
        path_check(evidence, "access.web_config", folder, READ, "site wwwroot", "release_app.root (the ARR release deploy grants "
                   "the pool ReadAndExecute on <root>\\wwwroot)", "(OI)(CI)RX", pool, pool_identity),
        path_check(evidence, "access.logs", paths["logs"], WRITE_FOLDER, "service log folder", "release_app.root (the ARR release "
                   "deploy grants LOCAL SERVICE Modify on <root>\\logs\\services)", "(OI)(CI)M", token, identity, child_files=True),
    ]


def _python(evidence: Evidence) -> str | None:
    entry = (evidence.state.get("pythons") or {}).get(evidence.target.python_version or "") or {}
    return entry["target_dir"] if entry.get("installed") and entry.get("target_dir") else evidence.target.python_dir


def _rule(evidence: Evidence) -> Any:
    section = config.section(evidence.state.get("iis"), RULES, location=evidence.target.site)
    return config.find_item(section, "rule", {"name": RULE_NAME})


def check_arr(evidence: Evidence) -> list[Check]:
    """``arr.mode`` (the host confirms the inventory's mode: the site's rule in applicationHost.config,
    ARR in release-state.json), ``arr.rule_target`` (the rule proxies to the active slot's port),
    ``arr.service[<slot>]`` (the active slot's service Running; the idle one's state reported)."""

    target = evidence.target
    if not target.site or evidence.config is None:
        return []
    if not target.arr:  # the inventory says HttpPlatformHandler: the host must not front the site with our ARR rule
        if _rule(evidence) is None:
            return []
        return [Check("arr.mode", FAIL, f"release_app.mode is {target.mode} but applicationHost.config holds rule {RULE_NAME} in "
                      f"<location path=\"{target.site}\">: requests go to a slot service, not to HttpPlatformHandler",
                      "release_app.mode: arr (with its arr settings), or remove the rule: appcmd clear config "
                      f"\"{target.site}\" -section:system.webServer/rewrite/rules -commit:apphost")]
    arr = target.settings.arr
    report = release_state(evidence)
    slot, version = active(evidence)
    port = rule_target_port(evidence.state, target.site)
    checks = []
    if _rule(evidence) is None or port is None:
        checks.append(Check("arr.mode", FAIL, f"release_app.mode is arr but applicationHost.config has no rule {RULE_NAME} proxying to "
                            f"127.0.0.1 in <location path=\"{target.site}\">: the site serves its empty wwwroot", FIX_RELEASE))
    elif slot not in SLOTS:
        checks.append(Check("arr.mode", FAIL, f"rule {RULE_NAME} proxies to 127.0.0.1:{port}, but release-state.json names no active "
                            f"slot (active_slot={slot!r}, mode={report.get('mode') or report.get('current') and 'httpplatform'})",
                            FIX_RELEASE))
    else:
        checks.append(Check("arr.mode", OK, f"rule {RULE_NAME} in <location path=\"{target.site}\">, release-state.json: "
                            f"active slot {slot} runs {version}"))
    if port is not None and slot in SLOTS:
        expected = arr.port(slot)
        if port == expected:
            checks.append(Check("arr.rule_target", OK, f"rule proxies to 127.0.0.1:{port}, the {slot} slot's port (active)"))
        else:
            which = f"the idle {other_slot(slot)} slot's port" if port == arr.port(other_slot(slot)) else "no slot's port"
            checks.append(Check("arr.rule_target", FAIL, f"rule proxies to 127.0.0.1:{port}, {which}; the active slot {slot} "
                                f"(release {version}) listens on {expected}", f"release_app.arr.{slot}_port; switch back: "
                                f"pyinfra INVENTORY deploys/release.py --data release_version={version}"))
    states, error = evidence.part("services")
    states, names = states or {}, service_names(target)
    for one in SLOTS:
        name, state = names[one], states.get(names[one])
        runs = (report.get("slots") or {}).get(one)
        if error is not None:
            checks.append(Check(f"arr.service[{one}]", WARN, f"could not read the state of {name}: {error}", f"check with: Get-Service {name}"))
        elif one == slot:
            if state == "Running":
                checks.append(Check(f"arr.service[{one}]", OK, f"{name} is Running (active slot, release {runs}, port {arr.port(one)})"))
            else:
                checks.append(Check(f"arr.service[{one}]", FAIL, f"{name} is {state or 'not installed'}: the active slot does not serve "
                                    f"(release {runs}, port {arr.port(one)})", f"Start-Service {name}; its log: "
                                    f"{services.service_logs_dir(target.settings)}\\{name}.err.log"))
        else:
            checks.append(Check(f"arr.service[{one}]", OK, f"{name} is {state or 'not installed'} (idle slot"
                                f"{', release ' + runs if runs else ''}, port {arr.port(one)})"))
    return checks


def check_release(evidence: Evidence) -> list[Check]:
    """``app.release`` in ARR mode: the active slot runs a complete release, the current one."""

    target = evidence.target
    slot, version = active(evidence)
    report = release_state(evidence)
    complete = {v["version"] for v in report.get("versions") or [] if v.get("complete")}
    if not version:
        return [Check("app.release", FAIL, f"release-state.json under {target.root} names no release in an active slot", FIX_RELEASE,
                      symptom_of=("arr.mode",))]
    if version not in complete:
        return [Check("app.release", FAIL, f"the {slot} slot runs {version}, which is not a complete release under {target.root}\\releases "
                      f"(complete: {', '.join(sorted(complete)) or 'none'})", FIX_RELEASE)]
    if report.get("current") != version:
        return [Check("app.release", WARN, f"the {slot} slot runs {version} but release-state.json's current is "
                      f"{report.get('current')}", FIX_RELEASE)]
    return [Check("app.release", OK, f"the active {slot} slot serves release {version} ({target.root}\\releases\\{version})")]


def proxy_timeout(evidence: Evidence) -> Check:
    """``timeouts.arr_proxy`` in ARR mode: ARR enabled, and the host's ``proxy/@timeout`` lines up
    with the release's Uvicorn ``timeout_keep_alive``, ``timeout_graceful_shutdown``, ``arr.drain``
    and ``arr.stop_timeout`` by :func:`~pyinfra_iis.models.arr.check_arr_timeouts` (the rules the
    inventory is validated with), and equals the inventory's ``arr.proxy_timeout``."""

    settings = evidence.target.settings
    attributes = (config.section(evidence.state.get("iis"), PROXY) or {}).get("attributes") or {}
    enabled = str(attributes.get("enabled", "false")).lower() == "true"
    text = attributes.get("timeout", "00:02:00")
    fix = "release_app.arr.proxy_timeout (the release deploy writes proxy/@timeout), then pyinfra INVENTORY deploys/release.py"
    if not enabled:
        return Check("timeouts.arr_proxy", FAIL, "ARR mode but ARR's proxy is disabled (proxy/@enabled=false): the rule answers 404 / 502",
                     "iis_server.proxy.enabled: true; or run deploys/release.py")
    seconds = timespan_seconds(text)
    if seconds is None:
        return Check("timeouts.arr_proxy", FAIL, f"proxy/@timeout={text} is not a time span", fix)
    on_host = settings.model_copy(update={"arr": settings.arr.model_copy(update={"proxy_timeout": Duration(int(seconds))})})
    try:
        check_arr_timeouts(on_host)
    except ValueError as exc:
        return Check("timeouts.arr_proxy", FAIL, f"proxy/@timeout={text} on the host: {str(exc).replace('arr.proxy_timeout', 'proxy/@timeout')}",
                     fix)
    wanted = settings.arr.proxy_timeout.seconds
    lined = (f"timeout_keep_alive {settings.timeout_keep_alive.seconds} s, drain {settings.arr.drain.seconds} s + graceful shutdown "
             f"{settings.timeout_graceful_shutdown.seconds} s, stop_timeout {settings.arr.stop_timeout.seconds} s")
    if seconds != wanted:
        return Check("timeouts.arr_proxy", WARN, f"proxy/@timeout={text} ({seconds:g} s), the inventory's "
                     f"arr.proxy_timeout is {wanted} s (both line up with {lined})", fix)
    return Check("timeouts.arr_proxy", OK, f"ARR proxy enabled, timeout={text} ({seconds:g} s) lines up with {lined}")


def proxy_headers(evidence: Evidence) -> list[Check]:
    """``proxy.headers`` in ARR mode: the server variables the site's rule sets (X-Forwarded-Proto
    and -Host) are allow-listed at server level (else every request answers 500.50), and the rule
    sets both."""

    allowed = {str(config.get_attribute(item, "name") or "").upper()
               for item in config.items(config.section(evidence.state.get("iis"), SERVER_VARIABLES), "add")}
    holder = config.child(_rule(evidence), "serverVariables")
    used = sorted({str(config.get_attribute(item, "name") or "").upper() for item in config.items(holder, "set")})
    missing = [name for name in sorted(set(used) | set(FORWARDED_VARIABLES)) if name not in allowed and name in used]
    if missing:
        return [Check("proxy.headers", FAIL, f"rule {RULE_NAME} sets {', '.join(missing)}, not allow-listed at server level "
                      f"(rewrite/allowedServerVariables): every request answers 500.50",
                      f"iis_server.allowed_server_variables: add {', '.join(missing)} (or run deploys/release.py)")]
    unset = [name for name in FORWARDED_VARIABLES if name not in used]
    if unset:
        return [Check("proxy.headers", WARN, f"rule {RULE_NAME} does not set {', '.join(unset)}: the app "
                      "builds URLs with the wrong scheme or host", "pyinfra INVENTORY deploys/release.py (rewrites the whole rule)")]
    return [Check("proxy.headers", OK, f"rule {RULE_NAME} sets {', '.join(used)}; all allow-listed (the service XML has uvicorn trust them from 127.0.0.1 only)")]
