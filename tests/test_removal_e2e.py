"""Removal on request through the real ``pyinfra`` command line against a simulated host
(issue 10): a site, an application pool, a binding and an IIS application go by host data
``present: false``; ``--dry --diff`` shows each removal and changes nothing, the run removes
them, the next run changes nothing. A pool a site still uses is refused before anything runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pyinfra_iis.sim import SimServer

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "Sim-Pw'1$(x)"
CONFIG = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"

API_SITE = {"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
            "bindings": [{"protocol": "http", "port": 8080, "host_name": "api.example.com"},
                         {"protocol": "http", "port": 8081, "host_name": "api.example.com"}]}
LEGACY_SITE = {"name": "legacy", "physical_path": "C:\\sites\\legacy", "app_pool": "old", "bindings": [{"protocol": "http", "port": 9090}]}
EVERYTHING = {
    "iis_app_pools": [{"name": "api"}, {"name": "old"}],
    "iis_sites": [API_SITE, LEGACY_SITE],
    "iis_applications": [{"site": "api", "path": "/v2", "physical_path": "C:\\sites\\v2", "app_pool": "old",
                          "virtual_directories": [{"path": "/static", "physical_path": "C:\\sites\\static"}]}],
}
REMOVALS = {
    "iis_app_pools": [{"name": "api"}, {"name": "old", "present": False}],
    "iis_sites": [{**API_SITE, "bindings": [API_SITE["bindings"][0], {**API_SITE["bindings"][1], "present": False}]},
                  {"name": "legacy", "present": False}],
    "iis_applications": [{"site": "api", "path": "/v2", "present": False}],
}


def write_inventory(tmp: Path, port: int, iis_data: dict) -> None:
    data = {"winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", "winrm_transport": "ntlm", **iis_data}
    text = f"import json\ndata = json.loads({json.dumps(json.dumps(data))})\nhosts = [('@winrm/127.0.0.1:{port}', data)]\n"
    (tmp / "inventory.py").write_text(text)
    (tmp / "deploy.py").write_text((PROJECT / "deploys" / "site.py").read_text())


def pyinfra(tmp: Path, *args: str, ok: bool = True) -> str:
    result = subprocess.run([sys.executable, "-m", "pyinfra", *args, "inventory.py", "deploy.py"], cwd=tmp,
                            capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, output
    assert PASSWORD not in output
    return output


def parsed(text: str) -> dict:
    root = ET.fromstring(text)
    sites = root.find("system.applicationHost/sites").findall("site")
    return {
        "pools": [p.get("name") for p in root.find("system.applicationHost/applicationPools").findall("add")],
        "sites": {s.get("name"): {"bindings": [b.get("bindingInformation") for b in s.find("bindings").findall("binding")],
                                  "applications": [a.get("path") for a in s.findall("application")]} for s in sites},
    }


@pytest.fixture
def sim(tmp_path):
    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as server:
        write_inventory(tmp_path, server.port, EVERYTHING)
        pyinfra(tmp_path, "-y")
        yield server


def config_text(sim) -> str:
    return sim.host.path(CONFIG).read_text(encoding="utf-8-sig")


def test_removals_dry_run_shows_each_then_the_run_removes_them_then_nothing_changes(sim, tmp_path):
    first = parsed(config_text(sim))
    assert "old" in first["pools"] and "legacy" in first["sites"] and "/v2" in first["sites"]["api"]["applications"]
    assert "*:8081:api.example.com" in first["sites"]["api"]["bindings"]

    write_inventory(tmp_path, sim.port, REMOVALS)
    before = config_text(sim)
    dry = pyinfra(tmp_path, "--dry", "--diff")
    for line in ("site api: binding http *:8081:api.example.com: 'present' -> (absent)",
                 "site api: application /v2: 'present' -> (absent)",
                 "site api: application /v2: virtualDirectory /static: 'present' -> (absent)",
                 "site legacy: 'present' -> (absent)",
                 "site legacy: binding http *:9090:: 'present' -> (absent)",
                 "app pool old: 'present' -> (absent)"):
        assert line in dry, dry
    assert "Will remove site legacy (its files stay)" in dry
    assert config_text(sim) == before  # --dry changed nothing

    pyinfra(tmp_path, "-y")
    after = parsed(config_text(sim))
    assert after["pools"].count("old") == 0 and "api" in after["pools"]
    assert "legacy" not in after["sites"]
    assert after["sites"]["api"] == {"bindings": ["*:8080:api.example.com"], "applications": ["/"]}

    again = pyinfra(tmp_path, "--dry", "--diff")
    assert "(absent)" not in again and not re.search(r"Configure IIS \|.*\s1 \(@winrm", again), again


def test_a_pool_still_used_by_a_site_on_the_host_is_refused_before_anything_runs(sim, tmp_path):
    # "legacy" is not in the inventory any more, but the host still has it, in pool "old"
    write_inventory(tmp_path, sim.port, {"iis_app_pools": [{"name": "api"}, {"name": "old", "present": False}],
                                         "iis_sites": [{**API_SITE, "physical_path": "C:\\sites\\api\\next"}],
                                         "iis_applications": [{"site": "api", "path": "/v2", "present": False}]})
    before = config_text(sim)
    output = pyinfra(tmp_path, "-y", ok=False)
    assert "application pool 'old' is not removed: it is still used by site legacy;" in output, output
    assert config_text(sim) == before  # not even the site api's new physical path was written
