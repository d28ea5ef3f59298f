"""``winrm_transport=kerberos`` without the Kerberos extra is refused by validation with what to
install (issue 12: it was accepted and failed at connect with "pykerberos is not installed").
No KDC exists here: only the clear error path is tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_iis.sim import SimServer
from pyinfra_iis.transport import settings as settings_module
from pyinfra_iis.transport.settings import SettingsError, settings_from_host_data

PYINFRA = str(Path(__file__).resolve().parent.parent / "pyproject.toml")
DATA = {"winrm_user": "deploy@EXAMPLE.COM", "winrm_transport": "kerberos"}


def test_kerberos_without_the_extra_names_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(settings_module, "kerberos_available", lambda: False)
    with pytest.raises(SettingsError) as info:
        settings_from_host_data("web01.example.com", DATA)
    message = str(info.value)
    assert "web01.example.com" in message and "winrm_transport" in message
    assert "pip install 'pyinfra-iis[kerberos]'" in message and "kinit" in message


def test_kerberos_with_the_extra_is_accepted_without_a_password(monkeypatch) -> None:
    monkeypatch.setattr(settings_module, "kerberos_available", lambda: True)
    assert settings_from_host_data("web01.example.com", DATA).transport == "kerberos"


def test_the_extra_is_declared() -> None:
    import tomllib

    project = tomllib.loads(Path(PYINFRA).read_text(encoding="utf-8"))["project"]
    assert any(req.startswith("pywinrm[kerberos]") for req in project["optional-dependencies"]["kerberos"])


@pytest.mark.skipif(settings_module.kerberos_available(), reason="pykerberos is installed here")
def test_cli_refuses_kerberos_before_any_request(tmp_path) -> None:
    with SimServer(tmp_path / "sim", user="admin", password="pw-1", port=0, allow_unencrypted=True) as sim:
        command = [sys.executable, "-m", "pyinfra", f"@winrm/127.0.0.1:{sim.port}", "--user", "admin",
                   "--data", "winrm_scheme=http", "--data", "winrm_transport=kerberos", "-y", "exec", "--", "Write-Output 'x'"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "pip install 'pyinfra-iis[kerberos]'" in output, output
        assert "Traceback" not in output
        assert sim.host.counters.get("http_requests", 0) == 0
