"""The doctor's reads that go wrong on real hosts (review of ``97-doctor.ps1``): a part the host
cannot read, Group Policy and range firewall rules and profiles, group members that cannot be
listed, WAS events in another language, timestamps in any culture, the simulator's contract,
and secrets in the stdout log. Evidence is built by hand (no host); the simulator's function is
called on a bare simulated host."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest

from pyinfra_iis import sddl
from pyinfra_iis.doctor import FAIL, OK, WARN, Evidence, Target, render_json, render_table, run_checks
from pyinfra_iis.doctor.evidence import _now, target_from_host_data
from pyinfra_iis.doctor.model import REDACTED
from pyinfra_iis.iis.appconfig import AppHostConfig
from pyinfra_iis.protocol import Secret
from pyinfra_iis.sim.functions import SimFunctionError
from pyinfra_iis.sim.functions.doctor import get_doctor_state
from pyinfra_iis.sim.host import SimHost

PS = Path(__file__).resolve().parents[1] / "pyinfra_iis" / "remote" / "PyinfraIis" / "97-doctor.ps1"
NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
RELEASE = "C:\\sites\\api\\releases\\1.0.0"
CONFIG = f"""<configuration>
  <configSections>
    <sectionGroup name="system.applicationHost">
      <section name="applicationPools" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="sites" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
    </sectionGroup>
    <sectionGroup name="system.webServer">
      <section name="globalModules" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="httpPlatform" overrideModeDefault="Allow" />
    </sectionGroup>
  </configSections>
  <system.applicationHost>
    <applicationPools><add name="api" /></applicationPools>
    <sites><site name="api" id="1">
      <application path="/" applicationPool="api"><virtualDirectory path="/" physicalPath="{RELEASE}" /></application>
      <bindings><binding protocol="http" bindingInformation="*:8080:" /></bindings>
    </site></sites>
  </system.applicationHost>
  <system.webServer><globalModules><add name="httpPlatformHandler" image="%SystemRoot%\\system32\\inetsrv\\httpPlatformHandler.dll" /></globalModules></system.webServer>
</configuration>"""
WEB_CONFIG = """<configuration><system.webServer><httpPlatform processPath="python.exe" stdoutLogEnabled="true"
  stdoutLogFile="C:\\sites\\api\\logs\\stdout" /></system.webServer></configuration>"""


def evidence(**doctor) -> Evidence:
    target = Target(host="web01", site="api", pool="api", root="C:\\sites\\api")
    return Evidence(target, {}, AppHostConfig.from_text(CONFIG), doctor, NOW)


def row(checks, name):
    return next(c for c in checks if c.check == name)


def rule(name, ports, profile="Any", protocol="TCP", action="Allow", enabled=True):
    return {"name": name, "enabled": enabled, "direction": "Inbound", "action": action, "protocol": protocol,
            "local_ports": ports, "profile": profile}


# --- 5: one part that cannot be read ------------------------------------------------------------


def test_a_part_the_host_could_not_read_warns_with_the_error_and_every_other_check_still_runs():
    acl = {"exists": True, "sddl": "D:(A;OICI;FA;;;IS)", "sids": {}, "inheritance_protected": False}
    checks = run_checks(evidence(
        firewall={"error": "The RPC server is unavailable."}, disk={"error": "Could not find the drive 'S:\\'."},
        processes={"error": "Invalid class"}, log={"error": "The process cannot access the file"},
        web_config={"exists": True, "size": 200, "text": WEB_CONFIG},
        acls={RELEASE: {"error": "Attempted to perform an unauthorized operation."}, f"{RELEASE}\\venv": acl},
        groups={sddl.USERS: ["S-1-5-11"], sddl.IIS_IUSRS: []}, schema={"IIS_schema.xml": ["system.webServer/httpPlatform"]}))
    table = render_table("web01", checks)
    assert not [c for c in checks if c.check.startswith("doctor.")], table  # no check raised
    for name, error in (("firewall.8080", "The RPC server is unavailable."), ("host.disk", "Could not find the drive"),
                        ("app.process", "Invalid class"), ("app.stdout_log", "The process cannot access the file"),
                        ("access.app_folder", "Attempted to perform an unauthorized operation.")):
        assert row(checks, name).status == WARN and error in row(checks, name).evidence, table
    assert row(checks, "access.venv").status == OK, table  # the other paths are still decided
    assert row(checks, "host.reboot_pending").status == OK and row(checks, "pool.bitness").status == OK, table


def test_an_unreadable_schema_file_or_web_config_warns_and_a_cut_web_config_is_not_parsed():
    broken = {"IIS_schema.xml": [], "httpplatform_schema.xml": {"error": "Data at the root level is invalid."}}
    checks = run_checks(evidence(schema=broken, web_config={"exists": True, "size": 200, "text": WEB_CONFIG}))
    module = row(checks, "module.HttpPlatformHandler")
    assert module.status == WARN and "httpplatform_schema.xml: Data at the root level" in module.evidence
    checks = run_checks(evidence(web_config={"error": "Access to the path is denied."}))
    assert row(checks, "webconfig.sections").status == WARN and "Access to the path is denied." in row(checks, "webconfig.sections").evidence
    cut = {"exists": True, "size": 70000, "text": WEB_CONFIG[:100]}  # the host sends the first 64 KB
    sections = row(run_checks(evidence(web_config=cut)), "webconfig.sections")
    assert sections.status == WARN and "70000 bytes" in sections.evidence


def test_every_part_of_the_powershell_read_is_probed_alone():
    text = PS.read_text(encoding="utf-8")
    for part in ("webConfig", "firewall", "disk", "processes", "log", "events"):
        assert re.search(rf"\${part} = Invoke-DoctorProbe \{{", text), part
    assert "$acls[$path] = Invoke-DoctorProbe {" in text and "$schema[$file.Name] = Invoke-DoctorProbe {" in text
    assert "Get-PathAclState" not in text  # it throws on the first bad path; each path is probed instead
    assert text.count("[Environment]::ExpandEnvironmentVariables(") >= 3  # %SystemDrive%\inetpub\wwwroot is IIS's own value


# --- 1-4: the firewall ------------------------------------------------------------------------------


def test_range_any_protocol_and_group_policy_rules_open_a_port_of_the_active_profile():
    profiles = {"active_profile": "Public", "profiles": {"Domain": True, "Private": True, "Public": True}}
    for rules in ([rule("Apps 8000-8100", ["8000-8100"])], [rule("Allow all inbound", ["Any"], protocol="Any")],
                  [rule("GPO web", ["80", "8080"], profile="Domain, Public")]):
        checks = run_checks(evidence(firewall={"rules": rules, **profiles}))
        assert row(checks, "firewall.8080").status == OK, render_table("web01", checks)
    domain_only = run_checks(evidence(firewall={"rules": [rule("Web (domain)", ["8080"], profile="Domain")], **profiles}))
    closed = row(domain_only, "firewall.8080")
    assert closed.status == FAIL and "only for another profile than Public: Web (domain) (Domain)" in closed.evidence
    block = [rule("Web", ["8080"]), rule("GPO block", ["8000-9000"], action="Block")]
    assert row(run_checks(evidence(firewall={"rules": block, **profiles})), "firewall.8080").status == FAIL


def test_with_the_firewall_off_for_the_active_profile_no_port_is_filtered():
    off = {"rules": [], "active_profile": "Domain", "profiles": {"Domain": False, "Private": True, "Public": True}}
    port = row(run_checks(evidence(firewall=off)), "firewall.8080")
    assert port.status == OK and "off for the active profile Domain" in port.evidence


def test_the_powershell_reads_the_active_store_once_and_joins_filters_to_rules():
    text = PS.read_text(encoding="utf-8")
    assert "Get-NetFirewallRule -PolicyStore ActiveStore -Direction Inbound" in text
    assert "Get-NetFirewallPortFilter -All -PolicyStore ActiveStore" in text
    assert "$byName[[string]$filter.InstanceID]" in text and "| Get-NetFirewallRule" not in text  # no query per filter
    assert "Get-NetFirewallSetting -PolicyStore ActiveStore" in text and "Get-NetFirewallProfile -All -PolicyStore ActiveStore" in text
    assert "-Protocol TCP" not in text  # protocol Any rules count too


# --- 6: timestamps ------------------------------------------------------------------------------


def test_every_time_the_powershell_prints_is_round_trip_in_the_invariant_culture():
    text = PS.read_text(encoding="utf-8")
    calls = re.findall(r"\.ToString\(([^)]*)\)", text)
    assert calls and all(call in ("'o', $invariant", "'o', [System.Globalization.CultureInfo]::InvariantCulture") for call in calls), calls
    assert "$invariant = [System.Globalization.CultureInfo]::InvariantCulture" in text
    assert _now("2026-12-04T22:31:17.1234567Z") == datetime.datetime(2026, 12, 4, 22, 31, 17, tzinfo=datetime.timezone.utc)


# --- 7: group members that cannot be listed -----------------------------------------------------


def test_unreadable_group_members_are_unknown_not_none():
    users_only = {RELEASE: {"exists": True, "sddl": "D:(A;OICI;0x1200a9;;;BU)", "sids": {sddl.USERS: "BUILTIN\\Users"}}}
    checks = run_checks(evidence(groups={sddl.USERS: None, sddl.IIS_IUSRS: None}, acls=users_only))
    folder = row(checks, "access.app_folder")
    assert folder.status == WARN and "BUILTIN\\Users could not be read" in folder.evidence, render_table("web01", checks)
    # Through IIS_IUSRS (in the pool's token itself) nothing is assumed.
    iusrs = {RELEASE: {"exists": True, "sddl": "D:(A;OICI;0x1200a9;;;IS)", "sids": {}}}
    assert row(run_checks(evidence(groups={sddl.USERS: None, sddl.IIS_IUSRS: None}, acls=iusrs)), "access.app_folder").status == OK


# --- 8: WAS events ----------------------------------------------------------------------------


def test_was_events_are_matched_on_their_pool_not_the_localized_message_and_a_read_problem_is_said():
    german = 'Der Anwendungspool "api" wird aufgrund einer Reihe von Fehlern automatisch deaktiviert.'
    events = [{"id": 0, "time": None, "provider": "Get-WinEvent", "pool": "", "message": "The description cannot be found"},
              {"id": 5002, "time": "2026-11-30T23:50:00.0000000Z", "provider": "Microsoft-Windows-WAS", "pool": "api", "message": german}]
    rapid = row(run_checks(evidence(events=events)), "pool.rapid_fail")
    assert rapid.status == FAIL and "WAS event 5002" in rapid.evidence
    only_problem = row(run_checks(evidence(events=events[:1])), "pool.rapid_fail")
    assert only_problem.status == WARN and "The description cannot be found" in only_problem.evidence
    unread = row(run_checks(evidence(events={"error": "The RPC server is unavailable."})), "pool.rapid_fail")
    assert unread.status == WARN and "The RPC server is unavailable." in unread.evidence
    text = PS.read_text(encoding="utf-8")
    assert "-ErrorAction SilentlyContinue -ErrorVariable problems" in text and "$event.Properties[0].Value" in text


# --- 9, 10: the simulator's contract ------------------------------------------------------------


def test_the_simulator_validates_and_answers_as_the_module(tmp_path):
    host = SimHost(tmp_path / "web01")
    for bad in ({"log_bytes": 0}, {"log_bytes": 16385}, {"event_minutes": 0}, {"event_max": 501}, {"log_bytes": 1.5}):
        with pytest.raises(SimFunctionError, match=next(iter(bad))):
            get_doctor_state(host, {"acl_paths": [], **bad})
    with host.lock:
        host.state["features"]["Web-Server"] = {"installed": True}
        host.state["sim_doctor"] = {"firewall": [rule("range", ["8000-8100"]), rule("any", ["Any"], protocol="Any"),
                                                 rule("udp", ["8080"], protocol="UDP"), {**rule("out", ["8080"]), "direction": "Outbound"}]}
    answer = json.loads(get_doctor_state(host, {
        "acl_paths": ["%SystemDrive%\\inetpub\\wwwroot", "inetpub"], "web_config": "C:\\a\\..\\..\\x\\web.config",
        "log_folder": "relative\\logs", "ports": [8080], "groups": [sddl.USERS]}))
    assert [r["name"] for r in answer["firewall"]["rules"]] == ["range", "any"]  # Python matches the ports
    assert answer["firewall"]["active_profile"] and "Public" in answer["firewall"]["profiles"]
    assert "exists" in answer["acls"]["%SystemDrive%\\inetpub\\wwwroot"]  # expanded as IIS does
    assert '"inetpub" is not an absolute Windows path' in answer["acls"]["inetpub"]["error"]  # Assert-AbsolutePath's words
    assert answer["web_config"] == {"exists": False, "text": None} and answer["log"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", answer["now"])
    default = json.loads(get_doctor_state(SimHost(tmp_path / "web02"), {"acl_paths": [], "ports": [443]}))
    assert default["firewall"]["rules"] == []  # no IIS: no rule


# --- 12: secrets in the stdout log ------------------------------------------------------------


def test_the_release_secrets_are_redacted_from_the_log_tail_before_anything_prints_it():
    secret = "sk_live_4f9a8b7c6d5e"
    tail = f"cut-{secret[5:]}\nStarting\nKeyError: DATABASE_URL=postgres://app:{secret}@db/app\n" + "x" * 500 + "\n"
    doctor = {"web_config": {"exists": True, "size": 200, "text": WEB_CONFIG},
              "log": {"name": "stdout_1.log", "size": 9000, "modified": "2026-11-30T23:59:00.0000000Z", "tail": tail}}
    base = evidence(**doctor)
    base.target.secrets = (Secret(secret),)
    checks = run_checks(base)
    log = row(checks, "app.stdout_log")
    assert secret not in log.evidence and f"postgres://app:{REDACTED}@db/app" in log.evidence
    assert "cut-" not in log.evidence  # the tail's first, partial line may hold a secret's end
    assert "x" * 201 not in log.evidence  # each line is capped
    assert secret not in render_json("web01", checks) and secret not in render_table("web01", checks)


def test_the_target_carries_the_inventorys_secret_values_without_showing_them():
    data = {"release_site": "api", "release_app": {"app_name": "api", "root": "C:\\sites\\api",
                                                   "app_secrets": {"API_SECRET_KEY": Secret("s3cr3t-value-1")}},
            "release_python": {"version": "3.12.7", "source": "files/python.exe", "sha256": "0" * 64}}
    target = target_from_host_data("web01", data)
    assert [s.get_secret_value() for s in target.secrets] == ["s3cr3t-value-1"]
    assert "s3cr3t-value-1" not in repr(target)  # FunctionCommand's repr prints its kwargs
