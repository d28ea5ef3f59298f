"""Releases on the simulated host, end to end with the real example app (issue 4 part 8).

A real artifact of ``examples/app`` is built once per session with ``pyinfra_iis.release``
(wheel cache: the default one, so repeated runs download nothing); the simulator builds the
local venv once (cached under ``~/.cache/pyinfra-iis/sim-venvs``). Each test configures a
fresh SimServer with the simulator's own functions: IIS, HttpPlatformHandler, Python, a pool
with a secret, a site with an http and an https binding.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.release.artifact import build_release
from pyinfra_iis.release.variants import make_broken_app
from pyinfra_iis.release.webconfig import render_web_config
from pyinfra_iis.release.wheelhouse import default_cache_dir
from pyinfra_iis.sim import SimServer, apps
from pyinfra_iis.sim.__main__ import main as sim_main
from pyinfra_iis.sim.functions import SimFunctionError, call
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
def pfx() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False).sign(key, hashes.SHA256()))
    return pkcs12.serialize_key_and_certificates(
        b"api", key, cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode()))


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


def install(host, artifacts, version: str, **overrides) -> dict:
    build = artifacts[version]
    artifact = f"{ROOT}\\artifacts\\{build.path.name}"
    put(host, artifact, build.path.read_bytes())
    web_config = render_web_config(settings(**overrides), f"{ROOT}\\releases\\{version}", manifest=build.manifest)
    return run(host, "Install-Release", {"root": ROOT, "artifact": artifact, "version": version,
                                         "python": "C:\\Program Files\\Python312\\python.exe", "web_config": web_config})


def switch(host, version: str, deadline: int = 30, scheme: str = "https") -> dict:
    port = 443 if scheme == "https" else 80
    return run(host, "Switch-Release", {"root": ROOT, "version": version, "site": "api", "app_pool": "api",
                                        "health": {"url": f"{scheme}://127.0.0.1:{port}/healthz", "host": HOST,
                                                   "deadline_seconds": deadline, "expect_status": 200}})


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
    first = install(host, artifacts, "1.0.0")
    assert first == {"version": "1.0.0", "installed": True, "path": f"{ROOT}\\releases\\1.0.0"}
    assert install(host, artifacts, "1.0.0")["installed"] is False
    release = host.path(f"{ROOT}\\releases\\1.0.0")
    assert not host.path(f"{ROOT}\\releases\\1.0.0.partial").exists()
    assert (release / "app" / "main.py").is_file() and (release / "web.config").read_bytes().startswith(b"<?xml")
    marker = json.loads((release / "venv" / "pyinfra-iis-sim-venv.json").read_text())
    assert (Path(marker["local_venv"]) / "bin" / "python").exists() and marker["target_python"] == "3.12"
    assert (release / "venv" / "Scripts" / "python.exe").is_file()
    assert SECRET not in (release / "web.config").read_text()

    state = run(host, "Get-HostState", {"release_roots": [ROOT], "python_versions": ["3.12", "3.13"]})
    assert state["pythons"] == {"3.12": {"installed": True, "version": "3.12.7", "path": "C:\\Program Files\\Python312\\python.exe"},
                                "3.13": {"installed": False, "version": None, "path": None}}
    web_config_sha256 = hashlib.sha256((release / "web.config").read_bytes()).hexdigest()
    assert state["releases"][ROOT]["versions"] == [{"version": "1.0.0", "complete": True, "web_config_sha256": web_config_sha256}]
    assert state["releases"][ROOT]["current"] is None


def test_install_release_refuses_a_tampered_artifact(sim, artifacts, tmp_path):
    import zipfile

    host = sim.host
    source = artifacts["1.1.0"].path
    tampered = tmp_path / "api-1.1.0.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(tampered, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info, data + b"\n# changed" if info.filename == "app/main.py" else data)
    put(host, f"{ROOT}\\artifacts\\api-1.1.0.zip", tampered.read_bytes())
    with pytest.raises(SimFunctionError, match=r"step 'verify': app/main.py does not match its SHA-256"):
        run(host, "Install-Release", {"root": ROOT, "artifact": f"{ROOT}\\artifacts\\api-1.1.0.zip", "version": "1.1.0",
                                      "python": "C:\\Program Files\\Python312\\python.exe", "web_config": "<configuration/>"})
    assert not host.path(f"{ROOT}\\releases\\1.1.0").exists()
    with pytest.raises(SimFunctionError, match="not complete"):
        switch(host, "1.1.0")


def test_switch_serves_the_app_through_both_bindings(sim, artifacts, capsys):
    host = sim.host
    install(host, artifacts, "1.0.0")
    result = switch(host, "1.0.0")
    assert (result["switched"], result["from"], result["to"], result["health"]["status"]) == (True, None, "1.0.0", 200)

    status, body = get(loopback(sim, "http"), "/info")
    info = json.loads(body)
    assert status == 200 and info["version"] == "1.0.0" and info["host"] == HOST
    assert info["client"] == {"host": "127.0.0.1", "scheme": "http"}  # from X-Forwarded-For / -Proto
    status, body = get(loopback(sim, "https"), "/info", tls=True)
    assert status == 200 and json.loads(body)["client"]["scheme"] == "https"
    assert get(loopback(sim, "http"), "/healthz", host_header="other.example.com")[0] == 400  # Invalid Hostname

    logs = [p.name for p in host.path(ROOT + "\\logs").iterdir()]
    assert logs and all(re.fullmatch(r"stdout_\d{14}_\d+\.log", name) for name in logs), logs
    assert switch(host, "1.0.0")["switched"] is False
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
    for version in ("1.0.0", "1.1.0", "1.3.0"):
        install(host, artifacts, version)
    switch(host, "1.0.0")
    host.path(f"{ROOT}\\releases\\9.9.9.partial").mkdir()
    assert run(host, "Remove-OldReleases", {"root": ROOT, "keep": 1}) == {"removed": ["1.1.0"]}
    left = sorted(p.name for p in host.path(f"{ROOT}\\releases").iterdir())
    assert left == ["1.0.0", "1.3.0"]  # current kept although older; the stale .partial removed
    assert not host.path(f"{ROOT}\\artifacts\\api-1.1.0.zip").exists()
    assert host.path(f"{ROOT}\\artifacts\\api-1.0.0.zip").exists()
    with pytest.raises(SimFunctionError, match="keep"):
        run(host, "Remove-OldReleases", {"root": ROOT, "keep": 0})


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
