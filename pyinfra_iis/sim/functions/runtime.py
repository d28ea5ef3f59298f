"""Runtime state of IIS on the simulated host: ``Set-IisRuntimeState``, ``Restart-IisAppPool``
and ``Set-IisSslBinding`` (the RSCA methods of a binding: HTTP.sys SSL bindings), plus the hook
through which the simulator runs app processes.

Right after a pool or site is created, ``Start()`` throws 0x800710D8 until
WAS has read the new configuration. :func:`set_start_not_ready` makes the simulator answer like
that for the next N start attempts; ``Set-IisRuntimeState`` polls, as the module does, until
:data:`START_WAIT_SECONDS`.

Hook: :func:`register_pool_hook` registers ``callback(host, pool_name, event)`` called AFTER
the state change is saved, with ``event`` one of ``"start"``, ``"stop"``, ``"recycle"``
(also fired by ``Set-IisConfig`` when a started pool's configuration changes, since WAS
recycles a pool on a configuration change) and ``"remove"``. A hook's exception is swallowed
(the call already succeeded, as on IIS where a failing worker process does not fail the
command) and recorded in ``host.state["iis_runtime"]["hook_errors"]`` by exception type only.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from ..iis.store import STARTED, STOPPED, binding_conflict, find_key, load_config, runtime, site_elements, pool_names
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: How long Set-IisRuntimeState keeps retrying a Start() that WAS is not ready for, and how
#: often (the module: 30 s, every second; the simulator polls faster, same limit).
START_WAIT_SECONDS = 30.0
START_POLL_SECONDS = 0.05
NOT_READY = ("The object identifier does not represent a valid object. (Exception from HRESULT: 0x800710D8)")

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


def set_start_not_ready(host: "SimHost", kind: str, name: str, attempts: int) -> None:
    """Make the next ``attempts`` starts of app pool / site ``name`` (``kind`` "app pool" or
    "site") fail with 0x800710D8, as while WAS has not read a new configuration yet."""

    with host.lock:
        runtime(host).setdefault("not_ready", {})[f"{kind}|{name.casefold()}"] = int(attempts)
        host.save()


def _not_ready(host: "SimHost", kind: str, name: str) -> bool:
    # Call under host.lock: consume one not-ready answer for this object, if any.
    pending = runtime(host).setdefault("not_ready", {})
    key = f"{kind}|{name.casefold()}"
    if pending.get(key, 0) > 0:
        pending[key] -= 1
        host.save()
        return True
    return False


def _wait_until_ready(host: "SimHost", work: list[tuple[str, str]]) -> None:
    # Start() of each (kind, name) until WAS answers (no lock held while waiting).
    for kind, name in work:
        deadline = time.monotonic() + START_WAIT_SECONDS
        while True:
            with host.lock:
                if not _not_ready(host, kind, name):
                    break
            if time.monotonic() >= deadline:
                raise SimFunctionError(f"Set-IisRuntimeState: {kind} {name}: cannot start it: {NOT_READY} "
                                       f"(still not ready after {START_WAIT_SECONDS:g} s)")
            time.sleep(START_POLL_SECONDS)


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
    starts = [("app pool", n) for n, v in pools_wanted.items() if v == STARTED]
    _wait_until_ready(host, starts + [("site", n) for n, v in sites_wanted.items() if v == STARTED])
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


_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")
SSL_ACTIONS = ("add", "rebind", "remove")


def _find_binding(config, site: str, information: str):
    for element in site_elements(config):
        if element.get("name", "").casefold() != site.casefold():
            continue
        for holder in element.iter("bindings"):
            for binding in holder:
                if (binding.tag == "binding" and binding.get("protocol", "").casefold() == "https"
                        and binding.get("bindingInformation", "").casefold() == information.casefold()):
                    return binding
        raise SimFunctionError(f"Set-IisSslBinding: site '{site}' has no https binding '{information}' in "
                               "applicationHost.config: commit it with Set-IisConfig first")
    raise SimFunctionError(f"Set-IisSslBinding: site '{site}' does not exist")


@sim_function("Set-IisSslBinding")
def set_iis_ssl_binding(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"site", "binding_information", "action": "add"|"rebind"|"remove", "thumbprint", "store"}``
    → ``{"site", "binding_information", "action"}``: the binding's RSCA method
    ``AddSslCertificate`` / ``RebindSslCertificate`` / ``RemoveSslCertificate`` on HTTP.sys's SSL
    bindings (endpoint from the COMMITTED binding: hostnameport with the SNI bit of sslFlags,
    ipport otherwise). The only way into ``host.state["http_sys"]["sslcert"]``.

    Errors, as HTTP.sys answers: add over an existing endpoint (0x800700B7), rebind of a missing
    one (0x80070002), a certificate absent from the store or without private key (0x80070520).
    Removing a missing SSL binding is not an error.
    """

    site, information, action = payload.get("site"), payload.get("binding_information"), payload.get("action")
    if not isinstance(site, str) or not site or not isinstance(information, str) or not information:
        raise SimFunctionError("Set-IisSslBinding: 'site' and 'binding_information' must be non-empty strings")
    if action not in SSL_ACTIONS:
        raise SimFunctionError(f"Set-IisSslBinding: 'action' must be one of {', '.join(SSL_ACTIONS)}")
    thumbprint, store = payload.get("thumbprint"), payload.get("store") or "My"
    if action != "remove" and (not isinstance(thumbprint, str) or not _THUMBPRINT.match(thumbprint)):
        raise SimFunctionError("Set-IisSslBinding: 'thumbprint' must be 40 hex digits")
    from ..iis.appconfig import binding_endpoint
    from ..iis.store import sslcert_bindings
    from .certificates import find_certificate

    with host.lock:
        endpoint = binding_endpoint(_find_binding(_require_config(host), site, information))
        table = sslcert_bindings(host)
        if action == "remove":
            table.pop(endpoint, None)
        else:
            current = table.get(endpoint) or {}
            if action == "add" and current.get("certificateHash", "").upper() == thumbprint.upper():
                return json.dumps({"site": site, "binding_information": information, "action": action})  # a re-sent add
            if action == "add" and endpoint in table:
                raise SimFunctionError(f"Set-IisSslBinding: AddSslCertificate {endpoint}: Cannot create a file when "
                                       "that file already exists. (Exception from HRESULT: 0x800700B7)")
            if action == "rebind" and endpoint not in table:
                raise SimFunctionError(f"Set-IisSslBinding: RebindSslCertificate {endpoint}: The system cannot find "
                                       "the file specified. (Exception from HRESULT: 0x80070002)")
            record = find_certificate(host, store, thumbprint)
            if record is None or not record.get("has_private_key"):
                raise SimFunctionError(f"Set-IisSslBinding: certificate {thumbprint.upper()} with a private key is not in "
                                       f"Cert:\\LocalMachine\\{store} (Exception from HRESULT: 0x80070520)")
            table[endpoint] = {"certificateHash": thumbprint.upper(), "certificateStoreName": store,
                               "appid": "{4dc3e181-e14b-4a21-b022-59fc669b0914}"}
        host.save()
    return json.dumps({"site": site, "binding_information": information, "action": action})
