"""The wheelhouse: Windows wheels of every locked requirement, fetched once and checked.

Wheels are fetched on the controller with ``pip download --no-deps --only-binary=:all:
--platform win_amd64 --python-version 3.X --implementation cp`` (docs/field-facts.md "Python on Windows
Server"): the host installs them offline (``pip install --no-index --find-links``), so nothing
is compiled there and nothing is fetched from the internet by a web server. ``--no-deps``
because pip would resolve dependencies with the *controller's* markers (pip #6117); instead
:func:`check_complete` reads each wheel's ``METADATA`` and evaluates ``Requires-Dist`` for
Windows (``lock.windows_environment``) with the extras asked for, and reports everything the
lock lacks in one error.

Downloaded wheels are kept in a cache folder (default ``~/.cache/pyinfra-iis/wheels``, or
``$XDG_CACHE_HOME/pyinfra-iis/wheels``), so repeated builds run no pip at all.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .lock import PLATFORM, Lock, LockedRequirement, windows_environment
from .manifest import sha256_file

#: Upper bound for one ``pip download`` run, seconds. pip's own network timeout (15 s per
#: request, 5 retries) normally ends a stuck run far earlier; this only bounds the worst case.
PIP_TIMEOUT = 900


class WheelhouseError(Exception):
    """A wheelhouse cannot be built (pip failed for a reason other than a missing wheel)."""


class NoWindowsWheelError(WheelhouseError):
    """A locked requirement has no wheel for win_amd64 and the target CPython.

    Attributes:
        package, version, platform, python: what was asked for (``python`` like ``"3.12"``).
    """

    def __init__(self, package: str, version: str, platform: str, python: str):
        self.package, self.version, self.platform, self.python = package, version, platform, python
        super().__init__(
            f"no wheel of {package} {version} for {platform} and CPython {python} on the package index "
            f"(pip download --only-binary=:all: --platform {platform} --python-version {python} --implementation cp "
            f"found none): the project publishes no Windows wheel for this Python (only an sdist, or wheels for "
            f"other platforms), or its Requires-Python excludes {python}. Pin a version that has one, or drop it "
            f"for Windows with a marker such as '; sys_platform != \"win32\"'. (pip says the same when the index "
            f"lists no versions at all, e.g. an unreachable index without retries, or a pip constraint file that excludes the pin.)"
        )


class IncompleteLockError(WheelhouseError):
    """The lock lacks dependencies (or pins versions) that the wheels require on Windows.

    Attributes:
        problems: one sentence per problem, e.g. ``"fastapi 0.115.0 requires starlette<0.42,>=0.40
            (on Windows, CPython 3.12); the lock has no starlette"``.
    """

    def __init__(self, problems: Sequence[str], python: str):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the lock is incomplete for Windows (win_amd64, CPython {python}):\n{lines}")


@dataclass(frozen=True)
class Wheel:
    """A wheel in the cache for one locked requirement.

    Attributes:
        requirement: the lock line it satisfies.
        path: the wheel file in the cache (its name is the standard wheel file name).
    """

    requirement: LockedRequirement
    path: Path

    @property
    def filename(self) -> str:
        """The wheel's file name, e.g. ``pydantic_core-2.27.2-cp312-cp312-win_amd64.whl``."""

        return self.path.name


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pyinfra-iis/wheels`` or ``~/.cache/pyinfra-iis/wheels``."""

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyinfra-iis" / "wheels"


def target_tags(python_version: str) -> list[Tag]:
    """Wheel tags CPython ``python_version`` accepts on win_amd64, most preferred first.

    Args:
        python_version: ``"3.12"`` or ``"3.12.7"``.
    """

    major, minor = (int(p) for p in python_version.split(".")[:2])
    abi = f"cp{major}{minor}"
    specific = cpython_tags((major, minor), abis=[abi, "abi3", "none"], platforms=[PLATFORM])
    generic = compatible_tags((major, minor), interpreter=abi, platforms=[PLATFORM])
    return list(dict.fromkeys([*specific, *generic]))


def find_cached(requirement: LockedRequirement, python_version: str, cache_dir: Path) -> Path | None:
    """Return the most specific cached wheel for ``requirement`` usable on the target, or None."""

    if not cache_dir.is_dir():
        return None
    ranks = {tag: rank for rank, tag in enumerate(target_tags(python_version))}
    wanted = Version(requirement.version)
    best: tuple[int, str, Path] | None = None
    for path in cache_dir.glob("*.whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if name != requirement.key or version != wanted:
            continue
        if requirement.hashes and sha256_file(path) not in requirement.hashes:
            continue  # a cached file the lock does not vouch for is never used (it is downloaded again)
        rank = min((ranks[t] for t in tags if t in ranks), default=None)
        if rank is not None and (best is None or (rank, path.name) < best[:2]):
            best = (rank, path.name, path)
    return best[2] if best else None


def fetch_wheels(
    requirements: Iterable[LockedRequirement],
    python_version: str,
    cache_dir: Path | None = None,
) -> list[Wheel]:
    """Return a cached win_amd64 wheel for each requirement, downloading the missing ones.

    Args:
        requirements: the lock lines that apply on Windows (``Lock.for_windows``).
        python_version: target CPython, ``"3.12"`` (a micro part is ignored for tags).
        cache_dir: wheel cache folder; default :func:`default_cache_dir`. Created if needed.

    Returns:
        one :class:`Wheel` per requirement, in the order given.

    Raises:
        NoWindowsWheelError: a requirement has no usable wheel on the index (the first one found).
        WheelhouseError: pip failed for another reason (network, index); its last output lines
            are in the message.
    """

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    requirements = list(requirements)
    missing = [r for r in requirements if find_cached(r, python_version, cache) is None]
    if missing:
        result = _pip_download(missing, python_version, cache)
        if result.returncode != 0:
            _explain_failure(missing, python_version, cache, result)
    wheels = []
    for requirement in requirements:
        path = find_cached(requirement, python_version, cache)
        if path is None:  # pip said it succeeded but saved something else (e.g. a different tag)
            raise NoWindowsWheelError(requirement.name, requirement.version, PLATFORM, _minor(python_version))
        wheels.append(Wheel(requirement, path))
    return wheels


def _minor(python_version: str) -> str:
    return ".".join(python_version.split(".")[:2])


def _pip_download(requirements: Sequence[LockedRequirement], python_version: str, cache: Path) -> subprocess.CompletedProcess:
    """Run one ``pip download`` for ``requirements`` into a temporary folder, then move the wheels into ``cache``."""

    with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
        hashed = all(r.hashes for r in requirements)
        pins = [r.pin for r in requirements]
        if hashed:
            # --require-hashes takes the hashes from a requirements file (pip's "hash-checking mode").
            listing = Path(tmp) / "requirements.txt"
            listing.write_text("".join(f"{r.pin} " + " ".join(f"--hash=sha256:{h}" for h in r.hashes) + "\n" for r in requirements), encoding="utf-8")
            pins = ["--require-hashes", "-r", str(listing)]
        command = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:",
            "--platform", PLATFORM,
            "--python-version", _minor(python_version),
            "--implementation", "cp",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--dest", tmp,
            *pins,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise WheelhouseError(f"pip download did not finish within {PIP_TIMEOUT} s") from None
        for path in Path(tmp).glob("*.whl"):
            os.replace(path, cache / path.name)  # atomic: a concurrent build sees whole files only
    return result


#: pip output that means the index could not be reached. pip then also says "No matching
#: distribution found" (it saw no versions at all), which must not be reported as a missing wheel.
_NETWORK_HINTS = ("NewConnectionError", "ConnectTimeout", "ReadTimeout", "ProxyError", "SSLError", "Max retries exceeded", "name resolution", "Connection refused")


def _is_missing_wheel(stderr: str) -> bool:
    return "No matching distribution" in stderr and not any(hint in stderr for hint in _NETWORK_HINTS)


def _explain_failure(missing: Sequence[LockedRequirement], python_version: str, cache: Path, result: subprocess.CompletedProcess) -> None:
    """Turn a failed batch download into a precise error: retry one by one to find the culprit."""

    if not _is_missing_wheel(result.stderr):
        raise WheelhouseError(f"pip download failed (exit {result.returncode}):\n{_tail(result.stderr)}")
    for requirement in missing:
        if find_cached(requirement, python_version, cache) is not None:
            continue
        single = _pip_download([requirement], python_version, cache)
        if single.returncode != 0:
            if _is_missing_wheel(single.stderr):
                raise NoWindowsWheelError(requirement.name, requirement.version, PLATFORM, _minor(python_version))
            raise WheelhouseError(f"pip download of {requirement.pin} failed (exit {single.returncode}):\n{_tail(single.stderr)}")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- Completeness -----------------------------------------------------------------------


@dataclass(frozen=True)
class WheelMetadata:
    """What the completeness check needs from a wheel's ``METADATA``."""

    requires_dist: tuple[str, ...]
    requires_python: str | None


def read_metadata(wheel: Path) -> WheelMetadata:
    """Read ``Requires-Dist`` and ``Requires-Python`` from the wheel's ``*.dist-info/METADATA``.

    Raises:
        WheelhouseError: the file is not a zip or has no METADATA.
    """

    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise WheelhouseError(f"{wheel.name} has no single *.dist-info/METADATA")
            data = archive.read(names[0])
    except zipfile.BadZipFile:
        raise WheelhouseError(f"{wheel} is not a valid wheel (not a zip file); delete it from the cache") from None
    message = email.parser.BytesParser().parsebytes(data, headersonly=True)
    return WheelMetadata(tuple(message.get_all("Requires-Dist") or ()), message.get("Requires-Python"))


def check_complete(lock: Lock, wheels: Sequence[Wheel], python_version: str) -> None:
    """Check that the lock holds every dependency the wheels need on Windows, at a fitting version.

    For every wheel, each ``Requires-Dist`` is evaluated with the Windows marker environment
    (``extra == ""``, plus each extra asked for: by a lock line such as ``uvicorn[standard]`` or
    by another requirement such as ``fastapi[standard]`` asking ``uvicorn[standard]``). Each
    requirement that applies must be pinned in the lock (for Windows) at a version its
    specifier allows. ``Requires-Python`` of each wheel must allow ``python_version``.

    Args:
        lock: the parsed lock.
        wheels: one wheel per lock line that applies on Windows (as :func:`fetch_wheels` returns).
        python_version: target CPython, ``"3.12"`` or ``"3.12.7"``.

    Raises:
        IncompleteLockError: listing every missing dependency and version conflict.
    """

    applicable = {w.requirement.key: w.requirement for w in wheels}
    metadata = {w.requirement.key: read_metadata(w.path) for w in wheels}
    problems: list[str] = []
    full_python = windows_environment(python_version)["python_full_version"]
    for key, meta in metadata.items():
        requirement = applicable[key]
        if meta.requires_python and not _allows(meta.requires_python, full_python):
            problems.append(f"{requirement.name} {requirement.version} requires Python {meta.requires_python}, not {python_version}")
    extras = {key: set(r.extras) for key, r in applicable.items()}
    pending = [(key, extra) for key in sorted(applicable) for extra in ["", *sorted(extras[key])]]
    done: set[tuple[str, str]] = set()
    while pending:
        key, extra = pending.pop(0)
        if (key, extra) in done:
            continue
        done.add((key, extra))
        owner = applicable[key]
        for text in metadata[key].requires_dist:
            dependency = _parse_dependency(text, owner, problems)
            if dependency is None or not _applies(dependency, python_version, extra):
                continue
            problem = _check_dependency(lock, applicable, owner, dependency, python_version)
            if problem:
                problems.append(problem)
                continue
            dep_key = canonicalize_name(dependency.name)
            for new_extra in sorted(dependency.extras - extras[dep_key]):
                extras[dep_key].add(new_extra)
                pending.append((dep_key, new_extra))
    if problems:
        raise IncompleteLockError(list(dict.fromkeys(problems)), python_version)


def _allows(specifier: str, version: str) -> bool:
    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True  # pip would ignore an invalid Requires-Python as well


def _parse_dependency(text: str, owner: LockedRequirement, problems: list[str]) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        problems.append(f"{owner.name} {owner.version} declares an unparsable dependency {text!r}")
        return None


def _applies(dependency: Requirement, python_version: str, extra: str) -> bool:
    if dependency.marker is None:
        return extra == ""  # unconditional dependencies are checked once, with the base package
    return dependency.marker.evaluate(windows_environment(python_version, extra))


def _check_dependency(lock: Lock, applicable: dict, owner: LockedRequirement, dependency: Requirement, python_version: str) -> str | None:
    key = canonicalize_name(dependency.name)
    where = f"(on Windows, CPython {python_version})"
    asked = f"{owner.name} {owner.version} requires {dependency.name}{_extras(dependency)}{dependency.specifier}"
    locked = applicable.get(key)
    if locked is None:
        other = lock.by_key.get(key)
        if other is not None:
            return f"{asked} {where}; the lock pins {other.pin} on line {other.line} but its marker '{other.marker}' is false on Windows"
        return f"{asked} {where}; the lock has no {dependency.name}"
    if dependency.url or not dependency.specifier.contains(locked.version, prereleases=True):
        return f"{asked} {where}; the lock pins {locked.name}=={locked.version}"
    return None


def _extras(requirement: Requirement) -> str:
    return f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
