"""Units of the simulator's app runner: web.config parsing, Windows command lines, the app
process rules (start failures, rapid-fail protection, stdout log naming) and the binding proxy
(forwarded headers, Host check, 502 when the app is down)."""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pyinfra_iis.sim.apps.bindings import Binding, BindingListener, HttpError
from pyinfra_iis.sim.apps.httpplatform import (WebConfigError, expand_variables, map_argument, parse_web_config,
                                               resolve_site_relative, split_windows_arguments, timespan_seconds)
from pyinfra_iis.sim.apps.process import AppProcess, AppStartError, LaunchSpec, free_port
from pyinfra_iis.sim.apps.venv import parse_requirements, requirements_key

WEB_CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration><system.webServer>
  <httpPlatform processPath="C:\\r\\venv\\Scripts\\python.exe" arguments="-m app --port %HTTP_PLATFORM_PORT%"
                stdoutLogEnabled="true" stdoutLogFile="C:\\r\\logs\\stdout" startupTimeLimit="30"
                startupRetryCount="3" requestTimeout="00:05:00">
    <environmentVariables><add name="OLD" value="x"/><clear/><environmentVariable name="A" value="1"/>
      <environmentVariable name="B" value="2"/><remove name="B"/></environmentVariables>
  </httpPlatform>
</system.webServer></configuration>"""


# --- web.config and command lines ---------------------------------------------------------------


def test_web_config_is_parsed_with_hph_defaults():
    platform = parse_web_config(WEB_CONFIG)
    assert platform.process_path == "C:\\r\\venv\\Scripts\\python.exe"
    assert (platform.startup_time_limit, platform.startup_retry_count, platform.request_timeout) == (30.0, 3, 300.0)
    assert platform.rapid_fails_per_minute == 10  # HPH default
    assert platform.stdout_log_enabled and platform.stdout_log_file == "C:\\r\\logs\\stdout"
    assert platform.environment == {"A": "1"}  # <clear/> dropped OLD, <remove/> dropped B
    assert parse_web_config("<configuration><system.webServer/></configuration>") is None
    with pytest.raises(WebConfigError, match="processPath"):
        parse_web_config("<configuration><system.webServer><httpPlatform/></system.webServer></configuration>")
    with pytest.raises(WebConfigError, match="well-formed"):
        parse_web_config("<configuration>")
    assert timespan_seconds("1.00:00:30") == 86430.0


def test_windows_command_lines_split_like_commandlinetoargvw():
    assert split_windows_arguments('-m uvicorn --app-dir "C:\\a b\\app" x') == ["-m", "uvicorn", "--app-dir", "C:\\a b\\app", "x"]
    assert split_windows_arguments('a\\\\"b c" d\\"e "" f\\g') == ['a\\b c', 'd"e', "", "f\\g"]
    assert split_windows_arguments("  ") == []


def test_variables_and_paths_are_mapped():
    assert expand_variables("--port %http_platform_port% %UNKNOWN%", {"HTTP_PLATFORM_PORT": "81"}) == "--port 81 %UNKNOWN%"
    mapped = lambda p: "/state/C/" + p[3:].replace("\\", "/")  # noqa: E731
    assert map_argument("C:\\sites\\app", mapped) == "/state/C/sites/app"
    assert map_argument("--dir=C:\\x", mapped) == "--dir=/state/C/x"
    assert map_argument("127.0.0.1", mapped) == "127.0.0.1"
    assert resolve_site_relative(".\\logs\\out", "C:\\sites\\api\\releases\\1") == "C:\\sites\\api\\releases\\1\\logs\\out"
    assert resolve_site_relative("..\\..\\logs\\out", "C:\\sites\\api\\releases\\1") == "C:\\sites\\api\\logs\\out"


def test_binding_information_and_requirement_keys():
    binding = Binding.parse("HTTPS", "*:443:api.example.com")
    assert (binding.protocol, binding.ip, binding.port, binding.host) == ("https", "*", 443, "api.example.com")
    assert Binding.parse("http", "[::1]:8080:").ip == "[::1]"
    with pytest.raises(ValueError):
        Binding.parse("http", "80")
    lines = parse_requirements("# lock\nFastAPI==1.0\n\nuvicorn==2.0  # pinned\n--hash x\ntyping_extensions==4\n")
    assert lines == ["fastapi==1.0", "typing-extensions==4", "uvicorn==2.0"]
    assert requirements_key(lines) == requirements_key(list(reversed(lines)))
    assert requirements_key(lines) != requirements_key(lines[:-1])


# --- the app process ----------------------------------------------------------------------------


SERVER = ("import http.server, os, sys\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = repr(sorted(dict(self.headers).items())).encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
          "        self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "print('listening', os.environ['HTTP_PLATFORM_PORT'], os.environ.get('SECRET') is not None, flush=True)\n"
          "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")


def spec(tmp_path, code: str, retries: int = 1, rapid: int = 10, limit: float = 10.0, log: bool = True) -> LaunchSpec:
    platform = parse_web_config(
        f'<configuration><system.webServer><httpPlatform processPath="x" startupTimeLimit="{int(limit)}" '
        f'startupRetryCount="{retries}" rapidFailsPerMinute="{rapid}"/></system.webServer></configuration>')
    (tmp_path / "logs").mkdir(exist_ok=True)
    return LaunchSpec(site="s", argv=[sys.executable, "-c", code, "%HTTP_PLATFORM_PORT%"], cwd=tmp_path,
                      environment={"SECRET": "v"}, platform=platform, log_base=(tmp_path / "logs" / "stdout") if log else None)


def test_app_process_starts_listens_logs_and_stops(tmp_path):
    app = AppProcess(spec(tmp_path, SERVER))
    port = app.ensure_running()
    assert app.ensure_running() == port and app.starts == 1  # running: no second start
    assert re.fullmatch(rf"stdout_\d{{14}}_{app.pid}\.log", app.log_file.name)
    assert app.log_file.read_text().strip() == f"listening {port} True"
    app.stop()
    assert app.pid is None and app.status()["state"] == "stopped"
    with pytest.raises(AppStartError, match="stopped"):
        app.ensure_running()


def test_a_process_that_exits_is_retried_then_rapid_fail_protection_holds(tmp_path):
    clock = [1000.0]
    app = AppProcess(spec(tmp_path, "import sys; print('boom'); sys.exit(3)", retries=2, rapid=3), clock=lambda: clock[0])
    with pytest.raises(AppStartError, match="after 2 attempt"):
        app.ensure_running()
    assert app.starts == 2 and "exited with code 3" in app.last_error
    with pytest.raises(AppStartError, match="rapidFailsPerMinute"):
        app.ensure_running()  # third failure within the minute
    assert app.starts == 3
    with pytest.raises(AppStartError, match="rapidFailsPerMinute"):
        app.ensure_running()
    assert app.starts == 3  # no start at all while protection holds
    clock[0] += 61
    with pytest.raises(AppStartError, match="after 2 attempt"):
        app.ensure_running()  # the minute has passed: it tries again
    assert app.starts == 5


def test_a_missing_log_folder_means_no_log(tmp_path):
    launch = spec(tmp_path, SERVER)
    launch.log_base = tmp_path / "missing" / "stdout"
    app = AppProcess(launch)
    try:
        app.ensure_running()
        assert app.log_file is None and "missing" in launch.notes[0]
    finally:
        app.stop()


# --- the binding proxy ----------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App", "yes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, host: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/p?q=1", headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_proxy_forwards_with_host_and_forwarded_headers(echo_port):
    listener = BindingListener(Binding.parse("http", "*:80:api.example.com"), 0, lambda: (echo_port, 5.0))
    try:
        status, headers, body = request(listener.port, "API.example.com:80", {"X-Forwarded-For": "10.0.0.9",
                                                                             "X-Forwarded-Proto": "https"})
        seen = json.loads(body)
        assert status == 201 and headers["X-App"] == "yes" and headers["Server"].startswith("Microsoft-IIS")
        assert seen["host"] == "API.example.com:80"
        # HttpPlatformHandler appends the client's address with its port (uvicorn >= 0.45 parses it).
        assert re.fullmatch(r"10\.0\.0\.9, 127\.0\.0\.1:\d+", seen["x-forwarded-for"]), seen["x-forwarded-for"]
        assert seen["x-forwarded-proto"] == "http"  # what the binding is, not what the client claimed
        assert request(listener.port, "evil.example.com")[0] == 400
    finally:
        listener.close()


def test_proxy_answers_502_when_the_app_is_down_and_iis_errors_as_given():
    dead = free_port()
    listener = BindingListener(Binding.parse("http", "*:80:"), 0, lambda: (dead, 5.0))
    try:
        status, _, body = request(listener.port, "any")
        assert status == 502 and b"502.3" in body
    finally:
        listener.close()

    def stopped():
        raise HttpError(503, "Service Unavailable", "the application pool api is stopped")

    listener = BindingListener(Binding.parse("http", "*:80:"), 0, stopped)
    try:
        assert request(listener.port, "any")[0] == 503
    finally:
        listener.close()


def test_platform_environment_applies_the_collection_in_order_and_names_compare_case_insensitively():
    """One reading of ``<environmentVariables>`` for the simulator's HttpPlatformHandler and the
    doctor: clear, add, remove in order; ``Path`` and ``PATH`` are one variable on Windows."""

    import xml.etree.ElementTree as ET

    from pyinfra_iis.release.webconfig import platform_environment

    element = ET.fromstring(
        '<httpPlatform><environmentVariables><environmentVariable name="A" value="1"/><clear/>'
        '<environmentVariable name="Path" value="x"/><add name="PATH" value="y"/><environmentVariable name="B" value="2"/>'
        '<remove name="b"/></environmentVariables></httpPlatform>')
    assert platform_environment(element) == {"PATH": "y"}
    assert platform_environment(ET.fromstring("<httpPlatform/>")) == {}
