"""Test tooling that checks generated artefacts against Microsoft's reference data.

``powershell``: parse PowerShell with tree-sitter and check every command and parameter it
names against ``tests/data/powershell-cmdlets.json``.
``iis_schema``: validate applicationHost.config / web.config text against the IIS schema
files in ``tests/data/iis-schema/``.

The reference data lives in ``tests/data/`` (sources and licences: ``tests/data/README.md``).

Importable from tests as ``support`` (``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

#: The project's root folder (the one holding pyproject.toml).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def reference_dir() -> Path:
    """Return ``tests/data``: the vendored reference data (``tests/data/README.md``)."""

    return PROJECT_ROOT / "tests" / "data"


#: ``reference_dir()``, the folder of the vendored reference data.
REFERENCE = reference_dir()
