"""Releases on the simulated host, end to end with the real example app (issue 4 part 8).

A real artifact of ``examples/app`` is built once per session with ``pyinfra_iis.release``
(wheel cache: the default one, so repeated runs download nothing); the simulator builds the
local venv once (cached under ``~/.cache/pyinfra-iis/sim-venvs``). Each test configures a
fresh SimServer with the simulator's own functions: IIS, HttpPlatformHandler, Python, a pool
with a secret, a site with an http and an https binding.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from pyinfra_iis.demo import write_pfx
from pyinfra_iis.facts import python_state
from pyinfra_iis.facts import release_state as release_facts
from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.operations import release
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.release.artifact import build_release
from pyinfra_iis.release.variants import make_broken_app
from pyinfra_iis.release.webconfig import render_web_config
from pyinfra_iis.release.wheelhouse import default_cache_dir
from pyinfra_iis.sim import SimServer, apps
from pyinfra_iis.sim.__main__ import main as sim_main
from pyinfra_iis.sim.functions import SimFunctionError
from support.sim_calls import run

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "app"
ROOT = "C:\\sites\\api"
HOST = "api.example.com"
SECRET = "s3cr3t-db-password"
PFX_PASSWORD = "pfx-pass"


# --- session fixtures: artifacts -----------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """version → BuildResult: 1.0.0 and 1.1.0 clean, 1.2.0 import error, 1.3.0 unhealthy."""

    out = tmp_path_factory.mktemp("dist")
    variants = tmp_path_factory.mktemp("variants")
    cache = default_cache_dir()
    builds = {v: build_release(EXAMPLE_APP, v, "3.12", out, name="api", cache_dir=cache) for v in ("1.0.0", "1.1.0")}
    for version, mode in (("1.2.0", "import-error"), ("1.3.0", "unhealthy")):
        app = make_broken_app(EXAMPLE_APP, variants / mode, mode)
        builds[version] = build_release(app, version, "3.12", out, name="api", cache_dir=cache)
    return builds


@pytest.fixture(scope="session")
def pfx(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("pfx") / "api.pfx"
    write_pfx(path, PFX_PASSWORD, names=(HOST,), days=30)
    return path.read_bytes()


# --- helpers ---------------------------------------------------------------------------------


def put(host, windows_path: str, data: bytes) -> None:
    local = host.path(windows_path)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)


def settings(**overrides) -> ReleaseSettings:
    values = {"app_name": "api", "root": ROOT, "startup_time_limit": 20, "startup_retry_count": 2,
              "health_deadline": 30, "app_settings": {"APP_MODE": "sim"}, "app_secrets": {"DB_PASSWORD": SECRET}}
    return ReleaseSettings(**{**values, **overrides})


def configure_host(host, pfx_bytes: bytes) -> None:
    """IIS, HttpPlatformHandler, Python 3.12, pool 'api' (with a secret), site 'api'."""

    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    put(host, "C:\\install\\hph.msi", b"hph msi")
    run(host, "Install-MsiProduct", {"product": "HttpPlatformHandler", "source": "C:\\install\\hph.msi",
                                     "sha256": hashlib.sha256(b"hph msi").hexdigest()})
    put(host, "C:\\install\\python-3.12.7-amd64.exe", b"python installer")
    run(host, "Install-Python", {"version": "3.12.7", "source": "C:\\install\\python-3.12.7-amd64.exe",
                                 "sha256": hashlib.sha256(b"python installer").hexdigest(), "target_dir": "C:\\Program Files\\Python312"})
    leaf = pkcs12.load_key_and_certificates(pfx_bytes, PFX_PASSWORD.encode())[1].fingerprint(hashes.SHA1()).hex().upper()
    thumbprint = run(host, "Import-IisCertificate", {"pfx": base64.b64encode(pfx_bytes).decode("ascii"), "password": PFX_PASSWORD,
                                                     "store": "My", "thumbprint": leaf})["thumbprint"]
    host.path(ROOT + "\\logs").mkdir(parents=True)
    host.path(ROOT + "\\empty").mkdir(parents=True)
    pools, sites = "system.applicationHost/applicationPools", "system.applicationHost/sites"
    pool = [{"item": "add", "key": {"name": "api"}}]
    site = [{"item": "site", "key": {"name": "api"}}]
    run(host, "Set-IisConfig", {"edits": [
        {"section": pools, "path": pool, "action": "set", "attributes": {"managedRuntimeVersion": ""}},
        {"section": pools, "action": "set", "attributes": {"value": SECRET},
         "path": [*pool, {"child": "environmentVariables"}, {"item": "add", "key": {"name": "DB_PASSWORD"}}]},
        {"section": sites, "path": [*site, {"item": "application", "key": {"path": "/"}}], "action": "set",
         "attributes": {"applicationPool": "api"}},
        {"section": sites, "action": "set", "attributes": {"physicalPath": ROOT + "\\empty"},
         "path": [*site, {"item": "application", "key": {"path": "/"}}, {"item": "virtualDirectory", "key": {"path": "/"}}]},
        {"section": sites, "action": "set", "attributes": {},
         "path": [*site, {"child": "bindings"}, {"item": "binding", "key": {"protocol": "http", "bindingInformation": f"*:80:{HOST}"}}]},
        {"section": sites, "action": "set", "attributes": {"sslFlags": "1"},
         "path": [*site, {"child": "bindings"}, {"item": "binding", "key": {"protocol": "https", "bindingInformation": f"*:443:{HOST}"}}]},
    ]})
    run(host, "Set-IisSslBinding", {"site": "api", "binding_information": f"*:443:{HOST}", "action": "add",
                                    "thumbprint": thumbprint, "store": "My"})


class SimCalls:
    """The controller's view of a simulated host: ``run_shell_command`` of remote calls, as
    the connector gives it to the release ``FunctionCommand``s."""

    def __init__(self, host):
        self.host = host

    def run_shell_command(self, command, print_output=False):
        function, payload = parse_remote_call(command.get_raw_value())
        try:
            return True, SimpleNamespace(stdout=json.dumps(run(self.host, function, payload)), stderr="")
        except SimFunctionError as exc:
            return False, SimpleNamespace(stdout="", stderr=str(exc))


def report(host) -> dict:
    """The converted ``releases`` part of Get-HostState for ROOT."""

    return release_facts.convert_root(run(host, "Get-HostState", {"release_roots": [ROOT]})["releases"][ROOT])


def install(host, artifacts, version: str, manifest=None, **overrides) -> None:
    """What ``release_installed`` does: upload, then :func:`release.install_steps`."""

    build = artifacts[version]
    artifact = f"{ROOT}\\artifacts\\{build.path.name}"
    put(host, artifact, build.path.read_bytes())
    manifest = manifest or build.manifest
    with zipfile.ZipFile(build.path) as archive:
        manifest_bytes = archive.read("manifest.json")
    web_config = render_web_config(settings(**overrides), f"{ROOT}\\releases\\{version}", manifest=manifest)
    stale = [f"{ROOT}\\releases\\{e['folder']}" for e in report(host)["versions"] if e["version"] == version and not e["complete"]]
    release.install_steps(SimCalls(host), settings(**overrides), version, artifact, hashlib.sha256(host.path(artifact).read_bytes()).hexdigest(),
                          manifest, manifest_bytes, web_config, "C:\\Program Files\\Python312\\python.exe", stale)


def switch(host, version: str, deadline: int = 30, scheme: str = "https") -> dict:
    port = 443 if scheme == "https" else 80
    ok, failed = release.state_texts(report(host), version)
    return run(host, "Switch-Release", {"site": "api", "app_pool": "api", "path": f"{ROOT}\\releases\\{version}",
                                        "environment": {}, "state_file": f"{ROOT}\\release-state.json", "state_ok": ok,
                                        "state_failed": failed, "logs": f"{ROOT}\\logs",
                                        "health": {"url": f"{scheme}://127.0.0.1:{port}/healthz", "host": HOST,
                                                   "deadline_seconds": deadline, "expect_status": 200, "expect_version": version}})


def get(port: int, path: str, host_header: str = HOST, tls: bool = False) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=host_header)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def loopback(sim, scheme: str) -> int:
    port = apps.manager_for(sim.host).loopback_port("api", scheme, 443 if scheme == "https" else 80, HOST)
    assert port is not None
    return port


def release_state(host) -> dict:
    return json.loads(host.path(ROOT + "\\release-state.json").read_text(encoding="utf-8"))


def never_incomplete(host) -> None:
    history = host.state["sim_releases"]["physical_path_history"]
    assert history, "no physicalPath was switched"
    assert all(entry["complete"] is not False for entry in history), history


@pytest.fixture
def sim(tmp_path, pfx):
    with SimServer(tmp_path / "web01", user="admin", password="x", port=0, allow_unencrypted=True) as server:
        configure_host(server.host, pfx)
        yield server


# --- tests ---------------------------------------------------------------------------------------


def test_install_release_is_complete_and_idempotent(sim, artifacts):
    host = sim.host
    install(host, artifacts, "1.0.0")
    release_dir = host.path(f"{ROOT}\\releases\\1.0.0")
    assert (release_dir / ".pyinfra-iis-complete").is_file()  # the marker defines complete (item 19)
    assert (release_dir / "app" / "main.py").is_file() and (release_dir / "web.config").read_bytes().startswith(b"<?xml")
    marker = json.loads((release_dir / "venv" / "pyinfra-iis-sim-venv.json").read_text())
    assert (Path(marker["local_venv"]) / "bin" / "python").exists()
    assert (release_dir / "venv" / "Scripts" / "python.exe").is_file()
    assert SECRET not in (release_dir / "web.config").read_text()

    state = run(host, "Get-HostState", {"release_roots": [ROOT], "python_versions": ["3.12", "3.13"]})
    pythons = python_state.convert(state)["pythons"]
    assert pythons["3.12"] == {"installed": True, "version": "3.12.7", "path": "C:\\Program Files\\Python312\\python.exe",
                               "target_dir": "C:\\Program Files\\Python312"}
    assert pythons["3.13"]["installed"] is False
    web_config_sha256 = hashlib.sha256((release_dir / "web.config").read_bytes()).hexdigest()
    converted = release_facts.convert_root(state["releases"][ROOT])
    assert [(e["version"], e["complete"], e["web_config_sha256"]) for e in converted["versions"]] == [("1.0.0", True, web_config_sha256)]
    assert converted["current"] is None

    # An interrupted install (no marker) is reported incomplete, then removed and rebuilt (item 22).
    (release_dir / ".pyinfra-iis-complete").unlink()
    assert report(host)["versions"][0]["complete"] is False
    install(host, artifacts, "1.0.0")
    assert report(host)["versions"][0]["complete"] is True


def test_install_release_refuses_a_tampered_artifact(sim, artifacts, tmp_path):
    host = sim.host
    source = artifacts["1.1.0"].path
    tampered = tmp_path / "api-1.1.0.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(tampered, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info, data + b"\n# changed" if info.filename == "app/main.py" else data)
    artifact = f"{ROOT}\\artifacts\\api-1.1.0.zip"
    put(host, artifact, tampered.read_bytes())
    # The controller's hash of ITS artifact travels with the call: nothing is unpacked.
    with pytest.raises(SimFunctionError, match="SHA-256 mismatch"):
        run(host, "Install-Release", {"artifact": artifact, "sha256": artifacts["1.1.0"].sha256, "destination": f"{ROOT}\\releases\\1.1.0"})
    assert not host.path(f"{ROOT}\\releases\\1.1.0").exists()
    # Unpacked files are compared with the manifest the CONTROLLER holds, not the zip's.
    listing = run(host, "Install-Release", {"artifact": artifact, "sha256": hashlib.sha256(tampered.read_bytes()).hexdigest(),
                                            "destination": f"{ROOT}\\releases\\1.1.0"})["files"]
    with zipfile.ZipFile(source) as archive:
        problems = release.manifest_problems(artifacts["1.1.0"].manifest, archive.read("manifest.json"), listing)
    assert problems == ["app/main.py: size/SHA-256 differ from the manifest"]
    with pytest.raises(SimFunctionError, match="no completion marker"):
        switch(host, "1.1.0")


def test_switch_serves_the_app_through_both_bindings(sim, artifacts, capsys):
    host = sim.host
    install(host, artifacts, "1.0.0")
    result = switch(host, "1.0.0")
    assert (result["switched"], result["health"]["status"]) == (True, 200)

    status, body = get(loopback(sim, "http"), "/info")
    info = json.loads(body)
    assert status == 200 and info["version"] == "1.0.0" and info["host"] == HOST
    assert info["client"] == {"host": "127.0.0.1", "scheme": "http"}  # from X-Forwarded-For / -Proto
    status, body = get(loopback(sim, "https"), "/info", tls=True)
    assert status == 200 and json.loads(body)["client"]["scheme"] == "https"
    assert get(loopback(sim, "http"), "/healthz", host_header="other.example.com")[0] == 400  # Invalid Hostname

    logs = [p.name for p in host.path(ROOT + "\\logs").iterdir()]
    assert logs and all(re.fullmatch(r"stdout_\d{14}_\d+\.log", name) for name in logs), logs
    switches = len(host.state["sim_releases"]["physical_path_history"])
    assert switch(host, "1.0.0")["switched"] is False  # re-sent after a lost reply: nothing committed or recycled
    assert len(host.state["sim_releases"]["physical_path_history"]) == switches
    assert release_state(host)["current"] == "1.0.0"
    never_incomplete(host)

    assert sim_main(["show", "--state-dir", str(host.state_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)["served_bindings"]
    assert "controller's Python" in shown["note"]
    served = apps.describe_state(host.snapshot())
    ports = {(b["protocol"], b["binding"]): (b["port"], b["listening"], b["loopback"]) for b in served["bindings"]}
    https_port = loopback(sim, "https")
    assert ports[("https", f"*:443:{HOST}")] == (https_port, True, f"https://127.0.0.1:{https_port}")

def test_broken_releases_fail_the_switch_and_the_previous_keeps_serving(sim, artifacts):
    host = sim.host
    install(host, artifacts, "1.0.0")
    switch(host, "1.0.0")
    install(host, artifacts, "1.2.0", startup_retry_count=1)  # fails at import
    with pytest.raises(SimFunctionError) as failure:
        switch(host, "1.2.0", deadline=8)
    message = str(failure.value)
    assert "health check" in message and "502" in message and "deliberately broken release" in message
    assert f"physicalPath restored to {ROOT}\\releases\\1.0.0" in message
    assert SECRET not in message
    status, body = get(loopback(sim, "http"), "/info")
    assert status == 200 and json.loads(body)["version"] == "1.0.0"

    install(host, artifacts, "1.3.0")  # serves, but /healthz answers 500
    with pytest.raises(SimFunctionError, match="got HTTP 500"):
        switch(host, "1.3.0", deadline=3)
    assert json.loads(get(loopback(sim, "https"), "/info", tls=True)[1])["version"] == "1.0.0"

    state = release_state(host)
    assert state["current"] == "1.0.0"
    assert [(h["to"], h["ok"]) for h in state["history"]] == [("1.0.0", True), ("1.2.0", False), ("1.3.0", False)]
    never_incomplete(host)


def test_remove_old_releases_keeps_the_newest_and_the_current(sim, artifacts):
    host = sim.host
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        install(host, artifacts, version)
    switch(host, "1.0.0")
    host.path(f"{ROOT}\\releases\\9.9.9.partial").mkdir()
    old, incomplete, _ = release.removable(settings(keep_releases=2), report(host))
    assert (old, incomplete) == (["1.1.0"], ["9.9.9.partial"])
    paths = [f"{ROOT}\\releases\\1.1.0", f"{ROOT}\\releases\\9.9.9.partial", f"{ROOT}\\artifacts\\api-1.1.0.zip"]
    assert run(host, "Remove-ReleasePaths", {"paths": paths, "marker": ".pyinfra-iis-complete"}) == {"removed": paths}
    left = sorted(p.name for p in host.path(f"{ROOT}\\releases").iterdir())
    assert left == ["1.0.0", "1.2.0", "1.3.0"]  # current kept although older; the stale .partial removed
    assert not host.path(f"{ROOT}\\artifacts\\api-1.1.0.zip").exists()
    assert host.path(f"{ROOT}\\artifacts\\api-1.0.0.zip").exists()


def test_removal_refuses_a_junction_inside_a_release(sim, artifacts, tmp_path):  # issue 9 defect 9
    host = sim.host
    install(host, artifacts, "1.0.0")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (host.path(f"{ROOT}\\releases\\1.0.0") / "venv" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SimFunctionError, match="reparse point"):
        run(host, "Remove-ReleasePaths", {"paths": [f"{ROOT}\\releases\\1.0.0"]})
    assert (outside / "keep.txt").is_file() and (host.path(f"{ROOT}\\releases\\1.0.0") / ".pyinfra-iis-complete").is_file()


def test_a_restarted_simulator_serves_the_started_site_again(tmp_path, artifacts, pfx):
    state_dir = tmp_path / "web02"
    with SimServer(state_dir, password="x", port=0) as first:
        configure_host(first.host, pfx)
        install(first.host, artifacts, "1.0.0")
        switch(first.host, "1.0.0", scheme="http")
        port = loopback(first, "http")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # stopped: nothing listens
    with SimServer(state_dir, password="x", port=0) as second:
        assert loopback(second, "http") == port  # the same loopback port when it is free
        status, body = get(port, "/info")
        assert status == 200 and json.loads(body)["version"] == "1.0.0"
