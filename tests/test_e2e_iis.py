"""End to end through the real ``pyinfra`` command line against a simulated host.

The full converge needs every remote function in the PowerShell module
(``pyinfra_iis/remote/PyinfraIis``: the simulator only recognises functions the module
defines); until then those tests skip, naming what is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_iis.remote import read_remote_file  # noqa: F401 - the module must be importable
from pyinfra_iis.sim import SimServer

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
PYINFRA = [sys.executable, "-m", "pyinfra"]
USER, PASSWORD = "admin", "Sim-Pw'1$(x)"
API_KEY = "k3y'\"$(whoami);`n"
NEEDED = ("Install-WindowsFeatureSet", "Install-MsiProduct", "Set-IisConfig", "Set-IisRuntimeState",
          "Initialize-Directory", "Grant-PathAccess", "Get-HostState")


def missing_module_functions() -> list[str]:
    source = "\n".join(p.read_text(encoding="utf-8-sig") for p in (PROJECT / "pyinfra_iis" / "remote" / "PyinfraIis").glob("*.ps1"))
    return [name for name in NEEDED if not re.search(rf"^function {name}\b", source, re.MULTILINE | re.IGNORECASE)]


def write_inventory(tmp: Path, port: int, wrap_secrets: bool = False) -> None:
    msi = tmp / "hph.msi"
    msi.write_bytes(b"not really an msi, the simulator checks the hash only")
    data = {
        "winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", "winrm_transport": "ntlm",
        "iis_extensions": [{"product": "HttpPlatformHandler", "source": "hph.msi", "sha256": hashlib.sha256(msi.read_bytes()).hexdigest()}],
        "iis_app_pools": [{"name": "api", "idle_timeout": 0, "environment_variables": {"API_KEY": API_KEY}}],
        "iis_sites": [{"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api", "log_directory": "C:\\sites\\api\\logs",
                       "bindings": [{"protocol": "http", "port": 8080, "host_name": "api.example.com"},
                                    {"protocol": "http", "port": 8081, "host_name": "api.example.com"}]}],
        "iis_acls": [{"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}],
    }
    text = f"import json\ndata = json.loads({json.dumps(json.dumps(data))})\n"
    if wrap_secrets:  # as the shipped inventories do: pyinfra_iis.Secret, masked by debug-inventory
        text += ("from pyinfra_iis import Secret\n"
                 "data['winrm_password'] = Secret(data['winrm_password'])\n"
                 "env = data['iis_app_pools'][0]['environment_variables']\n"
                 "env['API_KEY'] = Secret(env['API_KEY'])\n")
    (tmp / "inventory.py").write_text(text + f"hosts = [('@winrm/127.0.0.1:{port}', data)]\n")
    (tmp / "deploy.py").write_text((PROJECT / "deploys" / "site.py").read_text())


def host_model(sim) -> str:
    """The simulated host's state without its cost counters."""

    snapshot = {k: v for k, v in sim.host.snapshot().items() if k != "counters"}
    return json.dumps(snapshot, sort_keys=True, default=str)


def pyinfra(tmp: Path, *args: str) -> str:
    result = subprocess.run([*PYINFRA, *args, "inventory.py", "deploy.py"], cwd=tmp, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert API_KEY not in output and PASSWORD not in output
    return output


@pytest.fixture
def sim(tmp_path):
    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as server:
        write_inventory(tmp_path, server.port)
        yield server


def test_dry_run_plans_with_one_fact_call_prints_the_diff_and_changes_nothing(sim, tmp_path):
    before = host_model(sim)
    calls_before = sim.host.counters.get("function_calls", 0)
    output = pyinfra(tmp_path, "--dry", "--diff")
    assert "app pool api: processModel.idleTimeout: '00:20:00' -> '00:00:00'" in output
    assert "app pool api: environmentVariables[API_KEY]: (absent) -> *MASKED*" in output
    assert "site api: binding http *:8080:api.example.com: (absent) -> 'added'" in output
    assert re.search(r"Configure IIS \| App pool api\s+1 ", output)
    assert sim.host.counters.get("function_calls", 0) - calls_before == 1  # one Get-HostState serves all
    assert host_model(sim) == before


@pytest.mark.skipif(bool(missing_module_functions()), reason=f"PowerShell module lacks {', '.join(missing_module_functions())}: the simulator recognises only functions the module defines")
def test_converge_then_nothing_then_drift_is_reported_and_corrected(sim, tmp_path):
    pyinfra(tmp_path, "-y")
    sim.host.reset_counters()
    second = pyinfra(tmp_path, "--dry")
    assert "Change" in second and not re.search(r"Configure IIS \|.*\s1 \(@winrm", second), second
    print("no-op run:", dict(sim.host.counters))
    assert sim.host.counters.get("function_calls", 0) == 1

    config_path = sim.host.path("C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config")
    text = config_path.read_text(encoding="utf-8-sig")
    drifted = text.replace('idleTimeout="00:00:00"', 'idleTimeout="00:20:00"', 1).replace('bindingInformation="*:8081:api.example.com"', 'bindingInformation="*:9999:api.example.com"', 1)
    assert drifted != text
    sim.stop()
    config_path.write_text(drifted, encoding="utf-8")
    sim.start()
    write_inventory(tmp_path, sim.port)  # a restarted server may listen on another free port
    dry = pyinfra(tmp_path, "--dry", "--diff")
    assert "processModel.idleTimeout: '00:20:00' -> '00:00:00'" in dry
    assert "binding http *:8081:api.example.com: (absent) -> 'added'" in dry
    assert "*:9999:" not in dry  # issue 10: an unlisted binding is kept (removal only on request)
    pyinfra(tmp_path, "-y")
    final = config_path.read_text(encoding="utf-8-sig")
    assert 'bindingInformation="*:8081:api.example.com"' in final and "*:9999:api.example.com" in final
    assert "*:8080:api.example.com" in final  # the other binding was never touched
    assert API_KEY not in final  # the secret is in the file only as IIS stores it (not shown here)
    from support.iis_schema import validate_config

    assert validate_config(final) == []
    again = pyinfra(tmp_path, "--dry")
    assert not re.search(r"Configure IIS \|.*\s1 \(@winrm", again), again


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_debug_inventory_masks_secrets_wrapped_in_secret(sim, tmp_path, json_flag):
    # issue 12: debug-inventory printed the WinRM password and app secrets.
    write_inventory(tmp_path, sim.port, wrap_secrets=True)
    result = subprocess.run([*PYINFRA, "inventory.py", "debug-inventory", *json_flag], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("*MASKED*") == 2, output
    for secret in (PASSWORD, API_KEY, json.dumps(API_KEY)[1:-1], json.dumps(PASSWORD)[1:-1]):
        assert secret not in output
    if json_flag:
        hosts = json.loads(result.stdout[result.stdout.index("["):])
        assert hosts[0]["data"]["winrm_password"] == "*MASKED*"


@pytest.mark.skipif(bool(missing_module_functions()), reason=f"PowerShell module lacks {', '.join(missing_module_functions())}: the simulator recognises only functions the module defines")
def test_converge_with_secrets_wrapped_in_secret(sim, tmp_path):
    write_inventory(tmp_path, sim.port, wrap_secrets=True)
    pyinfra(tmp_path, "-y")  # connects with the wrapped password, sends the wrapped app secret
    config = sim.host.path("C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config").read_text(encoding="utf-8-sig")
    assert 'name="API_KEY"' in config and API_KEY not in config
    again = pyinfra(tmp_path, "--dry")
    assert not re.search(r"Configure IIS \|.*\s1 \(@winrm", again), again  # the secret compares equal: no change


def test_injection_values_are_refused_by_the_models(tmp_path):
    from pyinfra_iis.models import InventoryError, load_host_config

    for bad in ("api'; Remove-Item C:\\ -Recurse", "api`n", "a$(x)", 'a"b', "a\nb"):
        with pytest.raises(InventoryError):
            load_host_config("web01", {"iis_app_pools": [{"name": bad}]})
    with pytest.raises(InventoryError):
        load_host_config("web01", {"iis_acls": [{"path": "C:\\a\n;b", "principal": "IIS AppPool\\api", "rights": "Read"}]})
