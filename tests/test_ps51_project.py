"""Every rule of support.ps51 over every .ps1 of the package: Windows PowerShell 5.1 on .NET
Framework 4.x must be able to run all of it. One test per file; a failure lists each finding as
``path:line: RULE message (fix)``. The same list: ``PYTHONPATH=tests python -m support.ps51 FILE...``."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from support import PROJECT_ROOT
from support.ps51 import Problem, check_files

PACKAGE = PROJECT_ROOT / "pyinfra_iis"
PS_FILES = sorted(PACKAGE.rglob("*.ps1"))


@functools.lru_cache(maxsize=1)
def findings() -> dict[Path, list[Problem]]:
    """All findings of the package, by file (the module's files are checked together, so an
    Add-Type in one counts for all)."""

    by_file: dict[Path, list[Problem]] = {path: [] for path in PS_FILES}
    for problem in check_files(PS_FILES, root=PROJECT_ROOT):
        by_file[PROJECT_ROOT / problem.path].append(problem)
    return by_file


def test_there_are_ps1_files_to_check():
    assert len(PS_FILES) >= 2 and any(path.name == "worker.ps1" for path in PS_FILES)


@pytest.mark.parametrize("path", PS_FILES, ids=[str(path.relative_to(PACKAGE)) for path in PS_FILES])
def test_ps1_file_runs_on_windows_powershell_5_1(path):
    found = [str(problem) for problem in findings()[path]]
    assert not found, f"{len(found)} Windows PowerShell 5.1 finding(s):\n" + "\n".join(found)
