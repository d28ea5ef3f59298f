"""``Set-IisConfig`` on the simulated host: edits of applicationHost.config, all or nothing.

The edits are applied to a copy of the document (``sim/iis/appconfig.py``); only if every edit
is valid is the file replaced, in one atomic write, like one ``CommitChanges()``. Afterwards
the runtime state follows the configuration (new pools and sites start, removed ones are
forgotten) and a started pool whose configuration changed is recycled, as WAS does.

A binding's ``certificateHash``/``certificateStoreName`` are HTTP.sys (RSCA runtime) members:
``Set-IisConfig`` refuses them, as the host does; ``Set-IisSslBinding`` (``sim/functions/ssl.py``)
is the only way into the simulator's HTTP.sys table (``host.state["http_sys"]["sslcert"]``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..iis.appconfig import ConfigError, edit_file
from ..iis.store import STARTED, config_file, load_config, runtime, sync_runtime
from . import SimFunctionError, sim_function
from .runtime import fire_pool_event

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

_POOL_CHANGE_RE = re.compile(r"^system\.applicationHost/applicationPools/add\[name=(?P<name>[^\],]*)\]")


def _changed_pools(changed: list[str]) -> list[str]:
    names: list[str] = []
    for line in changed:
        match = _POOL_CHANGE_RE.match(line)
        if match and match.group("name") not in names:
            names.append(match.group("name"))
    return names


@sim_function("Set-IisConfig")
def set_iis_config(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"edits": [EDIT, ...]}`` → ``{"committed": bool}`` (true when any edit was given: the
    host commits them; the controller words the changes, from the fact).

    See ``docs/remote-functions.md`` for EDIT. Errors (nothing changed): IIS not installed,
    an unregistered section (e.g. ``system.webServer/proxy`` before ARR), an invalid edit.
    """

    edits = payload.get("edits")
    if not isinstance(edits, list):
        raise SimFunctionError("'edits' must be a list of edits")
    events: list[tuple[str, str]] = []
    with host.lock:
        if "Web-Server" not in host.state.get("features", {}) or not config_file(host).exists():
            raise SimFunctionError("IIS is not installed: install the Web-Server feature first")
        try:
            changed, _ = edit_file(config_file(host), edits)
        except ConfigError as exc:
            raise SimFunctionError(f"Set-IisConfig: nothing was committed: {exc}") from None
        if changed:
            state = runtime(host)
            before = dict(state["app_pools"])
            result = sync_runtime(host, load_config(host))
            events += [(pool, "start") for pool in result["started_pools"]]
            events += [(pool, "remove") for pool in result["removed_pools"]]
            for pool in _changed_pools(changed):
                key = next((k for k in before if k.casefold() == pool.casefold()), None)
                if key is not None and before[key] == STARTED and key in state["app_pools"]:
                    events.append((key, "recycle"))
            host.save()
    for pool, event in events:
        fire_pool_event(host, pool, event)
    if edits:
        _sync_listeners(host)
    return json.dumps({"committed": bool(edits)})


def _sync_listeners(host: "SimHost") -> None:
    """A committed change can make a site served without any pool event (ARR mode: a rewrite
    rule; sim/apps/arr_proxy.py): the app runner opens and closes binding listeners now, as
    WAS picks up a site change at once (app processes are left alone)."""

    from ..apps import manager_for

    manager = manager_for(host)
    if manager is not None:
        manager.sync()
