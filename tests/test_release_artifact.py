"""Offline parts of the release build: app files, deterministic zip, wheel cache, completeness rules.

The completeness check is exercised here with tiny hand-made wheels (a zip with a METADATA),
placed in the cache so no pip runs.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from pyinfra_iis.release.artifact import AppError, collect_app_files, sha256_file, write_deterministic_zip
from pyinfra_iis.release.lock import parse_lock_text
from pyinfra_iis.release.wheelhouse import IncompleteLockError, check_complete, fetch_wheels, find_cached


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_app_files_skip_caches_and_litter(tmp_path):
    for name in ("main.py", "pkg/__init__.py", "pkg/data.json", "__pycache__/main.cpython-312.pyc", "pkg/mod.pyc", ".git/HEAD", ".venv/pyvenv.cfg", ".DS_Store"):
        write(tmp_path / name)
    assert [arc for arc, _ in collect_app_files(tmp_path)] == ["main.py", "pkg/__init__.py", "pkg/data.json"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["main.py", ".env"], "secrets do not ship"),
        (["main.py", "config/.env.production"], "secrets do not ship"),
        (["main.py", "Main.py"], "differ only in case"),
        (["main.py", "a:b.txt"], "Windows refuses :"),
        (["main.py", "notes. "], "ends with a dot or a space"),
        (["main.py", "aux.py"], "reserved device name"),
        (["main.py", "con/x.py"], "reserved device name"),
    ],
)
def test_app_files_windows_cannot_hold_or_must_not_ship(tmp_path, names, message):
    for name in names:
        write(tmp_path / name)
    with pytest.raises(AppError, match=message):
        collect_app_files(tmp_path)


def test_app_symlinks_are_refused(tmp_path):
    write(tmp_path / "main.py")
    os.symlink(tmp_path / "main.py", tmp_path / "link.py")
    with pytest.raises(AppError, match="symlink"):
        collect_app_files(tmp_path)


def test_zip_does_not_depend_on_order_or_file_times(tmp_path):
    contents = {"b/x.txt": b"bee", "a.py": b"print(1)\n" * 100, "wheelhouse/w-1-py3-none-any.whl": b"PK..."}
    write_deterministic_zip(contents, tmp_path / "one.zip")
    os.utime(tmp_path / "one.zip", (0, 0))
    write_deterministic_zip(dict(reversed(list(contents.items()))), tmp_path / "two.zip")
    assert sha256_file(tmp_path / "one.zip") == sha256_file(tmp_path / "two.zip")
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert list(infos) == ["a.py", "b/x.txt", "wheelhouse/w-1-py3-none-any.whl"]
        assert infos["a.py"].compress_type == zipfile.ZIP_DEFLATED
        assert infos["wheelhouse/w-1-py3-none-any.whl"].compress_type == zipfile.ZIP_STORED
        assert archive.read("a.py") == contents["a.py"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def fake_wheel(cache: Path, filename: str, requires: list[str] = (), requires_python: str | None = None) -> Path:
    name, version = filename.split("-")[:2]
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Python: {requires_python}"] if requires_python else []
    lines += [f"Requires-Dist: {r}" for r in requires]
    path = cache / filename
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def test_cache_prefers_the_most_specific_windows_wheel(tmp_path):
    fake_wheel(tmp_path, "fast-1.0-py3-none-any.whl")
    fake_wheel(tmp_path, "fast-1.0-cp312-cp312-win_amd64.whl")
    fake_wheel(tmp_path, "fast-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    fake_wheel(tmp_path, "fast-1.1-cp312-cp312-win_amd64.whl")
    (requirement,) = parse_lock_text("Fast==1.0\n").requirements
    assert find_cached(requirement, "3.12", tmp_path).name == "fast-1.0-cp312-cp312-win_amd64.whl"
    assert find_cached(requirement, "3.13", tmp_path).name == "fast-1.0-py3-none-any.whl"
    (tmp_path / "fast-1.0-py3-none-any.whl").unlink()
    assert find_cached(requirement, "3.13", tmp_path) is None


def wheels_for(lock_text: str, cache: Path):
    lock = parse_lock_text(lock_text)
    return lock, fetch_wheels(lock.for_windows("3.12"), "3.12", cache)  # all cached: no pip


def test_extras_are_followed_through_dependencies(tmp_path):
    fake_wheel(tmp_path, "web-1.0-py3-none-any.whl", ['server[speed]>=2; extra == "standard"', "core>=1"])
    fake_wheel(tmp_path, "server-2.0-py3-none-any.whl", ['fastparse>=1; extra == "speed"', 'unixloop; sys_platform != "win32" and extra == "speed"'])
    fake_wheel(tmp_path, "core-1.0-py3-none-any.whl", ['wincolor; platform_system == "Windows"', 'oldshim; python_version < "3.11"'])
    fake_wheel(tmp_path, "wincolor-1.0-py3-none-any.whl")
    lock, wheels = wheels_for("web[standard]==1.0\nserver==2.0\ncore==1.0\nwincolor==1.0\n", tmp_path)
    with pytest.raises(IncompleteLockError) as info:
        check_complete(lock, wheels, "3.12")
    # web[standard] asks server[speed], which asks fastparse; unixloop and oldshim do not apply.
    assert info.value.problems == ["server 2.0 requires fastparse>=1 (on Windows, CPython 3.12); the lock has no fastparse"]

    fake_wheel(tmp_path, "fastparse-1.5-cp312-cp312-win_amd64.whl")
    lock, wheels = wheels_for("web[standard]==1.0\nserver==2.0\ncore==1.0\nwincolor==1.0\nfastparse==1.5\n", tmp_path)
    check_complete(lock, wheels, "3.12")


def test_requires_python_of_a_cached_wheel_is_checked(tmp_path):
    fake_wheel(tmp_path, "modern-1.0-py3-none-any.whl", requires_python=">=3.13")
    lock, wheels = wheels_for("modern==1.0\n", tmp_path)
    with pytest.raises(IncompleteLockError, match=r"modern 1\.0 requires Python >=3\.13, not 3\.12"):
        check_complete(lock, wheels, "3.12")
