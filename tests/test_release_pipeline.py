"""Issue 11 §3, a release flow a pipeline can trust, at the operation level: rollback to a named
release and idempotent unnamed rollbacks, config revisions of an installed release, cleanup
that keeps what a revision runs on, several apps per host (host data validation). End to end:
``tests/test_e2e_pipeline.py``."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
from pyinfra.api.exceptions import OperationError

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.operations import release
from pyinfra_iis.operations.testing import run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.release.manifest import Manifest
from test_operations_release import HTTPS_SITE, ROOT, SETTINGS, calls, fact


def with_state(value: dict, **state) -> dict:
    value["releases"][ROOT].update(state)
    return value


def rollback(value: dict, version=None):
    return run_operation(release.release_rolled_back._inner, value, settings=SETTINGS, site=HTTPS_SITE, app_pool="api", version=version)


def written_state(result) -> dict:
    [(name, payload)] = calls(result)
    assert name == "Switch-Release"
    return json.loads(payload["state_ok"])


# --- Rollback -----------------------------------------------------------------------------------


def test_an_unnamed_rollback_records_where_it_came_from_and_a_retry_changes_nothing():
    serving_2 = fact(current="2.0.0", previous="1.0.0", versions=["1.0.0", "2.0.0"], physical_path=f"{ROOT}\\releases\\2.0.0")
    state = written_state(rollback(serving_2))
    assert (state["current"], state["previous"], state["rolled_back_from"]) == ("1.0.0", "2.0.0", "2.0.0")
    assert state["history"][-1] == {**state["history"][-1], "from": "2.0.0", "to": "1.0.0", "rollback": True, "ok": True}
    # The retried job sees the state the first one wrote: before this change it toggled back to 2.0.0.
    retried = with_state(fact(current="1.0.0", previous="2.0.0", versions=["1.0.0", "2.0.0"], physical_path=f"{ROOT}\\releases\\1.0.0"),
                         rolled_back_from="2.0.0")
    result = rollback(retried)
    assert result.commands == [] and any("rolled back from 2.0.0 to 1.0.0" in m for m in result.logs)
    # Someone moved the site meanwhile: the retry puts it back on what the rollback chose, not on 2.0.0.
    moved = with_state(fact(current="1.0.0", previous="2.0.0", versions=["1.0.0", "2.0.0"], physical_path=f"{ROOT}\\releases\\2.0.0"),
                       rolled_back_from="2.0.0")
    assert [p["path"] for _, p in calls(rollback(moved))] == [f"{ROOT}\\releases\\1.0.0"]


def test_a_release_switch_clears_the_rollback_record_and_a_failed_switch_keeps_it():
    report = {"current": "1.0.0", "previous": "2.0.0", "rolled_back_from": "2.0.0", "history": []}
    ok, failed = release.state_texts(report, "3.0.0")
    assert "rolled_back_from" not in json.loads(ok)
    assert json.loads(failed)["rolled_back_from"] == "2.0.0" and json.loads(failed)["current"] == "1.0.0"
    assert "rollback" not in json.loads(ok)["history"][-1]


def test_a_named_rollback_goes_to_that_release_and_is_a_no_op_once_there():
    value = fact(current="3.0.0", previous="2.0.0", versions=["1.0.0", "2.0.0", "3.0.0"], physical_path=f"{ROOT}\\releases\\3.0.0")
    result = rollback(value, "1.0.0")
    assert [p["path"] for _, p in calls(result)] == [f"{ROOT}\\releases\\1.0.0"]
    assert written_state(result)["rolled_back_from"] == "3.0.0"
    there = fact(current="1.0.0", previous="3.0.0", versions=["1.0.0", "2.0.0", "3.0.0"], physical_path=f"{ROOT}\\releases\\1.0.0")
    assert rollback(there, "1.0.0").commands == []


def test_a_named_rollback_to_a_release_that_is_not_complete_fails_before_any_command():
    value = fact(current="2.0.0", previous="1.0.0", versions=["1.0.0", "2.0.0", "3.0.0+partial"], physical_path=f"{ROOT}\\releases\\2.0.0")
    for missing in ("0.9.0", "3.0.0"):
        with pytest.raises(OperationError, match=f"release {missing} is not installed .*installed: 1.0.0, 2.0.0"):
            rollback(value, missing)


def test_a_named_rollback_picks_the_newest_config_revision_or_the_one_named():
    value = fact(current="2.0.0", previous="1.0.0+r2", versions=["1.0.0", "1.0.0+r2", "1.0.0+r3", "2.0.0"],
                 physical_path=f"{ROOT}\\releases\\2.0.0")
    assert release.rollback_target(release.release_report(value, ROOT), "1.0.0") == "1.0.0+r3"
    assert release.rollback_target(release.release_report(value, ROOT), "1.0.0+r1") == "1.0.0"
    assert release.rollback_target(release.release_report(value, ROOT), "1.0.0+r2") == "1.0.0+r2"
    assert release.rollback_target(release.release_report(value, ROOT)) == "1.0.0+r2"  # previous, exactly


# --- Config revisions ---------------------------------------------------------------------------


@pytest.fixture
def artifact(tmp_path):
    manifest = Manifest(app="api", version="2.0.0", python="3.12", entry_point="main:app", requirements=(), files={})
    path = tmp_path / "api-2.0.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", manifest.to_json())
    return path


def installed(artifact, entries: dict[str, dict], current: str) -> dict:
    """Serving ``current``; ``entries``: folder name → the settings its web.config was rendered with."""

    manifest = Manifest.from_json(zipfile.ZipFile(artifact).read("manifest.json"))
    value = fact(current=current, versions=list(entries), physical_path=f"{ROOT}\\releases\\{current}")
    for entry in value["releases"][ROOT]["versions"]:
        text = release.revision_web_config(ReleaseSettings.model_validate(entries[entry["version"]]), "2.0.0", entry["version"], manifest)
        entry["web_config_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return value


def revise(value, artifact, settings):
    return run_operation(release.release_revised._inner, value, settings=settings, version="2.0.0", artifact=str(artifact), app_pool="api")


def test_changed_app_settings_become_a_new_revision_that_runs_the_versions_venv(artifact):
    debug = {**SETTINGS, "app_settings": {"LOG_LEVEL": "debug"}}
    value = installed(artifact, {"2.0.0": SETTINGS}, "2.0.0")
    assert release.config_revision(release.release_report(value, ROOT), ReleaseSettings.model_validate(debug), "2.0.0", artifact)[0] == "2.0.0+r2"
    result = revise(value, artifact, debug)
    steps = calls(result)
    assert [(n, p["path"]) for n, p in steps] == [("Initialize-Directory", f"{ROOT}\\releases\\2.0.0+r2"),
                                                  ("Write-TextFile", f"{ROOT}\\releases\\2.0.0+r2\\web.config"),
                                                  ("Write-TextFile", f"{ROOT}\\releases\\2.0.0+r2\\.pyinfra-iis-complete")]
    web_config = steps[1][1]["text"]
    assert 'name="LOG_LEVEL" value="debug"' in web_config and 'name="PYINFRA_IIS_RELEASE" value="2.0.0+r2"' in web_config
    assert f"{ROOT}\\releases\\2.0.0\\venv\\Scripts\\python.exe" in web_config and f"{ROOT}\\releases\\2.0.0\\app" in web_config
    assert "s3cr" not in web_config  # secrets never in web.config


def test_unchanged_settings_are_a_no_op_and_earlier_settings_go_back_to_their_folder(artifact):
    debug = {**SETTINGS, "app_settings": {"LOG_LEVEL": "debug"}}
    value = installed(artifact, {"2.0.0": SETTINGS, "2.0.0+r2": debug}, "2.0.0+r2")
    assert revise(value, artifact, debug).commands == []
    assert release.config_revision(release.release_report(value, ROOT), ReleaseSettings.model_validate(SETTINGS), "2.0.0", artifact) == ("2.0.0", None)
    third = {**SETTINGS, "app_settings": {"LOG_LEVEL": "warning"}}
    assert release.config_revision(release.release_report(value, ROOT), ReleaseSettings.model_validate(third), "2.0.0", artifact)[0] == "2.0.0+r3"


def test_a_version_not_installed_yet_needs_no_revision_and_a_missing_artifact_keeps_the_served_folder(artifact, tmp_path):
    value = installed(artifact, {"2.0.0": SETTINGS}, "2.0.0")
    report = release.release_report(value, ROOT)
    assert release.config_revision(report, ReleaseSettings.model_validate(SETTINGS), "3.0.0", artifact) == ("3.0.0", None)
    result = revise(value, tmp_path / "absent.zip", {**SETTINGS, "app_settings": {}})
    assert result.commands == [] and any("cannot be compared" in m for m in result.logs)


def test_revision_names_follow_the_version_and_round_trip():
    assert release.revision_name("1.4.2", 2) == "1.4.2+r2" and release.revision_name("1.5.0+build.7", 3) == "1.5.0+build.7.r3"
    assert release.revision_of("1.4.2+r2") == ("1.4.2", 2) and release.revision_of("1.5.0+build.7.r3") == ("1.5.0+build.7", 3)
    assert release.revision_of("1.4.2") == ("1.4.2", 1) and release.revision_of("1.4.2+r1") == ("1.4.2", 1)
    assert release.revision_of("1.5.0+build.7") == ("1.5.0+build.7", 1)


def test_cleanup_keeps_the_version_a_kept_revision_runs_on_and_removes_revisions_without_artifacts():
    model = ReleaseSettings.model_validate(SETTINGS)  # keep_releases 3
    report = release.release_report(fact(current="3.0.0+r2", previous="3.0.0", versions=["1.0.0", "1.0.0+r2", "2.0.0", "3.0.0", "3.0.0+r2"]), ROOT)
    old, _, _ = release.removable(model, report)
    assert old == ["1.0.0", "1.0.0+r2"]
    report = release.release_report(fact(current="1.0.0+r2", previous="3.0.0", versions=["1.0.0", "1.0.0+r2", "2.0.0", "3.0.0", "4.0.0"]), ROOT)
    assert release.removable(model, report)[0] == []  # 1.0.0+r2 serves: 1.0.0 stays under it
    result = run_operation(release.old_releases_removed._inner, fact(current="4.0.0", previous="3.0.0",
                           versions=["1.0.0", "1.0.0+r2", "2.0.0", "3.0.0", "4.0.0"]), settings=SETTINGS)
    [(_, payload)] = calls(result)
    assert payload["paths"] == [f"{ROOT}\\releases\\1.0.0", f"{ROOT}\\releases\\1.0.0+r2", f"{ROOT}\\artifacts\\api-1.0.0.zip"]


# --- Several apps per host -------------------------------------------------------------------


from pyinfra_iis.deploys.release import load_release_configs, release_targets  # noqa: E402
from pyinfra_iis.facts.arguments import release_arguments  # noqa: E402
from pyinfra_iis.models import InventoryError  # noqa: E402
from pyinfra_iis.operations.testing import make_host  # noqa: E402

PYTHON = {"version": "3.12.7", "source": __file__, "sha256": "0" * 64}
ADMIN = {**SETTINGS, "app_name": "admin", "root": "C:\\sites\\admin", "app_secrets": {}}
ADMIN_SITE = {"name": "admin", "physical_path": "C:\\sites\\admin\\current", "app_pool": "admin",
              "bindings": [{"protocol": "http", "port": 8080, "host_name": "admin.example.com"}]}


def two_apps(*changes: dict, **extra) -> dict:
    apps = [{"app": SETTINGS, "site": "api"}, {"app": ADMIN, "site": "admin"}]
    for index, change in enumerate(changes):
        apps[index] = {**apps[index], **change}
    return {"iis_app_pools": [{"name": "api"}, {"name": "admin"}], "iis_sites": [HTTPS_SITE, ADMIN_SITE],
            "release_apps": apps, "release_python": PYTHON, **extra}


def problems(data: dict, environ=None) -> str:
    with pytest.raises(InventoryError) as caught:
        load_release_configs(data, "web01", environ=environ or {})
    return str(caught.value)


def test_two_apps_resolve_to_their_own_site_pool_and_root_and_the_fact_asks_for_both_roots():
    state, host = make_host(two_apps())
    targets = release_targets(host, environ={})
    assert [(t.settings.app_name, t.site.name, t.app_pool, t.settings.root) for t in targets] == [
        ("api", "api", "api", ROOT), ("admin", "admin", "admin", "C:\\sites\\admin")]
    paths, roots, _ = release_arguments(two_apps())
    assert roots == [ROOT, "C:\\sites\\admin"] and "C:\\sites\\admin\\logs" in paths


def test_apps_sharing_a_root_a_site_a_name_or_a_pool_are_refused_naming_host_field_and_fix():
    text = problems(two_apps({}, {"app": {**ADMIN, "root": ROOT + "\\admin"}, "site": "api"}))
    assert "release_apps[1].app.root: C:\\sites\\api\\admin is, holds or lies inside the root of release_apps[0] (api)" in text
    assert "release_apps[1].site: site 'api' already serves release_apps[0] (api)" in text and "fix: give each app its own site" in text
    assert "web01" in text
    assert "release_apps[1].app.app_name" in problems(two_apps({}, {"app": {**ADMIN, "app_name": "api"}}))
    state, host = make_host(two_apps({}, {"app_pool": "api"}))
    with pytest.raises(InventoryError, match=r"release_apps\[1\].app_pool: app pool 'api' already runs api"):
        release_targets(host, environ={})


def test_a_version_for_several_apps_must_name_the_app_and_release_only_picks_it():
    text = problems(two_apps(), environ={"PYINFRA_IIS_RELEASE_VERSION": "2.0.0"})
    assert "release_version: 2 apps in release_apps" in text and "release_only=<app_name>" in text
    [only] = load_release_configs(two_apps(release_only="admin", release_version="2.0.0"), environ={})
    assert (only.app.app_name, only.version, str(only.artifact_path())) == ("admin", "2.0.0", "dist/admin-2.0.0.zip")
    each = load_release_configs(two_apps({"version": "1.0.0"}, {"version": "2.0.0", "artifact": "x/admin.zip"}), environ={})
    assert [(c.version, str(c.artifact_path())) for c in each] == [("1.0.0", "dist/api-1.0.0.zip"), ("2.0.0", "x/admin.zip")]
    assert "did you mean admin?" in problems(two_apps(release_only="admn"))


def test_the_list_form_refuses_the_one_app_keys_and_unknown_entry_keys():
    text = problems({**two_apps(), "release_app": SETTINGS, "release_site": "api"})
    assert "release_apps: given together with release_app, release_site" in text
    assert "release_apps[0].sites: unknown key (fix: did you mean site?)" in problems(two_apps({"sites": "x"}))
    assert "release_apps[1].app.root" in problems(two_apps({}, {"app": {**ADMIN, "root": "C:\\"}}))


def test_the_one_app_form_keeps_working_and_release_only_must_name_it():
    data = {"iis_sites": [HTTPS_SITE], "release_app": SETTINGS, "release_site": "api", "release_python": PYTHON}
    assert [c.app.app_name for c in load_release_configs(data, environ={})] == ["api"]
    assert "release_only: this host releases 'api', not 'admin'" in problems({**data, "release_only": "admin"})


def test_a_rollback_run_reads_release_version_as_the_target_not_as_something_to_ship():
    from pyinfra_iis.deploys.release import load_release_config, rollback_run

    assert rollback_run(["pyinfra", "inventories/prod.py", "deploys/rollback.py", "--data", "release_version=1.0.0"])
    assert not rollback_run(["pyinfra", "inventories/prod.py", "deploys/release.py"])
    data = {"iis_sites": [HTTPS_SITE], "release_app": SETTINGS, "release_site": "api", "release_python": PYTHON}
    environ = {"PYINFRA_IIS_RELEASE_VERSION": "3.0.0", "PYINFRA_IIS_RELEASE_ARTIFACT": "dist/api-3.0.0.zip"}
    named = load_release_config({**data, "release_version": "1.0.0"}, environ=environ, rollback=True)
    assert (named.rollback_to, named.version, named.artifact_path()) == ("1.0.0", None, None)  # no artifact to preflight
    unnamed = load_release_config(data, environ=environ, rollback=True)
    assert (unnamed.rollback_to, unnamed.version) == (None, None)  # the release job's version is not a target
    assert load_release_config(data, environ=environ, rollback=False).version == "3.0.0"
    [only] = load_release_configs(two_apps(release_only="admin", release_version="1.0.0"), environ=environ, rollback=True)
    assert (only.app.app_name, only.rollback_to) == ("admin", "1.0.0")


def test_a_revision_name_cannot_be_shipped_but_can_be_rolled_back_to():
    data = {"iis_sites": [HTTPS_SITE], "release_app": SETTINGS, "release_site": "api", "release_python": PYTHON, "release_version": "1.0.0+r2"}
    text = problems(data)
    assert "release_version: 1.0.0+r2 names a config revision of 1.0.0" in text and "fix: release 1.0.0" in text
    from pyinfra_iis.deploys.release import load_release_config

    assert load_release_config(data, environ={}, rollback=True).rollback_to == "1.0.0+r2"
    assert "release_apps[0].version: 2.0.0+r3 names a config revision" in problems(two_apps({"version": "2.0.0+r3"}))
    assert load_release_configs({**data, "release_version": "1.0.0+build.7"}, environ={})[0].version == "1.0.0+build.7"


def test_the_inventory_check_sees_the_one_app_of_a_run_limited_by_release_only(tmp_path):
    from pyinfra_iis.deploys.release import load_release_config
    from pyinfra_iis.inventory_check import check_hosts

    assert load_release_config(two_apps(), environ={}) is None
    chosen = load_release_config(two_apps(release_only="admin", release_version="2.0.0"), environ={})
    assert (chosen.app.app_name, chosen.version) == ("admin", "2.0.0")
    report = check_hosts([("web01", two_apps(release_only="admin", release_version="2.0.0"))], base_dir=tmp_path, environ={})
    assert any(p.field == "release_artifact" and "dist/admin-2.0.0.zip is not a file" in p.reason for p in report.problems), report.problems


def test_the_rights_record_keeps_every_declared_apps_rights_when_a_run_releases_one():
    """A run limited to one app (``release_only``, with its version) must not revoke the rights
    of the other apps: the record of granted rights compares against every declared app."""

    from pyinfra_iis.operations.rights import inventory_grants

    state, host = make_host(two_apps(release_only="admin", release_version="2.1.0"))
    paths = {(grant["target"].lower(), grant["principal"]) for grant in inventory_grants(host) if grant["kind"] == "path"}
    assert (ROOT.lower(), "IIS AppPool\\api") in paths
    assert ("c:\\sites\\admin", "IIS AppPool\\admin") in paths and ("c:\\sites\\admin\\logs", "IIS AppPool\\admin") in paths


def test_doctor_checks_the_app_release_only_names_and_redacts_every_apps_secrets():
    from pyinfra_iis.doctor import target_from_host_data

    admin = {**ADMIN, "app_secrets": {"ADMIN_TOKEN": "admin-secret-1"}}
    first = target_from_host_data("web01", two_apps({}, {"app": admin}))
    assert (first.site, first.pool, first.root) == ("api", "api", ROOT)
    chosen = target_from_host_data("web01", two_apps({}, {"app": admin}, release_only="admin"))
    assert (chosen.site, chosen.pool, chosen.root) == ("admin", "admin", "C:\\sites\\admin")
    revealed = {secret.get_secret_value() for secret in chosen.secrets}
    assert "admin-secret-1" in revealed and set(v for v in SETTINGS["app_secrets"].values()) <= revealed
