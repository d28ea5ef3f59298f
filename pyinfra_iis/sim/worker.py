"""The simulated pyinfra-iis worker: ``powershell.exe -EncodedCommand <worker.ps1>``.

Speaks the worker protocol of :mod:`pyinfra_iis.protocol`: stdin lines (possibly split across
WinRS Sends, reassembled here) are frames or upload data; each step gets one reply line on
stdout. Behaviour mirrors ``remote/worker.ps1``:

* start: a hello reply (id 0) saying whether the module whose SHA-256 the command line names
  is in the host's cache ``C:\\ProgramData\\pyinfra-iis\\module\\<sha256>.ps1`` (content
  checked); if so it is loaded.
* ``op: "module"`` loads the module (its SHA-256 must be the command line's) and writes it to
  the cache: the simulator records its name and the SHA-256 of its source and which functions
  the source defines. A module function is "not recognized" (PowerShell's
  CommandNotFoundException text) until a loaded module defines it.
* ``op: "call"`` dispatches to the Python implementation in :mod:`pyinfra_iis.sim.functions`
  with the frame's JSON as data; stdout gets the CRLF that ``Out-String`` adds. ``op: "run"``
  scripts run in the mini-language of :func:`plain.run_powershell` with
  ``$ErrorActionPreference = 'Stop'`` (reset per step); ``exit N`` keeps the output so far;
  anything else is exit code 1 and ``not supported by the simulator``. A remote call sent as
  script text runs too (Windows would parse it), but it is logged as a script block.
* a frame with the id of the last step is not run again: the last reply is written again.
* Script Block Logging (event 4104), as a Windows host with that policy on records it: the
  worker's ``-EncodedCommand`` text, the module source when loaded and each script step
  (:meth:`SimHost.log_script_block <pyinfra_iis.sim.host.SimHost.log_script_block>`).
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
import hashlib
import json
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


#: Where a host keeps the module (``%ProgramData%``; remote/worker.ps1).
MODULE_CACHE = "C:\\ProgramData\\pyinfra-iis\\module"


def worker_module_sha256(command: str, arguments: Sequence[str]) -> str | None:
    """The module SHA-256 of a worker command line (:func:`worker_start`), or None."""

    start = worker_start(command, arguments)
    return None if start is None else start[0]


def worker_start(command: str, arguments: Sequence[str]) -> tuple[str, str] | None:
    """``(module SHA-256, script)`` of a worker command line, or None when ``command arguments``
    do not start the pyinfra-iis worker: Windows PowerShell (``powershell.exe`` by full path,
    compared case-insensitively, or plain) with ``-EncodedCommand`` decoding exactly to
    :func:`protocol.worker_script` (for some SHA-256, possibly empty)."""

    # WinRS joins Command and Arguments with spaces into one command line (pywinrm even sends
    # all arguments as one rsp:Arguments element); CreateProcess splits it again.
    words = split_command_line(" ".join([command, *arguments]))
    if not words:
        return None
    exe = words[0].lower()
    if exe != "powershell.exe" and not exe.endswith("\\system32\\windowspowershell\\v1.0\\powershell.exe"):
        return None
    lowered = [word.lower() for word in words]
    for flag in ("-encodedcommand", "-enc", "-e", "-ec"):
        if flag in lowered:
            index = lowered.index(flag)
            if index + 1 >= len(words):
                return None
            try:
                script = protocol.decode_powershell_command(words[index + 1])
            except protocol.ProtocolError:
                return None
            split = protocol.split_worker_script(script)
            return None if split is None else (split[0], script)
    return None


def is_worker_command(command: str, arguments: Sequence[str]) -> bool:
    """True when ``command arguments`` start the pyinfra-iis worker (:func:`worker_module_sha256`)."""

    return worker_module_sha256(command, arguments) is not None


class WorkerProcess(Process):
    """One worker process (one per WinRS Command that starts the worker)."""

    kind = "worker"

    def __init__(self, host: "SimHost", faults: "Faults", module_sha256: str = "", script: str = ""):
        super().__init__()
        self.host = host
        self.faults = faults
        self.module_sha256 = module_sha256
        self.last_reply: tuple[int, bytes] | None = None
        self.session: dict[str, Any] = {}
        self.modules: dict[str, str] = {}  # name -> SHA-256 of the source
        self.defined: set[str] = set()  # lower-case function names the loaded modules define
        self.steps = 0
        self._buffer = bytearray()
        self._work: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=WORK_QUEUE_SIZE)
        self._runner: threading.Thread | None = None
        self._exec_lock = threading.Lock()  # held while the runner handles one line
        if script:
            host.log_script_block(script)
        if faults.language_mode != "FullLanguage":
            # remote/worker.ps1's first statement, as PowerShell runs it under WDAC/AppLocker
            self.write("stdout", f"{protocol.FATAL_MARKER}language mode {faults.language_mode}\r\n".encode("ascii"))
            self.exit(3)
            return
        self._hello()

    def _hello(self) -> None:
        """Load the module from the host's cache when it is there with the right content,
        then write the hello reply (id 0)."""

        state = "missing"
        if self.module_sha256:
            cached = self.host.path(f"{MODULE_CACHE}\\{self.module_sha256}.ps1")
            try:
                data = cached.read_bytes()
            except OSError:
                data = None
            if data is not None and hashlib.sha256(data).hexdigest() == self.module_sha256:
                self._define(protocol.MODULE_NAME, data.decode("utf-8"))
                state = "loaded"
        self._reply(0, 0, json.dumps({"module": state, "protocol": protocol.PROTOCOL_VERSION}, separators=(",", ":")), "")

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
        if frame["op"] == "call":
            name, text = str(frame.get("name", "")), str(frame.get("json", ""))
            try:
                payload = json.loads(text)
                call: tuple[str, dict[str, Any]] | None = (name, payload) if isinstance(payload, dict) else None
            except ValueError:
                call = None
            if call is None:
                if not self._injected("frame", name or "script"):
                    self._submit(("reply", frame["id"], 1, "", f"invalid JSON argument to {name}\r\n"))
                return
            if not self._injected("frame", name):
                self._submit(("run", frame["id"], None, call))
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
        if kind in ("module", "run") and self.last_reply is not None:
            step_id = args[0]["id"] if kind == "module" else args[0]
            if step_id == self.last_reply[0]:
                # re-sent after a dropped connection: the reply again, the step not run twice
                self.write("stdout", self.last_reply[1])
                return
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
        line = protocol.encode_reply(protocol.Reply(step_id, rc, stdout, stderr))
        if step_id > 0:
            self.last_reply = (step_id, line)
        self.write("stdout", line)

    def _load_module(self, frame: dict[str, Any]) -> None:
        name = frame.get("name")
        source = frame.get("source")
        if not isinstance(name, str) or not isinstance(source, str):
            self._reply(frame["id"], 1, "", "a module frame needs a name and a source\r\n")
            return
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        if self.module_sha256 and digest != self.module_sha256:
            self._reply(frame["id"], 1, "", "module SHA-256 mismatch\r\n")
            return
        if self.module_sha256:
            cached = self.host.path(f"{MODULE_CACHE}\\{digest}.ps1")
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(source.encode("utf-8"))
        self._define(name, source)
        self._reply(frame["id"], 0, "", "")

    def _define(self, name: str, source: str) -> None:
        self.host.log_script_block(source)
        self.modules[name] = hashlib.sha256(source.encode("utf-8")).hexdigest()
        self.defined.update(found.lower() for found in _DEFINES_RE.findall(source))
        self.host.count("module_loads")

    def _run(self, step_id: int, script: str | None, call: tuple[str, dict[str, Any]] | None) -> None:
        if script is not None:
            self.host.log_script_block(script)
        if call is None:
            assert script is not None
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
        if self.faults.garbled(name):
            text = "WARNING: this is not JSON {"  # fault injection: a module printing garbage
        if text and not text.endswith("\n"):
            text += "\r\n"
        return 0, text, ""
