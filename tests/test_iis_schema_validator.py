"""The IIS configuration validator against Microsoft's schema files (tests/data/iis-schema)."""

from __future__ import annotations

import pytest

from support.iis_schema import load_schema, parse_timespan, schema_default, validate_config


APPLICATION_HOST = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <configSections>
    <sectionGroup name="system.applicationHost">
      <section name="applicationPools" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
    </sectionGroup>
  </configSections>
  <system.applicationHost>
    <applicationPools>
      <add name="DefaultAppPool" />
      <add name="api" managedRuntimeVersion="" startMode="AlwaysRunning" autoStart="true">
        <processModel identityType="ApplicationPoolIdentity" idleTimeout="00:00:00" />
        <recycling logEventOnRecycle="Time, Memory, ConfigChange">
          <periodicRestart time="1.05:00:00" />
        </recycling>
        <failure rapidFailProtection="true" rapidFailProtectionInterval="00:05:00" />
        <environmentVariables>
          <add name="PYTHONUNBUFFERED" value="1" />
          <add name="API_KEY" value="[enc:AesProvider:...:enc]" />
        </environmentVariables>
      </add>
      <applicationPoolDefaults managedRuntimeVersion="v4.0">
        <processModel identityType="ApplicationPoolIdentity" />
      </applicationPoolDefaults>
    </applicationPools>
    <sites>
      <site name="api" id="2" serverAutoStart="true">
        <application path="/" applicationPool="api" preloadEnabled="true">
          <virtualDirectory path="/" physicalPath="C:\\sites\\api\\current" />
        </application>
        <bindings>
          <binding protocol="https" bindingInformation="*:443:api.example.com" sslFlags="1" />
          <binding protocol="http" bindingInformation="*:80:api.example.com" />
        </bindings>
        <hsts enabled="true" max-age="31536000" redirectHttpToHttps="true" />
      </site>
      <siteDefaults>
        <logFile logFormat="W3C" directory="%SystemDrive%\\inetpub\\logs\\LogFiles" />
      </siteDefaults>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <globalModules>
      <add name="httpPlatformHandler" image="%SystemRoot%\\system32\\inetsrv\\httpPlatformHandler.dll" />
    </globalModules>
    <proxy enabled="true" timeout="00:02:00" preserveHostHeader="true" />
    <rewrite>
      <allowedServerVariables>
        <add name="HTTP_X_FORWARDED_PROTO" />
      </allowedServerVariables>
    </rewrite>
    <security>
      <requestFiltering>
        <requestLimits maxAllowedContentLength="30000000" />
      </requestFiltering>
    </security>
  </system.webServer>
  <location path="api" overrideMode="Allow">
    <system.webServer>
      <security>
        <authentication>
          <anonymousAuthentication enabled="true" userName="" />
        </authentication>
      </security>
    </system.webServer>
  </location>
</configuration>
"""

WEB_CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <handlers>
      <remove name="httpPlatformHandler" />
      <add name="httpPlatformHandler" path="*" verb="*" modules="httpPlatformHandler" resourceType="Unspecified" requireAccess="Script" />
    </handlers>
    <httpPlatform processPath="C:\\sites\\api\\venv\\Scripts\\python.exe"
                  arguments="-m uvicorn app:app --port %HTTP_PLATFORM_PORT% --proxy-headers --forwarded-allow-ips 127.0.0.1"
                  startupTimeLimit="60" startupRetryCount="3" requestTimeout="00:05:00"
                  stdoutLogEnabled="true" stdoutLogFile="C:\\sites\\api\\logs\\stdout" processesPerApplication="1">
      <environmentVariables>
        <environmentVariable name="PYTHONUNBUFFERED" value="1" />
      </environmentVariables>
    </httpPlatform>
    <rewrite>
      <rules>
        <rule name="proto" stopProcessing="false">
          <match url=".*" />
          <serverVariables>
            <set name="HTTP_X_FORWARDED_PROTO" value="https" />
          </serverVariables>
          <action type="None" />
        </rule>
      </rules>
    </rewrite>
  </system.webServer>
  <system.web>
    <customErrors mode="Off" />
  </system.web>
</configuration>
"""


def only(problems: list[str], *needles: str) -> None:
    """Exactly one problem, and it mentions every needle."""

    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], problems


def test_schema_files_load(reference_data):
    sections = load_schema(reference_data)
    for name in ("system.applicationHost/sites", "system.webServer/httpPlatform", "system.webServer/rewrite/rules", "system.webServer/proxy", "system.web/compilation"):
        assert name in sections


def test_accepts_a_realistic_application_host_config(reference_data):
    assert validate_config(APPLICATION_HOST, folder=reference_data) == []


def test_accepts_a_web_config_with_httpplatform(reference_data):
    assert validate_config(WEB_CONFIG, kind="web", folder=reference_data) == []


def host(fragment: str, reference_data) -> list[str]:
    return validate_config(f"<configuration>{fragment}</configuration>", folder=reference_data)


POOL = "<system.applicationHost><applicationPools>{}</applicationPools></system.applicationHost>"
HTTP_PLATFORM = '<system.webServer><httpPlatform processPath="python.exe" {}/></system.webServer>'


@pytest.mark.parametrize(
    "fragment, needles",
    [
        ("<system.webServer><noSuchSection /></system.webServer>", ["system.webServer/noSuchSection", "unknown section"]),
        ("<mySettings a='1' />", ["mySettings", "unknown section"]),
        (POOL.format('<add name="api" startModes="AlwaysRunning" />'), ["@startModes", "unknown attribute"]),
        (POOL.format('<add name="api" startMode="Always" />'), ["@startMode", "'Always' is not one of OnDemand, AlwaysRunning"]),
        (POOL.format('<add name="api" startMode="1" />'), ["@startMode", "'1' is not one of"]),  # names only
        (POOL.format('<add name="api" autoStart="yes" />'), ["@autoStart", "not a bool"]),
        (POOL.format('<add name="api" autoStart="True" />'), ["@autoStart", "not a bool"]),
        (POOL.format('<add name="api" queueLength="70000" />'), ["@queueLength", "outside the allowed range 10..65535"]),
        (POOL.format('<add name="api"><cpu limit="-1" /></add>'), ["@limit", "outside the uint range"]),
        (POOL.format('<add name="api"><processModel idleTimeout="20 minutes" /></add>'), ["@idleTimeout", "not a timeSpan"]),
        (POOL.format('<add name="api"><processModel idleTimeout="00:61:00" /></add>'), ["@idleTimeout", "not a timeSpan"]),
        (POOL.format('<add name="api" /><add name="API" />'), ["add[name=API]", "duplicate collection key"]),
        (POOL.format('<add managedRuntimeVersion="" />'), ["required attribute 'name' is missing"]),
        (POOL.format('<add name="api"><processModel><identity /></processModel></add>'), ["processModel/identity", "unknown child element <identity>"]),
        (POOL.format('<add name="api"><recycling logEventOnRecycle="Time, Sometimes" /></add>'), ["@logEventOnRecycle", "'Sometimes' not among the flags"]),
        (HTTP_PLATFORM.format('requestTimeout="00:02:30"'), ["@requestTimeout", "whole multiple of 60 s"]),
        (HTTP_PLATFORM.format('startupTimeLimit="3601"'), ["@startupTimeLimit", "0..3600"]),
        (
            '<system.applicationHost><sites><site name="a" id="1"><bindings>'
            '<binding protocol="https" bindingInformation="*:443:a" />'
            '<binding protocol="HTTPS" bindingInformation="*:443:A" /></bindings></site></sites></system.applicationHost>',
            ["duplicate collection key", "protocol='https', bindingInformation='*:443:a'"],
        ),
        (
            '<system.applicationHost><sites><site name="a" id="1" /><site name="b" id="1" /></sites></system.applicationHost>',
            ["site[name=b,id=1]", "duplicate collection key id='1'"],
        ),
        (
            '<system.applicationHost><sites><site name="a" id="1"><bindings>'
            '<binding protocol="https" bindingInformation="*:443:a" sslFlags="129" /></bindings></site></sites></system.applicationHost>',
            ["@sslFlags", "bits 128"],
        ),
        ('<location path="api" overrideMode="Maybe" />', ["location[path=api]@overrideMode"]),
        ('<system.webServer><handlers><clear name="x" /></handlers></system.webServer>', ["<clear> takes no attributes"]),
        ('<system.webServer><handlers><remove name="x" path="*" /></handlers></system.webServer>', ["remove[name=x]@path", "only key attributes"]),
    ],
)
def test_rejects(fragment, needles, reference_data):
    only(host(fragment, reference_data), *needles)


def test_remove_then_add_is_not_a_duplicate_but_add_add_is(reference_data):
    handler = '<add name="h" path="*" verb="*" modules="httpPlatformHandler" />'
    assert host(f"<system.webServer><handlers>{handler}<remove name='h' />{handler}</handlers></system.webServer>", reference_data) == []
    assert host(f"<system.webServer><handlers>{handler}<clear />{handler}</handlers></system.webServer>", reference_data) == []
    only(host(f"<system.webServer><handlers>{handler}{handler}</handlers></system.webServer>", reference_data), "duplicate collection key name='h'")


def test_case_sensitive_keys_are_compared_as_written(reference_data):
    # handlers/add@name is caseSensitive="true": "H" and "h" are two entries.
    handlers = '<add name="h" path="*" verb="*" /><add name="H" path="*" verb="*" />'
    assert host(f"<system.webServer><handlers>{handlers}</handlers></system.webServer>", reference_data) == []


def test_web_config_may_not_hold_application_host_only_sections(reference_data):
    text = "<configuration><system.applicationHost><applicationPools /></system.applicationHost><system.webServer><proxy enabled='true' /></system.webServer></configuration>"
    assert validate_config(text, folder=reference_data) == []
    problems = validate_config(text, kind="web", folder=reference_data)
    assert len(problems) == 2 and all("applicationHost.config only" in p for p in problems), problems


def test_sections_the_schema_does_not_define_are_allowed_only_by_the_allow_list(reference_data):
    allowed = "<configuration><runtime><anything x='1' /></runtime><system.web><notInSchema a='1' /></system.web></configuration>"
    assert validate_config(allowed, kind="web", folder=reference_data) == []
    # Defined system.web sections are still validated.
    only(validate_config("<configuration><system.web><customErrors mode='Sometimes' /></system.web></configuration>", kind="web", folder=reference_data), "customErrors@mode")


def test_binding_ssl_flags_known_bits_are_accepted(reference_data):
    for flags in ("0", "1", "3", "127"):
        text = f'<system.applicationHost><sites><site name="a" id="1"><bindings><binding protocol="https" bindingInformation="*:443:a" sslFlags="{flags}" /></bindings></site></sites></system.applicationHost>'
        assert host(text, reference_data) == [], flags


def test_infinite_and_unit_timespans(reference_data):
    # system.web/sessionState@timeout: timeSpanFormat="minutes"; a plain number of minutes is valid.
    assert validate_config("<configuration><system.web><sessionState timeout='20' /></system.web></configuration>", folder=reference_data) == []


def test_parse_timespan():
    assert parse_timespan("00:02:00") == 120
    assert parse_timespan("1.05:00:00") == 29 * 3600
    assert parse_timespan("-00:00:01.5") == -1.5
    assert parse_timespan("00:00:00.0000001") == pytest.approx(1e-7)
    for bad in ("2:00", "00:60:00", "24:00:00", "1.2.03:00:00", "00:00:00.12345678", "abc"):
        assert parse_timespan(bad) is None, bad


def test_schema_default(reference_data):
    assert schema_default("system.applicationHost/applicationPools", "add/processModel", "idleTimeout", folder=reference_data) == "00:20:00"
    assert schema_default("system.applicationHost/applicationPools", "add", "startMode", folder=reference_data) == "OnDemand"
    assert schema_default("system.applicationHost/sites", "site/bindings/binding", "sslFlags", folder=reference_data) == "0"
    assert schema_default("system.webServer/httpPlatform", "", "requestTimeout", folder=reference_data) == "00:02:00"
    # ARR 3.0's schema: proxy@timeout defaults to 2 min; the 30 s the field notes quote is the
    # webFarms/webFarm/applicationRequestRouting/protocol@timeout default.
    assert schema_default("system.webServer/proxy", [], "timeout", folder=reference_data) == "00:02:00"
    assert schema_default("webFarms", "webFarm/applicationRequestRouting/protocol", "timeout", folder=reference_data) == "00:00:30"
    assert schema_default("system.webServer/httpPlatform", "", "processPath", folder=reference_data) is None
    with pytest.raises(KeyError, match="noSuch"):
        schema_default("system.webServer/httpPlatform", "", "noSuch", folder=reference_data)
    with pytest.raises(KeyError, match="unknown section"):
        schema_default("system.webServer/nothing", "", "x", folder=reference_data)
    with pytest.raises(KeyError, match="no element"):
        schema_default("system.applicationHost/applicationPools", "add/nope", "x", folder=reference_data)


def test_malformed_xml_and_wrong_root(reference_data):
    assert validate_config("<configuration>", folder=reference_data)[0].startswith("XML:")
    assert "root element" in validate_config("<config />", folder=reference_data)[0]
    with pytest.raises(ValueError):
        validate_config("<configuration />", kind="machine", folder=reference_data)
