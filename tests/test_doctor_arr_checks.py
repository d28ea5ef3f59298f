"""Unit tests of the doctor's ARR-mode checks (``pyinfra_iis.doctor.arr``) on hand-built
evidence: the mode from the inventory, the rule's target, the services, ``proxy/@timeout`` by the
model's own timeout rules, the allow-listed server variables."""

from __future__ import annotations

import datetime

import pytest

from pyinfra_iis.doctor import FAIL, OK, WARN, Evidence, Target
from pyinfra_iis.doctor.arr import check_arr, check_release, proxy_headers, proxy_timeout
from pyinfra_iis.doctor.evidence import doctor_payload
from pyinfra_iis.iis.appconfig import AppHostConfig
from pyinfra_iis.models.release import ReleaseSettings

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
CONFIG = """<configuration><configSections><sectionGroup name="system.applicationHost">
<section name="sites" allowDefinition="AppHostOnly" overrideModeDefault="Deny" /></sectionGroup></configSections><system.applicationHost><sites><site name="api" id="1"><application path="/" applicationPool="api">
<virtualDirectory path="/" physicalPath="C:\\sites\\api\\wwwroot" /></application></site></sites></system.applicationHost></configuration>"""


def settings(**arr) -> ReleaseSettings:
    values = {"winsw": {"source": "WinSW-x64.exe", "sha256": "0" * 64}, "proxy_timeout": "10s", "drain": "8s", "stop_timeout": "10s", **arr}
    return ReleaseSettings(app_name="api", root="C:\\sites\\api", mode="arr", timeout_graceful_shutdown="3s", arr=values)


def rule(port: int, variables=("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")) -> dict:
    sets = [{"tag": "set", "attributes": {"name": name, "value": "x"}} for name in variables]
    action = {"attributes": {"type": "Rewrite", "url": f"http://127.0.0.1:{port}/{{R:1}}"}}
    item = {"tag": "rule", "attributes": {"name": "pyinfra-iis-arr"}, "children": {"action": action, "serverVariables": {"items": sets}}}
    return {"items": [item]}


def evidence(port: int | None = 8001, timeout: str = "00:00:10", enabled: str = "true", allowed=("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"),
             services=None, active: str | None = "blue", model: ReleaseSettings | None = None) -> Evidence:
    iis = {"sections": {"system.webServer/proxy": {"attributes": {"enabled": enabled, "timeout": timeout}},
                        "system.webServer/rewrite/allowedServerVariables": {"items": [{"tag": "add", "attributes": {"name": n}} for n in allowed]}},
           "locations": {"api": {"system.webServer/rewrite/rules": rule(port)}} if port else {}}
    release = {"current": "1.0.0", "active_slot": active, "slots": {"blue": "1.0.0", "green": None},
               "versions": [{"version": "1.0.0", "complete": True}]}
    target = Target(host="web01", site="api", pool="api", root="C:\\sites\\api", mode="arr", settings=model or settings())
    doctor = {"services": services if services is not None else {"pyinfra-iis-api-blue": "Running", "pyinfra-iis-api-green": "Stopped"}}
    return Evidence(target, {"iis": iis, "releases": {"C:\\sites\\api": release}}, AppHostConfig.from_text(CONFIG), doctor, NOW)


def rows(checks) -> dict[str, tuple[str, str]]:
    return {c.check: (c.status, c.evidence) for c in checks}


def test_a_healthy_arr_host_passes_and_the_idle_slot_is_reported():
    found = rows(check_arr(evidence()))
    assert {status for status, _ in found.values()} == {OK}
    assert "pyinfra-iis-api-green is Stopped (idle slot, port 8002)" in found["arr.service[green]"][1]


def test_no_rule_in_the_sites_location_fails_the_mode():
    status, text = rows(check_arr(evidence(port=None)))["arr.mode"]
    assert status == FAIL and "no rule pyinfra-iis-arr" in text


def test_the_rule_on_the_idle_slot_or_no_slots_port_fails_the_target():
    status, text = rows(check_arr(evidence(port=8002)))["arr.rule_target"]
    assert status == FAIL and "the idle green slot's port" in text
    assert "no slot's port" in rows(check_arr(evidence(port=9000)))["arr.rule_target"][1]


def test_the_active_slots_service_must_run_the_idle_ones_state_is_only_reported():
    down = rows(check_arr(evidence(services={"pyinfra-iis-api-blue": "Stopped", "pyinfra-iis-api-green": "Running"})))
    assert down["arr.service[blue]"][0] == FAIL and "active slot does not serve" in down["arr.service[blue]"][1]
    assert down["arr.service[green]"][0] == OK


def test_proxy_timeout_is_checked_with_the_models_own_rules():
    assert proxy_timeout(evidence()).status == OK
    keep = proxy_timeout(evidence(timeout="00:05:00"))  # above timeout_keep_alive 120 s
    assert keep.status == FAIL and "timeout_keep_alive 120 s is shorter than proxy/@timeout 300 s" in keep.evidence
    drain = proxy_timeout(evidence(timeout="00:00:30"))  # drain 8 + graceful 3 < 30: check_arr_timeouts' rule 3
    assert drain.status == FAIL and "raise arr.drain to at least 27 s" in drain.evidence
    other = proxy_timeout(evidence(timeout="00:00:09"))  # aligned, but not the inventory's 10 s
    assert other.status == WARN and "arr.proxy_timeout is 10 s" in other.evidence
    assert proxy_timeout(evidence(enabled="false")).status == FAIL


def test_a_set_server_variable_must_be_allow_listed():
    (row,) = proxy_headers(evidence(allowed=("HTTP_X_FORWARDED_PROTO",)))
    assert row.status == FAIL and "HTTP_X_FORWARDED_HOST, not allow-listed" in row.evidence
    assert proxy_headers(evidence())[0].status == OK


def test_the_release_is_the_active_slots():
    assert check_release(evidence())[0].status == OK
    assert check_release(evidence(active=None))[0].status == FAIL


def test_the_doctor_reads_the_service_logs_folder_and_the_active_release():
    payload = doctor_payload(evidence())
    assert payload["log_folder"] == "C:\\sites\\api\\logs\\services"
    assert "C:\\sites\\api\\releases\\1.0.0" in payload["acl_paths"] and "C:\\sites\\api\\wwwroot" in payload["acl_paths"]
    assert payload["web_config"] == "C:\\sites\\api\\wwwroot\\web.config"


@pytest.mark.parametrize("mode", ["httpplatform", "arr"])
def test_the_mode_comes_from_the_inventory(mode):
    target = Target(host="web01", mode=mode, settings=settings() if mode == "arr" else None)
    assert target.arr is (mode == "arr")


def test_an_arr_rule_on_a_host_the_inventory_runs_with_httpplatformhandler_fails_the_mode():
    hph = evidence()
    hph.target = Target(host="web01", site="api", pool="api", root="C:\\sites\\api")
    (row,) = check_arr(hph)
    assert row.check == "arr.mode" and row.status == FAIL and "release_app.mode is httpplatform" in row.evidence
    hph.state["iis"]["locations"] = {}
    assert check_arr(hph) == []


def test_service_states_the_host_could_not_read_warn_and_a_failed_call_does_not_stop_the_doctor():
    found = rows(check_arr(evidence(services={"error": "Access is denied"})))
    assert found["arr.service[blue]"] == (WARN, "could not read the state of pyinfra-iis-api-blue: Access is denied")
    from pyinfra_iis.doctor import gather

    def call(function: str, payload: dict) -> dict:
        if function == "Get-AppServiceState":
            raise RuntimeError("Get-AppServiceState: the service control manager is busy")
        return {}

    gathered = gather(call, evidence().target)
    assert gathered.doctor["services"] == {"error": "Get-AppServiceState: the service control manager is busy"}
