"""web.config of a release: valid for IIS's schema, exact HttpPlatformHandler settings, no secrets."""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET

import pytest
import uvicorn

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.release.manifest import Manifest
from pyinfra_iis.release.webconfig import SELECTOR_LOOP, render_web_config, uvicorn_arguments

RELEASE_DIR = r"C:\sites\api\releases\1.4.2"
SECRET = "s3cr3t-<&>-'\"-value"


def settings(**overrides) -> ReleaseSettings:
    data = dict(
        app_name="api",
        root=r"C:\sites\api",
        app_settings={"GREETING": "a<b & \"c\" 'd' > %PATH%", "LOG_LEVEL": "info"},
        app_secrets={"DB_PASSWORD": SECRET},
    )
    data.update(overrides)
    return ReleaseSettings(**data)


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


def test_valid_against_the_iis_schema(reference_data):
    from support.iis_schema import validate_config

    for model in (settings(), settings(request_timeout="1.00:00:00", timeout_keep_alive=86400, startup_time_limit=3600, health_deadline=3601, startup_retry_count=0, app_settings={})):
        text = render_web_config(model, RELEASE_DIR)
        assert validate_config(text, kind="web", folder=reference_data) == []


def test_schema_validation_would_catch_a_wrong_value(reference_data):
    from support.iis_schema import validate_config

    text = render_web_config(settings(), RELEASE_DIR).replace('requestTimeout="00:02:00"', 'requestTimeout="00:02:30"')
    assert validate_config(text, kind="web", folder=reference_data) == ["system.webServer/httpPlatform@requestTimeout: '00:02:30' is not a whole multiple of 60 s"]


def test_handler_is_removed_then_added():
    handlers = parse(render_web_config(settings(), RELEASE_DIR)).find("system.webServer/handlers")
    assert [(child.tag, child.attrib) for child in handlers] == [
        ("remove", {"name": "httpPlatformHandler"}),
        ("add", {"name": "httpPlatformHandler", "path": "*", "verb": "*", "modules": "httpPlatformHandler", "resourceType": "Unspecified"}),
    ]


def test_http_platform_attributes_are_exact():
    platform = parse(render_web_config(settings(), RELEASE_DIR)).find("system.webServer/httpPlatform")
    assert platform.attrib == {
        "processPath": r"C:\sites\api\releases\1.4.2\venv\Scripts\python.exe",
        "arguments": (
            "-m uvicorn main:app --host 127.0.0.1 --port %HTTP_PLATFORM_PORT% --proxy-headers "
            "--forwarded-allow-ips 127.0.0.1 --loop asyncio:SelectorEventLoop --timeout-keep-alive 120 "
            r'--timeout-graceful-shutdown 30 --no-access-log --app-dir "C:\sites\api\releases\1.4.2\app"'
        ),
        "stdoutLogEnabled": "true",
        "stdoutLogFile": r"C:\sites\api\logs\stdout",
        "startupTimeLimit": "60",
        "startupRetryCount": "10",
        "requestTimeout": "00:02:00",
        "processesPerApplication": "1",
    }


def test_model_values_reach_the_attributes():
    model = settings(request_timeout="5m", timeout_keep_alive="10m", timeout_graceful_shutdown=45, startup_time_limit=20, startup_retry_count=3)
    manifest = Manifest(app="api", version="1.4.2", python="3.12", entry_point="service.web:application", requirements=(), files={})
    platform = parse(render_web_config(model, RELEASE_DIR, manifest=manifest)).find("system.webServer/httpPlatform")
    assert (platform.get("requestTimeout"), platform.get("startupTimeLimit"), platform.get("startupRetryCount")) == ("00:05:00", "20", "3")
    assert platform.get("arguments").startswith("-m uvicorn service.web:application --host 127.0.0.1 ")
    assert "--timeout-keep-alive 600 --timeout-graceful-shutdown 45 " in platform.get("arguments")


def test_environment_has_unbuffered_python_and_settings_escaped_exactly():
    text = render_web_config(settings(), RELEASE_DIR)
    variables = parse(text).find("system.webServer/httpPlatform/environmentVariables")
    assert variables[0].tag == "clear"
    assert [(v.get("name"), v.get("value")) for v in variables[1:]] == [
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONUTF8", "1"),  # issue 15 item 17
        ("PYINFRA_IIS_RELEASE", "1.4.2"),  # issue 15 item 15
        ("GREETING", "a<b & \"c\" 'd' > %PATH%"),
        ("LOG_LEVEL", "info"),
    ]
    assert "a&lt;b &amp; &#34;c&#34; &#39;d&#39; &gt;" in text


def test_secrets_never_appear():
    model = settings()
    text = render_web_config(model, RELEASE_DIR)
    assert SECRET not in text and "DB_PASSWORD" not in text
    for fragment in ("s3cr3t", "&lt;&amp;&gt;"):
        assert fragment not in text


def test_release_dir_must_be_a_safe_windows_path():
    for bad in ("releases/1.0", r"C:\sites\a%b\1.0", 'C:\\sites\\"x"'):
        with pytest.raises(ValueError):
            render_web_config(settings(), bad)
    assert "C:\\sites\\api\\releases\\1.0\\venv" in render_web_config(settings(), "c:/sites/api/releases/1.0")


def test_selector_loop_value_selects_the_selector_loop_in_uvicorn(monkeypatch):
    """On win32, uvicorn's own ``--loop asyncio`` gives Proactor (cpython #93821); ours gives Selector."""

    proactor = type("ProactorEventLoop", (), {})
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(asyncio, "ProactorEventLoop", proactor, raising=False)
    assert uvicorn.Config(app="main:app", loop="asyncio").get_loop_factory() is proactor
    assert uvicorn.Config(app="main:app", loop=SELECTOR_LOOP).get_loop_factory() is asyncio.SelectorEventLoop
    assert f"--loop {SELECTOR_LOOP} " in uvicorn_arguments(settings(), RELEASE_DIR)
