"""Local simulated hosts (``python -m pyinfra_iis.sim serve``, or ``python -m pyinfra_iis.demo``).

    PYINFRA_IIS_SIM_PORTS=55985,55986 PYINFRA_IIS_SIM_FILES=.demo/files \\
        pyinfra inventories/sim.py deploys/site.py

* ``PYINFRA_IIS_SIM_PORTS``: comma-separated WinRM ports (default two hosts on 55985, 55986).
* ``PYINFRA_IIS_SIM_USER`` / ``PYINFRA_IIS_SIM_PASSWORD``: what the simulators were started with.
* ``PYINFRA_IIS_SIM_FILES``: a folder with the controller files the hosts need, under the names
  of :data:`SIM_FILES` (``python -m pyinfra_iis.demo`` writes dummy ones: the simulator checks
  installer hashes only, it runs no installer). Their SHA-256 are computed here, so the pins
  always match. Without it, ``group_data/all.py``'s ``files/...`` and pins apply.

Plain HTTP on loopback with NTLM message encryption. The IIS and release data come from
``group_data/all.py``; the release version from ``--data release_version=...`` or
``PYINFRA_IIS_RELEASE_VERSION`` (see ``pyinfra_iis.deploys.release``).
"""

import hashlib
import os
from pathlib import Path

from pyinfra_iis import Secret

#: File names expected in ``PYINFRA_IIS_SIM_FILES``.
SIM_FILES = {
    "HttpPlatformHandler": "httpPlatformHandler_amd64.msi",
    "UrlRewrite": "rewrite_amd64_en-US.msi",
    "ARR": "requestRouter_amd64.msi",
    "python": "python-3.12.7-amd64.exe",
    "pfx": "api.example.com.pfx",
}


def _pinned(folder: Path, name: str) -> dict:
    path = folder / name
    return {"source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _file_data(folder: Path) -> dict:
    """Host data pointing at the files in ``folder`` (absolute paths, hashes computed)."""

    return {
        "iis_extensions": [{"product": product, **_pinned(folder, SIM_FILES[product])}
                           for product in ("HttpPlatformHandler", "UrlRewrite", "ARR")],
        "iis_certificates": [{"name": "api", "pfx": str(folder / SIM_FILES["pfx"]),
                              "password": Secret(os.environ.get("API_PFX_PASSWORD", "")), "store": "WebHosting"}],
        "release_python": {"version": "3.12.7", **_pinned(folder, SIM_FILES["python"])},
    }


_ports = [p.strip() for p in os.environ.get("PYINFRA_IIS_SIM_PORTS", "55985,55986").split(",") if p.strip()]
_files = os.environ.get("PYINFRA_IIS_SIM_FILES")
_extra = _file_data(Path(_files)) if _files else {}

sim_hosts = [
    (f"@winrm/127.0.0.1:{port}", {
        "winrm_scheme": "http",
        "winrm_transport": "ntlm",
        "winrm_user": os.environ.get("PYINFRA_IIS_SIM_USER", "Administrator"),
        "winrm_password": Secret(os.environ.get("PYINFRA_IIS_SIM_PASSWORD", "")),
        **_extra,
    })
    for port in _ports
]
