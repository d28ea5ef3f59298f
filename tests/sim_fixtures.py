"""pytest fixtures for the simulated Windows host (``pyinfra_iis.sim``).

Imported by ``tests/conftest.py`` (``from sim_fixtures import *``), so every test can use:

* ``sim_password``: the administrator password of simulated hosts, ``Secr3t!'pass`` (a quote
  inside on purpose);
* ``sim_server``: a fresh :class:`~pyinfra_iis.sim.SimServer` in ``tmp_path/sim-host``,
  started on a free 127.0.0.1 port, user ``admin``, Basic and NTLM allowed (Basic over HTTP
  too: ``allow_unencrypted=True``), MaxEnvelopeSizekb 500; stopped after the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pyinfra_iis.sim import SimServer

SIM_USER = "admin"
SIM_PASSWORD = "Secr3t!'pass"

__all__ = ["SIM_PASSWORD", "SIM_USER", "sim_password", "sim_server"]


@pytest.fixture
def sim_password() -> str:
    """The password of the ``admin`` account on simulated hosts."""

    return SIM_PASSWORD


@pytest.fixture
def sim_server(tmp_path: Path) -> Iterator[SimServer]:
    """A started simulated host (fresh state in ``tmp_path``); stopped after the test."""

    with SimServer(tmp_path / "sim-host", user=SIM_USER, password=SIM_PASSWORD, port=0, allow_unencrypted=True,
                   max_envelope_kb=500) as sim:
        yield sim
