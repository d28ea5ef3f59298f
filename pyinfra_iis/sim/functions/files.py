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
  one line (empty at end of file); fails when the file does not exist.

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


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _host_path(host: "SimHost", payload: dict[str, Any], key: str = "path") -> tuple[str, Path]:
    value = payload.get(key)
    if not isinstance(value, str):
        raise SimFunctionError(f"'{key}' must be a Windows path string")
    try:
        return value, host.path(value)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SimFunctionError(f"'{key}' must be a non-negative integer")
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

    windows_path, target = _host_path(host, payload)
    size = _int(payload, "size")
    sha = payload.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise SimFunctionError("'sha256' must be 64 hexadecimal digits")
    sha = sha.lower()
    if target.is_file() and target.stat().st_size == size and file_sha256(target) == sha:
        return _json({"skipped": True})
    if target.is_dir():
        raise SimFunctionError(f"cannot upload to {windows_path}: it is a folder")
    state = session()
    _discard(state)
    state.pop("upload_error", None)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}{UPLOAD_SUFFIX}"
        handle = open(temp, "wb")
    except OSError as exc:
        raise SimFunctionError(f"cannot open an upload for {windows_path}: {exc.strerror}") from None
    state["upload"] = {"path": windows_path, "target": target, "temp": temp, "handle": handle, "size": size,
                       "sha256": sha, "error": None}
    return _json({"skipped": False, "temp": host.windows_path(temp)})


def add_chunk(state: dict[str, Any], data: bytes) -> None:
    """Append an upload data line's bytes to the worker's open upload.

    Never raises: an error (no upload open, write failure) is remembered for
    Complete-FileUpload, like the module's ``Add-FileUploadChunk``.
    """

    upload = state.get("upload")
    if upload is None:
        state.setdefault("upload_error", "upload data arrived while no upload was open")
        return
    if upload["error"]:
        return
    try:
        upload["handle"].write(data)
    except OSError as exc:
        upload["error"] = f"write to {upload['path']} failed: {exc.strerror}"


@sim_function("Complete-FileUpload")
def complete_file_upload(host: "SimHost", payload: dict[str, Any]) -> str:
    """Verify the open upload and move it into place; see the module docstring."""

    state = session()
    upload = state.get("upload")
    if upload is None:
        remembered = state.pop("upload_error", None)
        raise SimFunctionError(remembered or "no upload is open (call Start-FileUpload first)")
    try:
        upload["handle"].close()
        if upload["error"]:
            raise SimFunctionError(upload["error"])
        actual_size = upload["temp"].stat().st_size
        actual_sha = file_sha256(upload["temp"])
        if actual_size != upload["size"] or actual_sha != upload["sha256"]:
            raise SimFunctionError(
                f"upload of {upload['path']} failed verification: expected {upload['size']} bytes with SHA-256 "
                f"{upload['sha256']}, got {actual_size} bytes with SHA-256 {actual_sha}"
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
    state.pop("upload_error", None)
    return _json({})


@sim_function("Get-FileHashInfo")
def get_file_hash_info(host: "SimHost", payload: dict[str, Any]) -> str:
    """Size and SHA-256 of a file, or ``exists: false``."""

    _, target = _host_path(host, payload)
    if not target.is_file():
        return _json({"exists": False, "size": None, "sha256": None})
    return _json({"exists": True, "size": target.stat().st_size, "sha256": file_sha256(target)})


@sim_function("Read-FileChunk")
def read_file_chunk(host: "SimHost", payload: dict[str, Any]) -> str:
    """Base64 of ``length`` bytes at ``offset`` (empty at end of file)."""

    windows_path, target = _host_path(host, payload)
    offset = _int(payload, "offset")
    length = _int(payload, "length")
    if not target.is_file():
        raise SimFunctionError(f"Cannot find path '{windows_path}' because it does not exist.")
    with open(target, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    return base64.b64encode(data).decode("ascii")
