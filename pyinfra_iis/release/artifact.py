"""Build a release artifact: one deterministic zip with the app, a wheelhouse and a manifest.

Deterministic means the same app folder, lock, version and Python give byte-identical zips
(and so the same SHA-256, which the host side uses to skip an upload it already has): entries
sorted by name, every timestamp 1980-01-01 00:00:00 (the zip epoch), permissions fixed to
0644 with a Unix "made by", no directory entries, no extra fields, and a manifest without
build-time data. Wheels are stored (they are zips already); other files are deflated at level 9.
Identity holds across machines as long as zlib produces the same deflate stream (true for the
same zlib version; distributions shipping zlib-ng may differ).

Layout: see :mod:`pyinfra_iis.release.manifest`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import TypeAdapter

from ..models.types import PythonVersion, ReleaseVersion
from .lock import LockError, read_lock
from .manifest import APP_DIR, MANIFEST_NAME, REQUIREMENTS_NAME, WHEELHOUSE_DIR, FileEntry, Manifest, ManifestRequirement, sha256_file
from .wheelhouse import Wheel, check_complete, fetch_wheels

_RELEASE_VERSION = TypeAdapter(ReleaseVersion)
_PYTHON_VERSION = TypeAdapter(PythonVersion)

#: The zip epoch (zip cannot store earlier dates); used for every entry.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

#: Folders never shipped: caches, virtual environments, VCS metadata.
EXCLUDED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".idea", ".vscode"})

#: Files never shipped: bytecode and OS litter.
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})

#: Files refused outright: secrets belong in the inventory's app secrets (pool environment
#: variables, docs/design.md "Releases"), never in a zip that the pool identity can read.
REFUSED_FILES = re.compile(r"^\.env(\..*)?$")

# Windows file name rules (Microsoft docs, "Naming Files, Paths, and Namespaces").
_WINDOWS_FORBIDDEN = set('<>:"|?*\\')
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}


class AppError(Exception):
    """The app folder cannot be shipped: missing, no entry point module, a name Windows refuses, a symlink, a .env file."""


@dataclass(frozen=True)
class BuildResult:
    """A built artifact: ``path`` of the zip, its ``sha256`` (hex) and the ``manifest`` inside."""

    path: Path
    sha256: str
    manifest: Manifest


def build_release(
    app_dir: Path,
    version: str,
    python_version: str,
    out_dir: Path,
    *,
    name: str | None = None,
    lock_path: Path | None = None,
    entry_point: str = "main:app",
    cache_dir: Path | None = None,
) -> BuildResult:
    """Build ``<out_dir>/<name>-<version>.zip`` from ``app_dir``.

    Args:
        app_dir: the app folder (the example: ``examples/app``).
        version: release version (:data:`pyinfra_iis.models.types.ReleaseVersion`, e.g. ``1.4.2``).
        python_version: target CPython ``3.10``..``3.14`` (micro part allowed for markers).
        out_dir: where the zip is written (created if needed).
        name: app name; default the app folder's name.
        lock_path: the lock file; default ``<app_dir>/requirements.txt``.
        entry_point: ``module:attribute`` of the ASGI app, relative to ``app_dir``.
        cache_dir: wheel cache; default ``wheelhouse.default_cache_dir()``.

    Returns:
        a :class:`BuildResult`. An existing zip of the same name is replaced atomically.

    Raises:
        pydantic.ValidationError: invalid version, Python version, name or entry point.
        AppError: see :class:`AppError`.
        LockError, NoWindowsWheelError, IncompleteLockError, WheelhouseError: from the lock and
            wheelhouse steps (:mod:`.lock`, :mod:`.wheelhouse`).
    """

    app_dir = Path(app_dir)
    version = _RELEASE_VERSION.validate_python(version)
    python_version = _PYTHON_VERSION.validate_python(python_version)
    if not app_dir.is_dir():
        raise AppError(f"the app folder {app_dir} does not exist")
    name = name or app_dir.resolve().name
    app_files = collect_app_files(app_dir)
    _check_entry_point(app_files, entry_point)
    lock = read_lock(Path(lock_path) if lock_path else app_dir / "requirements.txt")
    requirements = lock.for_windows(python_version)
    if not requirements:
        raise LockError(f"{lock.path}: no requirement applies on Windows; the app needs at least uvicorn")
    check_uvicorn_floor(requirements, lock.path)
    wheels = fetch_wheels(requirements, python_version, cache_dir)
    check_complete(lock, wheels, python_version)

    contents: dict[str, bytes] = {f"{APP_DIR}/{arcname}": path.read_bytes() for arcname, path in app_files}
    contents.update({f"{WHEELHOUSE_DIR}/{w.filename}": w.path.read_bytes() for w in wheels})
    contents[REQUIREMENTS_NAME] = requirements_text(wheels).encode("utf-8")
    manifest = Manifest(
        app=name,
        version=version,
        python=".".join(python_version.split(".")[:2]),
        entry_point=entry_point,
        requirements=tuple(_manifest_requirement(w) for w in wheels),
        files={arc: FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data)) for arc, data in sorted(contents.items())},
    )
    contents[MANIFEST_NAME] = manifest.to_json().encode("utf-8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{version}.zip"
    write_deterministic_zip(contents, target)
    return BuildResult(target, sha256_file(target), manifest)


def check_uvicorn_floor(requirements: Sequence[Any], where: Any = None) -> None:
    """Refuse a lock without ``uvicorn`` at :data:`~.webconfig.UVICORN_FLOOR` or later.

    HttpPlatformHandler sends ``X-Forwarded-For: ip:port``; uvicorn before 0.45 takes the whole
    ``"203.0.113.5:51234"`` as the client host, and before 0.36 rejects the ``--loop`` value
    web.config uses.

    Raises:
        LockError: no uvicorn pin, or one below the floor.
    """

    from packaging.version import InvalidVersion, Version

    from .webconfig import UVICORN_FLOOR

    floor = ".".join(str(part) for part in UVICORN_FLOOR)
    pin = next((r for r in requirements if r.key == "uvicorn"), None)
    if pin is None:
        raise LockError(f"{where}: the lock has no uvicorn pin; web.config runs the app with uvicorn>={floor}")
    try:
        too_old = Version(pin.version).release[:2] < UVICORN_FLOOR
    except InvalidVersion:
        too_old = True
    if too_old:
        raise LockError(f"{where}: uvicorn=={pin.version} is older than {floor}: it takes HttpPlatformHandler's "
                        f"X-Forwarded-For 'ip:port' as the client host; pin uvicorn>={floor}")


def requirements_text(wheels: Sequence[Wheel]) -> str:
    """The root ``requirements.txt``: ``name[extras]==version --hash=sha256:<wheel>`` per line,
    sorted, no markers. The hash is the bundled wheel's, so the host installs with
    ``--require-hashes`` (pip's hash-checking mode) and nothing but these files can install."""

    return "".join(f"{w.requirement.pin} --hash=sha256:{sha256_file(w.path)}\n" for w in sorted(wheels, key=lambda w: w.requirement.key))


def _manifest_requirement(wheel: Wheel) -> ManifestRequirement:
    r = wheel.requirement
    return ManifestRequirement(name=r.name, version=r.version, extras=r.extras, marker=r.marker, wheel=wheel.filename)


def collect_app_files(app_dir: Path) -> list[tuple[str, Path]]:
    """List the files of ``app_dir`` to ship, as ``(relative posix name, path)``, sorted.

    Skips :data:`EXCLUDED_DIRS`, bytecode and OS litter.

    Raises:
        AppError: a symlink, a ``.env`` file, a name Windows refuses (``< > : " | ? * \\``,
            control characters, trailing dot or space, CON/PRN/AUX/NUL/COM1-9/LPT1-9), or two
            names equal ignoring case (Windows folders are case-insensitive).
    """

    files: list[tuple[str, Path]] = []
    for current, dirs, names in os.walk(app_dir, followlinks=False):
        base = Path(current)
        for entry in list(dirs):
            if (base / entry).is_symlink():
                raise AppError(f"{base / entry} is a symlink; a release ships regular files only")
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        for entry in sorted(names):
            path = base / entry
            if entry in EXCLUDED_FILES or entry.endswith(EXCLUDED_SUFFIXES):
                continue
            if path.is_symlink():
                raise AppError(f"{path} is a symlink; a release ships regular files only")
            if REFUSED_FILES.match(entry):
                raise AppError(f"{path}: secrets do not ship in a release; give them as app secrets in the inventory (they become application pool environment variables)")
            files.append((path.relative_to(app_dir).as_posix(), path))
    files.sort()
    _check_windows_names([arc for arc, _ in files])
    return files


def _check_windows_names(names: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        for segment in name.split("/"):
            bad = sorted(set(segment) & _WINDOWS_FORBIDDEN) + (["control characters"] if any(ord(c) < 32 for c in segment) else [])
            if bad:
                raise AppError(f"{name}: Windows refuses {' '.join(bad)} in file names")
            if segment[-1] in ". ":
                raise AppError(f"{name}: {segment!r} ends with a dot or a space, which Windows strips")
            if segment.split(".", 1)[0].upper() in _RESERVED:
                raise AppError(f"{name}: {segment!r} is a reserved device name on Windows")
        folded = name.casefold()
        if folded in seen:
            raise AppError(f"{seen[folded]} and {name} differ only in case; Windows cannot hold both")
        seen[folded] = name


def _check_entry_point(app_files: Sequence[tuple[str, Path]], entry_point: str) -> None:
    module = entry_point.partition(":")[0]
    candidates = {module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"}
    if not candidates & {arc for arc, _ in app_files}:
        raise AppError(f"entry point {entry_point!r}: the app folder has no {' or '.join(sorted(candidates))}")


def write_deterministic_zip(contents: dict[str, bytes], target: Path) -> None:
    """Write ``contents`` (archive name → bytes) to ``target`` deterministically (see module doc).

    The zip is written to a temporary file beside ``target`` and renamed over it, so a reader
    never sees a half-written artifact.
    """

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            for arcname in sorted(contents):
                info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
                info.create_system = 3  # Unix, so external_attr carries the permissions below
                info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
                stored = arcname.endswith(".whl")
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                archive.writestr(info, contents[arcname], compresslevel=None if stored else 9)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
