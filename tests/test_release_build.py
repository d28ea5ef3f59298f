"""Building a release of examples/app for Windows from this Linux controller (uses PyPI).

Network use is bounded: one session-scoped wheel cache, so the example's wheels (about 3.6 MB)
are downloaded once per test run; the uvloop test asks the index and downloads nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyinfra_iis.release.__main__ import EXIT_INPUT, EXIT_OK, EXIT_USAGE, main
from pyinfra_iis.release.artifact import build_release
from pyinfra_iis.release.manifest import Manifest
from pyinfra_iis.release.variants import make_broken_app
from pyinfra_iis.release.wheelhouse import IncompleteLockError, NoWindowsWheelError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_APP = PROJECT_ROOT / "examples" / "app"
EXAMPLE_LOCK = (EXAMPLE_APP / "requirements.txt").read_text(encoding="utf-8")

#: The example lock with click 8.1.8, whose METADATA says ``colorama; platform_system ==
#: 'Windows'`` (click 8.5.1 in the example has no dependencies). Costs about 125 kB of download.
CLICK_81_LOCK = EXAMPLE_LOCK.replace("click==8.5.1\n", 'click==8.1.8\ncolorama==0.4.6 ; platform_system == "Windows"\n')


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture(scope="session")
def builds(wheel_cache, tmp_path_factory):
    """The example app built twice, into two folders, from the same input."""

    first = build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path_factory.mktemp("dist1"), cache_dir=wheel_cache)
    second = build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path_factory.mktemp("dist2"), cache_dir=wheel_cache)
    return first, second


@pytest.fixture(scope="session")
def unpacked(builds, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("release-1.0.0")
    with zipfile.ZipFile(builds[0].path) as archive:
        archive.extractall(target)
    return target


def lock_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text(text, encoding="utf-8")
    return path


def test_same_input_gives_the_same_artifact(builds):
    first, second = builds
    assert first.path.name == "app-1.0.0.zip"
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.path.read_bytes() == second.path.read_bytes()
    print(f"artifact {first.path.stat().st_size} bytes, sha256 {first.sha256}")


def test_zip_entries_are_sorted_with_fixed_time_and_permissions(builds):
    with zipfile.ZipFile(builds[0].path) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not any(n.endswith("/") or "__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {"manifest.json", "requirements.txt", "app/main.py", "app/requirements.txt"} <= set(names)


def test_a_changed_file_changes_the_artifact(builds, wheel_cache, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    for name in ("main.py", "requirements.txt"):
        (app / name).write_bytes((EXAMPLE_APP / name).read_bytes())
    (app / "main.py").write_text((EXAMPLE_APP / "main.py").read_text() + "\n# changed\n")
    changed = build_release(app, "1.0.0", "3.12", tmp_path / "dist", cache_dir=wheel_cache)
    assert changed.sha256 != builds[0].sha256
    assert changed.manifest.files["app/main.py"] != builds[0].manifest.files["app/main.py"]
    assert changed.manifest.files["wheelhouse/fastapi-0.165.0-py3-none-any.whl"] == builds[0].manifest.files["wheelhouse/fastapi-0.165.0-py3-none-any.whl"]


def test_manifest_hashes_match_the_files(builds, unpacked):
    manifest = Manifest.from_json((unpacked / "manifest.json").read_bytes())
    assert manifest == builds[0].manifest
    assert (manifest.app, manifest.version, manifest.python, manifest.platform, manifest.entry_point) == ("app", "1.0.0", "3.12", "win_amd64", "main:app")
    with zipfile.ZipFile(builds[0].path) as archive:
        names = set(archive.namelist()) - {"manifest.json"}
        assert set(manifest.files) == names
        for name in names:
            assert hashlib.sha256(archive.read(name)).hexdigest() == manifest.files[name].sha256, name
    assert manifest.verify_tree(unpacked) == []
    (unpacked / "app" / "main.py").write_bytes(b"tampered")
    (unpacked / "app" / "extra.py").write_bytes(b"")
    try:
        assert manifest.verify_tree(unpacked) == ["app/main.py does not match its SHA-256 in the manifest", "app/extra.py is not in the manifest"]
    finally:
        (unpacked / "app" / "extra.py").unlink()
        with zipfile.ZipFile(builds[0].path) as archive:
            (unpacked / "app" / "main.py").write_bytes(archive.read("app/main.py"))


def test_wheelhouse_is_for_windows(builds):
    wheels = {r.name: r.wheel for r in builds[0].manifest.requirements}
    assert wheels["pydantic-core"] == "pydantic_core-2.50.4-cp312-cp312-win_amd64.whl"
    assert all(w.endswith(("-win_amd64.whl", "-none-any.whl")) for w in wheels.values())
    with zipfile.ZipFile(builds[0].path) as archive:
        lines = archive.read("requirements.txt").decode().splitlines()
        # Each pin carries its bundled wheel's hash: the host installs with --require-hashes.
        for line in lines:
            pin, digest = line.split(" --hash=sha256:")
            wheel = next(r.wheel for r in builds[0].manifest.requirements if r.name == pin.split("==")[0].split("[")[0])
            assert hashlib.sha256(archive.read(f"wheelhouse/{wheel}")).hexdigest() == digest
    pins = [line.split(" --hash")[0] for line in lines]
    assert "uvicorn==0.54.0" in pins and "fastapi==0.165.0" in pins
    assert not any(";" in p for p in pins)  # markers already evaluated for Windows


def test_colorama_is_in_the_wheelhouse_although_the_controller_is_linux(wheel_cache, tmp_path):
    if sys.platform == "win32":
        pytest.skip("the point is resolving for Windows on another OS")
    result = build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path / "dist", lock_path=lock_file(tmp_path, CLICK_81_LOCK), cache_dir=wheel_cache)
    wheels = {r.name: r for r in result.manifest.requirements}
    assert wheels["colorama"].wheel == "colorama-0.4.6-py2.py3-none-any.whl"
    assert wheels["colorama"].marker == 'platform_system == "Windows"'
    with zipfile.ZipFile(result.path) as archive:
        assert "wheelhouse/colorama-0.4.6-py2.py3-none-any.whl" in archive.namelist()
        assert "colorama==0.4.6" in [line.split(" --hash")[0] for line in archive.read("requirements.txt").decode().splitlines()]


def test_released_app_reports_the_manifest_version(unpacked):
    from fastapi.testclient import TestClient

    spec = importlib.util.spec_from_file_location("released_example_main", unpacked / "app" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TestClient(module.app) as client:
        assert client.get("/").json()["version"] == "1.0.0"
        assert client.get("/readyz").json() == {"status": "ready", "version": "1.0.0"}


def test_lock_missing_a_transitive_dependency_is_named(wheel_cache, tmp_path):
    lock = CLICK_81_LOCK.replace("h11==0.16.0\n", "").replace('colorama==0.4.6 ; platform_system == "Windows"\n', "")
    with pytest.raises(IncompleteLockError) as info:
        build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path / "dist", lock_path=lock_file(tmp_path, lock), cache_dir=wheel_cache)
    message = str(info.value)
    assert "uvicorn 0.54.0 requires h11>=0.8 (on Windows, CPython 3.12); the lock has no h11" in message
    assert "click 8.1.8 requires colorama (on Windows, CPython 3.12); the lock has no colorama" in message
    assert not (tmp_path / "dist" / "app-1.0.0.zip").exists()


def test_lock_with_a_linux_only_marker_on_a_windows_dependency(wheel_cache, tmp_path):
    lock = CLICK_81_LOCK.replace('platform_system == "Windows"', 'sys_platform == "linux"')
    with pytest.raises(IncompleteLockError, match=r"pins colorama==0\.4\.6 on line \d+ but its marker 'sys_platform == \"linux\"' is false on Windows"):
        build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path / "dist", lock_path=lock_file(tmp_path, lock), cache_dir=wheel_cache)


def test_lock_pinning_a_version_a_wheel_refuses(wheel_cache, tmp_path):
    lock = EXAMPLE_LOCK.replace("anyio==4.16.0", "anyio==3.7.1")  # below starlette's anyio>=4.0.0
    with pytest.raises(IncompleteLockError, match=r"starlette 1\.10\.0 requires anyio<5,>=4\.0\.0 .*; the lock pins anyio==3\.7\.1"):
        build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path / "dist", lock_path=lock_file(tmp_path, lock), cache_dir=wheel_cache)


def test_requirement_without_a_windows_wheel_is_named(wheel_cache, tmp_path):
    lock = EXAMPLE_LOCK + "uvloop==0.21.0\n"
    with pytest.raises(NoWindowsWheelError) as info:
        build_release(EXAMPLE_APP, "1.0.0", "3.12", tmp_path / "dist", lock_path=lock_file(tmp_path, lock), cache_dir=wheel_cache)
    error = info.value
    assert (error.package, error.version, error.platform, error.python) == ("uvloop", "0.21.0", "win_amd64", "3.12")
    assert "no wheel of uvloop 0.21.0 for win_amd64 and CPython 3.12" in str(error)


def test_broken_variant_builds_like_any_app(wheel_cache, tmp_path):
    broken = make_broken_app(EXAMPLE_APP, tmp_path / "broken", "import-error")
    result = build_release(broken, "1.0.1", "3.12", tmp_path / "dist", name="app", cache_dir=wheel_cache)
    assert result.path.name == "app-1.0.1.zip"
    with zipfile.ZipFile(result.path) as archive:
        assert archive.read("app/main.py").rstrip().endswith(b'raise RuntimeError("deliberately broken release (pyinfra-iis test variant): fails at import")')


def test_cli_exit_codes(builds, wheel_cache, tmp_path, capsys):
    common = ["--python", "3.12", "--out", str(tmp_path / "dist"), "--cache-dir", str(wheel_cache)]

    assert main(["build", str(EXAMPLE_APP), "--version", "1.0.0", *common]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.strip() == f"{tmp_path / 'dist' / 'app-1.0.0.zip'} sha256={builds[0].sha256}"

    assert main(["build", str(EXAMPLE_APP), "--version", "1.0.", *common]) == EXIT_USAGE
    assert "release folder name" in capsys.readouterr().err
    assert main(["build", str(EXAMPLE_APP), "--version", "1.0.0", "--python", "3.9", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "3.10 to 3.14" in capsys.readouterr().err

    lock = lock_file(tmp_path, EXAMPLE_LOCK + "uvloop==0.21.0\n")
    assert main(["build", str(EXAMPLE_APP), "--version", "1.0.0", "--lock", str(lock), *common]) == EXIT_INPUT
    assert "uvloop 0.21.0" in capsys.readouterr().err

    assert main(["build", str(EXAMPLE_APP), "--version", "1.0.0", "--entry-point", "api:app", *common]) == EXIT_INPUT
    assert "no api.py" in capsys.readouterr().err

    with pytest.raises(SystemExit) as info:
        main(["build", str(EXAMPLE_APP)])
    assert info.value.code == EXIT_USAGE


def test_cli_as_a_module(builds, wheel_cache, tmp_path):
    command = [sys.executable, "-m", "pyinfra_iis.release", "build", str(EXAMPLE_APP), "--version", "1.0.0", "--python", "3.12", "--out", str(tmp_path), "--cache-dir", str(wheel_cache)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"sha256={builds[0].sha256}")
