"""The long-lived PowerShell worker on a host, driven over one WinRS shell.

One shell and one ``powershell.exe`` per host per run (design.md, "The connector"): the
worker is started once with :func:`pyinfra_iis.protocol.worker_command_line`, the project's
module is sent to it once, and then each step costs one WinRS Send and (usually) one
Receive. The frame format is :mod:`pyinfra_iis.protocol`.

Recovery: a dead worker (WinRS command Done), a lost shell (WSMan fault 2150858843 or WMI
0x803381A6) or a dropped connection marks the session broken; it is rebuilt (new HTTP
session and shell when the shell or connection is gone, otherwise only a new worker), the
module reloaded, and the step re-sent ONCE (steps are idempotent). An authentication
failure is never retried.
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
from .errors import Recoverable, StepTimeout, TransportError, WorkerDied, WorkerError
from .winrs import SIGNAL_TERMINATE, WinRSShell

logger = logging.getLogger(__name__)

#: Default ``MaxEnvelopeSizekb`` of a Windows host (field notes: 500; 150 on Server 2008 R2).
DEFAULT_MAX_ENVELOPE_KB = 500

#: Bytes of a Send envelope that are not stdin data (SOAP header and body around the base64).
ENVELOPE_OVERHEAD = 4096


def max_stdin_bytes(max_envelope_kb: int = DEFAULT_MAX_ENVELOPE_KB) -> int:
    """Return the most stdin bytes one Send may carry under ``max_envelope_kb`` (KiB).

    The Send body holds base64 of the bytes (4/3 larger) plus about ``ENVELOPE_OVERHEAD``
    bytes of SOAP.

    Raises:
        ValueError: the envelope is too small to carry anything.
    """

    room = max_envelope_kb * 1024 - ENVELOPE_OVERHEAD
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
    ):
        self.protocol_factory = protocol_factory
        self.endpoint = endpoint
        self.module_source = module_source
        self.max_envelope_kb = max_envelope_kb
        self.max_send = max_stdin_bytes(max_envelope_kb)
        self.busy_pause = busy_pause
        self.shell: WinRSShell | None = None
        self.command_id: str | None = None
        self.generation = 0
        self.stats = SessionStats()
        self._next_id = 1
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._broken: TransportError | None = None

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
        like any step (design.md, "The connector"; found by the fault matrix,
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
        executable, arguments = wire.worker_command_line()
        self.command_id = self.shell.run(executable, arguments, skip_cmd_shell=True, console_mode_stdin=False)
        self._broken = None
        self.generation += 1
        source = default_module_source() if self.module_source is None else self.module_source
        step_id = self._take_id()
        try:
            result = self._exchange(wire.encode_module(step_id, source), step_id, None)
        except TransportError as exc:
            self._broken = exc if isinstance(exc, Recoverable) else WorkerDied(str(exc))
            raise
        if result.rc != 0:
            self._broken = WorkerDied(f"{self.endpoint}: the module failed to load")
            raise WorkerError(f"{self.endpoint}: the module {wire.MODULE_NAME} failed to load: {result.stderr.strip()}")
        logger.debug("%s: worker ready (generation %d)", self.endpoint, self.generation)

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
        elif self._broken is not None:
            self._rebuild()

    def close(self) -> None:
        """End the worker (close its stdin, then terminate) and delete the shell; best effort."""

        shell, command_id = self.shell, self.command_id
        self.shell = self.command_id = None
        if shell is None:
            return
        if command_id is not None and self._broken is None:
            self._quietly(shell.send, command_id, b"", True)
        if command_id is not None:
            self._quietly(shell.signal, command_id, SIGNAL_TERMINATE)
        self._quietly(shell.close)

    def _quietly(self, func: Callable, *args) -> None:
        try:
            func(*args)
        except TransportError as exc:
            logger.debug("%s: ignored while cleaning up: %s", self.endpoint, exc)

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
            step_id = self._take_id()
            try:
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

    def _exchange(self, frame: bytes, step_id: int, timeout: float | None) -> StepResult:
        assert self.shell is not None and self.command_id is not None
        self.send_stdin(frame)
        deadline = None if timeout is None else time.monotonic() + timeout
        noise: list[str] = []
        stderr_start = len(self._stderr)
        while True:
            reply = self._pop_reply(step_id, noise)
            if reply is not None:
                worker_err = decode_stderr(self._stderr[stderr_start:].decode("utf-8", "replace"))
                del self._stderr[:]
                stdout = "".join(line + "\r\n" for line in noise) + reply.stdout
                return StepResult(reply.rc, stdout, reply.stderr + worker_err)
            if deadline is not None and time.monotonic() >= deadline:
                self._broken = WorkerDied(f"{self.endpoint}: step {step_id} timed out; the worker is replaced")
                self._quietly(self.shell.signal, self.command_id, SIGNAL_TERMINATE)
                raise StepTimeout(f"{self.endpoint}: no reply within {timeout} s")
            self.stats.receives += 1
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = self.shell.receive(self.command_id, wait)
            self._stdout += result.stdout
            self._stderr += result.stderr
            if result.done:
                reply = self._pop_reply(step_id, noise)
                if reply is not None:
                    self._broken = WorkerDied(f"{self.endpoint}: the worker exited after step {step_id}")
                    return StepResult(reply.rc, "".join(line + "\r\n" for line in noise) + reply.stdout, reply.stderr)
                detail = decode_stderr(self._stderr.decode("utf-8", "replace")).strip()[-500:]
                raise WorkerDied(f"{self.endpoint}: the worker exited with code {result.exit_code}" + (f": {detail}" if detail else ""))

    def _pop_reply(self, step_id: int, noise: list[str]) -> wire.Reply | None:
        while True:
            end = self._stdout.find(b"\n")
            if end < 0:
                return None
            raw = bytes(self._stdout[:end])
            del self._stdout[:end + 1]
            line = raw.decode("utf-8", "replace").rstrip("\r")
            try:
                reply = wire.decode_reply_line(line)
            except wire.ProtocolError as exc:
                raise WorkerError(f"{self.endpoint}: {exc}") from None
            if reply is None:
                noise.append(line)
            elif reply.id == step_id:
                return reply
            elif reply.id == -1:
                raise WorkerError(f"{self.endpoint}: the worker refused a frame: {reply.stderr.strip()}")
            else:
                logger.debug("%s: dropped a late reply to step %d", self.endpoint, reply.id)
