"""The app's lock file, read for a Windows target.

A lock is a requirements file with one exact pin per line (``name==version``, optional extras
and an environment marker), resolved for the *target* (Windows, win_amd64, one CPython
version), not for the controller. pip evaluates markers for the machine running pip (pip
#6117; docs/field-facts.md "Python on Windows Server"), so a lock produced on Linux silently lacks
``colorama`` (click needs it on Windows: ``colorama; platform_system == "Windows"``). This
module evaluates every marker against :func:`windows_environment` with ``packaging.markers``.

Accepted syntax: blank lines, ``#`` comments (whole-line or trailing), and
``name[extra,...]==version ; marker`` optionally followed by pip's hash options
``--hash=sha256:<hex>`` (several allowed, lines continued with a trailing backslash, as ``pip-compile
--generate-hashes`` and ``uv pip compile --generate-hashes`` write them). With hashes the
wheelhouse is downloaded with ``--require-hashes`` and cached wheels are checked against them.
Other options (``-r``, ``-e``...), URLs and anything but ``==`` are refused: the release must be
reproducible from the lock alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

#: The only platform tag a release targets: 64-bit Windows (Windows Server is x64 only).
PLATFORM = "win_amd64"

#: ``platform.version()`` / ``platform.release()`` of Windows Server 2022 (build 20348), the host
#: the simulator models (docs/design.md "The simulator"). Markers rarely use them.
_WINDOWS_PLATFORM_VERSION = "10.0.20348"
_WINDOWS_PLATFORM_RELEASE = "2022Server"


class LockError(Exception):
    """The lock file cannot be used: unreadable, a line that is not an exact pin, a duplicate."""


@dataclass(frozen=True)
class LockedRequirement:
    """One pinned line of the lock.

    Attributes:
        name: the project name as written (``typing_extensions``).
        key: the canonical name (PEP 503: ``typing-extensions``), used for comparisons.
        version: the pinned version text (``4.12.2``).
        extras: extras asked for on this line (``("standard",)``), sorted.
        marker: the environment marker text, or ``None``.
        line: the 1-based line number in the lock file (for error messages).
        hashes: accepted SHA-256 digests (lowercase hex) of the wheel, from ``--hash``; empty
            when the lock gives none.
    """

    name: str
    key: NormalizedName
    version: str
    extras: tuple[str, ...] = ()
    marker: str | None = None
    line: int = 0
    hashes: tuple[str, ...] = ()

    @property
    def pin(self) -> str:
        """``name[extras]==version`` without the marker (what ``pip download`` is given)."""

        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"

    def applies_to(self, python_version: str) -> bool:
        """Whether the marker holds on Windows with ``python_version`` (``"3.12"``); no marker → True."""

        if self.marker is None:
            return True
        return Marker(self.marker).evaluate(windows_environment(python_version))


@dataclass(frozen=True)
class Lock:
    """A parsed lock file: ``requirements`` in file order, ``path`` it came from (or None)."""

    requirements: tuple[LockedRequirement, ...]
    path: Path | None = None
    by_key: dict[str, LockedRequirement] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_key", {r.key: r for r in self.requirements})

    def for_windows(self, python_version: str) -> list[LockedRequirement]:
        """The requirements whose markers hold on Windows with ``python_version``, sorted by key."""

        return sorted((r for r in self.requirements if r.applies_to(python_version)), key=lambda r: r.key)


def windows_environment(python_version: str, extra: str = "") -> dict[str, str]:
    """Return the PEP 508 marker environment of CPython ``python_version`` on Windows x64.

    Args:
        python_version: ``"3.12"`` or ``"3.12.7"``; a missing micro version is taken as ``0``
            (so ``python_full_version >= "3.12.1"`` is false for ``"3.12"``: give the micro
            version if the lock depends on it).
        extra: the extra being evaluated (``""`` outside extras).

    Returns:
        a mapping for ``packaging.markers.Marker.evaluate``: ``os_name "nt"``, ``sys_platform
        "win32"``, ``platform_system "Windows"``, ``platform_machine "AMD64"``, CPython.
    """

    parts = python_version.split(".")
    full = ".".join((parts + ["0"])[:3])
    return {
        "os_name": "nt",
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "platform_release": _WINDOWS_PLATFORM_RELEASE,
        "platform_version": _WINDOWS_PLATFORM_VERSION,
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "implementation_version": full,
        "python_version": ".".join(parts[:2]),
        "python_full_version": full,
        "extra": extra,
    }


def parse_lock_text(text: str, path: Path | None = None) -> Lock:
    """Parse the text of a lock file.

    Args:
        text: the file's content.
        path: where it came from, only for error messages.

    Raises:
        LockError: a line is an option, a URL, not exactly pinned with ``==`` (no wildcard), not
            a valid requirement, or names a project twice. The message gives file and line.
    """

    where = str(path) if path else "<lock>"
    requirements: list[LockedRequirement] = []
    seen: dict[str, int] = {}
    for number, raw in _logical_lines(text):
        line, hashes = _split_hashes(_strip_comment(raw).strip(), f"{where}:{number}")
        if not line:
            continue
        requirement = _parse_line(line, f"{where}:{number}")
        key = canonicalize_name(requirement.name)
        if key in seen:
            raise LockError(f"{where}:{number}: {requirement.name} is already pinned on line {seen[key]}; a lock pins each project once")
        seen[key] = number
        (specifier,) = requirement.specifier
        requirements.append(
            LockedRequirement(
                name=requirement.name,
                key=key,
                version=specifier.version,
                extras=tuple(sorted(requirement.extras)),
                marker=str(requirement.marker) if requirement.marker else None,
                line=number,
                hashes=hashes,
            )
        )
    return Lock(tuple(requirements), path)


def read_lock(path: Path) -> Lock:
    """Read and parse the lock file at ``path`` (UTF-8).

    Raises:
        LockError: the file is missing or unreadable, or :func:`parse_lock_text` refuses it.
    """

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LockError(f"cannot read the lock file {path}: {exc.strerror or exc}") from None
    return parse_lock_text(text, Path(path))


_COMMENT_RE = re.compile(r"(^|\s)#.*$")
_HASH_RE = re.compile(r"^--hash=sha256:([0-9a-fA-F]{64})$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """``(first line number, text)`` with lines ending in a backslash joined (pip's syntax)."""

    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = _strip_comment(raw).rstrip()
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((start, pending + raw))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def _split_hashes(line: str, where: str) -> tuple[str, tuple[str, ...]]:
    """Split ``name==1.0 --hash=sha256:<hex> ...`` into the requirement and its digests."""

    parts = line.split()
    options = [p for p in parts if p.startswith("--hash")]
    for option in options:
        if not _HASH_RE.match(option):
            raise LockError(f"{where}: {option!r} is not a SHA-256 hash option (--hash=sha256:<64 hex digits>)")
    if options and parts.index(options[0]) == 0:
        raise LockError(f"{where}: a --hash option must follow the pin it belongs to")
    requirement = " ".join(p for p in parts if not p.startswith("--hash"))
    return requirement, tuple(sorted({_HASH_RE.match(o).group(1).lower() for o in options}))


def _strip_comment(line: str) -> str:
    return _COMMENT_RE.sub("", line)


def _parse_line(line: str, where: str) -> Requirement:
    if line.startswith("-"):
        raise LockError(f"{where}: options such as {line.split()[0]!r} are not supported in a release lock; write one 'name==version' per line")
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise LockError(f"{where}: not a requirement: {exc}") from None
    if requirement.url:
        raise LockError(f"{where}: {requirement.name} is given by URL; a release lock pins versions from the index (name==version)")
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
        raise LockError(f"{where}: {requirement.name} is not pinned exactly (write {requirement.name}==<version>, got {str(requirement.specifier) or 'no version'!r})")
    try:
        Version(specifiers[0].version)
    except InvalidVersion:
        raise LockError(f"{where}: {requirement.name}=={specifiers[0].version} is not a valid version") from None
    return requirement
