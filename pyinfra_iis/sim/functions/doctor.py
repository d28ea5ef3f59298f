"""``Get-DoctorState`` on the simulated host: what the doctor reads beyond ``Get-HostState``.

Same JSON in and out as ``remote/PyinfraIis/97-doctor.ps1`` (``docs/remote-functions.md``,
"Doctor"). Read-only: nothing of ``host.state`` or the file system is written (a request through
a binding may start the app process, as it would on Windows).

What Windows knows and the simulator models only roughly (``host.state["sim_doctor"]``, written
by the fault injections of :mod:`pyinfra_iis.sim.doctor_faults`; absent, these defaults apply):

* ``groups``: local group members by SID; Users holds INTERACTIVE and Authenticated Users,
  IIS_IUSRS nothing explicit (IIS adds the pool identities at run time).
* ``firewall``: the two inbound rules IIS setup adds ("World Wide Web Services (HTTP/HTTPS
  Traffic-In)", TCP 80 and 443, enabled, profile Any) once Web-Server is installed; the active
  profile ``Domain``, every profile's firewall on (``firewall_profiles`` overrides
  ``{"active_profile", "profiles"}``). Only inbound rules with protocol TCP or Any are returned,
  as the module does; Python matches ports, ranges and profiles.
* ``probe_errors``: ``{part: message}``: that part of the answer is ``{"error": message}``, as
  the module's ``Invoke-DoctorProbe`` returns when the part's read throws (``acls`` by path).
* Paths: ``%SystemDrive%`` and ``%SystemRoot%`` are expanded (``C:``, ``C:\\Windows``) as
  ``[Environment]::ExpandEnvironmentVariables`` does; an ACL path that is still not absolute is
  ``{"error"}``, an invalid web.config path ``exists: false``, an invalid log folder no log.
* ``disk``: 80 GiB free of 127 GiB.
* ``events``: none (WAS events only come from an injection).
* ``schema``: ``IIS_schema.xml`` defines every section declared in applicationHost.config that
  no extension brings; each installed extension's file (``httpplatform_schema.xml``,
  ``rewrite_schema.xml``, ``arr_schema.xml``) defines the sections its installer declared;
  ``schema_removed`` lists deleted files.
* ``processes``: the app process of each served site (``sim/apps``), its command line the
  web.config's ``processPath`` and ``arguments`` as Windows would show them, its start time the
  local process's.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from ..iis.store import load_config
from . import SimFunctionError, sim_function
from .acl import describe_acl
from .msi import PRODUCTS

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_KEY = "sim_doctor"
GIB = 1024 ** 3
#: Largest web.config text returned (bytes), as the module.
WEB_CONFIG_LIMIT = 65536
#: Largest stdout log tail returned (bytes), as the module.
LOG_LIMIT = 16384
SCHEMA_FILES = {"HttpPlatformHandler": "httpplatform_schema.xml", "UrlRewrite": "rewrite_schema.xml", "ARR": "arr_schema.xml"}
DEFAULT_GROUPS = {"S-1-5-32-545": ["S-1-5-4", "S-1-5-11"], "S-1-5-32-568": []}
DEFAULT_FIREWALL = [
    {"name": "World Wide Web Services (HTTP Traffic-In)", "enabled": True, "direction": "Inbound", "action": "Allow",
     "protocol": "TCP", "local_ports": ["80"], "profile": "Any"},
    {"name": "World Wide Web Services (HTTPS Traffic-In)", "enabled": True, "direction": "Inbound", "action": "Allow",
     "protocol": "TCP", "local_ports": ["443"], "profile": "Any"},
]
DEFAULT_FIREWALL_PROFILES = {"active_profile": "Domain", "profiles": {"Domain": True, "Private": True, "Public": True}}
#: What ``[Environment]::ExpandEnvironmentVariables`` gives on the simulated host.
ENVIRONMENT = {"systemdrive": "C:", "systemroot": "C:\\Windows", "windir": "C:\\Windows"}
DEFAULT_DISK = {"free_bytes": 80 * GIB, "total_bytes": 127 * GIB}


def doctor_state(host: "SimHost") -> dict[str, Any]:
    """``host.state["sim_doctor"]`` (read only here; an empty dict when absent)."""

    return host.state.get(STATE_KEY) or {}


def _stamp(moment: datetime) -> str:
    """The module's ``ToString('o', InvariantCulture)`` of a UTC time (seven fraction digits)."""

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def expand(path: str) -> str:
    """``%SystemDrive%``-style variables expanded (unknown ones kept, as Windows does)."""

    return re.sub(r"%([^%]+)%", lambda m: ENVIRONMENT.get(m.group(1).casefold(), m.group(0)), path)


def _acl(host: "SimHost", path: str) -> dict[str, Any]:
    """One path of ``acls``: the raw report, or ``{"error"}`` as the module's probe gives it."""

    expanded = expand(path)
    if not re.match(r"^[A-Za-z]:\\", expanded):
        return {"error": f'Get-DoctorState: "{expanded}" is not an absolute Windows path (C:\\... or \\\\server\\share\\...)'}
    try:
        return describe_acl(host, expanded)
    except SimFunctionError as exc:
        return {"error": str(exc)}


def _firewall(host: "SimHost", state: dict[str, Any], ports: set[str]) -> dict[str, Any]:
    if not ports:
        return {"rules": [], "active_profile": "", "profiles": {}}
    installed = "Web-Server" in host.state.get("features", {})
    rules = state.get("firewall") if "firewall" in state else (DEFAULT_FIREWALL if installed else [])
    rules = [r for r in rules if str(r.get("direction", "Inbound")) == "Inbound" and str(r.get("protocol", "TCP")) in ("TCP", "6", "Any")]
    return {"rules": rules, **DEFAULT_FIREWALL_PROFILES, **(state.get("firewall_profiles") or {})}


def _integer(payload: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """As ``Get-CallValue -Type integer -Minimum -Maximum``."""

    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise SimFunctionError(f'Get-DoctorState: "{key}" must be integer, got {type(value).__name__}')
    if not low <= int(value) <= high:
        raise SimFunctionError(f'Get-DoctorState: "{key}" must be between {low} and {high}, got {int(value)}')
    return int(value)


def declared_sections(element, prefix: str = "") -> list[str]:
    """Every section path declared under a ``<configSections>`` element (or a sectionGroup)."""

    result = []
    for child in list(element):
        name = child.get("name", "")
        path = f"{prefix}/{name}" if prefix else name
        if child.tag == "sectionGroup":
            result += declared_sections(child, path)
        elif child.tag == "section":
            result.append(path)
    return result


def _schema(host: "SimHost", config) -> dict[str, list[str]]:
    if config is None:
        return {}
    removed = {name.casefold() for name in doctor_state(host).get("schema_removed", [])}
    products = host.state.get("products", {})
    owned: dict[str, str] = {}
    for product, spec in PRODUCTS.items():
        for section, _ in spec["sections"]:
            owned[section.casefold()] = SCHEMA_FILES[product]
    sections = config.root.find("configSections")
    files: dict[str, list[str]] = {"IIS_schema.xml": []}
    for path in declared_sections(sections) if sections is not None else []:
        file = owned.get(path.casefold(), "IIS_schema.xml")
        if file != "IIS_schema.xml" and not any(SCHEMA_FILES[p] == file for p in products):
            continue
        files.setdefault(file, []).append(path)
    return {file: names for file, names in files.items() if file.casefold() not in removed}


def _web_config(host: "SimHost", path: str) -> dict[str, Any]:
    if not path:
        return {"exists": False, "text": None}
    try:
        local = host.path(expand(path))
    except SimPathError:  # as File.Exists: false for an invalid path
        return {"exists": False, "text": None}
    if not local.is_file():
        return {"exists": False, "text": None}
    data = local.read_bytes()
    return {"exists": True, "size": len(data), "text": data[:WEB_CONFIG_LIMIT].decode("utf-8-sig", "replace")}


def _log(host: "SimHost", folder: str, limit: int) -> dict[str, Any] | None:
    if not folder:
        return None
    try:
        local = host.path(expand(folder))
    except SimPathError:  # as Directory.Exists: false for an invalid path
        return None
    files = [p for p in local.glob("stdout*") if p.is_file()] if local.is_dir() else []
    if not files:
        return None
    newest = max(files, key=lambda p: (p.stat().st_mtime, p.name))
    size = newest.stat().st_size
    with open(newest, "rb") as handle:
        handle.seek(max(0, size - limit))
        tail = handle.read(limit)
    return {"name": newest.name, "size": size, "modified": _stamp(datetime.fromtimestamp(newest.stat().st_mtime, timezone.utc)),
            "tail": tail.decode("utf-8", "replace")}


def _processes(host: "SimHost", needle: str) -> list[dict[str, Any]]:
    from .. import apps
    from ..apps.launch import read_platform
    from ..apps.sites import read_sites

    manager = apps.manager_for(host)
    config = load_config(host)
    if manager is None or config is None:
        return []
    result = []
    for site in read_sites(config):
        status = manager.app_status(site.name)
        if not status or status.get("state") != "running" or not status.get("pid"):
            continue
        try:
            platform = read_platform(host, site)
        except Exception:  # noqa: BLE001 - an unreadable web.config: no command line to show
            platform = None
        if platform is None:
            continue
        process_path = platform.process_path
        if not ntpath.isabs(process_path) and site.physical_path:
            process_path = ntpath.normpath(ntpath.join(site.physical_path, process_path))
        command_line = f'"{process_path}" {platform.arguments}'
        if needle and needle.casefold() not in command_line.casefold():
            continue
        try:
            started = _stamp(datetime.fromtimestamp(os.stat(f"/proc/{status['pid']}").st_mtime, timezone.utc))
        except OSError:
            started = None
        result.append({"pid": status["pid"], "parent_pid": os.getpid(), "name": ntpath.basename(process_path),
                       "command_line": command_line[:2048], "started": started})
    return result


def _request(host: "SimHost", request: dict[str, Any] | None) -> dict[str, Any] | None:
    if not request:
        return None
    from urllib.parse import urlsplit

    from .. import apps
    from ..apps.sites import read_sites
    from .release import _health_once

    answer = {"url": request.get("url"), "host": request.get("host"), "status": None, "body": "", "release": None, "error": None}
    url = urlsplit(str(request.get("url")))
    scheme, port = url.scheme.lower(), url.port or (443 if url.scheme.lower() == "https" else 80)
    manager, config = apps.manager_for(host), load_config(host)
    loopback = None
    for site in read_sites(config) if manager is not None and config is not None else []:
        loopback = loopback or manager.loopback_port(site.name, scheme, port, str(request.get("host") or ""))
    if loopback is None:
        answer["error"] = f"Unable to connect to the remote server ({scheme} port {port}: nothing listens)"
        return answer
    try:
        status, body, release = _health_once(loopback, scheme, url.path or "/", str(request.get("host") or ""), 10.0,
                                             request.get("certificate_hash"))
        answer.update(status=status, body=body[:2048], release=release)
    except Exception as exc:  # noqa: BLE001 - as the module: the error text is the answer
        answer["error"] = f"{type(exc).__name__}: {exc}"
    return answer


def _list(payload: dict[str, Any], key: str) -> list:
    value = payload.get(key) or []
    if not isinstance(value, list):
        raise SimFunctionError(f"Get-DoctorState: '{key}' must be a list")
    return value


@sim_function("Get-DoctorState")
def get_doctor_state(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"acl_paths", "web_config", "log_folder", "log_bytes", "disk_path", "ports", "groups",
    "process_filter", "event_minutes", "event_max", "request"}`` → ``{"now", "acls", "web_config",
    "schema", "groups", "firewall", "disk", "processes", "log", "events", "request"}``."""

    now = datetime.now(timezone.utc)
    ports = {str(p) for p in _list(payload, "ports")}
    log_bytes = _integer(payload, "log_bytes", 4096, 1, LOG_LIMIT)
    minutes = _integer(payload, "event_minutes", 60, 1, 10080)
    event_max = _integer(payload, "event_max", 50, 1, 500)
    with host.lock:
        state = doctor_state(host)
        config = load_config(host)
        acls = {path: _acl(host, path) for path in _list(payload, "acl_paths")}
        groups_known = state.get("groups") or DEFAULT_GROUPS
        groups = {sid: None if groups_known.get(sid, []) is None else list(groups_known.get(sid, []))  # None: unreadable
                  for sid in _list(payload, "groups")}
        firewall = _firewall(host, state, ports)
        disk = {"drive": (expand(str(payload.get("disk_path") or "C:"))[:2]).upper(), **DEFAULT_DISK, **(state.get("disk") or {})}
        since = now - timedelta(minutes=minutes)
        events = [e for e in state.get("events", []) if e.get("time", "") >= _stamp(since)[:19]]
        events = sorted(events, key=lambda e: e.get("time", ""), reverse=True)[:event_max]
        schema = _schema(host, config)
        web_config = _web_config(host, str(payload.get("web_config") or ""))
        log = _log(host, str(payload.get("log_folder") or ""), log_bytes)
    processes = _processes(host, str(payload.get("process_filter") or ""))
    request = _request(host, payload.get("request"))
    answer = {"now": _stamp(now), "acls": acls, "web_config": web_config, "schema": schema, "groups": groups,
              "firewall": firewall, "disk": disk, "processes": processes, "log": log, "events": events, "request": request}
    for part, message in (state.get("probe_errors") or {}).items():
        if part == "acls":  # the module probes each path
            answer["acls"] = {path: {"error": message} for path in acls}
        elif part == "events":  # Get-WinEvent's errors are id-0 entries, the events read are kept
            answer["events"] = [{"id": 0, "time": None, "provider": "Get-WinEvent", "pool": "", "message": message}, *events]
        elif part in answer and part not in ("now", "groups", "request"):
            answer[part] = {"error": message}
    return json.dumps(answer)

