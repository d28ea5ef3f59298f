"""The simulated host's MSI products and runtime state: Install-MsiProduct, Set-IisRuntimeState,
Restart-IisAppPool and the pool hook."""

from __future__ import annotations

import hashlib

import pytest

from pyinfra_iis.sim.functions import SimFunctionError
from pyinfra_iis.sim.functions.msi import MSI_BUSY_RETRIES, seed_remote_source, set_next_exit_code, set_next_exit_codes
from pyinfra_iis.sim.functions.runtime import register_pool_hook
from pyinfra_iis.sim.host import SimHost
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH
from support.sim_calls import run

MSI = {"HttpPlatformHandler": b"fake hph msi", "UrlRewrite": b"fake rewrite msi", "ARR": b"fake arr msi"}


@pytest.fixture
def host(tmp_path):
    host = SimHost(tmp_path / "web01")
    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    return host


def install(host, product, sha256=None, source=None):
    path = source or f"C:\\Upload\\{product}.msi"
    if source is None:
        local = host.path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(MSI[product])
    return run(host, "Install-MsiProduct", {"product": product, "source": path,
                                            "sha256": sha256 or hashlib.sha256(MSI[product]).hexdigest()})


def test_http_platform_handler_install(host):
    result = install(host, "HttpPlatformHandler")
    assert result == {"product": "HttpPlatformHandler", "exit_code": 0, "restart_needed": False,
                      "log": "C:\\ProgramData\\pyinfra-iis\\logs\\HttpPlatformHandler.log", "changed": True, "attempts": 1}
    assert host.path("C:\\Windows\\System32\\inetsrv\\httpPlatformHandler.dll").is_file()
    assert host.path("C:\\ProgramData\\pyinfra-iis\\msi\\HttpPlatformHandler.msi").read_bytes() == MSI["HttpPlatformHandler"]
    assert "Installation completed successfully" in host.path(result["log"]).read_text(encoding="utf-16")
    text = host.path(APPHOST_CONFIG_PATH).read_text(encoding="utf-8")
    assert '<add name="httpPlatformHandler" image="%SystemRoot%\\system32\\inetsrv\\httpPlatformHandler.dll" />' in text
    assert '<section name="httpPlatform" overrideModeDefault="Allow" />' in text
    state = run(host, "Get-HostState", {})
    assert state["extensions"]["HttpPlatformHandler"] == {"installed": True, "version": "1.2.1975.0"}
    # The httpPlatform section can now be configured for a site.
    run(host, "Set-IisConfig", {"edits": [{"section": "system.webServer/httpPlatform", "location": "Default Web Site",
                                           "path": [], "action": "set", "attributes": {"processPath": "C:\\py\\python.exe"}}]})
    # Again: a no-op with exit code 0.
    before = host.path(APPHOST_CONFIG_PATH).read_bytes()
    assert install(host, "HttpPlatformHandler")["changed"] is False
    assert host.path(APPHOST_CONFIG_PATH).read_bytes() == before


def test_hash_mismatch_is_refused_before_anything_is_installed(host):
    with pytest.raises(SimFunctionError) as error:
        install(host, "UrlRewrite", sha256="0" * 64)
    message = str(error.value)
    assert "expected " + "0" * 64 in message and hashlib.sha256(MSI["UrlRewrite"]).hexdigest() in message
    assert run(host, "Get-HostState", {})["extensions"]["UrlRewrite"]["installed"] is False
    assert "RewriteModule" not in host.path(APPHOST_CONFIG_PATH).read_text(encoding="utf-8")


def test_arr_needs_url_rewrite_first(host):
    with pytest.raises(SimFunctionError, match="install UrlRewrite first"):
        install(host, "ARR")
    with pytest.raises(SimFunctionError, match="system.webServer/proxy' does not exist"):
        run(host, "Set-IisConfig", {"edits": [{"section": "system.webServer/proxy", "path": [], "action": "set",
                                               "attributes": {"enabled": "true"}}]})
    install(host, "UrlRewrite")
    install(host, "ARR")
    run(host, "Set-IisConfig", {"edits": [
        {"section": "system.webServer/proxy", "path": [], "action": "set", "attributes": {"enabled": "true", "timeout": "00:02:00"}},
        {"section": "system.webServer/rewrite/allowedServerVariables", "path": [{"item": "add", "key": {"name": "HTTP_X_FORWARDED_PROTO"}}],
         "action": "set", "attributes": {}},
    ]})
    state = run(host, "Get-HostState", {})
    assert state["extensions"]["ARR"]["installed"] and state["extensions"]["UrlRewrite"]["installed"]
    sections = state["iis"]["sections"]
    assert sections["system.webServer/proxy"]["attributes"] == {"enabled": "true", "timeout": "00:02:00"}
    assert sections["system.webServer/rewrite/allowedServerVariables"]["items"][0]["attributes"] == {"name": "HTTP_X_FORWARDED_PROTO"}


def test_exit_codes_and_log_tail(host):
    set_next_exit_code(host, "UrlRewrite", 1603)
    with pytest.raises(SimFunctionError) as error:
        install(host, "UrlRewrite")
    assert "exited with 1603" in str(error.value) and "MainEngineThread is returning 1603" in str(error.value)
    assert run(host, "Get-HostState", {})["extensions"]["UrlRewrite"]["installed"] is False
    set_next_exit_code(host, "UrlRewrite", 3010)
    result = install(host, "UrlRewrite")
    assert result["exit_code"] == 3010 and result["restart_needed"] is True
    assert run(host, "Get-HostState", {})["reboot_pending"] is True


def test_url_source_needs_seeding(host):
    url = "https://downloads.example.com/rewrite_amd64_en-US.msi"
    with pytest.raises(SimFunctionError, match="not supported by the simulator"):
        install(host, "UrlRewrite", source=url)
    seed_remote_source(host, url, MSI["UrlRewrite"])
    assert install(host, "UrlRewrite", source=url)["exit_code"] == 0
    assert host.path("C:\\ProgramData\\pyinfra-iis\\msi\\rewrite_amd64_en-US.msi").is_file()


def test_runtime_state_and_recycles_fire_the_pool_hook(host):
    events = []
    unregister = register_pool_hook(lambda h, pool, event: events.append((pool, event)))
    try:
        run(host, "Set-IisConfig", {"edits": [
            {"section": "system.applicationHost/applicationPools", "path": [{"item": "add", "key": {"name": "api"}}],
             "action": "set", "attributes": {}},
            {"section": "system.applicationHost/sites", "path": [{"item": "site", "key": {"name": "api"}}, {"child": "bindings"},
             {"item": "binding", "key": {"protocol": "http", "bindingInformation": "*:80:"}}], "action": "set", "attributes": {}},
        ]})
        assert events == [("api", "start")]
        runtime = run(host, "Get-HostState", {})["iis"]["runtime"]
        assert runtime["sites"] == {"Default Web Site": "Started", "api": "Stopped"}  # *:80: is taken
        with pytest.raises(SimFunctionError, match="0x800700B7"):
            run(host, "Set-IisRuntimeState", {"sites": {"api": "Started"}})
        result = run(host, "Set-IisRuntimeState", {"sites": {"Default Web Site": "Stopped", "api": "Started"},
                                                   "app_pools": {"api": "Stopped"}})
        assert sorted(result["changed"]) == ["app pool api: Started -> Stopped", "site Default Web Site: Started -> Stopped",
                                             "site api: Stopped -> Started"]
        with pytest.raises(SimFunctionError, match="stopped"):
            run(host, "Restart-IisAppPool", {"name": "api"})
        run(host, "Set-IisRuntimeState", {"app_pools": {"api": "Started"}})
        assert run(host, "Restart-IisAppPool", {"name": "API"}) == {"recycled": "api"}
        assert host.state["iis_runtime"]["recycles"]["api"] == 1
        # A configuration change of a started pool recycles it.
        run(host, "Set-IisConfig", {"edits": [{"section": "system.applicationHost/applicationPools",
                                               "path": [{"item": "add", "key": {"name": "api"}}], "action": "set",
                                               "attributes": {"startMode": "AlwaysRunning"}}]})
        assert events == [("api", "start"), ("api", "stop"), ("api", "start"), ("api", "recycle"), ("api", "recycle")]
        with pytest.raises(SimFunctionError, match="does not exist"):
            run(host, "Set-IisRuntimeState", {"app_pools": {"nope": "Started"}})
    finally:
        unregister()


def test_msi_needs_iis(tmp_path):
    bare = SimHost(tmp_path / "bare")
    with pytest.raises(SimFunctionError, match="IIS Version 7.0 or greater"):
        install(bare, "HttpPlatformHandler")


def test_msiexec_1618_is_retried_with_backoff_then_fails_with_a_limit(host):
    # Issue 9, defect 8: 1618 (another installation in progress) is not fatal.
    set_next_exit_codes(host, "UrlRewrite", [1618, 1618, 0])
    result = install(host, "UrlRewrite")
    assert result["changed"] is True and result["exit_code"] == 0 and result["attempts"] == 3
    assert host.state["msi_busy_waits"] == [10, 20]
    set_next_exit_codes(host, "HttpPlatformHandler", [1618] * (MSI_BUSY_RETRIES + 2))
    with pytest.raises(SimFunctionError, match=f"exited with 1618 .* after {MSI_BUSY_RETRIES + 1} attempt"):
        install(host, "HttpPlatformHandler")
    assert run(host, "Get-HostState", {})["extensions"]["HttpPlatformHandler"]["installed"] is False
