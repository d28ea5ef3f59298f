"""Shared test fixtures.

``shared_reference`` points at ``../shared/reference`` beside the project root; tests that need
it skip with a clear reason when it is absent (a fresh clone without ``shared/`` still passes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim_fixtures import *  # noqa: F401,F403 - sim_server, sim_password fixtures

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = PROJECT_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """Path of ``../shared/reference``; skips the test when it is absent."""

    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"../shared/reference is absent ({SHARED_REFERENCE}): reference data from Microsoft and recorded WinRM conversations are not available")
    return SHARED_REFERENCE
