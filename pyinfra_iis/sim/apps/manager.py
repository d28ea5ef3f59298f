"""The app runner of one simulated host: which sites are served, their binding listeners and
app processes, and what happens on pool start/stop/recycle.

A site is *served* when it is Started and the web.config at its root physicalPath has an
``<httpPlatform>`` section (other sites are static or empty: the simulator does not serve them
and ``describe()`` says so). Each binding of a served site gets a :class:`BindingListener`
on a loopback port kept in ``host.state["sim_apps"]["bindings"]``. The app process is created
on the first request or warm-up from the CURRENT configuration, and dropped (killed) when its
pool stops or recycles, so a recycle after a physicalPath switch runs the new release.

Known gaps: a site stopped with ``Set-IisRuntimeState`` (no pool event) keeps its listeners
until the next pool event or :meth:`AppManager.sync`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..iis.store import STARTED, load_config, runtime
from . import arr_proxy
from .bindings import BindingListener, HttpError, http_sys_tls
from .launch import build_spec, read_platform
from .process import AppProcess, AppStartError
from .sites import SiteInfo, read_sites, site_by_name

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_KEY = "sim_apps"


def persisted_ports(host: "SimHost") -> dict[str, dict[str, Any]]:
    """``host.state["sim_apps"]["bindings"]``: ``"<site>|<protocol>|<bindingInformation>"`` →
    ``{"site", "protocol", "binding", "port", "tls"}``. Call under ``host.lock``."""

    return host.state.setdefault(STATE_KEY, {}).setdefault("bindings", {})


class AppManager:
    """Runs the served sites of ``host`` (see the module docstring). Thread-safe."""

    def __init__(self, host: "SimHost"):
        self.host = host
        self._lock = threading.RLock()
        self._apps: dict[str, tuple[str, AppProcess]] = {}  # site (folded) -> (pool, process)
        self._listeners: dict[tuple[str, str], BindingListener] = {}  # (site folded, binding key)
        self._site_names: dict[str, str] = {}  # site folded -> name as configured
        self._errors: dict[str, str] = {}  # site (folded) -> why it is not (fully) served
        self._closed = False

    # --- configuration snapshot -----------------------------------------------------------

    def _snapshot(self) -> tuple[Any, list[SiteInfo], dict[str, str], dict[str, str]]:
        with self.host.lock:
            config = load_config(self.host)
            if config is None:
                return None, [], {}, {}
            state = runtime(self.host)
            return config, read_sites(config), dict(state["app_pools"]), dict(state["sites"])

    def _served(self, sites: list[SiteInfo], site_states: dict[str, str]) -> list[SiteInfo]:
        served = []
        for site in sites:
            if site_states.get(site.name, STARTED) != STARTED:
                continue
            try:
                if read_platform(self.host, site) is None and not arr_proxy.has_route(self.host, site.name):
                    continue  # neither HttpPlatformHandler nor an ARR rewrite rule (arr_proxy) serves it
            except HttpError:
                pass  # served, answering 500.19
            served.append(site)
        return served

    # --- lifecycle ----------------------------------------------------------------------

    def sync(self) -> None:
        """Open listeners for every binding of every served site and close the others."""

        with self._lock:
            if self._closed:
                return
            _, sites, _, site_states = self._snapshot()
            wanted: dict[tuple[str, str], tuple[SiteInfo, Any]] = {}
            for site in self._served(sites, site_states):
                for site_binding in site.bindings:
                    wanted[(site.name.casefold(), site_binding.binding.key)] = (site, site_binding)
            for key in [k for k in self._listeners if k not in wanted]:
                self._listeners.pop(key).close()
            served_names = {key[0] for key in wanted}
            for name in [n for n in self._apps if n not in served_names]:
                self._apps.pop(name)[1].stop()
            for key, (site, site_binding) in wanted.items():
                if key not in self._listeners:
                    self._open(site, site_binding)

    def _open(self, site: SiteInfo, site_binding) -> None:
        binding = site_binding.binding
        state_key = f"{site.name}|{binding.protocol}|{binding.information}"
        # https: the certificate of the binding's HTTP.sys SSL binding, looked up per connection.
        tls = http_sys_tls(self.host, site.name, binding) if binding.protocol == "https" else None
        with self.host.lock:
            previous = persisted_ports(self.host).get(state_key, {}).get("port", 0)
        listener = BindingListener(binding, previous, lambda name=site.name: self.resolve(name), tls)
        self._listeners[(site.name.casefold(), binding.key)] = listener
        self._site_names[site.name.casefold()] = site.name
        self._errors.pop(site.name.casefold(), None)
        with self.host.lock:
            persisted_ports(self.host)[state_key] = {"site": site.name, "protocol": binding.protocol,
                                                     "binding": binding.information, "port": listener.port,
                                                     "tls": tls is not None}
            self.host.save()

    def on_pool_event(self, pool: str, event: str) -> None:
        """Pool hook (``sim/functions/runtime.py``): drop the pool's app processes on stop,
        recycle and remove; then :meth:`sync`; warm up the pool's apps on start and recycle."""

        with self._lock:
            if self._closed:
                return
            for name in [n for n, (p, _) in self._apps.items() if p.casefold() == pool.casefold()]:
                self._apps.pop(name)[1].stop()
        self.sync()
        if event in ("start", "recycle"):
            self.warm_up(pool)

    def warm_up(self, pool: str | None = None) -> None:
        """Start the apps of served sites (of ``pool``, or all) in background threads, as an
        ``AlwaysRunning`` pool would; errors are kept for :meth:`describe`, not raised."""

        _, sites, _, site_states = self._snapshot()
        for site in self._served(sites, site_states):
            if pool is None or site.pool.casefold() == pool.casefold():
                threading.Thread(target=self._warm, args=(site.name,), name=f"sim-warm-{site.name}", daemon=True).start()

    def _warm(self, site: str) -> None:
        try:
            self.resolve(site)
        except HttpError:
            pass

    def close(self) -> None:
        """Close every listener and kill every app process; the manager is unusable after."""

        with self._lock:
            self._closed = True
            listeners, self._listeners = list(self._listeners.values()), {}
            apps, self._apps = [p for _, p in self._apps.values()], {}
        for app in apps:
            app.stop()
        for listener in listeners:
            listener.close()

    # --- requests -----------------------------------------------------------------------

    def app(self, site_name: str) -> AppProcess:
        """The app process object of ``site_name`` (created from the current configuration).

        Raises:
            HttpError: 503 (pool stopped or site unknown), 500.19 / 502.3 (see ``launch.build_spec``).
        """

        config, sites, pools, _ = self._snapshot()
        site = site_by_name(sites, site_name)
        if site is None or config is None:
            raise HttpError(503, "Service Unavailable", f"site {site_name} does not exist")
        if pools.get(site.pool, STARTED) != STARTED:
            raise HttpError(503, "Service Unavailable", f"the application pool {site.pool} is stopped")
        with self._lock:
            if self._closed:
                raise HttpError(503, "Service Unavailable", "the simulated web server is stopping")
            entry = self._apps.get(site.name.casefold())
            if entry is None:
                entry = (site.pool, AppProcess(build_spec(self.host, config, site)))
                self._apps[site.name.casefold()] = entry
            return entry[1]

    def resolve(self, site_name: str) -> tuple[int, float]:
        """For a request to ``site_name``: ``(app port, requestTimeout seconds)``, starting the
        app if needed. Raises :class:`HttpError` (502.3 when the app cannot start)."""

        front = arr_proxy.resolve(self.host, site_name)  # ARR mode: the rewrite rule's front (arr_proxy)
        if front is not None:
            return front
        app = self.app(site_name)
        try:
            return app.ensure_running(), app.spec.platform.request_timeout
        except AppStartError as exc:
            raise HttpError(502, "Bad Gateway",
                            f"502.3: The specified CGI application encountered an error and the server terminated the process ({exc})") from None

    # --- reporting ----------------------------------------------------------------------

    def loopback_port(self, site: str, protocol: str, port: int, host_name: str = "") -> int | None:
        """The loopback port serving ``site``'s binding for ``protocol`` and IIS ``port`` whose
        host name is ``host_name`` or empty (a host-specific binding preferred), or ``None``."""

        with self._lock:
            candidates = [l for (s, _), l in self._listeners.items()
                          if s == site.casefold() and l.binding.protocol == protocol.lower() and l.binding.port == port
                          and l.binding.host.casefold() in ("", host_name.casefold())]
        candidates.sort(key=lambda l: l.binding.host == "")
        return candidates[0].port if candidates else None

    def app_status(self, site: str) -> dict[str, Any] | None:
        """The app process status of ``site`` (see ``AppProcess.status``) or ``None``."""

        with self._lock:
            entry = self._apps.get(site.casefold())
        if entry is None:
            return None
        status = entry[1].status()
        status["notes"] = list(entry[1].spec.notes)
        return status

    def describe(self) -> list[dict[str, Any]]:
        """One entry per listener: site, protocol, binding, ``loopback`` URL, tls, app status;
        plus sites not served because of a certificate problem (``error``)."""

        with self._lock:
            listeners = list(self._listeners.items())
            errors = dict(self._errors)
        result = []
        for (site_key, _), listener in listeners:
            b = listener.binding
            result.append({"site": self._site_names.get(site_key, site_key), "protocol": b.protocol, "binding": b.information,
                           "loopback": f"{'https' if listener.tls else 'http'}://127.0.0.1:{listener.port}",
                           "app": self.app_status(site_key)})
        result += [{"site": site, "error": error} for site, error in errors.items()]
        return result
