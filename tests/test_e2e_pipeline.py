"""Issue 11 §3 end to end, through the real ``pyinfra`` command line against simulated hosts:
a canary host first, a config-only revision, idempotent and named rollbacks, and two apps on
one host released and served independently.

The app is ``examples/app`` plus a ``/settings`` route showing the ``LOG_LEVEL`` app setting
it sees (a test variant, built like any release).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pyinfra_iis.demo import PROJECT, Demo, fetch
from pyinfra_iis.release.artifact import build_release
from test_e2e_release import CONFIG, FAST_HEALTH, changed, run

pytestmark = pytest.mark.e2e

SETTINGS_ROUTE = '''

@app.get("/settings")
def _settings() -> dict:
    """pyinfra-iis test variant: the app settings this process sees."""

    return {"LOG_LEVEL": os.environ.get("LOG_LEVEL"), "release": RELEASE}
'''


@pytest.fixture(scope="module")
def variant_artifacts(tmp_path_factory) -> dict[str, Path]:
    """``api`` 1.0.0 and 2.0.0 and ``admin`` 1.0.0 and 2.0.0 of the variant app."""

    app = tmp_path_factory.mktemp("variant") / "app"
    shutil.copytree(PROJECT / "examples" / "app", app, ignore=shutil.ignore_patterns("__pycache__"))
    with open(app / "main.py", "a", encoding="utf-8") as handle:
        handle.write(SETTINGS_ROUTE)
    dist = tmp_path_factory.mktemp("dist")
    return {f"{name}-{version}": build_release(app, version, "3.12", dist, name=name).path
            for name in ("api", "admin") for version in ("1.0.0", "2.0.0")}


def project(tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(FAST_HEALTH + extra)
    return root


def get(server, path: str, **binding) -> dict:
    status, body = fetch(server, path, **binding)
    assert status == 200, body
    return json.loads(body)


def state(server, root: str = "C:\\sites\\api") -> dict:
    return json.loads(server.host.path(f"{root}\\release-state.json").read_text(encoding="utf-8"))


def host_name(server) -> str:
    return f"@winrm/127.0.0.1:{server.port}"


def test_canary_then_the_rest_a_config_revision_and_rollbacks_a_retry_cannot_undo(tmp_path, variant_artifacts):
    api = {v: variant_artifacts[f"api-{v}"] for v in ("1.0.0", "2.0.0")}
    with Demo(tmp_path / "work", hosts=2, root=project(tmp_path)) as demo:
        run(demo, "deploys/site.py", version="1.0.0", artifact=api["1.0.0"])
        canary, other = demo.servers

        # 4. Canary first: --limit the canary host, then everyone; the canary is a no-op the second time.
        first = run(demo, "deploys/release.py", "--limit", host_name(canary), version="2.0.0", artifact=api["2.0.0"])
        assert "Switch api to 2.0.0" in first
        assert [get(s, "/settings")["release"] for s in demo.servers] == ["2.0.0", "1.0.0"]
        rest = run(demo, "deploys/release.py", "--serial", "--fail-percent", "0", version="2.0.0", artifact=api["2.0.0"])
        assert changed(rest) and all(host_name(other) in line for line in changed(rest)), rest
        assert [get(s, "/settings")["release"] for s in demo.servers] == ["2.0.0", "2.0.0"]

        # 3. One app setting changes: a config revision of 2.0.0, switched and health-checked; no rebuild.
        group_data = demo.root / "inventories" / "group_data" / "all.py"
        original = group_data.read_text(encoding="utf-8")
        group_data.write_text(original + '\nrelease_app = {**release_app, "app_settings": {"LOG_LEVEL": "debug"}}\n', encoding="utf-8")
        revised = run(demo, "deploys/release.py", version="2.0.0", artifact=api["2.0.0"])
        assert "Switch api to 2.0.0+r2" in revised
        for server in demo.servers:
            assert get(server, "/settings") == {"LOG_LEVEL": "debug", "release": "2.0.0+r2"}
            assert get(server, "/info")["version"] == "2.0.0"  # the same code: the version's own venv and app
            assert (state(server)["current"], state(server)["previous"]) == ("2.0.0+r2", "2.0.0")
            server.host.reset_counters()
        again = run(demo, "deploys/release.py", version="2.0.0", artifact=api["2.0.0"])
        assert changed(again) == [], again
        assert all(s.host.counters.get("function_calls", 0) == 1 for s in demo.servers)

        # 1. Rollback goes across the revision to 2.0.0 as installed; a retried job changes nothing.
        run(demo, "deploys/rollback.py")
        assert [get(s, "/settings") for s in demo.servers] == [{"LOG_LEVEL": "info", "release": "2.0.0"}] * 2
        assert state(canary)["rolled_back_from"] == "2.0.0+r2"
        retried = run(demo, "deploys/rollback.py")
        assert changed(retried) == [], retried  # before: it toggled back to 2.0.0+r2
        assert [get(s, "/settings")["release"] for s in demo.servers] == ["2.0.0", "2.0.0"]

        # Named: an unknown release is refused before anything changes; an installed one is served.
        before = [s.host.path(CONFIG).read_text(encoding="utf-8-sig") for s in demo.servers]
        refused = run(demo, "deploys/rollback.py", "--data", "release_version=9.9.9", ok=False)
        assert "release 9.9.9 is not installed (complete) on this host" in refused and "installed: 1.0.0, 2.0.0, 2.0.0+r2" in refused
        assert [s.host.path(CONFIG).read_text(encoding="utf-8-sig") for s in demo.servers] == before
        run(demo, "deploys/rollback.py", "--data", "release_version=1.0.0")
        assert [get(s, "/settings")["release"] for s in demo.servers] == ["1.0.0", "1.0.0"]
        # The release job's environment version is not a rollback target.
        assert changed(run(demo, "deploys/rollback.py", version="2.0.0", artifact=api["2.0.0"])) == []
        run(demo, "deploys/rollback.py", "--data", "release_version=2.0.0")  # its newest revision
        assert get(canary, "/settings") == {"LOG_LEVEL": "debug", "release": "2.0.0+r2"}
        # Settings changed back, and no version given (a converge): the served version goes back
        # to the folder that has them (its artifact is given, for the entry point).
        group_data.write_text(original, encoding="utf-8")
        back = run(demo, "deploys/release.py", artifact=api["2.0.0"])
        assert re.search(r"Switch api to 2\.0\.0(?!\+)", back), back
        assert get(canary, "/settings") == {"LOG_LEVEL": "info", "release": "2.0.0"}  # the earlier settings' own folder again


TWO_APPS = r'''
iis_app_pools = [{"name": "api"}, {"name": "admin"}]
iis_sites = [*iis_sites, {"name": "admin", "physical_path": r"C:\sites\admin\current", "app_pool": "admin",
                          "bindings": [{"protocol": "http", "port": 8080, "host_name": "admin.example.com"}]}]
release_apps = [
    {"app": release_app, "site": "api", "version": "1.0.0", "artifact": ARTIFACTS["api-1.0.0"]},
    {"app": {**release_app, "app_name": "admin", "root": r"C:\sites\admin", "app_secrets": {}}, "site": "admin",
     "version": "2.0.0", "artifact": ARTIFACTS["admin-2.0.0"]},
]
del release_app, release_site
'''

ADMIN = {"protocol": "http", "port": 8080, "host_name": "admin.example.com", "site": "admin"}


def test_two_apps_on_one_host_are_released_and_served_independently(tmp_path, variant_artifacts):
    extra = f"\nARTIFACTS = {json.dumps({k: str(v) for k, v in variant_artifacts.items()})}\n" + TWO_APPS
    with Demo(tmp_path / "work", hosts=1, root=project(tmp_path, extra)) as demo:
        output = run(demo, "deploys/site.py")
        assert "Switch api to 1.0.0" in output and "Switch admin to 2.0.0" in output
        [server] = demo.servers
        assert get(server, "/info")["version"] == "1.0.0" and get(server, "/info", **ADMIN)["version"] == "2.0.0"
        assert get(server, "/info", **ADMIN)["host"] == "admin.example.com"
        assert changed(run(demo, "deploys/release.py")) == []

        # One app moves, the other is left alone: release_only names it.
        moved = run(demo, "deploys/release.py", "--data", "release_only=api", "--data", "release_version=2.0.0",
                    "--data", f"release_artifact={variant_artifacts['api-2.0.0']}")
        assert "Switch api to 2.0.0" in moved and "admin" not in "".join(changed(moved))
        assert get(server, "/info")["version"] == "2.0.0" and get(server, "/info", **ADMIN)["version"] == "2.0.0"
        assert state(server, "C:\\sites\\admin")["history"][-1]["to"] == "2.0.0" and len(state(server, "C:\\sites\\admin")["history"]) == 1

        # A version without naming the app is refused before anything runs.
        refused = run(demo, "deploys/release.py", "--data", "release_version=3.0.0", ok=False)
        assert "release_version: 2 apps in release_apps" in refused and "release_only=<app_name>" in refused

        run(demo, "deploys/rollback.py", "--data", "release_only=api")
        assert get(server, "/info")["version"] == "1.0.0" and get(server, "/info", **ADMIN)["version"] == "2.0.0"
