"""Runtime state of IIS on the simulated host: ``Set-IisRuntimeState`` and
``Restart-IisAppPool``, plus the hook through which the simulator runs app processes.

Hook: :func:`register_pool_hook` registers ``callback(host, pool_name, event)`` called AFTER
the state change is saved, with ``event`` one of ``"start"``, ``"stop"``, ``"recycle"``
(also fired by ``Set-IisConfig`` when a started pool's configuration changes, since WAS
recycles a pool on a configuration change) and ``"remove"``. A hook's exception is swallowed
(the call already succeeded, as on IIS where a failing worker process does not fail the
command) and recorded in ``host.state["iis_runtime"]["hook_errors"]`` by exception type only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from ..iis.store import STARTED, STOPPED, binding_conflict, find_key, load_config, runtime, site_elements, pool_names
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

PoolHook = Callable[["SimHost", str, str], None]
_POOL_HOOKS: list[PoolHook] = []
POOL_EVENTS = ("start", "stop", "recycle", "remove")


def register_pool_hook(callback: PoolHook) -> Callable[[], None]:
    """Register ``callback(host, pool_name, event)``; returns a function that unregisters it."""

    _POOL_HOOKS.append(callback)

    def unregister() -> None:
        if callback in _POOL_HOOKS:
            _POOL_HOOKS.remove(callback)

    return unregister


def fire_pool_event(host: "SimHost", pool: str, event: str) -> None:
    """Call every registered hook for ``event`` on ``pool`` (see the module docstring)."""

    for callback in list(_POOL_HOOKS):
        try:
            callback(host, pool, event)
        except Exception as exc:  # noqa: BLE001 - a hook must not fail the call
            with host.lock:
                runtime(host).setdefault("hook_errors", []).append(f"{event} {pool}: {type(exc).__name__}")
                host.save()


def _require_config(host: "SimHost"):
    config = load_config(host) if "Web-Server" in host.state.get("features", {}) else None
    if config is None:
        raise SimFunctionError("IIS is not installed: install the Web-Server feature first")
    return config


def _desired(payload: dict[str, Any], key: str) -> dict[str, str]:
    value = payload.get(key) or {}
    if not isinstance(value, dict):
        raise SimFunctionError(f"'{key}' must be an object of names to \"Started\" or \"Stopped\"")
    for name, state in value.items():
        if state not in (STARTED, STOPPED):
            raise SimFunctionError(f"{key} {name}: state must be \"Started\" or \"Stopped\", not {state!r}")
    return value


@sim_function("Set-IisRuntimeState")
def set_iis_runtime_state(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"app_pools": {name: "Started"|"Stopped"}, "sites": {...}}`` → ``{"changed": [...]}``.

    Errors: IIS not installed, unknown pool or site, a site that cannot start because a started
    site holds one of its bindings (IIS 0x800700B7). All names are checked before any change.
    """

    pools_wanted = _desired(payload, "app_pools")
    sites_wanted = _desired(payload, "sites")
    events: list[tuple[str, str]] = []
    changed: list[str] = []
    with host.lock:
        config = _require_config(host)
        state = runtime(host)
        configured_pools = pool_names(config)
        configured_sites = [s.get("name", "") for s in site_elements(config)]
        for name in pools_wanted:
            if not any(n.casefold() == name.casefold() for n in configured_pools):
                raise SimFunctionError(f"app pool '{name}' does not exist")
        for name in sites_wanted:
            if not any(n.casefold() == name.casefold() for n in configured_sites):
                raise SimFunctionError(f"site '{name}' does not exist")
        new_pools = dict(state["app_pools"])
        new_sites = dict(state["sites"])
        for name, wanted in pools_wanted.items():
            key = find_key(new_pools, name) or next(n for n in configured_pools if n.casefold() == name.casefold())
            old = new_pools.get(key, STARTED)
            if old != wanted:
                new_pools[key] = wanted
                changed.append(f"app pool {key}: {old} -> {wanted}")
                events.append((key, "start" if wanted == STARTED else "stop"))
        # Stop before start, so that moving a binding between sites works in one call.
        for name, wanted in sorted(sites_wanted.items(), key=lambda item: item[1] == STARTED):
            key = find_key(new_sites, name) or next(n for n in configured_sites if n.casefold() == name.casefold())
            old = new_sites.get(key, STARTED)
            if old == wanted:
                continue
            if wanted == STARTED:
                holder = binding_conflict(config, new_sites, key)
                if holder is not None:
                    raise SimFunctionError(
                        f"Cannot start site '{key}': Cannot create a file when that file already exists. "
                        f"(Exception from HRESULT: 0x800700B7) - site '{holder}' is started with the same binding"
                    )
            new_sites[key] = wanted
            changed.append(f"site {key}: {old} -> {wanted}")
        state["app_pools"], state["sites"] = new_pools, new_sites
        if changed:
            host.save()
    for pool, event in events:
        fire_pool_event(host, pool, event)
    return json.dumps({"changed": changed})


@sim_function("Restart-IisAppPool")
def restart_iis_app_pool(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"name"}`` → ``{"recycled": name}``; counts recycles in
    ``host.state["iis_runtime"]["recycles"]``. A stopped pool cannot be recycled (IIS:
    0x800710D8, "The object identifier does not represent a valid object")."""

    name = payload.get("name")
    if not isinstance(name, str) or not name:
        raise SimFunctionError("'name' must be an application pool name")
    with host.lock:
        config = _require_config(host)
        key = next((n for n in pool_names(config) if n.casefold() == name.casefold()), None)
        if key is None:
            raise SimFunctionError(f"app pool '{name}' does not exist")
        state = runtime(host)
        if state["app_pools"].get(key, STARTED) != STARTED:
            raise SimFunctionError(
                f"Cannot recycle app pool '{key}': it is stopped. The object identifier does not represent a "
                "valid object. (Exception from HRESULT: 0x800710D8)"
            )
        state["recycles"][key] = state["recycles"].get(key, 0) + 1
        host.save()
    fire_pool_event(host, key, "recycle")
    return json.dumps({"recycled": key})
