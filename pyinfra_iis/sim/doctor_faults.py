"""Failure modes the doctor diagnoses, injectable into a simulated host.

Each ``inject_<mode>(host)`` edits the simulated host's state, configuration or files the way
the failure looks on Windows and returns a function that undoes it (tests inject, diagnose,
undo, on one converged host). :data:`MODES` maps each mode to the check it must make fail (or
warn) and nothing else. The host is the converged example of ``deploys/site.py`` (site and pool
``api``, release root ``C:\\sites\\api``, https binding ``*:443:api.example.com``).

:func:`local_call` runs a module function of the simulator in-process, as the doctor's ``call``.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import signal
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import sddl
from ..protocol import parse_remote_call, remote_call
from .functions import call as sim_call
from .functions.acl import _entry, _key, acl_store
from .functions.doctor import STATE_KEY
from .iis.store import config_file, load_config, runtime, sslcert_bindings

if TYPE_CHECKING:  # pragma: no cover
    from .host import SimHost

Undo = Callable[[], None]
SITE, POOL, ROOT, HOST_NAME = "api", "api", "C:\\sites\\api", "api.example.com"


def local_call(host: "SimHost") -> Callable[[str, dict], dict]:
    """``call(function, payload) -> dict`` running the simulator's function in-process (the
    payload goes through :func:`pyinfra_iis.protocol.remote_call` as over WinRM: secrets revealed)."""

    def call(function: str, payload: dict) -> dict:
        name, data = parse_remote_call(remote_call(function, payload).get_raw_value())
        return json.loads(sim_call(host, name, data, {}))

    return call


# --- undo helpers ------------------------------------------------------------------------------


def _keep(host: "SimHost", *windows_paths: str) -> Undo:
    """Undo = restore ``host.state`` and the given files as they are now."""

    with host.lock:
        state = copy.deepcopy(host.state)
    files = {}
    for path in windows_paths:
        local = host.path(path)
        files[path] = local.read_bytes() if local.is_file() else None

    def undo() -> None:
        with host.lock:
            counters = host.state.get("counters")
            host.state.clear()
            host.state.update(copy.deepcopy(state))
            if counters is not None:
                host.state["counters"] = counters
            host.save()
        for path, data in files.items():
            local = host.path(path)
            if data is None:
                if local.exists():
                    local.unlink()
            else:
                local.write_bytes(data)

    return undo


def served_release(host: "SimHost") -> str:
    """The physicalPath of site ``api`` (the served release folder)."""

    config = load_config(host)
    site = next(s for s in config.section_element("system.applicationHost/sites") if s.get("name") == SITE)
    return site.find("application/virtualDirectory").get("physicalPath")


def _edit_config(host: "SimHost", edit: Callable[[Any], None]) -> Undo:
    path = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"
    undo = _keep(host, path)
    with host.lock:
        config = load_config(host)
        edit(config)
        config.save(config_file(host))
    return undo


def _edit_web_config(host: "SimHost", edit: Callable[[ET.Element], None]) -> Undo:
    path = served_release(host) + "\\web.config"
    undo = _keep(host, path)
    local = host.path(path)
    root = ET.fromstring(local.read_text(encoding="utf-8-sig"))
    edit(root)
    local.write_text(ET.tostring(root, encoding="unicode"), encoding="utf-8")
    return undo


def _set_acl(host: "SimHost", path: str, protected: bool | None = None, add: list | None = None,
             drop: Callable[[dict], bool] | None = None) -> Undo:
    undo = _keep(host)
    with host.lock:
        store = acl_store(host)
        acl = store.setdefault(_key(path), {"path": path, "protected": False, "entries": []})
        if protected is not None:
            acl["protected"] = protected
        if drop is not None:
            acl["entries"] = [e for e in acl["entries"] if not drop(e)]
        acl["entries"] = list(add or []) + acl["entries"]
        host.save()
    return undo


def _doctor_state(host: "SimHost", **values: Any) -> Undo:
    undo = _keep(host)
    with host.lock:
        host.state.setdefault(STATE_KEY, {}).update(values)
        host.save()
    return undo


def _platform(root: ET.Element) -> ET.Element:
    return root.find("system.webServer/httpPlatform")


def _set_argument(root: ET.Element, name: str, value: str | None) -> None:
    element = _platform(root)
    words = element.get("arguments", "").split(" ")
    if name in words:
        index = words.index(name)
        del words[index:index + 2]
    if value is not None:
        words += [name, value]
    element.set("arguments", " ".join(words))


def _pool(config) -> ET.Element:
    pools = config.section_element("system.applicationHost/applicationPools")
    return next(p for p in pools if p.tag == "add" and p.get("name") == POOL)


def _bound_entry(host: "SimHost") -> tuple[str, dict]:
    table = sslcert_bindings(host)
    endpoint = f"{HOST_NAME}:443"
    return endpoint, table[endpoint]


def _replace_certificate(host: "SimHost", names: list[str], days: int = 365, not_before_days: int = 1,
                         issuer_key=None, issuer_name: str | None = None) -> Undo:
    """Bind a new certificate (key file SYSTEM + Administrators) to ``api.example.com:443``."""

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from .functions.certificates import KEY_FOLDER, _record, certificate_store

    undo = _keep(host)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=not_before_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(issuer_key or key, hashes.SHA256()))
    key_file = f"{KEY_FOLDER}\\{uuid.uuid4().hex}"
    local = host.path(key_file)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with host.lock:
        endpoint, entry = _bound_entry(host)
        store = entry.get("certificateStoreName") or "My"
        record = {**_record(store, cert, key_file, False), "has_private_key": True}
        certificate_store(host)[f"{store}/{record['thumbprint']}"] = record
        acl_store(host)[_key(key_file)] = {"path": key_file, "protected": True, "owner": sddl.ADMINISTRATORS, "entries": [
            _entry("NT AUTHORITY\\SYSTEM", "FullControl", "None"), _entry("BUILTIN\\Administrators", "FullControl", "None")]}
        entry["certificateHash"] = record["thumbprint"]
        host.save()

    def both() -> None:
        undo()
        if local.exists():
            local.unlink()

    return both


def _pool_event(host: "SimHost", state: str) -> Undo:
    from .functions.runtime import fire_pool_event

    undo = _keep(host)
    with host.lock:
        runtime(host)["app_pools"][POOL] = state
        host.save()
    fire_pool_event(host, POOL, "stop" if state != "Started" else "start")

    def restart() -> None:
        undo()
        fire_pool_event(host, POOL, "start")

    return restart


def _was_event(event_id: int, minutes_ago: int, text: str, pool: str = POOL) -> dict[str, Any]:
    """A WAS event as the module returns it: ``pool`` is the event's insertion string %1."""

    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    return {"id": event_id, "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"), "provider": "Microsoft-Windows-WAS", "pool": pool,
            "message": text}


# --- the failure modes ---------------------------------------------------------------------------


def inject_access_app_folder(host: "SimHost") -> Undo:
    """A Deny Read & Execute for IIS_IUSRS on the release folder itself (the pool is a member)."""

    return _set_acl(host, served_release(host), add=[_entry("BUILTIN\\IIS_IUSRS", "ReadAndExecute, Synchronize", "None", kind="Deny")])


def inject_access_venv(host: "SimHost") -> Undo:
    """The venv's DACL protected (inheritance off) with SYSTEM and Administrators only."""

    return _set_acl(host, served_release(host) + "\\venv", protected=True, add=[
        _entry("NT AUTHORITY\\SYSTEM", "FullControl"), _entry("BUILTIN\\Administrators", "FullControl")])


def inject_access_python(host: "SimHost") -> Undo:
    """The base Python readable by administrators only (as an install under a user profile)."""

    return _set_acl(host, "C:\\Program Files\\Python312", protected=True, drop=lambda e: True, add=[
        _entry("NT AUTHORITY\\SYSTEM", "FullControl"), _entry("BUILTIN\\Administrators", "FullControl")])


def inject_access_web_config(host: "SimHost") -> Undo:
    """A Deny Read for the pool's own SID on web.config."""

    return _set_acl(host, served_release(host) + "\\web.config", add=[
        _entry(f"IIS AppPool\\{POOL}", "Read", "None", kind="Deny", sid=sddl.app_pool_sid(POOL))])


def inject_access_logs(host: "SimHost") -> Undo:
    """The pool's Modify on the logs folder removed (it keeps the inherited Read & Execute)."""

    pool_sid = sddl.app_pool_sid(POOL)
    return _set_acl(host, f"{ROOT}\\logs", drop=lambda e: e.get("sid") == pool_sid)


def inject_module_missing(host: "SimHost") -> Undo:
    """The httpPlatformHandler global module unregistered (an uninstall, a repair gone wrong)."""

    def edit(config) -> None:
        modules = config.section_element("system.webServer/globalModules")
        for item in [m for m in modules if m.get("name") == "httpPlatformHandler"]:
            modules.remove(item)

    return _edit_config(host, edit)


def inject_schema_missing(host: "SimHost") -> Undo:
    """``inetsrv\\config\\schema\\httpplatform_schema.xml`` deleted."""

    return _doctor_state(host, schema_removed=["httpplatform_schema.xml"])


def inject_section_locked(host: "SimHost") -> Undo:
    """``<location path="api" overrideMode="Deny">`` holding ``system.webServer/httpPlatform``."""

    def edit(config) -> None:
        location = ET.SubElement(config.root, "location", {"path": SITE, "overrideMode": "Deny"})
        ET.SubElement(ET.SubElement(location, "system.webServer"), "httpPlatform")

    return _edit_config(host, edit)


def inject_unknown_section(host: "SimHost") -> Undo:
    """web.config holds ``<aspNetCore>``, a section no installed module declares."""

    return _edit_web_config(host, lambda root: ET.SubElement(root.find("system.webServer"), "aspNetCore", {"processPath": "dotnet"}))


def inject_sslcert_missing(host: "SimHost") -> Undo:
    """HTTP.sys's SSL binding of ``api.example.com:443`` deleted (netsh http delete sslcert)."""

    undo = _keep(host)
    with host.lock:
        sslcert_bindings(host).pop(f"{HOST_NAME}:443")
        host.save()
    return undo


def inject_certificate_missing(host: "SimHost") -> Undo:
    """The bound certificate deleted from its store (HTTP.sys still names its hash)."""

    from .functions.certificates import certificate_store

    undo = _keep(host)
    with host.lock:
        _, entry = _bound_entry(host)
        certificate_store(host).pop(f"{entry['certificateStoreName']}/{entry['certificateHash'].upper()}")
        host.save()
    return undo


def inject_no_private_key(host: "SimHost") -> Undo:
    """The bound certificate without its private key (imported from a .cer)."""

    from .functions.certificates import certificate_store

    undo = _keep(host)
    with host.lock:
        _, entry = _bound_entry(host)
        certificate_store(host)[f"{entry['certificateStoreName']}/{entry['certificateHash'].upper()}"]["has_private_key"] = False
        host.save()
    return undo


def inject_key_unreadable(host: "SimHost") -> Undo:
    """The private key file's DACL without SYSTEM (HTTP.sys cannot use the key)."""

    from .functions.certificates import certificate_store

    with host.lock:
        _, entry = _bound_entry(host)
        key_file = certificate_store(host)[f"{entry['certificateStoreName']}/{entry['certificateHash'].upper()}"]["key_file"]
    return _set_acl(host, key_file, protected=True, drop=lambda e: True, add=[_entry("BUILTIN\\Administrators", "FullControl", "None")])


def inject_certificate_expired(host: "SimHost") -> Undo:
    """A bound certificate that expired yesterday."""

    return _replace_certificate(host, [HOST_NAME], days=-1, not_before_days=30)


def inject_certificate_expiring(host: "SimHost") -> Undo:
    """A bound certificate expiring in 10 days."""

    return _replace_certificate(host, [HOST_NAME], days=10)


def inject_wrong_host_name(host: "SimHost") -> Undo:
    """A bound certificate issued for another name."""

    return _replace_certificate(host, ["other.example.com"])


def inject_chain_incomplete(host: "SimHost") -> Undo:
    """A bound certificate issued by an intermediate that is in no store of the host."""

    from cryptography.hazmat.primitives.asymmetric import ec

    return _replace_certificate(host, [HOST_NAME], issuer_key=ec.generate_private_key(ec.SECP256R1()), issuer_name="Missing Intermediate CA")


def inject_sni_off(host: "SimHost") -> Undo:
    """The https binding's SNI bit cleared (HTTP.sys binding moved to 0.0.0.0:443)."""

    def edit(config) -> None:
        sites = config.section_element("system.applicationHost/sites")
        site = next(s for s in sites if s.get("name") == SITE)
        for binding in site.find("bindings"):
            if binding.get("protocol") == "https":
                binding.set("sslFlags", "0")

    undo_config = _edit_config(host, edit)
    undo_state = _keep(host)
    with host.lock:
        table = sslcert_bindings(host)
        table["0.0.0.0:443"] = table.pop(f"{HOST_NAME}:443")
        host.save()

    def both() -> None:
        undo_state()
        undo_config()

    return both


def inject_pool_stopped(host: "SimHost") -> Undo:
    """The application pool stopped (by hand)."""

    return _pool_event(host, "Stopped")


def inject_rapid_fail(host: "SimHost") -> Undo:
    """Rapid-fail protection tripped: five crashes (WAS 5011), then 5002 and the pool stopped."""

    undo_pool = _pool_event(host, "Stopped")
    crash = f"A process serving application pool '{POOL}' suffered a fatal communication error with the Windows Process Activation Service."
    events = [_was_event(5011, 10 - i, crash) for i in range(5)]
    events.append(_was_event(5002, 5, f"Application pool '{POOL}' is being automatically disabled due to a series of failures in the "
                                        "process(es) serving that application pool."))
    with host.lock:
        host.state.setdefault(STATE_KEY, {})["events"] = events
        host.save()
    return undo_pool


def _pool_attribute(host: "SimHost", path: str, value: str) -> Undo:
    def edit(config) -> None:
        element = _pool(config)
        *children, name = path.split("/")
        for child in children:
            found = element.find(child)
            element = found if found is not None else ET.SubElement(element, child)
        element.set(name, value)

    return _edit_config(host, edit)


def inject_pool_32bit(host: "SimHost") -> Undo:
    """``enable32BitAppOnWin64="true"`` on the pool."""

    return _pool_attribute(host, "enable32BitAppOnWin64", "true")


def inject_pool_local_system(host: "SimHost") -> Undo:
    """The pool runs as LocalSystem."""

    return _pool_attribute(host, "processModel/identityType", "LocalSystem")


def inject_no_user_profile(host: "SimHost") -> Undo:
    """``processModel/@loadUserProfile="false"``."""

    return _pool_attribute(host, "processModel/loadUserProfile", "false")


def inject_on_demand(host: "SimHost") -> Undo:
    """``startMode="OnDemand"``."""

    return _pool_attribute(host, "startMode", "OnDemand")


def inject_release_incomplete(host: "SimHost") -> Undo:
    """The served release's completion marker deleted (an interrupted install served)."""

    marker = served_release(host) + "\\.pyinfra-iis-complete"
    undo = _keep(host, marker)
    host.path(marker).unlink()
    return undo


def inject_process_dead(host: "SimHost") -> Undo:
    """The app process killed (HttpPlatformHandler restarts it on the next request only)."""

    from . import apps

    manager = apps.manager_for(host)
    status = manager.app_status(SITE) if manager else None
    if status and status.get("pid"):
        os.killpg(status["pid"], signal.SIGKILL)
        for _ in range(100):
            if manager.app_status(SITE).get("state") != "running":
                break
            time.sleep(0.02)
    return lambda: None


def inject_stdout_log_off(host: "SimHost") -> Undo:
    """``stdoutLogEnabled="false"`` in web.config."""

    return _edit_web_config(host, lambda root: _platform(root).set("stdoutLogEnabled", "false"))


def inject_keep_alive_short(host: "SimHost") -> Undo:
    """uvicorn ``--timeout-keep-alive 5`` (its default) under requestTimeout 2 min."""

    return _edit_web_config(host, lambda root: _set_argument(root, "--timeout-keep-alive", "5"))


def inject_request_timeout_seconds(host: "SimHost") -> Undo:
    """``requestTimeout="00:01:30"``: not whole minutes."""

    return _edit_web_config(host, lambda root: _platform(root).set("requestTimeout", "00:01:30"))


def inject_startup_too_long(host: "SimHost") -> Undo:
    """``startupTimeLimit`` 3600 s, above any health deadline the inventory can set (the model caps
    it at 7200 s; the tests' is 60 s)."""

    return _edit_web_config(host, lambda root: _platform(root).set("startupTimeLimit", "3600"))


def inject_proactor_loop(host: "SimHost") -> Undo:
    """No ``--loop``: uvicorn picks the Proactor loop on Windows."""

    return _edit_web_config(host, lambda root: _set_argument(root, "--loop", None))


def inject_buffered(host: "SimHost") -> Undo:
    """``PYTHONUNBUFFERED`` removed from web.config."""

    def edit(root: ET.Element) -> None:
        variables = _platform(root).find("environmentVariables")
        for item in [v for v in variables if v.get("name") == "PYTHONUNBUFFERED"]:
            variables.remove(item)

    return _edit_web_config(host, edit)


def inject_graceful_too_long(host: "SimHost") -> Undo:
    """The pool's ``processModel/@shutdownTimeLimit`` 10 s, under uvicorn's graceful shutdown (30 s)."""

    return _pool_attribute(host, "processModel/shutdownTimeLimit", "00:00:10")


def inject_trust_any_proxy(host: "SimHost") -> Undo:
    """uvicorn ``--forwarded-allow-ips *``: forwarded headers trusted from any client."""

    return _edit_web_config(host, lambda root: _set_argument(root, "--forwarded-allow-ips", "*"))


def _arr_rule(root: ET.Element, variables: list[str]) -> None:
    rewrite = ET.SubElement(root.find("system.webServer"), "rewrite")
    rule = ET.SubElement(ET.SubElement(rewrite, "rules"), "rule", {"name": "backend", "stopProcessing": "true"})
    ET.SubElement(rule, "match", {"url": "(.*)"})
    holder = ET.SubElement(rule, "serverVariables")
    for name in variables:
        ET.SubElement(holder, "set", {"name": name, "value": "https"})
    ET.SubElement(rule, "action", {"type": "Rewrite", "url": "http://127.0.0.1:8001/{R:1}"})


def inject_header_not_allowed(host: "SimHost") -> Undo:
    """ARR mode: a rule sets HTTP_X_FORWARDED_PORT, which is not allow-listed at server level."""

    return _edit_web_config(host, lambda root: _arr_rule(root, ["HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PORT"]))


def inject_arr_proxy_off(host: "SimHost") -> Undo:
    """ARR mode with the server's ``proxy/@enabled="false"``."""

    undo_web = _edit_web_config(host, lambda root: _arr_rule(root, ["HTTP_X_FORWARDED_PROTO"]))
    undo_config = _edit_config(host, lambda config: config.section_element("system.webServer/proxy").set("enabled", "false"))

    def both() -> None:
        undo_config()
        undo_web()

    return both


def inject_firewall_closed(host: "SimHost") -> Undo:
    """The "World Wide Web Services (HTTPS Traffic-In)" rule disabled."""

    from .functions.doctor import DEFAULT_FIREWALL

    rules = [dict(r, enabled=False) if "HTTPS" in r["name"] else dict(r) for r in DEFAULT_FIREWALL]
    return _doctor_state(host, firewall=rules)


def inject_reboot_pending(host: "SimHost") -> Undo:
    """A reboot pending (an installer returned 3010)."""

    undo = _keep(host)
    with host.lock:
        host.state["reboot_pending"] = True
        host.save()
    return undo


def inject_disk_full(host: "SimHost") -> Undo:
    """200 MiB free on drive C:."""

    return _doctor_state(host, disk={"free_bytes": 200 * 1024 * 1024})


# --- reads that fail on the host (not failure modes: each part's check must warn, the others run) ---


def inject_probe_error(host: "SimHost", part: str, message: str) -> Undo:
    """``Get-DoctorState``'s part ``part`` (``acls``: every path; ``events``: an id-0 entry) answers
    ``{"error": message}``, as the module's ``Invoke-DoctorProbe`` does when that read throws."""

    with host.lock:
        errors = dict((host.state.get(STATE_KEY) or {}).get("probe_errors") or {})
    return _doctor_state(host, probe_errors={**errors, part: message})


def inject_physical_path(host: "SimHost", path: str) -> Undo:
    """Site ``api``'s physicalPath set to ``path`` (IIS's own ``%SystemDrive%\\inetpub\\wwwroot``, say)."""

    def edit(config) -> None:
        site = next(s for s in config.section_element("system.applicationHost/sites") if s.get("name") == SITE)
        site.find("application/virtualDirectory").set("physicalPath", path)

    return _edit_config(host, edit)


@dataclass(frozen=True)
class Mode:
    """A failure mode: how to inject it, the check it must report and with which status."""

    inject: Callable[["SimHost"], Undo]
    check: str
    status: str = "fail"


_HTTPS = f"[{SITE} *:443:{HOST_NAME}]"
#: Every failure mode: name → :class:`Mode` (docs/doctor.md lists them).
MODES: dict[str, Mode] = {
    "access_app_folder": Mode(inject_access_app_folder, "access.app_folder"),
    "access_venv": Mode(inject_access_venv, "access.venv"),
    "access_python": Mode(inject_access_python, "access.python"),
    "access_web_config": Mode(inject_access_web_config, "access.web_config"),
    "access_logs": Mode(inject_access_logs, "access.logs"),
    "module_missing": Mode(inject_module_missing, "module.HttpPlatformHandler"),
    "schema_missing": Mode(inject_schema_missing, "module.HttpPlatformHandler"),
    "section_locked": Mode(inject_section_locked, "webconfig.sections"),
    "unknown_section": Mode(inject_unknown_section, "webconfig.sections"),
    "sslcert_missing": Mode(inject_sslcert_missing, "https.sslcert" + _HTTPS),
    "certificate_missing": Mode(inject_certificate_missing, "https.certificate" + _HTTPS),
    "no_private_key": Mode(inject_no_private_key, "https.private_key" + _HTTPS),
    "key_unreadable": Mode(inject_key_unreadable, "https.key_access" + _HTTPS),
    "certificate_expired": Mode(inject_certificate_expired, "https.expiry" + _HTTPS),
    "certificate_expiring": Mode(inject_certificate_expiring, "https.expiry" + _HTTPS, "warn"),
    "wrong_host_name": Mode(inject_wrong_host_name, "https.host_name" + _HTTPS),
    "chain_incomplete": Mode(inject_chain_incomplete, "https.chain" + _HTTPS),
    "sni_off": Mode(inject_sni_off, "https.sni" + _HTTPS, "warn"),
    "pool_stopped": Mode(inject_pool_stopped, "pool.state"),
    "rapid_fail": Mode(inject_rapid_fail, "pool.rapid_fail"),
    "pool_32bit": Mode(inject_pool_32bit, "pool.bitness"),
    "pool_local_system": Mode(inject_pool_local_system, "pool.identity", "warn"),
    "no_user_profile": Mode(inject_no_user_profile, "pool.load_user_profile", "warn"),
    "on_demand": Mode(inject_on_demand, "pool.start_mode", "warn"),
    "release_incomplete": Mode(inject_release_incomplete, "app.release"),
    "process_dead": Mode(inject_process_dead, "app.process"),
    "stdout_log_off": Mode(inject_stdout_log_off, "app.stdout_log"),
    "keep_alive_short": Mode(inject_keep_alive_short, "timeouts.keep_alive"),
    "request_timeout_seconds": Mode(inject_request_timeout_seconds, "timeouts.request_timeout"),
    "startup_too_long": Mode(inject_startup_too_long, "timeouts.startup"),
    "graceful_too_long": Mode(inject_graceful_too_long, "timeouts.graceful_shutdown"),
    "trust_any_proxy": Mode(inject_trust_any_proxy, "proxy.headers"),
    "proactor_loop": Mode(inject_proactor_loop, "runtime.event_loop"),
    "buffered": Mode(inject_buffered, "runtime.unbuffered"),
    "header_not_allowed": Mode(inject_header_not_allowed, "proxy.headers"),
    "arr_proxy_off": Mode(inject_arr_proxy_off, "timeouts.arr_proxy"),
    "firewall_closed": Mode(inject_firewall_closed, "firewall.443"),
    "reboot_pending": Mode(inject_reboot_pending, "host.reboot_pending", "warn"),
    "disk_full": Mode(inject_disk_full, "host.disk"),
}


# --- ARR reverse-proxy mode (release_app.mode: arr; docs/hosting-modes.md) ---------------------
# The host is the example converged by ``deploys/site.py`` with the ARR group data of
# tests/test_e2e_arr.py: slots blue (8001) and green (8002), services ``pyinfra-iis-api-<slot>``,
# the rule ``pyinfra-iis-arr`` under ``<location path="api">``.

ARR_PORTS = {"blue": 8001, "green": 8002}


def arr_active_slot(host: "SimHost") -> str:
    """The active slot release-state.json names on the host."""

    return json.loads(host.path(f"{ROOT}\\release-state.json").read_text(encoding="utf-8"))["active_slot"]


def _arr_rule_action(config) -> ET.Element:
    rules = config.section_element("system.webServer/rewrite/rules", location=SITE)
    rule = next(r for r in rules if r.tag == "rule" and r.get("name") == "pyinfra-iis-arr")
    return rule.find("action")


def inject_arr_service_stopped(host: "SimHost") -> Undo:
    """The active slot's service stopped (by hand, or it crashed and WinSW gave up)."""

    from .functions import services

    name = f"pyinfra-iis-{SITE}-{arr_active_slot(host)}"
    sim_call(host, "Stop-AppService", {"name": name}, {})

    def undo() -> None:
        services._launch(host, name)
        with host.lock:
            host.state[services.STATE_KEY][name]["state"] = "Running"
            host.save()

    return undo


def inject_arr_proxy_timeout(host: "SimHost") -> Undo:
    """ARR's ``proxy/@timeout`` set to 5 minutes on the host, above uvicorn's keep-alive (120 s)."""

    return _edit_config(host, lambda config: config.section_element("system.webServer/proxy").set("timeout", "00:05:00"))


def inject_arr_rule_idle(host: "SimHost") -> Undo:
    """The site's rewrite rule pointing at the idle slot's port (a switch edited back by hand)."""

    idle = "green" if arr_active_slot(host) == "blue" else "blue"
    return _edit_config(host, lambda config: _arr_rule_action(config).set("url", f"http://127.0.0.1:{ARR_PORTS[idle]}/{{R:1}}"))


def inject_arr_variable_not_allowed(host: "SimHost") -> Undo:
    """``HTTP_X_FORWARDED_HOST`` removed from ``rewrite/allowedServerVariables`` (the rule still sets it)."""

    def edit(config) -> None:
        variables = config.section_element("system.webServer/rewrite/allowedServerVariables")
        for item in [v for v in variables if v.tag == "add" and v.get("name") == "HTTP_X_FORWARDED_HOST"]:
            variables.remove(item)

    return _edit_config(host, edit)


#: ARR-mode failure modes (a host converged in ARR mode): name → :class:`Mode`.
ARR_MODES: dict[str, Mode] = {
    "arr_service_stopped": Mode(inject_arr_service_stopped, "arr.service[blue]"),
    "arr_proxy_timeout": Mode(inject_arr_proxy_timeout, "timeouts.arr_proxy"),
    "arr_rule_idle": Mode(inject_arr_rule_idle, "arr.rule_target"),
    "arr_variable_not_allowed": Mode(inject_arr_variable_not_allowed, "proxy.headers"),
}
