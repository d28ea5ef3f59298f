"""The simulated host's IIS: feature install, Get-HostState and Set-IisConfig on a SimHost."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from pyinfra_iis.protocol import new_digest_key, secret_digest
from pyinfra_iis.sim.functions import SimFunctionError, call
from pyinfra_iis.sim.host import SimHost
from pyinfra_iis.facts.host_state import convert_host_state
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH, AppHostConfig
from support.sim_calls import DIGEST_KEY, run

POOLS = "system.applicationHost/applicationPools"
SITES = "system.applicationHost/sites"


@pytest.fixture
def host(tmp_path):
    return SimHost(tmp_path / "web01")


@pytest.fixture
def iis(host):
    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    return host


def config_bytes(host) -> bytes:
    return host.path(APPHOST_CONFIG_PATH).read_bytes()


def pool(name):
    return [{"item": "add", "key": {"name": name}}]


def site_edit(name, *steps, attributes=None, action="set"):
    return {"section": SITES, "path": [{"item": "site", "key": {"name": name}}, *steps],
            "action": action, "attributes": attributes or {}}


# --- features and the fresh IIS ------------------------------------------------------------


def test_fresh_host_has_no_iis(host):
    state = run(host, "Get-HostState", {})
    assert state["computer_name"] == "WEB01"
    assert state["iis"] is None
    assert state["features"] == []
    assert state["extensions"]["HttpPlatformHandler"] == {"installed": False, "version": None}
    assert not host.path(APPHOST_CONFIG_PATH).exists()


def test_web_server_install_lays_down_iis(host):
    result = run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    assert result["restart_needed"] is False
    assert {"Web-Server", "Web-WebServer", "Web-Static-Content", "Web-Filtering", "Web-Mgmt-Console"} <= set(result["installed"])
    assert "Web-WebSockets" not in result["installed"]
    assert host.path("C:\\inetpub\\wwwroot\\iisstart.htm").is_file()
    assert host.path("C:\\inetpub\\logs\\LogFiles").is_dir()

    state = run(host, "Get-HostState", {})
    assert state["features"] == sorted(result["installed"])
    iis = state["iis"]
    assert iis["runtime"] == {"app_pools": {"DefaultAppPool": "Started"}, "sites": {"Default Web Site": "Started"}}
    pools = iis["sections"][POOLS]
    assert pools["items"] == [{"tag": "add", "attributes": {"name": "DefaultAppPool"}, "children": {}, "items": []}]
    defaults = pools["children"]["applicationPoolDefaults"]
    assert defaults["attributes"] == {"managedRuntimeVersion": "v4.0"}
    assert defaults["children"]["processModel"]["attributes"] == {"identityType": "ApplicationPoolIdentity"}
    site = iis["sections"][SITES]["items"][0]
    assert site["attributes"] == {"name": "Default Web Site", "id": "1"}
    assert site["children"]["bindings"]["items"][0]["attributes"] == {"protocol": "http", "bindingInformation": "*:80:"}
    vdir = site["items"][0]["items"][0]
    assert vdir["attributes"]["physicalPath"] == "%SystemDrive%\\inetpub\\wwwroot"
    modules = [m["attributes"]["name"] for m in iis["sections"]["system.webServer/globalModules"]["items"]]
    assert "StaticFileModule" in modules and "WebSocketModule" not in modules
    # Sections of extensions that are not installed are not reported.
    assert "system.webServer/proxy" not in iis["sections"]
    assert "system.webServer/rewrite/allowedServerVariables" not in iis["sections"]


def test_role_services_add_their_global_modules(iis):
    before = config_bytes(iis)
    result = run(iis, "Install-WindowsFeatureSet", {"names": ["Web-WebSockets", "Web-AppInit", "web-windows-auth"]})
    assert result["installed"] == ["Web-Windows-Auth", "Web-App-Dev", "Web-AppInit", "Web-WebSockets"]
    text = config_bytes(iis).decode()
    assert '<add name="WebSocketModule" image="%windir%\\System32\\inetsrv\\iiswsock.dll" />' in text
    assert '<add name="ApplicationInitializationModule" image="%windir%\\System32\\inetsrv\\warmup.dll" />' in text
    assert '<add name="WindowsAuthenticationModule" image="%windir%\\System32\\inetsrv\\authsspi.dll" />' in text
    assert config_bytes(iis) != before
    again = run(iis, "Install-WindowsFeatureSet", {"names": ["Web-WebSockets"]})
    assert again == {"installed": [], "restart_needed": False}


def test_unknown_feature_is_refused_and_nothing_installed(host):
    with pytest.raises(SimFunctionError, match="Web-Nope.*not found"):
        run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server", "Web-Nope"]})
    assert run(host, "Get-HostState", {})["features"] == []


# --- Set-IisConfig -------------------------------------------------------------------------


def test_create_pool_with_nested_attributes(iis):
    result = run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "location": None, "path": pool("api"), "action": "set",
         "attributes": {"managedRuntimeVersion": "", "startMode": "AlwaysRunning"}},
        {"section": POOLS, "path": [*pool("api"), {"child": "processModel"}], "action": "set",
         "attributes": {"idleTimeout": "00:00:00"}},
    ]})
    assert result == {"committed": True}  # the controller words the changes (issue 9)
    state = run(iis, "Get-HostState", {})
    pools = state["iis"]["sections"][POOLS]["items"]
    assert [p["attributes"]["name"] for p in pools] == ["DefaultAppPool", "api"]
    assert pools[1]["attributes"] == {"name": "api", "managedRuntimeVersion": "", "startMode": "AlwaysRunning"}
    assert pools[1]["children"]["processModel"]["attributes"] == {"idleTimeout": "00:00:00"}
    assert state["iis"]["runtime"]["app_pools"]["api"] == "Started"
    # New pools go before applicationPoolDefaults, as IIS writes them.
    text = config_bytes(iis).decode()
    assert text.index('<add name="api"') < text.index("<applicationPoolDefaults")
    # The same edit again changes nothing and does not rewrite the file.
    before = config_bytes(iis)
    again = run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "path": pool("API"), "action": "set", "attributes": {"startMode": "AlwaysRunning"}}]})
    assert again == {"committed": True}
    assert config_bytes(iis) == before


def test_new_site_gets_next_id_and_binding_changes_leave_the_rest_untouched(iis):
    binding = lambda info, protocol="https": {"item": "binding", "key": {"protocol": protocol, "bindingInformation": info}}  # noqa: E731
    run(iis, "Set-IisConfig", {"edits": [
        site_edit("api"),
        site_edit("api", {"item": "application", "key": {"path": "/"}}, {"item": "virtualDirectory", "key": {"path": "/"}},
                  attributes={"physicalPath": "C:\\sites\\api\\current"}),
        site_edit("api", {"child": "bindings"}, binding("*:8080:", "http")),
        site_edit("api", {"child": "bindings"}, binding("*:443:api.example.com"), attributes={"sslFlags": "1"}),
    ]})
    state = run(iis, "Get-HostState", {})
    sites = state["iis"]["sections"][SITES]["items"]
    assert sites[1]["attributes"] == {"name": "api", "id": "2"}
    before = config_bytes(iis).decode()

    # Adding a binding inserts exactly one line; everything else stays byte-for-byte.
    result = run(iis, "Set-IisConfig", {"edits": [site_edit("api", {"child": "bindings"}, binding("*:8443:", "http"))]})
    assert result == {"committed": True}
    after = config_bytes(iis).decode()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert [line.strip() for line in added] == ['<binding protocol="http" bindingInformation="*:8443:" />']
    assert [line for line in after.splitlines() if line not in added] == before.splitlines()

    # The certificate of an https binding lives in HTTP.sys (IIS's RSCA extension), not in the
    # file: Set-IisConfig refuses it (issue 9, defect 2), only the binding's RSCA methods
    # (Set-IisSslBinding) fill HTTP.sys, and the fact reports HTTP.sys apart from the config.
    assert iis.state.get("http_sys", {}).get("sslcert", {}) == {}
    with pytest.raises(SimFunctionError, match="certificateHash.*use Set-IisSslBinding"):
        run(iis, "Set-IisConfig", {"edits": [
            site_edit("api", {"child": "bindings"}, binding("*:443:API.example.com"),
                      attributes={"certificateHash": "AB" * 20, "certificateStoreName": "My"})]})
    assert config_bytes(iis).decode() == after
    https = [b for b in run(iis, "Get-HostState", {})["iis"]["sections"][SITES]["items"][1]["children"]["bindings"]["items"]
             if b["attributes"]["protocol"] == "https"]
    assert https[0]["attributes"] == {"protocol": "https", "bindingInformation": "*:443:api.example.com", "sslFlags": "1"}
    assert run(iis, "Get-HostState", {})["iis"]["ssl_bindings"] == {}

    removed = run(iis, "Set-IisConfig", {"edits": [
        site_edit("api", {"child": "bindings"}, binding("*:8080:", "http"), action="remove")]})
    assert removed == {"committed": True}
    final = config_bytes(iis).decode()
    assert "*:8080:" not in final and "*:443:api.example.com" in final
    assert [line for line in after.splitlines() if "*:8080:" not in line] == final.splitlines()
    # Removing it again is not an error and changes nothing.
    assert run(iis, "Set-IisConfig", {"edits": [
        site_edit("api", {"child": "bindings"}, binding("*:8080:", "http"), action="remove")]}) == {"committed": True}


def test_edits_are_all_or_nothing(iis):
    before = config_bytes(iis)
    with pytest.raises(SimFunctionError, match="nothing was committed.*system.webServer/proxy") as error:
        run(iis, "Set-IisConfig", {"edits": [
            {"section": POOLS, "path": pool("api"), "action": "set", "attributes": {"startMode": "AlwaysRunning"}},
            {"section": "system.webServer/proxy", "path": [], "action": "set", "attributes": {"enabled": "true"}},
        ]})
    assert "does not exist" in str(error.value)
    assert config_bytes(iis) == before
    with pytest.raises(SimFunctionError, match="remove needs"):
        run(iis, "Set-IisConfig", {"edits": [
            {"section": POOLS, "path": pool("api"), "action": "set", "attributes": {}},
            {"section": POOLS, "path": [], "action": "remove"},
        ]})
    with pytest.raises(SimFunctionError, match="values are strings"):
        run(iis, "Set-IisConfig", {"edits": [
            {"section": POOLS, "path": pool("api"), "action": "set", "attributes": {"queueLength": 4000}}]})
    assert config_bytes(iis) == before
    assert "api" not in run(iis, "Get-HostState", {})["iis"]["runtime"]["app_pools"]


def test_location_sections_and_app_host_only_sections(iis):
    anonymous = "system.webServer/security/authentication/anonymousAuthentication"
    run(iis, "Set-IisConfig", {"edits": [
        {"section": anonymous, "location": "Default Web Site", "path": [], "action": "set",
         "attributes": {"enabled": "true", "userName": ""}}]})
    state = run(iis, "Get-HostState", {})
    assert state["iis"]["locations"]["Default Web Site"][anonymous]["attributes"] == {"enabled": "true", "userName": ""}
    assert state["iis"]["sections"][anonymous]["attributes"] == {"enabled": "true", "userName": "IUSR"}
    with pytest.raises(SimFunctionError, match="cannot be used at this path"):
        run(iis, "Set-IisConfig", {"edits": [
            {"section": POOLS, "location": "Default Web Site", "path": pool("x"), "action": "set", "attributes": {}}]})


def test_environment_variable_values_are_never_reported(iis):
    secret = "s3cr3t-value-123"
    result = run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "path": [*pool("api"), {"child": "environmentVariables"}, {"item": "add", "key": {"name": "API_KEY"}}],
         "action": "set", "attributes": {"value": secret}},
        {"section": POOLS, "path": [*pool("api"), {"child": "processModel"}], "action": "set",
         "attributes": {"identityType": "SpecificUser", "userName": "svc", "password": "pw-" + secret}},
    ]})
    assert secret not in json.dumps(result)
    raw = call(iis, "Get-HostState", {"digest_key": DIGEST_KEY}, {})
    assert secret not in raw
    state = convert_host_state(json.loads(raw))
    api = state["iis"]["sections"][POOLS]["items"][1]
    variable = api["children"]["environmentVariables"]["items"][0]
    assert variable["attributes"] == {"name": "API_KEY", "value": secret_digest(secret)}
    assert api["children"]["processModel"]["attributes"]["password"] == secret_digest("pw-" + secret)


def test_document_round_trip_is_stable(iis):
    text = config_bytes(iis).decode("utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\r\n<configuration>\r\n    <!--')
    assert AppHostConfig.from_text(text).to_text() == text


@pytest.mark.parametrize("key", [None, "", "not base64!", base64.b64encode(b"short").decode()])
def test_host_state_refuses_a_missing_or_short_digest_key(iis, key):
    payload = {} if key is None else {"digest_key": key}
    with pytest.raises(SimFunctionError, match="'digest_key' must be base64 of at least 16 bytes"):
        call(iis, "Get-HostState", payload, {})


def test_digests_depend_on_the_key_and_never_on_the_value_alone(iis):
    secret = "Winter2026!"
    run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "path": [*pool("api"), {"child": "environmentVariables"}, {"item": "add", "key": {"name": "API_KEY"}}],
         "action": "set", "attributes": {"value": secret}}]})

    def reported(key: bytes) -> str:
        state = convert_host_state(json.loads(call(iis, "Get-HostState", {"digest_key": base64.b64encode(key).decode()}, {})))
        return state["iis"]["sections"][POOLS]["items"][1]["children"]["environmentVariables"]["items"][0]["attributes"]["value"]

    first, second = new_digest_key(), new_digest_key()
    assert reported(first) == secret_digest(secret, first) == "hmac-sha256:" + hmac.new(first, secret.encode(), hashlib.sha256).hexdigest()
    assert reported(second) == secret_digest(secret, second) != reported(first)
    # the old unkeyed form (guessable offline from a -vvv log) is gone
    assert hashlib.sha256(("pyinfra-iis\0" + secret).encode()).hexdigest() not in reported(first)
