"""Releases on the simulated host: the host primitives of docs/remote-functions.md, "Releases".

The host keeps primitives; the controller (``operations/release.py``) decides:

* ``Install-Release`` ``{"artifact", "sha256", "destination"}``: check the artifact's SHA-256,
  unpack it into ``destination``, list every file there (path, size, SHA-256).
* ``Invoke-Program`` ``{"file", "arguments", "working_directory", "environment",
  "timeout_seconds"}``: run a program with a time limit, return exit code and output tails.
* ``Write-TextFile`` ``{"path", "text"}``: write a small UTF-8 file atomically.
* ``Remove-ReleasePaths`` ``{"paths", "marker"}``: remove files and folders; a folder loses its
  completion marker first, is renamed to ``<name>.deleting``, and is refused when a reparse
  point (junction) is anywhere inside.
* ``Switch-Release``: one transaction: physicalPath (and the app secrets) in one commit,
  recycle, health check, restore on failure, release-state.json written either way.
* the ``releases`` part of ``Get-HostState``: raw (release-state.json text, the folders with
  their completion marker text and web.config hash, the stdout logs).

What the simulator does differently: it cannot run the target Windows Python, so
``Invoke-Program`` understands the two programs the controller runs (``python -I -m venv`` and
``<venv>\\Scripts\\python.exe -I -m pip install --no-index ...``): the "pip install" checks that
the wheelhouse holds every wheel the requirements name, builds (or reuses) a local venv with the
same pins (``sim/apps/venv.py``), and leaves ``venv\\pyinfra-iis-sim-venv.json`` naming it. The
switched release then runs for real (``sim/apps``); the health check is a real HTTP(S) request.

Every physicalPath the switch writes is recorded in
``host.state["sim_releases"]["physical_path_history"]`` (``{"at", "site", "physicalPath",
"release", "complete"}``), so tests can assert the site never pointed at an incomplete release.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ntpath
import os
import shutil
import socket
import ssl
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...release.manifest import sha256_file
from .. import apps
from ..apps.launch import SIM_VENV_MARKER
from ..apps.sites import pool_environment, read_sites, site_by_name
from ..apps.venv import VenvBuildError, ensure_venv, parse_requirements
from ..host import SimPathError
from ..iis.store import STARTED, load_config, pool_names, runtime
from . import SimFunctionError, sim_function
from .iis_config import set_iis_config
from .runtime import restart_iis_app_pool

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_FILE = "release-state.json"
#: The completion marker: written last into a release folder; it defines "complete".
COMPLETE_MARKER = ".pyinfra-iis-complete"
LOG_TAIL_LINES = 30
BODY_LIMIT = 2048
OUTPUT_LIMIT = 8192
#: Seconds between two health requests.
HEALTH_INTERVAL = 0.25
#: Response header that names the release that answered (web.config's PYINFRA_IIS_RELEASE).
RELEASE_HEADER = "X-Release-Version"

_ROOT_LOCKS: dict[tuple[Path, str], threading.Lock] = {}
_ROOT_LOCKS_GUARD = threading.Lock()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _root_lock(host: "SimHost", root: str) -> threading.Lock:
    with _ROOT_LOCKS_GUARD:
        return _ROOT_LOCKS.setdefault((host.state_dir, root.casefold()), threading.Lock())


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise SimFunctionError(f"'{key}' must be a non-empty string")
    return value


def _local(host: "SimHost", path: str) -> Path:
    try:
        return host.path(path)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None


def is_complete(local: Path) -> bool:
    """Whether a local release folder is complete: its completion marker exists (written last)
    and its name is a final one."""

    return not local.name.endswith((".partial", ".deleting")) and (local / COMPLETE_MARKER).is_file()


# --- Get-HostState "releases" (raw) ----------------------------------------------------------


def _stamp(path: Path, precise: bool = False) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")


def describe_releases(host: "SimHost", roots: list[str], digest_key: bytes | None = None) -> dict[str, Any]:
    """Raw ``releases`` for each root: ``{"state": text|None, "folders": [{"name", "marker": the
    completion marker's last write time or None, "web_config_sha256"}], "logs": [{"name", "size",
    "modified"}], "services": {"<slot>\\<id>.xml": secret_digest of the ARR slot's WinSW XML}}``
    (``facts/release_state.py`` turns it into what operations read; ``services`` only with
    ``digest_key``)."""

    result = {}
    for root in roots:
        root = root.rstrip("\\")
        state_file = _local(host, f"{root}\\{STATE_FILE}")
        folders, logs = [], []
        releases = _local(host, f"{root}\\releases")
        for child in sorted(releases.iterdir()) if releases.is_dir() else []:
            if child.is_dir():
                marker, web_config = child / COMPLETE_MARKER, child / "web.config"
                folders.append({"name": child.name,
                                "marker": _stamp(marker, precise=True) if marker.is_file() else None,
                                "web_config_sha256": sha256_file(web_config) if web_config.is_file() else None})
        log_dir = _local(host, f"{root}\\logs")
        for item in sorted(log_dir.iterdir()) if log_dir.is_dir() else []:
            if item.is_file():
                logs.append({"name": item.name, "size": item.stat().st_size, "modified": _stamp(item)})
        services = {}
        service_dir = _local(host, f"{root}\\services")
        for item in sorted(service_dir.glob("*/*.xml")) if service_dir.is_dir() and digest_key else []:
            from ...protocol import secret_digest

            services[f"{item.parent.name}\\{item.name}"] = secret_digest(item.read_text(encoding="utf-8"), digest_key)
        result[root] = {"state": state_file.read_text(encoding="utf-8") if state_file.is_file() else None,
                        "folders": folders, "logs": logs, "services": services}
    return result


# --- Install-Release: check, unpack, list ------------------------------------------------------


def _listing(folder: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files.append({"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)})
    return files


@sim_function("Install-Release")
def install_release(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"artifact","sha256","destination"}`` → ``{"files": [{"path","size","sha256"}]}``.

    The artifact's SHA-256 is checked before anything is unpacked; entries escaping the
    destination are refused; existing files are overwritten. The listing covers the whole
    destination (an extra file shows up too).
    """

    artifact, destination = _text(payload, "artifact"), _text(payload, "destination")
    expected = _text(payload, "sha256").lower()
    local_artifact, target = _local(host, artifact), _local(host, destination)
    if not local_artifact.is_file():
        raise SimFunctionError(f"Install-Release: Cannot find path '{artifact}' because it does not exist.")
    actual = sha256_file(local_artifact)
    if actual != expected:
        raise SimFunctionError(f"Install-Release: SHA-256 mismatch for {artifact}: expected {expected}, actual {actual}; nothing was unpacked")
    try:
        with zipfile.ZipFile(local_artifact) as archive:
            for info in archive.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in info.filename or ":" in info.filename:
                    raise SimFunctionError(f"Install-Release: refusing the archive entry {info.filename!r} (outside {destination})")
            target.mkdir(parents=True, exist_ok=True)
            for info in archive.infolist():
                if info.is_dir():
                    continue
                path = target.joinpath(*PurePosixPath(info.filename).parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(path, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SimFunctionError(f"Install-Release: unpacking {artifact} into {destination} failed: {type(exc).__name__}: {exc}") from None
    return json.dumps({"files": _listing(target)})


# --- Invoke-Program ------------------------------------------------------------------------------


def _tail(text: str) -> str:
    return text[-OUTPUT_LIMIT:]


def _sim_venv(host: "SimHost", python: str, arguments: list[str]) -> tuple[int, str, str]:
    """``python -I -m venv <dir>``: a venv folder with a placeholder python.exe."""

    venv = _local(host, arguments[3])
    if not _local(host, python).is_file():
        return 1, "", f"The system cannot find the file specified: {python}"
    scripts = venv / "Scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "python.exe").write_bytes(b"pyinfra-iis simulator: placeholder; see ..\\" + SIM_VENV_MARKER.encode() + b"\r\n")
    (venv / "pyvenv.cfg").write_text(f"home = {ntpath.dirname(python)}\r\ninclude-system-site-packages = false\r\n", encoding="utf-8")
    return 0, "", ""


def _sim_pip(host: "SimHost", python: str, arguments: list[str]) -> tuple[int, str, str]:
    """``<venv>\\Scripts\\python.exe -I -m pip install --no-index --find-links W -r R ...``."""

    venv = _local(host, ntpath.dirname(ntpath.dirname(python)))
    wheelhouse = _local(host, arguments[arguments.index("--find-links") + 1])
    requirements_file = _local(host, arguments[arguments.index("-r") + 1])
    if not (venv / "pyvenv.cfg").is_file():
        return 1, "", f"The system cannot find the file specified: {python}"
    requirements = parse_requirements(requirements_file.read_text(encoding="utf-8"))
    present = {p.name.split("-")[0].lower().replace("_", "-") + "==" + p.name.split("-")[1] for p in wheelhouse.glob("*.whl")}
    missing = [r for r in requirements if r.replace("_", "-") not in present]
    if missing:
        return 1, "", "ERROR: Could not find a version that satisfies the requirement " + ", ".join(missing) + " (from versions: none)"
    try:
        local_venv = ensure_venv(requirements)
    except VenvBuildError as exc:
        return 1, "", f"building the simulator's local venv failed: {exc}"
    marker = {"local_venv": str(local_venv), "requirements": requirements,
              "note": "the simulator runs this release with a local venv (this OS's wheels, same pinned versions) "
                      "and the controller's Python, not the target Windows Python"}
    (venv / SIM_VENV_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return 0, "Successfully installed " + " ".join(requirements), ""


from ...release.startcheck import START_CHECK_SCRIPT  # noqa: E402


@sim_function("Invoke-Program")
def invoke_program(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"file","arguments","working_directory","environment","timeout_seconds"}`` →
    ``{"exit_code","stdout","stderr"}`` (the last 8 KB of each). The simulator runs only the
    venv and pip steps of a release (module docstring)."""

    program = _text(payload, "file")
    arguments = payload.get("arguments") or []
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise SimFunctionError("Invoke-Program: 'arguments' must be an array of strings")
    if arguments[:4] and arguments[:3] == ["-I", "-m", "venv"] and len(arguments) == 4:
        code, out, err = _sim_venv(host, program, arguments)
    elif arguments[:4] == ["-I", "-m", "pip", "install"] and "--find-links" in arguments and "-r" in arguments:
        code, out, err = _sim_pip(host, program, arguments)
    elif arguments[:2] == ["-I", "-c"] and len(arguments) == 4 and arguments[2] == START_CHECK_SCRIPT:
        # the release's start check run on its own (ARR mode, operations/arr.py), as Switch-Release's preflight runs it
        from ..apps.startcheck import run_start_check

        run = run_start_check(host, payload)
        if run.get("error"):
            raise SimFunctionError(str(run["error"]).replace("Switch-Release:", "Invoke-Program:"))
        code, out, err = run["exit_code"], run["stdout"], run["stderr"]
    else:
        raise SimFunctionError(f"Invoke-Program: the simulator cannot run {program} {' '.join(arguments)}")
    return json.dumps({"exit_code": code, "stdout": _tail(out), "stderr": _tail(err)})


# --- Write-TextFile, Remove-ReleasePaths -------------------------------------------------------------


@sim_function("Write-TextFile")
def write_text_file(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","text"}`` → ``{"written": true}``: UTF-8 without BOM, through a temporary file
    renamed over the target (a reader never sees half a file). Like the module, a missing
    parent folder is an error (nothing creates it)."""

    path, text = _local(host, _text(payload, "path")), payload.get("text")
    if not isinstance(text, str):
        raise SimFunctionError("Write-TextFile: 'text' must be a string")
    if not path.parent.is_dir():  # FileStream(CreateNew) does not create folders: the module throws
        raise SimFunctionError(f"Write-TextFile: cannot write {_text(payload, 'path')}: Could not find a part of the path.")
    temp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    temp.write_bytes(text.encode("utf-8"))
    os.replace(temp, path)
    return json.dumps({"written": True})


def _reparse_points(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_symlink()]


@sim_function("Remove-ReleasePaths")
def remove_release_paths(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"paths","marker"}`` → ``{"removed": [paths]}`` (absent paths are skipped).

    A folder first loses ``marker`` (so an interrupted delete never leaves a folder that looks
    complete), is renamed to ``<path>.deleting``, and is refused when it or anything inside is a
    reparse point (nothing is deleted then).
    """

    paths, marker = payload.get("paths"), payload.get("marker") or COMPLETE_MARKER
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise SimFunctionError("Remove-ReleasePaths: 'paths' must be an array of paths")
    removed = []
    for windows in paths:
        local = _local(host, windows)
        if local.is_symlink():
            raise SimFunctionError(f"Remove-ReleasePaths: {windows} is a reparse point; refusing to delete through it")
        if local.is_file():
            local.unlink()
        elif local.is_dir():
            junctions = _reparse_points(local)
            if junctions:
                raise SimFunctionError(f"Remove-ReleasePaths: {windows} holds a reparse point ({junctions[0].relative_to(local)}); nothing was deleted")
            (local / marker).unlink(missing_ok=True)
            if not local.name.endswith(".deleting"):
                doomed = local.with_name(local.name + ".deleting")
                if doomed.exists():
                    shutil.rmtree(doomed)
                os.rename(local, doomed)
                local = doomed
            shutil.rmtree(local)
        else:
            continue
        removed.append(windows)
    return json.dumps({"removed": removed})


# --- Switch-Release ---------------------------------------------------------------------------


def physical_path_history(host: "SimHost") -> list[dict[str, Any]]:
    """Every physicalPath Switch-Release wrote (see module docstring). Call under ``host.lock``."""

    return host.state.setdefault("sim_releases", {}).setdefault("physical_path_history", [])


def _commit(host: "SimHost", site: str, pool: str, path: str, environment: dict[str, str | None]) -> None:
    """physicalPath and the pool's variables (``None`` removes one) in ONE commit."""

    edits = [{"section": "system.applicationHost/sites", "action": "set", "attributes": {"physicalPath": path},
              "path": [{"item": "site", "key": {"name": site}}, {"item": "application", "key": {"path": "/"}},
                       {"item": "virtualDirectory", "key": {"path": "/"}}]}]
    base = [{"item": "add", "key": {"name": pool}}, {"child": "environmentVariables"}]
    for name, value in environment.items():
        step = [*base, {"item": "add", "key": {"name": name}}]
        if value is None:
            edits.append({"section": "system.applicationHost/applicationPools", "action": "remove", "path": step})
        else:
            edits.append({"section": "system.applicationHost/applicationPools", "action": "set", "attributes": {"value": value}, "path": step})
    with host.lock:
        set_iis_config(host, {"edits": edits})  # one commit, all or nothing
        local = None
        try:
            local = host.path(path)
        except SimPathError:
            pass
        in_releases = ntpath.basename(ntpath.dirname(path)).casefold() == "releases"
        physical_path_history(host).append({
            "at": _now(), "site": site, "physicalPath": path,
            "release": ntpath.basename(path) if in_releases else None,
            "complete": (local is not None and is_complete(local)) if in_releases else None,
        })
        host.save()


def _recycle(host: "SimHost", pool: str) -> None:
    restart_iis_app_pool(host, {"name": pool})  # counts the recycle and fires the pool hook


def _health_once(port: int, scheme: str, target: str, host_header: str, timeout: float,
                 certificate_hash: str | None) -> tuple[int, str, str | None]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # checked below: the thumbprint, as the host does
        raw = context.wrap_socket(raw, server_hostname=host_header)
        if certificate_hash:
            # As the per-request ServerCertificateValidationCallback on Windows: the handshake is
            # accepted when the presented certificate is the binding's, whatever its name.
            thumbprint = hashlib.sha1(raw.getpeercert(binary_form=True) or b"").hexdigest()
            if thumbprint.lower() != certificate_hash.lower():
                raw.close()
                raise ssl.SSLError(f"the certificate presented ({thumbprint.upper()}) is not the binding's ({certificate_hash.upper()})")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.sock = raw
    try:
        connection.request("GET", target, headers={"Host": host_header, "User-Agent": "pyinfra-iis health check"})
        response = connection.getresponse()
        body = response.read(BODY_LIMIT * 2).decode("utf-8", "replace")[:BODY_LIMIT]
        return response.status, body, response.getheader(RELEASE_HEADER)
    finally:
        connection.close()


def carries_version(version: str | None, header: str | None, body: str) -> bool:
    """Whether an answer comes from release ``version``: the ``X-Release-Version`` header equals
    it, or the body holds it as a JSON string (``"version": "1.4.2"``). No version asked: True."""

    return not version or header == version or f'"{version}"' in body


def health_check(manager, site: str, health: dict[str, Any]) -> dict[str, Any]:
    """Request ``health["url"]`` through the site's binding until ``expect_status`` from the
    release ``expect_version``, or the deadline.

    The URL's scheme and port select the IIS binding (``Host`` = ``health["host"]``); the request
    goes to the loopback port serving it. Returns ``{"ok", "status", "body", "seconds", "error"}``:
    the last HTTP answer received (``status`` None when none came) and the last error.
    """

    url = urlsplit(health["url"])
    scheme = url.scheme.lower()
    port = url.port or (443 if scheme == "https" else 80)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    host_header = health.get("host") or url.hostname or ""
    expect = int(health.get("expect_status", 200))
    started = time.monotonic()
    deadline = started + float(health.get("deadline_seconds", 120))
    answer: dict[str, Any] = {"ok": False, "status": None, "body": "", "error": None}
    while True:
        remaining = deadline - time.monotonic()
        loopback = manager.loopback_port(site, scheme, port, host_header)
        if loopback is None:
            answer.update(status=None, body="", error=f"no {scheme} binding on port {port} of site {site} is served")
        else:
            try:
                status, body, release = _health_once(loopback, scheme, target, host_header, max(1.0, remaining), health.get("certificate_hash"))
                answer.update(status=status, body=body, error=None)
                if status == expect and carries_version(health.get("expect_version"), release, body):
                    answer["ok"] = True
                    break
                if status == expect:
                    answer["error"] = f"the answer came from release {release or 'unknown'}, not {health.get('expect_version')}"
                if release is None and status in (health.get("give_up_statuses") or []):
                    # IIS answered itself (no release header): 502.3 = HttpPlatformHandler gave up starting
                    # the app, 503 = the pool is stopped (rapid-fail protection). Waiting cannot help (hph).
                    answer["error"] = f"IIS answered {status} itself: the app cannot start or its pool stopped; not waiting for the deadline"
                    break
            except (OSError, http.client.HTTPException) as exc:
                # A request cut short by the deadline must not hide the last real answer.
                answer["error"] = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + HEALTH_INTERVAL >= deadline:
            break
        time.sleep(HEALTH_INTERVAL)
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


def _logs(host: "SimHost", folder: str) -> set[str]:
    local = _local(host, folder)
    return {p.name for p in local.glob("*.log")} if local.is_dir() else set()


def log_tail(host: "SimHost", folder: str, before: set[str], lines: int = LOG_TAIL_LINES) -> tuple[str | None, str]:
    """``(file name, last lines)`` of the stdout log the NEW process wrote: a ``*.log`` in
    ``folder`` that did not exist before the switch (not the newest by write time: the old
    release's log may be newer). ``(None, "")`` when there is none."""

    local = _local(host, folder)
    fresh = sorted(p for p in local.glob("*.log") if p.name not in before and p.is_file() and p.stat().st_size) if local.is_dir() else []
    if not fresh:
        return None, ""
    text = fresh[-1].read_text(encoding="utf-8", errors="replace")
    return fresh[-1].name, "\n".join(text.splitlines()[-lines:])


def _write(host: "SimHost", path: str, text: str) -> None:
    write_text_file(host, {"path": path, "text": text})


@sim_function("Switch-Release")
def switch_release(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"site","app_pool","path","environment","health","state_file","state_ok","state_failed",
    "logs"}`` → ``{"switched": bool, "health": {"status","body","seconds"}}``.

    Refuses a target folder without the completion marker, an unknown site or pool, a stopped
    pool. Already serving ``path`` with those variables and healthy: ``switched: false``, nothing
    committed or recycled. Otherwise ONE commit (physicalPath and the pool's ``environment`` variables), recycle,
    health check; healthy: ``state_ok`` written to ``state_file``. Unhealthy: physicalPath and the
    variables restored (one commit), recycle, ``state_failed`` written, and the error has the
    health answer and the tail of the stdout log the new process wrote.
    """

    site_name, pool, target = _text(payload, "site"), _text(payload, "app_pool"), _text(payload, "path")
    health, environment = payload.get("health"), payload.get("environment") or {}
    if not isinstance(health, dict) or not isinstance(health.get("url"), str):
        raise SimFunctionError("'health' must be an object with 'url', 'host', 'deadline_seconds', 'expect_status'")
    state_file, logs = _text(payload, "state_file"), _text(payload, "logs")
    if not is_complete(_local(host, target)):
        raise SimFunctionError(f"Switch-Release: {target} has no completion marker ({COMPLETE_MARKER}): it is not a complete release")
    root = ntpath.dirname(ntpath.dirname(target))
    with _root_lock(host, root):
        with host.lock:
            config = load_config(host)
            if config is None:
                raise SimFunctionError("IIS is not installed: install the Web-Server feature first")
            site = site_by_name(read_sites(config), site_name)
            pool_key = next((p for p in pool_names(config) if p.casefold() == pool.casefold()), None)
            if site is None:
                raise SimFunctionError(f"site '{site_name}' does not exist")
            if pool_key is None:
                raise SimFunctionError(f"app pool '{pool}' does not exist")
            if runtime(host)["app_pools"].get(pool_key, STARTED) != STARTED:
                raise SimFunctionError(f"app pool '{pool_key}' is stopped: start it before switching")
            old_environment = pool_environment(config, pool_key)
        manager = apps.manager_for(host, create=True)
        before = site.physical_path
        restore = {name: old_environment.get(name) for name in environment}
        if (before or "").casefold() == target.casefold() and all(old_environment.get(k) == v for k, v in environment.items()):
            # Already so (e.g. the same call re-sent after a lost reply): no commit, no recycle,
            # as long as it answers healthy.
            answer = health_check(manager, site.name, health)
            if answer["ok"]:
                _write(host, state_file, _text(payload, "state_ok"))
                return json.dumps({"switched": False, "health": _public(answer)})
        preflight = payload.get("preflight")
        if isinstance(preflight, dict):  # the release's start check, before anything is committed (hph)
            from ..apps.startcheck import run_start_check, start_check_refusal

            refusal = start_check_refusal(target, run_start_check(host, preflight))
            if refusal:
                _write(host, state_file, _text(payload, "state_failed"))
                raise SimFunctionError(refusal)
        logs_before = _logs(host, logs)
        _commit(host, site.name, pool_key, target, dict(environment))
        _recycle(host, pool_key)
        answer = health_check(manager, site.name, health)
        if answer["ok"]:
            _write(host, state_file, _text(payload, "state_ok"))
            return json.dumps({"switched": True, "health": _public(answer)})
        name, tail = log_tail(host, logs, logs_before)  # before the restore starts the old release
        if before:
            _commit(host, site.name, pool_key, before, restore)
            _recycle(host, pool_key)
        _write(host, state_file, _text(payload, "state_failed"))
    got = f"HTTP {answer['status']}" if answer["status"] is not None else (answer["error"] or "no answer")
    if answer["status"] is not None and answer["error"]:
        got += f" ({answer['error']})"
    raise SimFunctionError(
        f"Switch-Release {target}: health check {health['url']} (Host: {health.get('host')}) failed after "
        f"{answer['seconds']} s: expected {health.get('expect_status', 200)}, got {got}; body: {answer['body']}\n"
        f"physicalPath restored to {before}.\n"
        + (f"Last {LOG_TAIL_LINES} lines of {logs}\\{name}:\n{tail}" if name else f"No new stdout log in {logs}."))


def _public(answer: dict[str, Any]) -> dict[str, Any]:
    return {"status": answer["status"], "body": answer["body"], "seconds": answer["seconds"]}
