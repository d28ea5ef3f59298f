"""The app runner of one simulated host: which sites are served, their binding listeners, the
worker processes of their pools and the app process HttpPlatformHandler runs in each.

A site is *served* when it is Started and the web.config at its root physicalPath has an
``<httpPlatform>`` section (other sites are static or empty: the simulator does not serve them
and ``describe()`` says so). Each binding of a served site gets a :class:`BindingListener`
on a loopback port kept in ``host.state["sim_apps"]["bindings"]``.

Worker processes (docs/zero-downtime.md has the sources and what is inferred):

* A :class:`Worker` stands for one ``w3wp.exe`` of the site's pool. HttpPlatformHandler runs
  one app process per worker process (``processesPerApplication`` is per worker), built from the
  configuration the worker was started with. The first worker is made on the first request or
  warm-up; requests go to the pool's *serving* worker and are counted while in flight.
* A pool recycle (``Restart-IisAppPool``, or WAS after a change of the pool's configuration)
  starts a NEW worker from the CURRENT configuration:

  - overlapped (``recycling/@disallowOverlappingRotation`` false, IIS's default): with
    Application Initialization (pool ``startMode="AlwaysRunning"``, the site's
    ``preloadEnabled="true"``, the Web-AppInit feature) the new worker starts its app and requests
    each ``applicationInitialization`` page (``/`` when none is listed) while the old worker
    keeps serving every request; then the new worker takes the traffic. Without Application
    Initialization it takes the traffic at once and its app starts on the first request.
    Either way the old worker stops taking requests, finishes those in flight (at most the
    pool's ``processModel/@shutdownTimeLimit``) and only then is its app process killed;
  - not overlapped (``disallowOverlappingRotation="true"``): the old worker is stopped first and
    its app process killed at once (HttpPlatformHandler 1.2 has no graceful stop): requests in
    flight get 502.3, the issue-11 failure; the new worker then serves.
* Pool stop or remove kills every worker's app process at once.

A recycle that arrives while a new worker is still initializing from the same configuration
(the switch's commit and its explicit recycle) reuses it.

Known gaps: a site stopped with ``Set-IisRuntimeState`` (no pool event) keeps its listeners
until the next pool event or :meth:`AppManager.sync`. A change of a site's physicalPath or
web.config alone does nothing here until the pool recycles (on Windows, HttpPlatformHandler may
restart its process in place: docs/zero-downtime.md, [I]).
"""

from __future__ import annotations

import http.client
import ntpath
import threading
import time
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from ..iis.store import STARTED, load_config, runtime
from . import arr_proxy
from .bindings import BindingListener, HttpError, http_sys_tls
from .httpplatform import InitializationPage, parse_initialization_pages
from .launch import build_spec, read_platform
from .process import AppProcess, AppStartError
from .sites import PoolRotation, SiteInfo, pool_rotation, preload_enabled, read_sites, site_by_name

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STATE_KEY = "sim_apps"
#: The Windows feature Application Initialization needs (docs/field-facts.md, IIS).
APP_INIT_FEATURE = "Web-AppInit"
#: Worker events kept for :meth:`AppManager.events` (the newest).
EVENTS_KEPT = 200


def persisted_ports(host: "SimHost") -> dict[str, dict[str, Any]]:
    """``host.state["sim_apps"]["bindings"]``: ``"<site>|<protocol>|<bindingInformation>"`` →
    ``{"site", "protocol", "binding", "port", "tls"}``. Call under ``host.lock``."""

    return host.state.setdefault(STATE_KEY, {}).setdefault("bindings", {})


class Worker:
    """One simulated worker process (``w3wp.exe``) of ``pool`` serving ``site``, with the app
    process HttpPlatformHandler runs in it (``app``), or the error IIS answers instead (``error``:
    500.19 / 502.3 from the configuration it started with).

    ``state``: ``initializing`` (Application Initialization running, no traffic yet),
    ``serving``, ``draining`` (no new requests; those in flight finish), ``stopped``.
    """

    def __init__(self, number: int, pool: str, site: str, app: AppProcess | None, error: HttpError | None,
                 pages: list[InitializationPage] | None, fingerprint: tuple):
        self.number, self.pool, self.site = number, pool, site
        self.app, self.error, self.pages, self.fingerprint = app, error, pages, fingerprint
        self.state = "serving"
        self.in_flight = 0
        self._condition = threading.Condition()

    def enter(self) -> None:
        """Count a request in flight."""

        with self._condition:
            self.in_flight += 1

    def leave(self) -> None:
        """A request is over."""

        with self._condition:
            self.in_flight -= 1
            self._condition.notify_all()

    def drain(self, limit: float) -> int:
        """Wait until no request is in flight, at most ``limit`` seconds; return how many still are."""

        deadline = time.monotonic() + limit
        with self._condition:
            while self.in_flight > 0 and time.monotonic() < deadline:
                self._condition.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return self.in_flight

    def stop(self) -> None:
        """Kill the app process (HttpPlatformHandler 1.2 has no graceful stop)."""

        self.state = "stopped"
        if self.app is not None:
            self.app.stop()

    def status(self) -> dict[str, Any]:
        """``{"worker", "state", "in_flight", "app": AppProcess.status() or None, "error"}``."""

        return {"worker": self.number, "state": self.state, "in_flight": self.in_flight,
                "app": self.app.status() if self.app is not None else None,
                "error": f"{self.error.status} {self.error.detail}" if self.error is not None else None}


class AppManager:
    """Runs the served sites of ``host`` (see the module docstring). Thread-safe."""

    def __init__(self, host: "SimHost"):
        self.host = host
        self._lock = threading.RLock()
        self._serving: dict[str, Worker] = {}  # site (folded) -> the worker that takes new requests
        self._initializing: dict[str, Worker] = {}  # site (folded) -> the new worker warming up
        self._draining: list[Worker] = []
        self._listeners: dict[tuple[str, str], BindingListener] = {}  # (site folded, binding key)
        self._site_names: dict[str, str] = {}  # site folded -> name as configured
        self._errors: dict[str, str] = {}  # site (folded) -> why it is not (fully) served
        self._events: list[dict[str, Any]] = []
        self._numbers = 0
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

    def _record(self, worker: Worker, event: str, **details: Any) -> None:
        with self._lock:
            self._events.append({"at": time.monotonic(), "site": worker.site, "worker": worker.number, "event": event, **details})
            del self._events[:-EVENTS_KEPT]

    def events(self, site: str | None = None) -> list[dict[str, Any]]:
        """Worker events, oldest first: ``{"at": monotonic seconds, "site", "worker", "event":
        "started"|"initialized"|"serving"|"drained"|"killed", ...}`` (``killed`` carries
        ``in_flight``: requests cut by the kill)."""

        with self._lock:
            return [dict(e) for e in self._events if site is None or e["site"].casefold() == site.casefold()]

    # --- workers ------------------------------------------------------------------------

    def _pages(self, site: SiteInfo) -> list[InitializationPage] | None:
        try:
            local = self.host.path(ntpath.join(site.physical_path or "", "web.config"))
            return parse_initialization_pages(local.read_text(encoding="utf-8-sig")) if local.is_file() else None
        except (SimPathError, OSError, UnicodeDecodeError):
            return None

    def _new_worker(self, config: Any, site: SiteInfo) -> Worker:
        # Call under self._lock: a worker started from the CURRENT configuration.
        self._numbers += 1
        app = error = None
        try:
            spec = build_spec(self.host, config, site)
            app = AppProcess(spec)
            fingerprint = (tuple(spec.argv), str(spec.cwd), tuple(sorted(spec.environment.items())), spec.platform)
        except HttpError as exc:
            error, fingerprint = exc, ("error", exc.status, exc.detail)
        pages = self._pages(site)
        worker = Worker(self._numbers, site.pool, site.name, app, error, pages, (*fingerprint, tuple(pages or ())))
        self._record(worker, "started", release=ntpath.basename(site.physical_path or ""))
        return worker

    def _stop_now(self, worker: Worker, why: str) -> None:
        cut = worker.in_flight
        worker.stop()
        self._record(worker, "killed", in_flight=cut, why=why)

    def _drain_then_stop(self, worker: Worker, limit: float) -> None:
        worker.state = "draining"

        def run() -> None:
            started = time.monotonic()
            left = worker.drain(limit)
            with self._lock:
                if worker in self._draining:
                    self._draining.remove(worker)
            if left:
                self._stop_now(worker, f"shutdownTimeLimit ({limit:g} s) reached")
            else:
                worker.stop()
                self._record(worker, "drained", seconds=round(time.monotonic() - started, 3))

        with self._lock:
            self._draining.append(worker)
        threading.Thread(target=run, name=f"sim-drain-{worker.site}-{worker.number}", daemon=True).start()

    def _initialize(self, worker: Worker) -> None:
        """Application Initialization in ``worker``: start the app, request each page (the answer
        does not matter: IIS only waits for it), then let the worker serve."""

        started = time.monotonic()
        answers = []
        if worker.app is not None:
            try:
                port = worker.app.ensure_running()
            except AppStartError as exc:
                answers.append(f"502.3 ({exc})")
            else:
                for page in worker.pages or [InitializationPage("/")]:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=worker.app.spec.platform.request_timeout)
                    try:
                        connection.request("GET", page.page, headers={"Host": page.host_name, "User-Agent": "IIS Application Initialization Warmup"})
                        answers.append(connection.getresponse().status)
                    except (OSError, http.client.HTTPException) as exc:
                        answers.append(type(exc).__name__)
                    finally:
                        connection.close()
        self._record(worker, "initialized", seconds=round(time.monotonic() - started, 3), answers=answers)

    def _rotate(self, config: Any, site: SiteInfo, rotation: PoolRotation, preload: bool) -> None:
        key = site.name.casefold()
        with self._lock:
            if self._closed:
                return
            old = self._serving.get(key)
            pending = self._initializing.get(key)
            new = None
            if pending is not None:
                candidate = self._new_worker(config, site)
                if candidate.fingerprint == pending.fingerprint:
                    self._record(candidate, "merged", into=pending.number)  # same configuration: WAS has one rotation under way
                    return
                del self._initializing[key]
                self._stop_now(pending, "superseded by a newer recycle")
                new = candidate
            new = new or self._new_worker(config, site)
            if not rotation.overlapped:
                if old is not None:
                    self._stop_now(old, "recycle without overlap (disallowOverlappingRotation)")
                self._serving[key] = new
                self._record(new, "serving")
            elif preload:
                new.state = "initializing"
                self._initializing[key] = new
            else:
                self._serving[key] = new
                self._record(new, "serving")
                if old is not None:
                    self._drain_then_stop(old, rotation.shutdown_time_limit)
        if preload:
            threading.Thread(target=self._warm_then_serve, args=(key, new, rotation), name=f"sim-appinit-{site.name}", daemon=True).start()

    def _warm_then_serve(self, key: str, worker: Worker, rotation: PoolRotation) -> None:
        self._initialize(worker)
        with self._lock:
            if self._closed or worker.state == "stopped":
                return
            if self._initializing.get(key) is worker:
                del self._initializing[key]
            elif self._serving.get(key) is not worker:
                return
            old = self._serving.get(key)
            self._serving[key] = worker
            if worker.state != "serving":
                worker.state = "serving"
                self._record(worker, "serving")
            if old is not None and old is not worker:
                self._drain_then_stop(old, rotation.shutdown_time_limit)

    def _workers_of(self, pool: str) -> list[tuple[str, Worker]]:
        # Call under self._lock.
        found = [(k, w) for k, w in self._serving.items() if w.pool.casefold() == pool.casefold()]
        found += [(k, w) for k, w in self._initializing.items() if w.pool.casefold() == pool.casefold()]
        return found

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
            for table in (self._serving, self._initializing):
                for name in [n for n in table if n not in served_names]:
                    self._stop_now(table.pop(name), "site no longer served")
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
        """Pool hook (``sim/functions/runtime.py``): ``stop``/``remove`` kill the pool's workers
        at once; ``recycle`` rotates them (module docstring); then :meth:`sync`; ``start`` warms
        the pool's apps up."""

        with self._lock:
            if self._closed:
                return
            if event in ("stop", "remove"):
                for key, worker in self._workers_of(pool):
                    self._serving.pop(key, None) if self._serving.get(key) is worker else self._initializing.pop(key, None)
                    self._stop_now(worker, f"application pool {event}")
                for worker in [w for w in self._draining if w.pool.casefold() == pool.casefold()]:
                    self._stop_now(worker, f"application pool {event}")
        self.sync()
        if event == "recycle":
            config, sites, _, site_states = self._snapshot()
            if config is None:
                return
            rotation = pool_rotation(config, pool)
            with self.host.lock:
                app_init = APP_INIT_FEATURE in self.host.state.get("features", {})
            for site in self._served(sites, site_states):
                if site.pool.casefold() == pool.casefold():
                    preload = rotation.always_running and app_init and preload_enabled(config, site.name)
                    self._rotate(config, site, rotation, preload)
        elif event == "start":
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
            resolved = self.resolve(site)
        except HttpError:
            return
        if len(resolved) > 2:  # an ARR front has no request to end
            resolved[2]()

    def close(self) -> None:
        """Close every listener and kill every app process; the manager is unusable after."""

        with self._lock:
            self._closed = True
            listeners, self._listeners = list(self._listeners.values()), {}
            workers = [*self._serving.values(), *self._initializing.values(), *self._draining]
            self._serving, self._initializing, self._draining = {}, {}, []
        for worker in workers:
            worker.stop()
        for listener in listeners:
            listener.close()

    # --- requests -----------------------------------------------------------------------

    def worker(self, site_name: str) -> Worker:
        """The worker that takes a new request for ``site_name`` (made from the current
        configuration when the pool has none yet), with the request counted in flight: call
        its ``leave()`` when the request is over.

        Raises:
            HttpError: 503 (pool stopped or site unknown).
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
            # No serving worker yet but one initializing (a first start): HTTP.sys queues for it.
            worker = self._serving.get(site.name.casefold()) or self._initializing.get(site.name.casefold())
            if worker is None:
                worker = self._serving[site.name.casefold()] = self._new_worker(config, site)
            worker.enter()
            return worker

    def app(self, site_name: str) -> AppProcess:
        """The app process of the worker serving ``site_name`` (see :meth:`worker`).

        Raises:
            HttpError: 503, or the 500.19 / 502.3 its configuration gives (``launch.build_spec``).
        """

        worker = self.worker(site_name)
        worker.leave()
        if worker.error is not None:
            raise worker.error
        return worker.app

    def resolve(self, site_name: str) -> tuple:
        """For a request to ``site_name``: ``(app port, requestTimeout seconds, done)``,
        starting the app in the serving worker if needed; ``done()`` ends the request. A site
        ARR proxies (its rewrite rule, :mod:`arr_proxy`) gives ``(front port, seconds)``.
        Raises :class:`HttpError` (502.3 when the app cannot start)."""

        front = arr_proxy.resolve(self.host, site_name)  # ARR mode: the rewrite rule's front (arr_proxy)
        if front is not None:
            return front
        worker = self.worker(site_name)
        try:
            if worker.error is not None:
                raise worker.error
            try:
                return worker.app.ensure_running(), worker.app.spec.platform.request_timeout, worker.leave
            except AppStartError as exc:
                raise HttpError(502, "Bad Gateway",
                                f"502.3: The specified CGI application encountered an error and the server terminated the process ({exc})") from None
        except BaseException:
            worker.leave()
            raise

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
        """The app process status of ``site``'s serving worker (see ``AppProcess.status``), with
        ``notes`` and ``workers`` (every worker of the site: :meth:`Worker.status`), or ``None``."""

        key = site.casefold()
        with self._lock:
            worker = self._serving.get(key)
            workers = [w for w in (worker, self._initializing.get(key), *self._draining) if w is not None and w.site.casefold() == key]
        if worker is None:
            return None
        status = worker.app.status() if worker.app is not None else {"state": "error", "last_error": str(worker.error)}
        status["notes"] = list(worker.app.spec.notes) if worker.app is not None else []
        status["workers"] = [w.status() for w in workers]
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
