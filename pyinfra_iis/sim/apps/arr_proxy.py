"""URL Rewrite + ARR on the simulated host: a site whose ``<location path="<site>">`` has a
``system.webServer/rewrite/rules`` rule rewriting to ``http://...`` is proxied as ARR does,
following the rule and the server settings READ from applicationHost.config at each request.

The binding listener (``bindings.py``) is HTTP.sys and the front of the IIS pipeline: it
forwards to this site's front (:func:`resolve` gives its port), adding ``X-Forwarded-For``
(``client:port``) and ``X-Forwarded-Proto`` (the binding's scheme, which IIS itself knows as
``{HTTPS}``). The front then does what URL Rewrite and ARR do:

* the first enabled rule with ``action type="Rewrite"`` to an absolute ``http://`` URL is used;
  ``match/@url`` (ECMAScript, ``ignoreCase``) is matched against the URL path without its
  leading ``/`` (URL Rewrite's ``{R:n}``); each condition's ``input`` is expanded (``{HTTPS}``,
  ``{HTTP_HOST}``, ``{CACHE_URL}``, ``{REQUEST_URI}``, any ``{HTTP_*}``) and matched, giving
  ``{C:n}`` of the last matched condition;
* each ``<serverVariables><set>`` must be in ``system.webServer/rewrite/allowedServerVariables``
  (else 500.50, as URL Rewrite answers); ``HTTP_X_FOO`` becomes request header ``X-Foo``;
* ``system.webServer/proxy``: ``enabled`` must be true (else 404: without ARR's proxy, a rewrite
  to another host finds nothing); ``preserveHostHeader`` keeps ``Host`` (else the target's);
  ``includePortInXForwardedFor=false`` drops the client port from ``X-Forwarded-For``;
  ``timeout`` bounds the wait for the answer (then 502.3, as ARR);
* the target's ``127.0.0.1:<port>`` is the simulated host's loopback: the service listening
  there (``sim/functions/services.local_port``) gets the request.

Not simulated: ``reverseRewriteHostInResponseHeaders`` (response headers pass unchanged),
outbound rules, rewrite maps, global rules, response buffering.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...iis.appconfig import first_child, real_children
from ..iis.store import config_file, load_config
from .bindings import HttpError, relay, send_answer

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

RULES = "system.webServer/rewrite/rules"
PROXY = "system.webServer/proxy"
ALLOWED = "system.webServer/rewrite/allowedServerVariables"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"})
_VARIABLE = re.compile(r"\{([A-Za-z_:0-9]+)\}")
#: ARR's ``proxy/@timeout`` default (arr_schema.xml).
DEFAULT_TIMEOUT = 120.0


def _timespan(text: str | None) -> float:
    if not text:
        return DEFAULT_TIMEOUT
    days, _, clock = text.rpartition(".") if text.count(":") == 2 and "." in text.split(":")[0] else ("", "", text)
    h, m, s = (int(float(x)) for x in clock.split(":"))
    return (int(days or 0) * 86400) + h * 3600 + m * 60 + s


class ArrRoute:
    """What one site's configuration says: the rule's pattern, conditions, server variables,
    target URL template, and the proxy settings."""

    def __init__(self, rule, proxy: dict[str, str], allowed: set[str]):
        match = first_child(rule, "match")
        self.pattern = re.compile(match.get("url", ".*") if match is not None else ".*",
                                  re.I if (match is None or match.get("ignoreCase", "true") == "true") else 0)
        holder = first_child(rule, "conditions")
        self.conditions = [(c.get("input", ""), re.compile(c.get("pattern", ".*"), re.I if c.get("ignoreCase", "true") == "true" else 0),
                            c.get("negate", "false") == "true")
                           for c in (real_children(holder) if holder is not None else []) if c.tag == "add"]
        holder = first_child(rule, "serverVariables")
        self.variables = [(s.get("name", ""), s.get("value", "")) for s in (real_children(holder) if holder is not None else []) if s.tag == "set"]
        action = first_child(rule, "action")
        self.url = action.get("url", "")
        self.append_query = action.get("appendQueryString", "true") == "true"
        self.enabled = proxy.get("enabled", "false") == "true"
        self.timeout = _timespan(proxy.get("timeout"))
        self.preserve_host = proxy.get("preserveHostHeader", "false") == "true"
        self.port_in_xff = proxy.get("includePortInXForwardedFor", "true") == "true"
        self.allowed = allowed


def read_route(host: "SimHost", site: str) -> ArrRoute | None:
    """The ARR route of ``site`` from the current applicationHost.config, or ``None`` when the
    site has no rewrite rule to an ``http://`` URL (it is then not proxied by ARR)."""

    config = load_config(host)
    if config is None or not config.is_registered(RULES):
        return None
    try:
        rules = config.section_element(RULES, site)
    except Exception:  # noqa: BLE001 - an unreadable location is "no route"
        return None
    for rule in real_children(rules) if rules is not None else []:
        action = first_child(rule, "action")
        if (rule.tag == "rule" and rule.get("enabled", "true") == "true" and action is not None
                and action.get("type") == "Rewrite" and action.get("url", "").lower().startswith("http://")):
            proxy = config.section_element(PROXY) if config.is_registered(PROXY) else None
            allowed_holder = config.section_element(ALLOWED)
            allowed = {a.get("name", "").upper() for a in (real_children(allowed_holder) if allowed_holder is not None else []) if a.tag == "add"}
            return ArrRoute(rule, dict(proxy.attrib) if proxy is not None else {}, allowed)
    return None


class _Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: "SimHost", site: str):
        self.host, self.site = host, site
        self._cache: tuple[int, ArrRoute | None] | None = None
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _FrontHandler)

    def route(self) -> ArrRoute | None:
        try:
            stamp = config_file(self.host).stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            if self._cache is None or self._cache[0] != stamp:
                with self.host.lock:
                    self._cache = (stamp, read_route(self.host, self.site))
            return self._cache[1]

    def handle_error(self, request, client_address):
        """A client gone mid-request is not worth a traceback."""


def _expand(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m.group(1).upper(), ""), text)


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Front

    def log_message(self, format, *args):  # noqa: A002 - quiet test double
        pass

    def _answer(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        send_answer(self, status, reason, headers, body)

    def _error(self, error: HttpError) -> None:
        self._answer(error.status, error.reason, [("Content-Type", "text/html")], f"<h1>{error.status} {error.reason}</h1><p>{error.detail}</p>".encode())

    def _proxy(self) -> None:
        try:
            self._forward(self.server.route())
        except HttpError as error:
            self._error(error)

    def _forward(self, route: ArrRoute | None) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if route is None:
            raise HttpError(404, "Not Found", "no rewrite rule for this site")
        if not route.enabled:
            raise HttpError(404, "Not Found", "the rewrite target is on another server and ARR's proxy is not enabled")
        path, _, query = self.path.partition("?")
        scheme = (self.headers.get("X-Forwarded-Proto") or "http").lower()
        match = route.pattern.search(path.lstrip("/"))
        if match is None:
            raise HttpError(404, "Not Found", "the rewrite rule does not match this URL")
        values = {f"R:{i}": g or "" for i, g in enumerate([match.group(0), *match.groups()])}
        values.update({f"HTTP_{n.upper().replace('-', '_')}": v for n, v in self.headers.items()})
        values.update({"HTTPS": "on" if scheme == "https" else "off", "HTTP_HOST": self.headers.get("Host", ""),
                       "REQUEST_URI": self.path, "CACHE_URL": f"{scheme}://{self.headers.get('Host', '')}{self.path}",
                       "QUERY_STRING": query})
        for source, pattern, negate in route.conditions:
            found = pattern.search(_expand(source, values))
            if bool(found) == negate:
                raise HttpError(404, "Not Found", "a condition of the rewrite rule does not match")
            if found:
                values.update({f"C:{i}": g or "" for i, g in enumerate([found.group(0), *found.groups()])})
        headers = [(n, v) for n, v in self.headers.items() if n.lower() not in _HOP_BY_HOP and n.lower() != "x-forwarded-proto"]
        for name, value in route.variables:
            if name.upper() not in route.allowed:
                raise HttpError(500, "URL Rewrite Module Error", f"500.50: the server variable \"{name}\" is not allowed to be set")
            if name.upper().startswith("HTTP_"):
                header = "-".join(part.capitalize() for part in name[5:].split("_"))
                headers = [(n, v) for n, v in headers if n.lower() != header.lower()] + [(header, _expand(value, values))]
        if not route.port_in_xff:
            headers = [(n, ", ".join(_strip_port(p.strip()) for p in v.split(",")) if n.lower() == "x-forwarded-for" else v) for n, v in headers]
        target = urlsplit(_expand(route.url, values))
        if target.hostname not in ("127.0.0.1", "localhost"):
            raise HttpError(502, "Bad Gateway", f"502.3: the simulator proxies to the host's loopback only, not {target.hostname}")
        from ..functions.services import autostart, local_port

        port = local_port(self.server.host, target.port or 80)
        if port is None:
            autostart(self.server.host)
            port = local_port(self.server.host, target.port or 80)
        if port is None:
            raise HttpError(502, "Bad Gateway", f"502.3: the connection to {target.netloc} failed (nothing listens there)")
        if not route.preserve_host:
            headers = [(n, v) for n, v in headers if n.lower() != "host"] + [("Host", target.netloc)]
        url = target.path or "/"
        if route.append_query and query:
            url += ("&" if target.query else "?") + query
        elif target.query:
            url += "?" + target.query
        self._relay(port, url, headers, body, route.timeout)

    def _relay(self, port: int, url: str, headers: list[tuple[str, str]], body: bytes, timeout: float) -> None:
        response, data = relay(self.command, port, url, headers, body, timeout,
                               f"the operation timed out (ARR proxy timeout {timeout:g} s)", "the connection to the backend failed")
        self._answer(response.status, response.reason,
                     [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP and n.lower() not in ("server", "date")], data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


def _strip_port(address: str) -> str:
    if address.startswith("["):
        return address.split("]")[0] + "]"
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


_FRONTS: dict[tuple[Any, str], _Front] = {}
_FRONTS_LOCK = threading.Lock()


def has_route(host: "SimHost", site: str) -> bool:
    """Whether ``site`` is proxied by ARR (a rewrite rule to ``http://`` under its location)."""

    with host.lock:
        return read_route(host, site) is not None


def resolve(host: "SimHost", site: str) -> tuple[int, float] | None:
    """For the binding listener: ``(front port, seconds to wait)`` when ``site`` is proxied by
    ARR (the front is started on first use), else ``None``."""

    key = (host.state_dir, site.casefold())
    with _FRONTS_LOCK:
        front = _FRONTS.get(key)
    if front is None or front.host is not host:
        with host.lock:
            if read_route(host, site) is None:
                return None
        with _FRONTS_LOCK:
            front = _FRONTS.get(key)
            if front is None or front.host is not host:
                if front is not None:
                    close_front(front)
                front = _FRONTS[key] = _Front(host, site)
                threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.2}, name=f"sim-arr-{site}", daemon=True).start()
    route = front.route()
    if route is None:
        return None
    return front.server_address[1], route.timeout + 5.0


def close_front(front: _Front) -> None:
    front.shutdown()
    front.server_close()


def close_all(host: "SimHost") -> None:
    """Close ``host``'s ARR fronts (the simulator stops)."""

    with _FRONTS_LOCK:
        keys = [key for key in _FRONTS if key[0] == host.state_dir]
        fronts = [_FRONTS.pop(key) for key in keys]
    for front in fronts:
        close_front(front)
