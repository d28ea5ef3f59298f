"""Least privilege over time, end to end through the real ``pyinfra`` command line against a
simulated host: a release whose application pool changes from ``api`` to ``api2``.

The project's ``inventories/`` and ``deploys/`` are copied into a temporary folder; the copy's
simulated-host inventory gives the pools read access to the certificate's private key, and its
group data gets short health timings. After the first converge, an operator adds two ACEs by
hand (one for another account, one for ``api`` on a folder the project never granted). The
inventory then names ``api2`` instead of ``api``: a dry run shows each revocation and changes
nothing, the run moves every right the project gave ``api`` to ``api2`` and leaves the hand-made
ACEs, and the next run changes nothing. Then certificates: removing the one the site's https
binding names is refused before anything runs; removing an unused one shows in a dry run, goes
in the run (with its private key), and the next run has nothing to remove.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_iis.demo import PROJECT, Demo, build_artifact, fetch, write_pfx
from pyinfra_iis.operations.rights import GRANT_RECORD
from pyinfra_iis.sddl import app_pool_sid
from pyinfra_iis.sim.functions.acl import acl_store, grant_path_access
from pyinfra_iis.sim.functions import call
from pyinfra_iis.sim.functions.certificates import certificate_store, find_certificate

pytestmark = pytest.mark.e2e

FAST_HEALTH = '\nrelease_app = {**release_app, "startup_time_limit": "5s", "health_deadline": "15s"}\n'
POOL_CHANGE = '\niis_app_pools = [{"name": "api2"}]\niis_sites = [{**iis_sites[0], "app_pool": "api2"}]\n'
API, API2 = app_pool_sid("api"), app_pool_sid("api2")


def run(demo: Demo, *args: str, version: str | None = None, artifact: Path | None = None, ok: bool = True) -> str:
    """``deploys/site.py`` with ``-y``, or, with ``--dry``, without it (pyinfra skips the change
    detection a dry run shows under ``-y``)."""

    if "--dry" in args:
        result = subprocess.run([sys.executable, "-m", "pyinfra", "inventories/sim.py", "deploys/site.py", *args], cwd=demo.root,
                                env=demo.environment(version, artifact), capture_output=True, text=True, timeout=300)
    else:
        result = demo.pyinfra("deploys/site.py", *args, version=version, artifact=artifact, timeout=300)
    output = result.stdout + result.stderr
    for secret in demo.secrets():
        assert secret not in output
    assert (result.returncode == 0) is ok, output
    return output


def granted_paths(server, sid: str) -> set[str]:
    """Lower-cased paths where ``sid`` has an explicit Allow entry on the simulated host."""

    with server.host.lock:
        return {acl["path"].lower() for acl in acl_store(server.host).values()
                for entry in acl["entries"] if entry["sid"] == sid and entry["type"] == "Allow"}


def record(server) -> list[dict]:
    return json.loads(server.host.path(GRANT_RECORD).read_text(encoding="utf-8"))["grants"]


def key_file(server) -> str:
    with server.host.lock:
        return next(r["key_file"] for r in certificate_store(server.host).values() if r.get("key_file")).lower()


def test_a_pool_change_moves_the_rights_the_project_granted_and_keeps_hand_made_ones(tmp_path):
    dist = tmp_path / "dist"
    artifacts = {v: build_artifact(v, dist) for v in ("1.0.0", "2.0.0")}
    root = tmp_path / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    sim_inventory = root / "inventories" / "sim.py"
    text = sim_inventory.read_text(encoding="utf-8")
    assert '"store": "WebHosting"}],' in text
    sim_inventory.write_text(text.replace('"store": "WebHosting"}],', '"store": "WebHosting", "grant_private_key_to_pools": True}],'), encoding="utf-8")
    group_data = root / "inventories" / "group_data" / "all.py"
    with open(group_data, "a", encoding="utf-8") as handle:
        handle.write(FAST_HEALTH)

    with Demo(tmp_path / "work", hosts=1, root=root) as demo:
        server = demo.servers[0]
        run(demo, version="1.0.0", artifact=artifacts["1.0.0"])
        key = key_file(server)
        granted = granted_paths(server, API)
        assert {"c:\\sites\\api", "c:\\sites\\api\\logs", key} <= granted, granted
        assert {(g["kind"], g["sid"]) for g in record(server)} == {("path", API), ("key", API)}
        assert len(record(server)) == 6  # root, logs, releases, artifacts, base Python, private key
        python_dir = next(g["target"] for g in record(server) if g["kind"] == "path"
                          and g["target"].lower() not in ("c:\\sites\\api", "c:\\sites\\api\\logs")).lower()

        # An operator's own ACEs: one for another account, one for api where the project granted nothing.
        grant_path_access(server.host, {"path": "C:\\sites\\api\\logs", "principal": "BUILTIN\\Users", "rights": "Read"})
        grant_path_access(server.host, {"path": "C:\\sites\\api\\iislogs", "principal": "IIS AppPool\\api", "sid": API, "rights": "Read"})

        with open(group_data, "a", encoding="utf-8") as handle:
            handle.write(POOL_CHANGE)
        before = granted_paths(server, API)
        dry = run(demo, "--dry", "--diff", version="1.0.0", artifact=artifacts["1.0.0"])
        for path in ("C:\\sites\\api", "C:\\sites\\api\\logs"):
            assert f"{path}: IIS AppPool\\api: 'ReadAndExecute' -> (absent)" in dry or f"{path}: IIS AppPool\\api: 'Modify' -> (absent)" in dry, dry
        assert re.search(r"certificate [0-9A-F]{40} private key: IIS AppPool\\api: 'Read' -> \(absent\)", dry), dry
        assert re.search(r"Configure IIS \| Granted rights: revoke what the inventory no longer names\s+1 ", dry), dry
        assert granted_paths(server, API) == before  # a dry run changes nothing

        run(demo, version="1.0.0", artifact=artifacts["1.0.0"])
        assert granted_paths(server, API) == {"c:\\sites\\api\\iislogs"}  # only the hand-made one is left
        assert {"c:\\sites\\api", "c:\\sites\\api\\logs", python_dir, key} <= granted_paths(server, API2)
        assert "c:\\sites\\api\\logs" in granted_paths(server, "S-1-5-32-545")  # BUILTIN\Users, by hand: kept
        assert {(g["kind"], g["sid"]) for g in record(server)} == {("path", API2), ("key", API2)}
        status, body = fetch(server, "/info", headers={"X-Forwarded-For": "203.0.113.7"})
        assert status == 200 and json.loads(body)["version"] == "1.0.0", body

        again = run(demo, "--dry", version="1.0.0", artifact=artifacts["1.0.0"])
        assert not re.search(r"Granted rights[^\n]*\s1 ", again), again

        # Removing the certificate while the site's https binding names it: refused before anything runs.
        thumbprint = next(g["target"] for g in record(server) if g["kind"] == "key")
        text = sim_inventory.read_text(encoding="utf-8")
        sim_inventory.write_text(text.replace('"grant_private_key_to_pools": True}],', f'"grant_private_key_to_pools": True, "ensure": "absent", "thumbprint": "{thumbprint}"}}],'), encoding="utf-8")
        before = server.host.snapshot()["certificates"]
        refused = run(demo, ok=False)
        assert "is to be removed but this binding uses it" in refused, refused
        assert server.host.snapshot()["certificates"] == before

        # A certificate no binding uses (an older one still in My): dry run, run, then nothing.
        old = write_pfx(tmp_path / "old.pfx", "old-pass", ["old.example.com"])
        call(server.host, "Import-IisCertificate", {"pfx": base64.b64encode((tmp_path / "old.pfx").read_bytes()).decode("ascii"),
                                                    "password": "old-pass", "store": "My", "thumbprint": old}, {})
        sim_inventory.write_text(text.replace('"store": "WebHosting", "grant_private_key_to_pools": True}],',
                                              '"store": "WebHosting", "grant_private_key_to_pools": True}, '
                                              f'{{"name": "old", "thumbprint": "{old}", "ensure": "absent"}}],'), encoding="utf-8")
        dry = run(demo, "--dry", "--diff", version="1.0.0", artifact=artifacts["1.0.0"])
        assert f"certificate old: '{old} in My' -> (absent)" in dry, dry
        assert find_certificate(server.host, "My", old) is not None
        run(demo, version="1.0.0", artifact=artifacts["1.0.0"])
        assert find_certificate(server.host, "My", old) is None
        assert find_certificate(server.host, "WebHosting", thumbprint) is not None
        again = run(demo, "--dry", version="1.0.0", artifact=artifacts["1.0.0"])
        assert not re.search(r"Remove certificate old\s+1 ", again) and "Remove certificate old" in again, again
