"""``doctor`` on a host in ARR reverse-proxy mode (``release_app.mode: arr``): a healthy host
converged through the real ``pyinfra`` command line is all ok (no HttpPlatformHandler check
fails for want of a web.config or a python process under the release), the run changes
nothing, and each ARR failure mode (``pyinfra_iis.sim.doctor_faults.ARR_MODES``) is reported by
exactly its check.
"""

from __future__ import annotations

import json
import os
import runpy
import time
from unittest import mock

import pytest

from fault_harness import diff_snapshots, snapshot
from pyinfra_iis.demo import Demo, build_artifact, fetch
from pyinfra_iis.doctor import FAIL, OK, failed, gather, render_table, run_checks, target_from_host_data
from pyinfra_iis.sim.doctor_faults import ARR_MODES, local_call
from test_e2e_arr import arr_group_data, project, winsw_file

pytestmark = pytest.mark.e2e

#: What the evidence of each mode's check must say.
EVIDENCE = {
    "arr_service_stopped": "pyinfra-iis-api-blue is Stopped",
    "arr_proxy_timeout": "proxy/@timeout=00:05:00 on the host: timeout_keep_alive 120 s is shorter than proxy/@timeout 300 s",
    "arr_rule_idle": "rule proxies to 127.0.0.1:8002, the idle green slot's port",
    "arr_variable_not_allowed": "HTTP_X_FORWARDED_HOST, not allow-listed",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One simulated host converged by ``deploys/site.py`` in ARR mode with release 1.0.0."""

    tmp_path = tmp_path_factory.mktemp("doctorarr")
    root = project(tmp_path, arr_group_data(winsw_file(tmp_path / "winsw")))
    artifact = build_artifact("1.0.0", tmp_path / "dist")
    with Demo(tmp_path / "work", hosts=1, root=root) as running:
        result = running.pyinfra("deploys/site.py", version="1.0.0", artifact=artifact, timeout=600)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        yield running


@pytest.fixture(scope="module")
def target(demo):
    with mock.patch.dict(os.environ, demo.environment()):
        group = runpy.run_path(str(demo.root / "inventories" / "group_data" / "all.py"))
        hosts = runpy.run_path(str(demo.root / "inventories" / "sim.py"))["sim_hosts"]
    data = {k: v for k, v in group.items() if k.startswith(("iis_", "release_"))}
    data.update(hosts[0][1])
    return target_from_host_data("web01", data)


def settle(server, timeout: float = 90.0) -> None:
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


def test_the_target_knows_the_arr_mode_from_the_inventory(target):
    assert target.arr and target.mode == "arr" and target.settings.arr.blue_port == 8001


def test_a_healthy_arr_host_is_all_ok_through_the_cli_and_the_run_changes_nothing(demo, tmp_path):
    server = demo.servers[0]
    settle(server)
    before = snapshot(server, demo.secrets())
    server.host.reset_counters()
    server.faults.step_log.clear()
    report = tmp_path / "doctor.json"

    result = demo.pyinfra("deploys/doctor.py", "--data", f"doctor_output={report}", timeout=300)
    output = result.stdout + result.stderr
    for secret in demo.secrets():
        assert secret not in output

    assert result.returncode == 0, output[-4000:]
    (checks,) = json.loads(report.read_text(encoding="utf-8"))["hosts"].values()
    assert {c["status"] for c in checks["checks"]} == {OK}, [c for c in checks["checks"] if c["status"] != OK]
    rows = {c["check"]: c["evidence"] for c in checks["checks"]}
    assert "active slot blue runs 1.0.0" in rows["arr.mode"]
    assert "127.0.0.1:8001, the blue slot's port" in rows["arr.rule_target"]
    assert "pyinfra-iis-api-blue is Running" in rows["arr.service[blue]"]
    assert "pyinfra-iis-api-green is not installed" in rows["arr.service[green]"] or "is Stopped" in rows["arr.service[green]"]
    assert "lines up with timeout_keep_alive 120 s" in rows["timeouts.arr_proxy"]
    assert "HTTP_X_FORWARDED_HOST, HTTP_X_FORWARDED_PROTO; all allow-listed" in rows["proxy.headers"]
    assert "ARR mode" in rows["webconfig.sections"] and "release 1.0.0" in rows["app.release"]
    assert "LOCAL SERVICE" in rows["access.app_folder"] and "C:\\sites\\api\\logs\\services" in rows["access.logs"]
    assert "-> 200" in rows["app.request"]
    # HttpPlatformHandler-only checks are left out, as ARR's are passed in HttpPlatformHandler mode.
    assert not {"app.process", "app.restarts", "timeouts.request_timeout", "timeouts.keep_alive", "runtime.event_loop"} & set(rows)
    # Read-only: nothing changed; only the three reads ran.
    assert diff_snapshots(before, snapshot(server, demo.secrets())) == []
    called = {name for name in server.faults.step_log if "-" in name}
    assert called == {"Get-HostState", "Get-DoctorState", "Get-AppServiceState"}, called
    assert server.host.counters["function_calls"] == 3


@pytest.mark.parametrize("mode", sorted(ARR_MODES))
def test_each_arr_failure_mode_is_reported_by_exactly_its_check(demo, target, mode):
    server = demo.servers[0]
    settle(server)
    spec = ARR_MODES[mode]
    undo = spec.inject(server.host)
    try:
        checks = run_checks(gather(local_call(server.host), target))
    finally:
        undo()
        settle(server)
    table = render_table("web01", checks)
    row = next((c for c in checks if c.check == spec.check), None)
    assert row is not None, table
    assert row.status == FAIL and EVIDENCE[mode] in row.evidence and row.fix, table
    assert [c.check for c in failed(checks)] == [spec.check], table



def test_an_arr_failure_through_the_cli_exits_non_zero_and_names_the_check(demo, tmp_path):
    server = demo.servers[0]
    settle(server)
    undo = ARR_MODES["arr_rule_idle"].inject(server.host)
    try:
        result = demo.pyinfra("deploys/doctor.py", "--data", "doctor_format=json", timeout=300)
    finally:
        undo()
        settle(server)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    (line,) = [json.loads(text) for text in result.stdout.splitlines() if text.startswith("{")]
    assert [c["check"] for c in line["checks"] if c["status"] == FAIL] == ["arr.rule_target"]
    assert "1 check(s) failed: arr.rule_target" in output


def test_after_a_blue_green_switch_the_green_slot_is_checked_and_the_drained_blue_one_reported(demo, target, tmp_path):
    """Last in this module: release 2.0.0 moves the host to the green slot; the doctor follows."""

    server = demo.servers[0]
    settle(server)
    artifact = build_artifact("2.0.0", tmp_path / "dist")
    result = demo.pyinfra("deploys/release.py", version="2.0.0", artifact=artifact, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    checks = run_checks(gather(local_call(server.host), target))
    table = render_table("web01", checks)
    assert not failed(checks) and {c.status for c in checks} == {OK}, table
    rows = {c.check: c.evidence for c in checks}
    assert "127.0.0.1:8002, the green slot's port" in rows["arr.rule_target"], table
    assert "pyinfra-iis-api-blue is Stopped (idle slot, release 1.0.0, port 8001)" in rows["arr.service[blue]"], table
    assert "release 2.0.0" in rows["app.release"] and "C:\\sites\\api\\releases\\2.0.0" in rows["access.app_folder"], table
