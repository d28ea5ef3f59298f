"""Release operations, pyinfra-style: given ``Get-HostState`` facts → the exact commands, and
none on a converged host. Also the ``release_*`` host data loader and the fact arguments."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from pyinfra.api import FunctionCommand
from pyinfra.api.exceptions import OperationError, OperationValueError

from pyinfra_iis.deploys.release import ENV_ARTIFACT, ENV_VERSION, acl_rules, iis_overrides, load_release_config, release_target
from pyinfra_iis.facts import release_state
from pyinfra_iis.facts.host_state import HostState, host_state, set_host_state
from pyinfra_iis.models import InventoryError
from pyinfra_iis.operations import python as python_ops
from pyinfra_iis.operations import release
from pyinfra_iis.operations.testing import empty_fact, make_host, run_operation
from pyinfra_iis.protocol import parse_remote_call, secret_digest
from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.release.manifest import Manifest
from pyinfra_iis.release.webconfig import render_web_config
from pyinfra_iis.sddl import app_pool_sid

ROOT = "C:\\sites\\api"
SECRET = "s3cr'et-$(x)"
SETTINGS = {"app_name": "api", "root": ROOT, "python_version": "3.12", "keep_releases": 3,
            "app_settings": {"LOG_LEVEL": "info"}, "app_secrets": {"API_KEY": SECRET}}
HTTPS_SITE = {"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
              "bindings": [{"protocol": "http", "port": 80, "host_name": "api.example.com"},
                           {"protocol": "https", "port": 8443, "host_name": "api.example.com",
                            "certificate": "A" * 40}]}
HTTP_SITE = {"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
             "bindings": [{"protocol": "http", "port": 8080, "ip": "127.0.0.1"}]}


def fact(current=None, previous=None, versions=(), pythons=None, physical_path=None, env=None) -> dict:
    """A Get-HostState value with Web-Server, pool ``api`` and the release state given."""

    value = empty_fact(["Web-Server"])
    value["pythons"] = pythons or {"3.12": {"installed": False, "version": None, "path": None}}
    value["releases"] = {ROOT: {"current": current, "previous": previous, "history": [],
                                "versions": [{"version": v, "complete": not v.endswith("+partial")} for v in versions]}}
    pool = {"tag": "add", "attributes": {"name": "api"}, "children": {}, "items": []}
    if env:
        pool["children"]["environmentVariables"] = {"attributes": {}, "children": {}, "items": [
            {"tag": "add", "attributes": {"name": k, "value": secret_digest(v)}, "children": {}, "items": []} for k, v in env.items()]}
    value["iis"]["sections"]["system.applicationHost/applicationPools"] = {"attributes": {}, "children": {}, "items": [pool]}
    if physical_path:
        vdir = {"tag": "virtualDirectory", "attributes": {"path": "/", "physicalPath": physical_path}, "children": {}, "items": []}
        app = {"tag": "application", "attributes": {"path": "/"}, "children": {}, "items": [vdir]}
        site = {"tag": "site", "attributes": {"name": "api", "id": "1"}, "children": {}, "items": [app]}
        value["iis"]["sections"]["system.applicationHost/sites"] = {"attributes": {}, "children": {}, "items": [site]}
    return value


def calls(result) -> list[tuple[str, dict]]:
    return [parse_remote_call(c) or ("upload", c) for c in result.commands]


@pytest.fixture
def artifact(tmp_path) -> Path:
    """A minimal release zip: only its manifest matters to the controller side."""

    manifest = Manifest(app="api", version="2.0.0", python="3.12", entry_point="main:app", requirements=(), files={})
    path = tmp_path / "api-2.0.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", manifest.to_json())
    return path


# --- Python ---------------------------------------------------------------------------------


@pytest.fixture
def installer(tmp_path) -> dict:
    exe = tmp_path / "python-3.12.7-amd64.exe"
    exe.write_bytes(b"installer")
    return {"version": "3.12.7", "source": str(exe), "sha256": hashlib.sha256(b"installer").hexdigest()}


def test_missing_python_is_uploaded_then_installed_silently(installer):
    result = run_operation(python_ops.python_install._inner, fact(), python=installer)
    upload = f"upload {installer['source']} -> C:\\ProgramData\\pyinfra-iis\\python\\python-3.12.7-amd64.exe"
    # The upload folder is administrators-only before the installer lands there (issue 9, security).
    assert calls(result)[0] == ("Initialize-Directory", {"path": "C:\\ProgramData\\pyinfra-iis\\python",
                                                         "sddl": "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"})
    assert result.commands[1] == upload
    command = result.objects[2]
    assert isinstance(command, FunctionCommand) and command.args == ({"version": "3.12.7", "source": "C:\\ProgramData\\pyinfra-iis\\python\\python-3.12.7-amd64.exe",
                                                                      "sha256": installer["sha256"], "target_dir": "C:\\Program Files\\Python312"}, [])


def test_installed_python_of_the_same_version_uploads_nothing(installer):
    pythons = {"3.12": {"installed": True, "version": "3.12.7", "path": "C:\\Program Files\\Python312\\python.exe"}}
    assert run_operation(python_ops.python_install._inner, fact(pythons=pythons), python=installer).commands == []
    older = {"3.12": {"installed": True, "version": "3.12.6", "path": "C:\\Program Files\\Python312\\python.exe"}}
    result = run_operation(python_ops.python_install._inner, fact(pythons=older), python=installer, app_pools=["api"])
    # An upgrade drains the pools that run on the interpreter first (issue 15 item 12).
    assert [c[0] for c in calls(result)[:3]] == ["Initialize-Directory", "upload", "Set-IisRuntimeState"]
    assert calls(result)[2][1] == {"app_pools": {"api": "Stopped"}}
    assert result.objects[3].args[1] == ["api"]


def test_python_installer_model_refuses_a_bad_version_and_a_missing_file(installer, tmp_path):
    with pytest.raises(OperationValueError):
        run_operation(python_ops.python_install._inner, fact(), python={**installer, "version": "3.12"})
    with pytest.raises(OperationValueError, match="not a file on the controller"):
        run_operation(python_ops.python_install._inner, fact(), python={**installer, "source": str(tmp_path / "nope.exe")})


# --- Install-Release ------------------------------------------------------------------------


def test_a_new_release_is_uploaded_and_installed_with_a_web_config_without_secrets(artifact):
    result = run_operation(release.release_installed._inner, fact(current="1.0.0", versions=["1.0.0"]), settings=SETTINGS,
                           version="2.0.0", artifact=str(artifact), python_exe="C:\\Program Files\\Python312\\python.exe", app_pool="api")
    folders = calls(result)[:4]
    assert [p["path"] for _, p in folders] == [ROOT, f"{ROOT}\\releases", f"{ROOT}\\artifacts", f"{ROOT}\\logs"]
    pool = app_pool_sid("api")
    assert folders[0][1]["sddl"] == f"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;{pool})"
    assert folders[3][1]["sddl"].endswith(f"(A;OICI;0x1301bf;;;{pool})")  # Modify on logs only
    assert result.commands[4] == f"upload {artifact} -> C:\\sites\\api\\artifacts\\api-2.0.0.zip"
    command = result.objects[5]
    assert isinstance(command, FunctionCommand)
    _, version, destination, sha256, _, _, web_config, python_exe, stale = command.args
    assert (version, destination, python_exe, stale) == ("2.0.0", "C:\\sites\\api\\artifacts\\api-2.0.0.zip", "C:\\Program Files\\Python312\\python.exe", [])
    assert sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()  # the controller's hash travels with the call
    assert 'processPath="C:\\sites\\api\\releases\\2.0.0\\venv\\Scripts\\python.exe"' in web_config
    assert 'name="LOG_LEVEL" value="info"' in web_config
    assert SECRET not in web_config and "API_KEY" not in web_config


def test_an_installed_release_yields_nothing_and_needs_no_artifact(tmp_path):
    result = run_operation(release.release_installed._inner, fact(current="2.0.0", versions=["1.0.0", "2.0.0"]), settings=SETTINGS,
                           version="2.0.0", artifact=str(tmp_path / "absent.zip"), python_exe="C:\\Python312\\python.exe")
    assert result.commands == []


def test_a_partial_release_is_installed_again(artifact):
    value = fact()
    value["releases"] = {ROOT: release_state.convert_root({"state": None, "logs": [], "folders": [
        {"name": "2.0.0", "marker": None, "web_config_sha256": None}]})}
    result = run_operation(release.release_installed._inner, value, settings=SETTINGS,
                           version="2.0.0", artifact=str(artifact), python_exe="C:\\Python312\\python.exe")
    # An incomplete folder under the final name is removed and rebuilt (issue 15 item 22).
    assert result.objects[-1].args[-1] == [f"{ROOT}\\releases\\2.0.0"]


def test_an_artifact_of_another_version_or_python_is_refused(artifact):
    with pytest.raises(OperationValueError, match="version '2.0.0', not '3.0.0'"):
        run_operation(release.release_installed._inner, fact(), settings=SETTINGS, version="3.0.0", artifact=str(artifact), python_exe="C:\\P\\python.exe")
    with pytest.raises(OperationValueError, match="built for Python 3.12, the host runs 3.11"):
        run_operation(release.release_installed._inner, fact(), settings={**SETTINGS, "python_version": "3.11"}, version="2.0.0",
                      artifact=str(artifact), python_exe="C:\\P\\python.exe")


# --- Switch-Release -------------------------------------------------------------------------


def test_switch_goes_through_the_https_binding_with_its_host_name_and_deadline():
    result = run_operation(release.release_switched._inner, fact(current="1.0.0", versions=["1.0.0", "2.0.0"], physical_path="C:\\sites\\api\\releases\\1.0.0"),
                           settings=SETTINGS, version="2.0.0", site=HTTPS_SITE, app_pool="api")
    [(name, payload)] = calls(result)
    assert name == "Switch-Release" and payload["path"] == f"{ROOT}\\releases\\2.0.0"
    assert payload["health"] == {"url": "https://127.0.0.1:8443/healthz", "host": "api.example.com", "deadline_seconds": 120, "expect_status": 200,
                                 "certificate_hash": "A" * 40, "expect_version": "2.0.0", "give_up_statuses": [502, 503]}
    assert payload["environment"] == {"API_KEY": SECRET} and SECRET not in result.masked[0]  # secrets change with the switch (item 21)
    assert json.loads(payload["state_ok"])["current"] == "2.0.0" and json.loads(payload["state_ok"])["previous"] == "1.0.0"
    assert json.loads(payload["state_failed"])["current"] == "1.0.0"


def test_switch_over_http_uses_the_binding_ip_and_localhost_for_any_host_name():
    result = run_operation(release.release_switched._inner, fact(versions=["2.0.0"]), settings={**SETTINGS, "health_check_path": "/readyz",
                           "health_deadline": "90s"}, version="2.0.0", site=HTTP_SITE, app_pool="api")
    assert calls(result)[0][1]["health"] == {"url": "http://127.0.0.1:8080/readyz", "host": "localhost", "deadline_seconds": 90, "expect_status": 200,
                                             "certificate_hash": None, "expect_version": "2.0.0", "give_up_statuses": [502, 503]}


def test_a_site_serving_the_release_yields_nothing_but_a_moved_physical_path_switches_again():
    served = fact(current="2.0.0", previous="1.0.0", versions=["1.0.0", "2.0.0"], physical_path="C:\\sites\\api\\releases\\2.0.0", env={"API_KEY": SECRET})
    assert run_operation(release.release_switched._inner, served, settings=SETTINGS, version="2.0.0", site=HTTPS_SITE, app_pool="api").commands == []
    moved = fact(current="2.0.0", previous="1.0.0", versions=["1.0.0", "2.0.0"], physical_path="C:\\sites\\api\\current", env={"API_KEY": SECRET})
    assert [c[0] for c in calls(run_operation(release.release_switched._inner, moved, settings=SETTINGS, version="2.0.0", site=HTTPS_SITE, app_pool="api"))] == ["Switch-Release"]


def test_rollback_switches_to_the_previous_release_or_fails_without_one():
    state = fact(current="2.0.0", previous="1.0.0", versions=["1.0.0", "2.0.0"], physical_path="C:\\sites\\api\\releases\\2.0.0")
    result = run_operation(release.release_rolled_back._inner, state, settings=SETTINGS, site=HTTPS_SITE, app_pool="api")
    assert [(n, p["path"]) for n, p in calls(result)] == [("Switch-Release", f"{ROOT}\\releases\\1.0.0")]
    with pytest.raises(OperationError, match="no previous release"):
        run_operation(release.release_rolled_back._inner, fact(current="1.0.0", versions=["1.0.0"]), settings=SETTINGS, site=HTTPS_SITE, app_pool="api")
    with pytest.raises(OperationError, match="no longer installed"):
        run_operation(release.release_rolled_back._inner, fact(current="2.0.0", previous="1.0.0", versions=["2.0.0"]), settings=SETTINGS, site=HTTPS_SITE, app_pool="api")


# --- Remove-OldReleases ----------------------------------------------------------------------


def test_old_releases_are_removed_only_beyond_keep_or_with_a_partial_folder():
    kept = fact(current="3.0.0", previous="2.0.0", versions=["1.0.0", "2.0.0", "3.0.0"])
    assert run_operation(release.old_releases_removed._inner, kept, settings=SETTINGS).commands == []
    more = fact(current="4.0.0", previous="3.0.0", versions=["1.0.0", "2.0.0", "3.0.0", "4.0.0"])
    assert calls(run_operation(release.old_releases_removed._inner, more, settings=SETTINGS)) == [("Remove-ReleasePaths", {
        "paths": [f"{ROOT}\\releases\\1.0.0", f"{ROOT}\\artifacts\\api-1.0.0.zip"], "marker": ".pyinfra-iis-complete"})]
    partial = fact(current="1.0.0", versions=["1.0.0", "2.0.0+partial"])
    assert [c[0] for c in calls(run_operation(release.old_releases_removed._inner, partial, settings=SETTINGS))] == ["Remove-ReleasePaths"]


# --- App secrets ------------------------------------------------------------------------------


def test_app_secrets_go_to_the_pool_masked_and_only_when_the_digest_differs():
    result = run_operation(release.app_secrets._inner, fact(env={"OTHER": "x"}), settings=SETTINGS, app_pool="api")
    name, payload = calls(result)[0]
    assert name == "Set-IisConfig" and len(result.commands) == 1
    assert payload["edits"] == [{"section": "system.applicationHost/applicationPools", "location": None, "action": "set",
                                 "path": [{"item": "add", "key": {"name": "api"}}, {"child": "environmentVariables"}, {"item": "add", "key": {"name": "API_KEY"}}],
                                 "attributes": {"value": SECRET}}]
    assert SECRET not in result.masked[0] and "*MASKED*" in result.masked[0]
    assert run_operation(release.app_secrets._inner, fact(env={"API_KEY": SECRET}), settings=SETTINGS, app_pool="api").commands == []


# --- Host data and fact arguments ---------------------------------------------------------------


def host_data(installer: dict, **extra) -> dict:
    return {"iis_app_pools": [{"name": "api"}], "iis_sites": [HTTPS_SITE],
            "release_app": SETTINGS, "release_site": "api", "release_python": installer, **extra}


def test_release_data_version_and_artifact_come_from_data_then_environment(installer):
    environ = {ENV_VERSION: "2.0.0", ENV_ARTIFACT: "/tmp/x.zip"}
    from_env = load_release_config(host_data(installer), environ=environ)
    assert (from_env.version, str(from_env.artifact_path())) == ("2.0.0", "/tmp/x.zip")
    from_data = load_release_config(host_data(installer, release_version="3.0.0"), environ=environ)
    assert from_data.version == "3.0.0"
    default = load_release_config(host_data(installer, release_version="3.0.0"), environ={})
    assert default.artifact_path() == Path("dist/api-3.0.0.zip")
    assert load_release_config(host_data(installer), environ={}).artifact_path() is None
    assert load_release_config({"iis_sites": []}) is None


def test_release_data_errors_name_the_key_without_echoing_secrets(installer):
    with pytest.raises(InventoryError) as caught:
        load_release_config(host_data(installer, release_verison="1.0"), "web01", environ={})
    assert "release_verison: unknown release key (fix: did you mean release_version?)" in str(caught.value)
    with pytest.raises(InventoryError, match="not a 3.11 release"):
        load_release_config(host_data(installer, release_app={**SETTINGS, "python_version": "3.11"}), environ={})
    with pytest.raises(InventoryError) as caught:
        load_release_config(host_data(installer, release_app={**SETTINGS, "app_secrets": {"API_KEY": SECRET, "bad name": SECRET}}), environ={})
    assert SECRET not in str(caught.value)


def test_the_fact_asks_for_the_release_root_and_python_and_the_target_resolves_pool_and_site(installer, monkeypatch):
    state, host = make_host(host_data(installer))
    asked = []
    value = fact(current="1.0.0", versions=["1.0.0"])
    monkeypatch.setattr(host, "get_fact", lambda cls, **kwargs: asked.append(kwargs) or value)
    host_state(host)
    assert asked[0]["release_roots"] == [ROOT] and asked[0]["python_versions"] == ["3.12"]
    assert {"C:\\sites\\api", "C:\\sites\\api\\logs", "C:\\Program Files\\Python312"} <= set(asked[0]["acl_paths"])
    command = HostState().command(**asked[0]).get_raw_value()
    assert parse_remote_call(command)[1]["release_roots"] == [ROOT]
    target = release_target(host)
    assert (target.site.name, target.app_pool, target.principal) == ("api", "api", "IIS AppPool\\api")
    assert [(r["path"], r["rights"]) for r in acl_rules(target)] == [
        ("C:\\Program Files\\Python312", "ReadAndExecute"), (ROOT, "ReadAndExecute"), (ROOT + "\\logs", "Modify")]
    overrides = iis_overrides(target, host)
    assert overrides["site_physical_paths"] == {"api": "C:\\sites\\api\\releases\\1.0.0"}
    # Issue 15 item 21: the pool operation leaves the app secrets alone; only the health-checked
    # switch changes them, so a converge never recycles the live release with new secrets.
    assert overrides["release_variables"] == {"api": ["API_KEY"]} and "pool_environment" not in overrides
    # Issue 11: the release pool gets an overlapped recycle and a drain time >= request_timeout.
    assert overrides["pool_attributes"] == {"api": release.release_pool_attributes(target.settings)}
    assert len(asked) == 1  # one Get-HostState served all of it


def test_a_release_site_missing_from_iis_sites_is_reported(installer):
    state, host = make_host(host_data(installer, release_site="apii"))
    with pytest.raises(InventoryError, match="did you mean 'api'"):
        release_target(host)


def installed_fact(artifact: Path, settings: dict) -> dict:
    """A host serving 2.0.0, installed with the web.config ``settings`` render for it."""

    model = ReleaseSettings.model_validate(settings)
    with zipfile.ZipFile(artifact) as archive:
        manifest = Manifest.from_json(archive.read("manifest.json"))
    web_config = render_web_config(model, model.release_dir("2.0.0"), manifest=manifest)
    value = fact(current="2.0.0", versions=["2.0.0"])
    value["releases"][ROOT]["versions"][0]["web_config_sha256"] = hashlib.sha256(web_config.encode("utf-8")).hexdigest()
    return value


def test_an_installed_release_with_the_same_web_config_is_silent(artifact):
    result = run_operation(release.release_installed._inner, installed_fact(artifact, SETTINGS), settings=SETTINGS,
                           version="2.0.0", artifact=str(artifact), python_exe="C:\\Python312\\python.exe")
    assert result.commands == [] and not [m for m in result.logs if "another web.config" in m]
    assert any("release 2.0.0 is installed" in m for m in result.logs)


def test_changed_app_settings_of_an_installed_release_never_rewrite_it_in_place(artifact):
    changed = {**SETTINGS, "app_settings": {"LOG_LEVEL": "debug"}}
    result = run_operation(release.release_installed._inner, installed_fact(artifact, SETTINGS), settings=changed,
                           version="2.0.0", artifact=str(artifact), python_exe="C:\\Python312\\python.exe")
    assert result.commands == []  # a config revision carries the change (tests/test_release_pipeline.py)


def test_without_the_artifact_an_installed_release_is_not_checked(artifact, tmp_path):
    value = installed_fact(artifact, SETTINGS)
    result = run_operation(release.release_installed._inner, value, settings={**SETTINGS, "app_settings": {}},
                           version="2.0.0", artifact=str(tmp_path / "absent.zip"), python_exe="C:\\Python312\\python.exe")
    assert result.commands == [] and not [m for m in result.logs if "another web.config" in m]
