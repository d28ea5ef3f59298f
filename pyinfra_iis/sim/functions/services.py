"""The ARR mode's app services on the simulated host (``remote/PyinfraIis/95-services.ps1``):
``Install-AppService``, ``Start-AppService``, ``Stop-AppService``, ``Get-AppServiceState``.

The services run for REAL: ``Start-AppService`` reads the WinSW XML beside the wrapper (as
WinSW does at each start) and runs its ``<executable>`` and ``<arguments>`` as a local process
(the release venv's ``python.exe`` mapped to the local stand-in venv the release's pip step
made, ``sim/apps/launch.py``; Windows paths mapped into the state directory), with the XML's
``<env>`` and ``<workingdirectory>``, stdout and stderr appended to ``<logpath>\\<id>.out.log``
and ``.err.log``. A stop sends SIGINT to the main process (WinSW sends Ctrl+C), waits the XML's
``<stoptimeout>`` and then kills the process group (WinSW: TerminateProcess).

Loopback ports: every simulated host shares this machine's 127.0.0.1, so the ``--port`` of the
XML (the port on the simulated host) is replaced by a free local port; :func:`local_port` maps
one to the other, for the health check here and for the ARR proxy (``sim/apps/arr_proxy.py``).

Differences from Windows, said rather than guessed: WinSW's ``roll-by-size`` rotation is not
simulated (the logs only grow); ``onfailure`` restarts are not simulated (a dead process shows
as ``Stopped``); the service account is not enforced. State: ``host.state["services"]``
(``{id: {"wrapper", "state"}}``); a simulator restarted with a service marked Running starts it
again on first use, as the Automatic start mode does after a reboot (:func:`autostart`); a stopped
one stays stopped, as ``Stop-AppService`` sets its startup type to Disabled (which also keeps the
SCM from restarting a crashed idle slot).
"""

from __future__ import annotations

import atexit
import hashlib
import http.client
import json
import ntpath
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...release.services import parse_service_xml
from ..apps.httpplatform import map_argument, split_windows_arguments
from ..apps.launch import SIM_VENV_MARKER
from ..apps.process import base_environment, free_port, kill_process_group
from ..apps.venv import venv_python
from ..host import SimPathError
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_KEY = "services"
#: Seconds a start waits for the process to listen (Start-Service returns once the wrapper runs;
#: the health check then waits for the app).
LISTEN_WAIT_SECONDS = 60.0


class _Running:
    """One service's local process: ``process``, ``host_port`` (the XML's), ``local_port``."""

    def __init__(self, process: subprocess.Popen, host_port: int | None, local_port: int | None, stop_timeout: float, err_log: Path | None):
        self.process, self.host_port, self.local_port = process, host_port, local_port
        self.stop_timeout, self.err_log = stop_timeout, err_log


_LOCK = threading.RLock()
_RUNNING: dict[tuple[Path, str], _Running] = {}


def _kill(running: _Running) -> None:
    kill_process_group(running.process)


@atexit.register
def _kill_all() -> None:
    with _LOCK:
        entries = list(_RUNNING.values())
        _RUNNING.clear()
    for running in entries:
        _kill(running)


def stop_all(host: "SimHost") -> None:
    """Kill ``host``'s service processes (the simulator stops: a power-off; the state keeps
    which ones were Running, so they start again on first use)."""

    with _LOCK:
        keys = [key for key in _RUNNING if key[0] == host.state_dir]
        entries = [_RUNNING.pop(key) for key in keys]
    for running in entries:
        _kill(running)


def _alive(host: "SimHost", name: str) -> _Running | None:
    with _LOCK:
        running = _RUNNING.get((host.state_dir, name))
    return running if running is not None and running.process.poll() is None else None


def _status(host: "SimHost", name: str) -> str | None:
    with host.lock:
        entry = host.state.get(STATE_KEY, {}).get(name)
    if entry is None:
        return None
    return "Running" if _alive(host, name) is not None else "Stopped"


def local_port(host: "SimHost", port: int) -> int | None:
    """The local port of the running service that listens on ``port`` of the simulated host."""

    with _LOCK:
        for (state_dir, _), running in _RUNNING.items():
            if state_dir == host.state_dir and running.host_port == port and running.process.poll() is None:
                return running.local_port
    return None


def autostart(host: "SimHost") -> None:
    """Start the services the state marks Running whose process is gone (after a restart)."""

    with host.lock:
        wanted = [name for name, entry in host.state.get(STATE_KEY, {}).items() if entry.get("state") == "Running"]
    for name in wanted:
        if _alive(host, name) is None:
            try:
                _launch(host, name)
            except SimFunctionError:
                pass


def _local(host: "SimHost", path: str) -> Path:
    try:
        return host.path(path)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise SimFunctionError(f"'{key}' must be a non-empty string")
    return value


def _read_xml(host: "SimHost", wrapper: str) -> dict[str, Any]:
    xml = _local(host, wrapper[:-4] + ".xml")
    if not xml.is_file():
        raise SimFunctionError(f"WinSW: cannot find the configuration file {wrapper[:-4]}.xml")
    try:
        return parse_service_xml(xml.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise SimFunctionError(f"WinSW: {exc}") from None


def _seconds(text: str | None, default: float) -> float:
    if not text:
        return default
    number = "".join(c for c in text if c.isdigit())
    return float(number) if number else default


@sim_function("Install-AppService")
def install_app_service(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"name","wrapper","source","sha256"}`` → ``{"name","installed","state"}``: the wrapper
    copied from ``source`` (a host path, or an https/UNC source a test seeded,
    ``sim/functions/msi.seed_remote_source``) unless it has ``sha256``; "install" unless the
    service exists (it needs the XML beside the wrapper, with ``<id>`` = ``name``)."""

    name, wrapper, source, sha256 = (_text(payload, k) for k in ("name", "wrapper", "source", "sha256"))
    if not wrapper.lower().endswith(f"\\{name.lower()}.exe"):
        raise SimFunctionError(f"Install-AppService: \"wrapper\" must be an absolute path ending in \\{name}.exe")
    target = _local(host, wrapper)
    current = hashlib.sha256(target.read_bytes()).hexdigest() if target.is_file() else None
    if current != sha256.lower():
        if _status(host, name) == "Running":
            raise SimFunctionError(f"Install-AppService: {name} runs another wrapper; stop it before its wrapper is replaced")
        if source.lower().startswith("https://") or source.startswith("\\\\"):
            seeded = host.state.get("remote_sources", {}).get(source)
            if seeded is None:
                raise SimFunctionError(f"not supported by the simulator: it cannot download or read '{source}' (no network)")
            data = (host.state_dir / "remote-sources" / seeded).read_bytes()
        else:
            local = _local(host, source)
            if not local.is_file():
                raise SimFunctionError(f"Cannot find path '{source}' because it does not exist.")
            data = local.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256.lower():
            raise SimFunctionError(f"Install-AppService: SHA-256 mismatch for {wrapper}: expected {sha256.lower()}, actual {actual}; "
                                   "the file was deleted and nothing was installed")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    installed = False
    with host.lock:
        services = host.state.setdefault(STATE_KEY, {})
        if name not in services:
            if _read_xml(host, wrapper)["id"] != name:
                raise SimFunctionError(f"Install-AppService: {name} install exited with 1: the XML's <id> is not {name}")
            services[name] = {"wrapper": wrapper, "state": "Stopped"}
            installed = True
            host.save()
    return json.dumps({"name": name, "installed": installed, "state": _status(host, name)})


def _launch(host: "SimHost", name: str) -> _Running:
    with host.lock:
        entry = host.state.get(STATE_KEY, {}).get(name)
    if entry is None:
        raise SimFunctionError(f"service {name} is not installed")
    spec = _read_xml(host, entry["wrapper"])
    executable = spec["executable"] or ""
    folder, exe = ntpath.split(ntpath.normpath(executable))
    marker = _local(host, ntpath.join(ntpath.dirname(folder), SIM_VENV_MARKER))
    if exe.lower() != "python.exe" or not marker.is_file():
        raise SimFunctionError(f"the simulator cannot run {executable}: only a release venv's Scripts\\python.exe made by the release's pip step")
    argv = [str(venv_python(json.loads(marker.read_text(encoding="utf-8"))["local_venv"]))]
    arguments = split_windows_arguments(spec["arguments"])
    host_port = port = None
    for index, argument in enumerate(arguments):
        if index and arguments[index - 1] == "--port" and argument.isdigit():
            host_port, port = int(argument), free_port()
            argument = str(port)
        argv.append(map_argument(argument, lambda p: str(_local(host, p))))
    environment = {**base_environment(), **spec["env"]}
    cwd = _local(host, spec["workingdirectory"]) if spec["workingdirectory"] else None
    logs = _local(host, spec["logpath"]) if spec["logpath"] else None
    out = err = subprocess.DEVNULL
    err_log = None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        out, err_log = open(logs / f"{name}.out.log", "ab"), logs / f"{name}.err.log"
        err = open(err_log, "ab")
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    except OSError as exc:
        raise SimFunctionError(f"the service's process cannot start: {exc.strerror or exc}") from None
    finally:
        for handle in (out, err):
            if handle is not subprocess.DEVNULL:
                handle.close()
    running = _Running(process, host_port, port, _seconds(spec["stoptimeout"], 15.0), err_log)
    with _LOCK:
        _RUNNING[(host.state_dir, name)] = running
    deadline = time.monotonic() + LISTEN_WAIT_SECONDS
    while port is not None and time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    return running


def _health(host: "SimHost", name: str, running: _Running, health: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(str(health.get("url") or ""))
    version = health.get("expect_version") or ""
    expect = int(health.get("expect_status") or 200)
    deadline = time.monotonic() + float(health.get("deadline_seconds") or 120)
    started = time.monotonic()
    answer: dict[str, Any] = {"ok": False, "status": None, "body": "", "error": None}
    while True:
        answer = {"ok": False, "status": None, "body": "", "error": None}
        if running.process.poll() is not None:
            tail = running.err_log.read_text(encoding="utf-8", errors="replace")[-2000:] if running.err_log and running.err_log.is_file() else ""
            answer["error"] = f"the service's process exited with code {running.process.returncode}: {tail.strip()}"
            break
        port = local_port(host, url.port or 80) if url.hostname == "127.0.0.1" else None
        if port is None:
            answer["error"] = f"nothing listens on {url.netloc} of the host"
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", url.path or "/", headers={"Host": str(health.get("host") or url.netloc), "Connection": "close"})
                response = connection.getresponse()
                body = response.read(2048).decode("utf-8", "replace")
                release = response.getheader("X-Release-Version")
                from_release = not version or release == version or f'"{version}"' in body
                answer.update(status=response.status, body=body, ok=response.status == expect and from_release)
                if response.status == expect and not from_release:
                    answer["error"] = f"the answer came from release {release}, not {version}"
            except OSError as exc:
                answer["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                connection.close()
        if answer["ok"] or time.monotonic() + 0.25 >= deadline:
            break
        time.sleep(0.25)
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


@sim_function("Start-AppService")
def start_app_service(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"name","health","log"}`` → ``{"name","state","health","log_tail"}``: start (a running
    service is left running), then poll the health URL (``http://127.0.0.1:<slot port>/...`` of
    the host) until healthy, the deadline, or the process exits; unhealthy: the last 30 lines of
    ``log`` (the service's stderr log) as ``log_tail``."""

    name = _text(payload, "name")
    health = payload.get("health")
    if not isinstance(health, dict):
        raise SimFunctionError("Start-AppService: \"health\" must be an object")
    if _status(host, name) is None:
        raise SimFunctionError(f"Start-AppService: service {name} is not installed")
    running = _alive(host, name) or _launch(host, name)
    with host.lock:
        host.state[STATE_KEY][name]["state"] = "Running"
        host.save()
    answer = _health(host, name, running, health)
    log = payload.get("log") or ""
    tail = None
    if not answer["ok"] and log:
        local = _local(host, log)
        lines = local.read_text(encoding="utf-8", errors="replace").splitlines()[-30:] if local.is_file() else []
        tail = "\n".join(lines) if lines else f"({log} is empty)" if local.is_file() else f"(no file at {log})"
    return json.dumps({"name": name, "state": _status(host, name), "health": answer, "log_tail": tail})


@sim_function("Stop-AppService")
def stop_app_service(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"name"}`` → ``{"name","state"}``: SIGINT to the main process (WinSW's Ctrl+C), wait
    ``<stoptimeout>``, then kill the process group."""

    name = _text(payload, "name")
    with _LOCK:
        running = _RUNNING.pop((host.state_dir, name), None)
    if running is not None and running.process.poll() is None:
        running.process.send_signal(signal.SIGINT)
        try:
            running.process.wait(timeout=running.stop_timeout)
        except subprocess.TimeoutExpired:
            _kill(running)
    with host.lock:
        entry = host.state.get(STATE_KEY, {}).get(name)
        if entry is not None:
            entry["state"] = "Stopped"
            host.save()
    return json.dumps({"name": name, "state": _status(host, name)})


@sim_function("Get-AppServiceState")
def get_app_service_state(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"names"}`` → ``{"services": {name: "Running" | "Stopped" | null}}``."""

    names = payload.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SimFunctionError("Get-AppServiceState: \"names\" must be an array of non-empty strings")
    autostart(host)
    return json.dumps({"services": {name: _status(host, name) for name in names}})
