"""Issue 10, end to end: adopt servers that already run other sites.

A simulated host is seeded with a whole applicationHost.config modeled on a real server
(``tests/data/servers/``: a shared-hosting server with 30+ sites and pools, an ARR front end)
and converged through the real ``pyinfra`` command line with ``deploys/site.py``. The files
before and after are compared SEMANTICALLY (XML parsed, comments and whitespace dropped,
attributes as sets, collection items matched by their key): the only differences are the
declared ones. A second inventory names existing objects with a few attributes: only those
change. A last run changes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pyinfra_iis.models.features import WindowsFeatures
from pyinfra_iis.sim import SimServer
from pyinfra_iis.sim.functions.features import install_windows_feature_set
from pyinfra_iis.sim.iis.store import config_file, load_config, runtime, sync_runtime

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
SERVERS = PROJECT / "tests" / "data" / "servers"
USER, PASSWORD = "admin", "Sim-Pw'1$(x)"

#: Attributes that identify a collection item among its siblings (IIS collection keys).
KEYS = ("name", "path", "id", "protocol", "bindingInformation", "value", "fileExtension", "segment", "verb", "statusCode",
        "input", "address", "mimeType")


def _key(element: ET.Element) -> str:
    parts = [f"{name}={element.get(name)}" for name in KEYS if element.get(name) is not None]
    return f"{element.tag}[{','.join(parts)}]" if parts else element.tag


def semantic_diff(before: str, after: str) -> list[str]:
    """Differences between two configuration texts: ``+ path`` (element added), ``- path``
    (removed), ``~ path@attribute: old -> new``. Comments, whitespace and attribute order do
    not count (``xml.etree`` drops comments; attributes compare as dicts)."""

    def walk(a: ET.Element | None, b: ET.Element | None, where: str, out: list[str]) -> None:
        if a is None:
            out.append(f"+ {where}")
            return
        if b is None:
            out.append(f"- {where}")
            return
        for name in sorted(set(a.attrib) | set(b.attrib)):
            if a.get(name) != b.get(name):
                out.append(f"~ {where}@{name}: {a.get(name)} -> {b.get(name)}")
        left = {_key(child): child for child in a}
        right = {_key(child): child for child in b}
        for key in list(left) + [k for k in right if k not in left]:
            walk(left.get(key), right.get(key), f"{where}/{key}", out)

    out: list[str] = []
    walk(ET.fromstring(before.encode("utf-8")), ET.fromstring(after.encode("utf-8")), "", out)
    return out


def seed(sim: SimServer, fixture: str) -> None:
    """Make the simulated host a server with IIS (the inventory's default features) whose
    applicationHost.config is ``fixture``."""

    install_windows_feature_set(sim.host, {"names": WindowsFeatures().all_names()})
    with sim.host.lock:
        config_file(sim.host).write_text((SERVERS / fixture).read_text(encoding="utf-8"), encoding="utf-8")
        sim.host.state["iis_runtime"] = {}
        runtime(sim.host)
        sync_runtime(sim.host, load_config(sim.host))
        sim.host.save()


def write_inventory(tmp: Path, port: int, pools: list, sites: list) -> None:
    data = {"winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", "winrm_transport": "ntlm",
            "iis_app_pools": pools, "iis_sites": sites}
    (tmp / "inventory.py").write_text(f"import json\ndata = json.loads({json.dumps(json.dumps(data))})\n"
                                      f"hosts = [('@winrm/127.0.0.1:{port}', data)]\n")
    (tmp / "deploy.py").write_text((PROJECT / "deploys" / "site.py").read_text())


def pyinfra(tmp: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pyinfra", *args, "inventory.py", "deploy.py"], cwd=tmp,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def config_text(sim: SimServer) -> str:
    return config_file(sim.host).read_text(encoding="utf-8-sig")


def converge_and_compare(tmp: Path, sim: SimServer, pools: list, sites: list) -> list[str]:
    """Run the inventory, check a second run changes nothing; return the semantic diff."""

    write_inventory(tmp, sim.port, pools, sites)
    before = config_text(sim)
    pyinfra(tmp, "-y")
    after = config_text(sim)
    from support.iis_schema import validate_config

    assert validate_config(after) == []
    sim.host.reset_counters()
    again = pyinfra(tmp, "-y")
    assert config_text(sim) == after, "a second run changed the file"
    assert sim.host.counters.get("function_calls", 0) == 1, again  # one Get-HostState, nothing else
    return semantic_diff(before, after)


NEW_POOL = {"name": "python-api"}
NEW_SITE = {"name": "python-api", "physical_path": "C:\\sites\\python-api\\current", "app_pool": "python-api",
            "bindings": [{"protocol": "http", "port": 80, "host_name": "api.example.org"}]}
ADDED = ["+ /system.applicationHost/applicationPools/add[name=python-api]",
         "+ /system.applicationHost/sites/site[name=python-api,id={id}]",
         "+ /location[path=python-api]"]


@pytest.fixture
def sim(tmp_path):
    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as server:
        yield server


def _site_id(sim: SimServer, name: str) -> str:
    return re.search(rf'<site name="{re.escape(name)}" id="(\d+)"', config_text(sim)).group(1)


def test_shared_hosting_server_adding_a_site_and_pool_changes_nothing_else(sim, tmp_path):
    seed(sim, "shared-hosting.applicationHost.config")
    diff = converge_and_compare(tmp_path, sim, [NEW_POOL], [NEW_SITE])
    assert diff == [line.format(id=_site_id(sim, "python-api")) for line in ADDED], diff
    new_pool = load_config(sim.host).section_element("system.applicationHost/applicationPools")
    pool = next(p for p in new_pool if p.get("name") == "python-api")
    assert pool.get("enable32BitAppOnWin64") == "false" and pool.get("managedRuntimeVersion") == ""  # defaults say true / v4.0
    assert 'maxAllowedContentLength="50000000"' in config_text(sim)


def test_shared_hosting_server_naming_existing_objects_changes_only_what_they_declare(sim, tmp_path):
    seed(sim, "shared-hosting.applicationHost.config")
    # cust05: physicalPath written %SystemDrive%\inetpub\sites\cust05, an IPv6 binding written
    # [2001:DB8:0:0::50]:80:, a recycling schedule, managedRuntimeVersion="", two more bindings.
    pools = [{"name": "cust05", "queue_length": 2000}, {"name": "DefaultAppPool"}]
    sites = [
        {"name": "cust05.example.net", "physical_path": "C:\\inetpub\\sites\\cust05", "app_pool": "cust05", "preload_enabled": True,
         "bindings": [{"protocol": "http", "ip": "2001:db8::50", "port": 80}]},
        {"name": "Default Web Site", "physical_path": "%SystemDrive%\\inetpub\\wwwroot", "app_pool": "DefaultAppPool",
         "bindings": [{"protocol": "http", "port": 80}]},
    ]
    diff = converge_and_compare(tmp_path, sim, pools, sites)
    assert diff == [
        "~ /system.applicationHost/applicationPools/add[name=cust05]@queueLength: None -> 2000",
        "~ /system.applicationHost/sites/site[name=cust05.example.net,id=104]/application[path=/]@preloadEnabled: None -> true",
    ], diff


def test_arr_front_end_keeps_its_catch_all_bindings_rules_and_proxy(sim, tmp_path):
    seed(sim, "arr-frontend.applicationHost.config")
    new_site = {**NEW_SITE, "bindings": [{"protocol": "http", "port": 8080, "host_name": "api.example.org"}]}
    diff = converge_and_compare(tmp_path, sim, [NEW_POOL], [new_site])
    assert diff == [line.format(id=_site_id(sim, "python-api")) for line in ADDED], diff
    # then name the front end itself with one of its two bindings and a declared state
    sites = [{"name": "frontend", "physical_path": "%SystemDrive%\\inetpub\\frontend", "app_pool": "frontend", "state": "Started",
              "anonymous_auth_as_pool_identity": True, "bindings": [{"protocol": "http", "port": 80}]}]
    diff = converge_and_compare(tmp_path, sim, [{"name": "frontend"}], sites)
    assert diff == ["+ /location[path=frontend]"], diff  # anonymousAuthentication userName="": declared
    text = config_text(sim)
    assert 'bindingInformation="*:443:"' in text and 'bindingInformation="*:80:"' in text and 'name="proxy-to-app"' in text


def test_a_binding_held_by_a_site_outside_the_inventory_stops_the_run_before_any_change(sim, tmp_path):
    seed(sim, "arr-frontend.applicationHost.config")
    before = config_text(sim)
    clash = {**NEW_SITE, "bindings": [{"protocol": "http", "port": 80}]}  # *:80: is the front end's
    write_inventory(tmp_path, sim.port, [NEW_POOL], [clash])
    result = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "inventory.py", "deploy.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "'python-api'" in output and "'frontend'" in output and "*:80:" in output, output
    assert config_text(sim) == before  # the new pool was not created either
