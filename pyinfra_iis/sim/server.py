"""The simulated WinRM HTTP listener: ``http://127.0.0.1:PORT/wsman``.

One :class:`SimServer` is one simulated host (its own port, state directory, credentials,
faults and counters); a process may run several. Requests are served by a
``ThreadingHTTPServer`` (a thread per connection, HTTP/1.1 keep-alive, ``TCP_NODELAY`` so
Nagle and delayed ACKs do not add ~40 ms per request; docs/field-facts.md, WinRM).

Besides ``/wsman`` the port serves the simulator's control endpoint (loopback only, no
authentication, it is a test double):

* ``POST /pyinfra-iis-sim/control`` with a JSON body → :meth:`Faults.apply`;
* ``GET /pyinfra-iis-sim/state`` → host name, counters, faults and open shells as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import apps, soap
from .auth import ENCRYPTED_CONTENT_TYPE, Authenticator, AuthError, ConnectionAuth, EncryptionError
from .faults import DropConnection, Faults
from .host import SimHost
from .shell import ShellManager, sleep_latency
from .soap import SoapError

CONTROL_PATH = "/pyinfra-iis-sim/control"
STATE_PATH = "/pyinfra-iis-sim/state"

#: Bodies larger than this are not even read: the connection is closed (bytes).
HARD_BODY_LIMIT = 64 * 1024 * 1024

#: MaxEnvelopeSizekb of a Windows Server 2012+ host; 150 on Server 2008 R2 (docs/field-facts.md).
DEFAULT_MAX_ENVELOPE_KB = 500


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: "SimServer"):
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; with TLS the handshake runs here, in the connection's own
        thread, so a client that never completes it holds only its thread (bounded by a
        timeout), never the accept loop."""

        context = self.sim.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a failed handshake (unknown CA on the client, wrong name, plain HTTP): close
        tls.settimeout(None)
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _Listener

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.auth_state = ConnectionAuth()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test double
        pass

    # --- plumbing ---------------------------------------------------------------------

    def _reply(self, status: int, body: bytes = b"", content_type: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 f"Server: {self.server_version}", f"Content-Length: {len(body)}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        for name, value in extra or ():
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)
        self.server.sim.host.count("bytes_out", len(body))

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > HARD_BODY_LIMIT:
            self.close_connection = True
            self._reply(413)
            return None
        return self.rfile.read(length) if length else b""

    def _unauthorized(self) -> None:
        offers = [("WWW-Authenticate", value) for value in self.server.sim.auth.offers()]
        self._reply(401, extra=offers)

    # --- HTTP verbs -------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.split("?")[0] == STATE_PATH:
            body = json.dumps(self.server.sim.describe(), indent=2).encode("utf-8")
            self._reply(200, body, "application/json")
        else:
            self._reply(404)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        path = self.path.split("?")[0]
        body = self._read_body()
        if body is None:
            return
        if path == CONTROL_PATH:
            self._control(body)
        elif path.lower() == "/wsman":
            self._wsman(body)
        else:
            self._reply(404)

    def _control(self, body: bytes) -> None:
        try:
            control = json.loads(body or b"{}")
            if not isinstance(control, dict):
                raise ValueError("the control body must be a JSON object")
            result = self.server.sim.faults.apply(control)
        except ValueError as exc:
            self._reply(400, json.dumps({"error": str(exc)}).encode("utf-8"), "application/json")
            return
        self._reply(200, json.dumps(result).encode("utf-8"), "application/json")

    def _wsman(self, body: bytes) -> None:
        sim = self.server.sim
        host = sim.host
        host.count("http_requests")
        host.count("bytes_in", len(body))
        if sim.faults.should_drop():
            self._drop()
            return
        sleep_latency(sim.faults.latency)
        if not self._authenticate():
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.lower().startswith("multipart/encrypted")
        if encrypted:
            try:
                body = sim.auth.unwrap(self.auth_state, body)
            except EncryptionError:
                self._reply(400)
                return
        elif body and self.auth_state.user and not sim.auth.allow_unencrypted and sim.ssl_context is None:
            # NTLM-authenticated connection sending plain text to a host that refuses
            # unencrypted traffic.
            self._unauthorized()
            return
        if not body:
            self._reply(200)  # an authentication-only request (pywinrm/pypsrp send one)
            return
        if len(body) > sim.max_envelope_kb * 1024:
            # Windows answers an envelope above MaxEnvelopeSizekb with HTTP 413 (clients report
            # "Bad HTTP response returned from server. Code 413", ansible.windows #391, #620;
            # WinRM's own client turns it into 0x80338111 / 2150859025
            # ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS). The body Windows sends with it is not
            # in our references: the simulator sends none.
            self._reply(413)
            return
        try:
            status, response = sim.dispatch(body, self.client_address[0])
        except DropConnection:  # fault injection at a worker step (Faults.at_step)
            self._drop()
            return
        if encrypted:
            self._reply(status, sim.auth.wrap(self.auth_state, response), ENCRYPTED_CONTENT_TYPE)
        else:
            self._reply(status, response, "application/soap+xml;charset=UTF-8")

    def _drop(self) -> None:
        """Close this connection without a response (fault injection)."""

        self.server.sim.host.count("dropped")
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authenticate(self) -> bool:
        """True when the request may proceed; otherwise a 401 has been sent."""

        sim = self.server.sim
        header = self.headers.get("Authorization")
        if not header:
            if self.auth_state.user:
                return True
            self._unauthorized()
            return False
        scheme, _, token = header.strip().partition(" ")
        scheme_l = scheme.lower()
        try:
            if scheme_l == "basic":
                sim.auth.check_basic(token.strip(), secure=sim.ssl_context is not None)
                return True
            if scheme_l in ("negotiate", "ntlm"):
                try:
                    raw = base64.b64decode(token.strip(), validate=True)
                except (binascii.Error, ValueError):
                    raise AuthError("malformed token") from None
                out = sim.auth.step_ntlm(self.auth_state, raw)
                if out is None:
                    return True
                challenge = base64.b64encode(out).decode("ascii")
                self._reply(401, extra=[("WWW-Authenticate", f"{scheme} {challenge}")])
                return False
            raise AuthError(f"unsupported scheme {scheme}")
        except AuthError:
            self.auth_state = ConnectionAuth()
            self._unauthorized()
            return False


class SimServer:
    """A simulated Windows Server 2022 host reachable over WinRM on 127.0.0.1.

    Args:
        state_dir: the host's state directory (see :class:`SimHost`); a restarted server on
            the same folder is the same host.
        user / password: the administrator account clients log in with; ``password=None``
            generates a random one (``sim.password``).
        port: TCP port on 127.0.0.1; 0 picks a free one (``sim.port`` after :meth:`start`).
        allow_unencrypted: accept Basic auth and plain bodies over HTTP (Windows default:
            False, the ``AllowUnencrypted`` setting).
        max_envelope_kb: the host's MaxEnvelopeSizekb (500 default, 150 for an old host).
        hostname: name of a fresh host (default derived from ``state_dir``).
        allow_basic / allow_ntlm: authentication schemes offered.
        ssl_context: a server-side :class:`ssl.SSLContext` (certificate and key loaded): the
            listener then serves HTTPS, as a host with an HTTPS listener on 5986 does; bodies
            over TLS need no message encryption and Basic is allowed.

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, state_dir: str | os.PathLike[str], user: str = "admin", password: str | None = None,
                 port: int = 0, allow_unencrypted: bool = False, max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB,
                 hostname: str | None = None, allow_basic: bool = True, allow_ntlm: bool = True,
                 ssl_context: ssl.SSLContext | None = None):
        self.ssl_context = ssl_context
        self.state_dir = Path(state_dir)
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.requested_port = port
        self.max_envelope_kb = int(max_envelope_kb)
        self.host = SimHost(self.state_dir, user=user, hostname=hostname)
        self.faults = Faults()
        self.shells = ShellManager(self.host, self.faults)
        self.faults.on_kill_worker = self.shells.kill_workers
        self.faults.on_restart = self.restart
        self.auth = Authenticator(user, self.password, self.host.hostname, allow_unencrypted=allow_unencrypted,
                                  allow_basic=allow_basic, allow_ntlm=allow_ntlm)
        self._listener: _Listener | None = None
        self._thread: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> "SimServer":
        """Bind 127.0.0.1:port and serve in background threads; returns self."""

        if self._listener is not None:
            return self
        self._stopping.clear()
        self._listener = _Listener(("127.0.0.1", self.requested_port), self)
        self._thread = threading.Thread(target=self._listener.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"sim-{self.host.hostname}", daemon=True)
        self._thread.start()
        self._saver = threading.Thread(target=self._save_loop, name=f"sim-save-{self.host.hostname}", daemon=True)
        self._saver.start()
        apps.attach(self.host)  # started sites with an HttpPlatformHandler app come up (sim/apps)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, end every process and save the host."""

        listener = self._listener
        if listener is None:
            return
        self._stopping.set()
        listener.shutdown()
        listener.server_close()
        with listener.connections_lock:
            connections = list(listener.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.shells.drop_all()
        apps.detach(self.host)  # binding listeners closed, app processes killed
        _stop_services(self.host)  # ARR mode: service processes killed, ARR fronts closed
        if self._thread:
            self._thread.join(timeout=5)
        if self._saver:
            self._saver.join(timeout=5)
        self._listener = None
        self.host.save()

    def close(self) -> None:
        """Stop and remove the temporary credential file."""

        self.stop()
        self.auth.close()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def restart(self) -> None:
        """Simulate a restart of the WinRM service: every shell (and process) is lost."""

        self.shells.drop_all()

    def _save_loop(self) -> None:
        while not self._stopping.wait(0.5):
            self.host.save_if_dirty()

    # --- properties -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""

        if self._listener is None:
            raise RuntimeError("the simulator is not started")
        return self._listener.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/wsman`` (``https://`` with TLS)."""

        return f"{self.scheme}://127.0.0.1:{self.port}/wsman"

    @property
    def scheme(self) -> str:
        """``https`` when the listener serves TLS, else ``http``."""

        return "https" if self.ssl_context is not None else "http"

    @property
    def control_url(self) -> str:
        """URL of the control endpoint."""

        return f"{self.scheme}://127.0.0.1:{self.port}{CONTROL_PATH}"

    def describe(self) -> dict[str, Any]:
        """Host name, counters, faults, shells and state file location, as JSON data."""

        return {"hostname": self.host.hostname, "url": self.url if self._listener else None,
                "counters": self.host.counters, "faults": self.faults.as_dict(),
                "shells": self.shells.summary(), "max_envelope_kb": self.max_envelope_kb,
                "state_dir": str(self.host.state_dir)}

    # --- dispatch ---------------------------------------------------------------------

    def dispatch(self, body: bytes, client_ip: str) -> tuple[int, bytes]:
        """Answer one SOAP request; returns ``(HTTP status, envelope)`` (500 for a fault)."""

        relates_to = ""
        try:
            request = soap.parse_request(body)
            relates_to = request.message_id
            return 200, self._action(request, client_ip)
        except SoapError as error:
            self.host.count("faults")
            return 500, soap.fault_response(relates_to, error, self.host.hostname)

    def _action(self, request: soap.Request, client_ip: str) -> bytes:
        action = request.action
        shells = self.shells
        if action == soap.ACTION_RECEIVE:
            return shells.receive(request)
        if action == soap.ACTION_SEND:
            return shells.send(request)
        if action == soap.ACTION_COMMAND:
            return shells.command(request)
        if action == soap.ACTION_SIGNAL:
            return shells.signal(request)
        if action == soap.ACTION_CREATE:
            return shells.create(request, self.url, client_ip, self.user)
        if action == soap.ACTION_DELETE:
            return shells.delete(request)
        if action == soap.ACTION_GET and request.resource_uri.rstrip("/").lower() == soap.CONFIG_RESOURCE_URI:
            return soap.config_response(request, self.max_envelope_kb)
        raise SoapError(soap.ERROR_WSMAN_INVALID_ACTIONURI, "w:ActionNotSupported",
                        "The WS-Management service cannot process the request. The WS-Addressing action URI is invalid.",
                        f"not supported by the simulator: action {action} on {request.resource_uri}")


def _stop_services(host) -> None:
    """The ARR mode's service processes and proxy fronts of ``host`` end with the simulator
    (``sim/functions/services.py``, ``sim/apps/arr_proxy.py``)."""

    from .apps import arr_proxy
    from .functions import services

    services.stop_all(host)
    arr_proxy.close_all(host)
