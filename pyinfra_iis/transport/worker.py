"""The long-lived PowerShell worker on a host, driven over one WinRS shell.

One shell and one ``powershell.exe`` per host per run (docs/design.md, "The connector"): the
worker is started once with :func:`pyinfra_iis.protocol.worker_command_line`, the project's
module is sent to it once, and then each step costs one WinRS Send and (usually) one
Receive. The frame format is :mod:`pyinfra_iis.protocol`.

Start: the worker's hello (reply id 0) says whether it loaded the module from the host's
cache; only then is the module sent, and nothing is sent before the hello (no large frame
reaches a process that is not reading yet).

Recovery: WinRS shells and commands outlive the TCP connection, so a dropped connection is
followed by a new HTTP session on the SAME shell and command, and the outstanding step is
sent again with the same id (the worker re-emits its reply instead of running it twice).
Only a dead worker (WinRS command Done) or a lost shell (WSMan fault 2150858843, WMI
0x803381A6, Windows errors 995/1726) rebuilds: new worker (and shell when it is gone),
module reloaded, step re-sent ONCE. An authentication failure is never retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from winrm.protocol import Protocol

from .. import protocol as wire
from ..remote import host_module_source as default_module_source
from .clixml import decode_stderr
from .errors import ConnectionDropped, Recoverable, StepTimeout, TransportError, WorkerDied, WorkerError
from .winrs import SIGNAL_TERMINATE, WinRSShell

logger = logging.getLogger(__name__)

#: Default ``MaxEnvelopeSizekb`` of a Windows host (docs/field-facts.md: 500; 150 on Server 2008 R2).
DEFAULT_MAX_ENVELOPE_KB = 500

#: Bytes of a Send envelope that are not stdin data (SOAP header and body around the base64).
ENVELOPE_OVERHEAD = 4096

#: Share of ``MaxEnvelopeSizekb`` a Send may use: the host counts the envelope after its own
#: decoding, and a Send right at the limit is refused.
ENVELOPE_USE = 0.87

#: Seconds to wait for the worker's hello, and for the module to load.
HELLO_TIMEOUT = 120.0
MODULE_LOAD_TIMEOUT = 300.0

#: Largest first frame sent before the worker's hello (a remote call; a module or a large
#: script waits for the hello, so that no large Send reaches a process not reading yet).
HANDSHAKE_BYTES = 16 * 1024

#: Most bytes of one unfinished stdout line, and of stderr, kept while waiting for a reply
#: (the largest legitimate reply, a 16 MiB Read-FileChunk, is ~30 MB): bounded memory.
MAX_PENDING_BYTES = 64 * 1024 * 1024

#: How many times one step may reconnect after dropped connections before giving up.
RECONNECTS = 3


def max_stdin_bytes(max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB) -> int:
    """Return the most stdin bytes one Send may carry under ``max_envelope_kb`` (KiB).

    The Send body holds base64 of the bytes (4/3 larger) plus about ``ENVELOPE_OVERHEAD``
    bytes of SOAP, within ``ENVELOPE_USE`` (87 %) of the limit.

    Raises:
        ValueError: the envelope is too small to carry anything.
    """

    room = int(max_envelope_kb * 1024 * ENVELOPE_USE) - ENVELOPE_OVERHEAD
    if room < 1024:
        raise ValueError(f"MaxEnvelopeSizekb {max_envelope_kb} is too small")
    return room * 3 // 4


@dataclass
class StepResult:
    """Outcome of one step.

    Attributes:
        rc: the step's exit code (0 = success).
        stdout: the step's stdout text, preceded by any noise lines that came with it.
        stderr: the step's stderr text plus the worker's own stderr (CLIXML decoded).
    """

    rc: int
    stdout: str
    stderr: str


@dataclass
class PreparedStdin:
    """Send envelopes built ahead of time for the worker of one generation."""

    generation: int
    envelopes: list[bytes]


@dataclass
class SessionStats:
    """What the session has done, for benchmarks and tests."""

    steps: int = 0
    rebuilds: int = 0
    reconnects: int = 0
    module_sends: int = 0
    resent: int = 0
    sends: int = 0
    receives: int = 0


class WorkerSession:
    """A worker on one host.

    Args:
        protocol_factory: returns a new ``winrm.protocol.Protocol`` for the host; called at
            start and whenever the connection or shell must be rebuilt.
        endpoint: label used in messages (host and port; never credentials).
        module_source: PowerShell source loaded into the worker once; defaults to
            :func:`pyinfra_iis.remote.host_module_source` (the module with its comment lines
            blanked; "" when the module folder is empty).
        max_envelope_kb: the host's ``MaxEnvelopeSizekb`` (default 500): bigger stdin
            frames are split over several Sends.
        busy_pause: seconds between retries of a busy (error 170) call; default 5.0.
    """

    def __init__(
        self,
        protocol_factory: Callable[[], Protocol],
        *,
        endpoint: str,
        module_source: str | None = None,
        max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB,
        busy_pause: float = 5.0,
        system_root: str = "C:\\Windows",
    ):
        self.protocol_factory = protocol_factory
        self.endpoint = endpoint
        self.module_source = module_source
        self.max_envelope_kb = max_envelope_kb
        self.max_send = max_stdin_bytes(max_envelope_kb)
        self.busy_pause = busy_pause
        self.system_root = system_root
        self.shell: WinRSShell | None = None
        self.command_id: str | None = None
        self.generation = 0
        self.stats = SessionStats()
        self._next_id = 1
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._broken: TransportError | None = None
        self._hello: wire.Reply | StepResult | None = None
        self._ready = False  # the hello came and the module is loaded

    def __repr__(self) -> str:
        return f"<WorkerSession {self.endpoint} generation={self.generation}>"

    # -- life cycle -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.command_id is not None

    def start(self) -> None:
        """Open the shell, start the worker and load the module.

        Loading the module is the session's first step: a recoverable failure there (the
        connection dropped, the shell lost, the worker died) is retried once with a new shell,
        like any step (docs/design.md, "The connector"; found by the fault matrix,
        tests/test_fault_matrix.py).

        Raises:
            AuthenticationFailed, HostUnreachable, TransportError: could not start.
            Recoverable: the start failed again after one retry.
            WorkerError: the module failed to load.
        """

        try:
            self._build(new_shell=True)
        except Recoverable as exc:
            self.stats.rebuilds += 1
            logger.warning("%s: %s; starting the worker again once", self.endpoint, exc)
            self._build(new_shell=True)

    def _build(self, new_shell: bool) -> None:
        self._stdout.clear()
        self._stderr.clear()
        self.command_id = None
        if new_shell or self.shell is None:
            if self.shell is not None:
                self._quietly(self.shell.close)
            self.shell = WinRSShell(self.protocol_factory(), busy_pause=self.busy_pause, endpoint=self.endpoint)
            self.shell.open()
        source = default_module_source() if self.module_source is None else self.module_source
        executable, arguments = wire.worker_command_line(wire.module_sha256(source), self.system_root)
        self.command_id = self.shell.run(executable, arguments, skip_cmd_shell=True, console_mode_stdin=False)
        self._broken = None
        self._hello = None
        self._ready = False
        self.generation += 1
        logger.debug("%s: worker started (generation %d)", self.endpoint, self.generation)

    def _first_step(self, script: str, timeout: float | None) -> StepResult:
        """The first step of a new worker, with the start-up handshake.

        A small remote call is sent at once (it waits in the pipe until the worker reads);
        the worker's hello arrives before its reply. A script or a large frame waits for the
        hello (no script ever runs before the module is loaded). When the hello says the
        module is not in the host's cache, the module is sent and the call sent again.
        """

        source = default_module_source() if self.module_source is None else self.module_source
        step_id = self._take_id()
        frame = wire.encode_step(step_id, script)
        is_call = wire.decode_request_line(frame)["op"] == "call"
        result: StepResult | None = None
        if is_call and len(frame) <= HANDSHAKE_BYTES and self._hello is None:
            result = self._exchange(frame, step_id, timeout, starting=True)
        if self._hello is None:
            self._hello = self._exchange(None, 0, HELLO_TIMEOUT, starting=True)
        if '"missing"' in self._hello.stdout:
            self.stats.module_sends += 1
            module_id = self._take_id()
            loaded = self._exchange(wire.encode_module(module_id, source), module_id, MODULE_LOAD_TIMEOUT)
            if loaded.rc != 0:
                self._broken = WorkerDied(f"{self.endpoint}: the module failed to load")
                raise WorkerError(f"{self.endpoint}: the module {wire.MODULE_NAME} failed to load: {loaded.stderr.strip()}")
            result = None  # the call was answered "not recognized": sent again below
        self._ready = True
        if result is None:
            step_id = self._take_id()
            result = self._exchange(wire.encode_step(step_id, script), step_id, timeout)
        return result

    def _rebuild(self) -> None:
        cause = self._broken
        self.stats.rebuilds += 1
        keep_shell = isinstance(cause, WorkerDied)
        logger.debug("%s: rebuilding the %s after: %s", self.endpoint, "worker" if keep_shell else "shell and worker", cause)
        try:
            self._build(new_shell=not keep_shell)
        except Recoverable:
            if not keep_shell:
                raise
            self._build(new_shell=True)

    def ensure(self) -> None:
        """Start or rebuild the worker when it is not running (no retry beyond one rebuild)."""

        if self.shell is None or self.command_id is None:
            self.start()
        elif isinstance(self._broken, ConnectionDropped):
            # e.g. an upload's data Send: the shell and the worker outlive the connection
            cause, self._broken = self._broken, None
            self._reconnect(cause)
        elif self._broken is not None:
            self._rebuild()

    def close(self) -> None:
        """End the worker (close its stdin, then terminate) and delete the shell; best effort."""

        shell = self.shell
        self.shell = self.command_id = None
        if shell is None:
            return
        # Deleting the shell ends the worker (WinRS Delete ends its processes): one request
        # instead of closing stdin, signalling and deleting.
        self._quietly(shell.close)

    def _quietly(self, func: Callable, *args) -> None:
        try:
            func(*args)
        except Exception as exc:  # noqa: BLE001 - cleanup never raises
            logger.debug("%s: ignored while cleaning up: %s", self.endpoint, exc)

    def _reconnect(self, cause: TransportError) -> None:
        """A new HTTP session on the same shell and command (they outlive the connection)."""

        assert self.shell is not None
        self.stats.reconnects += 1
        logger.warning("%s: %s; reconnecting to the same shell", self.endpoint, cause)
        old = self.shell.protocol
        self.shell.protocol = self.protocol_factory()
        try:
            old.transport.close_session()
        except Exception:  # noqa: BLE001 - the old session is dead anyway
            pass

    # -- steps ------------------------------------------------------------------------------

    def _take_id(self) -> int:
        step_id = self._next_id
        self._next_id += 1
        return step_id

    def run(self, script: str, timeout: float | None = None) -> StepResult:
        """Run ``script`` (PowerShell text) as one step and return its result.

        Args:
            script: the raw PowerShell text (secrets unmasked).
            timeout: seconds to wait for the reply, or None (wait as long as it takes);
                each Receive asks the server to hold at most the remaining time (whole
                seconds, at least 1), so the limit is kept to about a second.

        Raises:
            StepTimeout: no reply in time (the worker is then rebuilt before the next step).
            AuthenticationFailed: credentials rejected (never retried).
            Recoverable: the step failed again after one rebuild and re-send.
            TransportError: any other transport failure.
        """

        self.stats.steps += 1
        for attempt in (0, 1):
            self.ensure()
            try:
                if not self._ready:
                    return self._first_step(script, timeout)
                step_id = self._take_id()
                return self._exchange(wire.encode_step(step_id, script), step_id, timeout)
            except Recoverable as exc:
                self._broken = exc
                if attempt:
                    raise
                self.stats.resent += 1
                logger.warning("%s: %s; rebuilding and re-sending the step once", self.endpoint, exc)
        raise AssertionError("unreachable")

    def send_stdin(self, data: bytes) -> None:
        """Write raw bytes (e.g. an upload data line) to the worker's stdin, split so each
        Send stays under the host's envelope limit. No reply is awaited.

        Raises:
            Recoverable: the worker, shell or connection is gone (session marked broken).
        """

        self.ensure()
        self.send_prepared(self.prepare_stdin(data))

    def prepare_stdin(self, data: bytes) -> PreparedStdin:
        """Build the Send envelopes for ``data`` without sending them (thread-safe with
        respect to a request in flight; used to overlap encoding with the host's work).
        Never starts or rebuilds the worker.

        Raises:
            Recoverable: the worker is not running.
        """

        if self._broken is not None:
            raise self._broken
        if self.shell is None or self.command_id is None:
            raise WorkerDied(f"{self.endpoint}: the worker is not running")
        if len(data) <= self.max_send:
            pieces = [data]
        else:
            pieces = [data[i:i + self.max_send] for i in range(0, len(data), self.max_send)]
        return PreparedStdin(self.generation, [self.shell.build_send(self.command_id, piece) for piece in pieces])

    def send_prepared(self, prepared: PreparedStdin) -> None:
        """Send envelopes from :meth:`prepare_stdin`.

        Raises:
            Recoverable: the worker was replaced since they were built, or it, the shell or
                the connection is gone (session marked broken).
        """

        if prepared.generation != self.generation or self.shell is None or self._broken is not None:
            raise WorkerDied(f"{self.endpoint}: the worker was replaced; prepared input is stale")
        try:
            for envelope in prepared.envelopes:
                self.stats.sends += 1
                self.shell.send_envelope(envelope)
        except Recoverable as exc:
            self._broken = exc
            raise

    def _exchange(self, frame: bytes | None, step_id: int, timeout: float | None, starting: bool = False) -> StepResult:
        """Send ``frame`` (None: nothing, wait for the hello) and receive the reply to
        ``step_id``. A dropped connection reconnects to the same shell and command and sends
        the frame again with the same id (the worker answers a duplicate with its reply)."""

        assert self.shell is not None and self.command_id is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        noise: list[str] = []
        reconnects = 0
        pending = frame
        while True:
            try:
                if pending is not None:
                    self.send_stdin(pending)
                    pending = None
                reply = self._pop_reply(step_id, noise)
                if reply is not None:
                    worker_err = decode_stderr(complete_stderr(self._stderr))
                    return StepResult(reply.rc, "".join(line + "\r\n" for line in noise) + reply.stdout, reply.stderr + worker_err)
                if deadline is not None and time.monotonic() >= deadline:
                    self._broken = WorkerDied(f"{self.endpoint}: step {step_id} timed out; the worker is replaced")
                    self._quietly(self.shell.signal, self.command_id, SIGNAL_TERMINATE)
                    raise StepTimeout(f"{self.endpoint}: no reply within {timeout} s")
                self.stats.receives += 1
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                result = self.shell.receive(self.command_id, wait)
            except WorkerDied:
                if not starting:
                    raise
                raise self._drain(noise) from None
            except ConnectionDropped as exc:
                if reconnects >= RECONNECTS:
                    self._broken = exc
                    raise
                reconnects += 1
                self._broken = None
                self._reconnect(exc)
                pending = frame
                continue
            self._stdout += result.stdout
            self._stderr += result.stderr
            if len(self._stderr) > MAX_PENDING_BYTES:
                del self._stderr[:len(self._stderr) - MAX_PENDING_BYTES // 2]
            if len(self._stdout) > MAX_PENDING_BYTES and b"\n" not in self._stdout:
                self._broken = WorkerDied(f"{self.endpoint}: the worker wrote an oversized line")
                raise WorkerError(f"{self.endpoint}: the worker wrote more than {MAX_PENDING_BYTES // (1024 * 1024)} MiB "
                                  "without a newline; the worker is replaced")
            if result.done:
                reply = self._pop_reply(step_id, noise)
                if reply is not None:
                    self._broken = WorkerDied(f"{self.endpoint}: the worker exited after step {step_id}")
                    return StepResult(reply.rc, "".join(line + "\r\n" for line in noise) + reply.stdout, reply.stderr)
                raise self._exited(result.exit_code, noise)

    def _drain(self, noise: list[str]) -> TransportError:
        """The worker ended while starting (a Send found its stdin closed): read what it wrote
        and its exit code, and say why it failed (:meth:`_exited`)."""

        assert self.shell is not None and self.command_id is not None
        for _ in range(5):
            try:
                result = self.shell.receive(self.command_id, 5)
            except TransportError:
                break
            self._stdout += result.stdout
            self._stderr += result.stderr
            if result.done:
                return self._exited(result.exit_code, noise)
        return self._exited(None, noise)

    def _exited(self, exit_code: int | None, noise: list[str]) -> TransportError:
        """The error for a worker that ended without replying: its stdout, stderr and exit
        code say why (Constrained Language Mode, a start-up failure, the memory quota)."""

        self._broken = WorkerDied(f"{self.endpoint}: the worker exited")
        rest = bytes(self._stdout).decode("utf-8", "replace")
        lines = noise + rest.splitlines()
        fatal = [line.split(wire.FATAL_MARKER, 1)[1] for line in lines if wire.FATAL_MARKER in line]
        if fatal:
            return WorkerError(f"{self.endpoint}: PowerShell cannot run the worker: {fatal[0].strip()} (exit code {exit_code}); "
                               "a WDAC/AppLocker policy puts PowerShell in ConstrainedLanguage mode, the worker needs FullLanguage")
        detail = decode_stderr(self._stderr.decode("utf-8", "replace")).strip()[-500:] or "\n".join(lines).strip()[-500:]
        hint = ""
        if exit_code is not None and exit_code < 0 or "MaxMemoryPerShellMB" in detail or "quota" in detail.lower():
            hint = ("; if the worker ran out of memory: WinRM's MaxMemoryPerShellMB (1024 MB by default) limits the worker "
                    "and every program it starts (pip, installers)")
        return WorkerDied(f"{self.endpoint}: the worker exited with code {exit_code}" + (f": {detail}" if detail else "") + hint)

    def _pop_reply(self, step_id: int, noise: list[str]) -> wire.Reply | None:
        while True:
            end = self._stdout.find(b"\n")
            if end < 0:
                return None
            raw = bytes(self._stdout[:end])
            del self._stdout[:end + 1]
            line = raw.decode("utf-8", "replace").rstrip("\r")
            try:
                before, reply = wire.split_reply_line(line)
            except wire.ProtocolError as exc:
                raise WorkerError(f"{self.endpoint}: {exc}") from None
            if before:
                noise.append(before)
            if reply is None:
                pass
            elif reply.id == step_id:
                return reply
            elif reply.id == 0:
                self._hello = reply
            elif reply.id == -1:
                raise WorkerError(f"{self.endpoint}: the worker refused a frame: {reply.stderr.strip()}")
            else:
                logger.debug("%s: dropped a late reply to step %d", self.endpoint, reply.id)


_CLIXML_OPEN = b"<Objs"
_CLIXML_CLOSE = b"</Objs>"


def complete_stderr(buffer: bytearray, start: int = 0) -> str:
    """Take the worker's stderr of one step out of ``buffer`` (from ``start``), keeping an
    unfinished CLIXML block for the next step; the continuation of a block cut at an earlier
    step's reply is skipped, so it never shows as junk in another step.

    Returns:
        the text to decode; ``buffer`` then holds only the unfinished block, if any.
    """

    data = bytes(buffer[start:]) if start else bytes(buffer)
    del buffer[:]
    opened = data.rfind(_CLIXML_OPEN)
    if opened >= 0 and data.find(_CLIXML_CLOSE, opened) < 0:
        buffer += b"#< CLIXML\r\n" + data[opened:]
        data = data[:opened]
    return data.decode("utf-8", "replace")
