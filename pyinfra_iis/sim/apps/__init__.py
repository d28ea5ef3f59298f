"""The simulated host runs switched releases for real.

For every started site whose web.config has ``<httpPlatform>``, the simulator starts the app
process exactly as web.config says (``process``; Windows paths mapped into the state
directory, the release venv replaced by a local venv with the same pins, ``venv``) and serves
each binding on a loopback port, forwarding requests with X-Forwarded-For / X-Forwarded-Proto as
HttpPlatformHandler does (``bindings``; https with the imported certificate, ``tls``). So a
health check on the simulated host hits the real app. NOTE: the app runs on THIS OS with the
controller's Python, not on Windows with the manifest's Python version.

Python API::

    from pyinfra_iis.sim import apps
    manager = apps.attach(host)        # SimServer.start() does this; sites come up
    manager.loopback_port("api", "https", 443, "api.example.com")   # → 127.0.0.1 port
    manager.describe()                 # which loopback port serves which binding
    apps.detach(host)                  # SimServer.stop(): listeners closed, processes killed

Pool events reach the manager through ``sim/functions/runtime.py``'s pool hook (registered on
import of this package); hosts without an attached manager are left alone.

Modules: ``venv`` (local venvs, cached), ``httpplatform`` (web.config's ``<httpPlatform>``,
Windows command lines), ``sites`` (applicationHost.config reading), ``launch`` (web.config →
launch spec), ``process`` (the app process), ``tls``, ``bindings`` (listeners and proxy),
``manager`` (per-host lifecycle).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..functions.runtime import register_pool_hook
from .manager import STATE_KEY, AppManager

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

__all__ = ["AppManager", "attach", "detach", "describe_state", "manager_for"]

_MANAGERS: dict[Path, AppManager] = {}
_REGISTRY_LOCK = threading.Lock()


def manager_for(host: "SimHost", create: bool = False) -> AppManager | None:
    """The app manager of ``host`` (one per state directory); with ``create``, one is made
    (replacing a stale one left by another ``SimHost`` object on the same folder) and synced."""

    with _REGISTRY_LOCK:
        manager = _MANAGERS.get(host.state_dir)
        if manager is not None and manager.host is host:
            return manager
        if not create:
            return None
        if manager is not None:
            manager.close()
        manager = _MANAGERS[host.state_dir] = AppManager(host)
    manager.sync()
    return manager


def attach(host: "SimHost") -> AppManager:
    """Serve ``host``'s started sites now (listeners opened, apps warmed up); returns the manager."""

    manager = manager_for(host, create=True)
    manager.warm_up()
    return manager


def detach(host: "SimHost") -> None:
    """Close ``host``'s listeners and kill its app processes (nothing when none is attached)."""

    with _REGISTRY_LOCK:
        manager = _MANAGERS.get(host.state_dir)
        if manager is None or manager.host is not host:
            return
        del _MANAGERS[host.state_dir]
    manager.close()


def _on_pool_event(host: "SimHost", pool: str, event: str) -> None:
    manager = manager_for(host)
    if manager is not None:
        manager.on_pool_event(pool, event)


register_pool_hook(_on_pool_event)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def describe_state(state: dict[str, Any]) -> dict[str, Any]:
    """For ``python -m pyinfra_iis.sim show``: from a host state document, which loopback port
    serves which binding (and whether something listens there now), plus a note on what runs."""

    bindings = []
    for entry in state.get(STATE_KEY, {}).get("bindings", {}).values():
        scheme = "https" if entry.get("tls") else "http"
        bindings.append({**entry, "loopback": f"{scheme}://127.0.0.1:{entry['port']}", "listening": _listening(entry["port"])})
    return {"bindings": sorted(bindings, key=lambda b: (b["site"], b["protocol"], b["binding"])),
            "note": "apps run on this OS with the controller's Python and a local venv of the release's pinned "
                    "versions, not with the target Windows Python"}
