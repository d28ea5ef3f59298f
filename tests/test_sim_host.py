"""Simulator host model, state persistence, envelope limits, faults, control endpoint and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import winrm
from winrm.exceptions import WinRMTransportError
from winrm.protocol import Protocol

from pyinfra_iis import protocol
from pyinfra_iis.sim import SimHost, SimPathError, SimServer
from pyinfra_iis.sim import server as server_module
from pyinfra_iis.sim.plain import PlainProcess, run_powershell
from sim_fixtures import SIM_PASSWORD, SIM_USER
from test_sim_worker import Worker


def test_path_mapping(tmp_path: Path) -> None:
    host = SimHost(tmp_path / "web01")
    assert host.hostname == "WEB01"
    assert host.path(r"c:\inetpub\wwwroot\web.config") == tmp_path / "web01" / "C" / "inetpub" / "wwwroot" / "web.config"
    assert host.path("D:/a//b/./c") == tmp_path / "web01" / "D" / "a" / "b" / "c"
    assert host.windows_path(host.path(r"C:\x\y.txt")) == r"C:\x\y.txt"
    for bad in [r"relative\file", r"C:no-slash", r"\\server\share\x", r"\\?\C:\x", r"C:\a\..\..\etc", r"C:\a\b?c", ""]:
        with pytest.raises(SimPathError):
            host.path(bad)


def test_state_survives_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "host"
    with SimServer(state_dir, user=SIM_USER, password=SIM_PASSWORD, allow_unencrypted=True) as sim:
        with sim.host.lock:
            sim.host.state["features"]["Web-Server"] = {"installed": True}
        sim.host.save()
        winrm.Session(sim.url, auth=(SIM_USER, SIM_PASSWORD), transport="basic").run_cmd("hostname")
        hostname = sim.host.hostname
        first = sim.host.counters
    assert first["shells"] == 1 and first["processes"] == 1
    with SimServer(state_dir, user=SIM_USER, password=SIM_PASSWORD, allow_unencrypted=True) as again:
        assert again.host.hostname == hostname
        assert again.host.state["features"] == {"Web-Server": {"installed": True}}
        assert again.host.counters["shells"] == 1
        assert winrm.Session(again.url, auth=(SIM_USER, SIM_PASSWORD), transport="basic").run_cmd("hostname").std_out \
            == hostname.encode() + b"\r\n"


def test_receive_is_split_to_fit_max_envelope_size(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    worker.load_module()
    payload = "A" * 200_000  # the reply line is about 267 KB: several Receives at 150 KiB
    reply_line = protocol.encode_reply(protocol.Reply(worker.next_id + 1, 0, payload + "\r\n", ""))
    worker.next_id += 1
    worker.send(protocol.encode_step(worker.next_id, f"Write-Output '{payload}'"))
    sizes, received = [], b""
    original = worker.client.send_message

    def spy(message):
        response = original(message)
        sizes.append(len(response))
        return response

    worker.client.send_message = spy
    while not received.endswith(b"\r\n"):
        stdout, _, _, _ = worker.client.get_command_output_raw(worker.shell, worker.command)
        received += stdout
    assert received == reply_line
    assert len(sizes) >= 3 and max(sizes) <= 153600  # pywinrm's MaxEnvelopeSize header
    worker.close()


def test_request_above_max_envelope_is_refused_with_413(tmp_path: Path) -> None:
    with SimServer(tmp_path / "old", user=SIM_USER, password=SIM_PASSWORD, allow_unencrypted=True,
                   max_envelope_kb=150) as sim:
        client = Protocol(sim.url, transport="basic", username=SIM_USER, password=SIM_PASSWORD)
        shell = client.open_shell()
        command = client.run_command(shell, "powershell.exe", ["-"])
        client.send_command_input(shell, command, b"x" * 100_000)  # fits: about 134 KB of SOAP
        with pytest.raises(WinRMTransportError) as caught:
            client.send_command_input(shell, command, b"x" * 120_000)  # about 161 KB > 150 KiB
        assert caught.value.code == 413
        client.close_shell(shell)


def test_latency_drop_and_control_endpoint(sim_server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = winrm.Session(sim_server.url, auth=(SIM_USER, SIM_PASSWORD), transport="basic")
    slept: list[float] = []
    monkeypatch.setattr(server_module, "sleep_latency", slept.append)  # observed, not timed
    requests.post(sim_server.control_url, json={"latency_ms": 50})
    client.run_cmd("hostname")  # Create, Command, Receive, Signal, Delete
    assert slept == [0.05] * 5
    sim_server.faults.latency = 0

    answer = requests.post(sim_server.control_url, json={"drop_after": 1}).json()
    assert answer["faults"]["drop_in"] == 1
    with pytest.raises(requests.exceptions.ConnectionError):
        client.run_cmd("hostname")  # Create passes, Command is dropped
    assert sim_server.host.counters["dropped"] == 1
    assert client.run_cmd("hostname").status_code == 0

    state = requests.get(sim_server.control_url.replace("control", "state")).json()
    assert state["counters"]["dropped"] == 1 and state["hostname"] == sim_server.host.hostname
    assert requests.post(sim_server.control_url, json={"bogus": 1}).status_code == 400


def test_kill_worker_fail_function_and_restart(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    worker.load_module()
    requests.post(sim_server.control_url, json={"fail_function": {"name": "Get-FileHashInfo", "times": 2}})
    for _ in range(2):
        failed = worker.call("Get-FileHashInfo", {"path": r"C:\x"})
        assert failed.rc == 1 and "simulated failure of Get-FileHashInfo" in failed.stderr
    assert worker.call("Get-FileHashInfo", {"path": r"C:\x"}).rc == 0

    assert sim_server.faults.kill_worker() == 1
    stdout, _, rc, done = worker.client.get_command_output_raw(worker.shell, worker.command)
    assert done and rc != 0
    with pytest.raises(winrm.exceptions.WSManFaultError):
        worker.send(protocol.encode_step(99, "Write-Output 'x'"))

    second = Worker(sim_server)
    sim_server.restart()
    with pytest.raises(winrm.exceptions.WSManFaultError) as caught:
        second.send(protocol.encode_step(1, "Write-Output 'x'"))
    assert caught.value.wsman_fault_code == 2150858843


def test_plain_command_units(tmp_path: Path) -> None:
    host = SimHost(tmp_path / "h")
    result = run_powershell(host, "Write-Error 'a & <b>'")
    assert result.rc == 1
    assert result.stderr.startswith("#< CLIXML\r\n<Objs Version=\"1.1.0.1\"")
    assert "<S S=\"Error\">Write-Error 'a &amp; &lt;b&gt;' : a &amp; &lt;b&gt;_x000D__x000A_</S>" in result.stderr
    assert run_powershell(host, "Write-Error 'x'; Write-Output 'y'").rc == 0
    assert run_powershell(host, "Write-Output \"$env:PATH\"").rc == 1
    process = PlainProcess(host, "cmd /c echo  spaced  text")
    chunks, done, code = process.take_output(1000)
    assert done and code == 0 and chunks == [("stdout", "IHNwYWNlZCAgdGV4dA0K")]


def test_cli_serve_and_show(tmp_path: Path) -> None:
    state_dir = tmp_path / "cli-host"
    serve = subprocess.Popen(
        [sys.executable, "-m", "pyinfra_iis.sim", "serve", "--port", "0", "--state-dir", str(state_dir),
         "--password", SIM_PASSWORD, "--allow-unencrypted"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = json.loads(serve.stdout.readline())
        assert line["url"].startswith("http://127.0.0.1:") and "password" not in line
        client = winrm.Session(line["url"], auth=(SIM_USER, SIM_PASSWORD), transport="basic")
        assert client.run_cmd("hostname").std_out == b"CLI-HOST\r\n"
    finally:
        serve.terminate()
        assert serve.wait(timeout=10) == 0
    shown = subprocess.run([sys.executable, "-m", "pyinfra_iis.sim", "show", "--state-dir", str(state_dir)],
                           capture_output=True, text=True, check=True)
    state = json.loads(shown.stdout)
    assert state["hostname"] == "CLI-HOST"
    assert state["counters"]["shells"] == 1 and state["counters"]["processes"] == 1
    assert state["counters"]["http_requests"] >= 5
