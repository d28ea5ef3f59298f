"""The ARR mode's decisions on the controller and its simulator twins, without pyinfra runs:
the model's timeout rules, the service XML, the rewrite-rule edits (checked against the vendored
URL Rewrite / ARR schema), the switch steps against a scripted host (every failure leaves the
old slot serving), and the service primitives of the simulated host."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.operations import arr
from pyinfra_iis.operations._common import ReleaseStepError
from pyinfra_iis.operations.testing import _apply_edit, empty_fact
from pyinfra_iis.release import services

from test_release_controller import ScriptedHost

ROOT = "C:\\sites\\api"
WINSW = {"source": "https://github.com/winsw/winsw/releases/download/v2.12.0/WinSW-x64.exe", "sha256": "ab" * 32}


def settings(**arr_values) -> ReleaseSettings:
    return ReleaseSettings.model_validate({"app_name": "api", "root": ROOT, "mode": "arr", "app_secrets": {"API_KEY": "s3cret-value"},
                                           "arr": {"winsw": WINSW, **arr_values}})


# --- the model ----------------------------------------------------------------------------------


def test_mode_and_arr_settings_go_together():
    with pytest.raises(ValidationError, match="mode 'arr' needs arr settings"):
        ReleaseSettings.model_validate({"app_name": "api", "root": ROOT, "mode": "arr"})
    with pytest.raises(ValidationError, match="mode is not 'arr'"):
        ReleaseSettings.model_validate({"app_name": "api", "root": ROOT, "arr": {"winsw": WINSW}})
    assert ReleaseSettings.model_validate({"app_name": "api", "root": ROOT}).mode == "httpplatform"
    with pytest.raises(ValidationError, match="the two slots need two ports"):
        settings(blue_port=8001, green_port=8001)


@pytest.mark.parametrize("values, message", [
    ({"arr": {"proxy_timeout": "5m", "drain": "5m"}}, "timeout_keep_alive 120 s is shorter than arr.proxy_timeout 300 s"),
    ({"arr": {"stop_timeout": "30s"}}, "arr.stop_timeout 30 s is not above timeout_graceful_shutdown 30 s"),
    ({"arr": {"drain": "60s"}}, "raise arr.drain to at least 90 s"),
    ({"timeout_graceful_shutdown": "50s", "arr": {"stop_timeout": "45s"}}, "WinSW kills the service"),
])
def test_misaligned_timeouts_are_refused_with_the_fix(values, message):
    data = {"app_name": "api", "root": ROOT, "mode": "arr", **values}
    data["arr"] = {"winsw": WINSW, **values.get("arr", {})}
    with pytest.raises(ValidationError, match=message):
        ReleaseSettings.model_validate(data)


# --- the service XML ---------------------------------------------------------------------------


def test_the_service_xml_runs_uvicorn_with_workers_the_selector_loop_and_trusted_proxy_headers():
    model = settings(workers=4, log_size_kb=2048, log_keep=3)
    text = services.render_service_xml(model, "green", "1.4.2", model.release_dir("1.4.2"), 8002)
    parsed = services.parse_service_xml(text)
    assert parsed["id"] == "pyinfra-iis-api-green"
    assert parsed["executable"] == "C:\\sites\\api\\releases\\1.4.2\\venv\\Scripts\\python.exe"
    arguments = parsed["arguments"].split()
    for pair in (["--port", "8002"], ["--workers", "4"], ["--loop", "asyncio:SelectorEventLoop"], ["--forwarded-allow-ips", "127.0.0.1"],
                 ["--timeout-keep-alive", "120"], ["--timeout-graceful-shutdown", "30"], ["--host", "127.0.0.1"]):
        index = arguments.index(pair[0])
        assert arguments[index:index + 2] == pair
    assert "--proxy-headers" in arguments
    assert parsed["log"] == {"mode": "roll-by-size", "sizeThreshold": "2048", "keepFiles": "3"}
    assert parsed["logpath"] == "C:\\sites\\api\\logs\\services" and parsed["stoptimeout"] == "45 sec"
    assert parsed["env"]["PYINFRA_IIS_RELEASE"] == "1.4.2" and parsed["env"]["PYTHONUNBUFFERED"] == "1"
    assert parsed["env"]["API_KEY"] == "s3cret-value"  # secrets reach the app; the folder is the service account's only
    assert "<user>LocalService</user>" in text


# --- the rewrite rule --------------------------------------------------------------------------


def fact_with(edits: list[dict]) -> dict:
    fact = empty_fact(["Web-Server"])
    for edit in edits:
        _apply_edit(fact["iis"], edit)
    return fact


def test_the_rule_proxies_to_the_slot_with_forwarded_headers_and_a_switch_changes_only_the_target():
    whole = arr.rule_edits("api", 8001, whole=True)
    fact = fact_with(whole)
    assert arr.rule_target_port(fact, "api") == 8001 and arr.rule_complete(fact, "api")
    assert arr.active_slot(fact, settings(), "api") == "blue"
    switch = arr.rule_edits("api", 8002, whole=False)
    assert switch == [{"section": "system.webServer/rewrite/rules", "location": "api", "action": "set",
                       "path": [{"item": "rule", "key": {"name": "pyinfra-iis-arr"}}, {"child": "action"}],
                       "attributes": {"type": "Rewrite", "url": "http://127.0.0.1:8002/{R:1}"}}]
    assert arr.active_slot(fact_with(whole + switch), settings(), "api") == "green"
    assert arr.active_slot(empty_fact(["Web-Server"]), settings(), "api") is None


def test_the_proxy_settings_are_arrs_with_the_release_timeout_and_the_variables_allow_listed():
    edits, diff = arr.proxy_edits(settings(proxy_timeout="100s").arr, empty_fact(["Web-Server"])["iis"])
    proxy = next(e for e in edits if e["section"] == "system.webServer/proxy")
    assert proxy["attributes"]["timeout"] == "00:01:40"
    assert proxy["attributes"]["enabled"] == "true" and proxy["attributes"]["preserveHostHeader"] == "true"
    assert proxy["attributes"]["reverseRewriteHostInResponseHeaders"] == "false"
    assert [e["path"][0]["key"]["name"] for e in edits if e["section"].endswith("allowedServerVariables")] == [
        "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"]
    converged = fact_with(edits)
    assert arr.proxy_edits(settings(proxy_timeout="100s").arr, converged["iis"]) == ([], [])


def test_the_generated_rule_and_proxy_validate_against_the_url_rewrite_and_arr_schemas(reference_data, tmp_path):
    from support.iis_schema import validate_config

    from pyinfra_iis.iis.appconfig import AppHostConfig

    model = settings()
    edits, _ = arr.proxy_edits(model.arr, None)
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<configuration><configSections>'
            '<sectionGroup name="system.webServer"><section name="proxy" overrideModeDefault="Deny" allowDefinition="AppHostOnly" />'
            '<sectionGroup name="rewrite"><section name="rules" overrideModeDefault="Allow" />'
            '<section name="allowedServerVariables" overrideModeDefault="Deny" /></sectionGroup></sectionGroup>'
            '</configSections></configuration>\n')
    path = tmp_path / "applicationHost.config"
    path.write_text(text, encoding="utf-8")
    from pyinfra_iis.iis.appconfig import edit_file

    edit_file(path, [*edits, *arr.rule_edits("api", 8001, whole=True)])
    written = path.read_text(encoding="utf-8-sig")
    assert '<location path="api">' in written and '<set name="HTTP_X_FORWARDED_PROTO" value="{C:1}" />' in written
    assert validate_config(written, folder=reference_data) == []
    assert AppHostConfig.load(path, {}) is not None


# --- the switch steps ---------------------------------------------------------------------------


def plan(old_slot="blue") -> arr.SwitchPlan:
    model = settings()
    names = {s: services.service_name(model, s) for s in ("blue", "green")}
    return arr.SwitchPlan(slot="green", old_slot=old_slot, port=8002, version="2.0.0", names=names, xml="<service/>", secret_xml=True,
                          xml_path="C:\\sites\\api\\services\\green\\pyinfra-iis-api-green.xml",
                          wrapper="C:\\sites\\api\\services\\green\\pyinfra-iis-api-green.exe", source=WINSW["source"],
                          sha256=WINSW["sha256"], health={"url": "http://127.0.0.1:8002/healthz", "host": "api.example.com"},
                          edits=arr.rule_edits("api", 8002, whole=False), drain=0, state_file=f"{ROOT}\\release-state.json",
                          state_ok="OK", state_failed="FAILED", err_log=f"{ROOT}\\logs\\services\\pyinfra-iis-api-green.err.log")


def answers(**overrides):
    base = {"Write-TextFile": {"written": True}, "Stop-AppService": {"name": "x", "state": "Stopped"},
            "Install-AppService": {"name": "x", "installed": True, "state": "Stopped"},
            "Start-AppService": {"name": "x", "state": "Running", "health": {"ok": True, "status": 200, "seconds": 1.5}, "log_tail": None},
            "Set-IisConfig": {"committed": True}}
    return {**base, **overrides}


def test_a_healthy_slot_is_switched_to_in_one_commit_then_the_old_one_is_stopped():
    host = ScriptedHost(answers())
    arr.switch_steps(host, plan())
    calls = [(f, p.get("name") or p.get("path")) for f, p in host.calls]
    assert calls == [("Write-TextFile", plan().xml_path), ("Stop-AppService", "pyinfra-iis-api-green"),
                     ("Install-AppService", "pyinfra-iis-api-green"), ("Start-AppService", "pyinfra-iis-api-green"),
                     ("Set-IisConfig", None), ("Write-TextFile", f"{ROOT}\\release-state.json"), ("Stop-AppService", "pyinfra-iis-api-blue")]
    assert [p["text"] for f, p in host.calls if f == "Write-TextFile"][1] == "OK"


@pytest.mark.parametrize("failing", ["Install-AppService", "Start-AppService", "Set-IisConfig"])
def test_any_failing_step_stops_the_new_slot_and_leaves_the_old_one_serving(failing):
    bad = RuntimeError("boom") if failing != "Start-AppService" else {
        "name": "x", "state": "Running", "health": {"ok": False, "status": None, "error": "refused", "seconds": 20}, "log_tail": "ImportError: x"}
    host = ScriptedHost(answers(**{failing: bad}))
    with pytest.raises(ReleaseStepError, match="slot blue keeps serving") as error:
        arr.switch_steps(host, plan())
    functions = [f for f, _ in host.calls]
    assert functions[-2:] == ["Stop-AppService", "Write-TextFile"]
    assert host.calls[-2][1] == {"name": "pyinfra-iis-api-green"}  # the NEW slot is stopped, never the old one
    assert host.calls[-1][1]["text"] == "FAILED"
    assert ("Set-IisConfig" in functions) == (failing == "Set-IisConfig")  # no switch unless healthy
    if failing == "Start-AppService":
        assert "ImportError: x" in str(error.value)


def test_the_slot_health_check_goes_to_uvicorn_and_never_gives_up_on_the_apps_own_503():
    # Start-AppService runs Wait-ReleaseHealthy (92-release-health.ps1), which stops waiting at the first
    # answer without X-Release-Version whose status is in give_up_statuses: meant for IIS's own 502.3/503,
    # but a slot is requested directly, so a 503 there is the app still starting (the simulator waits).
    from pyinfra_iis.models.site import Site

    site = Site.model_validate({"name": "api", "physical_path": "C:\\x", "app_pool": "api",
                                "bindings": [{"protocol": "https", "port": 443, "host_name": "api.example.com", "certificate": "b" * 40}]})
    health = arr.slot_health(site, settings(), "2.0.0", 8002)
    assert health["url"] == "http://127.0.0.1:8002/healthz" and health["certificate_hash"] is None
    assert health["host"] == "api.example.com" and health["expect_version"] == "2.0.0"
    assert health["give_up_statuses"] == []


def test_a_release_whose_start_check_fails_is_refused_before_its_service_starts():
    """uvicorn's multiprocess supervisor keeps a slot's service running while workers die at
    import, so the health wait alone would last health_deadline: the start check refuses first."""

    from pyinfra_iis.release.startcheck import start_check

    model = settings()
    failing = {"exit_code": 1, "stdout": "", "stderr": "Traceback ...\nImportError: deliberately broken"}
    host = ScriptedHost(answers(**{"Invoke-Program": failing}))
    checked = plan()
    checked.preflight = start_check(model, "2.0.0", 200)
    with pytest.raises(ReleaseStepError, match="start check of the green slot's release failed with exit code 1") as error:
        arr.switch_steps(host, checked)
    assert "ImportError: deliberately broken" in str(error.value) and "slot blue keeps serving" in str(error.value)
    functions = [f for f, _ in host.calls]
    assert "Start-AppService" not in functions and "Set-IisConfig" not in functions
    assert functions[-2:] == ["Stop-AppService", "Write-TextFile"] and host.calls[-1][1]["text"] == "FAILED"
    assert host.calls[functions.index("Invoke-Program")][1]["file"] == f"{ROOT}\\releases\\2.0.0\\venv\\Scripts\\python.exe"


def test_the_state_records_the_active_slot_and_each_slots_version():
    report = {"current": "1.0.0", "previous": None, "history": [], "active_slot": "blue"}
    ok = json.loads(arr.state_text(report, "2.0.0", True, "green", {"blue": "1.0.0", "green": "2.0.0"}))
    assert (ok["current"], ok["previous"], ok["active_slot"], ok["slots"]) == ("2.0.0", "1.0.0", "green",
                                                                               {"blue": "1.0.0", "green": "2.0.0"})
    failed = json.loads(arr.state_text(report, "2.0.0", False, "green", {"blue": "1.0.0", "green": None}))
    assert (failed["current"], failed["active_slot"], failed["history"][-1]["ok"]) == ("1.0.0", "blue", False)


def test_a_rollback_records_rolled_back_from_and_only_a_release_switch_clears_it():
    report = {"current": "2.0.0", "previous": "1.0.0", "history": [], "active_slot": "green", "rollback_from": "2.0.0"}
    slots = {"blue": "1.0.0", "green": "2.0.0"}
    back = json.loads(arr.state_text(report, "1.0.0", True, "blue", slots))
    assert (back["current"], back["previous"], back["rolled_back_from"], back["history"][-1]["rollback"]) == ("1.0.0", "2.0.0", "2.0.0", True)
    kept = json.loads(arr.state_text({**back, "rollback_from": None}, "3.0.0", False, "green", slots))
    assert kept["rolled_back_from"] == "2.0.0" and kept["current"] == "1.0.0"  # a failed release keeps the record
    cleared = json.loads(arr.state_text({**back, "rollback_from": None}, "3.0.0", True, "green", slots))
    assert "rolled_back_from" not in cleared and "rollback" not in cleared["history"][-1]


def test_a_config_revision_is_numbered_after_every_one_the_state_names_and_runs_its_versions_folder():
    report = {"current": "2.0.0+r2", "previous": "1.0.0", "slots": {"blue": "1.0.0", "green": "2.0.0+r2"},
              "history": [{"to": "2.0.0+r3", "ok": False}], "versions": [{"version": "1.0.0", "complete": True},
                                                                        {"version": "2.0.0", "complete": True}]}
    assert arr.next_revision(report, "2.0.0") == "2.0.0+r4" and arr.next_revision(report, "1.0.0") == "1.0.0+r2"
    assert arr.installed(report, "2.0.0+r7") and not arr.installed(report, "3.0.0") and not arr.installed(report, None)


def test_the_slot_config_is_current_only_when_the_hosts_keyed_digest_of_its_xml_matches():
    from pyinfra_iis.protocol import secret_digest

    model = settings()
    xml = services.render_service_xml(model, "blue", "1.0.0", f"{ROOT}\\releases\\1.0.0", 8001)
    report = {"services": {"blue\\pyinfra-iis-api-blue.xml": secret_digest(xml)}}
    assert arr.config_current(report, model, "blue", xml)
    changed = services.render_service_xml(settings().model_copy(update={"app_settings": {"FLAG": "on"}}), "blue", "1.0.0",
                                          f"{ROOT}\\releases\\1.0.0", 8001)
    assert not arr.config_current(report, model, "blue", changed) and not arr.config_current(report, model, "green", xml)
    assert "s3cret-value" not in json.dumps(report)  # only the keyed digest of the XML holding the secret


# --- the simulator's twins ---------------------------------------------------------------------


def test_install_app_service_checks_the_pinned_wrapper_and_needs_its_xml(tmp_path):
    from pyinfra_iis.sim.functions import SimFunctionError, get_function
    from pyinfra_iis.sim.host import SimHost

    host = SimHost(tmp_path / "host")
    wrapper_bytes = b"MZ stand-in"
    source = host.path("C:\\uploads\\WinSW.exe")
    source.parent.mkdir(parents=True)
    source.write_bytes(wrapper_bytes)
    install = get_function("Install-AppService")
    payload = {"name": "pyinfra-iis-api-blue", "wrapper": "C:\\sites\\api\\services\\blue\\pyinfra-iis-api-blue.exe",
               "source": "C:\\uploads\\WinSW.exe", "sha256": "00" * 32}
    with pytest.raises(SimFunctionError, match="SHA-256 mismatch"):
        install(host, payload)
    payload["sha256"] = hashlib.sha256(wrapper_bytes).hexdigest()
    with pytest.raises(SimFunctionError, match="cannot find the configuration file"):
        install(host, payload)
    xml = services.render_service_xml(settings(), "blue", "1.0.0", f"{ROOT}\\releases\\1.0.0", 8001)
    host.path("C:\\sites\\api\\services\\blue\\pyinfra-iis-api-blue.xml").write_text(xml, encoding="utf-8")
    assert json.loads(install(host, payload)) == {"name": "pyinfra-iis-api-blue", "installed": True, "state": "Stopped"}
    assert json.loads(install(host, payload))["installed"] is False
    state = json.loads(get_function("Get-AppServiceState")(host, {"names": ["pyinfra-iis-api-blue", "other"]}))
    assert state == {"services": {"pyinfra-iis-api-blue": "Stopped", "other": None}}
    assert json.loads(get_function("Stop-AppService")(host, {"name": "pyinfra-iis-api-blue"}))["state"] == "Stopped"


# --- host data checks ------------------------------------------------------------------------------


def test_host_data_without_arr_extensions_or_with_a_contradicting_proxy_is_refused():
    from pyinfra_iis.deploys.arr import check_server_proxy
    from pyinfra_iis.models import InventoryError

    model = settings()
    with pytest.raises(InventoryError, match="needs UrlRewrite and ARR"):
        check_server_proxy({"iis_extensions": [{"product": "HttpPlatformHandler"}]}, model, "web01")
    extensions = [{"product": "UrlRewrite"}, {"product": "ARR"}]
    check_server_proxy({"iis_extensions": extensions}, model, "web01")
    check_server_proxy({"iis_extensions": extensions, "iis_server": {"proxy": {"timeout": "120s"}}}, model, "web01")
    with pytest.raises(InventoryError) as error:
        check_server_proxy({"iis_extensions": extensions, "iis_server": {"proxy": {"timeout": "30s", "preserve_host_header": False}}},
                           model, "web01")
    assert "iis_server.proxy.timeout" in str(error.value) and "preserve_host_header" in str(error.value)
    check_server_proxy({}, ReleaseSettings.model_validate({"app_name": "api", "root": ROOT}), "web01")  # httpplatform: no checks


def test_the_folders_exist_with_their_acls_before_anything_is_written_into_them():
    from pyinfra_iis.protocol import parse_remote_call

    calls = [parse_remote_call(c.get_raw_value()) for c in arr.directory_calls(settings(), "api")]
    assert [p["path"] for _, p in calls] == ["C:\\sites\\api\\services", "C:\\sites\\api\\logs\\services", "C:\\sites\\api\\wwwroot",
                                             "C:\\sites\\api\\services\\blue", "C:\\sites\\api\\services\\green"]
    services_sddl, logs_sddl = calls[0][1]["sddl"], calls[1][1]["sddl"]
    # LOCAL SERVICE reads the XML (Read & Execute); nobody else but SYSTEM and Administrators: the
    # pool identity never reads the secrets in it.
    assert services_sddl == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;LS)"
    assert logs_sddl == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;LS)"  # Modify: WinSW writes its logs
    assert all("sddl" not in p for _, p in calls[3:])  # the slot folders inherit


# --- the host's give-up on a slot whose process died ---------------------------------------------


def test_a_slot_whose_service_stopped_ends_the_health_wait_instead_of_waiting_for_the_deadline():
    """On Windows, WinSW exits when the app's process exits (its OnMainProcessExited), so the
    service is Stopped (until the SCM's restart recovery action, 10 s later): Start-AppService's
    health wait polls the service's status in the same loop and gives up at once, as the
    simulator's twin does when its process exits."""

    from pyinfra_iis.remote import read_remote_file
    from test_remote_contract import function_bodies

    wait = function_bodies(read_remote_file("PyinfraIis/92-release-health.ps1"))["Wait-ReleaseHealthy"]
    start = function_bodies(read_remote_file("PyinfraIis/95-services.ps1"))["Start-AppService"]
    assert "Wait-ReleaseHealthy -Health $health -Function $function -ServiceName $name" in start
    loop = wait[wait.index("while ($true)"):]
    stopped = loop.index("(Get-AppServiceStatus -Name $ServiceName) -eq 'Stopped'")
    assert stopped < loop.index("Start-Sleep -Milliseconds 250")
    assert "not waiting for the deadline" in loop[stopped:loop.index("Start-Sleep")]
    assert "[string] $ServiceName = ''" in wait  # Switch-Release's wait (no service) is unchanged


def test_a_config_revisions_start_check_runs_its_versions_venv_in_either_mode():
    """A config revision folder (1.0.0+r2) holds web.config and the marker only: the start check
    Switch-Release runs before committing must use 1.0.0's venv and app (it failed on every
    HttpPlatformHandler config revision before)."""

    from pyinfra_iis.models.site import Site
    from pyinfra_iis.operations.release import switch_call
    from pyinfra_iis.protocol import parse_remote_call

    model = ReleaseSettings.model_validate({"app_name": "api", "root": ROOT})
    site = Site.model_validate({"name": "api", "app_pool": "api", "physical_path": ROOT, "bindings": [{"protocol": "http", "port": 80}]})
    _, payload = parse_remote_call(switch_call(model, {}, "1.0.0+r2", site, "api").get_raw_value())
    assert payload["path"] == f"{ROOT}\\releases\\1.0.0+r2"
    assert payload["preflight"]["file"] == f"{ROOT}\\releases\\1.0.0\\venv\\Scripts\\python.exe"
