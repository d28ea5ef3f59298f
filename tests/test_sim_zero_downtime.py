"""Issue 11 §1 on one simulated host: a release switch in HttpPlatformHandler mode with clients
calling the app through the binding the whole time.

The pool is set up as the site deploy converges it for a release (``startMode="AlwaysRunning"``,
the site's ``preloadEnabled``, the Web-AppInit feature, ``operations.release.release_pool_attributes``)
and the release's web.config has the health path as its Application Initialization page: the
switch's recycle starts a new worker process that warms the new release up while the old one
serves, then drains the old one. The same switch with ``disallowOverlappingRotation="true"`` (the
old stop-then-start) fails requests, which is what issue 11 reported.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from pyinfra_iis.demo import fetch
from pyinfra_iis.operations.release import release_pool_attributes
from pyinfra_iis.release.artifact import build_release
from pyinfra_iis.release.variants import make_broken_app
from pyinfra_iis.release.wheelhouse import default_cache_dir
from pyinfra_iis.sim import SimServer, apps
from pyinfra_iis.sim.apps.load import ClientLoad
from support.sim_calls import run
from test_sim_release_flow import EXAMPLE_APP, HOST, ROOT, configure_host, install, pfx, report, settings  # noqa: F401 - pfx is a fixture

from pyinfra_iis.operations import release
from pyinfra_iis.release.startcheck import start_check
from pyinfra_iis.sim.functions import SimFunctionError

SECRET_VALUE = "s3cr3t-db-password"  # test_sim_release_flow.SECRET, the pool's and the start check's

#: A route added to the example app for these tests: an answer that takes ``seconds``.
SLOW_ROUTE = '''

import asyncio as _asyncio


@app.get("/slow")
async def slow(seconds: float = 1.0) -> dict:
    """Answer after ``seconds`` (a long request in flight during a switch)."""

    await _asyncio.sleep(seconds)
    return {"slept": seconds, "version": RELEASE}
'''


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """1.0.0 and 2.0.0 of the example app with a /slow route; 3.0.0 failing at import."""

    folder = tmp_path_factory.mktemp("zero-downtime")
    app = folder / "app"
    shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    with open(app / "main.py", "a", encoding="utf-8") as handle:
        handle.write(SLOW_ROUTE)
    broken = make_broken_app(app, folder / "broken", "import-error")
    cache, out = default_cache_dir(), folder / "dist"
    result = {v: build_release(app, v, "3.12", out, name="api", cache_dir=cache) for v in ("1.0.0", "2.0.0")}
    result["3.0.0"] = build_release(broken, "3.0.0", "3.12", out, name="api", cache_dir=cache)
    return result


def converge_for_release(host, overlapped: bool = True, app_init: bool = True, **release) -> None:
    """What ``deploys/site.py`` converges for a release pool and site (and, with
    ``overlapped=False``, a pool set to stop-then-start)."""

    if app_init:
        run(host, "Install-WindowsFeatureSet", {"names": ["Web-AppInit"]})
    attributes = release_pool_attributes(settings(**release))
    pools, sites = "system.applicationHost/applicationPools", "system.applicationHost/sites"
    pool = [{"item": "add", "key": {"name": "api"}}]
    run(host, "Set-IisConfig", {"edits": [
        {"section": pools, "path": pool, "action": "set", "attributes": {"startMode": "AlwaysRunning"}},
        {"section": pools, "path": [*pool, {"child": "recycling"}], "action": "set",
         "attributes": {"disallowOverlappingRotation": "false" if overlapped else "true"}},
        {"section": pools, "path": [*pool, {"child": "processModel"}], "action": "set",
         "attributes": {"shutdownTimeLimit": attributes["processModel.shutdownTimeLimit"]}},
        {"section": sites, "path": [{"item": "site", "key": {"name": "api"}}, {"item": "application", "key": {"path": "/"}}],
         "action": "set", "attributes": {"preloadEnabled": "true" if app_init else "false"}},
    ]})


@pytest.fixture
def sim(tmp_path, pfx):  # noqa: F811 - the imported pfx fixture
    with SimServer(tmp_path / "web01", user="admin", password="x", port=0, allow_unencrypted=True) as server:
        configure_host(server.host, pfx)
        yield server


def switch(host, version: str, deadline: int = 30, start_check_first: bool = True, give_up: bool = True) -> dict:
    """``Switch-Release`` as ``operations.release.switch_call`` sends it (secrets raw), through https."""

    ok, failed = release.state_texts(report(host), version)
    health = {"url": "https://127.0.0.1:443/healthz", "host": HOST, "deadline_seconds": deadline, "expect_status": 200,
              "expect_version": version, "give_up_statuses": list(release.GIVE_UP_STATUSES) if give_up else []}
    payload = {"site": "api", "app_pool": "api", "path": f"{ROOT}\\releases\\{version}", "environment": {},
               "state_file": f"{ROOT}\\release-state.json", "state_ok": ok, "state_failed": failed, "logs": f"{ROOT}\\logs",
               "health": health}
    if start_check_first:
        payload["preflight"] = start_check(settings(), version)
    return run(host, "Switch-Release", json.loads(json.dumps(payload, default=lambda secret: secret.get_secret_value())))


def version_of(server) -> str:
    status, body = fetch(server, "/info")
    assert status == 200, body
    return json.loads(body)["version"]


def events(server, kind: str) -> list[dict]:
    return [e for e in apps.manager_for(server.host).events("api") if e["event"] == kind]


def test_web_config_warms_the_app_up_on_its_health_path():
    from pyinfra_iis.release.webconfig import render_web_config
    from pyinfra_iis.sim.apps.httpplatform import InitializationPage, parse_initialization_pages

    text = render_web_config(settings(health_check_path="/readyz"), f"{ROOT}\\releases\\1.0.0")
    assert parse_initialization_pages(text) == [InitializationPage("/readyz")]
    assert '<applicationInitialization doAppInitAfterRestart="true">' in text
    attributes = release_pool_attributes(settings(request_timeout="4m", timeout_keep_alive="5m"))
    assert attributes == {"recycling.disallowOverlappingRotation": False, "processModel.shutdownTimeLimit": "00:04:00"}


def test_an_overlapped_warmed_up_switch_fails_no_request_and_drains_the_old_worker(sim, builds):
    host = sim.host
    converge_for_release(host)
    install(host, builds, "1.0.0")
    install(host, builds, "2.0.0")
    switch(host, "1.0.0")
    assert version_of(sim) == "1.0.0"
    slow_answer: dict = {}
    slow = threading.Thread(target=lambda: slow_answer.update(zip(("status", "body"), fetch(sim, "/slow?seconds=3", timeout=30))))
    with ClientLoad([sim], "/info", clients=8) as load:
        time.sleep(0.5)
        load.step("switch")
        slow.start()
        time.sleep(0.3)  # the long request is in flight in the old worker when the switch starts
        result = switch(host, "2.0.0")
        load.step("after")
        time.sleep(0.5)
    slow.join(30)
    figures = load.summary()
    assert result["switched"] is True
    assert all(step["failed"] == 0 for step in figures.values()), figures
    assert figures["switch"]["requests"] > 20
    assert slow_answer["status"] == 200 and json.loads(slow_answer["body"])["version"] == "1.0.0"  # drained, not cut
    assert version_of(sim) == "2.0.0"
    (initialized,) = [e for e in events(sim, "initialized") if e["worker"] > 1][-1:]
    assert initialized["answers"] == [200]  # the health path, asked before the new worker took traffic
    serving = [e for e in events(sim, "serving") if e["worker"] == initialized["worker"]]
    assert serving and serving[0]["at"] >= initialized["at"]
    deadline = time.monotonic() + 10
    while not events(sim, "drained") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert events(sim, "drained") and events(sim, "killed") == []  # the old workers drained their requests


def test_without_overlap_the_same_switch_fails_requests_as_issue_11_reports(sim, builds):
    host = sim.host
    converge_for_release(host, overlapped=False)
    install(host, builds, "1.0.0")
    install(host, builds, "2.0.0")
    switch(host, "1.0.0")
    assert version_of(sim) == "1.0.0"
    slow_answer: dict = {}

    def long_request() -> None:
        try:
            slow_answer.update(zip(("status", "body"), fetch(sim, "/slow?seconds=5", timeout=30)))
        except OSError as exc:
            slow_answer["error"] = exc

    slow = threading.Thread(target=long_request)
    slow.start()
    time.sleep(0.5)
    switch(host, "2.0.0", start_check_first=False)  # the switch as it was: commit and recycle at once
    slow.join(30)
    assert slow_answer.get("status") == 502 and "502.3" in slow_answer["body"], slow_answer
    assert any(e["in_flight"] >= 1 for e in events(sim, "killed"))


def test_a_release_that_fails_at_import_is_refused_by_its_start_check_before_any_commit(sim, builds):
    host = sim.host
    converge_for_release(host)
    install(host, builds, "2.0.0")
    switch(host, "2.0.0")
    install(host, builds, "3.0.0")
    switches = len(host.state["sim_releases"]["physical_path_history"])
    with ClientLoad([sim], "/info", clients=4) as load:
        load.step("broken")
        started = time.monotonic()
        with pytest.raises(SimFunctionError) as failure:
            switch(host, "3.0.0", deadline=120)
        refused = time.monotonic() - started
    message = str(failure.value)
    assert "start check failed with exit code 3; nothing was switched" in message
    assert "deliberately broken release" in message and "import failed" in message  # the traceback and the verdict
    assert SECRET_VALUE not in message
    assert refused < 60, refused  # a bound far below the 120 s deadline, not a timing
    assert len(host.state["sim_releases"]["physical_path_history"]) == switches  # nothing committed
    assert load.summary()["broken"]["failed"] == 0 and version_of(sim) == "2.0.0"
    state = json.loads(host.path(ROOT + "\\release-state.json").read_text(encoding="utf-8"))
    assert state["current"] == "2.0.0" and state["history"][-1]["ok"] is False
    print(f"refused after {refused:.1f} s; clients: {load.summary()['broken']}")


def test_without_the_start_check_the_health_wait_gives_up_on_a_502_3_in_seconds_with_the_log_tail(sim, builds):
    host = sim.host
    converge_for_release(host)
    install(host, builds, "2.0.0")
    switch(host, "2.0.0")
    install(host, builds, "3.0.0", startup_retry_count=2)
    started = time.monotonic()
    with pytest.raises(SimFunctionError) as failure:
        switch(host, "3.0.0", deadline=120, start_check_first=False)
    refused = time.monotonic() - started
    message = str(failure.value)
    assert "got HTTP 502 (IIS answered 502 itself" in message and "deliberately broken release" in message, message
    assert f"physicalPath restored to {ROOT}\\releases\\2.0.0" in message
    assert refused < 60, refused  # HttpPlatformHandler's retries, not the 120 s deadline
    # The restore's recycle warms 2.0.0 up in a new worker; the broken one answers 502.3 until
    # then (the window the start check avoids).
    deadline = time.monotonic() + 60
    while fetch(sim, "/info")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert version_of(sim) == "2.0.0"


@pytest.mark.e2e
def test_a_three_minute_request_completes_across_a_switch_with_the_documented_timeouts(sim, builds):
    """The WinError 64 case: a request longer than HttpPlatformHandler's 2 min requestTimeout
    default. With request_timeout 4 min (timeout_keep_alive 5 min: it must not be shorter), web.config
    lets the request run, and the pool's shutdownTimeLimit (release_pool_attributes: 4 min) lets the
    old worker finish it although a switch to 2.0.0 happens meanwhile. Takes 3 real minutes."""

    host = sim.host
    timeouts = {"request_timeout": "4m", "timeout_keep_alive": "5m"}
    converge_for_release(host, **timeouts)
    install(host, builds, "1.0.0", **timeouts)
    install(host, builds, "2.0.0", **timeouts)
    assert 'requestTimeout="00:04:00"' in host.path(ROOT + "\\releases\\1.0.0\\web.config").read_text(encoding="utf-8")
    switch(host, "1.0.0")
    answer: dict = {}
    started = time.monotonic()
    long_request = threading.Thread(target=lambda: answer.update(zip(("status", "body"), fetch(sim, "/slow?seconds=180", timeout=300))))
    long_request.start()
    time.sleep(2)
    assert switch(host, "2.0.0")["switched"] is True
    assert version_of(sim) == "2.0.0"  # new requests go to the new worker while the long one runs on
    long_request.join(300)
    took = time.monotonic() - started
    assert answer.get("status") == 200, answer
    assert json.loads(answer["body"]) == {"slept": 180.0, "version": "1.0.0"}
    assert events(sim, "killed") == [] and took >= 180
    print(f"the 3-minute request completed after {took:.0f} s across a switch")


def test_the_site_deploy_gives_the_release_pool_its_switch_settings_unless_the_inventory_sets_them(monkeypatch):
    from pyinfra import context

    from pyinfra_iis.deploys import iis
    from pyinfra_iis.operations import acl, app_pools, certificates, extensions, features, rights, server, sites
    from pyinfra_iis.operations.testing import make_host

    pools: list = []
    for module, names in ((features, ["windows_features"]), (extensions, ["msi_extension"]), (server, ["server_config"]),
                          (certificates, ["certificate", "private_key_access"]), (sites, ["site"]), (acl, ["acl"]),
                          (rights, ["granted_rights"])):
        for op in names:
            monkeypatch.setattr(module, op, lambda *a, **kw: None)
    monkeypatch.setattr(app_pools, "app_pool", lambda *a, **kw: pools.append(kw["pool"]))
    data = {"iis_app_pools": [{"name": "api"}, {"name": "other", "extra_attributes": {"recycling.disallowOverlappingRotation": True}}]}
    state, host = make_host(data)
    wanted = release_pool_attributes(settings())
    with context.ctx_state.use(state), context.ctx_host.use(host):
        iis.configure_iis._inner(pool_attributes={"API": wanted, "other": wanted})
    api, other = pools
    assert api.extra_attributes == {"recycling.disallowOverlappingRotation": False, "processModel.shutdownTimeLimit": "00:02:00"}
    assert api.config_attributes()["recycling.disallowOverlappingRotation"] == "false"
    assert other.extra_attributes["recycling.disallowOverlappingRotation"] is True  # the inventory's own value wins


def test_the_simulated_start_check_reports_what_the_hosts_runner_would(tmp_path):
    from pyinfra_iis.sim.apps.startcheck import start_check_refusal

    path = f"{ROOT}\\releases\\3.0.0"
    assert start_check_refusal(path, {"exit_code": 0, "stdout": "ok", "stderr": ""}) is None
    refusal = start_check_refusal(path, {"exit_code": 3, "stdout": "start check of x: import failed after 0.9 s {}",
                                         "stderr": "Traceback (most recent call last):\nRuntimeError: broken"})
    assert refusal.startswith(f"Switch-Release {path}: start check failed with exit code 3; nothing was switched. Last lines:\n")
    assert refusal.endswith("RuntimeError: broken\nstart check of x: import failed after 0.9 s {}")
    assert start_check_refusal(path, {"error": "did not finish within 150 s and was stopped"}) == "did not finish within 150 s and was stopped"
