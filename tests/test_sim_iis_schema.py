"""The simulated applicationHost.config is valid against Microsoft's IIS schema files, fresh and
after the edits a real deploy makes (pool, site, bindings, httpPlatform, proxy, server variables)."""

from __future__ import annotations

import hashlib

import pytest

from pyinfra_iis.sim.host import SimHost
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH
from support.sim_calls import run
from support.iis_schema import validate_config


POOLS = "system.applicationHost/applicationPools"
SITES = "system.applicationHost/sites"


def install_products(host):
    for product in ("HttpPlatformHandler", "UrlRewrite", "ARR"):
        data = f"fake {product} msi".encode()
        local = host.path(f"C:\\Upload\\{product}.msi")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        run(host, "Install-MsiProduct", {"product": product, "source": f"C:\\Upload\\{product}.msi",
                                         "sha256": hashlib.sha256(data).hexdigest()})


def deploy_edits():
    pool = [{"item": "add", "key": {"name": "api"}}]
    site = [{"item": "site", "key": {"name": "api"}}]
    root_app = [*site, {"item": "application", "key": {"path": "/"}}]
    return [
        {"section": POOLS, "path": pool, "action": "set",
         "attributes": {"managedRuntimeVersion": "", "startMode": "AlwaysRunning", "autoStart": "true"}},
        {"section": POOLS, "path": [*pool, {"child": "processModel"}], "action": "set",
         "attributes": {"identityType": "ApplicationPoolIdentity", "idleTimeout": "00:00:00"}},
        {"section": POOLS, "path": [*pool, {"child": "recycling"}, {"child": "periodicRestart"}], "action": "set",
         "attributes": {"time": "00:00:00"}},
        {"section": POOLS, "path": [*pool, {"child": "environmentVariables"}, {"item": "add", "key": {"name": "API_KEY"}}],
         "action": "set", "attributes": {"value": "secret"}},
        {"section": SITES, "path": site, "action": "set", "attributes": {"serverAutoStart": "true"}},
        {"section": SITES, "path": root_app, "action": "set", "attributes": {"applicationPool": "api", "preloadEnabled": "true"}},
        {"section": SITES, "path": [*root_app, {"item": "virtualDirectory", "key": {"path": "/"}}], "action": "set",
         "attributes": {"physicalPath": "C:\\sites\\api\\current"}},
        {"section": SITES, "path": [*site, {"child": "bindings"},
                                    {"item": "binding", "key": {"protocol": "https", "bindingInformation": "*:443:api.example.com"}}],
         "action": "set", "attributes": {"sslFlags": "1"}},
        {"section": SITES, "path": [*site, {"child": "logFile"}], "action": "set", "attributes": {"directory": "C:\\sites\\api\\logs"}},
        {"section": "system.webServer/httpPlatform", "location": "api", "path": [], "action": "set",
         "attributes": {"processPath": "C:\\sites\\api\\current\\venv\\Scripts\\python.exe", "arguments": "-m uvicorn app:app",
                        "requestTimeout": "00:05:00", "stdoutLogEnabled": "true", "startupTimeLimit": "60"}},
        {"section": "system.webServer/httpPlatform", "location": "api",
         "path": [{"child": "environmentVariables"}, {"item": "environmentVariable", "key": {"name": "PYTHONUNBUFFERED"}}],
         "action": "set", "attributes": {"value": "1"}},
        {"section": "system.webServer/security/authentication/anonymousAuthentication", "location": "api", "path": [],
         "action": "set", "attributes": {"enabled": "true", "userName": ""}},
        {"section": "system.webServer/security/requestFiltering", "path": [{"child": "requestLimits"}], "action": "set",
         "attributes": {"maxAllowedContentLength": "104857600"}},
        {"section": "system.webServer/proxy", "path": [], "action": "set",
         "attributes": {"enabled": "true", "timeout": "00:05:00", "preserveHostHeader": "true"}},
        {"section": "system.webServer/rewrite/allowedServerVariables", "path": [{"item": "add", "key": {"name": "HTTP_X_FORWARDED_PROTO"}}],
         "action": "set", "attributes": {}},
    ]


def test_fresh_and_deployed_config_validate(tmp_path, reference_data):
    folder = reference_data / "iis-schema"
    host = SimHost(tmp_path / "web01")
    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server", "Web-WebSockets", "Web-AppInit", "Web-Windows-Auth"]})
    fresh = host.path(APPHOST_CONFIG_PATH).read_text(encoding="utf-8")
    assert validate_config(fresh, folder=folder) == []

    install_products(host)
    result = run(host, "Set-IisConfig", {"edits": deploy_edits()})
    assert result == {"committed": True}
    deployed = host.path(APPHOST_CONFIG_PATH).read_text(encoding="utf-8")
    assert validate_config(deployed, folder=folder) == []
    # The validator does see problems in what the simulator writes, when there are some.
    broken = deployed.replace('startMode="AlwaysRunning"', 'startMode="Always"')
    assert any("startMode" in problem for problem in validate_config(broken, folder=folder))
