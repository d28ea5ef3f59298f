"""The PowerShell that runs on the host: the worker loop and the project's module.

``worker.ps1`` is the read-eval loop started once per host (see ``pyinfra_iis.protocol``);
``PyinfraIis/*.ps1`` are the module's functions, one file per concern, joined in name order
into one module source by :func:`module_source` and sent to the worker once. All of it
targets Windows PowerShell 5.1 (WebAdministration and IISAdministration do not load under
PowerShell 7; field notes, IIS).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources


def read_remote_file(name: str) -> str:
    """Return the text of a file under ``pyinfra_iis/remote/``."""

    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def module_files() -> list[str]:
    """Return the names of the module's files, ``PyinfraIis/*.ps1``, in load order."""

    folder = resources.files(__package__).joinpath("PyinfraIis")
    return sorted(f"PyinfraIis/{entry.name}" for entry in folder.iterdir() if entry.name.endswith(".ps1"))


@functools.lru_cache(maxsize=1)
def module_source() -> str:
    """Return the whole module source: the module header then each file in name order.

    Read once per controller process (the files are package data and do not change during a
    run): every host's worker loads it, and re-reading 19 files per host showed in a 50-host run.
    """

    return "\n\n".join(read_remote_file(name) for name in module_files())


def module_version() -> str:
    """Return a short SHA-256 of :func:`module_source`, to tell module builds apart."""

    return hashlib.sha256(module_source().encode("utf-8")).hexdigest()[:16]
