"""Releases end to end through the real ``pyinfra`` command line against simulated hosts.

The project's ``inventories/`` and ``deploys/`` are copied into a temporary folder whose group
data gets short health timings (a broken release fails in seconds, not after the 2 min
default); everything else is the shipped inventory (``inventories/sim.py`` + ``group_data``).
Artifacts are built once per session from ``examples/app`` (wheels from PyPI, cached); the
simulator caches the local venv it runs releases with.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pyinfra_iis.demo import PROJECT, Demo, build_artifact, fetch
from pyinfra_iis.release.variants import make_broken_app

pytestmark = pytest.mark.e2e

EXAMPLE_APP = PROJECT / "examples" / "app"
#: Appended to the copied group data: short health timings for the tests (seconds).
FAST_HEALTH = '\nrelease_app = {**release_app, "startup_time_limit": "5s", "health_deadline": "15s"}\n'
CONFIG = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """``1.0.0`` and ``2.0.0`` of the example app, ``3.0.0`` failing at import."""

    dist = tmp_path_factory.mktemp("dist")
    broken = make_broken_app(EXAMPLE_APP, tmp_path_factory.mktemp("broken") / "app", "import-error")
    return {"1.0.0": build_artifact("1.0.0", dist), "2.0.0": build_artifact("2.0.0", dist),
            "3.0.0": build_artifact("3.0.0", dist, app_dir=broken)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, artifacts):
    """Two simulated hosts converged by ``deploys/site.py`` with release 1.0.0 (shared by the
    tests of this module, which leave them serving 1.0.0)."""

    tmp_path = tmp_path_factory.mktemp("fleet")
    root = tmp_path / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(FAST_HEALTH)
    with Demo(tmp_path / "work", hosts=2, root=root) as demo:
        output = run(demo, "deploys/site.py", version="1.0.0", artifact=artifacts["1.0.0"])
        assert "Switch api to 1.0.0" in output
        yield demo


def run(demo: Demo, deploy: str, *args: str, version: str | None = None, artifact: Path | None = None, ok: bool = True, servers=None) -> str:
    result = demo.pyinfra(deploy, *args, version=version, artifact=artifact, servers=servers, timeout=300)
    output = result.stdout + result.stderr
    for secret in demo.secrets():
        assert secret not in output
    assert (result.returncode == 0) is ok, output
    return output


def info(server) -> dict:
    status, body = fetch(server, "/info", headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 200, body
    return json.loads(body)


def changed(output: str) -> list[str]:
    """Operation result lines that report a change (``[host] Success``)."""

    return [line for line in output.splitlines() if re.search(r"\] Success", line)]


def layout(demo: Demo, index: int) -> dict[str, str]:
    """The release folders of host ``index``: relative path → file text for web.config and
    manifest.json, ``""`` for other files (the sim's venv marker names a local cache)."""

    base = demo.servers[index].host.path("C:\\sites\\api\\releases")
    return {p.relative_to(base).as_posix(): p.read_text(encoding="utf-8") if p.name in ("web.config", "manifest.json") else ""
            for p in sorted(base.rglob("*")) if p.is_file() and "wheelhouse" not in p.parts}


def served_version(demo: Demo, index: int) -> str:
    return info(demo.servers[index])["version"]


def test_bare_hosts_serve_the_release_through_their_bindings_then_nothing_changes_and_a_rebuild_is_identical(fleet, artifacts):
    for server in fleet.servers:
        status, body = fetch(server, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok", "version": "1.0.0"})  # the release answers (item 15)
        seen = info(server)
        assert seen["version"] == "1.0.0" and seen["host"] == "api.example.com"
        assert seen["client"] == {"host": "203.0.113.7", "scheme": "https"}  # X-Forwarded-For / -Proto trusted from IIS only
        plain = json.loads(fetch(server, "/info", protocol="http", port=80)[1])
        assert plain["client"]["scheme"] == "http"

    for server in fleet.servers:
        server.host.reset_counters()
    second = run(fleet, "deploys/site.py", version="1.0.0", artifact=artifacts["1.0.0"])
    assert changed(second) == [], second
    for server in fleet.servers:  # a converged host costs one Get-HostState, nothing else
        print("no-op run:", server.host.hostname, dict(server.host.counters))
        assert server.host.counters.get("function_calls", 0) == 1

    before_config = fleet.servers[0].host.path(CONFIG).read_text(encoding="utf-8-sig")
    before_layout = layout(fleet, 0)
    assert fleet.app_secret not in json.dumps(before_layout)  # secrets are never in web.config

    fleet.reinstall(0)
    rebuilt = run(fleet, "deploys/site.py", version="1.0.0", artifact=artifacts["1.0.0"], servers=[fleet.servers[0]])
    assert changed(rebuilt)
    assert fleet.servers[0].host.path(CONFIG).read_text(encoding="utf-8-sig") == before_config
    assert layout(fleet, 0) == before_layout
    assert served_version(fleet, 0) == "1.0.0"


def test_every_generated_web_config_and_the_converged_config_validate_against_the_iis_schema(fleet, reference_data):
    from support.iis_schema import validate_config

    for index in (0, 1):
        configs = {name: text for name, text in layout(fleet, index).items() if name.endswith("web.config")}
        assert configs
        for name, text in configs.items():
            assert validate_config(text, kind="web", folder=reference_data) == [], name
        assert validate_config(fleet.servers[index].host.path(CONFIG).read_text(encoding="utf-8-sig"), folder=reference_data) == []


def test_v2_then_a_broken_v3_stops_the_rollout_keeps_v2_serving_and_rollback_goes_back_one(fleet, artifacts):
    run(fleet, "deploys/release.py", "--data", "release_version=2.0.0", "--data", f"release_artifact={artifacts['2.0.0']}")
    assert [served_version(fleet, i) for i in (0, 1)] == ["2.0.0", "2.0.0"]

    failed = run(fleet, "deploys/release.py", "--serial", "--fail-percent", "0", version="3.0.0", artifact=artifacts["3.0.0"], ok=False)
    # Refused by its start check before any commit (issue 11: no client sees the broken release).
    assert "Switch-Release C:\\sites\\api\\releases\\3.0.0: start check failed with exit code 3; nothing was switched" in failed, failed
    assert "deliberately broken release" in failed  # the app's traceback reaches the operator
    assert [served_version(fleet, i) for i in (0, 1)] == ["2.0.0", "2.0.0"]
    attempted = [server.host for server in fleet.servers if server.host.path("C:\\sites\\api\\releases\\3.0.0").exists()]
    assert len(attempted) == 1  # --serial --fail-percent 0: the rollout stopped at the first failing host
    first_host = attempted[0]
    for server in fleet.servers:  # never half-switched: the site only ever pointed at complete releases
        history = server.host.state["sim_releases"]["physical_path_history"]
        assert all(entry["complete"] for entry in history if entry["release"]), history

    run(fleet, "deploys/rollback.py")
    assert [served_version(fleet, i) for i in (0, 1)] == ["1.0.0", "1.0.0"]
    state = json.loads(first_host.path("C:\\sites\\api\\release-state.json").read_text(encoding="utf-8"))
    assert (state["current"], state["previous"]) == ("1.0.0", "2.0.0")
    assert [entry["ok"] for entry in state["history"]] == [True, True, False, True]



def test_the_demo_keeps_its_secrets_private_and_its_certificate_between_runs(tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs12

    from pyinfra_iis.demo import load_secrets, write_sim_files

    first = load_secrets(tmp_path)
    assert load_secrets(tmp_path) == first
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    files = write_sim_files(tmp_path / "files", first["pfx_password"])
    pfx = files / "api.example.com.pfx"
    thumbprint = pkcs12.load_key_and_certificates(pfx.read_bytes(), first["pfx_password"].encode())[1].fingerprint(hashes.SHA1())
    write_sim_files(files, first["pfx_password"])
    assert pkcs12.load_key_and_certificates(pfx.read_bytes(), first["pfx_password"].encode())[1].fingerprint(hashes.SHA1()) == thumbprint
    write_sim_files(files, "another password")  # a password that no longer opens it: a new PFX
    assert pkcs12.load_key_and_certificates(pfx.read_bytes(), b"another password")[1].fingerprint(hashes.SHA1()) != thumbprint
    assert {p.name for p in files.iterdir()} == {"httpPlatformHandler_amd64.msi", "rewrite_amd64_en-US.msi", "requestRouter_amd64.msi",
                                                  "python-3.12.7-amd64.exe", "api.example.com.pfx"}
