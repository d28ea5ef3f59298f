"""The one wide fact: ``Get-HostState`` (``docs/remote-functions.md``).

pyinfra runs every operation generator twice (plan, then execute) and does not cache facts
(docs/design.md, "Layers" 2), so :func:`host_state` caches the parsed fact per host in
``host.connector.fact_cache``, a dict the ``@winrm`` connector clears whenever it runs a command
that is not a read-only remote call (``Get-``/``Test-``/``Read-``) or uploads a file. Hosts whose
connector has no ``fact_cache`` (pyinfra's own connectors, unit tests) get a per-host dict here,
which :func:`forget_host_state` clears.

The fact arguments are computed ONCE per host from the host's whole inventory model: every path
an ACL, a site or a log directory of the inventory mentions, every certificate store it uses,
and the release root and Python version of its release settings (``release_*`` host data). One
call then serves every operation, so a no-op converge costs one ``Get-HostState``.
"""

from __future__ import annotations

import json
import weakref
from typing import Any, Iterable, NamedTuple

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from ..protocol import Secret, digest_key_argument, remote_call

#: Certificate stores always reported: ``My`` (Personal) and ``WebHosting`` (IIS 8+ SNI store).
DEFAULT_CERT_STORES = ("My", "WebHosting")

_CACHE_KEY = "pyinfra_iis.host_state"
_ARGS_KEY = "pyinfra_iis.host_state.args"

_fallback_caches: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


class HostStateOutputError(FactProcessError, ValueError):
    """``Get-HostState`` printed something that is not one JSON object. A ``FactProcessError``:
    pyinfra reports it as this host's error and fails this host only."""


class HostState(FactBase):
    """All the host state the project manages, as one JSON object.

    Args:
        acl_paths: absolute Windows paths whose ACLs (and existence) are reported.
        cert_stores: ``Cert:\\LocalMachine`` store names to list (default My, WebHosting).
        release_roots: release roots (``C:\\sites\\api``) whose ``releases`` are reported
            (sent only when not empty).
        python_versions: ``x.y`` versions whose all-users install is reported under ``pythons``
            (sent only when not empty).

    Every call also sends this controller process's digest key (``digest_key``, base64, as a
    :class:`~pyinfra_iis.protocol.Secret`: pyinfra shows it masked), under which the host
    reports secret values (:func:`pyinfra_iis.protocol.secret_digest`).

    Returns:
        the decoded JSON (shape in ``docs/remote-functions.md``, "Get-HostState" and "Releases").

    Raises:
        ValueError (wrapped by pyinfra as a fact error): the output is not one JSON object.
    """

    def command(self, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = DEFAULT_CERT_STORES,
                release_roots: Iterable[str] = (), python_versions: Iterable[str] = ()):
        payload: dict[str, Any] = {"acl_paths": list(acl_paths), "cert_stores": list(cert_stores),
                                   "digest_key": Secret(digest_key_argument())}
        if release_roots:
            payload["release_roots"] = list(release_roots)
        if python_versions:
            payload["python_versions"] = list(python_versions)
        return remote_call("Get-HostState", payload)

    def process(self, output):
        # FactProcessError: pyinfra logs it as this host's error and fails this host only.
        try:
            data = json.loads("\n".join(output))
        except ValueError as exc:
            raise HostStateOutputError(f"Get-HostState printed output that is not JSON ({exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno}): is the module on the host broken?") from None
        if not isinstance(data, dict):
            raise HostStateOutputError("Get-HostState must print one JSON object")
        return convert_host_state(data)


def convert_host_state(data: dict) -> dict:
    """Turn the host's raw ``Get-HostState`` answer into the fact the operations read: each part
    is converted by its own module (the host reports raw data; decisions are made here)."""

    from . import acl_state, certificate_state, iis_state, python_state, release_state

    for part in (iis_state, certificate_state, acl_state, python_state, release_state):
        data = part.convert(data)
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


class FactArgs(NamedTuple):
    """What one ``Get-HostState`` call asks for; each part sorted, de-duplicated ignoring case."""

    acl_paths: tuple[str, ...] = ()
    cert_stores: tuple[str, ...] = ()
    release_roots: tuple[str, ...] = ()
    python_versions: tuple[str, ...] = ()

    def covers(self, other: "FactArgs") -> bool:
        """Whether a fact read with ``self`` answers everything ``other`` asks."""

        return all({v.lower() for v in mine} >= {v.lower() for v in theirs} for mine, theirs in zip(self, other))

    def union(self, other: "FactArgs") -> "FactArgs":
        """Both requests in one."""

        return fact_args(*(list(mine) + list(theirs) for mine, theirs in zip(self, other)))

    def as_kwargs(self) -> dict[str, list[str]]:
        """Keyword arguments of :class:`HostState` (empty release parts left out)."""

        kwargs = {"acl_paths": list(self.acl_paths), "cert_stores": list(self.cert_stores)}
        if self.release_roots:
            kwargs["release_roots"] = list(self.release_roots)
        if self.python_versions:
            kwargs["python_versions"] = list(self.python_versions)
        return kwargs


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    found: dict[str, str] = {}
    for value in values:
        found.setdefault(str(value).lower(), str(value))
    return tuple(sorted(found.values(), key=str.lower))


def fact_args(acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = (), release_roots: Iterable[str] = (),
              python_versions: Iterable[str] = ()) -> FactArgs:
    """Return a normalised :class:`FactArgs` (sorted, duplicates ignoring case removed)."""

    return FactArgs(_unique(acl_paths), _unique(cert_stores), _unique(release_roots), _unique(python_versions))


def set_host_state(host: Any, value: dict, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = DEFAULT_CERT_STORES,
                   release_roots: Iterable[str] = (), python_versions: Iterable[str] = ()) -> None:
    """Put a fact value into the cache of ``host`` (tests, and hosts read by other means)."""

    fact_cache(host)[_CACHE_KEY] = (fact_args(acl_paths, cert_stores, release_roots, python_versions), value)


def inventory_fact_arguments(host: Any) -> FactArgs:
    """Return the :class:`FactArgs` of everything the host's inventory mentions.

    Computed once per host (kept on the host object, which lives for the whole run) from
    :func:`pyinfra_iis.models.load_host_config` (``iis_*`` data) and the release settings
    (``release_*`` data, :func:`pyinfra_iis.facts.arguments.release_arguments`). When the host
    data does not validate, the operations report that themselves; the fact then asks for
    nothing extra.
    """

    cached = getattr(host, "_pyinfra_iis_fact_args", None)
    if cached is not None:
        return cached
    from .arguments import paths_of_config, release_arguments, stores_of_config

    paths: list[str] = []
    stores: list[str] = list(DEFAULT_CERT_STORES)
    data = host_data_dict(host)
    try:
        from ..models import load_host_config

        config = load_host_config(host.name, data)
    except Exception:  # noqa: BLE001 - reported by the operations that need the model
        config = None
    if config is not None:
        paths.extend(paths_of_config(config))
        stores.extend(stores_of_config(config))
    release_paths, roots, pythons = release_arguments(data)
    result = fact_args(paths + release_paths, stores, roots, pythons)
    try:
        host._pyinfra_iis_fact_args = result
    except AttributeError:
        pass
    return result


def store_host_state(host: Any, wanted: "FactArgs", value: dict) -> None:
    """Cache ``value``, a ``Get-HostState`` read with ``wanted``, for ``host``."""

    fact_cache(host)[_CACHE_KEY] = (wanted, value)


def host_state(host: Any, *, refresh: bool = False, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = (),
               release_roots: Iterable[str] = (), python_versions: Iterable[str] = ()) -> dict:
    """Return the ``Get-HostState`` fact of ``host``, from the cache when it is still valid.

    Args:
        host: the pyinfra ``Host``.
        refresh: read the host again even when cached.
        acl_paths: paths an operation needs beyond those of the inventory (normally none).
        cert_stores: stores an operation needs beyond those of the inventory.
        release_roots: release roots an operation needs beyond those of the inventory.
        python_versions: ``x.y`` Python versions an operation needs beyond the inventory's.

    Returns:
        the fact (``docs/remote-functions.md``); cached until a changing command runs.

    Raises:
        RuntimeError: the fact came back empty on a connector that cannot refuse commands (the
            ``@winrm`` connector then refuses every further command and ``{}`` is returned).
    """

    wanted = inventory_fact_arguments(host).union(fact_args(acl_paths, cert_stores, release_roots, python_versions))
    cache = fact_cache(host)
    entry = cache.get(_CACHE_KEY)
    if entry is not None and not refresh and entry[0].covers(wanted):
        return entry[1]
    if entry is not None:  # keep what an earlier call asked for: one fact serves all
        wanted = entry[0].union(wanted)
    value = host.get_fact(HostState, **wanted.as_kwargs())
    if value is None:
        # pyinfra has logged why and failed this host; an exception here would stop the whole
        # run (pyinfra does not catch errors of an operation's generator). The @winrm connector
        # refuses every further command of this host instead, and the empty state plans only
        # commands that are refused: the host fails alone.
        refuse = getattr(getattr(host, "connector", None), "refuse", None)
        if refuse is None:
            raise RuntimeError(f"Get-HostState returned nothing on {host.name}")
        refuse("Get-HostState failed (reported above): nothing is run on this host")
        return {}
    store_host_state(host, wanted, value)
    return value


def host_data_dict(host: Any) -> dict:
    """Return the host's data (group data merged) as a plain dict."""

    data = host.data
    return data.dict() if hasattr(data, "dict") else dict(data)
