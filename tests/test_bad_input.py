"""Issue 5, part 2: bad inventory values are refused BEFORE ANY CONNECTION, in ONE report.

Each case changes one value of a valid inventory (IIS data and release data of one host) and
checks that :mod:`pyinfra_iis.inventory_check` names the host, the field path and the reason.
The CLI tests run the real ``pyinfra`` against a simulated host with a multi-host inventory
whose data is wrong on two hosts: pyinfra exits non-zero, prints one report naming both hosts'
problems, and the simulator has served ZERO HTTP requests (a valid inventory, as a control,
does reach it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import ConnectError

from pyinfra_iis.inventory_check import (
    INVALID_MESSAGE,
    OTHERS_INVALID_MESSAGE,
    check_hosts,
    check_state,
    require_valid_inventory,
)
from pyinfra_iis.demo import write_pfx
from pyinfra_iis.sim import SimServer
from test_preflight import write_artifact

PYINFRA = [sys.executable, "-m", "pyinfra"]
PROJECT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "Wr0ng-Inv'pw$(x)"
PFX_PASSWORD = "pfx-Pw-7f3a'\"9"
APP_SECRET = "app-Secret-c41e'$(id)"


def valid_data(folder: Path) -> dict[str, Any]:
    """A valid host: IIS (extension, certificate, pool, https+http site, ACL) and a release."""

    files = {"hph.msi": b"msi stand-in", "python-3.12.7-amd64.exe": b"installer stand-in"}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    write_pfx(folder / "api.pfx", PFX_PASSWORD)  # the preflight opens it with its password
    write_artifact(folder / "api-1.0.0.zip")  # and checks the release artifact
    return {
        "iis_features": {"app_init": True},
        "iis_extensions": [{"product": "HttpPlatformHandler", "source": str(folder / "hph.msi"),
                            "sha256": hashlib.sha256(files["hph.msi"]).hexdigest()}],
        "iis_certificates": [{"name": "api", "pfx": str(folder / "api.pfx"), "password": PFX_PASSWORD, "store": "WebHosting"}],
        "iis_app_pools": [{"name": "api", "idle_timeout": "00:00:00"}],
        "iis_sites": [{"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
                       "log_directory": "C:\\sites\\api\\iislogs",
                       "bindings": [{"protocol": "https", "port": 443, "host_name": "api.example.com", "certificate": "api", "ssl_flags": 1},
                                    {"protocol": "http", "port": 80, "host_name": "api.example.com"}]}],
        "iis_acls": [{"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}],
        "release_app": {"app_name": "api", "root": "C:\\sites\\api", "python_version": "3.12", "health_deadline": "2m",
                        "app_settings": {"LOG_LEVEL": "info"}, "app_secrets": {"API_SECRET_KEY": APP_SECRET}},
        "release_site": "api",
        "release_python": {"version": "3.12.7", "source": str(folder / "python-3.12.7-amd64.exe"),
                           "sha256": hashlib.sha256(files["python-3.12.7-amd64.exe"]).hexdigest()},
        "release_version": "1.0.0",
        "release_artifact": str(folder / "api-1.0.0.zip"),
    }


def changed(data: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with the value at ``path`` (keys and list indexes) replaced."""

    data = copy.deepcopy(data)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


SITE, BINDING_HTTPS, BINDING_HTTP = ("iis_sites", 0), ("iis_sites", 0, "bindings", 0), ("iis_sites", 0, "bindings", 1)
INJECTION = "api'; Remove-Item -Recurse C:\\ ; '"

#: (id, path of the changed value, bad value, field path in the report, fragment of the reason)
CASES = [
    # ports
    ("port-zero", BINDING_HTTP + ("port",), 0, "iis_sites[0].bindings[1].port", "greater than or equal to 1"),
    ("port-too-big", BINDING_HTTP + ("port",), 70000, "iis_sites[0].bindings[1].port", "less than or equal to 65535"),
    ("port-text", BINDING_HTTP + ("port",), "eighty", "iis_sites[0].bindings[1].port", "valid integer"),
    ("port-boolean", BINDING_HTTP + ("port",), True, "iis_sites[0].bindings[1].port", "not a boolean"),
    # host names and addresses
    ("host-underscore", BINDING_HTTP + ("host_name",), "api_example.com", "iis_sites[0].bindings[1].host_name", "not an RFC 1123 label"),
    ("host-leading-hyphen", BINDING_HTTP + ("host_name",), "-api.example.com", "iis_sites[0].bindings[1].host_name", "not an RFC 1123 label"),
    ("host-with-port", BINDING_HTTP + ("host_name",), "api.example.com:80", "iis_sites[0].bindings[1].host_name", "not an RFC 1123 label"),
    ("host-label-64", BINDING_HTTP + ("host_name",), "a" * 64 + ".example.com", "iis_sites[0].bindings[1].host_name", "1-63 characters"),
    ("binding-ip", BINDING_HTTP + ("ip",), "300.1.1.1", "iis_sites[0].bindings[1].ip", "nor an IPv4/IPv6 address"),
    # Windows paths and controller files
    ("path-relative", SITE + ("physical_path",), "sites\\api", "iis_sites[0].physical_path", "not an absolute drive path"),
    ("path-dotdot", SITE + ("physical_path",), "C:\\sites\\..\\Windows", "iis_sites[0].physical_path", "'..' segment"),
    ("path-bad-char", SITE + ("physical_path",), "C:\\sites\\a<b", "iis_sites[0].physical_path", "characters Windows refuses"),
    ("path-newline", SITE + ("physical_path",), "C:\\sites\\api\r\nX", "iis_sites[0].physical_path", "control characters"),
    ("path-unix", SITE + ("log_directory",), "/var/log/iis", "iis_sites[0].log_directory", "not an absolute drive path"),
    ("path-device-name", ("iis_acls", 0, "path"), "C:\\CON\\x", "iis_acls[0].path", "reserved device name"),
    ("release-root-drive", ("release_app", "root"), "C:\\", "release_app.root", "drive root"),
    ("release-root-percent", ("release_app", "root"), "C:\\%TEMP%\\api", "release_app.root", "contains '%'"),
    ("pfx-missing", ("iis_certificates", 0, "pfx"), "no-such.pfx", "iis_certificates[0].pfx", "does not exist on the controller"),
    # thumbprints and hashes
    ("thumbprint-short", ("iis_certificates", 0, "thumbprint"), "ABC123", "iis_certificates[0].thumbprint", "40 hexadecimal digits"),
    ("thumbprint-not-hex", ("iis_certificates", 0, "thumbprint"), "G" * 40, "iis_certificates[0].thumbprint", "not a SHA-1 thumbprint"),
    ("msi-sha256", ("iis_extensions", 0, "sha256"), "xyz", "iis_extensions[0].sha256", "64 hexadecimal digits"),
    # durations
    ("duration-word", ("iis_app_pools", 0, "idle_timeout"), "forever", "iis_app_pools[0].idle_timeout", "is not a duration"),
    ("duration-negative", ("iis_app_pools", 0, "idle_timeout"), "-5s", "iis_app_pools[0].idle_timeout", "is not a duration"),
    ("request-timeout-seconds", ("release_app", "request_timeout"), "90s", "release_app.request_timeout", "whole minutes"),
    ("health-deadline-short", ("release_app", "health_deadline"), "10s", "release_app", "must exceed startup_time_limit"),
    # pool and site names
    ("pool-slash", ("iis_app_pools", 0, "name"), "api/pool", "iis_app_pools[0].name", "refused by IIS"),
    ("pool-too-long", ("iis_app_pools", 0, "name"), "p" * 70, "iis_app_pools[0].name", "longer than 64 characters"),
    ("site-empty", SITE + ("name",), "", "iis_sites[0].name", "empty"),
    ("site-pool-undefined", SITE + ("app_pool",), "apii", "iis_sites[0].app_pool", "not defined in iis_app_pools"),
    ("release-site-undefined", ("release_site",), "apx", "release_site", "not defined in iis_sites"),
    ("release-pool-undefined", ("release_app_pool",), "nopool", "release_app_pool", "not defined in iis_app_pools"),
    # versions
    ("release-version-spaces", ("release_version",), "1.0 ; rm", "release_version", "not usable as a release folder name"),
    ("release-version-traversal", ("release_version",), "../1.0.0", "release_version", "not usable as a release folder name"),
    # Python versions
    ("python-too-old", ("release_app", "python_version"), "2.7", "release_app.python_version", "not a Python version"),
    ("python-float", ("release_app", "python_version"), 3.12, "release_app.python_version", "write the Python version as text"),
    ("python-installer-3.9", ("release_python", "version"), "3.9.1", "release_python.version", "should match pattern"),
    ("python-installer-other-minor", ("release_python", "version"), "3.11.2", "", "is not a 3.12 release"),
    # principals
    ("principal-pool-undefined", ("iis_acls", 0, "principal"), "IIS AppPool\\nopool", "iis_acls[0].principal", "not defined in iis_app_pools"),
    ("principal-two-backslashes", ("iis_acls", 0, "principal"), "DOMAIN\\user\\x", "iis_acls[0].principal", "refuses"),
    ("principal-quote", ("iis_acls", 0, "principal"), 'web"admin', "iis_acls[0].principal", "refuses"),
    ("acl-rights", ("iis_acls", 0, "rights"), "Everything", "iis_acls[0].rights", "is not one of"),
    # sslFlags
    ("sslflags-128", BINDING_HTTPS + ("ssl_flags",), 128, "iis_sites[0].bindings[0].ssl_flags", "outside 0-127"),
    ("sslflags-negative", BINDING_HTTPS + ("ssl_flags",), -1, "iis_sites[0].bindings[0].ssl_flags", "outside 0-127"),
    ("sslflags-unknown-name", BINDING_HTTPS + ("ssl_flags",), "Sni,Bogus", "iis_sites[0].bindings[0].ssl_flags", "unknown sslFlags name 'Bogus'"),
    ("sslflags-on-http", BINDING_HTTP + ("ssl_flags",), 1, "iis_sites[0].bindings[1]", "http binding takes no"),
    # environment names, reserved names, unknown keys
    ("secret-reserved-name", ("release_app", "app_secrets"), {"HTTP_PLATFORM_PORT": "x"}, "release_app.app_secrets", "set by HttpPlatformHandler"),
    ("pool-env-name-space", ("iis_app_pools", 0, "environment_variables"), {"A B": "x"}, "iis_app_pools[0].environment_variables['A B'] (key)", "not a portable environment variable name"),
    ("unknown-iis-key", ("iis_sitez",), [], "iis_sitez", "did you mean 'iis_sites'?"),
    ("unknown-release-key", ("release_ap",), {}, "release_ap", "did you mean release_app?"),
    ("health-path", ("release_app", "health_check_path"), "healthz", "release_app.health_check_path", "not a URL path"),
    # injection strings
    ("inject-site-name", SITE + ("name",), INJECTION, "iis_sites[0].name", "refused by IIS"),
    ("inject-pool-name", ("iis_app_pools", 0, "name"), "api`$(whoami)|x", "iis_app_pools[0].name", "refused by IIS"),
    ("inject-host-name", BINDING_HTTP + ("host_name",), "api.example.com';calc;'", "iis_sites[0].bindings[1].host_name", "not an RFC 1123 label"),
    ("inject-path", SITE + ("physical_path",), "C:\\sites\\api\"; & calc.exe", "iis_sites[0].physical_path", "characters Windows refuses"),
    ("inject-version", ("release_version",), "1.0.0$(calc)", "release_version", "not usable as a release folder name"),
    ("inject-principal", ("iis_acls", 0, "principal"), "Users'; net user x /add", "iis_acls[0].principal", "refuses"),
]


@pytest.fixture
def good(tmp_path: Path) -> dict[str, Any]:
    return valid_data(tmp_path)


def test_the_base_inventory_is_valid(good):
    report = check_hosts([("web1", good)])
    assert report.ok, report.format()
    assert set(report.configs) == {"web1"}


@pytest.mark.parametrize("path, value, field, reason", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_bad_value_is_reported_with_host_field_and_reason(good, path, value, field, reason):
    report = check_hosts([("web1", good), ("web2", changed(good, path, value))])

    assert not report.ok
    assert {p.host for p in report.problems} == {"web2"}, report.format()
    assert any(p.field == field and reason in p.reason + (p.fix or "") for p in report.problems), report.format()
    text = report.format()
    assert "web2:" in text and "web1:" not in text and reason in text
    assert "web2" not in report.configs


def test_enough_cases_cover_every_category():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) >= 30
    for category in ("port", "host", "path", "thumbprint", "duration", "pool", "site", "version", "python", "principal", "sslflags", "inject"):
        assert any(category in i for i in ids), category


def test_every_problem_of_every_host_is_in_one_report(good):
    bad_iis = changed(changed(good, BINDING_HTTP + ("port",), 0), ("iis_acls", 0, "principal"), 'web"admin')
    bad_release = changed(good, ("release_python", "version"), "3.9.1")
    report = check_hosts([("web1", bad_iis), ("web2", good), ("web3", bad_release)])

    assert [(p.host, p.field) for p in report.problems] == [
        ("web1", "iis_sites[0].bindings[1].port"), ("web1", "iis_acls[0].principal"), ("web3", "release_python.version")]
    text = report.format()
    assert text.startswith("Inventory has 3 problem(s) on 2 of 3 host(s); nothing was run.")
    assert text.index("web1:") < text.index("web3:") and "web2:" not in text


def test_secret_values_never_appear_in_the_report(good):
    """Secrets in ill-typed or misplaced secret fields are named, never shown."""

    bad = changed(good, ("iis_certificates", 0, "password"), ["pfx-Pw-in-a-list-9c1"])
    bad = changed(bad, ("release_app", "app_secrets"), {"API_SECRET_KEY": APP_SECRET, "api_secret_key": APP_SECRET})
    bad = changed(bad, ("iis_app_pools", 0, "environment_variables"), {"TOKEN": "line1\nline2-secret-77"})
    bad = changed(bad, ("release_app", "app_settings"), {"API_SECRET_KEY": "dup-secret-55"})
    text = check_hosts([("web1", bad)]).format()

    assert "iis_certificates[0].password" in text and "release_app" in text
    for secret in ("pfx-Pw-in-a-list-9c1", APP_SECRET, "line2-secret-77", "dup-secret-55", PFX_PASSWORD):
        assert secret not in text


# --- through a pyinfra State (what the connector calls) -------------------------------------


def make_state(hosts: list[tuple[str, dict]], port: int = 5985, **state_kwargs: Any) -> State:
    named = [(f"@winrm/{name}", {"winrm_hostname": "127.0.0.1", "winrm_port": port, "winrm_scheme": "http",
                                 "winrm_transport": "ntlm", "winrm_user": USER, "winrm_password": PASSWORD, **data})
             for name, data in hosts]
    return State(Inventory((named, {})), Config(), **state_kwargs)


def test_every_host_of_a_bad_run_refuses_to_connect_and_the_report_is_logged_once(good, caplog):
    state = make_state([("web1", good), ("web2", changed(good, ("release_version",), "1.0 ; rm"))])
    hosts = list(state.inventory)
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        messages = []
        for host in hosts:
            with pytest.raises(ConnectError) as error:
                require_valid_inventory(state, host)
            messages.append(str(error.value))
    assert messages == [OTHERS_INVALID_MESSAGE, INVALID_MESSAGE]
    reports = [r.getMessage() for r in caplog.records if "Inventory has" in r.getMessage()]
    assert len(reports) == 1
    assert "@winrm/web2:\n  release_version: '1.0 ; rm' is not usable" in reports[0]
    assert check_state(state) is check_state(state)  # validated once, cached on the state


def test_a_valid_run_passes_and_a_host_outside_the_limit_is_validated_when_it_connects(good, caplog):
    state = make_state([("web1", good), ("web2", changed(good, SITE + ("name",), ""))])
    web1, web2 = state.inventory.get_host("@winrm/web1"), state.inventory.get_host("@winrm/web2")
    state.limit_hosts = [web1]  # what --limit web1 does: connect_all connects web1 only

    require_valid_inventory(state, web1)  # web2 is not part of this run: no error
    assert check_state(state).hosts == ["@winrm/web1"]
    with caplog.at_level(logging.ERROR, logger="pyinfra"), pytest.raises(ConnectError, match="inventory data is invalid"):
        require_valid_inventory(state, web2)
    assert [r.getMessage().count("iis_sites[0].name") for r in caplog.records if "Inventory has" in r.getMessage()] == [1]


# --- through the pyinfra command line ---------------------------------------------------------


def write_inventory(folder: Path, port: int, hosts: dict[str, dict]) -> Path:
    """``inventory.py`` with ``@winrm/<name>`` hosts that all point at the simulator's port."""

    named = [(f"@winrm/{name}", {"winrm_hostname": "127.0.0.1", "winrm_port": port, "winrm_scheme": "http", "winrm_transport": "ntlm",
                                 "winrm_user": USER, "winrm_password": PASSWORD, **data}) for name, data in hosts.items()]
    path = folder / "inventory.py"
    path.write_text(f"import json\nhosts = [tuple(h) for h in json.loads({json.dumps(json.dumps(named))})]\n", encoding="utf-8")
    return path


def run_pyinfra(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PYINFRA, *args], cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sim(tmp_path):
    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as server:
        yield server


def bad_fleet(good: dict) -> dict[str, dict]:
    return {
        "web1": good,
        "web2": changed(changed(good, BINDING_HTTP + ("port",), 70000), ("iis_acls", 0, "principal"), 'web"admin'),
        "web3": good,
        "web4": changed(good, ("release_python", "version"), "3.9.1"),
    }


@pytest.mark.parametrize("extra", [(), ("--dry",), ("-vvv", "--debug")], ids=["run", "dry", "debug"])
def test_pyinfra_refuses_a_fleet_with_two_bad_hosts_before_any_request(tmp_path, sim, good, extra):
    write_inventory(tmp_path, sim.port, bad_fleet(good))
    result = run_pyinfra(tmp_path, "inventory.py", str(PROJECT / "deploys" / "site.py"), "-y", *extra)
    output = result.stdout + result.stderr

    assert result.returncode != 0, output
    assert output.count("Inventory has") == 1, output
    assert "Inventory has 3 problem(s) on 2 of 4 host(s); nothing was run." in output
    report = output[output.index("Inventory has"):]
    assert report.index("@winrm/web2:") < report.index("iis_sites[0].bindings[1].port: Input should be less than or equal to 65535")
    assert "iis_acls[0].principal: 'web\"admin': account name contains characters" in report
    assert report.index("@winrm/web4:") < report.index("release_python.version")
    assert "@winrm/web1:" not in report and "@winrm/web3:" not in report
    assert output.count(INVALID_MESSAGE) == 2 and output.count(OTHERS_INVALID_MESSAGE) == 2
    for secret in (PASSWORD, PFX_PASSWORD, APP_SECRET):
        assert secret not in output
    assert sim.host.counters["http_requests"] == 0
    assert sim.host.counters["shells"] == 0


def test_the_same_fleet_without_the_bad_values_reaches_the_simulator(tmp_path, sim, good):
    """Control for the zero-request assertions: a valid inventory does connect."""

    write_inventory(tmp_path, sim.port, {"web1": good, "web3": good})
    result = run_pyinfra(tmp_path, "inventory.py", "exec", "--", "Write-Output", "hello")
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "Inventory has" not in output and "hello" in output
    assert sim.host.counters["http_requests"] > 0
