"""The example FastAPI app, its broken variants, and uvicorn run with web.config's arguments."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.release.artifact import AppError
from pyinfra_iis.release.variants import make_broken_app
from pyinfra_iis.release.webconfig import PORT_VARIABLE, uvicorn_arguments

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "app"
RELEASE_DIR = r"C:\sites\api\releases\1.0.0"


def load_app(folder: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, folder / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_routes():
    module = load_app(EXAMPLE_APP, "example_main_routes")
    with TestClient(module.app) as client:
        answer = client.get("/healthz")
        assert answer.json() == {"status": "ok", "version": "0+unreleased"}
        assert answer.headers["X-Release-Version"] == "0+unreleased"  # issue 15 item 15
        assert client.get("/readyz").json() == {"status": "ready", "version": "0+unreleased"}
        assert client.get("/").json()["version"] == "0+unreleased"  # no manifest beside a source checkout
        assert client.get("/items/3").json() == {"id": 3, "name": "item 3"}
        assert client.get("/items/x").status_code == 422
        assert client.post("/echo", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
        info = client.get("/info").json()
        assert info["client"] == {"host": "testclient", "scheme": "http"}


def test_readyz_is_503_before_startup():
    module = load_app(EXAMPLE_APP, "example_main_not_started")
    client = TestClient(module.app)  # not entered: lifespan startup has not run
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "starting"})


def test_release_version_reads_the_manifest(tmp_path):
    module = load_app(EXAMPLE_APP, "example_main_version")
    (tmp_path / "manifest.json").write_text('{"version": "2.3.4"}', encoding="utf-8")
    assert module.release_version(tmp_path / "manifest.json") == "2.3.4"
    (tmp_path / "manifest.json").write_text("{broken", encoding="utf-8")
    assert module.release_version(tmp_path / "manifest.json") == "0+unreleased"


def test_broken_import_error_variant(tmp_path):
    broken = make_broken_app(EXAMPLE_APP, tmp_path / "broken", "import-error")
    with pytest.raises(RuntimeError, match="deliberately broken release"):
        load_app(broken, "broken_import_main")
    assert (EXAMPLE_APP / "main.py").read_text().startswith('"""')  # the example stays clean


def test_broken_unhealthy_variant(tmp_path):
    broken = make_broken_app(EXAMPLE_APP, tmp_path / "broken", "unhealthy")
    module = load_app(broken, "broken_unhealthy_main")
    with TestClient(module.app) as client:
        assert client.get("/healthz").status_code == 500
        assert client.get("/readyz").status_code == 500
        assert client.get("/items/1").status_code == 200  # it serves: only the health check fails


def test_broken_variant_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown broken mode"):
        make_broken_app(EXAMPLE_APP, tmp_path / "x", "slow")
    (tmp_path / "exists").mkdir()
    with pytest.raises(AppError, match="already exists"):
        make_broken_app(EXAMPLE_APP, tmp_path / "exists")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_uvicorn_accepts_the_web_config_arguments_and_trusts_forwarded_headers(tmp_path):
    """Run the example app the way IIS would: same arguments, the port IIS would give, the app dir here."""

    settings = ReleaseSettings(app_name="api", root=r"C:\sites\api")
    arguments = uvicorn_arguments(settings, RELEASE_DIR)
    head, _, app_dir = arguments.partition(" --app-dir ")
    assert app_dir == f'"{RELEASE_DIR}\\app"'
    port = free_port()
    argv = [a.replace(PORT_VARIABLE, str(port)) for a in head.split()] + ["--app-dir", str(EXAMPLE_APP)]
    assert argv[:2] == ["-m", "uvicorn"]
    process = subprocess.Popen([sys.executable, *argv], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # up to about 10 s
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert process.poll() is None, process.stdout.read()
        direct = httpx.get(f"{base}/info", timeout=5).json()
        assert direct["client"] == {"host": "127.0.0.1", "scheme": "http"}
        proxied = httpx.get(f"{base}/info", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "Host": "api.example.com"}, timeout=5).json()
        assert proxied["client"] == {"host": "203.0.113.7", "scheme": "https"}
        assert proxied["host"] == "api.example.com"
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "Uvicorn running on http://127.0.0.1:" in output
