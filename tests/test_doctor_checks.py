"""Unit tests of the doctor's pure pieces: effective access from SDDL, the pool's token, section
locks, certificate names and chains, and how a symptom of another failure is reported."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyinfra_iis import sddl
from pyinfra_iis.doctor import FAIL, OK, WARN, Check, Evidence, Target, run_checks
from pyinfra_iis.doctor.access import READ_EXECUTE, WRITE_FOLDER, effective_rights, path_check, pool_token
from pyinfra_iis.doctor.https import chain_problem, host_matches
from pyinfra_iis.doctor.modules import override_mode
from pyinfra_iis.doctor.webconfig import argument_value, timespan_seconds
from pyinfra_iis.iis.appconfig import AppHostConfig

POOL = sddl.app_pool_sid("api")
NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
CONFIG = """<configuration>
  <configSections>
    <sectionGroup name="system.applicationHost">
      <section name="applicationPools" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="sites" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
    </sectionGroup>
    <sectionGroup name="system.webServer">
      <section name="handlers" overrideModeDefault="Deny" />
      <section name="httpPlatform" overrideModeDefault="Allow" />
      <section name="asp" overrideModeDefault="Deny" />
    </sectionGroup>
  </configSections>
  <system.applicationHost>
    <applicationPools><add name="api" /></applicationPools>
    <sites />
  </system.applicationHost>
  <location path="" overrideMode="Allow"><system.webServer><handlers /></system.webServer></location>
  <location path="api" allowOverride="false"><system.webServer><httpPlatform /></system.webServer></location>
</configuration>"""


def evidence(groups=None, acls=None) -> Evidence:
    doctor = {"groups": groups if groups is not None else {sddl.USERS: ["S-1-5-4", "S-1-5-11"], sddl.IIS_IUSRS: []},
              "acls": acls or {}}
    return Evidence(Target(host="web01", site="api", pool="api"), {}, AppHostConfig.from_text(CONFIG), doctor, NOW)


def test_deny_before_allow_takes_the_bits_and_allow_before_deny_keeps_them():
    token = {POOL, sddl.IIS_IUSRS}
    assert effective_rights(f"D:(D;;FR;;;IS)(A;;FA;;;{POOL})", token) & 0x1 == 0
    assert effective_rights(f"D:(A;;FA;;;{POOL})(D;;FR;;;IS)", token) == 0x1F01FF
    assert effective_rights("D:(A;OICIIO;FA;;;IS)", token) == 0  # inherit-only: not for this folder
    assert effective_rights("D:(A;;GA;;;IS)", token) == 0x1F01FF  # generic all mapped to file rights
    assert effective_rights("D:NO_ACCESS_CONTROL", token) == 0x1F01FF
    assert effective_rights("D:", token) == 0
    # A new file in a folder gets the OI entries, inherit-only ones included.
    assert effective_rights(f"D:(A;CI;0x1301bf;;;{POOL})", token, for_child_file=True) == 0
    assert effective_rights(f"D:(A;OICIIO;0x1301bf;;;{POOL})", token, for_child_file=True) & 0x6 == 0x6


def test_the_pool_token_holds_users_only_while_users_holds_authenticated_users():
    token, name = pool_token(evidence(), "api")
    assert name == "IIS AppPool\\api" and {POOL, sddl.IIS_IUSRS, sddl.USERS} <= token
    without, _ = pool_token(evidence(groups={sddl.USERS: ["S-1-5-4"], sddl.IIS_IUSRS: []}), "api")
    assert sddl.USERS not in without
    acl = {"exists": True, "sddl": "D:P(A;OICI;0x1200a9;;;BU)(A;OICI;FA;;;BA)", "sids": {}, "inheritance_protected": True}
    assert path_check(evidence(acls={"C:\\py": acl}), "access.python", "C:\\py", READ_EXECUTE, "base Python", "key", "RX",
                      token, name).status == OK
    failing = path_check(evidence(acls={"C:\\py": acl}), "access.python", "C:\\py", READ_EXECUTE, "base Python", "key", "RX",
                         without, name)
    assert failing.status == FAIL and "inheritance is off" in failing.evidence and "no Allow entry" in failing.evidence


def test_the_logs_folder_needs_write_for_the_files_created_in_it_too():
    token, name = pool_token(evidence(), "api")
    folder_only = {"exists": True, "sddl": f"D:(A;CI;0x1301bf;;;{POOL})", "sids": {}}
    check = path_check(evidence(acls={"C:\\logs": folder_only}), "access.logs", "C:\\logs", WRITE_FOLDER, "logs", "key", "M",
                       token, name, child_files=True)
    assert check.status == FAIL
    missing = path_check(evidence(acls={"C:\\logs": {"exists": False}}), "access.logs", "C:\\logs", WRITE_FOLDER, "logs", "key",
                         "M", token, name)
    assert missing.status == FAIL and "does not exist" in missing.evidence


def test_locks_follow_override_mode_default_then_locations_from_the_server_down():
    e = evidence()
    assert override_mode(e, "system.webServer/handlers", "api")[0] == "Allow"      # location path="" Allow
    assert override_mode(e, "system.webServer/asp", "api")[0] == "Deny"           # overrideModeDefault
    mode, where = override_mode(e, "system.webServer/httpPlatform", "api")
    assert mode == "Deny" and 'path="api"' in where                                # allowOverride="false"
    assert override_mode(e, "system.webServer/httpPlatform", "other")[0] == "Allow"


def _cert(subject: str, issuer: str, key, signer, ca: bool = False) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=90)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(signer, hashes.SHA256())


def test_names_and_chains():
    assert host_matches("api.example.com", ["*.example.com"])
    assert not host_matches("a.b.example.com", ["*.example.com"])
    assert host_matches("API.example.com.", ["api.example.com"])
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Root", "Root", root_key, root_key, ca=True)
    mid = _cert("Mid", "Root", mid_key, root_key, ca=True)
    leaf = _cert("api.example.com", "Mid", leaf_key, mid_key)
    assert chain_problem(leaf, [root, mid], NOW) is None
    assert "issuer CN=Mid" in chain_problem(leaf, [root], NOW)


def test_a_failure_explained_by_another_is_reported_as_a_warning_and_causes_stay_failed():
    def checks(_):
        return [Check("pool.rapid_fail", FAIL, "5002"), Check("pool.state", FAIL, "Stopped", "start", ("pool.rapid_fail",)),
                Check("app.request", FAIL, "503", "", ("*",)), Check("host.disk", OK, "fine")]

    rows = run_checks(evidence(), [checks])
    assert [(r.check, r.status) for r in rows] == [("pool.rapid_fail", FAIL), ("pool.state", WARN), ("app.request", WARN),
                                                   ("host.disk", OK)]
    assert "follows from pool.rapid_fail" in rows[1].evidence

    def alone(_):
        return [Check("pool.state", FAIL, "Stopped", "start", ("pool.rapid_fail",)), Check("app.request", FAIL, "503", "", ("*",))]

    rows = run_checks(evidence(), [alone])
    assert [(r.check, r.status) for r in rows] == [("pool.state", FAIL), ("app.request", WARN)]

    def broken(_):
        raise KeyError("x")

    (row,) = run_checks(evidence(), [broken])
    assert row.check == "doctor.broken" and row.status == FAIL


def test_command_line_values_and_timespans():
    arguments = '-m uvicorn main:app --loop asyncio:SelectorEventLoop --timeout-keep-alive=120 --app-dir "C:\\sites\\api\\app"'
    assert argument_value(arguments, "--loop") == "asyncio:SelectorEventLoop"
    assert argument_value(arguments, "--timeout-keep-alive") == "120"
    assert argument_value(arguments, "--workers") is None
    assert timespan_seconds("1.00:02:00") == 86520 and timespan_seconds("2 min") is None


def test_a_host_without_iis_fails_one_check_that_says_so():
    bare = Evidence(Target(host="web01", site="api", pool="api", root="C:\\sites\\api"), {"iis": None}, None,
                    {"disk": {"drive": "C:", "free_bytes": 80 * 1024 ** 3, "total_bytes": 127 * 1024 ** 3}}, NOW)
    rows = run_checks(bare)
    assert [(r.check, r.status) for r in rows if r.status != OK] == [("iis.installed", FAIL)]


def test_the_output_file_gathers_every_host_or_one_file_per_host(tmp_path):
    import json

    from pyinfra_iis.doctor import render_json
    from pyinfra_iis.doctor.deploy import _write_output

    rows = [Check("host.disk", OK, "fine"), Check("firewall.443", FAIL, "closed", "Enable-NetFirewallRule")]
    for name in ("@winrm/10.0.0.1:5986", "@winrm/10.0.0.2:5986"):
        _write_output(str(tmp_path / "all.json"), name, json.loads(render_json(name, rows)))
        _write_output(str(tmp_path / "each-{host}.json"), name, json.loads(render_json(name, rows)))
    combined = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))["hosts"]
    assert sorted(combined) == ["@winrm/10.0.0.1:5986", "@winrm/10.0.0.2:5986"]
    assert combined["@winrm/10.0.0.1:5986"]["ok"] is False
    assert combined["@winrm/10.0.0.1:5986"]["counts"] == {"ok": 1, "warn": 0, "fail": 1}
    assert sorted(p.name for p in tmp_path.glob("each-*.json")) == ["each-winrm_10.0.0.1_5986.json", "each-winrm_10.0.0.2_5986.json"]


def test_binding_information_splits_with_ipv6_addresses():
    from pyinfra_iis.doctor.model import split_binding

    assert split_binding("*:443:api.example.com") == ("*", "443", "api.example.com")
    assert split_binding("[::1]:8443:") == ("[::1]", "8443", "")
    assert split_binding("10.0.0.5:80:") == ("10.0.0.5", "80", "")


def test_a_healthy_answer_from_another_release_is_a_warning():
    from pyinfra_iis.doctor.app import check_request

    config = CONFIG.replace("<sites />", '<sites><site name="api"><application path="/" applicationPool="api"><virtualDirectory '
                            'path="/" physicalPath="C:\\sites\\api\\releases\\2.0.0" /></application></site></sites>')
    e = Evidence(Target(host="web01", site="api", pool="api", root="C:\\sites\\api"), {}, AppHostConfig.from_text(config),
                 {"request": {"url": "https://127.0.0.1:443/healthz", "host": "api", "status": 200,
                              "body": '{"status":"ok","version":"1.0.0"}', "release": None}}, NOW)
    (row,) = check_request(e)
    assert row.status == WARN and "but the site serves 2.0.0" in row.evidence
    e.doctor["request"]["body"] = '{"status":"ok","version":"2.0.0"}'
    assert check_request(e)[0].status == OK


def test_docs_list_every_injected_mode_and_every_check():
    from pathlib import Path

    from pyinfra_iis.sim.doctor_faults import MODES

    text = (Path(__file__).resolve().parent.parent / "docs" / "doctor.md").read_text(encoding="utf-8")
    assert [mode for mode in MODES if f"`{mode}`" not in text] == []
    import re

    checks = {mode.check.split("[")[0] for mode in MODES.values()} | {"app.restarts", "app.request", "iis.installed"}
    checks = {re.sub(r"^firewall\.\d+$", "firewall.<port>", re.sub(r"^module\..*", "module.<Extension>", c)) for c in checks}
    assert [check for check in sorted(checks) if f"`{check}" not in text] == []
