"""A WinRS shell client over pywinrm's ``winrm.protocol.Protocol``.

Layering follows pypsrp (wsman → shell → client) but SOAP, HTTP and authentication stay in
pywinrm: this module only sequences the WinRS actions (Create, Command, Send, Receive,
Signal, Delete) and turns pywinrm/requests exceptions into :mod:`.errors` classes.

Facts relied on (``docs/field-facts.md``, "WinRM / WinRS"):

* ``open_shell(codepage=65001, noprofile=True)``: UTF-8 console, no user profile.
* ``run_command(..., console_mode_stdin=False, skip_cmd_shell=True)``: no cmd.exe, so the
  CreateProcess limit (32767 chars) applies, and the executable must be a full path.
* ``send_command_input`` encodes a ``str`` as cp437: :meth:`WinRSShell.send` takes bytes only.
* ``get_command_output_raw`` is one Receive; ``WinRMOperationTimeoutError`` means "no output
  yet" (WSMan fault 2150858793), not a failure.
* WSMan fault 2150858843: unknown shell or command id → the shell is lost.
* Windows error 232 ("The pipe is being closed") on Send: the process exited → new process.
* WMI error 0x803381A6 (operation quota exceeded) → rebuild the shell (as Ansible does).
* error 170 (busy) → retried 3 times with 5 s pauses (as Ansible does).
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TypeVar

import requests
import xmltodict
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from .errors import (
    AuthenticationFailed,
    ConnectionDropped,
    HostUnreachable,
    HttpError,
    ShellLost,
    TlsRejected,
    TransportError,
    WorkerDied,
    WSManFault,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: WSManFault code of an operation timeout (Receive with no output yet).
FAULT_OPERATION_TIMEOUT = 2150858793
#: WSManFault code of an unknown shell or command id.
FAULT_UNKNOWN_SHELL = 2150858843
#: WMI error 0x803381A6: operation quota exceeded; the shell must be rebuilt.
FAULT_QUOTA_EXCEEDED = 0x803381A6
#: Windows errors 232 ERROR_NO_DATA ("The pipe is being closed") and 109 ERROR_BROKEN_PIPE:
#: a Send to a process that has exited; the shell is fine, the process is gone.
FAULT_PIPE_CLOSED = (232, 109)
#: Windows error 170, ERROR_BUSY ("The requested resource is in use").
FAULT_BUSY = 170
#: Windows errors 995 ERROR_OPERATION_ABORTED and 1726 RPC_S_CALL_FAILED: the shell's host
#: process is gone (service restart, the shell was ended); the shell must be rebuilt.
FAULT_SHELL_GONE = (995, 1726)
#: Windows error 1460 ERROR_TIMEOUT: on a Send, the process has not read its stdin in time.
FAULT_TIMEOUT = 1460
#: HTTP 400 right after an idle gap, NTLM over HTTP: re-authentication re-sent a body sealed
#: with the old key (diyan/pywinrm#377); a new HTTP session fixes it.
HTTP_BAD_REQUEST = 400
#: HTTP 413: the request is larger than the host's MaxEnvelopeSizekb.
HTTP_TOO_LARGE = 413

FAULT_TIMEOUT_TEXT = "(Windows error 1460)"

SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_DATA_PLACEHOLDER = "@@pyinfra-iis-stdin@@"
SIGNAL_TERMINATE = SHELL_URI + "/signal/terminate"
SIGNAL_CTRL_C = SHELL_URI + "/signal/ctrl_c"


@dataclass
class ReceiveResult:
    """What one Receive returned.

    Attributes:
        stdout: bytes of stdout (may end mid-line or mid-character).
        stderr: bytes of stderr.
        done: the command has ended (CommandState Done).
        exit_code: the command's exit code when ``done``, else None.
    """

    stdout: bytes = b""
    stderr: bytes = b""
    done: bool = False
    exit_code: int | None = None


def classify(exc: BaseException, endpoint: str = "the host", connected: bool = True) -> TransportError | None:
    """Return the project exception for a pywinrm/requests exception.

    Args:
        exc: the exception raised by pywinrm's ``Protocol`` or requests.
        endpoint: shown in the message (never holds credentials).
        connected: whether the shell was already open; a connection error before that is
            :class:`HostUnreachable`, after it :class:`ConnectionDropped`.

    Returns:
        an instance of a :class:`TransportError` subclass (not raised), or None for an
        exception that is not a transport failure (a programming error: re-raise it).
    """

    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, InvalidCredentialsError):
        return AuthenticationFailed(f"{endpoint}: the credentials were rejected (HTTP 401)")
    if isinstance(exc, WSManFaultError):
        codes = {exc.wsman_fault_code, exc.wmierror_code}
        reason = (exc.reason or "").strip()
        if codes & set(FAULT_SHELL_GONE):
            return ShellLost(f"{endpoint}: the shell is gone (Windows error {sorted(codes & set(FAULT_SHELL_GONE))[0]}): {reason}")
        if FAULT_TIMEOUT in codes:
            return ConnectionDropped(f"{endpoint}: the host timed out the request (Windows error 1460): {reason}")
        if FAULT_UNKNOWN_SHELL in codes:
            return ShellLost(f"{endpoint}: the shell or command is gone (WSMan fault {FAULT_UNKNOWN_SHELL}): {reason}")
        if codes & set(FAULT_PIPE_CLOSED):
            return WorkerDied(f"{endpoint}: the process has exited (WSMan fault {exc.wsman_fault_code}): {reason}")
        if FAULT_QUOTA_EXCEEDED in codes:
            return ShellLost(f"{endpoint}: operation quota exceeded (0x803381A6), the shell must be rebuilt: {reason}")
        if FAULT_OPERATION_TIMEOUT in codes:
            return ConnectionDropped(f"{endpoint}: WSMan operation timeout ({FAULT_OPERATION_TIMEOUT}): {reason}")
        return WSManFault(
            f"{endpoint}: WSMan fault {exc.wsman_fault_code} (WMI {exc.wmierror_code}): {reason}",
            wsman_code=exc.wsman_fault_code,
            wmi_code=exc.wmierror_code,
            reason=reason,
        )
    if isinstance(exc, WinRMOperationTimeoutError):
        return ConnectionDropped(f"{endpoint}: WSMan operation timeout ({FAULT_OPERATION_TIMEOUT})")
    if isinstance(exc, WinRMTransportError) and exc.code == HTTP_BAD_REQUEST:
        return ConnectionDropped(f"{endpoint}: HTTP 400 from the WinRM service (after an idle gap NTLM over HTTP "
                                 "re-authenticates with a stale key, pywinrm#377); reconnecting")
    if isinstance(exc, WinRMTransportError) and exc.code == HTTP_TOO_LARGE:
        return HttpError(f"{endpoint}: the host refused a request as too large (HTTP 413): set winrm_max_envelope_kb "
                         "to the host's MaxEnvelopeSizekb (winrm get winrm/config)")
    if isinstance(exc, WinRMTransportError):
        return HttpError(f"{endpoint}: unexpected HTTP status {exc.code} from the WinRM service")
    if isinstance(exc, requests.exceptions.SSLError):
        return TlsRejected(f"{endpoint}: TLS failed: {_tls_reason(exc)}: trust the host's CA with winrm_ca_trust_path "
                           "(a PEM file) and connect by a name its certificate holds")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return ConnectionDropped(f"{endpoint}: no answer within the read timeout")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, ConnectionError)):
        if connected:
            return ConnectionDropped(f"{endpoint}: the connection was dropped ({type(exc).__name__})")
        return HostUnreachable(f"{endpoint}: cannot connect ({type(exc).__name__})")
    if isinstance(exc, WinRMError):
        # pywinrm raises a bare WinRMError for configuration problems (e.g. bad timeouts,
        # encryption "always" without support); its messages hold no secrets.
        return TransportError(f"{endpoint}: {exc}")
    return None


_TLS_REASON = re.compile(r"(certificate verify failed: [^(]*?|\[SSL: [A-Z_]+\][^(]*?)\s*\.?\s*\(_ssl\.c")


def _tls_reason(exc: BaseException) -> str:
    """The OpenSSL reason inside a requests ``SSLError``, on one line (e.g. ``certificate
    verify failed: unable to get local issuer certificate``)."""

    match = _TLS_REASON.search(str(exc))
    if match:
        return match.group(1).strip().rstrip(".")
    return "the TLS handshake failed"


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, WSManFaultError) and FAULT_BUSY in (exc.wsman_fault_code, exc.wmierror_code)


class WinRSShell:
    """One WinRS shell on one host, and the commands started in it.

    Args:
        protocol: a ready ``winrm.protocol.Protocol`` (endpoint, auth and timeouts set).
        codepage: console code page of the shell; 65001 (UTF-8) by default.
        noprofile: do not load the user profile (default True: faster, deterministic).
        env: environment variables of the shell (name → value), or None.
        working_directory: initial directory of the shell, or None.
        busy_retries: how many times a call answered with error 170 (busy) is retried (3).
        busy_pause: seconds between those retries (5.0, from Ansible; tests pass 0).
        endpoint: label used in error messages (defaults to the protocol's endpoint URL).
        idle_timeout: seconds the host keeps the shell without requests (600, not WinRM's
            2 h default: a leaked shell counts against MaxShellsPerUser, 30, until then).

    Every method raises a :class:`~.errors.TransportError` subclass on failure.
    """

    def __init__(
        self,
        protocol: Protocol,
        *,
        codepage: int = 65001,
        noprofile: bool = True,
        env: Mapping[str, str] | None = None,
        working_directory: str | None = None,
        busy_retries: int = 3,
        busy_pause: float = 5.0,
        endpoint: str | None = None,
        idle_timeout: int = 600,
    ):
        self.protocol = protocol
        self.idle_timeout = idle_timeout
        self.codepage = codepage
        self.noprofile = noprofile
        self.env = dict(env) if env else None
        self.working_directory = working_directory
        self.busy_retries = busy_retries
        self.busy_pause = busy_pause
        self.endpoint = endpoint or protocol.transport.endpoint
        self.shell_id: str | None = None

    def __repr__(self) -> str:
        return f"<WinRSShell {self.endpoint} shell={self.shell_id}>"

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, func: Callable[..., T], *args: Any, timeout_ok: bool = False, **kwargs: Any) -> T:
        """Call pywinrm; an operation timeout is raised as is only with ``timeout_ok`` (Send and
        Receive handle it), otherwise classified like any fault (Command, Signal, Delete)."""

        attempt = 0
        while True:
            try:
                return func(*args, **kwargs)
            except WinRMOperationTimeoutError:
                if timeout_ok:
                    raise
                raise ConnectionDropped(f"{self.endpoint}: WSMan operation timeout ({FAULT_OPERATION_TIMEOUT})") from None
            except Exception as exc:  # noqa: BLE001 - classified below
                if _is_busy(exc) and attempt < self.busy_retries:
                    attempt += 1
                    logger.debug("%s: busy (error 170), retry %d/%d in %.1f s", self.endpoint, attempt, self.busy_retries, self.busy_pause)
                    time.sleep(self.busy_pause)
                    continue
                error = classify(exc, self.endpoint, connected=self.shell_id is not None)
                if error is None:
                    raise
                raise error from None

    def _require_shell(self) -> str:
        if self.shell_id is None:
            raise ShellLost(f"{self.endpoint}: no shell is open")
        return self.shell_id

    # -- WinRS actions ----------------------------------------------------------------------

    def open(self) -> str:
        """Create the shell (WinRS Create) and return its id."""

        self.shell_id = None
        self.shell_id = self._call(
            self.protocol.open_shell,
            codepage=self.codepage,
            noprofile=self.noprofile,
            env_vars=self.env,
            working_directory=self.working_directory,
            idle_timeout=f"PT{self.idle_timeout}S" if self.idle_timeout else None,
        )
        logger.debug("%s: shell %s opened", self.endpoint, self.shell_id)
        return self.shell_id

    def run(self, executable: str, arguments: Iterable[str] = (), *, skip_cmd_shell: bool = True, console_mode_stdin: bool = False) -> str:
        """Start ``executable`` with ``arguments`` (WinRS Command); return the command id.

        ``skip_cmd_shell`` (default True) starts the process without cmd.exe: give the full
        path of the executable (docs/field-facts.md).
        """

        return self._call(
            self.protocol.run_command,
            self._require_shell(),
            executable,
            list(arguments),
            console_mode_stdin=console_mode_stdin,
            skip_cmd_shell=skip_cmd_shell,
        )

    def send(self, command_id: str, data: bytes, end: bool = False) -> None:
        """Write ``data`` to the command's stdin (one WinRS Send); ``end`` closes stdin.

        Raises:
            TypeError: ``data`` is not bytes (pywinrm would encode a str as cp437).
        """

        self.send_envelope(self.build_send(command_id, data, end))

    def build_send(self, command_id: str, data: bytes, end: bool = False) -> bytes:
        """Return the SOAP envelope of a Send of ``data`` (not sent yet; see :meth:`send_envelope`).

        Same envelope as pywinrm's ``send_command_input``, but the base64 text (up to ~500 KB)
        is spliced in instead of going through xmltodict's escaping: base64 has no XML
        special character. Building can run in another thread while a request is in flight.

        Raises:
            TypeError: ``data`` is not bytes.
        """

        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("WinRSShell.send takes bytes, never str (pywinrm encodes str as cp437)")
        request = {
            "env:Envelope": self.protocol.build_wsman_header(
                resource_uri=SHELL_URI + "/cmd", action=SHELL_URI + "/Send", shell_id=self._require_shell()
            )
        }
        stream = request["env:Envelope"].setdefault("env:Body", {}).setdefault("rsp:Send", {}).setdefault("rsp:Stream", {})
        stream["@CommandId"] = command_id
        stream["@Name"] = "stdin"
        stream["@End"] = "true" if end else "false"
        stream["@xmlns:rsp"] = SHELL_URI
        stream["#text"] = _DATA_PLACEHOLDER
        head, _, tail = xmltodict.unparse(request).encode("utf-8").partition(_DATA_PLACEHOLDER.encode("ascii"))
        return b"".join((head, base64.b64encode(data), tail))

    def send_envelope(self, envelope: bytes) -> None:
        """Send an envelope made by :meth:`build_send` (one HTTP request)."""

        self._require_shell()
        try:
            self._call(self.protocol.send_message, envelope, timeout_ok=True)
        except WinRMOperationTimeoutError:
            # Fault 2150858793 on a Send: the process has not read its stdin yet; the data is
            # accepted and delivered when it does (Ansible's _winrm_write_stdin; ansible#79016).
            logger.debug("%s: Send answered with an operation timeout: accepted", self.endpoint)
        except ConnectionDropped as exc:
            if FAULT_TIMEOUT_TEXT not in str(exc):
                raise
            logger.debug("%s: Send answered with Windows error 1460: accepted", self.endpoint)

    def receive(self, command_id: str, wait: float | None = None) -> ReceiveResult:
        """Issue one WinRS Receive; an operation timeout returns an empty result (no output yet).

        Args:
            wait: seconds the server may hold the Receive when there is no output; default
                (None) the protocol's ``operation_timeout_sec``; shorter values are sent as
                the request's OperationTimeout (whole seconds, at least 1).
        """

        saved = self.protocol.operation_timeout_sec
        if wait is not None:
            self.protocol.operation_timeout_sec = max(1, min(saved, math.ceil(wait)))
        try:
            stdout, stderr, code, done = self._call(self.protocol.get_command_output_raw, self._require_shell(), command_id, timeout_ok=True)
        except WinRMOperationTimeoutError:
            return ReceiveResult()
        finally:
            self.protocol.operation_timeout_sec = saved
        return ReceiveResult(stdout, stderr, bool(done), code if done else None)

    def signal(self, command_id: str, code: str = SIGNAL_TERMINATE) -> None:
        """Send a WinRS Signal (``SIGNAL_TERMINATE`` by default, or ``SIGNAL_CTRL_C``)."""

        shell_id = self._require_shell()

        def send_signal() -> None:
            request = {
                "env:Envelope": self.protocol.build_wsman_header(
                    resource_uri=SHELL_URI + "/cmd", action=SHELL_URI + "/Signal", shell_id=shell_id, message_id=uuid.uuid4()
                )
            }
            body = request["env:Envelope"].setdefault("env:Body", {}).setdefault("rsp:Signal", {})
            body["@CommandId"] = command_id
            body["rsp:Code"] = code
            ET.fromstring(self.protocol.send_message(xmltodict.unparse(request)))

        self._call(send_signal)

    def close(self) -> None:
        """Delete the shell (WinRS Delete) and close the HTTP session; errors are raised."""

        shell_id, self.shell_id = self.shell_id, None
        if shell_id is None:
            self.protocol.transport.close_session()
            return
        try:
            self._call(self.protocol.close_shell, shell_id, close_session=True)
        finally:
            self.protocol.transport.close_session()

    # -- convenience ------------------------------------------------------------------------

    def execute(
        self,
        executable: str,
        arguments: Iterable[str] = (),
        stdin: Iterable[bytes] = (),
        *,
        skip_cmd_shell: bool = True,
        signal_code: str = SIGNAL_TERMINATE,
    ) -> tuple[bytes, bytes, int]:
        """Run one command to its end: Command, Send each stdin chunk (last with End),
        Receive until Done, Signal. Returns ``(stdout, stderr, exit_code)``."""

        command_id = self.run(executable, arguments, skip_cmd_shell=skip_cmd_shell)
        chunks = list(stdin)
        for index, chunk in enumerate(chunks):
            self.send(command_id, chunk, end=index == len(chunks) - 1)
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            result = self.receive(command_id)
            out.append(result.stdout)
            err.append(result.stderr)
            if result.done:
                break
        self.signal(command_id, signal_code)
        return b"".join(out), b"".join(err), int(result.exit_code if result.exit_code is not None else -1)
