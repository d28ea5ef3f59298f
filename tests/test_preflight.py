"""Controller files are checked before any host is touched (pyinfra_iis.preflight): a wrong PFX
password, an installer that is not the pinned one, a missing or damaged artifact, a lock
without uvicorn, an entry point that does not exist: each is one line of the report that
refuses the run, and no host is contacted."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from pyinfra_iis.demo import write_pfx
from pyinfra_iis.inventory_check import check_hosts
from pyinfra_iis.preflight import artifact_problems, pfx_problem, pin_problem

MAIN = "from fastapi import FastAPI\n\napp = FastAPI()\n"


def write_artifact(path: Path, *, app: str = "api", version: str = "1.0.0", python: str = "3.12", main: str = MAIN,
                   requirements: tuple[str, ...] = ("uvicorn", "fastapi"), entry_point: str = "main:app",
                   tamper: str | None = None, extra: str | None = None) -> Path:
    files = {"app/main.py": main.encode(), "requirements.txt": b"".join(f"{r}==1.0\n".encode() for r in requirements)}
    for name in requirements:
        files[f"wheelhouse/{name}-1.0-py3-none-any.whl"] = f"wheel of {name}".encode()
    manifest = {
        "format": 1, "app": app, "version": version, "python": python, "platform": "win_amd64", "entry_point": entry_point,
        "requirements": [{"name": r, "version": "1.0", "extras": [], "marker": None, "wheel": f"{r}-1.0-py3-none-any.whl"} for r in requirements],
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()},
    }
    if tamper:
        files[tamper] = b"changed after the build"
    if extra:
        files[extra] = b"not in the manifest"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_a_good_artifact_has_no_problem(tmp_path):
    assert artifact_problems(write_artifact(tmp_path / "a.zip"), "api", "1.0.0", "3.12") == []


@pytest.mark.parametrize(
    "kwargs, found",
    [
        ({"app": "other"}, "is a release of 'other', not 'api'"),
        ({"version": "2.0.0"}, "is version 2.0.0, not 1.0.0"),
        ({"python": "3.11"}, "built for Python 3.11, the host runs 3.12"),
        ({"requirements": ("fastapi",)}, "the lock has no uvicorn"),
        ({"entry_point": "server:app"}, "no app/server.py in the artifact"),
        ({"main": "from fastapi import FastAPI\napplication = FastAPI()\n"}, "defines no 'app' at module level"),
        ({"main": "def broken(:\n"}, "does not parse"),
        ({"tamper": "app/main.py"}, "app/main.py does not match its manifest entry"),
        ({"extra": "app/evil.py"}, "app/evil.py is not listed in the manifest"),
    ],
)
def test_artifact_problems_name_what_is_wrong(tmp_path, kwargs, found):
    problems = artifact_problems(write_artifact(tmp_path / "a.zip", **kwargs), "api", "1.0.0", "3.12")
    assert any(found in p for p in problems), problems


def test_not_a_zip_and_no_manifest(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"not a zip")
    assert "is not a zip file" in artifact_problems(tmp_path / "a.zip", "api", "1.0.0", "3.12")[0]
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("app/main.py", MAIN)
    assert "has no manifest.json" in artifact_problems(tmp_path / "b.zip", "api", "1.0.0", "3.12")[0]


def test_pfx_password_and_pins(tmp_path):
    pfx = tmp_path / "api.pfx"
    write_pfx(pfx, "right-password")
    assert pfx_problem(pfx, "right-password") is None
    reason = pfx_problem(pfx, "wrong-password")
    assert "does not open with the given password" in reason and "wrong-password" not in reason
    msi = tmp_path / "x.msi"
    msi.write_bytes(b"msi")
    assert pin_problem(msi, hashlib.sha256(b"msi").hexdigest()) is None
    assert "not the pinned" in pin_problem(msi, "0" * 64)


def test_one_report_before_any_host(tmp_path, monkeypatch):
    """The inventory check (run by the connector before connecting) reports every controller
    file problem of every host at once, without echoing the PFX password."""

    write_pfx(tmp_path / "api.pfx", "right-password")
    (tmp_path / "python.exe").write_bytes(b"installer")
    write_artifact(tmp_path / "api-1.0.0.zip", requirements=("fastapi",))
    data = {
        "iis_certificates": [{"name": "api", "pfx": str(tmp_path / "api.pfx"), "password": "typo-password"}],
        "release_app": {"app_name": "api", "root": "C:\\sites\\api", "python_version": "3.12"},
        "release_site": "api",
        "release_python": {"version": "3.12.7", "source": str(tmp_path / "python.exe"), "sha256": "1" * 64},
        "release_version": "1.0.0",
        "release_artifact": str(tmp_path / "api-1.0.0.zip"),
        "iis_sites": [{"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
                       "bindings": [{"protocol": "http", "port": 80, "host_name": "api.example.com"}]}],
        "iis_app_pools": [{"name": "api"}],
    }
    report = check_hosts([("web01", data)], base_dir=tmp_path, environ={})
    text = report.format()
    assert not report.ok
    assert "iis_certificates.0.pfx" in text and "does not open with the given password" in text
    assert "release_python.source" in text and "not the pinned" in text
    assert "release_artifact" in text and "the lock has no uvicorn" in text
    assert "typo-password" not in text and "right-password" not in text
