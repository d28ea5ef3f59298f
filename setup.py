"""Build hook: ship the project files the demo and ``pyinfra-iis init`` need inside the wheel.

Everything else is declared in ``pyproject.toml``. The top-level ``inventories/``,
``deploys/``, ``templates/`` and ``examples/app/`` stay where they are in the repository (users
of a clone edit them there); the wheel carries a copy under ``pyinfra_iis/_project/`` so that
``python -m pyinfra_iis.demo`` and ``pyinfra-iis init`` work from an installed wheel.
``MANIFEST.in`` puts the same folders into the sdist, so a wheel built from the sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Folders copied into ``pyinfra_iis/_project`` (relative to the repository root).
PROJECT_FOLDERS = ("inventories", "deploys", "templates", "examples/app")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "dist", "build", "*.egg-info")


class BuildPyWithProject(build_py):
    """``build_py``, then the project folders copied under ``<build_lib>/pyinfra_iis/_project``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install runs from the checkout, which has them
            return
        target = Path(self.build_lib) / "pyinfra_iis" / "_project"
        for folder in PROJECT_FOLDERS:
            source = HERE / folder
            if not source.is_dir():
                raise SystemExit(f"setup.py: {folder}/ is missing; build from the repository or its sdist")
            shutil.copytree(source, target / folder, ignore=_SKIP, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithProject})
