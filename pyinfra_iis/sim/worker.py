"""The simulated pyinfra-iis worker: ``powershell.exe -EncodedCommand <worker.ps1>``.

Speaks the worker protocol of :mod:`pyinfra_iis.protocol`: stdin lines (possibly split across
WinRS Sends, reassembled here) are frames or upload data; each step gets one reply line on
stdout. Behaviour mirrors ``remote/worker.ps1``:

* ``op: "module"`` loads the module: the simulator records its name and the SHA-256 of its
  source and which functions the source defines. A module function is "not recognized"
  (PowerShell's CommandNotFoundException text) until a loaded module defines it.
* ``op: "run"`` with a remote call (``Verb-Noun -Json '...'``) dispatches to the Python
  implementation in :mod:`pyinfra_iis.sim.functions`; stdout gets the CRLF that
  ``Out-String`` adds. Other scripts run in the mini-language of :func:`plain.run_powershell`
  with ``$ErrorActionPreference = 'Stop'`` (the worker's runspace setting); anything else is
  exit code 1 and ``not supported by the simulator``.
* upload data lines go to the open upload (:func:`functions.files.add_chunk`).
* stdin end: the worker exits 0.
* like a real process reading a pipe, the worker runs its steps on its own thread: a WinRS Send
  returns as soon as its lines are queued (a bounded queue, so a Send waits when the worker is
  far behind, as a full pipe would make it), and a long step (a health-checked switch, a venv
  build) never holds the Send's HTTP request past the client's read timeout. What a fault does
  to a line is still decided while the Send carrying it is handled.
* fault injection: every line is first shown to :meth:`Faults.on_line
  <pyinfra_iis.sim.faults.Faults.on_line>`, which may drop the connection carrying it, kill
  the worker, restart the WinRM service, or drop the request after it (``at_step``).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import queue
import re
import threading
from typing import TYPE_CHECKING, Any, Sequence

from .. import protocol
from . import functions
from .functions import SimFunctionError
from .faults import DropConnection
from .functions.files import add_chunk
from .plain import run_powershell, split_command_line
from .process import Process

if TYPE_CHECKING:  # pragma: no cover
    from .faults import Faults
    from .host import SimHost

_DEFINES_RE = re.compile(r"^\s*function\s+(?:global:|script:)?([A-Za-z]+-[A-Za-z0-9]+)\b", re.IGNORECASE | re.MULTILINE)

_DATA_BYTE = ord(protocol.DATA_PREFIX)

#: Lines a worker accepts ahead of the one it is running before a Send has to wait (a pipe's
#: buffer; an upload Send carries one ~360 KB data line).
WORK_QUEUE_SIZE = 8

#: How often a Send waiting on a full queue checks whether the worker has exited, seconds.
_PUT_POLL_SECONDS = 0.1

NOT_RECOGNIZED = (
    "The term '{}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
    "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
)


@functools.lru_cache(maxsize=1)
def _worker_encoded() -> str:
    return protocol.encode_powershell_command(protocol.worker_script())


def is_worker_command(command: str, arguments: Sequence[str]) -> bool:
    """True when ``command arguments`` start the pyinfra-iis worker: Windows PowerShell (full
    path compared case-insensitively, or plain ``powershell.exe``) with ``-EncodedCommand``
    decoding exactly to :func:`protocol.worker_script`."""

    # WinRS joins Command and Arguments with spaces into one command line (pywinrm even sends
    # all arguments as one rsp:Arguments element); CreateProcess splits it again.
    words = split_command_line(" ".join([command, *arguments]))
    if not words:
        return False
    exe = words[0].lower()
    if exe not in (protocol.POWERSHELL_EXE.lower(), "powershell.exe"):
        return False
    lowered = [word.lower() for word in words]
    for flag in ("-encodedcommand", "-enc", "-e", "-ec"):
        if flag in lowered:
            index = lowered.index(flag)
            return index + 1 < len(words) and words[index + 1] == _worker_encoded()
    return False


class WorkerProcess(Process):
    """One worker process (one per WinRS Command that starts the worker)."""

    kind = "worker"

    def __init__(self, host: "SimHost", faults: "Faults"):
        super().__init__()
        self.host = host
        self.faults = faults
        self.session: dict[str, Any] = {}
        self.modules: dict[str, str] = {}  # name -> SHA-256 of the source
        self.defined: set[str] = set()  # lower-case function names the loaded modules define
        self.steps = 0
        self._buffer = bytearray()
        self._work: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=WORK_QUEUE_SIZE)
        self._runner: threading.Thread | None = None
        self._exec_lock = threading.Lock()  # held while the runner handles one line

    # --- stdin ------------------------------------------------------------------------

    def on_stdin(self, data: bytes) -> None:
        # Lines are sliced with memoryviews and base64-decoded in place: an upload Send carries
        # ~360 KB of data lines, so copies and per-byte Python work would cap the upload rate.
        if self._buffer:
            self._buffer.extend(data)
            data = bytes(self._buffer)
            self._buffer.clear()
        view = memoryview(data)
        position = 0
        end = data.find(b"\n")
        while end >= 0 and not self.done:
            stop = end - 1 if end > position and data[end - 1] == 13 else end  # drop a CR
            self._accept(view[position:stop])
            position = end + 1
            end = data.find(b"\n", position)
        if position < len(data) and not self.done:
            self._buffer.extend(view[position:])

    def on_stdin_end(self) -> None:
        if bytes(self._buffer).strip() and not self.done:
            self._accept(bytes(self._buffer).strip())
        self._buffer.clear()
        self._submit(("end",))

    def kill(self, code: int = 1) -> None:
        super().kill(code)  # done first: the runner drops whatever is still queued
        if self._exec_lock.acquire(blocking=False):
            try:
                self._close_upload(delete=False)
            finally:
                self._exec_lock.release()
        # else the runner closes the upload when the line it is handling ends

    def _close_upload(self, delete: bool) -> None:
        """Close an upload left open; ``delete`` its temporary file when stdin ended (the
        worker exits normally). A killed worker deletes nothing, as on Windows: its thread may
        finish its last line after a new worker has opened the same temporary name, which the
        next upload of that path truncates (and a failed one deletes)."""

        upload = self.session.pop("upload", None)
        if upload is not None:
            upload["handle"].close()
            if delete:
                upload["temp"].unlink(missing_ok=True)

    def _accept(self, line: memoryview | bytes) -> None:
        """Take one stdin line while its Send is handled: decode it, apply an armed fault,
        and queue the work for the runner thread."""

        if not len(line):
            return
        if line[0] == _DATA_BYTE:
            if not self._injected("data", "data"):
                self._submit(("data", bytes(line[1:])))
            return
        line = bytes(line)
        try:
            frame = protocol.decode_request_line(line)
        except protocol.ProtocolError as exc:
            self._submit(("reply", -1, 1, "", f"invalid frame: {exc}\r\n"))
            return
        self.steps += 1
        self.host.count("worker_steps")
        if frame["op"] == "module":
            if not self._injected("frame", "module"):
                self._submit(("module", frame))
            return
        script = str(frame.get("script", ""))
        try:
            call = protocol.parse_remote_call(script)
        except protocol.ProtocolError as exc:
            if not self._injected("frame", "script"):
                self._submit(("reply", frame["id"], 1, "", f"{exc}\r\n"))
            return
        if not self._injected("frame", call[0] if call else "script"):
            self._submit(("run", frame["id"], script, call))

    def _submit(self, item: tuple[Any, ...]) -> None:
        """Queue work for the runner (started on first use); waits while the queue is full,
        and gives up once the worker has exited."""

        if self._runner is None:
            self._runner = threading.Thread(target=self._run_queue, name="sim-worker", daemon=True)
            self._runner.start()
        while not self.done:
            try:
                self._work.put(item, timeout=_PUT_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _run_queue(self) -> None:
        """The worker's own thread: handle queued lines in order until stdin ends or the
        worker is killed."""

        while True:
            try:
                item = self._work.get(timeout=_PUT_POLL_SECONDS)
            except queue.Empty:
                item = None
            with self._exec_lock:
                if self.done:
                    self._close_upload(delete=False)
                    return
                if item is None:
                    continue
                kind = item[0]
                if kind == "end":
                    self._close_upload(delete=True)
                    self.exit(0)
                    return
                self._handle(kind, item[1:])

    def _handle(self, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "data":
            try:
                data: bytes | None = binascii.a2b_base64(args[0], strict_mode=True)
            except binascii.Error:
                data = None
            add_chunk(self.session, data)
        elif kind == "module":
            self._load_module(args[0])
        elif kind == "run":
            self._run(*args)
        elif kind == "reply":
            self._reply(*args)

    def _injected(self, kind: str, name: str) -> bool:
        """Apply a fault armed for this line (``Faults.at_step``); True when the line must
        not be handled (the worker was killed or the service restarted).

        Raises:
            DropConnection: the connection carrying this line is to be dropped.
        """

        action = self.faults.on_line(kind, name)
        if action is None:
            return False
        if action == "drop":
            raise DropConnection(f"fault injection: {kind} line {name} dropped")
        if action == "drop_reply":
            self.faults.drop_after(0)  # the step runs; the next request (its Receive) is dropped
            return False
        if action == "restart" and self.faults.on_restart:
            self.faults.on_restart()
        self.kill()
        return True

    # --- steps ------------------------------------------------------------------------

    def _reply(self, step_id: int, rc: int, stdout: str, stderr: str) -> None:
        if self.done:  # killed while the step ran: a dead process writes nothing more
            return
        self.write("stdout", protocol.encode_reply(protocol.Reply(step_id, rc, stdout, stderr)))

    def _load_module(self, frame: dict[str, Any]) -> None:
        name = frame.get("name")
        source = frame.get("source")
        if not isinstance(name, str) or not isinstance(source, str):
            self._reply(frame["id"], 1, "", "a module frame needs a name and a source\r\n")
            return
        self.modules[name] = hashlib.sha256(source.encode("utf-8")).hexdigest()
        self.defined.update(found.lower() for found in _DEFINES_RE.findall(source))
        self.host.count("module_loads")
        self._reply(frame["id"], 0, "", "")

    def _run(self, step_id: int, script: str, call: tuple[str, dict[str, Any]] | None) -> None:
        if call is None:
            result = run_powershell(self.host, script, clixml=False, stop_on_error=True)
            self._reply(step_id, result.rc, result.stdout, result.stderr)
            return
        name, payload = call
        rc, stdout, stderr = self._call(name, payload)
        self._reply(step_id, rc, stdout, stderr)

    def _call(self, name: str, payload: dict[str, Any]) -> tuple[int, str, str]:
        if name.lower() not in self.defined:
            return 1, "", NOT_RECOGNIZED.format(name) + "\r\n"
        self.host.count("function_calls")
        injected = self.faults.take_function_failure(name)
        if injected is not None:
            return 1, "", injected + "\r\n"
        try:
            text = functions.call(self.host, name, payload, self.session)
        except KeyError:
            broken = "".join(f"; simulator module {module} failed to import: {error}"
                             for module, error in sorted(functions.LOAD_ERRORS.items()))
            return 1, "", f"not supported by the simulator: module function {name} has no simulator implementation{broken}\r\n"
        except SimFunctionError as exc:
            return 1, "", f"{exc}\r\n"
        except Exception as exc:  # a bug in a simulator function must not take the server down
            # Only the type: an exception text could carry a payload value (a secret).
            return 1, "", f"simulator error in {name}: {type(exc).__name__}\r\n"
        text = "" if text is None else str(text)
        if text and not text.endswith("\n"):
            text += "\r\n"
        return 0, text, ""
