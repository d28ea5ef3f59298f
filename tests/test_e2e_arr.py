"""The ARR reverse-proxy mode end to end, through the real ``pyinfra`` command line against
simulated hosts: bare host → v1 → v2 → broken v3 refused (the old slot keeps serving) →
rollback to the other slot, with clients calling the app through the IIS binding the whole
time (zero failed requests), and a 3-minute request through the proxy.

The services are real uvicorn processes (``sim/functions/services.py``) and the simulated IIS
proxies through the rewrite rule it reads from applicationHost.config (``sim/apps/arr_proxy.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from pyinfra_iis.demo import PROJECT, Demo, build_artifact, fetch
from pyinfra_iis.release.variants import make_broken_app

pytestmark = pytest.mark.e2e

EXAMPLE_APP = PROJECT / "examples" / "app"
CONFIG = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"
STATE = "C:\\sites\\api\\release-state.json"

#: Routes added to the example app for these tests: a slow request and the headers the app got.
EXTRA_ROUTES = '''

import asyncio as _asyncio


@app.get("/slow")
async def slow(seconds: float = 1.0) -> dict:
    await _asyncio.sleep(seconds)
    return {"slept": seconds, "version": RELEASE}


@app.get("/headers")
def headers(request: Request) -> dict:
    return {name: value for name, value in request.headers.items()}
'''


def arr_group_data(winsw: Path, proxy_timeout: str = "10s", drain: str = "8s", keep_alive: str = "120s") -> str:
    """Group data lines that switch the example to the ARR mode (short timings for tests)."""

    sha = hashlib.sha256(winsw.read_bytes()).hexdigest()
    return f'''
release_app = {{**release_app, "startup_time_limit": "5s", "health_deadline": "30s", "mode": "arr",
                "timeout_keep_alive": "{keep_alive}", "timeout_graceful_shutdown": "3s",
                "arr": {{"winsw": {{"source": {str(winsw)!r}, "sha256": "{sha}"}}, "workers": 2,
                        "proxy_timeout": "{proxy_timeout}", "drain": "{drain}", "stop_timeout": "10s"}}}}
iis_server = {{**iis_server, "proxy": {{**iis_server["proxy"], "timeout": "{proxy_timeout}"}}}}
'''


@pytest.fixture(scope="session")
def slow_app(tmp_path_factory) -> Path:
    app = tmp_path_factory.mktemp("arrapp") / "app"
    shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    with open(app / "main.py", "a", encoding="utf-8") as handle:
        handle.write(EXTRA_ROUTES)
    return app


@pytest.fixture(scope="session")
def arr_artifacts(tmp_path_factory, slow_app) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("arrdist")
    broken = make_broken_app(slow_app, tmp_path_factory.mktemp("arrbroken") / "app", "import-error")
    return {"1.0.0": build_artifact("1.0.0", dist, app_dir=slow_app), "2.0.0": build_artifact("2.0.0", dist, app_dir=slow_app),
            "3.0.0": build_artifact("3.0.0", dist, app_dir=broken)}


def project(tmp_path: Path, extra: str) -> Path:
    root = tmp_path / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(extra)
    return root


def winsw_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "WinSW-x64.exe"
    path.write_bytes(b"MZ pyinfra-iis test stand-in for WinSW 2.12 x64\r\n")
    return path


def run(demo: Demo, deploy: str, *args: str, version: str | None = None, artifact: Path | None = None, ok: bool = True) -> str:
    result = demo.pyinfra(deploy, *args, version=version, artifact=artifact, timeout=600)
    output = result.stdout + result.stderr
    for secret in demo.secrets():
        assert secret not in output
    assert (result.returncode == 0) is ok, output
    return output


def info(server) -> dict:
    status, body = fetch(server, "/info", headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 200, body
    return json.loads(body)


def state(server) -> dict:
    return json.loads(server.host.path(STATE).read_text(encoding="utf-8"))


class Clients:
    """Threads calling ``/info`` through each host's https binding until stopped; every answer
    that is not 200 (or a failed connection) is a failed request."""

    def __init__(self, demo: Demo, per_host: int = 3):
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.versions: set[str] = set()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(server,), daemon=True) for server in demo.servers for _ in range(per_host)]

    def _loop(self, server) -> None:
        while not self.stop.is_set():
            try:
                status, body = fetch(server, "/info", timeout=30)
                good = status == 200
                outcome = json.loads(body)["version"] if good else f"{status} {body[:200]}"
            except Exception as exc:  # noqa: BLE001 - any failure counts
                good, outcome = False, f"{type(exc).__name__}: {exc}"
            with self._lock:
                if good:
                    self.ok += 1
                    self.versions.add(outcome)
                else:
                    self.failed.append(outcome)

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, arr_artifacts):
    tmp_path = tmp_path_factory.mktemp("arrfleet")
    root = project(tmp_path, arr_group_data(winsw_file(tmp_path / "winsw")))
    with Demo(tmp_path / "work", hosts=2, root=root) as demo:
        yield demo


def changed(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(r"\] Success", line)]


def test_bare_hosts_to_v1_v2_broken_v3_and_rollback_through_arr_without_a_failed_request(fleet, arr_artifacts):
    first = run(fleet, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
    assert "Switch api to 1.0.0 (ARR)" in first
    for server in fleet.servers:
        seen = info(server)
        assert seen["version"] == "1.0.0" and seen["host"] == "api.example.com"  # preserveHostHeader
        assert seen["client"] == {"host": "203.0.113.7", "scheme": "https"}  # X-Forwarded-For / -Proto from IIS, trusted
        assert json.loads(fetch(server, "/info", protocol="http", port=80)[1])["client"]["scheme"] == "http"
        forwarded = json.loads(fetch(server, "/headers")[1])
        assert forwarded["x-forwarded-host"] == "api.example.com" and forwarded["x-forwarded-proto"] == "https"
        assert (state(server)["active_slot"], state(server)["slots"]) == ("blue", {"blue": "1.0.0", "green": None})
        config = server.host.path(CONFIG).read_text(encoding="utf-8-sig")
        assert 'url="http://127.0.0.1:8001/{R:1}"' in config and "HTTP_X_FORWARDED_HOST" in config
        assert server.host.state["services"]["pyinfra-iis-api-blue"]["state"] == "Running"
        logs = server.host.path("C:\\sites\\api\\logs\\services")
        assert (logs / "pyinfra-iis-api-blue.err.log").is_file()  # uvicorn logs to stderr, into the release's logs
        xml = server.host.path("C:\\sites\\api\\services\\blue\\pyinfra-iis-api-blue.xml").read_text(encoding="utf-8")
        assert '<log mode="roll-by-size">' in xml and "--loop asyncio:SelectorEventLoop" in xml and "--workers 2" in xml

    second = run(fleet, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
    assert changed(second) == [], second  # converged: nothing to do

    with Clients(fleet) as clients:
        run(fleet, "deploys/release.py", version="2.0.0", artifact=arr_artifacts["2.0.0"])
    print("v1 -> v2:", clients.ok, "ok,", len(clients.failed), "failed")
    assert clients.failed == [] and clients.ok > 0 and clients.versions == {"1.0.0", "2.0.0"}
    for server in fleet.servers:
        assert info(server)["version"] == "2.0.0"
        assert state(server)["active_slot"] == "green"
        assert server.host.state["services"]["pyinfra-iis-api-blue"]["state"] == "Stopped"  # drained, then stopped

    with Clients(fleet) as clients:
        failed = run(fleet, "deploys/release.py", "--serial", "--fail-percent", "0", version="3.0.0",
                     artifact=arr_artifacts["3.0.0"], ok=False)
    print("broken v3:", clients.ok, "ok,", len(clients.failed), "failed")
    assert "the start check of the blue slot's release failed with exit code" in failed, failed  # in seconds, not health_deadline
    assert "deliberately broken release" in failed  # the service's stderr reaches the operator
    assert clients.failed == [] and clients.versions == {"2.0.0"}
    for server in fleet.servers:
        assert info(server)["version"] == "2.0.0"  # the old slot keeps serving
        assert state(server)["active_slot"] == "green"
        assert server.host.state["services"]["pyinfra-iis-api-blue"]["state"] == "Stopped"

    with Clients(fleet) as clients:
        run(fleet, "deploys/rollback.py")
    print("rollback:", clients.ok, "ok,", len(clients.failed), "failed")
    assert clients.failed == []
    for server in fleet.servers:
        assert info(server)["version"] == "1.0.0"
        current = state(server)
        assert (current["current"], current["previous"], current["active_slot"]) == ("1.0.0", "2.0.0", "blue")
        assert server.host.state["services"]["pyinfra-iis-api-green"]["state"] == "Stopped"
    attempted = [s for s in fleet.servers if s.host.path("C:\\sites\\api\\releases\\3.0.0").exists()]
    assert len(attempted) == 1
    assert [entry["ok"] for entry in state(attempted[0])["history"]] == [True, True, False, True]

    # A retried unnamed rollback (a re-run pipeline job) stays where the rollback went: no toggle.
    retried = run(fleet, "deploys/rollback.py")
    assert changed(retried) == [], retried
    for server in fleet.servers:
        assert info(server)["version"] == "1.0.0"
        assert (state(server)["active_slot"], state(server)["rolled_back_from"]) == ("blue", "2.0.0")

    # A named rollback serves that installed release (through the idle slot); its retry is a no-op.
    with Clients(fleet) as clients:
        run(fleet, "deploys/rollback.py", "--data", "release_version=2.0.0")
    assert clients.failed == []
    for server in fleet.servers:
        assert info(server)["version"] == "2.0.0"
        assert (state(server)["current"], state(server)["active_slot"], state(server)["rolled_back_from"]) == ("2.0.0", "green", "1.0.0")
    assert changed(run(fleet, "deploys/rollback.py", "--data", "release_version=2.0.0")) == []
    assert changed(run(fleet, "deploys/rollback.py")) == []  # and an unnamed one after it stays there too
    assert all(info(server)["version"] == "2.0.0" for server in fleet.servers)


def test_misaligned_timeouts_are_refused_before_any_host_is_touched(tmp_path):
    from pyinfra_iis.deploys.release import load_release_config
    from pyinfra_iis.models import InventoryError

    winsw = winsw_file(tmp_path)
    base = {"app_name": "api", "root": "C:\\sites\\api", "mode": "arr", "timeout_graceful_shutdown": "30s",
            "arr": {"winsw": {"source": str(winsw), "sha256": "0" * 64}, "proxy_timeout": "300s", "drain": "270s"}}
    python = {"version": "3.12.7", "source": str(winsw), "sha256": "0" * 64}
    data = {"release_app": base, "release_site": "api", "release_python": python}
    with pytest.raises(InventoryError) as keep:
        load_release_config(data, "web01")
    assert "timeout_keep_alive 120 s is shorter than arr.proxy_timeout 300 s" in str(keep.value)
    data["release_app"] = {**base, "timeout_keep_alive": "300s", "arr": {**base["arr"], "drain": "60s"}}
    with pytest.raises(InventoryError) as drain:
        load_release_config(data, "web01")
    assert "raise arr.drain to at least 270 s" in str(drain.value)
    data["release_app"] = {**base, "timeout_keep_alive": "300s", "arr": {**base["arr"], "stop_timeout": "20s"}}
    with pytest.raises(InventoryError) as stop:
        load_release_config(data, "web01")
    assert "WinSW kills the service before Uvicorn finishes" in str(stop.value)
    data["release_app"] = {**base, "timeout_keep_alive": "300s"}
    assert load_release_config(data, "web01").app.arr.proxy_timeout.seconds == 300


def test_a_failing_config_commit_leaves_the_old_slot_serving_and_stops_the_new_one(fleet, arr_artifacts):
    """The switch itself fails (Set-IisConfig on the first host): its healthy new slot is stopped
    again, the old slot keeps serving, the other host switches; no client sees a failure."""

    if not fleet.servers[0].host.path(STATE).exists():
        run(fleet, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
    before = [info(server)["version"] for server in fleet.servers]
    slots = [state(server)["active_slot"] for server in fleet.servers]
    target = "2.0.0" if before[0] != "2.0.0" else "1.0.0"
    fleet.servers[0].faults.fail_function("Set-IisConfig", 1)
    with Clients(fleet) as clients:
        failed = run(fleet, "deploys/release.py", version=target, artifact=arr_artifacts[target], ok=False)
    assert "switching the rewrite rule failed" in failed and "keeps serving" in failed, failed
    assert clients.failed == [], clients.failed[:5]
    assert info(fleet.servers[0])["version"] == before[0] and state(fleet.servers[0])["active_slot"] == slots[0]
    idle = "green" if slots[0] == "blue" else "blue"
    assert fleet.servers[0].host.state["services"][f"pyinfra-iis-api-{idle}"]["state"] == "Stopped"
    assert state(fleet.servers[0])["history"][-1]["ok"] is False
    assert info(fleet.servers[1])["version"] == target  # the other host went ahead


def test_a_request_longer_than_the_proxy_timeout_gets_502_3_from_arr(fleet, arr_artifacts):
    """proxy/@timeout (10 s in this fleet) is what bounds a request: 12 s gets ARR's 502.3."""

    if not fleet.servers[0].host.path(STATE).exists():
        run(fleet, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
    status, body = fetch(fleet.servers[0], "/slow?seconds=12", timeout=60)
    assert status == 502 and "502.3" in body and "timed out" in body, body
    assert fetch(fleet.servers[0], "/slow?seconds=2", timeout=60)[0] == 200


def test_changed_app_settings_without_a_version_become_a_config_revision_switched_through_the_idle_slot(fleet, arr_artifacts):
    """Config without a rebuild in ARR mode: the served release's WinSW XML is re-rendered with
    the new app_settings as ``<version>+r2`` in the idle slot, health-checked, switched; a re-run
    changes nothing."""

    if not fleet.servers[0].host.path(STATE).exists():
        run(fleet, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
    assert changed(run(fleet, "deploys/release.py")) == []  # same settings: nothing to do
    before = [(state(server)["current"], state(server)["active_slot"]) for server in fleet.servers]
    with open(fleet.root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write('\nrelease_app = {**release_app, "app_settings": {**release_app["app_settings"], "FEATURE_FLAG": "on"}}\n')
    with Clients(fleet) as clients:
        output = run(fleet, "deploys/release.py")
    assert clients.failed == [], clients.failed[:5]
    for server, (version, slot) in zip(fleet.servers, before):
        now = state(server)
        idle = "green" if slot == "blue" else "blue"
        assert (now["current"], now["previous"], now["active_slot"]) == (f"{version}+r2", version, idle), output
        assert now["slots"][idle] == f"{version}+r2" and now["history"][-1]["ok"] is True
        xml = server.host.path(f"C:\\sites\\api\\services\\{idle}\\pyinfra-iis-api-{idle}.xml").read_text(encoding="utf-8")
        assert '<env name="FEATURE_FLAG" value="on" />' in xml and f'value="{version}+r2"' in xml
        assert info(server)["version"] == version  # the same release (its venv and app), new config
        assert server.host.state["services"][f"pyinfra-iis-api-{slot}"]["state"] == "Stopped"
    assert changed(run(fleet, "deploys/release.py")) == []


def test_a_three_minute_request_completes_through_arr_with_the_documented_timeouts(tmp_path, arr_artifacts):
    """The WinError 64 case: a 180 s request through IIS + ARR to uvicorn, with proxy_timeout
    200 s, timeout_keep_alive 240 s (>= proxy_timeout), drain 200 s (+ 3 s graceful >= 200 s)."""

    extra = arr_group_data(winsw_file(tmp_path / "winsw"), proxy_timeout="200s", drain="200s", keep_alive="240s")
    with Demo(tmp_path / "work", hosts=1, root=project(tmp_path, extra)) as demo:
        run(demo, "deploys/site.py", version="1.0.0", artifact=arr_artifacts["1.0.0"])
        status, body = fetch(demo.servers[0], "/slow?seconds=180", timeout=240)
        assert status == 200, body
        assert json.loads(body) == {"slept": 180.0, "version": "1.0.0"}
