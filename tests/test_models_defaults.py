"""Defaults: right for Python behind IIS (field notes), and every value we call "the IIS
default" matches Microsoft's schema files (tests/data/iis-schema)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pyinfra_iis.models import AppPool, Binding, Duration, IisHostConfig, ProxySettings, ServerConfig, Site, WindowsFeatures
from pyinfra_iis.models import app_pool as app_pool_module
from pyinfra_iis.models import server as server_module
from pyinfra_iis.models import site as site_module
from pyinfra_iis.models.features import DEFAULT_FEATURES

# --- our defaults -----------------------------------------------------------------------


def test_app_pool_defaults_are_right_for_python():
    """Field notes, IIS: No Managed Code, ApplicationPoolIdentity, AlwaysRunning, idleTimeout 0."""

    pool = AppPool(name="api")
    assert pool.config_attributes() == {
        "autoStart": "true",
        "managedRuntimeVersion": "",
        "queueLength": "1000",
        "startMode": "AlwaysRunning",
        "processModel.identityType": "ApplicationPoolIdentity",
        "processModel.idleTimeout": "00:00:00",
        "processModel.loadUserProfile": "true",
        "recycling.periodicRestart.time": "00:00:00",
        "failure.rapidFailProtection": "true",
        "failure.rapidFailProtectionInterval": "00:05:00",
        "failure.rapidFailProtectionMaxCrashes": "5",
    }
    assert pool.principal == "IIS AppPool\\api"
    assert pool.schedule_values == []


def test_app_pool_stopped_and_extra_attributes():
    pool = AppPool(name="api", state="Stopped", periodic_restart_time="1d", extra_attributes={"processModel.maxProcesses": 2, "enable32BitAppOnWin64": False})
    attributes = pool.config_attributes()
    assert attributes["autoStart"] == "false"
    assert attributes["recycling.periodicRestart.time"] == "1.00:00:00"
    assert attributes["processModel.maxProcesses"] == "2" and attributes["enable32BitAppOnWin64"] == "false"


def test_site_defaults():
    site = Site(name="api", physical_path="c:/inetpub/api", app_pool="api", bindings=[{"port": 8080}])
    assert site.config_attributes() == {
        "serverAutoStart": "true",
        "application.applicationPool": "api",
        "application.preloadEnabled": "true",
        "virtualDirectory.physicalPath": "C:\\inetpub\\api",
    }
    assert site.anonymous_user_name == ""
    assert site.bindings[0].ssl_flags == 0 and site.bindings[0].binding_information == "*:8080:"


def test_https_binding_defaults():
    assert Binding(protocol="https", certificate="api").port == 443
    assert Binding(protocol="https", certificate="api").ssl_flags == 0
    assert Binding(protocol="https", host_name="a.example.com", certificate="api").ssl_flags == 1
    thumb = Binding(protocol="https", certificate="3bca8a25a071300bd177e4c73135e54fa830039a")
    assert thumb.certificate_thumbprint == "3BCA8A25A071300BD177E4C73135E54FA830039A"


def test_features_default_set_is_issue_3():
    features = WindowsFeatures()
    assert features.all_names() == [*DEFAULT_FEATURES, "Web-AppInit"]
    assert "Web-WebSockets" in DEFAULT_FEATURES and "Web-Server" in DEFAULT_FEATURES
    both = WindowsFeatures(windows_auth=True, app_init=False, extra=["Web-CertProvider", "web-server"])
    assert both.all_names() == [*DEFAULT_FEATURES, "Web-Windows-Auth", "Web-CertProvider"]


def test_server_defaults():
    server = ServerConfig()
    assert server.allowed_server_variables == ()
    assert server.config_attributes() == {}  # issue 10: nothing server-wide unless declared
    with_proxy = ServerConfig(proxy={})
    assert with_proxy.allowed_server_variables == ("HTTP_X_FORWARDED_PROTO",)
    assert with_proxy.config_attributes()["system.webServer/proxy"] == {
        "enabled": "true",
        "timeout": "00:02:00",
        "preserveHostHeader": "true",
        "reverseRewriteHostInResponseHeaders": "false",
        "xForwardedForHeaderName": "X-Forwarded-For",
        "includePortInXForwardedFor": "false",
    }
    assert ServerConfig(proxy={}, allowed_server_variables=["http_x_forwarded_host"]).allowed_server_variables == ("HTTP_X_FORWARDED_HOST",)


def test_empty_host_data_is_a_valid_do_nothing_host():
    config = IisHostConfig.model_validate({})
    assert config.sites == [] and config.features.all_names()[0] == "Web-Server"


# --- "IIS default" claims against Microsoft's schema -------------------------------------


def _section(schema_file: Path, name: str) -> ET.Element:
    root = ET.parse(schema_file).getroot()
    for section in root.iter("sectionSchema"):
        if section.get("name") == name:
            return section
    raise AssertionError(f"section {name} not in {schema_file.name}")


def _attribute(section: ET.Element, path: str) -> ET.Element:
    """Find ``a.b.attr`` below a section: each step is a child element or a collection's
    addElement; the top-level collection of a section is entered implicitly."""

    node = section
    *steps, name = path.split(".")
    for step in steps:
        node = _child(node, step)
    found = _own_attribute(node, name)
    assert found is not None, f"attribute {path} not in {section.get('name')}"
    return found


def _child(node: ET.Element, name: str) -> ET.Element:
    for child in node:
        if (child.tag == "element" and child.get("name") == name) or (child.tag == "collection" and child.get("addElement") == name):
            return child
    for collection in node.findall("collection"):
        for child in collection:
            if (child.tag == "element" and child.get("name") == name) or (child.tag == "collection" and child.get("addElement") == name):
                return child
    raise AssertionError(f"no element {name} under {node.get('name') or node.tag}")


def _own_attribute(node: ET.Element, name: str) -> ET.Element | None:
    for holder in (node, *node.findall("collection")):
        for attribute in holder.findall("attribute"):
            if attribute.get("name") == name:
                return attribute
    return None


def _same(schema_attribute: ET.Element, ours: str) -> bool:
    default = schema_attribute.get("defaultValue", "")
    if schema_attribute.get("type") == "timeSpan":
        return Duration.parse(default) == Duration.parse(ours)
    return default == ours


@pytest.fixture(scope="module")
def iis_schema(reference_data: Path) -> Path:
    return reference_data / "iis-schema" / "IIS_schema.xml"


@pytest.mark.parametrize("path, value", sorted(app_pool_module.IIS_DEFAULTS.items()))
def test_app_pool_iis_defaults_match_schema(iis_schema, path, value):
    attribute = _attribute(_section(iis_schema, "system.applicationHost/applicationPools"), path)
    assert _same(attribute, value), (path, attribute.get("defaultValue"), value)


@pytest.mark.parametrize("path, value", sorted(site_module.IIS_DEFAULTS.items()))
def test_site_iis_defaults_match_schema(iis_schema, path, value):
    attribute = _attribute(_section(iis_schema, "system.applicationHost/sites"), path)
    assert _same(attribute, value), (path, attribute.get("defaultValue"), value)


def test_anonymous_authentication_default_user_is_iusr(iis_schema):
    section = _section(iis_schema, "system.webServer/security/authentication/anonymousAuthentication")
    for name, value in site_module.ANONYMOUS_AUTH_IIS_DEFAULTS.items():
        assert _attribute(section, name).get("defaultValue") == value


def test_max_allowed_content_length_default_matches_schema(iis_schema):
    section = _section(iis_schema, "system.webServer/security/requestFiltering")
    attribute = _attribute(section, "requestLimits.maxAllowedContentLength")
    assert int(attribute.get("defaultValue")) == server_module.IIS_MAX_ALLOWED_CONTENT_LENGTH
    assert ServerConfig().max_allowed_content_length is None  # issue 10: the server's value is left alone unless declared


@pytest.mark.parametrize("name, value", sorted(server_module.ARR_DEFAULTS.items()))
def test_arr_defaults_match_schema(reference_data, name, value):
    section = _section(reference_data / "iis-schema" / "arr_schema.xml", "system.webServer/proxy")
    assert _same(_attribute(section, name), value)


@pytest.mark.parametrize(
    "schema_file, section, path, ours",
    [
        ("IIS_schema.xml", "system.applicationHost/applicationPools", "processModel.idleTimeout", app_pool_module.IDLE_TIMEOUT_RANGE),
        ("IIS_schema.xml", "system.applicationHost/applicationPools", "recycling.periodicRestart.time", app_pool_module.PERIODIC_RESTART_RANGE),
        ("IIS_schema.xml", "system.applicationHost/applicationPools", "recycling.periodicRestart.schedule.add.value", None),
        ("IIS_schema.xml", "system.applicationHost/applicationPools", "failure.rapidFailProtectionInterval", app_pool_module.RAPID_FAIL_INTERVAL_RANGE),
        ("arr_schema.xml", "system.webServer/proxy", "timeout", server_module.PROXY_TIMEOUT_RANGE),
        ("httpplatform_schema.xml", "system.webServer/httpPlatform", "requestTimeout", None),
    ],
)
def test_timespan_ranges_match_schema(reference_data, schema_file, section, path, ours):
    from pyinfra_iis.models.types import TimeOfDay, WholeMinutes

    if ours is None:  # the Annotated types
        ours = {"requestTimeout": WholeMinutes, "value": TimeOfDay}[path.rsplit(".", 1)[-1]].__metadata__[-1]
    attribute = _attribute(_section(reference_data / "iis-schema" / schema_file, section), path)
    assert attribute.get("validationType") == "timeSpanRange"
    assert attribute.get("validationParameter") == f"{ours.minimum},{ours.maximum},{ours.granularity}"


@pytest.mark.parametrize(
    "path, ours",
    [("queueLength", app_pool_module.QUEUE_LENGTH_RANGE), ("failure.rapidFailProtectionMaxCrashes", app_pool_module.MAX_CRASHES_RANGE)],
)
def test_integer_ranges_match_schema(iis_schema, path, ours):
    attribute = _attribute(_section(iis_schema, "system.applicationHost/applicationPools"), path)
    assert attribute.get("validationParameter") == f"{ours[0]},{ours[1]}"


def test_pool_attributes_we_write_exist_in_schema(iis_schema):
    section = _section(iis_schema, "system.applicationHost/applicationPools")
    pool = AppPool(name="api", identity_type="SpecificUser", user="CONTOSO\\svc", password="pw")
    for path in pool.config_attributes():
        _attribute(section, path)
    identity = _attribute(section, "processModel.identityType")
    assert {e.get("name") for e in identity.findall("enum")} == set(app_pool_module.IdentityType.__args__)
    start_mode = _attribute(section, "startMode")
    assert {e.get("name") for e in start_mode.findall("enum")} == {"OnDemand", "AlwaysRunning"}


def test_site_attributes_we_write_exist_in_schema(iis_schema):
    section = _section(iis_schema, "system.applicationHost/sites")
    site = Site(name="api", id=3, physical_path="C:\\a", app_pool="api", log_directory="D:\\logs", bindings=[{}])
    schema_paths = {"virtualDirectory.physicalPath": "application.virtualDirectory.physicalPath"}
    for path in site.config_attributes():
        _attribute(section, schema_paths.get(path, path))
    _attribute(section, "bindings.binding.bindingInformation")


def test_proxy_attributes_we_write_exist_in_schema(reference_data):
    section = _section(reference_data / "iis-schema" / "arr_schema.xml", "system.webServer/proxy")
    for name in ProxySettings().config_attributes():
        _attribute(section, name)
