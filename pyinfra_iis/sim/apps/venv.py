"""Local (this OS) virtual environments standing in for a release's Windows venv.

The simulated host cannot run the release's ``win_amd64`` wheels nor a Windows ``python.exe``.
For each release it therefore builds a venv on the controller's OS with the SAME pinned
versions as the release's ``requirements.txt`` (manifest requirements), installed from the
package index for this OS, with the controller's Python (``sys.executable``), which is in
general NOT the target Python version of the manifest: the simulator says so in its records.

Venvs are cached by a hash of the requirement set and the local interpreter
(:func:`requirements_key`) under :func:`cache_root`, ``<cache>/<key>/``, so repeated test runs
and several simulated hosts build each set once. A ``fcntl`` file lock (``<key>.lock``)
serialises two hosts (threads or processes) building the same venv; a venv counts as built
only when its marker file ``pyinfra-iis-venv.json`` exists (written last), so an interrupted
build is removed and redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

#: Marker written last into a complete cached venv.
MARKER = "pyinfra-iis-venv.json"

#: Seconds a venv build may take (venv creation + pip install) before it is abandoned.
DEFAULT_BUILD_TIMEOUT = 900.0

#: Characters of pip output kept in an error message.
OUTPUT_TAIL_CHARS = 3000


class VenvBuildError(Exception):
    """Building the local venv failed; the message has the step and pip's output tail."""


def cache_root() -> Path:
    """``$PYINFRA_IIS_SIM_VENV_CACHE``, else ``$XDG_CACHE_HOME/pyinfra-iis/sim-venvs``, else
    ``~/.cache/pyinfra-iis/sim-venvs`` (beside the release build's wheel cache)."""

    explicit = os.environ.get("PYINFRA_IIS_SIM_VENV_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyinfra-iis" / "sim-venvs"


def parse_requirements(text: str) -> list[str]:
    """The requirement lines of a ``requirements.txt`` (comments, blank lines, options and
    ``--hash`` options after a pin dropped), normalised (lower case, ``_`` → ``-``, no spaces)
    and sorted."""

    lines = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(" --hash", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line.replace(" ", "").replace("_", "-").lower())
    return sorted(set(lines))


def requirements_key(requirements: Sequence[str], python: str = sys.executable) -> str:
    """24 hex digits of SHA-256 over the normalised requirement set, the interpreter path and
    its version (``sys.version``), so a different set or a different local Python gets its own venv."""

    material = json.dumps({"requirements": sorted(requirements), "python": str(python), "version": sys.version})
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]


def venv_python(venv: Path) -> Path:
    """The interpreter of a POSIX venv: ``<venv>/bin/python``."""

    return Path(venv) / "bin" / "python"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(command: list[str], step: str, timeout: float) -> None:
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    except subprocess.TimeoutExpired:
        raise VenvBuildError(f"{step}: no result within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise VenvBuildError(f"{step} failed (exit code {done.returncode}):\n{done.stdout[-OUTPUT_TAIL_CHARS:]}")


def ensure_venv(requirements: Sequence[str], cache_dir: Path | None = None, python: str = sys.executable,
                timeout: float = DEFAULT_BUILD_TIMEOUT) -> Path:
    """Return a local venv with exactly ``requirements`` installed, building it if needed.

    Args:
        requirements: pinned requirement lines (``name==version``), e.g. from
            :func:`parse_requirements`; installed with pip from the configured index for THIS
            OS (dependencies resolved by pip within those pins).
        cache_dir: cache folder; default :func:`cache_root`.
        python: the interpreter the venv is made from (default: the controller's).
        timeout: seconds per build step (default :data:`DEFAULT_BUILD_TIMEOUT`).

    Returns:
        the venv folder (its interpreter: :func:`venv_python`).

    Raises:
        VenvBuildError: ``python -m venv`` or ``pip install`` failed (message: step and output
            tail); the half-built folder is removed.
    """

    requirements = sorted(set(requirements))
    root = Path(cache_dir) if cache_dir else cache_root()
    key = requirements_key(requirements, python)
    venv = root / key
    if (venv / MARKER).is_file():
        return venv
    with _file_lock(root / f"{key}.lock"):
        if (venv / MARKER).is_file():  # built by another host while we waited
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _build(venv, requirements, python, timeout)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        marker = {"requirements": requirements, "python": str(python), "python_version": sys.version.split()[0],
                  "platform": sys.platform}
        (venv / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return venv


def _build(venv: Path, requirements: list[str], python: str, timeout: float) -> None:
    # Use the controller's own pip with --python when it has one (pip >= 22.3): no ensurepip
    # run per venv, which saves seconds.
    own_pip = importlib.util.find_spec("pip") is not None and Path(python) == Path(sys.executable)
    _run([python, "-m", "venv", *(["--without-pip"] if own_pip else []), str(venv)], "python -m venv", timeout)
    requirement_file = venv / "requirements.txt"
    requirement_file.write_text("".join(f"{line}\n" for line in requirements), encoding="utf-8")
    pip = [python, "-m", "pip", "--python", str(venv_python(venv))] if own_pip else [str(venv_python(venv)), "-m", "pip"]
    _run([*pip, "install", "--quiet", "-r", str(requirement_file)], "pip install", timeout)
