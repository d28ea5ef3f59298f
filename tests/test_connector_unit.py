"""The @winrm connector through pyinfra's API, on the fake protocol (no simulator needed)."""

from __future__ import annotations

import io
import logging

import pytest
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import ConnectorDataTypeError, InventoryError

from pyinfra_iis import protocol as wire
from pyinfra_iis.connectors import winrm as connector_module
from pyinfra_iis.connectors.winrm import UnsupportedOnWindows, WinrmConnector, split_lines
from pyinfra_iis.transport.settings import settings_from_host_data, SettingsError
from pyinfra_iis.transport.worker import WorkerSession

from test_transport_fakes import FakeHost, FakeProtocol

NAME = "@winrm/127.0.0.1:5985"
PASSWORD = "Secr3t!'pass"


def make_state(fake: FakeHost, monkeypatch, **data):
    def new_session(self):
        return WorkerSession(lambda: FakeProtocol(fake), endpoint=self.label, module_source="", busy_pause=0)

    monkeypatch.setattr(WinrmConnector, "_new_session", new_session)
    inventory = Inventory(([NAME], {}), override_data={"winrm_user": "admin", "winrm_password": PASSWORD, **data})
    state = State(inventory, Config())
    return state, inventory.get_host(NAME)


def test_names_and_ipv6() -> None:
    assert list(WinrmConnector.make_names_data("[fe80::1]:5986")) == [("@winrm/[fe80::1]:5986", {"winrm_hostname": "fe80::1", "winrm_port": 5986}, [])]
    assert list(WinrmConnector.make_names_data("web1")) == [("@winrm/web1", {"winrm_hostname": "web1"}, [])]
    with pytest.raises(InventoryError):
        list(WinrmConnector.make_names_data("a:b:c"))


def test_defaults_and_endpoints() -> None:
    https = settings_from_host_data("h", {"winrm_user": "u", "winrm_password": "p"})
    assert https.endpoint("h") == "https://h:5986/wsman" and https.server_cert_validation
    http = settings_from_host_data("h", {"winrm_user": "u", "winrm_password": "p", "winrm_port": 5985})
    assert http.endpoint("::1") == "http://[::1]:5985/wsman"
    cli = settings_from_host_data("h", {"ssh_user": "u", "ssh_password": "p", "ssh_port": 5985})
    assert (cli.user, cli.password.reveal(), cli.effective_port) == ("u", "p", 5985)
    own = settings_from_host_data("h", {"ssh_user": "u", "winrm_user": "w", "winrm_password": "p"})
    assert own.user == "w"


@pytest.mark.parametrize(
    "data, words",
    [
        ({"winrm_prot": 1}, ["winrm_prot", "known keys"]),
        ({"winrm_port": "abc"}, ["winrm_port", "integer"]),
        ({"winrm_transport": "digest"}, ["winrm_transport"]),
        ({"winrm_transport": "basic", "winrm_scheme": "http"}, ["winrm_allow_insecure"]),
        ({"winrm_message_encryption": "never", "winrm_scheme": "http"}, ["winrm_allow_insecure"]),
        ({"winrm_transport": "certificate", "winrm_scheme": "http"}, ["HTTPS"]),
        ({"winrm_read_timeout_sec": 10, "winrm_operation_timeout_sec": 20}, ["winrm_read_timeout_sec"]),
    ],
)
def test_bad_host_data_refused_with_host_key_and_fix(data, words) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_host_data("web1", {"winrm_user": "u", "winrm_password": PASSWORD, **data})
    message = str(info.value)
    assert "web1" in message and PASSWORD not in message
    for word in words:
        assert word in message


def test_insecure_opt_in_allows_basic_over_http() -> None:
    settings = settings_from_host_data("h", {"winrm_user": "u", "winrm_password": "p", "winrm_transport": "basic", "winrm_scheme": "http", "winrm_allow_insecure": True})
    assert settings.make_protocol("h").transport.auth_method == "basic"


def test_bad_data_stops_before_connecting(monkeypatch) -> None:
    with pytest.raises(ConnectorDataTypeError, match="winrm_port"):
        make_state(FakeHost(), monkeypatch, winrm_port="x")


def test_password_never_in_repr() -> None:
    settings = settings_from_host_data("h", {"winrm_user": "u", "winrm_password": PASSWORD})
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


def test_run_commands_lines_and_codes(monkeypatch) -> None:
    fake = FakeHost()
    state, host = make_state(fake, monkeypatch)
    connect_all(state)
    ok, output = host.run_shell_command(StringCommand("Write-Output 'two\r\nlines'"))
    assert ok and output.stdout_lines == ["two", "lines"]
    ok, output = host.run_shell_command("exit 3")
    assert not ok and output.stderr_lines == ["failed"]
    ok, _ = host.run_shell_command("exit 3", _success_exit_codes=[0, 3])
    assert ok
    assert fake.processes == 1


def test_sudo_refused(monkeypatch) -> None:
    state, host = make_state(FakeHost(), monkeypatch)
    connect_all(state)
    with pytest.raises(UnsupportedOnWindows, match="not supported on Windows"):
        host.run_shell_command("Write-Output 'x'", _sudo=True)


def test_fact_cache_cleared_only_by_changing_commands(monkeypatch, tmp_path) -> None:
    fake = FakeHost()
    state, host = make_state(fake, monkeypatch)
    connect_all(state)
    cache = host.connector.fact_cache
    cache["state"] = 1
    host.run_shell_command(wire.remote_call("Get-HostState", {}))
    host.run_shell_command(wire.remote_call("Test-Thing", {"a": 1}))
    assert cache == {"state": 1}
    host.run_shell_command(wire.remote_call("Set-IisAppPool", {"name": "api"}))
    assert cache == {}
    (tmp_path / "f").write_bytes(b"data")
    assert host.connector.put_file(str(tmp_path / "f"), r"C:\f")
    cache["state"] = 2
    assert host.connector.put_file(str(tmp_path / "f"), r"C:\f")  # skipped: same hash
    assert cache == {"state": 2}
    assert host.connector.put_file(io.BytesIO(b"other"), r"C:\f")
    assert cache == {}


def test_masked_input_printed_raw_sent(monkeypatch, caplog) -> None:
    from pyinfra.api import output

    printed: list[str] = []
    monkeypatch.setattr(output, "_echo", lambda message=None, **kwargs: printed.append(str(message)))
    fake = FakeHost()
    state, host = make_state(fake, monkeypatch)
    connect_all(state)
    caplog.set_level(logging.DEBUG)
    command = wire.remote_call("Set-AppPoolIdentity", {"password": wire.Secret("hunter2!"), "name": "api"})
    host.run_shell_command(command, print_input=True, print_output=True)
    shown = "\n".join(printed)
    assert "hunter2!" not in shown + caplog.text
    assert "*MASKED*" in shown and "Set-AppPoolIdentity" in shown
    assert any("hunter2!" in script for script in fake.scripts)


def test_auth_failure_is_a_connect_error(monkeypatch, caplog) -> None:
    fake = FakeHost()
    fake.faults = ["auth"]
    state, host = make_state(fake, monkeypatch)
    with pytest.raises(Exception, match="No hosts remaining"):
        connect_all(state)
    assert "authentication failed" in caplog.text
    assert PASSWORD not in caplog.text
    assert fake.requests == 1


def test_split_lines() -> None:
    assert split_lines("") == []
    assert split_lines("a\r\nb\r\n") == ["a", "b"]
    assert split_lines("a\r\n\r\nb") == ["a", "", "b"]


def test_timeout_raises_and_next_command_gets_a_new_worker(monkeypatch) -> None:
    fake = FakeHost()
    state, host = make_state(fake, monkeypatch)
    connect_all(state)
    with pytest.raises(TimeoutError):
        host.run_shell_command("hang", _timeout=0.01)
    ok, output = host.run_shell_command("Write-Output 'alive'")
    assert ok and output.stdout_lines == ["alive"]
    assert fake.processes == 2


def test_unreachable_is_distinct_from_auth(caplog) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    name = f"@winrm/127.0.0.1:{port}"
    inventory = Inventory(([name], {}), override_data={"winrm_user": "admin", "winrm_password": PASSWORD, "winrm_scheme": "http"})
    state = State(inventory, Config())
    with pytest.raises(Exception, match="No hosts remaining"):
        connect_all(state)
    assert "cannot reach the WinRM service" in caplog.text and "authentication" not in caplog.text
    assert PASSWORD not in caplog.text


def test_a_non_xml_or_tls_failure_is_this_hosts_error_with_a_one_line_cause(monkeypatch) -> None:
    # issue 12: a host answering with non-XML (ParseError) or a bad CA path (OSError) must
    # fail that host only, with its name and a one-line cause, never stop the run.
    import xml.etree.ElementTree as ET

    fake = FakeHost()
    state, host = make_state(fake, monkeypatch)
    connect_all(state)
    for error in (ET.ParseError("syntax error: line 1, column 0\nmore"), OSError("Could not find a suitable TLS CA certificate bundle")):
        def broken(*_args, _error=error, **_kwargs):
            raise _error

        monkeypatch.setattr(FakeProtocol, "get_command_output_raw", broken)
        with pytest.raises(connector_module.WinrmTransportFailure) as caught:
            host.run_shell_command("Write-Output 'x'")
        assert "127.0.0.1:5985" in str(caught.value) and "\n" not in str(caught.value)
        monkeypatch.undo()
        state, host = make_state(fake, monkeypatch)
        connect_all(state)
