"""The decisions the release path makes on the controller (issue 9's design change), each
against a scripted host: the install steps, cleanup and log retention, the raw facts, the Python
installer's answers. Items of issue 15 are named where a test covers one."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import OperationError

from pyinfra_iis.facts import python_state, release_state
from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.models.site import Site
from pyinfra_iis.operations import python as python_ops
from pyinfra_iis.operations import release
from pyinfra_iis.operations.testing import empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.release.manifest import FileEntry, Manifest

ROOT = "C:\\sites\\api"
SETTINGS = ReleaseSettings.model_validate({"app_name": "api", "root": ROOT, "python_version": "3.12", "keep_releases": 2})


class ScriptedHost:
    """Answers remote calls from a script: function -> answer dict (or a callable of the payload)."""

    def __init__(self, answers: dict):
        self.answers, self.calls, self.logged = answers, [], []

    def run_shell_command(self, command, print_output=False):
        function, payload = parse_remote_call(command.get_raw_value())
        self.calls.append((function, payload))
        answer = self.answers[function]
        answer = answer(payload) if callable(answer) else answer
        if isinstance(answer, Exception):
            return False, SimpleNamespace(stdout="", stderr=str(answer))
        return True, SimpleNamespace(stdout=json.dumps(answer) + "\r\n", stderr="")

    def log(self, message, _log_func=None):
        self.logged.append(message)


def manifest_and_listing():
    data = b"print('hi')\n"
    manifest = Manifest(app="api", version="2.0.0", python="3.12", entry_point="main:app", requirements=(),
                        files={"app/main.py": FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))})
    raw = manifest.to_json().encode()
    listing = [{"path": "app/main.py", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
               {"path": "manifest.json", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}]
    return manifest, raw, listing


def run_install(host, stale=()):
    manifest, raw, _ = manifest_and_listing()
    release.install_steps(host, SETTINGS, "2.0.0", f"{ROOT}\\artifacts\\api-2.0.0.zip", "ab" * 32, manifest, raw, "<web/>",
                          "C:\\Program Files\\Python312\\python.exe", list(stale))


def test_install_builds_in_the_final_folder_and_writes_the_marker_last():  # item 19, 22
    _, _, listing = manifest_and_listing()
    host = ScriptedHost({"Remove-ReleasePaths": {"removed": []}, "Install-Release": {"files": listing},
                         "Invoke-Program": {"exit_code": 0, "stdout": "", "stderr": ""}, "Write-TextFile": {"written": True}})
    run_install(host, stale=[f"{ROOT}\\releases\\2.0.0"])
    names = [name for name, _ in host.calls]
    assert names == ["Remove-ReleasePaths", "Install-Release", "Invoke-Program", "Invoke-Program", "Write-TextFile", "Write-TextFile"]
    assert host.calls[1][1] == {"artifact": f"{ROOT}\\artifacts\\api-2.0.0.zip", "sha256": "ab" * 32, "destination": f"{ROOT}\\releases\\2.0.0"}
    venv, pip = host.calls[2][1], host.calls[3][1]
    assert venv["arguments"] == ["-I", "-m", "venv", f"{ROOT}\\releases\\2.0.0\\venv"]  # no .partial: launchers keep their path
    assert pip["file"] == f"{ROOT}\\releases\\2.0.0\\venv\\Scripts\\python.exe" and pip["arguments"][:6] == ["-I", "-m", "pip", "install", "--no-index", "--only-binary=:all:"]
    assert host.calls[5][1]["path"] == f"{ROOT}\\releases\\2.0.0\\.pyinfra-iis-complete"
    # Python writes a piped stdout in the ANSI code page; the runner decodes UTF-8 (review of the release path).
    assert venv["environment"] == pip["environment"] == {"PYTHONUTF8": "1"}


def test_install_compares_the_listing_with_the_controllers_manifest():
    _, _, listing = manifest_and_listing()
    tampered = [dict(listing[0], sha256="00" * 32), listing[1], {"path": "app/extra.py", "size": 1, "sha256": "11" * 32}]
    host = ScriptedHost({"Install-Release": {"files": tampered}})
    with pytest.raises(release.ReleaseStepError, match="app/extra.py: not in the manifest; app/main.py: size/SHA-256 differ"):
        run_install(host)
    assert [name for name, _ in host.calls] == ["Install-Release"]  # no venv, no marker


def test_a_failing_pip_stops_before_the_marker_with_the_output_tail():
    _, _, listing = manifest_and_listing()
    runs = iter([{"exit_code": 0, "stdout": "", "stderr": ""}, {"exit_code": 1, "stdout": "", "stderr": "ERROR: No matching distribution"}])
    host = ScriptedHost({"Install-Release": {"files": listing}, "Invoke-Program": lambda payload: next(runs)})
    with pytest.raises(release.ReleaseStepError, match="install the wheels failed with exit code 1:\nERROR: No matching distribution"):
        run_install(host)


def test_host_step_reports_a_failed_call_as_the_hosts_error():
    host = ScriptedHost({"Install-Release": RuntimeError("Install-Release: SHA-256 mismatch")})
    assert release.host_step(run_install)(None, host) is False
    assert "SHA-256 mismatch" in host.logged[0]


def test_cleanup_keeps_logs_by_count_and_age():  # item 18
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    logs = [{"name": f"stdout_{i:02}.log", "size": 1, "modified": f"2026-11-{30 - i:02}T00:00:00Z"} for i in range(25)]
    report = {"current": None, "previous": None, "versions": [], "logs": logs}
    _, _, stale = release.removable(SETTINGS, report, now=now)
    assert stale == [f"stdout_{i:02}.log" for i in range(20, 25)]
    old = {"current": None, "previous": None, "versions": [], "logs": [
        {"name": "a.log", "size": 1, "modified": "2026-01-01T00:00:00Z"}, {"name": "b.log", "size": 1, "modified": "2026-01-02T00:00:00Z"},
        {"name": "c.log", "size": 1, "modified": "2026-01-03T00:00:00Z"}]}
    assert release.removable(SETTINGS, old, now=now)[2] == ["a.log"]  # the newest two always stay


def test_cleanup_removes_incomplete_folders_and_old_releases_but_never_current_or_previous():
    report = release_state.convert_root({"state": json.dumps({"current": "1.0.0", "previous": None}), "logs": [], "folders": [
        {"name": "1.0.0", "marker": "2026-01-01T00:00:00Z", "web_config_sha256": None},
        {"name": "2.0.0", "marker": "2026-02-01T00:00:00Z", "web_config_sha256": None},
        {"name": "3.0.0", "marker": "2026-03-01T00:00:00Z", "web_config_sha256": None},
        {"name": "4.0.0", "marker": "2026-04-01T00:00:00Z", "web_config_sha256": None},
        {"name": "5.0.0", "marker": None, "web_config_sha256": "ab"},
        {"name": "0.9.0.deleting", "marker": None, "web_config_sha256": None}]})
    old, incomplete, _ = release.removable(SETTINGS, report)
    assert old == ["2.0.0"] and incomplete == ["5.0.0", "0.9.0.deleting"]


def test_the_raw_release_fact_defines_complete_by_the_marker():  # item 22
    converted = release_state.convert({"releases": {ROOT: {"state": "not json", "logs": [], "folders": [
        {"name": "2.0.0", "marker": "2026-02-01T00:00:00Z", "web_config_sha256": "ab"},
        {"name": "1.0.0", "marker": "2026-01-01T00:00:00Z", "web_config_sha256": "cd"},
        {"name": "3.0.0", "marker": None, "web_config_sha256": "ef"},
        {"name": "4.0.0.partial", "marker": "x", "web_config_sha256": None}]}}})["releases"][ROOT]
    assert [(e["version"], e["complete"]) for e in converted["versions"]] == [("1.0.0", True), ("2.0.0", True), ("3.0.0", False), ("4.0.0", False)]
    assert converted["current"] is None and release.complete_versions(converted) == ["1.0.0", "2.0.0"]


def test_the_raw_python_fact():
    raw = {"pythons": {"3.12": {"version": "3.12.7", "install_path": "D:\\Py312\\", "executable_path": "D:\\Py312\\python.exe", "exists": True},
                       "3.13": {"version": None, "install_path": None, "executable_path": None, "exists": False}}}
    converted = python_state.convert(raw)["pythons"]
    assert converted["3.12"] == {"installed": True, "version": "3.12.7", "path": "D:\\Py312\\python.exe", "target_dir": "D:\\Py312"}
    assert converted["3.13"]["installed"] is False


def test_path_budget_is_checked_on_the_controller():  # item 20
    manifest = Manifest(app="api", version="2.0.0", python="3.12", entry_point="main:app", requirements=(),
                        files={"app/" + "x" * 240 + ".py": FileEntry(sha256="0" * 64, size=1)})
    assert "MAX_PATH" in release.path_budget(manifest, f"{ROOT}\\releases\\2.0.0")
    assert release.path_budget(manifest_and_listing()[0], f"{ROOT}\\releases\\2.0.0") is None


def test_https_binding_without_a_host_name_pins_its_certificate():  # item 13
    site = Site.model_validate({"name": "api", "physical_path": "C:\\x", "app_pool": "api",
                                "bindings": [{"protocol": "https", "port": 443, "certificate": "b" * 40}]})
    health = release.health_check(site, SETTINGS, "2.0.0")
    assert health["host"] == "localhost" and health["certificate_hash"] == "B" * 40 and health["expect_version"] == "2.0.0"


def test_python_restart_needed_stops_the_release_and_pools_start_after_a_clean_install():  # item 12
    host = ScriptedHost({"Install-Python": {"installed": True, "version": "3.12.8", "path": "x", "restart_needed": True}})
    assert python_ops.install_step(None, host, {"version": "3.12.8"}, ["api"]) is False
    assert "restart the host" in host.logged[0] and [n for n, _ in host.calls] == ["Install-Python"]
    host = ScriptedHost({"Install-Python": {"installed": True, "version": "3.12.8", "path": "x", "restart_needed": False},
                         "Set-IisRuntimeState": {"changed": ["api"]}})
    assert python_ops.install_step(None, host, {"version": "3.12.8"}, ["api"]) is True
    assert host.calls[1] == ("Set-IisRuntimeState", {"app_pools": {"api": "Started"}})


def test_python_installed_elsewhere_is_not_upgraded_into_the_wrong_folder(tmp_path):  # item 14
    exe = tmp_path / "python-3.12.8-amd64.exe"
    exe.write_bytes(b"x")
    value = empty_fact(["Web-Server"])
    value["pythons"] = {"3.12": {"installed": True, "version": "3.12.5", "path": "D:\\Old\\python.exe", "target_dir": "D:\\Old"}}
    with pytest.raises(OperationError, match="installed in D:\\\\Old, not C:\\\\Program Files\\\\Python312"):
        run_operation(python_ops.python_install._inner, value, python={"version": "3.12.8", "source": str(exe), "sha256": hashlib.sha256(b"x").hexdigest()})


def test_the_build_refuses_uvicorn_older_than_0_45():  # item 16
    from pyinfra_iis.release.artifact import check_uvicorn_floor
    from pyinfra_iis.release.lock import LockError

    with pytest.raises(LockError, match="older than 0.45"):
        check_uvicorn_floor([SimpleNamespace(key="uvicorn", version="0.44.0")], "requirements.txt")
    with pytest.raises(LockError, match="no uvicorn pin"):
        check_uvicorn_floor([], "requirements.txt")
    check_uvicorn_floor([SimpleNamespace(key="uvicorn", version="0.54.0")], "requirements.txt")


def test_secrets_of_a_served_release_change_through_a_health_checked_switch():  # item 21
    from test_operations_release import HTTPS_SITE, SETTINGS as RAW, fact

    served = fact(current="2.0.0", versions=["2.0.0"], physical_path=f"{ROOT}\\releases\\2.0.0", env={"API_KEY": "old"})
    result = run_operation(release.app_secrets._inner, served, settings=RAW, app_pool="api", site=HTTPS_SITE)
    [(name, payload)] = [parse_remote_call(c) for c in result.commands]
    assert name == "Switch-Release" and payload["path"] == f"{ROOT}\\releases\\2.0.0" and set(payload["environment"]) == {"API_KEY"}


def test_an_interpreter_upgrade_is_followed_by_a_health_checked_recycle():  # item 14
    from test_operations_release import HTTPS_SITE, SECRET, SETTINGS as RAW, fact

    served = fact(current="2.0.0", versions=["2.0.0"], physical_path=f"{ROOT}\\releases\\2.0.0", env={"API_KEY": SECRET})
    assert run_operation(release.release_switched._inner, served, settings=RAW, version="2.0.0", site=HTTPS_SITE, app_pool="api").commands == []
    result = run_operation(release.release_switched._inner, served, settings=RAW, version="2.0.0", site=HTTPS_SITE, app_pool="api", recheck=True)
    [(name, payload)] = [parse_remote_call(c) for c in result.commands]
    assert name == "Switch-Release" and payload["health"]["expect_version"] == "2.0.0" and payload["environment"] == {}
