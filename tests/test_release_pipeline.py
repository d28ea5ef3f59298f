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
