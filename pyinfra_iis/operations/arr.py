"""The ARR reverse-proxy mode of a release: blue/green slots as Windows services behind a URL
Rewrite rule proxied by ARR (docs/hosting-modes.md; models: :mod:`pyinfra_iis.models.arr`).

A release (:func:`arr_release_switched`) goes into the IDLE slot and is served only once healthy:

1. ``Write-TextFile`` the slot's WinSW XML (``release/services.py``; sent as a ``Secret``
   when it holds app secrets), ``Stop-AppService`` the idle slot (normally already stopped),
   ``Install-AppService`` (the pinned wrapper, its SHA-256 checked on the host);
2. ``Invoke-Program``: the release's start check (``release/startcheck.py``, as
   ``Switch-Release``'s ``preflight``): an app that cannot import or answer is refused in
   seconds, before its service starts (uvicorn's multiprocess supervisor keeps the service
   running while its workers die, so the health wait would last ``health_deadline``); then
   ``Start-AppService``: start, then health-check the slot DIRECTLY on
   ``http://127.0.0.1:<slot port><health path>`` from the host, with the site's host name and
   the release version expected (``X-Release-Version``);
3. ONE ``Set-IisConfig``: the rewrite rule's target becomes the slot's port (on a first release
   the whole rule, ARR's ``system.webServer/proxy`` settings, the allow-listed server variables
   and the site's physicalPath, in the same commit);
4. ``Write-TextFile`` release-state.json (``current``/``previous``/``history`` as in the
   HttpPlatformHandler mode, plus ``active_slot`` and ``slots``);
5. drain: the old slot keeps running ``arr.drain`` seconds for the requests it accepted, then
   ``Stop-AppService`` (WinSW: Ctrl+C, Uvicorn's graceful shutdown, kill after ``stoptimeout``).

A failure in 1-3 stops the new slot and leaves the rule, so the old slot keeps serving; the
history records the failed attempt. The active slot is read from the rewrite rule itself (the
truth IIS serves from), the version of each slot from release-state.json.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Optional

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, operation
from pyinfra.api.exceptions import OperationError

from ..facts.host_state import host_state
from ..iis import config
from ..iis.compare import differing
from ..iis.defaults import PROXY, PROXY_ATTRS, SERVER_VARIABLES, SITES
from ..iis.diff import Change, log_changes
from ..iis.edits import Edit, attribute_edits, child_step, item_step, set_edit
from ..models.arr import ArrSettings, SLOTS, other_slot
from ..models.extensions import HttpsSource, UncSource
from ..models.release import ReleaseSettings
from ..models.server import ProxySettings
from ..models.site import Site
from ..protocol import Secret, remote_call, secret_digest
from ..release import services
from ..release.startcheck import start_check
from ..sddl import ADMINISTRATORS, SYSTEM, app_pool_sid, protected_sddl
from ._common import ReleaseStepError, call_host, controller_file, host_step, iis_of, validated
from .release import HEALTHY_STATUS, _version, complete_versions, health_check, release_report, revision_name, revision_of

#: The rewrite rule's section and name (under ``<location path="<site>">``).
RULES = "system.webServer/rewrite/rules"
RULE_NAME = "pyinfra-iis-arr"
#: Server variables the rule sets (allow-listed at server level, ``allowedServerVariables``).
#: ``{CACHE_URL}`` starts with the scheme the client used (``https://...``): the condition
#: captures it, so one rule serves http and https bindings.
FORWARDED_VARIABLES = {"HTTP_X_FORWARDED_PROTO": "{C:1}", "HTTP_X_FORWARDED_HOST": "{HTTP_HOST}"}
SCHEME_CONDITION = {"input": "{CACHE_URL}", "pattern": "^(https?)://"}


def wwwroot(settings: ReleaseSettings) -> str:
    """``<root>\\wwwroot``: the site's physicalPath in ARR mode, an empty folder (IIS needs an
    existing root to read configuration from; the app is not served from it)."""

    return f"{settings.root}\\wwwroot"


def target_url(port: int) -> str:
    """The rewrite target of a slot: ``http://127.0.0.1:<port>/{R:1}``."""

    return f"http://127.0.0.1:{port}/{{R:1}}"


def rule_target_port(fact: dict, site: str) -> Optional[int]:
    """The port the site's ARR rule proxies to now, or ``None`` (no rule, or not ours)."""

    section = config.section(iis_of(fact), RULES, location=site)
    action = config.child(config.find_item(section, "rule", {"name": RULE_NAME}), "action")
    url = config.get_attribute(action, "url") or ""
    prefix = "http://127.0.0.1:"
    if not url.startswith(prefix):
        return None
    digits = url[len(prefix):].split("/", 1)[0]
    return int(digits) if digits.isdigit() else None


def active_slot(fact: dict, model: ReleaseSettings, site: str) -> Optional[str]:
    """The slot the rewrite rule points at (``blue``/``green``), or ``None``."""

    port = rule_target_port(fact, site)
    arr = model.arr
    return next((slot for slot in SLOTS if arr is not None and arr.port(slot) == port), None)


def proxy_edits(arr: ArrSettings, iis: dict | None) -> tuple[list[Edit], list[Change]]:
    """Edits of ARR's ``system.webServer/proxy`` (enabled, ``timeout`` = ``arr.proxy_timeout``,
    preserveHostHeader true, reverseRewriteHostInResponseHeaders false, no port in
    X-Forwarded-For) and the missing allow-listed server variables; only what differs."""

    proxy = ProxySettings(timeout=arr.proxy_timeout)
    changes, diff = differing(config.section(iis, PROXY), proxy.config_attributes(), PROXY_ATTRS, label=PROXY)
    edits = attribute_edits(PROXY, [], changes)
    variables = config.section(iis, SERVER_VARIABLES)
    for name in FORWARDED_VARIABLES:
        if config.find_item(variables, "add", {"name": name}) is None:
            edits.append(set_edit(SERVER_VARIABLES, [item_step("add", name=name)]))
            diff.append(Change(f"{SERVER_VARIABLES}: {name}", None, "allowed"))
    return edits, diff


def rule_edits(site: str, port: int, whole: bool) -> list[Edit]:
    """Edits of the site's rewrite rule: with ``whole``, the rule itself (match, condition,
    server variables, action); else only the action's target (the switch)."""

    rule = [item_step("rule", name=RULE_NAME)]
    action = set_edit(RULES, [*rule, child_step("action")], {"type": "Rewrite", "url": target_url(port)}, location=site)
    if not whole:
        return [action]
    edits = [set_edit(RULES, rule, {"stopProcessing": "true"}, location=site),
             set_edit(RULES, [*rule, child_step("match")], {"url": "(.*)"}, location=site),
             set_edit(RULES, [*rule, child_step("conditions"), item_step("add", **SCHEME_CONDITION)], {}, location=site)]
    edits += [set_edit(RULES, [*rule, child_step("serverVariables"), item_step("set", name=name)], {"value": value}, location=site)
              for name, value in FORWARDED_VARIABLES.items()]
    return [*edits, action]


def rule_complete(fact: dict, site: str) -> bool:
    """Whether the site's rule has every part :func:`rule_edits` writes (else it is rewritten)."""

    section = config.section(iis_of(fact), RULES, location=site)
    rule = config.find_item(section, "rule", {"name": RULE_NAME})
    if rule is None or config.get_attribute(config.child(rule, "match"), "url") != "(.*)":
        return False
    if config.find_item(config.child(rule, "conditions"), "add", SCHEME_CONDITION) is None:
        return False
    holder = config.child(rule, "serverVariables")
    return all(config.get_attribute(config.find_item(holder, "set", {"name": n}), "value") == v for n, v in FORWARDED_VARIABLES.items())


def physical_path_edit(site: str, path: str) -> Edit:
    """The site's root virtual directory → ``path``."""

    return set_edit(SITES, [item_step("site", name=site), item_step("application", path="/"), item_step("virtualDirectory", path="/")],
                    {"physicalPath": path})


def directory_calls(settings: ReleaseSettings, app_pool: Optional[str]) -> list:
    """``Initialize-Directory`` of ``services`` (the service account Read & Execute: WinSW reads
    the XML as the service; nobody else, the XML holds the app secrets), ``logs\\services``
    (the service account Modify), ``wwwroot`` (the pool Read & Execute), then each slot's folder
    under ``services`` (inheriting its ACL)."""

    account = services.SERVICE_ACCOUNT_SID
    pool = [app_pool_sid(app_pool)] if app_pool else []
    folders = [(services.services_dir(settings), protected_sddl((SYSTEM, ADMINISTRATORS), read_execute=[account])),
               (services.service_logs_dir(settings), protected_sddl((SYSTEM, ADMINISTRATORS), modify=[account])),
               (wwwroot(settings), protected_sddl((SYSTEM, ADMINISTRATORS), read_execute=pool))]
    calls = [remote_call("Initialize-Directory", {"path": path, "sddl": sddl}) for path, sddl in folders]
    # The slots' folders inherit the services folder's ACL (Write-TextFile does not create folders).
    return calls + [remote_call("Initialize-Directory", {"path": services.slot_dir(settings, slot)}) for slot in SLOTS]


def wrapper_source(arr: ArrSettings, settings: ReleaseSettings) -> tuple[str, Optional[str]]:
    """``(source on the host, controller file to upload or None)``: a controller file goes to
    ``<root>\\services\\WinSW-<sha256[:12]>.exe``; a URL or UNC path is fetched by the host."""

    source = arr.winsw.source
    if isinstance(source, (HttpsSource, UncSource)):
        return str(source), None
    local = controller_file(source, "settings", "arr.winsw.source")
    return f"{services.services_dir(settings)}\\WinSW-{arr.winsw.sha256[:12]}.exe", str(local)


def state_text(report: dict, version: str, ok: bool, slot: str, slots: dict[str, Optional[str]],
               entry_point: Optional[str] = None) -> str:
    """release-state.json after an attempt to serve ``version`` from ``slot`` (``ok``: it
    serves): ``current``/``previous``/``history`` as ``operations.release.state_texts`` writes
    them, plus ``mode``, ``active_slot`` and ``slots`` ({slot: version}).

    A rollback passes ``report["rollback_from"]`` (the release it leaves): as in the
    HttpPlatformHandler mode the success state records it as ``rolled_back_from`` (its history
    entry gets ``"rollback": true``), which makes a retried unnamed rollback a no-op; any other
    successful switch clears it, a failed one keeps what the state had.

    ``entry_point`` (the app's ``module:attribute`` the slot runs) is recorded after a success,
    so a config revision without the artifact on the controller renders the same command line.
    """

    current, previous = report.get("current"), report.get("previous")
    rollback_from = report.get("rollback_from")
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = {"at": at, "from": current, "to": version, "ok": ok, "slot": slot}
    if rollback_from:
        entry["rollback"] = True
    history = [*list(report.get("history") or [])[-99:], entry]
    active = report.get("active_slot")
    if ok:
        previous, current, active = (current if current != version else previous), version, slot
    state = {"current": current, "previous": previous, "history": history, "mode": "arr", "active_slot": active, "slots": slots}
    kept = rollback_from if ok else report.get("rolled_back_from")
    if kept:
        state["rolled_back_from"] = kept
    point = entry_point if ok else report.get("entry_point")
    if point:
        state["entry_point"] = point
    return json.dumps(state, indent=2) + "\n"


def config_current(report: dict, model: ReleaseSettings, slot: str, xml: str) -> bool:
    """Whether ``slot``'s WinSW XML on the host is ``xml`` (the fact's keyed digest of the file,
    ``facts/release_state.py`` ``services``; the XML holds app secrets, so only digests travel)."""

    key = f"{slot}\\{services.service_name(model, slot)}.xml"
    return (report.get("services") or {}).get(key) == secret_digest(xml)


def next_revision(report: dict, version: str) -> str:
    """The next config revision of ``version`` (``1.4.2+r<N+1>``, N the highest the release
    state names: ``current``, ``previous``, ``slots``, ``history``)."""

    names = [report.get("current"), report.get("previous"), *(report.get("slots") or {}).values(),
             *[e.get("to") for e in report.get("history") or []]]
    numbers = [revision_of(n)[1] for n in names if n and revision_of(n)[0] == version]
    return revision_name(version, max(numbers + [1]) + 1)


def installed(report: dict, name: Optional[str]) -> bool:
    """Whether ``name`` (a version or a config revision of one) runs from a complete release
    folder: ARR config revisions live in the service XML, their version's folder is the app."""

    return bool(name) and revision_of(name)[0] in complete_versions(report)


class SwitchPlan:
    """Everything :func:`switch_steps` needs, computed at plan time (picklable plain data)."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)


def _health_text(answer: dict) -> str:
    return (f"status {answer.get('status')}, error {answer.get('error') or 'none'}, after {answer.get('seconds')} s; "
            f"body: {(answer.get('body') or '')[:300]}")


def switch_steps(host_: Any, plan: SwitchPlan) -> None:
    """Steps 1-5 of the module docstring, one host call at a time (a ``FunctionCommand``).

    Raises:
        ReleaseStepError: a step failed; the old slot serves (the new one is stopped).
    """

    new, old = plan.slot, plan.old_slot
    new_name = plan.names[new]

    def fail(message: str) -> None:
        try:
            call_host(host_, "Stop-AppService", {"name": new_name})
        except ReleaseStepError as exc:
            message += f" (stopping the {new} slot failed too: {exc})"
        call_host(host_, "Write-TextFile", {"path": plan.state_file, "text": plan.state_failed})
        raise ReleaseStepError(message)

    call_host(host_, "Write-TextFile", {"path": plan.xml_path, "text": Secret(plan.xml) if plan.secret_xml else plan.xml})
    call_host(host_, "Stop-AppService", {"name": new_name})
    try:
        call_host(host_, "Install-AppService", {"name": new_name, "wrapper": plan.wrapper, "source": plan.source, "sha256": plan.sha256})
    except ReleaseStepError as exc:
        fail(f"release {plan.version}: the {new} slot's service could not be installed ({exc}); slot {old or 'none'} keeps serving")
    preflight = getattr(plan, "preflight", None)
    if preflight:  # the release's start check, as Switch-Release runs it: a broken app is refused in seconds
        run = call_host(host_, "Invoke-Program", preflight)
        if run.get("exit_code") != 0:
            lines = f"{run.get('stderr') or ''}\n{run.get('stdout') or ''}".strip().splitlines()[-30:]
            fail(f"release {plan.version}: the start check of the {new} slot's release failed with exit code {run.get('exit_code')}; "
                 f"slot {old or 'none'} keeps serving and the {new} slot was not started. Last lines:\n" + "\n".join(lines))
    started = call_host(host_, "Start-AppService", {"name": new_name, "health": plan.health, "log": plan.err_log})
    answer = started.get("health") or {}
    if not answer.get("ok"):
        fail(f"release {plan.version}: health check {plan.health['url']} (Host: {plan.health['host']}) of the {new} slot failed: "
             f"{_health_text(answer)}; slot {old or 'none'} keeps serving and the {new} slot was stopped; "
             f"{plan.err_log} ends with:\n{started.get('log_tail') or '(nothing)'}")
    host_.log(f"{new} slot healthy on 127.0.0.1:{plan.port} after {answer.get('seconds')} s", logger.info)
    try:
        call_host(host_, "Set-IisConfig", {"edits": plan.edits})
    except ReleaseStepError as exc:
        fail(f"release {plan.version}: switching the rewrite rule failed ({exc}); slot {old or 'none'} keeps serving")
    call_host(host_, "Write-TextFile", {"path": plan.state_file, "text": plan.state_ok})
    if old is None:
        return
    if plan.drain:
        host_.log(f"draining the {old} slot for {plan.drain} s", logger.info)
        time.sleep(plan.drain)
    stopped = call_host(host_, "Stop-AppService", {"name": plan.names[old]})
    if stopped.get("state") not in (None, "Stopped"):
        host_.log(f"the {old} slot's service reports {stopped.get('state')} after the stop", logger.warning)


def slot_health(site_model: Any, model: Any, version: str, port: int) -> dict:
    """The health check of a slot: ``health_check``'s, sent DIRECTLY to ``127.0.0.1:<port>``
    (Uvicorn, no TLS) and without ``give_up_statuses``: no IIS stands between, so a 502/503
    without the release header is the app's own answer (still starting), not IIS giving up;
    ``Start-AppService`` (``Wait-ReleaseHealthy``) would otherwise stop waiting at once."""

    health = health_check(site_model, model, version)
    return {**health, "url": f"http://127.0.0.1:{port}{model.health_check_path}", "certificate_hash": None,
            "expect_status": HEALTHY_STATUS, "give_up_statuses": []}


@operation()
def arr_release_switched(settings: Any, version: str, site: Any, app_pool: Optional[str] = None, entry_point: Optional[str] = None,
                         force: bool = False, rollback_from: Optional[str] = None):
    """
    Serve an installed release through ARR from a blue/green slot, only once it answers healthy
    on its own port (the module docstring lists the steps).

    + settings: the app's ``ReleaseSettings`` (or dict) with ``mode="arr"`` and ``arr``.
    + version: an installed (complete) release under ``<root>\\releases``.
    + site: the ``Site`` (or dict) IIS serves the app on: the rule goes under its location, its
      first https (else http) binding's host name is the ``Host`` of the health check.
    + app_pool: the site's pool (Read & Execute on ``wwwroot``).
    + entry_point: ``module:attribute`` of the app (default ``main:app``; the deploy passes the
      artifact manifest's).
    + force: restart into the idle slot even when ``version`` is served (e.g. new app secrets).
    + rollback_from: set by :func:`arr_rolled_back` (the release a rollback leaves): recorded
      as ``rolled_back_from`` in release-state.json (:func:`state_text`).

    Nothing happens when the rule points at the slot release-state.json says runs ``version``
    (a version: itself or a config revision of it), the rule is complete, ARR's proxy settings
    are as asked, and that slot's WinSW XML is the one rendered now (keyed digest). When only the
    XML differs (``app_settings``/``app_secrets`` changed, no new version) the release becomes
    a config revision ``<version>+r<N>`` (``PYINFRA_IIS_RELEASE``, expected by the health
    check), started in the idle slot from the same release folder and switched like a release.

    **Example:**

    .. code:: python

        arr_release_switched(name="Serve 1.4.2", settings=settings, version="1.4.2", site=site, app_pool="api")

    Raises:
        OperationError: ``version`` is not installed, or settings are not in ARR mode.
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    version = _version(version)
    if model.mode != "arr" or model.arr is None:
        raise OperationError(f"{model.app_name}: arr_release_switched needs release settings with mode 'arr'")
    arr = model.arr
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    if not installed(report, version):
        raise OperationError(f"release {version} is not installed under {model.releases_dir}; install it first")
    entry_point = entry_point or report.get("entry_point")
    iis = iis_of(fact)
    active = active_slot(fact, model, site_model.name)
    slots = dict(report.get("slots") or {})
    proxy, proxy_diff = proxy_edits(arr, iis)
    whole = not rule_complete(fact, site_model.name)
    served = slots.get(active) if active else None
    if served and (served == version or revision_of(served)[0] == version) and not proxy and not whole and not force:
        base = revision_of(served)[0]
        xml_now = services.render_service_xml(model, active, served, model.release_dir(base), arr.port(active), entry_point)
        if config_current(report, model, active, xml_now):
            host.noop(f"site {site_model.name} serves release {served} from the {active} slot (127.0.0.1:{arr.port(active)})")
            return
        version = next_revision(report, base)  # same release, new app_settings/app_secrets: a config revision
        logger.info(f"{model.app_name} {served}: its service config differs from today's settings: config revision {version}")
    slot = other_slot(active)
    port = arr.port(slot)
    release_dir = model.release_dir(revision_of(version)[0])
    edits = [*proxy, *rule_edits(site_model.name, port, whole)]
    if whole:
        edits.append(physical_path_edit(site_model.name, wwwroot(model)))
    names = {s: services.service_name(model, s) for s in SLOTS}
    health = slot_health(site_model, model, version, port)
    source, upload = wrapper_source(arr, model)
    xml = services.render_service_xml(model, slot, version, release_dir, port, entry_point)
    state_report = {**report, "active_slot": active, "rollback_from": rollback_from}
    new_slots = {**{s: slots.get(s) for s in SLOTS}, slot: version}
    plan = SwitchPlan(slot=slot, old_slot=active, port=port, version=version, names=names, xml=xml, secret_xml=bool(model.app_secrets),
                      preflight=start_check(model, revision_of(version)[0], HEALTHY_STATUS),
                      xml_path=services.xml_path(model, slot), wrapper=services.wrapper_path(model, slot), source=source,
                      sha256=arr.winsw.sha256, health=health, err_log=f"{services.service_logs_dir(model)}\\{names[slot]}.err.log", edits=edits, drain=arr.drain.seconds,
                      state_file=f"{model.root}\\release-state.json",
                      state_ok=state_text(state_report, version, True, slot, new_slots, entry_point),
                      state_failed=state_text(state_report, version, False, slot, {**{s: slots.get(s) for s in SLOTS}}))
    log_changes(host, f"Will serve {version} from the {slot} slot", [
        Change(f"site {site_model.name}: ARR target", f"{active} (127.0.0.1:{arr.port(active)})" if active else None, f"{slot} (127.0.0.1:{port})"),
        Change(f"site {site_model.name}: release", report.get("current"), version), *proxy_diff])
    yield from directory_calls(model, app_pool)
    if upload is not None:
        yield FileUploadCommand(upload, source)
    yield FunctionCommand(host_step(switch_steps), (plan,), {})


@operation()
def arr_config_revised(settings: Any, site: Any, app_pool: Optional[str] = None, entry_point: Optional[str] = None):
    """
    Without a new version: serve the release the active slot runs with today's ``app_settings``
    and ``app_secrets``. When its WinSW XML differs from the one rendered now, a config revision
    ``<version>+r<N>`` goes to the idle slot, is health-checked and switched like a release
    (:func:`arr_release_switched`); recorded in release-state.json (``current``, ``slots``,
    ``history``). Nothing happens when it is the same, or no slot serves yet.

    + settings, site, app_pool, entry_point: as for :func:`arr_release_switched` (``entry_point``
      defaults to the one release-state.json recorded).

    **Example:**

    .. code:: python

        arr_config_revised(name="Config of api", settings=settings, site=site, app_pool="api")
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    served = served_version(report, active_slot(fact, model, site_model.name))
    if not served or not installed(report, served):
        host.noop(f"no release version given and no slot serves an installed release of {model.app_name}: nothing to revise")
        return
    yield from arr_release_switched._inner(settings=model, version=revision_of(served)[0], site=site_model, app_pool=app_pool,
                                           entry_point=entry_point)


def served_version(report: dict, active: Optional[str]) -> Optional[str]:
    """The version the active slot runs (release-state.json's ``slots``), or ``None``."""

    return (report.get("slots") or {}).get(active) if active else None


@operation()
def arr_rolled_back(settings: Any, site: Any, app_pool: Optional[str] = None, entry_point: Optional[str] = None,
                    version: Optional[str] = None):
    """
    Serve an earlier installed release again, from the idle slot, health-checked like any ARR
    release; the same rule as the HttpPlatformHandler mode's ``release_rolled_back``, so a
    retried pipeline job never undoes a rollback:

    * ``version`` named (``--data release_version=1.0.0``): that installed release
      (``operations.release.rollback_target``); nothing happens when the active slot runs it;
    * unnamed: the release state's ``previous``, except when the last switch was a rollback
      (release-state.json's ``rolled_back_from``): then it stays at what that rollback went
      back to (nothing happens when the active slot serves it). Name a version to go further.

    + settings, site, app_pool, entry_point: as for :func:`arr_release_switched`.
    + version: the release to go back to; none: as above.

    **Example:**

    .. code:: python

        arr_rolled_back(name="Roll back api", settings=settings, site=site, app_pool="api", version="1.4.1")

    Raises:
        OperationError: the named release is not installed and complete, or (unnamed) there is
            no previous release or it is no longer installed; before any command.
    """

    from .release import rollback_target

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    version = _version(version) if version else None
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    current = report.get("current")
    served = served_version(report, active_slot(fact, model, site_model.name))
    if not version and report.get("rolled_back_from") and installed(report, current):
        # The last switch was a rollback: an unnamed one (a retried job) stays there.
        if served == current:
            host.noop(f"site {site_model.name} was rolled back from {report['rolled_back_from']} to {current}; "
                      f"name a version (--data release_version=...) to go further")
            return
        target = current
    elif version:
        target = rollback_target(report, version)
    else:
        # rollback_target's rule; a config revision (no folder of its own) counts as installed with its version
        extra = [{"version": report["previous"], "complete": True}] if installed(report, report.get("previous")) else []
        target = rollback_target({**report, "versions": [*(report.get("versions") or []), *extra]})
    yield from arr_release_switched._inner(settings=model, version=target, site=site, app_pool=app_pool, entry_point=entry_point,
                                           rollback_from=current if current != target else report.get("rolled_back_from"))
