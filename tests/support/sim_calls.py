"""Calling simulator functions directly on a SimHost, for the simulator's own unit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from pyinfra_iis.protocol import digest_key_argument
from pyinfra_iis.sim.functions import call
from pyinfra_iis.sim.host import SimHost

#: The ``digest_key`` member ``Get-HostState`` requires: this process's key, as the fact sends
#: it, so ``protocol.secret_digest(value)`` gives the digests the simulator reports.
DIGEST_KEY = digest_key_argument()


def run(host: SimHost, name: str, payload: dict[str, Any], *, raw: bool = False) -> Any:
    """Call the module function ``name`` with ``payload`` on ``host``; its JSON result.
    ``Get-HostState`` gets :data:`DIGEST_KEY` unless the payload has a ``digest_key``, and its
    answer is converted as the fact does (``facts.host_state.convert_host_state``) unless ``raw``."""

    if name == "Get-HostState":
        from pyinfra_iis.facts.host_state import convert_host_state

        answer = json.loads(call(host, name, {"digest_key": DIGEST_KEY, **payload}, {}))
        return answer if raw else convert_host_state(answer)
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
