"""The @winrm connector against the simulated Windows host (pyinfra_iis.sim).

Through pyinfra's Python API (Inventory/State/connect_all, host.connector) and through the
real ``pyinfra`` command line in a subprocess. Costs are read from the simulator's counters,
never timed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all

from pyinfra_iis import protocol as wire
from pyinfra_iis.sim import SimServer

PASSWORD = "Secr3t!'pass"
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


@pytest.fixture
def sim_server(tmp_path: Path):
    """A fresh simulated host on a free loopback port (NTLM with message encryption)."""

    with SimServer(tmp_path / "sim-state", user="admin", password=PASSWORD, port=0, allow_unencrypted=True, max_envelope_kb=500) as sim:
        yield sim


def connect(sim, **data):
    name = f"@winrm/127.0.0.1:{sim.port}"
    host_data = {"winrm_user": "admin", "winrm_password": PASSWORD, "winrm_scheme": "http", **data}
    inventory = Inventory(([name], {}), override_data=host_data)
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host(name)


def counters(sim) -> dict:
    return dict(sim.host.counters)


def delta(before: dict, after: dict, key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def test_commands_cost_two_requests_and_no_process(sim_server) -> None:
    state, host = connect(sim_server)
    try:
        ok, out = host.run_shell_command("Write-Output 'warm'")
        assert ok and out.stdout_lines == ["warm"]
        before = counters(sim_server)
        for index in range(10):
            ok, out = host.run_shell_command(f"Write-Output 'n{index}'")
            assert ok and out.stdout_lines == [f"n{index}"]
        after = counters(sim_server)
        assert delta(before, after, "http_requests") <= 20
        assert delta(before, after, "processes") == 0
        assert delta(before, after, "shells") == 0
    finally:
        disconnect_all(state)


def _file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    with open(path, "wb") as handle:
        remaining = size
        block = os.urandom(min(size, 1 << 20)) if size else b""
        while remaining > 0:
            handle.write(block[:remaining])
            remaining -= len(block)
    return path


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 50 * 1024 * 1024])
def test_put_get_and_skip(sim_server, tmp_path: Path, size: int) -> None:
    state, host = connect(sim_server)
    try:
        source = _file(tmp_path, "src.bin", size)
        remote = rf"C:\inetpub\files\f{size}.bin"
        assert host.connector.put_file(str(source), remote)
        before = counters(sim_server)
        assert host.connector.put_file(str(source), remote)  # same hash: nothing else sent
        assert delta(before, counters(sim_server), "http_requests") == 2
        target = tmp_path / "back.bin"
        assert host.connector.get_file(remote, str(target))
        assert _sha(target) == _sha(source)
    finally:
        disconnect_all(state)


def test_non_ascii_name_and_content(sim_server, tmp_path: Path) -> None:
    state, host = connect(sim_server)
    try:
        content = "Grüße, 世界 ☃ — ünïcödé\r\n".encode("utf-8")
        source = tmp_path / "ünï.txt"
        source.write_bytes(content)
        remote = "C:\\données\\fïchïer ☃ 世界.txt"
        assert host.connector.put_file(str(source), remote)
        target = tmp_path / "back ☃.txt"
        assert host.connector.get_file(remote, str(target))
        assert target.read_bytes() == content
        info = wire.remote_call("Get-FileHashInfo", {"path": remote})
        ok, out = host.run_shell_command(info)
        assert ok and hashlib.sha256(content).hexdigest() in out.stdout
    finally:
        disconnect_all(state)


@pytest.mark.parametrize("fault", ["drop", "kill", "restart"])
def test_faults_survived_step_resent_once(sim_server, fault: str) -> None:
    state, host = connect(sim_server)
    try:
        assert host.run_shell_command("Write-Output 'before'")[0]
        session = host.connector.session
        if fault == "drop":
            sim_server.faults.drop_after(0)
        elif fault == "kill":
            sim_server.faults.kill_worker()
        else:
            sim_server.restart()
        ok, out = host.run_shell_command("Write-Output 'after'")
        assert ok and out.stdout_lines == ["after"]
        if fault == "drop":
            # the shell and the worker outlive the connection: reconnect, nothing rebuilt (issue 15, item 3)
            assert session.stats.reconnects == 1 and session.stats.rebuilds == session.stats.resent == 0
        else:
            assert session.stats.resent == 1 and session.stats.rebuilds == 1
        assert host.run_shell_command("Write-Output 'again'")[0]
        assert session.stats.resent == (0 if fault == "drop" else 1)
    finally:
        disconnect_all(state)


def test_upload_survives_a_killed_worker(sim_server, tmp_path: Path) -> None:
    state, host = connect(sim_server)
    try:
        source = _file(tmp_path, "a.bin", 2 * 1024 * 1024)
        session = host.connector.session
        from pyinfra_iis.transport import files

        def progress(count: int, seen=[]) -> None:
            seen.append(count)
            if len(seen) == 2:
                sim_server.faults.kill_worker()

        result = files.put(session, str(source), r"C:\up\a.bin", on_sent=progress)
        assert result.attempts == 2
        target = tmp_path / "b.bin"
        assert host.connector.get_file(r"C:\up\a.bin", str(target))
        assert _sha(target) == _sha(source)
    finally:
        disconnect_all(state)


def test_auth_failure_reported_at_once(sim_server, caplog) -> None:
    before = counters(sim_server)
    with pytest.raises(Exception, match="No hosts remaining"):
        connect(sim_server, winrm_password="wrong")
    assert "authentication failed" in caplog.text
    assert "wrong" not in caplog.text.replace("authentication failed", "")
    assert delta(before, counters(sim_server), "shells") == 0
    assert delta(before, counters(sim_server), "http_requests") <= 3


def _cli(sim, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [
        PYINFRA, f"@winrm/127.0.0.1:{sim.port}", "--user", "admin", "--password", PASSWORD,
        "--data", "winrm_scheme=http", "--data", "winrm_transport=ntlm", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent)


def test_cli_exec(sim_server) -> None:
    result = _cli(sim_server, "-y", "exec", "--", "Write-Output 'hi'")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hi" in result.stdout + result.stderr


def test_cli_debug_never_shows_the_password(sim_server) -> None:
    result = _cli(sim_server, "-vvv", "--debug", "-y", "exec", "--", "Write-Output 'hi'")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Write-Output" in output  # the verbose output is really there
    assert PASSWORD not in output


def test_cli_debug_all_never_shows_the_password(sim_server) -> None:
    result = _cli(sim_server, "-vvv", "--debug-all", "-y", "exec", "--", "Write-Output 'hi'")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PASSWORD not in output


def test_cli_bad_data_refused(sim_server) -> None:
    result = _cli(sim_server, "--data", "winrm_prot=5", "-y", "exec", "--", "Write-Output 'hi'")
    assert result.returncode != 0
    assert "winrm_prot" in result.stdout + result.stderr


def test_one_shell_one_worker_module_once_and_clean_disconnect(sim_server) -> None:
    state, host = connect(sim_server)
    for index in range(3):
        assert host.run_shell_command(f"Write-Output '{index}'")[0]
    shells = sim_server.shells.summary()
    assert len(shells) == 1
    (commands,) = shells.values()
    (worker,) = commands.values()
    assert worker["kind"] == "worker" and not worker["done"]
    assert list(worker["modules"]) == [wire.MODULE_NAME]
    disconnect_all(state)
    assert sim_server.shells.summary() == {}


def test_cli_port_option(sim_server) -> None:
    command = [
        PYINFRA, "@winrm/127.0.0.1", "--port", str(sim_server.port), "--user", "admin", "--password", PASSWORD,
        "--data", "winrm_scheme=http", "-y", "exec", "--", "Write-Output 'via-port'",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "via-port" in result.stdout + result.stderr
