"""Certificate validation end to end: the real ``@winrm`` connector against a simulated host
serving WinRM over HTTPS with a certificate from a throw-away test CA (tests/sim_fixtures.py).

A trusted CA connects; an unknown CA, a host name the certificate does not name, and
``winrm_server_cert_validation=false`` without ``winrm_allow_insecure`` each fail that host
with a one-line message naming it; the password never appears.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all

from pyinfra_iis.sim import SimServer
from sim_fixtures import SIM_PASSWORD, TestCA

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


@pytest.fixture
def tls_sim(tmp_path: Path, test_ca: TestCA):
    """A simulated host on HTTPS whose certificate names only ``localhost``; plain HTTP
    bodies are refused (``allow_unencrypted=False``), as on a default Windows host."""

    context = test_ca.server_context(["localhost"])
    with SimServer(tmp_path / "tls-host", user="admin", password=SIM_PASSWORD, port=0, allow_unencrypted=False,
                   ssl_context=context) as sim:
        yield sim


def _connect(name: str, **data):
    host_data = {"winrm_user": "admin", "winrm_password": SIM_PASSWORD, "winrm_scheme": "https", **data}
    inventory = Inventory(([name], {}), override_data=host_data)
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host(name)


def _fails_with(caplog, name: str, words: list[str], **data) -> str:
    with pytest.raises(Exception, match="No hosts remaining"):
        _connect(name, **data)
    lines = [line for line in caplog.text.splitlines() if "failed" in line or "WinRM" in line]
    text = "\n".join(lines)
    assert any(all(word.lower() in line.lower() for word in words) for line in lines), caplog.text
    assert SIM_PASSWORD not in caplog.text
    return text


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_trusted_ca_connects_over_https(tls_sim, test_ca, transport) -> None:
    state, host = _connect(f"@winrm/localhost:{tls_sim.port}", winrm_ca_trust_path=str(test_ca.ca_path),
                           winrm_transport=transport)
    try:
        ok, out = host.run_shell_command("Write-Output 'over-tls'")
        assert ok and out.stdout_lines == ["over-tls"]
    finally:
        disconnect_all(state)


def test_unknown_ca_fails_this_host_with_a_clear_error(tls_sim, tmp_path, caplog) -> None:
    other = TestCA(tmp_path / "other-ca", name="someone else's CA")
    _fails_with(caplog, f"@winrm/localhost:{tls_sim.port}", [f"localhost:{tls_sim.port}", "certificate verify failed"],
                winrm_ca_trust_path=str(other.ca_path))
    assert tls_sim.host.counters.get("shells", 0) == 0


def test_system_trust_store_does_not_know_the_test_ca(tls_sim, caplog) -> None:
    _fails_with(caplog, f"@winrm/localhost:{tls_sim.port}", [f"localhost:{tls_sim.port}", "certificate verify failed"])


def test_a_host_name_the_certificate_does_not_name_fails(tls_sim, test_ca, caplog) -> None:
    # The certificate names localhost only; 127.0.0.1 is the same listener under another name.
    _fails_with(caplog, f"@winrm/127.0.0.1:{tls_sim.port}", [f"127.0.0.1:{tls_sim.port}", "127.0.0.1"],
                winrm_ca_trust_path=str(test_ca.ca_path))
    assert "certificate" in caplog.text.lower()


def test_validation_off_without_allow_insecure_is_refused_before_any_request(tls_sim, caplog) -> None:
    before = tls_sim.host.counters.get("http_requests", 0)
    with pytest.raises(Exception) as caught:
        _connect(f"@winrm/localhost:{tls_sim.port}", winrm_server_cert_validation=False)
    assert "winrm_allow_insecure" in str(caught.value) + caplog.text
    assert tls_sim.host.counters.get("http_requests", 0) == before


def test_validation_off_with_allow_insecure_connects_and_warns(tls_sim, caplog) -> None:
    state, host = _connect(f"@winrm/127.0.0.1:{tls_sim.port}", winrm_server_cert_validation=False,
                           winrm_allow_insecure=True)
    try:
        assert host.run_shell_command("Write-Output 'insecure'")[0]
    finally:
        disconnect_all(state)
    assert "certificate validation is OFF" in caplog.text


def test_cli_over_https_with_the_test_ca(tls_sim, test_ca) -> None:
    command = [PYINFRA, f"@winrm/localhost:{tls_sim.port}", "--user", "admin", "--password", SIM_PASSWORD,
               "--data", "winrm_scheme=https", "--data", f"winrm_ca_trust_path={test_ca.ca_path}",
               "-y", "exec", "--", "Write-Output 'cli-tls'"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cli-tls" in result.stdout + result.stderr
