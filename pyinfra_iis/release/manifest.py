"""The release manifest: what a release artifact contains, for the controller and the host.

Layout of an artifact (one zip, ``<app>-<version>.zip``) and of the release folder it unpacks to
on the host (``<root>\\releases\\<version>``; docs/design.md "Releases")::

    manifest.json        this model, as JSON (not listed in its own ``files``)
    requirements.txt     the Windows pins, one ``name[extras]==version`` per line, no markers:
                         install with ``python -m pip install --no-index --find-links wheelhouse
                         -r requirements.txt`` from the release folder
    app/...              the app folder (``uvicorn --app-dir <release>\\app``)
    wheelhouse/*.whl     win_amd64 wheels for the target CPython

The manifest is serialised with sorted keys and no build-time data (no timestamp, no host
name), so the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..models.types import PythonVersion, ReleaseVersion, Sha256Hex

MANIFEST_NAME = "manifest.json"
REQUIREMENTS_NAME = "requirements.txt"
APP_DIR = "app"
WHEELHOUSE_DIR = "wheelhouse"

_ENTRY_POINT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Frozen):
    """One file of the artifact: ``sha256`` (64 hex digits, lower-case) and ``size`` in bytes."""

    sha256: Sha256Hex
    size: int = Field(ge=0)


class ManifestRequirement(_Frozen):
    """One locked requirement that applies on Windows, and the wheel that satisfies it.

    ``wheel`` is the file name under ``wheelhouse/``; ``marker`` is the lock's marker text.
    """

    name: str
    version: str
    extras: tuple[str, ...] = ()
    marker: str | None = None
    wheel: str


class Manifest(_Frozen):
    """The release manifest (``manifest.json``).

    Attributes:
        format: manifest format version (1).
        app: the app name (the artifact is ``<app>-<version>.zip``).
        version: the release version, also the release folder name on the host.
        python: target CPython ``"3.X"``; the wheelhouse is for this version only.
        platform: wheel platform, always ``win_amd64``.
        entry_point: ASGI app as ``module:attribute`` inside ``app/`` (``main:app``), passed to uvicorn.
        requirements: the Windows requirements, sorted by canonical name.
        files: artifact path (``/``-separated) → :class:`FileEntry`, for every file but the manifest.
    """

    format: Literal[1] = 1
    app: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    version: ReleaseVersion
    python: PythonVersion
    platform: Literal["win_amd64"] = "win_amd64"
    entry_point: str
    requirements: tuple[ManifestRequirement, ...]
    files: dict[str, FileEntry]

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: str) -> str:
        if not _ENTRY_POINT_RE.match(value):
            raise ValueError(f"{value!r} is not 'module:attribute' (e.g. 'main:app')")
        return value

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, 2-space indent, trailing newline."""

        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        """Parse manifest JSON text. Raises ``pydantic.ValidationError``."""

        return cls.model_validate_json(text)

    def verify_tree(self, root: Path) -> list[str]:
        """Compare the files under ``root`` (an unpacked release) with :attr:`files`.

        Returns:
            one sentence per problem (missing file, wrong size or hash, unexpected file);
            empty when the tree matches. ``manifest.json`` itself is ignored.
        """

        problems = []
        present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        present.discard(MANIFEST_NAME)
        for name, entry in sorted(self.files.items()):
            path = root / name
            if name not in present:
                problems.append(f"{name} is missing")
                continue
            data = path.read_bytes()
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                problems.append(f"{name} does not match its SHA-256 in the manifest")
        problems.extend(f"{name} is not in the manifest" for name in sorted(present - set(self.files)))
        return problems


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file at ``path`` as lower-case hex, read in ``chunk``-byte blocks."""

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
