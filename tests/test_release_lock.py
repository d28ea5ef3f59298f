"""The lock file: exact pins only, markers evaluated for Windows (not for this Linux controller)."""

from __future__ import annotations

import pytest
from packaging.markers import Marker

from pyinfra_iis.release.lock import LockError, parse_lock_text, windows_environment
from pyinfra_iis.release.wheelhouse import target_tags

LOCK = """\
# comment
click==8.1.7
colorama==0.4.6 ; platform_system == "Windows"   # click needs it on Windows
uvloop==0.21.0 ; sys_platform != "win32"
Typing_Extensions==4.12.2 ; python_version < "3.13"
uvicorn[standard]==0.30.6
"""


def test_markers_are_evaluated_for_windows_not_for_the_controller():
    lock = parse_lock_text(LOCK)
    colorama = lock.by_key["colorama"]
    # On this (Linux) controller pip would drop colorama (pip #6117) ...
    assert Marker(colorama.marker).evaluate() is False
    # ... the release keeps it, and drops uvloop, which has no Windows build.
    names = [r.key for r in lock.for_windows("3.12")]
    assert names == ["click", "colorama", "typing-extensions", "uvicorn"]
    assert [r.key for r in lock.for_windows("3.13")] == ["click", "colorama", "uvicorn"]


def test_parsed_fields():
    lock = parse_lock_text(LOCK)
    uvicorn = lock.by_key["uvicorn"]
    assert (uvicorn.version, uvicorn.extras, uvicorn.line, uvicorn.pin) == ("0.30.6", ("standard",), 6, "uvicorn[standard]==0.30.6")
    assert lock.by_key["typing-extensions"].name == "Typing_Extensions"


def test_windows_environment():
    env = windows_environment("3.12")
    assert (env["sys_platform"], env["platform_system"], env["os_name"], env["platform_machine"]) == ("win32", "Windows", "nt", "AMD64")
    assert (env["python_version"], env["python_full_version"]) == ("3.12", "3.12.0")
    assert windows_environment("3.13.1", extra="standard")["python_full_version"] == "3.13.1"
    assert Marker('extra == "standard" and sys_platform == "win32"').evaluate(windows_environment("3.12", "standard"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fastapi>=0.110\n", "not pinned exactly"),
        ("fastapi\n", "not pinned exactly"),
        ("fastapi==0.*\n", "not pinned exactly"),
        ("fastapi==1.0,!=1.1\n", "not pinned exactly"),
        ("-r other.txt\n", "options such as '-r'"),
        ("--hash=sha256:" + "0" * 64 + "\n", "must follow the pin"),
        ("fastapi==1.0 --hash=sha256:00\n", "not a SHA-256 hash option"),
        ("fastapi @ https://example.invalid/f.whl\n", "given by URL"),
        ("click==8.1.7\nClick==8.1.8\n", "already pinned on line 1"),
        ("not a requirement!\n", "not a requirement"),
    ],
)
def test_refused_lines(text, message):
    with pytest.raises(LockError, match=message) as info:
        parse_lock_text(text)
    assert "<lock>:" in str(info.value)  # file and line are named


def test_target_tags_prefer_the_specific_windows_wheel():
    tags = [str(t) for t in target_tags("3.12")]
    assert tags[0] == "cp312-cp312-win_amd64"
    assert "cp312-abi3-win_amd64" in tags and "py3-none-any" in tags
    assert tags.index("cp312-cp312-win_amd64") < tags.index("py3-none-any")
    assert not any("linux" in t or "macosx" in t for t in tags)


def test_pip_hash_options_are_read_with_continuations():  # issue 12, supply chain
    digest_a, digest_b = "a" * 64, "B" * 64
    lock = parse_lock_text(f"fastapi==1.0 \\\n    --hash=sha256:{digest_a} \\\n    --hash=sha256:{digest_b}\nclick==8.1.7\n")
    fastapi, click = lock.requirements
    assert (fastapi.pin, fastapi.hashes, fastapi.line) == ("fastapi==1.0", (digest_a, digest_b.lower()), 1)
    assert (click.pin, click.hashes, click.line) == ("click==8.1.7", (), 4)


def test_a_cached_wheel_the_lock_does_not_vouch_for_is_not_used(tmp_path):  # issue 12, supply chain
    import hashlib

    from pyinfra_iis.release.wheelhouse import find_cached

    wheel = tmp_path / "click-8.1.7-py3-none-any.whl"
    wheel.write_bytes(b"tampered")
    good = parse_lock_text(f"click==8.1.7 --hash=sha256:{hashlib.sha256(b'tampered').hexdigest()}\n").requirements[0]
    bad = parse_lock_text(f"click==8.1.7 --hash=sha256:{'0' * 64}\n").requirements[0]
    assert find_cached(good, "3.12", tmp_path) == wheel
    assert find_cached(bad, "3.12", tmp_path) is None


def test_a_hashed_lock_is_downloaded_in_pip_hash_checking_mode(tmp_path, monkeypatch):  # issue 12, supply chain
    import subprocess

    from pyinfra_iis.release import wheelhouse

    seen = {}

    def fake_run(command, **kwargs):
        seen["command"] = command
        listing = command[command.index("-r") + 1]
        seen["listing"] = open(listing, encoding="utf-8").read()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(wheelhouse.subprocess, "run", fake_run)
    requirement = parse_lock_text(f"click==8.1.7 --hash=sha256:{'c' * 64}\n").requirements[0]
    wheelhouse._pip_download([requirement], "3.12", tmp_path)
    assert "--require-hashes" in seen["command"] and "--only-binary=:all:" in seen["command"]
    assert seen["listing"] == f"click==8.1.7 --hash=sha256:{'c' * 64}\n"
