"""Test tooling that checks generated artefacts against Microsoft's reference data.

``powershell``: parse PowerShell with tree-sitter and check every command and parameter it
names against ``../shared/reference/powershell-cmdlets.json``.
``iis_schema``: validate applicationHost.config / web.config text against the IIS schema
files in ``../shared/reference/iis-schema/``.

Importable from tests as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

#: The project's root folder (the one holding pyproject.toml).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def reference_dir() -> Path | None:
    """Return ``PROJECT_ROOT.parent / "shared" / "reference"``, or ``None`` when it is absent.

    The folder is read-only reference data beside the project, not part of it; tests that use
    it take the ``shared_reference`` fixture (tests/conftest.py), which skips when it is absent.
    """

    path = PROJECT_ROOT.parent / "shared" / "reference"
    return path if path.is_dir() else None


#: ``reference_dir()`` evaluated at import time (``None`` when ../shared/reference is absent).
REFERENCE = reference_dir()
