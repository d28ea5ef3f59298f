"""The simulator checked with real third-party WinRM clients: pywinrm's Session and pypsrp's
WinRS, over Basic and NTLM (with message encryption over HTTP)."""

from __future__ import annotations

import pytest
import requests
import winrm
from pypsrp.shell import Process, SignalCode, WinRS
from pypsrp.wsman import WSMan
from winrm.exceptions import InvalidCredentialsError

from pyinfra_iis import protocol
from pyinfra_iis.sim import SimServer
from sim_fixtures import SIM_PASSWORD, SIM_USER

TRANSPORTS = ["basic", "ntlm"]


def session(sim: SimServer, transport: str, password: str = SIM_PASSWORD) -> winrm.Session:
    return winrm.Session(sim.url, auth=(SIM_USER, password), transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pywinrm_run_cmd(sim_server: SimServer, transport: str) -> None:
    client = session(sim_server, transport)
    echo = client.run_cmd("cmd", ["/c", "echo", "hi"])
    assert (echo.status_code, echo.std_out, echo.std_err) == (0, b"hi\r\n", b"")
    name = client.run_cmd("hostname")
    assert (name.status_code, name.std_out) == (0, sim_server.host.hostname.encode() + b"\r\n")
    who = client.run_cmd("whoami")
    assert who.std_out == f"{sim_server.host.hostname}\\admin".lower().encode() + b"\r\n"
    assert client.run_cmd("cmd", ["/c", "exit", "7"]).status_code == 7


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pywinrm_run_ps(sim_server: SimServer, transport: str) -> None:
    client = session(sim_server, transport)
    out = client.run_ps("Write-Output 'hi'")
    assert (out.status_code, out.std_out) == (0, b"hi\r\n")
    failed = client.run_ps("Write-Error 'boom'")
    assert failed.status_code == 1
    # pywinrm cleaned the CLIXML: the message is there, the XML is gone.
    assert b"boom" in failed.std_err and b"<Objs" not in failed.std_err
    assert client.run_ps("Write-Output 'x'; exit 3").status_code == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unsupported_commands_fail_explicitly(sim_server: SimServer, transport: str) -> None:
    client = session(sim_server, transport)
    native = client.run_cmd("ipconfig", ["/all"])
    assert native.status_code != 0 and b"not supported by the simulator: ipconfig /all" in native.std_err
    script = client.run_ps("Get-Service WinRM")
    assert script.status_code != 0 and b"not supported by the simulator" in script.std_err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_password_is_rejected(sim_server: SimServer, transport: str) -> None:
    with pytest.raises(InvalidCredentialsError):
        session(sim_server, transport, password="wrong").run_cmd("hostname")


def test_basic_over_http_refused_unless_unencrypted_allowed(tmp_path) -> None:
    with SimServer(tmp_path / "h", user=SIM_USER, password=SIM_PASSWORD, allow_unencrypted=False) as sim:
        with pytest.raises(InvalidCredentialsError):
            session(sim, "basic").run_cmd("hostname")
        # NTLM with message encryption is fine on the same host.
        assert session(sim, "ntlm").run_cmd("hostname").status_code == 0
        # A plain (unencrypted) body on an NTLM-authenticated connection is refused too.
        ntlm = requests.Session()
        ntlm.auth = __import__("requests_ntlm").HttpNtlmAuth(SIM_USER, SIM_PASSWORD)
        assert ntlm.post(sim.url, data=b"").status_code == 200
        assert ntlm.post(sim.url, data=b"<s:Envelope/>").status_code == 401


def test_ntlm_traffic_is_encrypted(sim_server: SimServer) -> None:
    seen = []
    original = requests.Session.send

    def spy(self, request, **kwargs):
        response = original(self, request, **kwargs)
        seen.append((request.headers.get("Content-Type", ""), request.body or b"", response.headers.get("Content-Type", ""),
                     response.content))
        return response

    requests.Session.send = spy
    try:
        assert session(sim_server, "ntlm").run_cmd("cmd", ["/c", "echo", "needle-text"]).std_out == b"needle-text\r\n"
    finally:
        requests.Session.send = original
    soap_exchanges = [entry for entry in seen if entry[1]]
    assert soap_exchanges, "no SOAP request was sent"
    for request_type, body, response_type, content in soap_exchanges:
        assert request_type.startswith("multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\"")
        assert response_type.startswith("multipart/encrypted")
        assert b"Envelope" not in body and b"Envelope" not in content


@pytest.mark.parametrize("auth", TRANSPORTS)
def test_pypsrp_winrs(sim_server: SimServer, auth: str) -> None:
    wsman = WSMan("127.0.0.1", port=sim_server.port, username=SIM_USER, password=SIM_PASSWORD, ssl=False, auth=auth,
                  encryption="never" if auth == "basic" else "auto")
    with wsman, WinRS(wsman) as shell:
        echo = Process(shell, "cmd.exe", ["/c", "echo", "hi"])
        echo.invoke()
        echo.signal(SignalCode.TERMINATE)
        assert (echo.rc, echo.stdout, echo.stderr) == (0, b"hi\r\n", b"")
        encoded = protocol.encode_powershell_command("Write-Output 'from powershell'")
        ps = Process(shell, "powershell.exe", ["-NoProfile", "-NonInteractive", "-EncodedCommand", encoded])
        ps.invoke()
        ps.signal(SignalCode.TERMINATE)
        assert (ps.rc, ps.stdout) == (0, b"from powershell\r\n")
        failing = Process(shell, "powershell.exe", ["-EncodedCommand", protocol.encode_powershell_command("exit 4")])
        failing.invoke()
        assert failing.rc == 4


def test_pypsrp_reads_max_envelope_size(tmp_path) -> None:
    with SimServer(tmp_path / "old", user=SIM_USER, password=SIM_PASSWORD, max_envelope_kb=150) as sim:
        wsman = WSMan("127.0.0.1", port=sim.port, username=SIM_USER, password=SIM_PASSWORD, ssl=False, auth="ntlm")
        with wsman:
            wsman.update_max_payload_size()
            assert wsman.max_envelope_size == 150 * 1024


def test_powershell_script_on_stdin(sim_server: SimServer) -> None:
    wsman = WSMan("127.0.0.1", port=sim_server.port, username=SIM_USER, password=SIM_PASSWORD, ssl=False, auth="ntlm")
    with wsman, WinRS(wsman) as shell:
        process = Process(shell, "powershell.exe", ["-NoProfile", "-"])
        process.begin_invoke()
        process.send(b"Write-Output 'line one'\r\nWrite-Output 'line two'\r\n", end=True)
        process.end_invoke()
        assert (process.rc, process.stdout) == (0, b"line one\r\nline two\r\n")
