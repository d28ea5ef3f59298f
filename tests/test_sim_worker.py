"""The worker protocol on the simulator, driven with pywinrm's ``winrm.protocol.Protocol`` the
way the connector drives it: one shell, one worker process, one Send and one Receive per step."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from pyinfra_iis import protocol
from pyinfra_iis.remote import module_source
from pyinfra_iis.sim import SimServer
from sim_fixtures import SIM_PASSWORD, SIM_USER


class Worker:
    """A worker on a simulated host, driven step by step."""

    def __init__(self, sim: SimServer, transport: str = "ntlm"):
        self.client = Protocol(sim.url, transport=transport, username=SIM_USER, password=SIM_PASSWORD,
                               operation_timeout_sec=2, read_timeout_sec=5)
        self.shell = self.client.open_shell(codepage=65001, noprofile=True)
        exe, args = protocol.worker_command_line(protocol.module_sha256(module_source()))
        self.command = self.client.run_command(self.shell, exe, args, console_mode_stdin=False, skip_cmd_shell=True)
        self.next_id = 0
        self.buffer = b""
        self.hello = self.reply()  # protocol 2: the worker says whether its module cache had the module
        assert self.hello.id == 0

    def send(self, data: bytes, end: bool = False) -> None:
        self.client.send_command_input(self.shell, self.command, data, end=end)

    def reply(self) -> protocol.Reply:
        deadline = time.monotonic() + 60
        while b"\r\n" not in self.buffer:
            assert time.monotonic() < deadline, "no reply within 60 s"
            try:
                stdout, _, _, done = self.client.get_command_output_raw(self.shell, self.command)
            except WinRMOperationTimeoutError:  # "no output yet": the step is still running
                continue
            self.buffer += stdout
            assert not (done and b"\r\n" not in self.buffer), "worker ended without replying"
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        if not line:  # the worker writes a newline before each reply
            return self.reply()
        reply = protocol.decode_reply_line(line.decode("utf-8"))
        assert reply is not None, line
        return reply

    def step(self, script: str, before: bytes = b"") -> protocol.Reply:
        self.next_id += 1
        self.send(before + protocol.encode_step(self.next_id, script))
        reply = self.reply()
        assert reply.id == self.next_id
        return reply

    def call(self, function: str, payload: dict | None = None) -> protocol.Reply:
        return self.step(str(protocol.remote_call(function, payload or {})))

    def load_module(self) -> protocol.Reply:
        self.next_id += 1
        self.send(protocol.encode_module(self.next_id, module_source()))
        return self.reply()

    def close(self) -> None:
        self.client.cleanup_command(self.shell, self.command)
        self.client.close_shell(self.shell)


def test_module_calls_uploads_and_counters(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    path = r"C:\inetpub\releases\1.0\app.zip"
    hash_call = str(protocol.remote_call("Get-FileHashInfo", {"path": path}))
    not_loaded = worker.step(hash_call)
    assert not_loaded.rc == 1 and "'Get-FileHashInfo' is not recognized" in not_loaded.stderr

    assert worker.load_module().rc == 0
    assert worker.step("Write-Output 'hi'") == protocol.Reply(worker.next_id, 0, "hi\r\n", "")
    assert worker.step("hostname").stdout == sim_server.host.hostname + "\r\n"
    absent = worker.step(hash_call)
    assert (absent.rc, absent.stdout) == (0, '{"exists":false,"size":null,"sha256":null}\r\n')

    data = bytes(range(256)) * 1000  # 256,000 bytes
    digest = hashlib.sha256(data).hexdigest()
    start = worker.call("Start-FileUpload", {"path": path, "size": len(data), "sha256": digest})
    assert start.rc == 0 and '"skipped":false' in start.stdout
    # Data lines split at arbitrary points across Sends: the worker reassembles lines.
    stream = b"".join(protocol.encode_data(data[i:i + 70000]) for i in range(0, len(data), 70000))
    for i in range(0, len(stream), 33333):
        worker.send(stream[i:i + 33333])
    done = worker.call("Complete-FileUpload")
    assert done.rc == 0, done.stderr
    assert done.stdout.strip() == f'{{"path":"{path.replace(chr(92), chr(92) * 2)}","size":{len(data)},"sha256":"{digest}"}}'
    assert (sim_server.state_dir / "C/inetpub/releases/1.0/app.zip").read_bytes() == data
    assert not list((sim_server.state_dir / "C/inetpub/releases/1.0").glob(".*pyinfra-upload"))

    again = worker.call("Start-FileUpload", {"path": path, "size": len(data), "sha256": digest.upper()})
    assert again.stdout.strip() == '{"skipped":true}'
    chunk = worker.call("Read-FileChunk", {"path": path, "offset": 1000, "length": 10})
    assert base64.b64decode(chunk.stdout.strip()) == data[1000:1010]
    assert worker.call("Read-FileChunk", {"path": path, "offset": len(data), "length": 10}).stdout == ""
    missing = worker.call("Read-FileChunk", {"path": r"C:\nope.bin", "offset": 0, "length": 1})
    assert missing.rc == 1 and "file not found" in missing.stderr

    counters = sim_server.host.counters
    assert (counters["shells"], counters["processes"], counters["workers"]) == (1, 1, 1)
    worker.send(b"", end=True)
    stdout, _, rc, done_flag = worker.client.get_command_output_raw(worker.shell, worker.command)
    assert (rc, done_flag) == (0, True)
    worker.close()


def test_upload_failing_verification_leaves_destination_intact(sim_server: SimServer) -> None:
    worker = Worker(sim_server, transport="basic")
    worker.load_module()
    target = sim_server.host.path(r"C:\data\keep.txt")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old content")
    claimed = hashlib.sha256(b"new content").hexdigest()
    worker.call("Start-FileUpload", {"path": r"C:\data\keep.txt", "size": 11, "sha256": claimed})
    worker.send(protocol.encode_data(b"NEW CONTENT"))
    failed = worker.call("Complete-FileUpload")
    assert failed.rc == 1
    assert "failed verification: expected 11 bytes" in failed.stderr and claimed in failed.stderr
    assert target.read_bytes() == b"old content"
    assert not (target.parent / ".keep.txt.pyinfra-upload").exists()
    orphan = worker.step("Write-Output 'x'", before=protocol.encode_data(b"stray"))
    assert orphan.rc == 0
    no_upload = worker.call("Complete-FileUpload")
    assert no_upload.rc == 1 and "no upload is open" in no_upload.stderr and "1 data line(s)" in no_upload.stderr
    worker.close()


def test_worker_errors_and_unsupported_scripts(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    worker.load_module()
    error = worker.step("Write-Error 'went wrong'; Write-Output 'never'")
    assert (error.rc, error.stdout, error.stderr) == (1, "", "went wrong\r\n")
    unsupported = worker.step("Get-Process | Stop-Process")
    assert unsupported.rc == 1 and "not supported by the simulator" in unsupported.stderr
    unknown = worker.call("Set-Nothing", {"a": 1})
    assert unknown.rc == 1 and "'Set-Nothing' is not recognized" in unknown.stderr
    bad = worker.call("Get-FileHashInfo", {"path": r"C:\..\escape"})
    assert bad.rc == 1 and ".." in bad.stderr
    worker.next_id += 1
    worker.send(b"!!not base64!!\n")
    assert worker.reply().id == -1
    worker.close()


def test_receive_without_output_times_out(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    worker.client.operation_timeout_sec = 1
    worker.client.read_timeout_sec = 3
    with pytest.raises(WinRMOperationTimeoutError):
        worker.client.get_command_output_raw(worker.shell, worker.command)
    # Still alive afterwards.
    assert worker.step("Write-Output 'alive'").stdout == "alive\r\n"
    worker.close()


def test_unknown_shell_is_a_wsman_fault(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    worker.close()
    with pytest.raises(WSManFaultError) as caught:
        worker.client.send_command_input(worker.shell, worker.command, b"x\n")
    assert caught.value.wsman_fault_code == 2150858843
    assert "shell was not found" in caught.value.reason or caught.value.fault_subcode == "w:InvalidSelectors"
