"""Calling simulator functions directly on a SimHost, for the simulator's own unit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from pyinfra_iis.sim.functions import call
from pyinfra_iis.sim.host import SimHost


def run(host: SimHost, name: str, payload: dict[str, Any]) -> Any:
    """Call the module function ``name`` with ``payload`` on ``host``; its JSON result."""

    return json.loads(call(host, name, payload, {}))


def iis_host(state_dir: Path, pools: Iterable[str] = ()) -> SimHost:
    """A simulated host with Web-Server installed and the application pools ``pools``."""

    host = SimHost(state_dir)
    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    for pool in pools:
        run(host, "Set-IisConfig", {"edits": [{"section": "system.applicationHost/applicationPools",
                                               "path": [{"item": "add", "key": {"name": pool}}], "action": "set",
                                               "attributes": {}}]})
    return host
