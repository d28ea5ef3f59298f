"""A simulated process: stdin in, stdout/stderr out, an exit code at the end.

Every WinRS Command starts one :class:`Process`. Subclasses (``plain.PlainProcess``,
``worker.WorkerProcess``) decide what the process does with its stdin; this base class keeps
the output queue that Receive drains and the condition Receive waits on.
"""

from __future__ import annotations

import base64
import threading
from collections import deque

#: Exit code of a process ended by Ctrl+C (STATUS_CONTROL_C_EXIT, 0xC000013A as int32).
EXIT_CTRL_C = -1073741510

#: Exit code of a process killed by the simulator's fault injection or a terminate signal
#: while running (``TerminateProcess(handle, 1)``, what ``taskkill /f`` uses).
EXIT_KILLED = 1


class ProcessExited(Exception):
    """Input was sent to a process that has already exited."""


class Process:
    """Base class of simulated processes.

    Output is queued as ``(stream, bytes)`` pairs in the order written; :meth:`take_output`
    drains it in pieces that fit a Receive envelope. Thread-safe: Send, Receive and Signal may
    arrive on different HTTP connections.
    """

    kind = "process"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._output: deque[tuple[str, bytes]] = deque()
        self._pending = 0
        self.done = False
        self.exit_code: int | None = None
        self.stdin_closed = False

    # --- written by the process --------------------------------------------------------

    def write(self, stream: str, data: bytes) -> None:
        """Queue ``data`` on ``stream`` (``"stdout"`` or ``"stderr"``) and wake Receive."""

        if not data:
            return
        with self.cond:
            self._output.append((stream, bytes(data)))
            self._pending += len(data)
            self.cond.notify_all()

    def exit(self, code: int) -> None:
        """End the process with ``code`` (first call wins) and wake Receive."""

        with self.cond:
            if not self.done:
                self.done = True
                self.exit_code = int(code)
            self.cond.notify_all()

    # --- driven by WinRS ----------------------------------------------------------------

    def send(self, data: bytes, end: bool) -> None:
        """Deliver stdin bytes from a WinRS Send; ``end`` closes stdin.

        Raises:
            ProcessExited: the process already exited.
        """

        if self.done:
            raise ProcessExited()
        if self.stdin_closed:
            # Windows keeps the pipe closed; further data is dropped (best guess).
            return
        self.on_stdin(data)
        if end:
            self.stdin_closed = True
            self.on_stdin_end()

    def on_stdin(self, data: bytes) -> None:
        """Handle stdin bytes (default: ignore, like a program that never reads stdin)."""

    def on_stdin_end(self) -> None:
        """Handle the end of stdin (default: nothing)."""

    def signal_ctrl_c(self) -> None:
        """Ctrl+C: a running process ends with STATUS_CONTROL_C_EXIT."""

        self.exit(EXIT_CTRL_C)

    def kill(self, code: int = EXIT_KILLED) -> None:
        """End the process at once, as ``TerminateProcess`` would (no more output)."""

        self.exit(code)

    def wait_output(self, timeout: float) -> bool:
        """Block until output is queued or the process ended; False after ``timeout`` seconds."""

        with self.cond:
            return self.cond.wait_for(lambda: self._pending or self.done, timeout=max(timeout, 0))

    def take_output(self, max_bytes: int) -> tuple[list[tuple[str, str]], bool, int | None]:
        """Drain up to ``max_bytes`` of queued output.

        Returns:
            ``(chunks, done, exit_code)``: ``chunks`` are ``(stream, base64 text)`` with
            adjacent pieces of one stream merged; ``done`` is True only when the process ended
            and nothing is left queued (the Receive then reports CommandState Done).
        """

        max_bytes = max(max_bytes - max_bytes % 3, 3)
        chunks: list[tuple[str, bytearray]] = []
        budget = max_bytes
        with self.cond:
            while self._output and budget > 0:
                stream, data = self._output[0]
                if len(data) > budget:
                    piece, rest = data[:budget], data[budget:]
                    self._output[0] = (stream, rest)
                else:
                    piece = data
                    self._output.popleft()
                budget -= len(piece)
                self._pending -= len(piece)
                if chunks and chunks[-1][0] == stream:
                    chunks[-1][1].extend(piece)
                else:
                    chunks.append((stream, bytearray(piece)))
            done = self.done and not self._output
            code = self.exit_code
        return [(stream, base64.b64encode(data).decode("ascii")) for stream, data in chunks], done, code
