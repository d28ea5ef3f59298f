"""WinRS shells and their commands (processes) for one simulated host.

:class:`ShellManager` answers the WinRS actions (Create, Command, Send, Receive, Signal,
Delete) on parsed requests and returns response envelopes, raising
:class:`~pyinfra_iis.sim.soap.SoapError` for faults. Shells live in a dict keyed by ShellId,
commands in a dict per shell.
"""

from __future__ import annotations

import binascii
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import soap
from .plain import PlainProcess
from .process import Process, ProcessExited
from .soap import Request, SoapError
from .worker import WorkerProcess, worker_start

if TYPE_CHECKING:  # pragma: no cover
    from .faults import Faults
    from .host import SimHost

#: Smallest MaxEnvelopeSize the simulator accepts in a request (bytes); WS-Man's minimum
#: (ERROR_WSMAN_MIN_ENVELOPE_SIZE) is 8192.
MIN_ENVELOPE = 8192


@dataclass
class Shell:
    """One WinRS shell: its id, owner and commands."""

    shell_id: str
    owner: str
    input_streams: str
    output_streams: str
    commands: dict[str, Process] = field(default_factory=dict)


def _pipe_closed_fault() -> SoapError:
    # Best guess: the exact fault Windows returns for input sent to a process that has
    # exited is not in our references; ERROR_BROKEN_PIPE / ERROR_NO_DATA style text.
    return SoapError(232, "w:InternalError", "The pipe is being closed.",
                     "The pipe is being closed. (pyinfra-iis simulator: the process has exited; the exact fault "
                     "Windows returns here is a best guess)", sender=False)


class ShellManager:
    """The WinRS side of one host.

    Args:
        host: the host model.
        faults: the host's fault settings (workers consult them).
    """

    def __init__(self, host: "SimHost", faults: "Faults"):
        self.host = host
        self.faults = faults
        self.shells: dict[str, Shell] = {}
        self._lock = threading.Lock()

    # --- lookups ------------------------------------------------------------------------

    def _shell(self, request: Request) -> Shell:
        shell_id = request.selectors.get("ShellId", "")
        shell = self.shells.get(shell_id.upper())
        if shell is None:
            raise soap.unknown_shell_fault(shell_id)
        return shell

    @staticmethod
    def _command(shell: Shell, command_id: str | None) -> Process:
        process = shell.commands.get((command_id or "").upper())
        if process is None:
            raise soap.unknown_command_fault(command_id or "")
        return process

    def _body(self, request: Request, name: str) -> "soap.ET.Element":
        body = request.body
        if body is None or body.tag != "{%s}%s" % (soap.NS["rsp"], name):
            raise SoapError(soap.ERROR_WSMAN_INVALID_SOAP_BODY, "w:SchemaValidationError",
                            f"The SOAP body of this request must be rsp:{name}.")
        return body

    # --- actions ------------------------------------------------------------------------

    def create(self, request: Request, endpoint: str, client_ip: str, owner: str) -> bytes:
        """WS-Transfer Create of a cmd shell."""

        if request.resource_uri.lower() != soap.CMD_RESOURCE_URI.lower():
            raise SoapError(soap.ERROR_WSMAN_RESOURCE_NOT_FOUND, "w:DestinationUnreachable",
                            "The WS-Management service cannot process the request. The service cannot find the "
                            "resource identified by the resource URI and selectors.",
                            f"not supported by the simulator: resource URI {request.resource_uri} (only the cmd shell)")
        body = self._body(request, "Shell")
        inputs = body.findtext("{%s}InputStreams" % soap.NS["rsp"]) or "stdin"
        outputs = body.findtext("{%s}OutputStreams" % soap.NS["rsp"]) or "stdout stderr"
        shell = Shell(str(uuid.uuid4()).upper(), owner, inputs, outputs)
        with self._lock:
            self.shells[shell.shell_id] = shell
        self.host.count("shells")
        return soap.create_response(request, endpoint, shell.shell_id, owner, client_ip, inputs, outputs)

    def command(self, request: Request) -> bytes:
        """Start a process: the worker, or a plain command."""

        shell = self._shell(request)
        body = self._body(request, "CommandLine")
        command = body.findtext("{%s}Command" % soap.NS["rsp"]) or ""
        arguments = [arg.text or "" for arg in body.findall("{%s}Arguments" % soap.NS["rsp"])]
        start = worker_start(command, arguments)
        if start is not None:
            process: Process = WorkerProcess(self.host, self.faults, *start)
            self.host.count("workers")
        else:
            line = " ".join([command.strip(), *arguments])
            process = PlainProcess(self.host, line)
        command_id = str(uuid.uuid4()).upper()
        with self._lock:
            shell.commands[command_id] = process
        self.host.count("processes")
        return soap.command_response(request, command_id)

    def send(self, request: Request) -> bytes:
        """Deliver stdin to a process."""

        shell = self._shell(request)
        body = self._body(request, "Send")
        for stream in body.findall("{%s}Stream" % soap.NS["rsp"]):
            process = self._command(shell, stream.get("CommandId"))
            try:
                # binascii directly: base64.b64decode(validate=True) runs a regex over the text.
                data = binascii.a2b_base64(stream.text or "", strict_mode=True)
            except binascii.Error:
                raise SoapError(soap.ERROR_WSMAN_INVALID_SOAP_BODY, "w:SchemaValidationError",
                                "The stdin stream of this Send is not valid base64.") from None
            end = (stream.get("End") or "").lower() == "true"
            try:
                process.send(data, end)
            except ProcessExited:
                raise _pipe_closed_fault() from None
        if self.faults.send_timeouts > 0:
            # Windows answers a Send with an OperationTimeout when the process has not read its
            # stdin in time; the data still reaches it (ansible/ansible#79016).
            self.faults.send_timeouts -= 1
            raise soap.operation_timeout_fault()
        return soap.send_response(request)

    def receive(self, request: Request) -> bytes:
        """Return output, or wait for it up to OperationTimeout (then fault 2150858793)."""

        shell = self._shell(request)
        body = self._body(request, "Receive")
        desired = body.find("{%s}DesiredStream" % soap.NS["rsp"])
        command_id = desired.get("CommandId") if desired is not None else None
        process = self._command(shell, command_id)
        if not process.wait_output(request.operation_timeout):
            raise soap.operation_timeout_fault()
        if self.shells.get(shell.shell_id) is not shell:
            raise soap.unknown_shell_fault(shell.shell_id)
        limit = max(request.max_envelope_size or 153600, MIN_ENVELOPE)
        budget = (limit - soap.RECEIVE_OVERHEAD) * 3 // 4
        chunks, done, code = process.take_output(budget)
        return soap.receive_response(request, command_id or "", chunks, done, code)

    def signal(self, request: Request) -> bytes:
        """terminate: the command is gone (a running process is killed); ctrl_c/ctrl_break:
        a running process ends with STATUS_CONTROL_C_EXIT."""

        shell = self._shell(request)
        body = self._body(request, "Signal")
        command_id = body.get("CommandId")
        process = self._command(shell, command_id)
        # Compared case-insensitively: pypsrp sends .../signal/Terminate, pywinrm .../terminate.
        code = (body.findtext("{%s}Code" % soap.NS["rsp"]) or "").strip()
        lowered = code.lower()
        if lowered == soap.SIGNAL_TERMINATE:
            process.kill()
            with self._lock:
                shell.commands.pop((command_id or "").upper(), None)
        elif lowered in (soap.SIGNAL_CTRL_C, soap.SIGNAL_CTRL_BREAK):
            process.signal_ctrl_c()
        else:
            raise SoapError(soap.ERROR_WSMAN_INVALID_SOAP_BODY, "w:SchemaValidationError",
                            f"not supported by the simulator: signal code {code}")
        return soap.signal_response(request)

    def delete(self, request: Request) -> bytes:
        """Delete a shell: every process in it ends."""

        shell = self._shell(request)
        with self._lock:
            self.shells.pop(shell.shell_id, None)
        for process in list(shell.commands.values()):
            process.kill()
        return soap.delete_response(request)

    # --- faults and lifecycle --------------------------------------------------------

    def kill_workers(self) -> int:
        """Kill every running worker (fault injection); returns how many."""

        killed = 0
        with self._lock:
            processes = [p for shell in self.shells.values() for p in shell.commands.values()]
        for process in processes:
            if isinstance(process, WorkerProcess) and not process.done:
                process.kill()
                killed += 1
        return killed

    def drop_all(self) -> None:
        """Lose every shell (service restart or server stop); waiting Receives wake up."""

        with self._lock:
            shells = list(self.shells.values())
            self.shells.clear()
        for shell in shells:
            for process in shell.commands.values():
                process.kill()

    def summary(self) -> dict[str, object]:
        """Shells and their commands, for ``show`` and the control endpoint."""

        with self._lock:
            return {
                shell.shell_id: {
                    command_id: {"kind": process.kind, "done": process.done, "exit_code": process.exit_code,
                                 **({"modules": dict(process.modules), "steps": process.steps}
                                    if isinstance(process, WorkerProcess) else {})}
                    for command_id, process in shell.commands.items()
                }
                for shell in self.shells.values()
            }


def sleep_latency(seconds: float) -> None:
    """Sleep for injected latency (no call at all when 0)."""

    if seconds > 0:
        time.sleep(seconds)
