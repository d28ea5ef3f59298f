"""``doctor`` (issue 13): every failure mode injected into a converged simulated host is reported
by exactly its check, a healthy host is all ok, and a doctor run changes nothing on the host.

One simulated host is converged once (``deploys/site.py`` through the real ``pyinfra`` command
line, release 1.0.0 of ``examples/app``). The healthy case and a failing case run through the
real CLI (``deploys/doctor.py``); every failure mode (``pyinfra_iis.sim.doctor_faults.MODES``)
is injected, diagnosed through the Python API on the simulator's own functions (the same two
remote calls, in-process), and undone.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import time
from unittest import mock

import pytest

from fault_harness import diff_snapshots, snapshot
from pyinfra_iis.demo import PROJECT, Demo, build_artifact, fetch
from pyinfra_iis.doctor import FAIL, OK, WARN, failed, gather, render_table, run_checks, target_from_host_data
from pyinfra_iis.sim.doctor_faults import MODES, local_call

pytestmark = pytest.mark.e2e

#: Appended to the copied group data: a startup limit that a loaded test machine still meets.
TIMINGS = '\nrelease_app = {**release_app, "startup_time_limit": "20s", "health_deadline": "60s"}\n'

#: What the evidence of each mode's check must say (the right evidence, not just the status).
EVIDENCE = {
    "access_app_folder": "Deny entries for BUILTIN\\IIS_IUSRS",
    "access_venv": "inheritance is off",
    "access_python": "C:\\Program Files\\Python312",
    "access_web_config": "lacks Read on",
    "access_logs": "lacks CreateFiles, AppendData on C:\\sites\\api\\logs",
    "module_missing": "global module httpPlatformHandler not registered",
    "schema_missing": "no schema file",
    "section_locked": 'locked at site api by <location path="api" overrideMode="Deny">',
    "unknown_section": "system.webServer/aspNetCore: not declared",
    "sslcert_missing": "HTTP.sys has no SSL binding for api.example.com:443",
    "certificate_missing": "is not in LocalMachine\\WebHosting",
    "no_private_key": "has no private key",
    "key_unreadable": "SYSTEM cannot read the key",
    "certificate_expired": "expired",
    "certificate_expiring": ("(in 9 days)", "(in 10 days)"),
    "wrong_host_name": "other.example.com",
    "chain_incomplete": "issuer CN=Missing Intermediate CA",
    "sni_off": "without the SNI bit",
    "pool_stopped": "api is Stopped",
    "rapid_fail": "WAS event 5002",
    "pool_32bit": "enable32BitAppOnWin64=true",
    "pool_local_system": "LocalSystem",
    "no_user_profile": "loadUserProfile=false",
    "on_demand": "startMode=OnDemand",
    "release_incomplete": "not a complete release",
    "process_dead": "no python process runs from C:\\sites\\api\\releases\\1.0.0",
    "stdout_log_off": "stdoutLogEnabled is false",
    "keep_alive_short": "--timeout-keep-alive 5 < requestTimeout 120 s",
    "request_timeout_seconds": "requestTimeout=00:01:30",
    "startup_too_long": "health deadline 60 s <= startupTimeLimit 3600 s",
    "proactor_loop": "Proactor",
    "graceful_too_long": "--timeout-graceful-shutdown 30 >= the pool's shutdownTimeLimit 00:00:10",
    "trust_any_proxy": "--forwarded-allow-ips *",
    "buffered": "neither PYTHONUNBUFFERED nor -u",
    "header_not_allowed": "HTTP_X_FORWARDED_PORT, not allow-listed",
    "arr_proxy_off": "proxy is disabled",
    "firewall_closed": "World Wide Web Services (HTTPS Traffic-In)",
    "reboot_pending": "a reboot is pending",
    "disk_full": "0.2 GiB free",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One simulated host converged by ``deploys/site.py`` with release 1.0.0."""

    tmp_path = tmp_path_factory.mktemp("doctor")
    root = tmp_path / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(TIMINGS)
    artifact = build_artifact("1.0.0", tmp_path / "dist")
    with Demo(tmp_path / "work", hosts=1, root=root) as running:
        result = running.pyinfra("deploys/site.py", version="1.0.0", artifact=artifact, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        yield running


@pytest.fixture(scope="module")
def target(demo):
    """The doctor's target from the very inventory the CLI runs (group data + sim host data)."""

    with mock.patch.dict(os.environ, demo.environment()):
        group = runpy.run_path(str(demo.root / "inventories" / "group_data" / "all.py"))
        hosts = runpy.run_path(str(demo.root / "inventories" / "sim.py"))["sim_hosts"]
    data = {k: v for k, v in group.items() if k.startswith(("iis_", "release_"))}
    data.update(hosts[0][1])
    return target_from_host_data("web01", data)


def settle(server, timeout: float = 90.0) -> None:
    """Wait until the app answers /healthz through the https binding again."""

    deadline = time.monotonic() + timeout
    while True:
        try:
            if fetch(server, "/healthz", timeout=10)[0] == 200:
                return
        except (LookupError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the app did not answer again after the undo")
        time.sleep(0.3)


def run_doctor(demo, *args: str):
    result = demo.pyinfra("deploys/doctor.py", *args, timeout=300)
    output = result.stdout + result.stderr
    for secret in demo.secrets():
        assert secret not in output
    return result, output


def test_a_healthy_converged_host_is_all_ok_through_the_cli_and_the_run_changes_nothing(demo, tmp_path):
    server = demo.servers[0]
    settle(server)
    before = snapshot(server, demo.secrets())
    recycles = dict(server.host.state.get("iis_runtime", {}).get("recycles", {}))
    server.host.reset_counters()
    server.faults.step_log.clear()
    report = tmp_path / "doctor.json"

    result, output = run_doctor(demo, "--data", f"doctor_output={report}")

    assert result.returncode == 0, output[-4000:]
    assert " 0 warn, 0 fail" in output, output[-6000:]
    hosts = json.loads(report.read_text(encoding="utf-8"))["hosts"]
    (checks,) = hosts.values()
    assert checks["ok"] is True
    assert {c["status"] for c in checks["checks"]} == {OK}, [c for c in checks["checks"] if c["status"] != OK]
    names = {c["check"] for c in checks["checks"]}
    for expected in ("access.logs", "module.HttpPlatformHandler", "webconfig.sections", "https.chain[api *:443:api.example.com]",
                     "pool.rapid_fail", "app.request", "timeouts.keep_alive", "proxy.headers", "firewall.443", "host.disk"):
        assert expected in names
    # Read-only: the host state, applicationHost.config and every file are as before; the only
    # module functions called are the two reads; nothing was recycled.
    assert diff_snapshots(before, snapshot(server, demo.secrets())) == []
    called = {name for name in server.faults.step_log if "-" in name}
    assert called == {"Get-HostState", "Get-DoctorState"}, called
    assert server.host.counters["function_calls"] == 2
    assert dict(server.host.state.get("iis_runtime", {}).get("recycles", {})) == recycles


def test_a_failure_exits_non_zero_and_json_lines_name_the_failed_check(demo, tmp_path):
    server = demo.servers[0]
    undo = MODES["firewall_closed"].inject(server.host)
    try:
        result, output = run_doctor(demo, "--data", "doctor_format=json", "--data", f"doctor_output={tmp_path}/{{host}}.json")
    finally:
        undo()
    assert result.returncode != 0, output[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and lines[0]["ok"] is False
    assert [c["check"] for c in lines[0]["checks"] if c["status"] == FAIL] == ["firewall.443"]
    (written,) = tmp_path.glob("*.json")
    assert json.loads(written.read_text(encoding="utf-8"))["checks"] == lines[0]["checks"]
    assert "1 check(s) failed: firewall.443" in output


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_failure_mode_is_reported_by_exactly_its_check(demo, target, mode):
    server = demo.servers[0]
    settle(server)
    spec = MODES[mode]
    undo = spec.inject(server.host)
    try:
        checks = run_checks(gather(local_call(server.host), target))
    finally:
        undo()
        settle(server)
    table = render_table("web01", checks)
    row = next((c for c in checks if c.check == spec.check), None)
    assert row is not None, table
    assert row.status == spec.status, table
    wanted = EVIDENCE[mode] if isinstance(EVIDENCE[mode], tuple) else (EVIDENCE[mode],)
    assert any(text in row.evidence for text in wanted), table
    assert row.fix, table
    expected_failures = [spec.check] if spec.status == FAIL else []
    assert [c.check for c in failed(checks)] == expected_failures, table
    if spec.status == WARN and not mode.startswith("certificate_"):  # a replaced certificate is also not the inventory's
        assert [c.check for c in checks if c.status == WARN and not c.check.startswith("app.restarts")] == [spec.check], table


def test_modes_cover_every_check_group():
    groups = {mode.check.split(".")[0] for mode in MODES.values()}
    assert groups == {"access", "module", "webconfig", "https", "pool", "app", "timeouts", "runtime", "proxy", "firewall", "host"}


def test_the_doctor_state_read_changes_nothing_on_the_simulated_host(demo, target):
    server = demo.servers[0]
    settle(server)
    before = snapshot(server, demo.secrets())
    gather(local_call(server.host), target)
    assert diff_snapshots(before, snapshot(server, demo.secrets())) == []


def test_a_certificate_bound_by_hand_is_not_the_inventorys(demo, target):
    assert list(target.certificates.values())[0][0] == "api"  # read from the inventory's PFX on the controller
    server = demo.servers[0]
    settle(server)
    undo = MODES["wrong_host_name"].inject(server.host)
    try:
        checks = run_checks(gather(local_call(server.host), target))
    finally:
        undo()
        settle(server)
    row = next(c for c in checks if c.check == "https.sslcert[api *:443:api.example.com]")
    assert row.status == WARN and "not the inventory's certificate api" in row.evidence, render_table("web01", checks)


def test_an_unknown_format_is_refused_before_the_host_is_read(demo):
    server = demo.servers[0]
    server.faults.step_log.clear()
    result, output = run_doctor(demo, "--data", "doctor_format=xml")
    assert result.returncode != 0
    assert "doctor_format must be one of table, json, not 'xml'" in output, output[-3000:]
    assert not {name for name in server.faults.step_log if "-" in name}


@pytest.mark.parametrize("part, check", [("firewall", "firewall.443"), ("disk", "host.disk"), ("processes", "app.process"),
                                         ("log", "app.stdout_log"), ("acls", "access.app_folder"), ("events", "pool.rapid_fail"),
                                         ("schema", "module.HttpPlatformHandler"), ("web_config", "webconfig.sections")])
def test_a_part_the_host_cannot_read_warns_and_every_other_check_still_runs(demo, target, part, check):
    from pyinfra_iis.sim.doctor_faults import inject_probe_error

    server = demo.servers[0]
    settle(server)
    undo = inject_probe_error(server.host, part, "Access is denied. (0x80070005)")
    try:
        checks = run_checks(gather(local_call(server.host), target))
    finally:
        undo()
    table = render_table("web01", checks)
    row = next(c for c in checks if c.check == check)
    assert row.status == WARN and "Access is denied. (0x80070005)" in row.evidence, table
    assert not failed(checks) and not [c for c in checks if c.check.startswith("doctor.")], table
    assert next(c for c in checks if c.check == "host.reboot_pending").status == OK, table


def test_a_site_still_on_iis_own_systemdrive_path_is_read_not_refused(demo, target):
    from pyinfra_iis.sim.doctor_faults import inject_physical_path

    server = demo.servers[0]
    settle(server)
    undo = inject_physical_path(server.host, "%SystemDrive%\\inetpub\\wwwroot")
    try:
        evidence = gather(local_call(server.host), target)  # the old read failed whole here
    finally:
        undo()
        settle(server)
    assert evidence.doctor["acls"]["%SystemDrive%\\inetpub\\wwwroot"].get("exists") is not None
    checks = run_checks(evidence)
    assert next(c for c in checks if c.check == "app.release").status == FAIL  # not a release: said, not raised


def test_an_app_secret_printed_to_the_stdout_log_never_reaches_the_output(demo, target):
    secret = target.secrets[0].get_secret_value()
    server = demo.servers[0]
    settle(server)
    logs = server.host.path(f"{target.root}\\logs")
    newest = max(logs.glob("stdout*"), key=lambda p: (p.stat().st_mtime, p.name))
    before = newest.read_bytes()
    try:
        newest.write_bytes(before + f"\nsettings: API_SECRET_KEY={secret}\n".encode())
        checks = run_checks(gather(local_call(server.host), target))
    finally:
        newest.write_bytes(before)
    log = next(c for c in checks if c.check == "app.stdout_log")
    assert "API_SECRET_KEY=********" in log.evidence, render_table("web01", checks)
    assert secret not in render_table("web01", checks) and secret not in json.dumps([c.as_dict() for c in checks])
