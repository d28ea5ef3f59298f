"""put/get through the worker against the fake protocol: chunking, skip, recovery, hashes."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from pyinfra_iis import protocol as wire
from pyinfra_iis.transport import files
from pyinfra_iis.transport.errors import FileTransferError

from test_transport_fakes import make_session


def test_chunk_sizes_fit_the_envelope() -> None:
    for kb in (150, 500, 8192):
        chunk = files.upload_chunk_size(kb)
        line = len(wire.encode_data(b"\0" * chunk))
        soap_stdin = (line + 2) // 3 * 4
        # at most 90 % of MaxEnvelopeSizekb: a Send right at the limit is refused (issue 15, item 9)
        assert soap_stdin + 4096 <= kb * 1024 * 0.9
        assert chunk % 3 == 0
    assert files.upload_chunk_size(500) > 230_000


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
def test_put_then_get_roundtrip_and_skip(tmp_path, size: int) -> None:
    host, session = make_session(max_envelope_kb=150)
    data = os.urandom(size)
    source = tmp_path / "src.bin"
    source.write_bytes(data)
    result = files.put(session, str(source), r"C:\app\f.bin")
    assert not result.skipped and result.sha256 == hashlib.sha256(data).hexdigest()
    assert host.files[r"C:\app\f.bin"] == data
    assert max(host.sent) <= (150 * 1024 - 4096) * 3 // 4
    requests = host.requests
    again = files.put(session, str(source), r"C:\app\f.bin")
    assert again.skipped and host.requests - requests == 2  # one step: Start-FileUpload
    target = tmp_path / "back.bin"
    files.get(session, r"C:\app\f.bin", str(target))
    assert target.read_bytes() == data


def test_put_file_like_and_unicode_names(tmp_path) -> None:
    host, session = make_session()
    content = "h\u00e9llo w\u00f6rld \u2603\n".encode("utf-8")
    files.put(session, io.BytesIO(content), "C:\\d\u00e9p\u00f4t\\f\u00efch\u00efer \u2603.txt")
    assert host.files["C:\\d\u00e9p\u00f4t\\f\u00efch\u00efer \u2603.txt"] == content
    out = io.BytesIO()
    files.get(session, "C:\\d\u00e9p\u00f4t\\f\u00efch\u00efer \u2603.txt", out)
    assert out.getvalue() == content


def test_put_non_seekable_stream() -> None:
    host, session = make_session()

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes):
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def read(self, n: int = -1) -> bytes:
            return self.inner.read(n)

    files.put(session, Pipe(b"abc" * 1000), r"C:\p.txt")
    assert host.files[r"C:\p.txt"] == b"abc" * 1000


def test_upload_restarted_once_when_the_worker_dies_midway(tmp_path) -> None:
    host, session = make_session(max_envelope_kb=150)
    data = os.urandom(1_000_000)
    (tmp_path / "a").write_bytes(data)
    session.start()
    sent = []

    def progress(n: int) -> None:
        sent.append(n)
        if len(sent) == 2:
            host.faults = ["kill"]  # the next step (a data line is not a step) dies

    # Kill fires on Complete-FileUpload: the new worker has no upload open → restart.
    result = files.put(session, str(tmp_path / "a"), r"C:\a", on_sent=progress)
    assert result.attempts == 2
    assert host.files[r"C:\a"] == data


def test_upload_restarted_once_after_drop_during_data(tmp_path) -> None:
    host, session = make_session(max_envelope_kb=150)
    data = os.urandom(600_000)
    (tmp_path / "a").write_bytes(data)
    session.start()
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            host.faults = ["drop"]

    result = files.put(session, str(tmp_path / "a"), r"C:\a", on_sent=progress)
    assert result.attempts == 2 and host.files[r"C:\a"] == data


def test_get_missing_file(tmp_path) -> None:
    host, session = make_session()
    with pytest.raises(FileTransferError, match="not found"):
        files.get(session, r"C:\nope", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    assert [p for p in os.listdir(tmp_path)] == []


def test_get_hash_mismatch_leaves_nothing(tmp_path, monkeypatch) -> None:
    host, session = make_session()
    host.files[r"C:\f"] = b"real data"
    original = host.files

    def corrupt(*args, **kwargs):
        host.files[r"C:\f"] = b"fake data"
        return old(*args, **kwargs)

    old = session.run
    monkeypatch.setattr(session, "run", lambda script, timeout=None: corrupt(script, timeout) if "Read-FileChunk" in script else old(script, timeout))
    with pytest.raises(FileTransferError, match="expected"):
        files.get(session, r"C:\f", str(tmp_path / "f"))
    assert os.listdir(tmp_path) == []
    assert original is host.files
