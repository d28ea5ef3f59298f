"""File transfer through the worker: streamed, chunked to the envelope limit, SHA-256 verified.

Remote functions used (contract in ``notes``; implemented by the module and the simulator):
``Start-FileUpload``, data lines (:func:`pyinfra_iis.protocol.encode_data`),
``Complete-FileUpload``, ``Stop-FileUpload``, ``Get-FileHashInfo``, ``Read-FileChunk``.
Calls are built only with :func:`pyinfra_iis.protocol.remote_call`.

Sizing: a data line is ``"+" + base64(chunk) + "\\n"`` and the SOAP Send carries base64 of
that line, so one chunk of ``c`` bytes costs about ``16/9 × c`` bytes of envelope. With the
host's ``MaxEnvelopeSizekb`` ``E`` (500 by default, 150 on old hosts; docs/field-facts.md) a chunk is
``((E × 1024 − 4096) × 3/4 − 2) × 3/4`` bytes (≈ 9/16), rounded down to a multiple of 3
(no base64 padding).
Downloads are sized to pywinrm's fixed 153600-byte MaxEnvelopeSize of a Receive response:
the chunk travels base64 inside a base64 JSON reply inside base64 SOAP (≈ 64/27 ×).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Callable

from .. import protocol as wire
from .errors import FileTransferError, Recoverable
from .worker import ENVELOPE_OVERHEAD, PreparedStdin, StepResult, WorkerSession, max_stdin_bytes

logger = logging.getLogger(__name__)

#: pywinrm's hard-coded MaxEnvelopeSize header (bytes), the limit of one Receive response.
RECEIVE_ENVELOPE_BYTES = 153600

#: Bytes read from a local file at a time while hashing.
HASH_BLOCK = 1024 * 1024


def upload_chunk_size(max_envelope_kb: int) -> int:
    """Return the bytes of file data per data line for a host's ``MaxEnvelopeSizekb``."""

    line = max_stdin_bytes(max_envelope_kb) - 2  # "+" and "\n" around the base64
    size = line * 3 // 4
    return max(3, size - size % 3)


def download_chunk_size() -> int:
    """Return the bytes asked per ``Read-FileChunk`` so one reply fits one Receive."""

    size = (RECEIVE_ENVELOPE_BYTES - ENVELOPE_OVERHEAD) * 27 // 64
    return size - size % 3


@dataclass
class TransferResult:
    """Outcome of a put or get.

    Attributes:
        skipped: nothing was sent (upload: the remote file already had this SHA-256).
        size: bytes of the file.
        sha256: hex digest of the file.
        attempts: 1, or 2 when the transfer was restarted after a lost worker/connection.
    """

    skipped: bool
    size: int
    sha256: str
    attempts: int = 1


def _call(session: WorkerSession, function: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any] | str:
    result = session.run(wire.remote_call(function, payload).get_raw_value(), timeout=timeout)
    return _parse(result, function)


def _parse(result: StepResult, function: str) -> dict[str, Any] | str:
    if result.rc != 0:
        raise FileTransferError(f"{function} failed (rc {result.rc}): {result.stderr.strip() or result.stdout.strip()}")
    text = result.stdout.strip()
    if function == "Read-FileChunk":
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise FileTransferError(f"{function} returned no JSON: {text[:200]!r}") from None


def _open_source(source: str | os.PathLike | IO[bytes]) -> tuple[BinaryIO, bool]:
    """Return a seekable binary stream for ``source`` and whether we must close it."""

    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    stream: Any = source
    if hasattr(stream, "seekable") and stream.seekable():
        return stream, False
    # A pipe or similar: spool to disk once (memory only for small data).
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    while True:
        block = stream.read(HASH_BLOCK)
        if not block:
            break
        spool.write(block.encode("utf-8") if isinstance(block, str) else block)
    spool.seek(0)
    return spool, True  # type: ignore[return-value]


def _hash_stream(stream: BinaryIO, start: int) -> tuple[int, str]:
    stream.seek(start)
    digest = hashlib.sha256()
    size = 0
    while True:
        block = stream.read(HASH_BLOCK)
        if not block:
            break
        if isinstance(block, str):
            block = block.encode("utf-8")
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def put(
    session: WorkerSession,
    source: str | os.PathLike | IO[bytes],
    remote_path: str,
    *,
    chunk_size: int | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> TransferResult:
    """Upload ``source`` (a local path or a binary file-like object) to ``remote_path``.

    The file is read twice in blocks (hash, then send), never held whole in memory. When
    the remote file already has the same SHA-256 and size nothing else is sent. A lost
    worker, shell or connection during the upload restarts it once from the beginning.

    Args:
        session: a started or startable :class:`WorkerSession`.
        source: path, or file-like object (text streams are encoded as UTF-8).
        remote_path: Windows path of the destination; parents are created by the host.
        chunk_size: bytes per data line; default :func:`upload_chunk_size` of the session's
            ``max_envelope_kb``.
        on_sent: called with the byte count after each data line (progress).

    Raises:
        FileTransferError: the host refused the upload or the SHA-256 did not match.
        TransportError: the transport failed (after one restart for recoverable errors).
    """

    chunk_size = chunk_size or upload_chunk_size(session.max_envelope_kb)
    chunk_size = max(3, chunk_size - chunk_size % 3)
    stream, close = _open_source(source)
    try:
        start = stream.tell() if hasattr(stream, "tell") else 0
        size, sha256 = _hash_stream(stream, start)
        for attempt in (1, 2):
            try:
                skipped = _put_once(session, stream, start, remote_path, size, sha256, chunk_size, on_sent)
                return TransferResult(skipped, size, sha256, attempt)
            except Recoverable as exc:
                if attempt == 2:
                    raise
                logger.warning("%s: upload of %s interrupted (%s); restarting it once", session.endpoint, remote_path, exc)
        raise AssertionError("unreachable")
    finally:
        if close:
            stream.close()


def _put_once(
    session: WorkerSession,
    stream: BinaryIO,
    start: int,
    remote_path: str,
    size: int,
    sha256: str,
    chunk_size: int,
    on_sent: Callable[[int], None] | None,
) -> bool:
    opened = _call(session, "Start-FileUpload", {"path": remote_path, "size": size, "sha256": sha256})
    assert isinstance(opened, dict)
    if opened.get("skipped"):
        return True
    generation = session.generation
    stream.seek(start)

    def prepare() -> tuple[PreparedStdin, int] | None:
        block = stream.read(chunk_size)
        if not block:
            return None
        if isinstance(block, str):
            block = block.encode("utf-8")
        return session.prepare_stdin(wire.encode_data(block)), len(block)

    try:
        # Read and encode the next chunk while the host works on the current one: the
        # two base64 passes are a large part of the controller's cost per byte.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyinfra-iis-upload") as pool:
            upcoming = pool.submit(prepare)
            while True:
                item = upcoming.result()
                if item is None:
                    break
                upcoming = pool.submit(prepare)
                session.send_prepared(item[0])
                if on_sent:
                    on_sent(item[1])
    except Recoverable:
        raise
    except BaseException:
        # A local failure (read error, interrupt): discard the remote temp file.
        try:
            session.run(wire.remote_call("Stop-FileUpload", {}).get_raw_value())
        except Exception:  # noqa: BLE001 - best effort, the original error matters
            pass
        raise
    result = session.run(wire.remote_call("Complete-FileUpload", {}).get_raw_value())
    if session.generation != generation:
        # Complete ran on a rebuilt worker that never saw the data: start again.
        raise Recoverable(f"{session.endpoint}: the worker was replaced during the upload")
    done = _parse(result, "Complete-FileUpload")
    if done.get("sha256") != sha256 or done.get("size") != size:
        raise FileTransferError(f"upload of {remote_path}: the host reports {done.get('size')} bytes / {done.get('sha256')}, expected {size} / {sha256}")
    return False


def get(
    session: WorkerSession,
    remote_path: str,
    destination: str | os.PathLike | IO[bytes],
    *,
    chunk_size: int | None = None,
) -> TransferResult:
    """Download ``remote_path`` into ``destination`` (a local path or a binary file-like).

    Data goes to a temporary file beside a path destination (or in the temp folder for a
    file-like one), is verified against the host's SHA-256, and only then moved into place
    (or copied into the file-like object).

    Args:
        chunk_size: bytes per ``Read-FileChunk``; default :func:`download_chunk_size`.

    Raises:
        FileTransferError: the remote file does not exist, changed during the download, or the
            SHA-256 did not match.
        TransportError: the transport failed.
    """

    chunk_size = chunk_size or download_chunk_size()
    info = _call(session, "Get-FileHashInfo", {"path": remote_path})
    assert isinstance(info, dict)
    if not info.get("exists"):
        raise FileTransferError(f"remote file not found: {remote_path}")
    size, expected = int(info["size"]), str(info["sha256"]).lower()
    is_path = isinstance(destination, (str, os.PathLike))
    folder = os.path.dirname(os.path.abspath(destination)) if is_path else None  # type: ignore[arg-type]
    handle, temp_path = tempfile.mkstemp(prefix=".pyinfra-iis-", suffix=".part", dir=folder)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as temp:
            offset = 0
            while offset < size:
                text = _call(session, "Read-FileChunk", {"path": remote_path, "offset": offset, "length": min(chunk_size, size - offset)})
                assert isinstance(text, str)
                block = base64.b64decode(text) if text else b""
                if not block:
                    break
                digest.update(block)
                temp.write(block)
                offset += len(block)
        if offset != size or digest.hexdigest() != expected:
            raise FileTransferError(f"download of {remote_path}: got {offset} bytes / {digest.hexdigest()}, expected {size} / {expected}")
        if is_path:
            os.replace(temp_path, destination)  # type: ignore[arg-type]
        else:
            with open(temp_path, "rb") as temp:
                shutil.copyfileobj(temp, destination)  # type: ignore[arg-type]
        return TransferResult(False, size, expected)
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
