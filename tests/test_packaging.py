"""The package as a user gets it: a wheel built from the repository, installed into a fresh venv
outside it, runs the demo from another folder (no checkout on the path), and carries what a
PyPI release needs (licence, ``py.typed``, console script, connector entry point, the project
files the demo and ``pyinfra-iis init`` use).

Skipped only when building is impossible here: the build backend (setuptools, from the package
index) or the dependencies cannot be downloaded. Any other failure fails. About a minute: the
build, a venv with the dependencies (pip's cache makes it quick after the first time), one demo
run on two simulated hosts.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
#: Left out of the copy the wheel is built from (local state, caches, earlier builds).
_JUNK = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                               ".pytest_cache", ".sim", "tests", "benchmarks")
#: pip output that means the package index cannot be reached (or has no build backend): building
#: is impossible here. A dependency that does not resolve while the index answers is a failure.
_OFFLINE = re.compile(r"Failed to establish a new connection|Temporary failure in name resolution|"
                      r"Network is unreachable|ProxyError|Max retries exceeded|Connection refused|"
                      r"No matching distribution found for setuptools", re.IGNORECASE)

pytestmark = pytest.mark.packaging


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user who installed the wheel: no PYTHONPATH, no project variables."""

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("PYINFRA_IIS_", "API_"))}
    env.update(extra)
    return env


def _run(command: list, what: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=_clean_env(**env), capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    if result.returncode != 0 and _OFFLINE.search(output):
        pytest.skip(f"{what} is impossible here (package index unreachable): {output[-400:]}")
    assert result.returncode == 0, f"{what} failed (exit {result.returncode}):\n{output[-4000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (pip, isolated build) from a clean copy of the repository."""

    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(PROJECT, source, ignore=_JUNK)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", base / "dist", source],
         "building the wheel", cwd=base)
    (built,) = (base / "dist").glob("pyinfra_iis-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the repository with the wheel and its dependencies installed."""

    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", venv], "creating a venv", cwd=venv.parent)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
         "installing the wheel", cwd=venv.parent)
    return venv


def test_the_wheel_carries_what_a_release_needs(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    for required in ("pyinfra_iis/py.typed", "pyinfra_iis/templates/web.config.j2",
                     "pyinfra_iis/remote/worker.ps1", "pyinfra_iis/cli.py",
                     "pyinfra_iis/_project/inventories/sim.py", "pyinfra_iis/_project/inventories/prod.py",
                     "pyinfra_iis/_project/inventories/group_data/all.py", "pyinfra_iis/_project/deploys/site.py",
                     "pyinfra_iis/_project/deploys/release.py", "pyinfra_iis/_project/deploys/rollback.py",
                     "pyinfra_iis/_project/examples/app/main.py", "pyinfra_iis/_project/examples/app/requirements.txt",
                     "pyinfra_iis/_project/templates/web.config.j2"):
        assert required in names, required
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.startswith("pyinfra_iis/remote/PyinfraIis/") and n.endswith(".ps1") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/")) or "__pycache__" in n]
    assert metadata["Name"] == "pyinfra-iis"
    assert metadata["License-Expression"] == "MIT"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert {u.split(",")[0] for u in metadata.get_all("Project-URL")} >= {"Homepage", "Source", "Issues"}
    assert metadata["Requires-Python"] == ">=3.10"
    assert "pyinfra-iis = pyinfra_iis.cli:main" in entry_points
    assert "winrm = pyinfra_iis.connectors.winrm:WinrmConnector" in entry_points


def test_the_demo_runs_from_an_installed_wheel_in_another_folder(installed, tmp_path):
    python = installed / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([python, "-c", "import pyinfra_iis, pyinfra_iis.demo as d; print(pyinfra_iis.__file__); print(d.PROJECT)"],
                 "importing the package", cwd=elsewhere)
    module, project = where.stdout.split()
    assert Path(module).is_relative_to(installed), module  # the wheel, not the checkout
    assert Path(project) == Path(module).parent / "_project"

    workdir = tmp_path / "demo"
    result = _run([installed / "bin" / "pyinfra-iis", "demo", "--workdir", workdir], "the demo", cwd=elsewhere, timeout=600)
    output = result.stdout + result.stderr
    assert output.count("/healthz 200") == 2, output[-3000:]
    assert "version=1.0.0" in output and "scheme=https" in output
    assert (workdir / "project" / "deploys" / "site.py").is_file()  # pyinfra ran in a copy, not in site-packages
    assert list((workdir / "dist").glob("api-1.0.0.zip"))
    secrets = json.loads((workdir / "secrets.json").read_text())
    assert not [v for v in secrets.values() if v in output]
    assert not list(elsewhere.iterdir())  # nothing written into the folder it ran from

    module_form = _run([python, "-m", "pyinfra_iis.demo", "--help"], "python -m pyinfra_iis.demo --help", cwd=elsewhere)
    assert "--workdir" in module_form.stdout


def test_init_writes_a_project_from_the_installed_wheel(installed, tmp_path):
    result = _run([installed / "bin" / "pyinfra-iis", "init", tmp_path / "mine"], "pyinfra-iis init", cwd=tmp_path)
    assert "wrote" in result.stdout
    for name in ("inventories/prod.py", "inventories/group_data/all.py", "deploys/site.py", "templates/web.config.j2",
                 "examples/app/requirements.txt"):
        assert (tmp_path / "mine" / name).is_file(), name
    again = subprocess.run([installed / "bin" / "pyinfra-iis", "init", tmp_path / "mine"], capture_output=True, text=True,
                           env=_clean_env(), timeout=120)
    assert again.returncode == 1 and "use --force" in again.stderr
