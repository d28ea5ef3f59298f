"""CPython on the host: a pinned interpreter, installed machine-wide from a pinned installer.

``python_install`` uploads the python.org installer from the controller only when the wanted
``x.y.z`` is missing, then calls ``Install-Python`` (``docs/remote-functions.md``, "Releases"),
which checks the SHA-256 before running ``<installer> /quiet InstallAllUsers=1 PrependPath=0
Include_test=0 Include_launcher=0 TargetDir=<target_dir>``. Machine-wide because a venv's
``python.exe`` is a launcher that starts the base interpreter, so the pool identity needs read
access to the base install, which must not be under a user profile (field notes, "Python on
Windows Server"). Server 2019 has no MSIX: the classic installer is used, not the install manager.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, model_validator
from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.base import IisModel
from ..models.types import ControllerPath, Sha256Hex, WindowsPath
from ..protocol import remote_call
from ._common import controller_file, validated

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



@operation()
def python_install(python: Any):
    """
    Install a pinned CPython machine-wide unless that exact version is installed.

    + python: a :class:`PythonInstaller` or dict: ``version`` (``3.12.7``), ``source`` (the
      installer on the controller), ``sha256``, ``target_dir`` (default ``C:\\Program
      Files\\Python312``).

    Nothing happens (and nothing is uploaded) when ``Get-HostState`` reports ``pythons[x.y]``
    installed with the same ``x.y.z``. Otherwise the installer is uploaded to
    ``C:\\ProgramData\\pyinfra-iis\\python\\`` (the connector skips an upload whose SHA-256
    matches) and ``Install-Python`` runs it silently after checking its hash. Another patch
    release of the same ``x.y`` is upgraded in place by the installer.

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
    local = controller_file(model.source, "python")
    destination = f"{UPLOAD_DIR}\\{local.name}"
    before = found.get("version") if found.get("installed") else None
    log_changes(host, f"Will install Python {model.version}", [Change(f"Python {model.minor}", before, f"{model.version} in {model.target_dir}")])
    yield FileUploadCommand(str(local), destination)
    yield remote_call("Install-Python", {"version": model.version, "source": destination, "sha256": model.sha256, "target_dir": model.target_dir})
