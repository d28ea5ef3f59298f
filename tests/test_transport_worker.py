"""WorkerSession framing and recovery, and CLIXML decoding, against a fake protocol."""

from __future__ import annotations

import pytest

from pyinfra_iis import protocol as wire
from pyinfra_iis.transport.clixml import decode_stderr, unescape
from pyinfra_iis.transport.errors import AuthenticationFailed, TransportError, HostUnreachable, ShellLost, WorkerDied
from pyinfra_iis.transport.winrs import classify
from pyinfra_iis.transport.worker import max_stdin_bytes

from test_transport_fakes import FakeHost, fault, make_session

CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
    '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>'
    '<S S="Error">Get-Item : Cannot find path _x0027_C:\\caf\u00e9_x0027__x000D__x000A_</S>'
    '<S S="Error">emoji _xD83D__xDE00_ tab_x0009_end_x000D__x000A_</S>'
    '<S S="Verbose">not an error_x000D__x000A_</S></Objs>'
)


def test_clixml_keeps_only_errors_and_decodes_every_escape() -> None:
    text = decode_stderr(CLIXML)
    assert text == "Get-Item : Cannot find path 'C:\\caf\u00e9'\r\nemoji \U0001F600 tab\tend\r\n"
    assert "Preparing" not in text and "not an error" not in text


def test_clixml_escaped_underscore_and_lone_surrogate() -> None:
    assert unescape("a_x005F_x0041_b") == "a_x0041_b"
    assert unescape("_xD83D_") == "\ufffd"
    assert unescape("_x00e9_") == "\u00e9"


def test_clixml_plain_text_untouched_and_mixed_blocks() -> None:
    assert decode_stderr("plain error\r\n") == "plain error\r\n"
    mixed = "native tool said no\r\n" + CLIXML
    assert decode_stderr(mixed).startswith("native tool said no\r\nGet-Item")


def test_clixml_truncated_document_falls_back() -> None:
    broken = '#< CLIXML\r\n<Objs Version="1.1.0.1"><S S="Error">half &amp; half_x000D__x000A_</S><Obj </Objs>'
    assert decode_stderr(broken) == "half & half\r\n"


def test_one_send_and_one_receive_per_step_and_one_process() -> None:
    host, session = make_session()
    session.start()
    session.run("Write-Output 'first'")  # the first step also loads the module (not cached yet)
    before = (host.requests, host.processes)
    for index in range(5):
        result = session.run(f"Write-Output 'hi{index}'")
        assert (result.rc, result.stdout, result.stderr) == (0, f"hi{index}\r\n", "")
    assert host.requests - before[0] == 10
    assert host.processes == before[1] == 1


@pytest.mark.parametrize("split", [2, 7, 400])
def test_reply_split_over_receives_with_noise(split: int) -> None:
    host, session = make_session()
    session.start()
    session.run("Write-Output 'warm'")  # the first step also loads the module
    host.split = split
    host.noise = ["native noise", "\u00e9t\u00e9 \u2713"]
    result = session.run("Write-Output 'x'")
    assert result.stdout == "native noise\r\n\u00e9t\u00e9 \u2713\r\nx\r\n"
    assert result.rc == 0


def test_nonzero_exit_code_and_stderr() -> None:
    host, session = make_session()
    result = session.run("exit 3")
    assert (result.rc, result.stderr) == (3, "failed\r\n")


def test_killed_worker_is_rebuilt_and_step_resent_once() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["kill"]
    result = session.run("Write-Output 'again'")
    assert result.stdout == "again\r\n"
    assert session.stats.resent == 1 and host.processes == 2
    assert host.shells_opened == 1  # the shell was kept, only the worker replaced
    assert host.scripts.count("Write-Output 'again'") == 1  # the dead worker never ran it


def test_lost_shell_is_rebuilt() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["lose_shell"]
    assert session.run("Write-Output 'a'").stdout == "a\r\n"
    assert host.shells_opened == 2 and session.stats.resent == 1


def test_dropped_connection_is_rebuilt() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["drop"]
    assert session.run("Write-Output 'b'").stdout == "b\r\n"
    assert host.shells_opened == 1  # reconnected to the same shell (issue 15, item 3)


def test_second_failure_is_raised_not_retried_forever() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["drop"] * 10  # each attempt reconnects 3 times, the step is tried twice: bounded
    with pytest.raises(TransportError):
        session.run("Write-Output 'c'")
    assert host.scripts.count("Write-Output 'c'") == 0
    assert session.stats.resent == 1


def test_busy_is_retried_in_place() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["busy", "busy"]
    assert session.run("Write-Output 'd'").stdout == "d\r\n"
    assert session.stats.resent == 0


def test_auth_failure_is_reported_at_once() -> None:
    host, session = make_session()
    host.faults = ["auth"]
    with pytest.raises(AuthenticationFailed):
        session.start()
    assert host.requests == 1


def test_unreachable_before_connect() -> None:
    import requests

    error = classify(requests.exceptions.ConnectionError("refused"), "h:5985", connected=False)
    assert isinstance(error, HostUnreachable)
    assert isinstance(classify(fault(0x803381A6)), ShellLost)
    assert isinstance(classify(fault(2150858843)), ShellLost)
    assert isinstance(classify(fault(232)), WorkerDied)  # "The pipe is being closed" on Send


def test_big_frames_split_under_envelope() -> None:
    host, session = make_session(max_envelope_kb=8)
    session.start()
    script = "Write-Output '" + "y" * 20000 + "'"
    assert session.run(script).stdout.startswith("yyy")
    assert max(host.sent) <= max_stdin_bytes(8)
    assert (max_stdin_bytes(8) * 4 // 3) + 4096 <= 8 * 1024


def test_worker_death_reports_exit_code() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["kill", "kill"]
    with pytest.raises(WorkerDied):
        session.run("Write-Output 'z'")


def test_dropped_connections_reconnect_to_the_same_shell_and_worker() -> None:
    # WinRS shells and commands outlive the TCP connection (issue 15, item 3): a drop is
    # followed by a new HTTP session on the same shell and command, never a new shell that
    # would kill a step still running (msiexec, pip).
    host, session = make_session()
    session.start()
    session.run("Write-Output 'first'")
    host.faults = ["drop"] * 3
    assert session.run("Write-Output 'kept'").stdout == "kept\r\n"
    assert (host.shells_opened, host.processes) == (1, 1)
    assert session.stats.reconnects == 3 and session.stats.rebuilds == 0


def test_failed_rebuild_is_retried_on_the_next_step() -> None:
    host, session = make_session()
    session.start()
    host.faults = ["drop"] * 12  # more drops than one step reconnects and rebuilds through
    with pytest.raises(TransportError):
        session.run("Write-Output 'lost'")
    host.faults = []
    assert session.run("Write-Output 'back'").stdout == "back\r\n"
