"""Worker protocol 2 and the WinRS transport as Windows behaves (issue 15 items 1-11, issue 9
"Secrets in script text" and "Load the module once per host per module version").

Each test fails on the protocol-1 code: a Send answered with an OperationTimeout escaped as a
raw pywinrm exception, remote calls travelled as script text, the module was sent on every
run, a dropped connection deleted the shell that was still running the step, ...
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError

from pyinfra_iis import protocol as wire
from pyinfra_iis.remote import host_module_source, read_remote_file
from pyinfra_iis.sim import SimServer
from pyinfra_iis.transport.errors import ConnectionDropped, HttpError, ShellLost, TransportError, WorkerError
from pyinfra_iis.transport.settings import settings_from_host_data
from pyinfra_iis.transport.winrs import WinRSShell, classify
from pyinfra_iis.transport.worker import WorkerSession, complete_stderr, max_stdin_bytes
from test_transport_fakes import FakeHost, FakeProtocol, make_session

WORKER = read_remote_file("worker.ps1")
FILES = read_remote_file("PyinfraIis/10-files.ps1")


def _session(sim: SimServer, **kwargs) -> WorkerSession:
    settings = settings_from_host_data(f"@winrm/127.0.0.1:{sim.port}", {
        "winrm_user": "admin", "winrm_password": sim.password, "winrm_scheme": "http", "winrm_port": sim.port})
    return WorkerSession(lambda: settings.make_protocol("127.0.0.1"), endpoint=f"127.0.0.1:{sim.port}", busy_pause=0, **kwargs)


def _fault(code: int, reason: str = "x") -> WSManFaultError:
    return WSManFaultError(500, reason, reason, reason, wsman_fault_code=code)


# --- item 1: OperationTimeout on Send; classified elsewhere; cleanup catches everything ------------


def test_an_operation_timeout_on_send_means_accepted_not_failed() -> None:
    shell = WinRSShell(FakeProtocol(FakeHost()), endpoint="fake")
    shell.shell_id = "S"

    def timeout(_message):
        raise WinRMOperationTimeoutError()

    shell.protocol.send_message = timeout
    shell.send_envelope(b"<e/>")  # no exception: the data is delivered when the process reads


def test_an_operation_timeout_on_command_signal_or_delete_is_a_transport_error() -> None:
    host = FakeHost()
    shell = WinRSShell(FakeProtocol(host), endpoint="fake")
    shell.open()

    def timeout(*_args, **_kwargs):
        raise WinRMOperationTimeoutError()

    shell.protocol.run_command = timeout
    with pytest.raises(ConnectionDropped):
        shell.run("x.exe")


def test_cleanup_never_raises_whatever_fails() -> None:
    host, session = make_session()
    session.start()

    def boom(*_args, **_kwargs):
        raise RuntimeError("anything at all")

    session.shell.protocol.close_shell = boom
    session.close()  # no exception


def test_a_send_timeout_from_the_simulator_is_survived(sim_server) -> None:
    session = _session(sim_server)
    try:
        session.start()
        sim_server.faults.send_timeouts = 2  # Windows: the process has not read its stdin yet
        assert session.run("Write-Output 'a'").stdout == "a\r\n"
        assert session.run("Write-Output 'b'").stdout == "b\r\n"
        assert session.stats.rebuilds == 0 and session.stats.reconnects == 0
    finally:
        session.close()


def test_the_first_frame_waits_for_the_hello_when_large() -> None:
    host, session = make_session()
    session.start()
    big = "Write-Output '" + "x" * 40_000 + "'"
    assert session.run(big).stdout.startswith("xxx")
    # a large first frame is only sent once the hello (then the module) came back
    assert max(host.sent) > 16_000 and host.sent.index(max(host.sent)) >= 1


# --- item 2: exit N ------------------------------------------------------------------------------


def test_worker_invokes_with_exposed_flow_control_and_catches_exit() -> None:
    assert "ExposeFlowControlExceptions = $true" in WORKER
    assert "[System.Management.Automation.ExitException]" in WORKER and "$inner.Argument" in WORKER
    assert "$ps.Invoke(@(), $output, $settings)" in WORKER  # partial output kept in $output


def test_exit_keeps_partial_output_in_the_simulator(sim_server) -> None:
    session = _session(sim_server)
    try:
        result = session.run("Write-Output 'partial'; exit 3")
        assert (result.rc, result.stdout) == (3, "partial\r\n")
    finally:
        session.close()


# --- item 3: reconnect to the same shell, duplicate ids -------------------------------------------


def test_a_dropped_reply_is_answered_again_not_run_twice(sim_server) -> None:
    session = _session(sim_server)
    try:
        session.run("Write-Output 'warm'")
        calls = sim_server.host.counters.get("function_calls", 0)
        sim_server.faults.at_step(1, "drop_reply")  # the step runs, the Receive with its reply is lost
        result = session.run(str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\x"})))
        assert result.rc == 0 and '"exists":false' in result.stdout
        assert sim_server.host.counters["function_calls"] == calls + 1  # ran once
        assert sim_server.host.counters["shells"] == 1 and session.stats.rebuilds == 0
    finally:
        session.close()


# --- item 4: Constrained Language Mode --------------------------------------------------------------


def test_constrained_language_mode_is_reported_with_its_exit_code(sim_server) -> None:
    assert WORKER.splitlines()[3].startswith("if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage')")
    sim_server.faults.language_mode = "ConstrainedLanguage"
    session = _session(sim_server)
    try:
        with pytest.raises(TransportError) as caught:
            session.run("Write-Output 'x'")
        assert "ConstrainedLanguage" in str(caught.value) and "exit code 3" in str(caught.value)
    finally:
        session.close()


# --- item 5: fault classification -------------------------------------------------------------------


@pytest.mark.parametrize("code", [995, 1726])
def test_shell_gone_errors_rebuild(code: int) -> None:
    assert isinstance(classify(_fault(code)), ShellLost)


def test_1460_and_http_400_reconnect_and_413_names_the_setting() -> None:
    assert isinstance(classify(_fault(1460)), ConnectionDropped)
    assert isinstance(classify(WinRMTransportError("http", 400, "bad request")), ConnectionDropped)
    too_large = classify(WinRMTransportError("http", 413, "too large"))
    assert isinstance(too_large, HttpError) and "winrm_max_envelope_kb" in str(too_large)


# --- items 6-8: sharing, scope, framing -----------------------------------------------------------


def test_hashing_and_downloads_share_read_write_and_delete() -> None:
    assert "[System.IO.FileShare]::ReadWrite -bor [System.IO.FileShare]::Delete" in FILES
    assert "FileShare]::Read)" not in FILES
    assert FILES.count("Open-SharedFile -Path") == 2  # Get-FileSha256Info and Read-FileChunk


def test_replace_passes_a_null_string_not_an_empty_one() -> None:
    # issue 9 defect 3: $null reaches File.Replace as '' and .NET Framework throws
    assert "[System.IO.File]::Replace($Temp, $Path, [NullString]::Value)" in FILES
    assert "Move-FileIntoPlace -Temp $upload.Temp -Path $upload.Path" in FILES
    assert not re.search(r"::Replace\([^)]*\$null\)", FILES)


def test_a_failed_replace_never_loses_the_file() -> None:
    # ReplaceFile's ERROR_UNABLE_TO_MOVE_REPLACEMENT (1176) leaves the destination gone and the temp file in
    # place: the temp file is moved instead of being deleted by the caller's clean-up.
    body = FILES.split("function Move-FileIntoPlace")[1].split("\nfunction ")[0]
    assert "-not [System.IO.File]::Exists($Path) -and [System.IO.File]::Exists($Temp)" in body
    assert "Start-Sleep" in body  # sharing violations (antivirus) are retried


def test_steps_run_in_a_local_scope_with_preferences_reset() -> None:
    assert "AddScript([string]$Frame.script, $true)" in WORKER
    step = WORKER.split("function Invoke-Step")[1]
    # A module call stops at its first error; a script step gets powershell.exe's 'Continue', because 5.1
    # turns every stderr line of a native program into an error record (PowerShell #3996), and those
    # records are reported as text without failing the step; an explicit exit code wins over LASTEXITCODE.
    assert "$preference = 'Stop'" in step and "$preference = 'Continue'" in step and "ErrorActionPreference = $preference" in step
    assert "NativeCommandError*" in step and "-not $exited" in step
    assert "SetLocation($home0)" in WORKER


def test_the_reply_marker_is_found_anywhere_in_a_line() -> None:
    reply = wire.encode_reply(wire.Reply(4, 0, "ok", "")).decode().strip()
    before, found = wire.split_reply_line("native tool wrote no newline" + reply)
    assert before == "native tool wrote no newline" and found == wire.Reply(4, 0, "ok", "")
    assert wire.encode_reply(wire.Reply(1, 0, "", "")).startswith(b"\r\n")  # a newline first
    assert "SetStdHandle" in WORKER and "'NUL'" in WORKER


def test_noise_without_a_newline_before_the_reply_reaches_the_step() -> None:
    host, session = make_session()
    session.start()
    session.run("Write-Output 'warm'")
    host.noise = []
    original = wire.encode_reply

    def glued(reply):  # text with no newline right before the marker
        return b"tail-without-newline" + original(reply).lstrip(b"\r\n")

    wire.encode_reply = glued
    try:
        result = session.run("Write-Output 'x'")
    finally:
        wire.encode_reply = original
    assert result.stdout == "tail-without-newline\r\nx\r\n"


def test_module_load_has_a_time_limit() -> None:
    from pyinfra_iis.transport import worker

    assert worker.MODULE_LOAD_TIMEOUT and worker.HELLO_TIMEOUT


# --- items 9-11: envelope, quotas, path, CLIXML ---------------------------------------------------


def test_sends_leave_a_tenth_of_the_envelope_free() -> None:
    for kb in (150, 500):
        assert (max_stdin_bytes(kb) * 4 // 3) + 4096 <= kb * 1024 * 0.9


def test_shells_are_created_with_a_short_idle_timeout() -> None:
    seen = {}
    protocol = FakeProtocol(FakeHost())
    opened = protocol.open_shell
    protocol.open_shell = lambda **kwargs: (seen.update(kwargs), opened())[1]
    WinRSShell(protocol, endpoint="fake").open()
    assert seen["idle_timeout"] == "PT600S"


def test_powershell_is_started_under_the_hosts_system_root() -> None:
    exe, _ = wire.worker_command_line("", "D:\\Windows")
    assert exe == "D:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    settings = settings_from_host_data("@winrm/h", {"winrm_user": "u", "winrm_password": "p", "winrm_system_root": "E:\\WINNT"})
    assert settings.system_root == "E:\\WINNT"


def test_memory_quota_is_named_when_the_worker_dies() -> None:
    host, session = make_session()
    session.start()
    session.run("Write-Output 'warm'")
    host.faults = ["kill", "kill"]
    with pytest.raises(TransportError) as caught:
        session.run("Write-Output 'x'")
    assert "MaxMemoryPerShellMB" in str(caught.value) or "exited" in str(caught.value)


def test_a_clixml_block_cut_at_a_reply_is_kept_whole_for_the_next_step() -> None:
    buffer = bytearray(b'#< CLIXML\r\n<Objs Version="1.1.0.1"><S S="Error">first_x000D__x000A_</S></Objs><Objs Version="1.1.0.1"><S S="Err')
    assert complete_stderr(buffer) == '#< CLIXML\r\n<Objs Version="1.1.0.1"><S S="Error">first_x000D__x000A_</S></Objs>'
    buffer += b'or">second</S></Objs>'
    from pyinfra_iis.transport.clixml import decode_stderr

    assert decode_stderr(complete_stderr(buffer)) == "second"


# --- issue 9: calls as data, Script Block Logging, module cache -------------------------------------


def test_a_remote_call_is_sent_as_data() -> None:
    call = str(wire.remote_call("Set-IisAppPool", {"name": "api", "password": "it's secret"}))
    frame = wire.decode_request_line(wire.encode_step(7, call))
    assert frame == {"id": 7, "op": "call", "name": "Set-IisAppPool", "json": '{"name":"api","password":"it\'s secret"}'}
    assert "AddCommand('PyinfraIis\\' + $Frame.name).AddParameter('Json', [string]$Frame.json)" in WORKER
    script = wire.decode_request_line(wire.encode_step(8, "Get-Date; Write-Output 1"))
    assert script["op"] == "run"


def test_the_module_is_cached_on_the_host_and_sent_only_when_missing(sim_server) -> None:
    first = _session(sim_server)
    try:
        first.run(str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\x"})))
        assert first.stats.module_sends == 1
    finally:
        first.close()
    cached = sim_server.host.path(f"C:\\ProgramData\\pyinfra-iis\\module\\{wire.module_sha256(host_module_source())}.ps1")
    assert cached.read_text(encoding="utf-8") == host_module_source()
    second = _session(sim_server)
    try:
        result = second.run(str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\x"})))
        assert result.rc == 0 and second.stats.module_sends == 0
    finally:
        second.close()
    cached.write_text(host_module_source() + "\n# tampered", encoding="utf-8")  # SHA-256 no longer matches
    third = _session(sim_server)
    try:
        assert third.run(str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\x"}))).rc == 0
        assert third.stats.module_sends == 1
    finally:
        third.close()


def test_the_module_cache_folder_is_for_administrators_only() -> None:
    assert "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)" in WORKER  # owner BA, protected, SYSTEM + Administrators
    assert "GetOwner([Security.Principal.SecurityIdentifier])" in WORKER and "AreAccessRulesProtected" in WORKER
    assert "(Get-WorkerSha256 $bytes) -eq $ModuleSha256" in WORKER  # verified before loading


def test_the_worker_command_line_names_the_module_hash() -> None:
    digest = wire.module_sha256(host_module_source())
    script = wire.decode_powershell_command(wire.worker_command_line(digest)[1][-1])
    assert script.startswith(f"$ModuleSha256 = '{digest}'\n")
    assert wire.split_worker_script(script) == (digest, script[script.index("\n") + 1:])
    with pytest.raises(wire.ProtocolError):
        wire.worker_script("'; evil")


def test_show_exposes_the_script_block_log(sim_server, tmp_path: Path, capsys) -> None:
    from pyinfra_iis.sim.__main__ import main

    session = _session(sim_server)
    try:
        session.run("Write-Output 'logged'")
        session.run(str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\not-logged"})))
    finally:
        session.close()
    sim_server.host.save()
    assert main(["show", "--state-dir", str(sim_server.host.state_dir)]) == 0
    import json

    log = json.loads(capsys.readouterr().out)["script_block_log"]
    assert log[0].startswith("$ModuleSha256 = ") and "Write-Output 'logged'" in log
    assert host_module_source() in log
    assert not any("not-logged" in text for text in log)  # a call is data, not a script block


def test_connection_errors_are_classified() -> None:
    assert isinstance(classify(requests.exceptions.ConnectionError("x"), connected=True), ConnectionDropped)
    assert classify(_fault(2150858843)).__class__ is ShellLost
    with pytest.raises(WorkerError):
        raise WorkerError("x")


# --- issue 12: bounded time and memory --------------------------------------------------------------


def test_clixml_with_many_unclosed_blocks_decodes_in_linear_time() -> None:
    import time

    from pyinfra_iis.transport.clixml import decode_stderr

    text = "#< CLIXML\r\n" + '<Objs Version="1"><S S="Error">x' * 4000  # 128 KB: 11 s before
    started = time.perf_counter()
    decode_stderr(text)
    assert time.perf_counter() - started < 1.0
    assert len(decode_stderr("e" * 3_000_000)) < 1_100_000  # capped, the end kept


def test_an_endless_line_fails_the_step_instead_of_filling_memory(monkeypatch) -> None:
    from pyinfra_iis.transport import worker

    monkeypatch.setattr(worker, "MAX_PENDING_BYTES", 1000)
    host, session = make_session()
    session.start()
    session.run("Write-Output 'warm'")
    original = wire.encode_reply
    monkeypatch.setattr(wire, "encode_reply", lambda reply: b"x" * 5000)
    with pytest.raises(WorkerError):
        session.run("Write-Output 'x'")
    monkeypatch.setattr(wire, "encode_reply", original)


def test_insecure_validation_and_user_info_host_names_are_refused() -> None:
    from pyinfra.api.exceptions import InventoryError

    from pyinfra_iis.connectors.winrm import parse_target, valid_host_name
    from pyinfra_iis.transport.settings import SettingsError

    with pytest.raises(SettingsError):
        settings_from_host_data("@winrm/h", {"winrm_user": "u", "winrm_password": "p", "winrm_server_cert_validation": False})
    assert not settings_from_host_data("@winrm/h", {"winrm_user": "u", "winrm_password": "p", "winrm_server_cert_validation": False,
                                                    "winrm_allow_insecure": True}).server_cert_validation
    with pytest.raises(InventoryError):
        parse_target("web01.example.com@127.0.0.1")
    assert parse_target("[fe80::1]:5986") == ("fe80::1", 5986) and valid_host_name("web-01.example.com")
    assert not valid_host_name("user@host") and not valid_host_name("host/path")


def test_a_step_has_a_default_time_limit() -> None:
    settings = settings_from_host_data("@winrm/h", {"winrm_user": "u", "winrm_password": "p"})
    assert settings.step_timeout_sec == 3600


def test_a_module_send_lost_beyond_reconnects_is_sent_again_on_the_next_step() -> None:
    host, session = make_session()
    session.start()
    exchange, lost = session._exchange, []

    def flaky(frame, step_id, timeout, starting=False):
        if frame is not None and wire.decode_request_line(frame)["op"] == "module" and len(lost) < 2:
            lost.append(step_id)
            raise ConnectionDropped("fake: the module's Send was lost, reconnects exhausted")
        return exchange(frame, step_id, timeout, starting)

    session._exchange = flaky
    call = str(wire.remote_call("Get-FileHashInfo", {"path": "C:\\x"}))
    with pytest.raises(TransportError):
        session.run(call)
    # same worker (its hello already came), module still missing: it is sent before the call
    result = session.run(call)
    assert result.rc == 0 and host.module_loads == 1 and host.processes == 1
