"""Releases on the simulated host: ``Install-Release``, ``Switch-Release``,
``Remove-OldReleases`` and the "releases" part of ``Get-HostState`` (docs/remote-functions.md,
"Releases"; design.md "Releases").

What the simulator does differently: it cannot run ``python -m venv`` with the target Windows
Python nor install ``win_amd64`` wheels, so the "venv" step checks that the wheelhouse holds
every wheel the manifest names (what ``pip install --no-index`` needs), builds (or reuses) a
local venv with the same pins (``sim/apps/venv.py``), and leaves ``venv\\Scripts\\python.exe``
as a placeholder with ``venv\\pyinfra-iis-sim-venv.json`` naming the local venv. The switched
release then runs for real (``sim/apps``), and the health check is a real HTTP(S) request to
the loopback port serving the IIS binding.

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

from pydantic import ValidationError

from ...release.manifest import MANIFEST_NAME, REQUIREMENTS_NAME, WHEELHOUSE_DIR, Manifest
from .. import apps
from ..apps.launch import SIM_VENV_MARKER
from ..apps.sites import read_sites, site_by_name
from ..apps.venv import VenvBuildError, ensure_venv, parse_requirements
from ..host import SimPathError
from ..iis.store import STARTED, load_config, pool_names, runtime
from . import SimFunctionError, sim_function
from .iis_config import set_iis_config
from .runtime import restart_iis_app_pool

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_FILE = "release-state.json"
LOG_TAIL_LINES = 30
BODY_LIMIT = 2048
#: Seconds between two health requests.
HEALTH_INTERVAL = 0.25

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


def release_dir(root: str, version: str) -> str:
    """``<root>\\releases\\<version>``."""

    return f"{root}\\releases\\{version}"


# --- release-state.json ---------------------------------------------------------------------


def read_state(host: "SimHost", root: str) -> dict[str, Any]:
    """``<root>\\release-state.json``: ``{"current", "previous", "completed": {version: time},
    "history": [{"at", "from", "to", "ok"}]}`` (empty state when absent)."""

    path = _local(host, f"{root}\\{STATE_FILE}")
    state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    state.setdefault("current", None)
    state.setdefault("previous", None)
    state.setdefault("completed", {})
    state.setdefault("history", [])
    return state


def write_state(host: "SimHost", root: str, state: dict[str, Any]) -> None:
    """Write release-state.json atomically (temporary file, then rename)."""

    path = _local(host, f"{root}\\{STATE_FILE}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE_FILE}.tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def is_complete(local: Path) -> bool:
    """Whether a local release folder is complete: final name (no ``.partial``), manifest,
    web.config and the venv marker present."""

    return (not local.name.endswith(".partial") and (local / MANIFEST_NAME).is_file()
            and (local / "web.config").is_file() and (local / "venv" / SIM_VENV_MARKER).is_file())


def _versions(host: "SimHost", root: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    folder = _local(host, f"{root}\\releases")
    entries = []
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.is_dir():
            complete = is_complete(child)
            version = child.name[: -len(".partial")] if child.name.endswith(".partial") else child.name
            when = state["completed"].get(version) if complete else None
            stamp = when or datetime.fromtimestamp(child.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            web_config = child / "web.config"
            digest = hashlib.sha256(web_config.read_bytes()).hexdigest() if complete and web_config.is_file() else None
            entries.append({"version": version, "complete": complete, "web_config_sha256": digest, "_order": (not complete, stamp)})
    entries.sort(key=lambda e: e.pop("_order"))
    return entries


def describe_releases(host: "SimHost", roots: list[str]) -> dict[str, Any]:
    """The contract's ``"releases"`` for each root: current, previous, versions (completed
    ones by completion time, oldest first, then incomplete ``.partial`` ones; each with the
    SHA-256 of its web.config when complete), history."""

    result = {}
    for root in roots:
        root = root.rstrip("\\")
        state = read_state(host, root)
        result[root] = {"current": state["current"], "previous": state["previous"],
                        "versions": _versions(host, root, state), "history": state["history"]}
    return result


# --- Install-Release --------------------------------------------------------------------------


class _StepError(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


def _read_manifest(archive: zipfile.ZipFile) -> tuple[Manifest, bytes]:
    try:
        data = archive.read(MANIFEST_NAME)
        return Manifest.from_json(data), data
    except KeyError:
        raise _StepError("manifest", f"the artifact has no {MANIFEST_NAME}") from None
    except ValidationError as exc:
        raise _StepError("manifest", f"{MANIFEST_NAME} is invalid: {exc.errors()[0]['msg']}") from None


def _unpack(archive: zipfile.ZipFile, target: Path) -> None:
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in info.filename or ":" in info.filename:
            raise _StepError("unpack", f"refusing the archive entry {info.filename!r} (outside the release folder)")
        if info.is_dir():
            continue
        destination = target.joinpath(*name.parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink)


def _install_venv(host: "SimHost", partial: Path, manifest: Manifest, python: str) -> None:
    wheelhouse = partial / WHEELHOUSE_DIR
    missing = [f"{r.name}=={r.version}" for r in manifest.requirements if not (wheelhouse / r.wheel).is_file()]
    if missing:
        raise _StepError("venv", "pip install --no-index: ERROR: No matching distribution found for " + ", ".join(missing))
    requirements = parse_requirements((partial / REQUIREMENTS_NAME).read_text(encoding="utf-8"))
    try:
        local_venv = ensure_venv(requirements)
    except VenvBuildError as exc:
        raise _StepError("venv", f"building the simulator's local venv failed: {exc}") from None
    scripts = partial / "venv" / "Scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "python.exe").write_bytes(b"pyinfra-iis simulator: placeholder; see ..\\" + SIM_VENV_MARKER.encode() + b"\r\n")
    (partial / "venv" / "pyvenv.cfg").write_text(
        f"home = {ntpath.dirname(python)}\r\ninclude-system-site-packages = false\r\n", encoding="utf-8")
    marker = {"local_venv": str(local_venv), "requirements": requirements, "target_python": manifest.python,
              "note": "the simulator runs this release with a local venv (this OS's wheels, same pinned versions) "
                      "and the controller's Python, not the target Windows Python"}
    (partial / "venv" / SIM_VENV_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


@sim_function("Install-Release")
def install_release(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"root","artifact","version","python","web_config"}`` → ``{"version","installed","path"}``.

    Idempotent (``installed: false`` when the complete release's manifest equals the
    artifact's). Everything happens in ``<version>.partial``, renamed at the end. Errors name
    the step (artifact, manifest, python, unpack, verify, venv, web.config, rename) and leave
    nothing under the final name; a release folder with a DIFFERENT manifest is refused
    (versions are immutable).
    """

    root = _text(payload, "root").rstrip("\\")
    version, python = _text(payload, "version"), _text(payload, "python")
    artifact, web_config = _text(payload, "artifact"), _text(payload, "web_config")
    final_windows = release_dir(root, version)
    final, partial = _local(host, final_windows), _local(host, final_windows + ".partial")
    with _root_lock(host, root):
        try:
            local_artifact = _local(host, artifact)
            if not local_artifact.is_file():
                raise _StepError("artifact", f"Cannot find path '{artifact}' because it does not exist.")
            with zipfile.ZipFile(local_artifact) as archive:
                manifest, manifest_bytes = _read_manifest(archive)
                if manifest.version != version:
                    raise _StepError("manifest", f"the artifact is version {manifest.version}, not {version}")
                if final.exists():
                    existing = (final / MANIFEST_NAME).read_bytes() if (final / MANIFEST_NAME).is_file() else b""
                    if existing and Manifest.from_json(existing) == manifest:
                        return json.dumps({"version": version, "installed": False, "path": final_windows})
                    raise _StepError("manifest", f"{final_windows} exists with a different manifest: release versions are immutable, build a new version")
                if not _local(host, python).is_file():
                    raise _StepError("python", f"{python} does not exist: install Python {manifest.python} first")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                _unpack(archive, partial)
            (partial / MANIFEST_NAME).write_bytes(manifest_bytes)
            problems = manifest.verify_tree(partial)
            if problems:
                raise _StepError("verify", "; ".join(problems[:10]))
            _install_venv(host, partial, manifest, python)
            (partial / "web.config").write_bytes(web_config.encode("utf-8"))  # UTF-8 without BOM
            os.rename(partial, final)
        except _StepError as exc:
            raise SimFunctionError(f"Install-Release {version} failed at step '{exc.step}': {exc}") from None
        except (OSError, zipfile.BadZipFile) as exc:
            raise SimFunctionError(f"Install-Release {version} failed: {type(exc).__name__}: {exc}") from None
        state = read_state(host, root)
        state["completed"][version] = _now()
        write_state(host, root, state)
    return json.dumps({"version": version, "installed": True, "path": final_windows})


# --- Switch-Release ---------------------------------------------------------------------------


def physical_path_history(host: "SimHost") -> list[dict[str, Any]]:
    """Every physicalPath Switch-Release wrote (see module docstring). Call under ``host.lock``."""

    return host.state.setdefault("sim_releases", {}).setdefault("physical_path_history", [])


def _set_physical_path(host: "SimHost", site: str, path: str) -> None:
    edit = {"section": "system.applicationHost/sites", "action": "set", "attributes": {"physicalPath": path},
            "path": [{"item": "site", "key": {"name": site}}, {"item": "application", "key": {"path": "/"}},
                     {"item": "virtualDirectory", "key": {"path": "/"}}]}
    with host.lock:
        set_iis_config(host, {"edits": [edit]})  # one commit, all or nothing
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


def _health_once(port: int, scheme: str, target: str, host_header: str, timeout: float) -> tuple[int, str]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the sim's certificates are test certificates
        raw = context.wrap_socket(raw, server_hostname=host_header)  # SNI = host, as the contract says
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.sock = raw
    try:
        connection.request("GET", target, headers={"Host": host_header, "User-Agent": "pyinfra-iis health check"})
        response = connection.getresponse()
        return response.status, response.read(BODY_LIMIT * 2).decode("utf-8", "replace")[:BODY_LIMIT]
    finally:
        connection.close()


def health_check(manager, site: str, health: dict[str, Any]) -> dict[str, Any]:
    """Request ``health["url"]`` through the site's binding until ``expect_status`` or the deadline.

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
                status, body = _health_once(loopback, scheme, target, host_header, max(1.0, remaining))
                answer.update(status=status, body=body, error=None)
                if status == expect:
                    answer["ok"] = True
                    break
            except (OSError, http.client.HTTPException) as exc:
                # A request cut short by the deadline must not hide the last real answer.
                answer["error"] = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + HEALTH_INTERVAL >= deadline:
            break
        time.sleep(HEALTH_INTERVAL)
    answer["seconds"] = round(time.monotonic() - started, 2)
    return answer


def log_tail(host: "SimHost", root: str, lines: int = LOG_TAIL_LINES) -> tuple[str | None, str]:
    """``(file name, last lines)`` of the newest non-empty ``*.log`` in ``<root>\\logs`` (``(None, "")``
    when none; an empty newest log is usually a start still in progress)."""

    folder = _local(host, f"{root}\\logs")
    logs = sorted((p for p in folder.glob("*.log") if p.is_file() and p.stat().st_size and "_starting" not in p.name), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not logs:
        return None, ""
    text = logs[-1].read_text(encoding="utf-8", errors="replace")
    return logs[-1].name, "\n".join(text.splitlines()[-lines:])


def _switch_payload(payload: dict[str, Any]) -> tuple[str, str, str, str, dict[str, Any]]:
    health = payload.get("health")
    if not isinstance(health, dict) or not isinstance(health.get("url"), str):
        raise SimFunctionError("'health' must be an object with 'url', 'host', 'deadline_seconds', 'expect_status'")
    return (_text(payload, "root").rstrip("\\"), _text(payload, "version"), _text(payload, "site"),
            _text(payload, "app_pool"), health)


def _version_of(path: str | None, root: str) -> str | None:
    if path and ntpath.dirname(path).casefold() == f"{root}\\releases".casefold():
        return ntpath.basename(path)
    return None


@sim_function("Switch-Release")
def switch_release(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"root","version","site","app_pool","health":{...}}`` → ``{"switched","from","to","health"}``.

    Refuses an incomplete version, an unknown site or pool, a stopped pool. Already serving
    ``version`` and healthy → ``switched: false``. Otherwise physicalPath → the release (one
    commit), recycle, health check; unhealthy → physicalPath restored, recycle, history records
    the failure, and the error has the health answer and the newest stdout log's tail.
    """

    root, version, site_name, pool, health = _switch_payload(payload)
    target = release_dir(root, version)
    with _root_lock(host, root):
        local = _local(host, target)
        if not is_complete(local):
            partial = _local(host, target + ".partial").exists()
            raise SimFunctionError(f"Switch-Release: release {version} is not complete ({target} "
                                   f"{'is still .partial' if partial else 'does not exist'}): run Install-Release first")
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
        manager = apps.manager_for(host, create=True)
        state = read_state(host, root)
        before = site.physical_path
        from_version = _version_of(before, root) or state["current"]
        if before and before.casefold() == target.casefold():
            answer = health_check(manager, site.name, health)
            if answer["ok"]:
                return json.dumps({"switched": False, "from": version, "to": version, "health": _public(answer)})
        _set_physical_path(host, site.name, target)
        _recycle(host, pool_key)
        answer = health_check(manager, site.name, health)
        entry = {"at": _now(), "from": from_version, "to": version, "ok": answer["ok"]}
        if answer["ok"]:
            if state["current"] != version:
                state["previous"] = state["current"]
            state["current"] = version
            state["history"].append(entry)
            write_state(host, root, state)
            return json.dumps({"switched": True, "from": from_version, "to": version, "health": _public(answer)})
        name, tail = log_tail(host, root)  # before the restore starts the previous release again
        if before and before.casefold() != target.casefold():
            _set_physical_path(host, site.name, before)
            _recycle(host, pool_key)
        state["history"].append({**entry, "status": answer["status"]})
        write_state(host, root, state)
    got = f"HTTP {answer['status']}" if answer["status"] is not None else (answer["error"] or "no answer")
    raise SimFunctionError(
        f"Switch-Release {version}: health check {health['url']} (Host: {health.get('host')}) failed after "
        f"{answer['seconds']} s: expected {health.get('expect_status', 200)}, got {got}; body: {answer['body']}\n"
        f"physicalPath restored to {before}.\n"
        + (f"Last {LOG_TAIL_LINES} lines of {root}\\logs\\{name}:\n{tail}" if name else f"No stdout log in {root}\\logs."))


def _public(answer: dict[str, Any]) -> dict[str, Any]:
    return {"status": answer["status"], "body": answer["body"], "seconds": answer["seconds"]}


# --- Remove-OldReleases -------------------------------------------------------------------------


@sim_function("Remove-OldReleases")
def remove_old_releases(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"root","keep"}`` → ``{"removed": [versions, oldest first]}``.

    Keeps the newest ``keep`` complete releases (completion time), never the current or previous
    one; removes stale ``*.partial`` folders and the artifacts (``<root>\\artifacts\\*-<version>.zip``)
    of removed releases.
    """

    root = _text(payload, "root").rstrip("\\")
    keep = payload.get("keep")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise SimFunctionError("'keep' must be an integer >= 1")
    removed = []
    with _root_lock(host, root):
        state = read_state(host, root)
        versions = _versions(host, root, state)
        complete = [v["version"] for v in versions if v["complete"]]
        protected = {state["current"], state["previous"]} | set(complete[-keep:])
        for entry in versions:
            version = entry["version"]
            if not entry["complete"]:
                shutil.rmtree(_local(host, release_dir(root, version) + ".partial"), ignore_errors=True)
                continue
            if version in protected:
                continue
            shutil.rmtree(_local(host, release_dir(root, version)))
            artifacts = _local(host, f"{root}\\artifacts")
            for zip_path in artifacts.glob(f"*-{version}.zip") if artifacts.is_dir() else []:
                zip_path.unlink()
            state["completed"].pop(version, None)
            removed.append(version)
        write_state(host, root, state)
    return json.dumps({"removed": removed})
