"""A fake pywinrm ``Protocol`` hosting a Python stand-in of the worker (unit tests only).

It speaks the worker frame protocol of ``pyinfra_iis.protocol`` and the file functions, and
lets a test split stdout across Receives, add noise lines, kill the worker, lose the shell or
drop the connection. Requests are counted like the simulator counts them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import time

import requests
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError

from pyinfra_iis import protocol as wire

_ids = itertools.count(1)


def fault(code: int) -> WSManFaultError:
    return WSManFaultError(500, "Bad HTTP response", "<fault/>", "a fault", wsman_fault_code=code)


class FakeHost:
    """State shared by every Protocol made for one host (survives a reconnect)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.shells: set[str] = set()
        self.requests = 0
        self.processes = 0
        self.shells_opened = 0
        self.split = 1  # stdout of a reply is handed out in this many Receives
        self.noise: list[str] = []  # lines written before the next reply
        self.faults: list[str] = []  # "kill", "lose_shell", "drop", "busy", "auth" (next request)
        self.commands: dict[str, dict] = {}
        self.scripts: list[str] = []
        self.sent: list[int] = []  # sizes of stdin per Send
        self.upload: dict | None = None
        self.module_cached = False  # the module in the host's cache (protocol 2)
        self.module_loads = 0


class FakeProtocol:
    def __init__(self, host: FakeHost, endpoint: str = "http://127.0.0.1:5985/wsman"):
        self.host = host
        self.transport = type("T", (), {"endpoint": endpoint, "close_session": lambda self: None})()

    # -- plumbing ---------------------------------------------------------------------
    def _request(self, shell_id: str | None = None, command_id: str | None = None) -> None:
        self.host.requests += 1
        if self.host.faults:
            kind = self.host.faults[0]
            if kind == "drop":
                # a dropped TCP connection: WinRS shells and commands live on (issue 15, item 3)
                self.host.faults.pop(0)
                raise requests.exceptions.ConnectionError("connection reset")
            if kind == "auth":
                self.host.faults.pop(0)
                raise InvalidCredentialsError("the specified credentials were rejected by the server")
            if kind == "busy":
                self.host.faults.pop(0)
                raise fault(170)
            if kind == "lose_shell":
                self.host.faults.pop(0)
                self.host.shells.clear()
        if shell_id is not None and shell_id not in self.host.shells:
            raise fault(2150858843)
        if command_id is not None and command_id not in self.host.commands:
            raise fault(2150858843)

    def open_shell(self, **kwargs) -> str:
        self._request()
        shell_id = f"S{next(_ids)}"
        self.host.shells.add(shell_id)
        self.host.shells_opened += 1
        return shell_id

    def run_command(self, shell_id, command, arguments=(), console_mode_stdin=True, skip_cmd_shell=False) -> str:
        self._request(shell_id)
        assert skip_cmd_shell and not console_mode_stdin
        assert command == wire.POWERSHELL_EXE
        command_id = f"C{next(_ids)}"
        self.host.processes += 1
        self.host.commands[command_id] = {"stdin": bytearray(), "out": [], "done": False, "module": self.host.module_cached}
        # the worker's hello (protocol 2): whether the module was in the host's cache
        state = "loaded" if self.host.module_cached else "missing"
        self.host.commands[command_id]["out"].append(wire.encode_reply(wire.Reply(0, 0, '{"module":"%s","protocol":2}' % state, "")))
        return command_id

    def send_command_input(self, shell_id, command_id, data, end=False) -> None:
        assert isinstance(data, bytes)
        self._request(shell_id, command_id)
        self.host.sent.append(len(data))
        cmd = self.host.commands[command_id]
        if cmd["done"]:
            raise fault(2150858843)
        cmd["stdin"] += data
        while b"\n" in cmd["stdin"] and not cmd["done"]:
            line, _, rest = bytes(cmd["stdin"]).partition(b"\n")
            cmd["stdin"] = bytearray(rest)
            self._handle(cmd, line)
        if end:
            cmd["done"] = True

    def get_command_output_raw(self, shell_id, command_id):
        self._request(shell_id, command_id)
        cmd = self.host.commands[command_id]
        if cmd["out"]:
            return cmd["out"].pop(0), b"", -1, False
        if cmd["done"]:
            return b"", b"", 0, True
        cmd["idle"] = cmd.get("idle", 0) + 1
        time.sleep(0.005)  # a server holds a Receive until its operation timeout
        assert cmd["idle"] < 200, "the client keeps waiting for output that will never come"
        raise WinRMOperationTimeoutError()

    operation_timeout_sec = 20

    def build_wsman_header(self, **kwargs):
        from winrm.protocol import Protocol

        return Protocol.build_wsman_header(self, **kwargs)

    def send_message(self, message):
        import xml.etree.ElementTree as ET

        root = ET.fromstring(message)
        ns = {"rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
              "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"}
        stream = root.find(".//rsp:Send/rsp:Stream", ns)
        if stream is not None:
            shell_id = root.find(".//w:Selector", ns).text
            data = base64.b64decode(stream.text or "")
            self.send_command_input(shell_id, stream.get("CommandId"), data, end=stream.get("End") == "true")
            return b"<r/>"
        self._request()
        return b"<r/>"

    def close_shell(self, shell_id, close_session=True):
        self._request()
        self.host.shells.discard(shell_id)

    # -- the worker ---------------------------------------------------------------------
    def _handle(self, cmd: dict, line: bytes) -> None:
        frame = wire.decode_request_line(line)
        if frame["op"] == "data":
            cmd["upload"]["data"] += frame["data"]
            return
        if frame["op"] in ("run", "call") and self.host.faults and self.host.faults[0] == "kill":
            self.host.faults.pop(0)
            cmd["done"] = True
            cmd["stdin"] = bytearray()
            return
        if frame["op"] == "call":
            frame = {**frame, "op": "run", "script": f"{frame['name']} -Json {wire.ps_literal(frame['json'])}"}
            if not cmd["module"]:
                reply = wire.Reply(frame["id"], 1, "", f"The term '{frame['name']}' is not recognized\r\n")
                cmd["out"].append(wire.encode_reply(reply))
                return
        if frame["op"] == "module":
            self.host.module_cached = cmd["module"] = True
            self.host.module_loads += 1
            reply = wire.Reply(frame["id"], 0, "", "")
        elif frame["script"] == "hang":
            return  # never replies
        else:
            self.host.scripts.append(frame["script"])
            reply = self._run(cmd, frame["id"], frame["script"])
        out = "".join(n + "\r\n" for n in self.host.noise).encode() + wire.encode_reply(reply)
        self.host.noise = []
        step = max(1, len(out) // self.host.split + 1)
        cmd["out"].extend(out[i:i + step] for i in range(0, len(out), step))

    def _run(self, cmd: dict, step_id: int, script: str) -> wire.Reply:
        import json

        call = wire.parse_remote_call(script)
        if call is None:
            if script.startswith("Write-Output "):
                return wire.Reply(step_id, 0, script[len("Write-Output "):].strip("'") + "\r\n", "")
            if script.startswith("exit "):
                return wire.Reply(step_id, int(script[5:]), "", "failed\r\n")
            return wire.Reply(step_id, 0, "", "")
        name, args = call
        files = self.host.files
        if name == "Start-FileUpload":
            current = files.get(args["path"])
            if current is not None and hashlib.sha256(current).hexdigest() == args["sha256"]:
                return wire.Reply(step_id, 0, '{"skipped":true}\r\n', "")
            cmd["upload"] = {**args, "data": b""}
            return wire.Reply(step_id, 0, '{"skipped":false,"temp":"T"}\r\n', "")
        if name == "Complete-FileUpload":
            upload, cmd["upload"] = cmd.get("upload"), None
            if upload is None:
                return wire.Reply(step_id, 1, "", "no upload open\r\n")
            digest = hashlib.sha256(upload["data"]).hexdigest()
            if digest != upload["sha256"]:
                return wire.Reply(step_id, 1, "", "hash mismatch\r\n")
            files[upload["path"]] = upload["data"]
            body = {"path": upload["path"], "size": len(upload["data"]), "sha256": digest}
            return wire.Reply(step_id, 0, json.dumps(body) + "\r\n", "")
        if name == "Stop-FileUpload":
            cmd["upload"] = None
            return wire.Reply(step_id, 0, "", "")
        if name == "Get-FileHashInfo":
            data = files.get(args["path"])
            body = {"exists": data is not None, "size": None if data is None else len(data), "sha256": None if data is None else hashlib.sha256(data).hexdigest()}
            return wire.Reply(step_id, 0, json.dumps(body) + "\r\n", "")
        if name == "Read-FileChunk":
            data = files[args["path"]][args["offset"]:args["offset"] + args["length"]]
            return wire.Reply(step_id, 0, base64.b64encode(data).decode() + "\r\n", "")
        return wire.Reply(step_id, 0, json.dumps({"called": name}) + "\r\n", "")


def make_session(host: FakeHost | None = None, **kwargs):
    from pyinfra_iis.transport.worker import WorkerSession

    host = host or FakeHost()
    session = WorkerSession(lambda: FakeProtocol(host), endpoint="fake:5985", module_source="", busy_pause=0, **kwargs)
    return host, session
