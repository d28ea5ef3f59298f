"""Each binding of a served site on its own loopback port, forwarding to the app like
HttpPlatformHandler (HPH) does.

A binding ``https *:443:api.example.com`` of the simulated host is served on
``127.0.0.1:<port>`` (a port per binding, kept in the host state so it stays the same across
restarts when free). ``https`` bindings terminate TLS with the certificate HTTP.sys holds for
the binding's endpoint (``host.state["http_sys"]["sslcert"]``, filled only by
``Set-IisSslBinding``) and its private key from the simulated certificate store, looked up per
connection (:func:`http_sys_tls`): an https binding that exists only in applicationHost.config
has no HTTP.sys SSL binding, and its connections are reset, as HTTP.sys does. Each request is forwarded to the app process over
HTTP/1.1 on 127.0.0.1 with ``Host`` kept, ``X-Forwarded-For`` (the client address and port, as
HttpPlatformHandler sends it, appended to an existing value) and ``X-Forwarded-Proto`` (``http``/``https``) set, as HPH does (docs/field-facts.md).

Answers the simulator gives itself, with IIS's status codes:

* 400 "Bad Request - Invalid Hostname": the binding has a host name and ``Host`` differs (http.sys,
  when no other binding takes the request; here each binding has its own port);
* 500.19: web.config is unreadable / ``<httpPlatform>`` unusable, or the httpPlatformHandler
  global module is missing (the section is unknown);
* 502.3: the app process cannot be started, refused the connection, or did not answer within
  ``requestTimeout`` (HPH's "Bad Gateway");
* 503: the application pool is stopped.

Threads are bounded: at most :data:`MAX_CONNECTIONS` connections are served at once per
binding (one thread each); more wait up to :data:`ACCEPT_WAIT_SECONDS`, then are closed.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

MAX_CONNECTIONS = 16
ACCEPT_WAIT_SECONDS = 5.0
#: Seconds an idle keep-alive connection is kept (IIS's connectionTimeout default is 120 s;
#: shorter here so that a stopped simulator does not wait on idle clients).
IDLE_TIMEOUT_SECONDS = 30.0
#: Largest request body accepted (bytes): requestFiltering's maxAllowedContentLength default.
MAX_BODY_BYTES = 30_000_000

_BINDING_RE = re.compile(r"^(?P<ip>\*|\[[^\]]*\]|[^:]*):(?P<port>\d+):(?P<host>.*)$")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "trailers", "transfer-encoding", "upgrade", "proxy-connection"})


class HttpError(Exception):
    """An answer the web server gives itself: ``status``, ``reason`` and an HTML-ish ``detail``."""

    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(f"{status} {reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


def send_answer(handler: BaseHTTPRequestHandler, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
    """Write one whole answer on ``handler`` (a Content-Length, no body for HEAD)."""

    handler.send_response(status, reason)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def relay(command: str, port: int, url: str, headers: list[tuple[str, str]], body: bytes, timeout: float,
          timed_out: str, failed: str) -> tuple[http.client.HTTPResponse, bytes]:
    """Send one request to ``127.0.0.1:port`` as a reverse proxy does (no Host or
    Accept-Encoding of its own, ``headers`` as given, a Content-Length for a body) and read the
    whole answer: ``(response, body)``.

    Raises:
        HttpError: 502.3 with ``timed_out`` when no answer came within ``timeout`` seconds, or
            with ``failed`` and the error's name when the connection failed.
    """

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(command, url, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body or command in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response, response.read()
    except socket.timeout:
        raise HttpError(502, "Bad Gateway", f"502.3: {timed_out}") from None
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise HttpError(502, "Bad Gateway", f"502.3: {failed} ({type(exc).__name__})") from None
    finally:
        connection.close()


@dataclass(frozen=True)
class Binding:
    """A site binding: ``protocol`` (http/https), and ``bindingInformation`` split into
    ``ip`` (``*`` for all), ``port`` and ``host`` (empty: any host name)."""

    protocol: str
    information: str
    ip: str
    port: int
    host: str

    @classmethod
    def parse(cls, protocol: str, information: str) -> "Binding":
        """Parse ``IP:PORT:HOST`` (IIS's bindingInformation). Raises ValueError when malformed."""

        match = _BINDING_RE.match(information)
        if not match:
            raise ValueError(f"bindingInformation {information!r} is not IP:PORT:HOSTNAME")
        return cls(protocol.lower(), information, match.group("ip"), int(match.group("port")), match.group("host"))

    @property
    def key(self) -> str:
        """``protocol|bindingInformation`` (case-folded)."""

        return f"{self.protocol}|{self.information}".casefold()


#: ``resolve()`` → ``(app port, requestTimeout seconds)`` or ``(port, timeout, done)`` where
#: ``done()`` is called once the request is over (the manager counts a worker process's requests
#: in flight with it); raises :class:`HttpError` for an answer of IIS's own.
Resolver = Callable[[], tuple]


#: Per connection → the TLS context of the binding's HTTP.sys SSL binding, or ``None`` (reset).
TlsLookup = Callable[[], Union[ssl.SSLContext, None]]


def http_sys_tls(host: "SimHost", site: str, binding: Binding) -> TlsLookup:
    """Return a :data:`TlsLookup` for an https binding of ``site``: the endpoint is computed from
    the committed ``<binding>`` (sslFlags decides hostnameport or ipport), its certificate comes
    from HTTP.sys's table, never from a configuration attribute. Contexts are cached per
    certificate."""

    from ...iis.appconfig import binding_endpoint, real_children
    from ..iis.store import config_file, load_config, site_elements, sslcert_bindings
    from .tls import TlsError, server_context

    cache: dict[tuple[str, str], ssl.SSLContext] = {}
    endpoints: dict[int, str | None] = {}  # config file mtime -> the binding's endpoint

    def endpoint() -> str | None:
        # Call under host.lock: the endpoint of the committed <binding> (re-read when the file changes).
        try:
            stamp = config_file(host).stat().st_mtime_ns
        except OSError:
            return None
        if stamp not in endpoints:
            endpoints.clear()
            endpoints[stamp] = _committed_endpoint(load_config(host))
        return endpoints[stamp]

    def _committed_endpoint(config) -> str | None:
        for element in site_elements(config) if config is not None else []:
            if element.get("name", "").casefold() != site.casefold():
                continue
            for holder in (c for c in real_children(element) if c.tag == "bindings"):
                for item in real_children(holder):
                    if (item.tag == "binding" and item.get("protocol", "").casefold() == binding.protocol
                            and item.get("bindingInformation", "").casefold() == binding.information.casefold()):
                        return binding_endpoint(item)
        return None

    def lookup() -> ssl.SSLContext | None:
        with host.lock:
            found = endpoint()
            entry = dict(sslcert_bindings(host).get(found, {})) or None if found else None
        if entry is None:
            return None
        key = (entry["certificateHash"].upper(), entry.get("certificateStoreName") or "My")
        if key not in cache:
            try:
                cache[key] = server_context(host, *key)
            except TlsError:
                return None
        return cache[key]

    return lookup


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, binding: Binding, resolve: Resolver, tls: ssl.SSLContext | TlsLookup | None):
        self.binding, self.resolve, self.tls = binding, resolve, tls
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _ProxyHandler)

    def handle_error(self, request, client_address):
        """A client that went away mid-request (reset, TLS EOF) is not worth a traceback."""

    def process_request(self, request, client_address):
        if not self.slots.acquire(timeout=ACCEPT_WAIT_SECONDS):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            if self.tls is not None:
                context = self.tls() if callable(self.tls) else self.tls
                if context is None:  # no HTTP.sys SSL binding: the handshake is reset
                    self.shutdown_request(request)
                    return
                request.settimeout(IDLE_TIMEOUT_SECONDS)
                try:
                    request = context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    server: _ProxyServer

    def log_message(self, format, *args):  # noqa: A002 - quiet test double
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        send_answer(self, status, reason, headers, body)

    def _error(self, error: HttpError) -> None:
        body = f"<h1>HTTP Error {error.status} - {error.reason}</h1>\r\n<p>{error.detail}</p>\r\n".encode("utf-8")
        self._send(error.status, error.reason, [("Content-Type", "text/html; charset=utf-8")], body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > MAX_BODY_BYTES:
                    raise HttpError(413, "Request Entity Too Large", "the body exceeds maxAllowedContentLength")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "Request Entity Too Large", "the body exceeds maxAllowedContentLength")
        return self.rfile.read(length) if length else b""

    def _check_host(self) -> None:
        wanted = self.server.binding.host
        if not wanted:
            return
        given = (self.headers.get("Host") or "").strip()
        if given.startswith("["):
            given = given.split("]")[0] + "]"
        else:
            given = given.rsplit(":", 1)[0] if given.count(":") == 1 else given
        if given.casefold() != wanted.casefold():
            raise HttpError(400, "Bad Request - Invalid Hostname", "The request hostname is invalid.")

    def _forward_headers(self) -> list[tuple[str, str]]:
        named = {v.strip().lower() for v in self.headers.get("Connection", "").split(",")}
        headers = [(n, v) for n, v in self.headers.items()
                   if n.lower() not in _HOP_BY_HOP and n.lower() not in named
                   and n.lower() not in ("content-length", "x-forwarded-proto")]
        # HttpPlatformHandler sends the client's address WITH its port ("203.0.113.5:51234", "[::1]:51234");
        # Uvicorn parses that only from 0.45 (the release build requires it).
        address, port = self.client_address[0], self.client_address[1]
        client = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        forwarded = [v for n, v in headers if n.lower() == "x-forwarded-for"]
        headers = [(n, v) for n, v in headers if n.lower() != "x-forwarded-for"]
        headers.append(("X-Forwarded-For", ", ".join([*forwarded, client])))
        headers.append(("X-Forwarded-Proto", self.server.binding.protocol))
        return headers

    def _proxy(self) -> None:
        try:
            self._check_host()
            body = self._read_body()
            resolved = self.server.resolve()
            port, request_timeout = resolved[0], resolved[1]
            try:
                self._relay(port, request_timeout, body)
            finally:
                if len(resolved) > 2:
                    resolved[2]()
        except HttpError as error:
            self._error(error)

    def _relay(self, port: int, request_timeout: float, body: bytes) -> None:
        response, data = relay(self.command, port, self.path, self._forward_headers(), body, request_timeout,
                               f"the app did not answer within requestTimeout ({request_timeout:g} s)", "the connection to the app failed")
        headers = [(n, v) for n, v in response.getheaders()
                   if n.lower() not in _HOP_BY_HOP and n.lower() not in ("content-length", "server", "date")]
        self._send(response.status, response.reason, headers, data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


class BindingListener:
    """Serve ``binding`` on ``127.0.0.1:port`` in a background thread.

    Args:
        binding: the site binding served.
        port: loopback port to bind; 0 or a busy port → a free one (see :attr:`port`).
        resolve: called per request → ``(app port, requestTimeout seconds)``, or raises
            :class:`HttpError` for IIS's own answer.
        tls: for https bindings, a server-side TLS context or a :data:`TlsLookup` asked per
            connection (:func:`http_sys_tls`); ``None`` for http.
    """

    def __init__(self, binding: Binding, port: int, resolve: Resolver, tls: ssl.SSLContext | TlsLookup | None = None):
        self.binding = binding
        try:
            self._server = _ProxyServer(("127.0.0.1", port), binding, resolve, tls)
        except OSError:
            self._server = _ProxyServer(("127.0.0.1", 0), binding, resolve, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"sim-binding-{binding.information}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The loopback port actually bound."""

        return self._server.server_address[1]

    @property
    def tls(self) -> bool:
        """Whether TLS is terminated here."""

        return self._server.tls is not None

    def close(self) -> None:
        """Stop serving and release the port (idle keep-alive threads end within their timeout)."""

        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
