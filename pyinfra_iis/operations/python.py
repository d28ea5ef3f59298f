"""CPython on the host: a pinned interpreter, installed machine-wide from a pinned installer.

``python_install`` uploads the python.org installer from the controller only when the wanted
``x.y.z`` is missing, into an administrators-only folder, then calls ``Install-Python``
(``docs/remote-functions.md``, "Releases"), which checks the SHA-256 before running
``<installer> /quiet /norestart InstallAllUsers=1 PrependPath=0 Include_test=0
Include_launcher=0 CompileAll=1 TargetDir=<target_dir>``. ``/norestart``: a Burn bundle would
otherwise reboot the host on 3010 mid-deploy; the function returns ``restart_needed`` instead and
the operation stops the release there. Machine-wide because a venv's
``python.exe`` is a launcher that starts the base interpreter, so the pool identity needs read
access to the base install, which must not be under a user profile (docs/field-facts.md, "Python on
Windows Server"). Server 2019 has no MSIX: the classic installer is used, not the install manager.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, model_validator
from pyinfra import host
from pyinfra.api import FileUploadCommand, FunctionCommand, operation

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.base import IisModel
from ..models.types import ControllerPath, Sha256Hex, WindowsPath
from ..protocol import remote_call
from ..sddl import protected_sddl
from pyinfra.api.exceptions import OperationError

from ._common import ReleaseStepError, call_host, controller_file, host_step, validated

#: Where the installer is uploaded (the same tree as MSIs and PFX files).
UPLOAD_DIR = r"C:\ProgramData\pyinfra-iis\python"


class PythonInstaller(IisModel):
    """Host data ``release_python``: which CPython and where its installer is.

    Attributes:
        version: the full version ``3.X.Y`` (3.10 to 3.14), e.g. ``"3.12.7"``.
        source: the python.org installer on the controller (``python-3.12.7-amd64.exe``),
            relative paths from pyinfra's working directory.
        sha256: the installer's SHA-256 (64 hex digits; python.org publishes them), checked by
            the host before it runs anything.
        target_dir: install folder, default ``C:\\Program Files\\Python3X`` (all users; never
            a user profile: the pool identity must read it).
    """

    version: str = Field(pattern=r"^3\.1[0-4]\.\d{1,3}$")
    source: ControllerPath
    sha256: Sha256Hex
    target_dir: Optional[WindowsPath] = None

    @model_validator(mode="after")
    def _default_target(self) -> "PythonInstaller":
        if self.target_dir is None:
            object.__setattr__(self, "target_dir", "C:\\Program Files\\Python" + self.minor.replace(".", ""))
        return self

    @property
    def minor(self) -> str:
        """``x.y`` of :attr:`version` (the key of the fact's ``pythons``)."""

        return ".".join(self.version.split(".")[:2])

    @property
    def python_exe(self) -> str:
        """``<target_dir>\\python.exe``: the base interpreter releases build their venv with."""

        return f"{self.target_dir}\\python.exe"


def python_entry(fact: dict, minor: str) -> dict:
    """Return the fact's ``pythons[minor]`` report (``{}`` when not reported)."""

    return (fact.get("pythons") or {}).get(minor) or {}



def _install_python(host, payload: dict, app_pools: list[str]) -> None:
    """Run ``Install-Python`` and react to its answer: a restart needed stops the release here
    (the drained pools stay stopped until the host restarts and the deploy runs again); otherwise
    the drained pools start again.

    Raises:
        ReleaseStepError: the install failed, or Windows needs a restart to finish it.
    """

    answer = call_host(host, "Install-Python", payload)
    if answer.get("restart_needed"):
        raise ReleaseStepError(f"Python {payload['version']} is installed but Windows needs a restart to finish it "
                               f"(installer exit code 3010; /norestart kept the host up): restart the host, then run the deploy again")
    if app_pools:
        call_host(host, "Set-IisRuntimeState", {"app_pools": {name: "Started" for name in app_pools}})


#: The callable of the install's ``FunctionCommand``: ``(state, host, payload, app_pools) -> bool``.
install_step = host_step(_install_python)


@operation()
def python_install(python: Any, app_pools: Optional[list[str]] = None):
    """
    Install a pinned CPython machine-wide unless that exact version is installed.

    + python: a :class:`PythonInstaller` or dict: ``version`` (``3.12.7``), ``source`` (the
      installer on the controller), ``sha256``, ``target_dir`` (default ``C:\\Program
      Files\\Python312``).
    + app_pools: pools whose apps run on this interpreter: stopped (drained) before an upgrade of
      an installed interpreter, started again after it (the release deploy then health-checks
      the served release).

    Nothing happens (and nothing is uploaded) when ``Get-HostState`` reports ``pythons[x.y]``
    installed with the same ``x.y.z``. Otherwise the upload folder is created administrators-only
    (``Initialize-Directory`` with a protected ACL), the installer uploaded there (the connector
    skips an upload whose SHA-256 matches) and ``Install-Python`` runs it after checking its hash.
    Another patch release of the same ``x.y`` is upgraded in place by the installer, INTO THE
    FOLDER ALREADY REGISTERED: an installed interpreter in another folder than ``target_dir`` is
    refused here (the host checks the registered path afterwards too).

    **Example:**

    .. code:: python

        python_install(name="CPython 3.12", python={"version": "3.12.7",
            "source": "files/python-3.12.7-amd64.exe", "sha256": "..."})
    """

    model = validated(PythonInstaller, python, "python")
    found = python_entry(host_state(host, python_versions=[model.minor]), model.minor)
    if found.get("installed") and found.get("version") == model.version:
        host.noop(f"Python {model.version} is installed ({found.get('path')})")
        return
    registered = found.get("target_dir") or (found.get("path") or "").rsplit("\\", 1)[0]
    if found.get("installed") and registered.lower() != str(model.target_dir).rstrip("\\").lower():
        raise OperationError(f"Python {found.get('version')} is installed in {registered}, not {model.target_dir}: the installer "
                             f"would upgrade it in place there; set target_dir to {registered} or uninstall it first")
    local = controller_file(model.source, "python")
    destination = f"{UPLOAD_DIR}\\{local.name}"
    before = found.get("version") if found.get("installed") else None
    drain = list(app_pools or []) if before else []
    log_changes(host, f"Will install Python {model.version}", [Change(f"Python {model.minor}", before, f"{model.version} in {model.target_dir}")])
    yield remote_call("Initialize-Directory", {"path": UPLOAD_DIR, "sddl": protected_sddl()})
    yield FileUploadCommand(str(local), destination)
    if drain:
        yield remote_call("Set-IisRuntimeState", {"app_pools": {name: "Stopped" for name in drain}})
    payload = {"version": model.version, "source": destination, "sha256": model.sha256, "target_dir": model.target_dir}
    yield FunctionCommand(install_step, (payload, drain), {})
