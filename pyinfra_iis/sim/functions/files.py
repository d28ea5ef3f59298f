"""File transfer functions, the simulator's twins of the module's file functions.

Contract (shared with the connector and the PowerShell module; keep them identical):

* ``Start-FileUpload -Json '{"path":..., "size":N, "sha256":"<hex>"}'`` → ``{"skipped":true}``
  when a file already exists at ``path`` with that size and SHA-256; otherwise creates missing
  parent folders, discards any previous open upload, opens the temp file
  ``<dir>\\.<name>.pyinfra-upload`` and prints ``{"skipped":false,"temp":"<windows path>"}``.
* upload data lines (``protocol.DATA_PREFIX``) → appended to the open temp file
  (:func:`add_chunk`); no reply. An error (no upload open, write failure) is remembered and
  reported by Complete-FileUpload.
* ``Complete-FileUpload -Json '{}'`` → checks the temp file's size and SHA-256 against Start's;
  on success moves it into place (replacing an existing file atomically) and prints
  ``{"path":...,"size":N,"sha256":"<hex>"}``; otherwise deletes the temp file and fails
  saying expected vs actual. The destination is never left partial.
* ``Stop-FileUpload -Json '{}'`` → discards an open upload (deletes the temp file); ``{}``.
* ``Get-FileHashInfo -Json '{"path":...}'`` → ``{"exists":bool,"size":N|null,"sha256":..|null}``
  (a folder counts as not existing: only files are hashed).
* ``Read-FileChunk -Json '{"path":...,"offset":N,"length":N}'`` → base64 of those bytes on
  one line (empty at end of file); fails when the file does not exist; length at most 16 MiB.

Error messages start with the function name, as the module's do. Start-FileUpload discards an
open upload before anything else (also when it then skips), like the module.

SHA-256 values are lower-case hex on output and compared case-insensitively on input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from . import SimFunctionError, session, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

UPLOAD_SUFFIX = ".pyinfra-upload"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HASH_BLOCK = 1 << 20
#: Largest range Read-FileChunk returns (bytes), as the module's $script:MaxReadChunkBytes.
MAX_READ_CHUNK = 16 * 1024 * 1024


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _host_path(host: "SimHost", payload: dict[str, Any], function: str) -> tuple[str, Path]:
    value = payload.get("path")
    if not isinstance(value, str):
        raise SimFunctionError(f'{function}: "path" must be an absolute Windows path, got {value!r}')
    try:
        return value, host.path(value)
    except SimPathError as exc:
        raise SimFunctionError(f"{function}: {exc}") from None


def _int(payload: dict[str, Any], key: str, function: str, maximum: int | None = None) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (maximum is not None and value > maximum):
        limit = f" and at most {maximum}" if maximum is not None else ""
        raise SimFunctionError(f'{function}: "{key}" must be an integer >= 0{limit}, got {value!r}')
    return value


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, lower-case hex, read in 1 MiB blocks."""

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _discard(state: dict[str, Any]) -> None:
    upload = state.pop("upload", None)
    if upload is None:
        return
    try:
        upload["handle"].close()
    finally:
        try:
            os.unlink(upload["temp"])
        except FileNotFoundError:
            pass


@sim_function("Start-FileUpload")
def start_file_upload(host: "SimHost", payload: dict[str, Any]) -> str:
    """Open an upload (or skip it when the file is already there); see the module docstring."""

    name = "Start-FileUpload"
    windows_path, target = _host_path(host, payload, name)
    size = _int(payload, "size", name)
    sha = payload.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise SimFunctionError(f'{name}: "sha256" must be 64 hex digits, got "{sha}"')
    sha = sha.lower()
    state = session()
    _discard(state)
    if target.is_dir():
        raise SimFunctionError(f"{name}: cannot upload to {windows_path}: it is a folder")
    if target.is_file() and target.stat().st_size == size and file_sha256(target) == sha:
        return _json({"skipped": True})
    state["orphan_chunks"] = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}{UPLOAD_SUFFIX}"
        handle = open(temp, "wb")
    except OSError as exc:
        raise SimFunctionError(f"{name}: cannot open an upload for {windows_path}: {exc.strerror}") from None
    temp_windows = host.windows_path(temp)
    state["upload"] = {"path": windows_path, "target": target, "temp": temp, "temp_windows": temp_windows,
                       "handle": handle, "size": size, "sha256": sha, "written": 0, "error": None}
    return _json({"skipped": False, "temp": temp_windows})


def add_chunk(state: dict[str, Any], data: bytes | None) -> None:
    """Append an upload data line's bytes to the worker's open upload.

    Never raises: an error (no upload open, write failure) is remembered for
    Complete-FileUpload, like the module's ``Add-FileUploadChunk``. ``data`` None stands for
    a data line that was not valid base64.
    """

    upload = state.get("upload")
    if upload is None:
        state["orphan_chunks"] = state.get("orphan_chunks", 0) + 1
        return
    if upload["error"]:
        return
    if data is None:
        upload["error"] = f"writing upload data to {upload['temp_windows']} failed after {upload['written']} bytes: invalid base64"
        return
    try:
        upload["handle"].write(data)
        upload["written"] += len(data)
    except OSError as exc:
        upload["error"] = (f"writing upload data to {upload['temp_windows']} failed after {upload['written']} bytes: "
                           f"{exc.strerror}")


@sim_function("Complete-FileUpload")
def complete_file_upload(host: "SimHost", payload: dict[str, Any]) -> str:
    """Verify the open upload and move it into place; see the module docstring."""

    name = "Complete-FileUpload"
    state = session()
    upload = state.get("upload")
    if upload is None:
        orphans = state.pop("orphan_chunks", 0)
        raise SimFunctionError(f"{name}: no upload is open (Start-FileUpload first); {orphans} data line(s) arrived "
                               "without one")
    try:
        upload["handle"].close()
        if upload["error"]:
            raise SimFunctionError(f"{name}: upload of {upload['path']} failed: {upload['error']}")
        actual_size = upload["temp"].stat().st_size
        actual_sha = file_sha256(upload["temp"])
        if actual_size != upload["size"] or actual_sha != upload["sha256"]:
            raise SimFunctionError(
                f"{name}: upload of {upload['path']} failed verification: expected {upload['size']} bytes with "
                f"SHA-256 {upload['sha256']}, received {actual_size} bytes with SHA-256 {actual_sha}"
            )
        os.replace(upload["temp"], upload["target"])
    except BaseException:
        _discard(state)
        raise
    state.pop("upload", None)
    return _json({"path": upload["path"], "size": actual_size, "sha256": actual_sha})


@sim_function("Stop-FileUpload")
def stop_file_upload(host: "SimHost", payload: dict[str, Any]) -> str:
    """Discard the open upload, if any."""

    state = session()
    _discard(state)
    state["orphan_chunks"] = 0
    return _json({})


@sim_function("Get-FileHashInfo")
def get_file_hash_info(host: "SimHost", payload: dict[str, Any]) -> str:
    """Size and SHA-256 of a file, or ``exists: false``."""

    _, target = _host_path(host, payload, "Get-FileHashInfo")
    if not target.is_file():
        return _json({"exists": False, "size": None, "sha256": None})
    return _json({"exists": True, "size": target.stat().st_size, "sha256": file_sha256(target)})


@sim_function("Read-FileChunk")
def read_file_chunk(host: "SimHost", payload: dict[str, Any]) -> str:
    """Base64 of ``length`` bytes at ``offset`` (empty at end of file)."""

    name = "Read-FileChunk"
    windows_path, target = _host_path(host, payload, name)
    offset = _int(payload, "offset", name)
    length = _int(payload, "length", name, maximum=MAX_READ_CHUNK)
    if not target.is_file():
        raise SimFunctionError(f"{name}: file not found: {windows_path}")
    with open(target, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    return base64.b64encode(data).decode("ascii")
