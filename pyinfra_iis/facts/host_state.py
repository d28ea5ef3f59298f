"""The one wide fact: ``Get-HostState`` (``docs/remote-functions.md``).

pyinfra runs every operation generator twice (plan, then execute) and does not cache facts
(design.md, "Layers" 2), so :func:`host_state` caches the parsed fact per host in
``host.connector.fact_cache``, a dict the ``@winrm`` connector clears whenever it runs a command
that is not a read-only remote call (``Get-``/``Test-``/``Read-``) or uploads a file. Hosts whose
connector has no ``fact_cache`` (pyinfra's own connectors, unit tests) get a per-host dict here,
which :func:`forget_host_state` clears.

The fact arguments are computed ONCE per host from the host's whole inventory model: every path
an ACL, a site or a log directory of the inventory mentions, and every certificate store it
uses. One call then serves every operation, so a no-op converge costs one ``Get-HostState``.
"""

from __future__ import annotations

import json
import weakref
from typing import Any, Iterable

from pyinfra.api import FactBase

from ..protocol import remote_call

#: Certificate stores always reported: ``My`` (Personal) and ``WebHosting`` (IIS 8+ SNI store).
DEFAULT_CERT_STORES = ("My", "WebHosting")

_CACHE_KEY = "pyinfra_iis.host_state"
_ARGS_KEY = "pyinfra_iis.host_state.args"

_fallback_caches: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


class HostState(FactBase):
    """All the host state the project manages, as one JSON object.

    Args:
        acl_paths: absolute Windows paths whose ACLs (and existence) are reported.
        cert_stores: ``Cert:\\LocalMachine`` store names to list (default My, WebHosting).

    Returns:
        the decoded JSON (shape in ``docs/remote-functions.md``, "Get-HostState").

    Raises:
        ValueError (wrapped by pyinfra as a fact error): the output is not one JSON object.
    """

    def command(self, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = DEFAULT_CERT_STORES):
        return remote_call("Get-HostState", {"acl_paths": list(acl_paths), "cert_stores": list(cert_stores)})

    def process(self, output):
        data = json.loads("\n".join(output))
        if not isinstance(data, dict):
            raise ValueError("Get-HostState must print one JSON object")
        return data


def fact_cache(host: Any) -> dict:
    """Return the per-host fact cache: ``host.connector.fact_cache`` when the connector has
    one, else a dict kept here for the host's lifetime."""

    cache = getattr(getattr(host, "connector", None), "fact_cache", None)
    if isinstance(cache, dict):
        return cache
    try:
        return _fallback_caches.setdefault(host, {})
    except TypeError:  # not weak-referenceable
        return host.__dict__.setdefault("_pyinfra_iis_fact_cache", {})


def forget_host_state(host: Any) -> None:
    """Drop the cached fact of ``host`` (the next :func:`host_state` reads the host again)."""

    cache = fact_cache(host)
    cache.pop(_CACHE_KEY, None)


def set_host_state(host: Any, value: dict, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = DEFAULT_CERT_STORES) -> None:
    """Put a fact value into the cache of ``host`` (tests, and hosts read by other means)."""

    fact_cache(host)[_CACHE_KEY] = (_normalise_args(acl_paths, cert_stores), value)


def _normalise_args(acl_paths: Iterable[str], cert_stores: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    paths: dict[str, str] = {}
    for path in acl_paths:
        paths.setdefault(str(path).lower(), str(path))
    stores: dict[str, str] = {}
    for store in cert_stores:
        stores.setdefault(str(store).lower(), str(store))
    return tuple(sorted(paths.values(), key=str.lower)), tuple(sorted(stores.values(), key=str.lower))


def _covers(cached: tuple[tuple[str, ...], tuple[str, ...]], wanted: tuple[tuple[str, ...], tuple[str, ...]]) -> bool:
    have_paths = {p.lower() for p in cached[0]}
    have_stores = {s.lower() for s in cached[1]}
    return all(p.lower() in have_paths for p in wanted[0]) and all(s.lower() in have_stores for s in wanted[1])


def inventory_fact_arguments(host: Any) -> tuple[list[str], list[str]]:
    """Return ``(acl_paths, cert_stores)`` for everything the host's inventory mentions.

    Computed once per host (kept on the host object, which lives for the whole run) from
    :func:`pyinfra_iis.models.load_host_config`. When the host data does not validate, the
    operations report that themselves; the fact then asks for nothing extra.
    """

    cached = getattr(host, "_pyinfra_iis_fact_args", None)
    if cached is not None:
        return cached
    paths: list[str] = []
    stores: list[str] = list(DEFAULT_CERT_STORES)
    try:
        from ..models import load_host_config

        config = load_host_config(host.name, host_data_dict(host))
    except Exception:  # noqa: BLE001 - reported by the operations that need the model
        config = None
    if config is not None:
        from .arguments import paths_of_config, stores_of_config

        paths.extend(paths_of_config(config))
        stores.extend(stores_of_config(config))
    result = (list(_normalise_args(paths, stores)[0]), list(_normalise_args(paths, stores)[1]))
    try:
        host._pyinfra_iis_fact_args = result
    except AttributeError:
        pass
    return result


def host_state(host: Any, *, refresh: bool = False, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = ()) -> dict:
    """Return the ``Get-HostState`` fact of ``host``, from the cache when it is still valid.

    Args:
        host: the pyinfra ``Host``.
        refresh: read the host again even when cached.
        acl_paths: paths an operation needs beyond those of the inventory (normally none).
        cert_stores: stores an operation needs beyond those of the inventory.

    Returns:
        the fact (``docs/remote-functions.md``); cached until a changing command runs.
    """

    inventory_paths, inventory_stores = inventory_fact_arguments(host)
    wanted = _normalise_args([*inventory_paths, *acl_paths], [*inventory_stores, *cert_stores])
    cache = fact_cache(host)
    entry = cache.get(_CACHE_KEY)
    if entry is not None and not refresh and _covers(entry[0], wanted):
        return entry[1]
    if entry is not None:  # keep what an earlier call asked for: one fact serves all
        wanted = _normalise_args([*entry[0][0], *wanted[0]], [*entry[0][1], *wanted[1]])
    value = host.get_fact(HostState, acl_paths=list(wanted[0]), cert_stores=list(wanted[1]))
    if value is None:
        raise RuntimeError(f"Get-HostState returned nothing on {host.name}")
    cache[_CACHE_KEY] = (wanted, value)
    return value


def host_data_dict(host: Any) -> dict:
    """Return the host's data (group data merged) as a plain dict."""

    data = host.data
    return data.dict() if hasattr(data, "dict") else dict(data)
