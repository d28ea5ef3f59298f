"""``Install-Python`` on the simulated host, and the "pythons" part of ``Get-HostState``.

The simulator cannot run the python.org installer (a Windows executable). It checks the
installer's SHA-256 first, as the real function does, then records the install in
``host.state["pythons"]["<x.y>"]`` (the real function reads
``HKLM:\\SOFTWARE\\Python\\PythonCore\\<x.y>\\InstallPath``, all-users installs only) and leaves a
placeholder ``<target_dir>\\python.exe``. Apps of the simulated host run with a local Python
instead (``sim/apps``); the record says so in ``"simulated"``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

_VERSION_RE = re.compile(r"^3\.(\d+)\.(\d+)$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
#: The installer arguments the real function uses (docs/remote-functions.md; docs/field-facts.md).
INSTALLER_ARGUMENTS = "/quiet /norestart InstallAllUsers=1 PrependPath=0 Include_test=0 Include_launcher=0 CompileAll=1 TargetDir={target_dir}"
#: Exit code of a Burn bundle that installed but needs a restart (with /norestart it does not reboot).
RESTART_NEEDED = 3010


def set_next_exit_code(host: "SimHost", code: int) -> None:
    """Make the next installer run exit with ``code`` (3010: installed, restart needed; 1638:
    another version of the product is installed, i.e. a downgrade)."""

    with host.lock:
        host.state.setdefault("sim_python", {})["next_exit_code"] = code
        host.save()
PLACEHOLDER = b"pyinfra-iis simulator: placeholder for python.exe (the installer was not run; apps run with a local Python)\r\n"


def pythons(host: "SimHost") -> dict[str, Any]:
    """``host.state["pythons"]``: ``"3.12"`` → record. Call under ``host.lock``."""

    return host.state.setdefault("pythons", {})


def describe_pythons(host: "SimHost", versions: list[str]) -> dict[str, Any]:
    """The contract's raw ``"pythons"``: for each asked ``"x.y"`` the PEP 514 registry values
    ``{"version", "install_path", "executable_path", "exists"}`` (nulls when absent; converted by
    ``facts/python_state.py``). Call under ``host.lock``."""

    result = {}
    for wanted in versions:
        record = pythons(host).get(wanted)
        if record is None:
            result[wanted] = {"version": None, "install_path": None, "executable_path": None, "exists": False}
        else:
            result[wanted] = {"version": record["version"], "install_path": record["target_dir"] + "\\",
                              "executable_path": record["path"], "exists": host.path(record["path"]).is_file()}
    return result


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise SimFunctionError(f"'{key}' must be a non-empty string")
    return value


@sim_function("Install-Python")
def install_python(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"version","source","sha256","target_dir"}`` →
    ``{"installed","version","path","restart_needed"}``.

    ``installed: false`` when the same x.y.z is already installed (nothing checked or run).
    Another x.y.z of the same x.y is upgraded in place as the python.org bundle does: into the
    OLD install's folder (it reads TargetDir from the registry), so the registered path is
    checked against ``target_dir`` afterwards. Exit 3010: installed, ``restart_needed: true``
    (``/norestart``: never a reboot). Errors: bad arguments, installer missing, SHA-256 mismatch
    (nothing installed), exit codes other than 0/3010 (1638 named as a downgrade), registered
    path other than ``target_dir``.
    """

    version = _text(payload, "version")
    match = _VERSION_RE.match(version)
    if not match:
        raise SimFunctionError(f"'version' must be 3.x.y, not {version!r}")
    source, target_dir = _text(payload, "source"), _text(payload, "target_dir").rstrip("\\")
    expected = _text(payload, "sha256")
    if not _HEX64.match(expected):
        raise SimFunctionError("'sha256' must be 64 hex digits")
    minor = f"3.{match.group(1)}"
    path = f"{target_dir}\\python.exe"
    with host.lock:
        record = pythons(host).get(minor)
        if record is not None and record["version"] == version:
            return json.dumps({"installed": False, "version": version, "path": record["path"]})
        try:
            local_source, local_exe = host.path(source), host.path(path)
        except SimPathError as exc:
            raise SimFunctionError(str(exc)) from None
        if not local_source.is_file():
            raise SimFunctionError(f"Cannot find path '{source}' because it does not exist.")
        actual = hashlib.sha256(local_source.read_bytes()).hexdigest()
        if actual != expected.lower():
            raise SimFunctionError(f"SHA-256 mismatch for {source}: expected {expected.lower()}, actual {actual}; the installer was not run")
        code = host.state.setdefault("sim_python", {}).pop("next_exit_code", 0)
        host.save()
        if code not in (0, RESTART_NEEDED):
            why = " (1638: another version of this product is installed: a downgrade is refused)" if code == 1638 else ""
            raise SimFunctionError(f"the Python {version} installer failed with exit code {code}{why}")
        if record is not None and record["target_dir"].casefold() != target_dir.casefold():
            # The bundle's major upgrade reuses the old install's TargetDir.
            target_dir, path = record["target_dir"], record["path"]
            local_exe = host.path(path)
        local_exe.parent.mkdir(parents=True, exist_ok=True)
        local_exe.write_bytes(PLACEHOLDER)
        pythons(host)[minor] = {
            "version": version, "path": path, "target_dir": target_dir, "installer": source, "sha256": actual,
            "installed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "arguments": INSTALLER_ARGUMENTS.format(target_dir=target_dir),
            "simulated": "the installer was not run (a Windows executable); python.exe is a placeholder and apps "
                         "run with the simulator's own Python",
        }
        host.save()
    wanted = _text(payload, "target_dir").rstrip("\\")
    if target_dir.casefold() != wanted.casefold():
        raise SimFunctionError(f"the installer exited with {code} but Python {minor} is registered at {target_dir}, "
                               f"not {wanted}: the bundle upgraded the existing install in place; uninstall it or set target_dir to {target_dir}")
    return json.dumps({"installed": True, "version": version, "path": path, "restart_needed": code == RESTART_NEEDED})
