"""Shared test fixtures.

``reference_data`` is ``tests/data``: Microsoft's IIS schema files, the Windows PowerShell 5.1
cmdlet reference and recorded WinRM conversations, vendored with their sources and licences
(``tests/data/README.md``). Nothing is skipped for missing data: the repository holds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim_fixtures import *  # noqa: F401,F403 - sim_server, sim_password fixtures
from support import reference_dir


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Path of ``tests/data``, the vendored reference data."""

    return reference_dir()
