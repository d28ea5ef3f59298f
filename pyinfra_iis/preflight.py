"""Controller files checked before any host is touched: PFX files, installers, the release.

The models check that the inventory is well formed and that controller files exist. A ``-y``
run must also never stop half-way, on one host after another, because of a file on the
controller: a PFX whose password is wrong, an installer that is not the pinned one, a release
artifact that is missing, damaged, built for another app or Python, without the server it
runs under, or whose entry point does not exist. :func:`file_problems` finds all of those on
the controller, for one host's validated data; :func:`pyinfra_iis.inventory_check.check_hosts`
adds them to the one report that refuses the run before any connection is made.

Each file is read once per controller process (keyed by path, size and modification time), so
an inventory of 50 hosts sharing one artifact hashes it once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Optional

from pydantic import ValidationError

from .models.report import Problem

if TYPE_CHECKING:  # pragma: no cover
    from .models.host import IisHostConfig

#: The ASGI server every release needs in its lock: web.config starts it (``python -m uvicorn``).
SERVER_PACKAGE = "uvicorn"

_CHUNK = 1 << 20


def file_problems(host: str, iis: Optional["IisHostConfig"], release: Any, base_dir: Optional[Path] = None) -> list[Problem]:
    """Return the problems of the controller files one host's inventory names.

    Args:
        host: the host name (for the report).
        iis: the host's validated ``iis_*`` data, or ``None``.
        release: the host's validated ``release_*`` data
            (:class:`pyinfra_iis.deploys.release.ReleaseHostConfig`), or ``None``.
        base_dir: directory relative controller paths are resolved against (default: cwd).

    Returns:
        one :class:`~pyinfra_iis.models.report.Problem` per finding (field, reason, fix); files
        that do not exist are reported by the models already and are skipped here.
    """

    problems: list[Problem] = []
    for index, certificate in enumerate(iis.certificates if iis is not None else []):
        if certificate.pfx is None or certificate.password is None:  # a removal by thumbprint
            continue
        reason = pfx_problem(_resolve(certificate.pfx, base_dir), certificate.password.get_secret_value())
        if reason:
            problems.append(Problem(host, f"iis_certificates.{index}.pfx", reason,
                                    "check the PFX file and its password (the password is read from the inventory)"))
    for index, extension in enumerate(iis.extensions if iis is not None else []):
        source = extension.source
        if isinstance(source, Path):
            reason = pin_problem(_resolve(source, base_dir), extension.sha256)
            if reason:
                problems.append(Problem(host, f"iis_extensions.{index}.source", reason,
                                        "vendor the installer you pinned, or pin the one you vendored"))
    if release is not None:
        reason = pin_problem(_resolve(release.python.source, base_dir), release.python.sha256)
        if reason:
            problems.append(Problem(host, "release_python.source", reason, "use the python.org installer whose SHA-256 you pinned"))
        artifact = release.artifact_path()
        if artifact is not None:
            path = _resolve(artifact, base_dir)
            if not path.is_file():
                problems.append(Problem(host, "release_artifact", f"release {release.version}: {artifact} is not a file on the controller",
                                        "build it first: python -m pyinfra_iis.release build APP --name NAME --version VERSION"))
            else:
                problems += [Problem(host, "release_artifact", reason, "rebuild the artifact") for reason in
                             artifact_problems(path, release.app.app_name, str(release.version), release.app.python_version)]
    return problems


def _resolve(path: Path, base_dir: Optional[Path]) -> Path:
    path = Path(path)
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def _key(path: Path) -> Optional[tuple[str, int, int]]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_sha256(path: Path) -> Optional[str]:
    """SHA-256 (lower-case hex) of a controller file, read once per process; ``None`` when it
    cannot be read."""

    key = _key(path)
    return None if key is None else _sha256(key)


@functools.lru_cache(maxsize=256)
def _sha256(key: tuple[str, int, int]) -> Optional[str]:
    from .release.manifest import sha256_file

    try:
        return sha256_file(Path(key[0]))
    except OSError:
        return None


def pin_problem(path: Path, sha256: str) -> Optional[str]:
    """Why the installer at ``path`` is not the pinned one, or ``None`` (also when the file is
    missing: the models report that)."""

    if not path.is_file():
        return None
    actual = file_sha256(path)
    if actual is None:
        return f"{path} cannot be read"
    if actual != str(sha256).lower():
        return f"{path} has SHA-256 {actual}, not the pinned {str(sha256).lower()}"
    return None


def pfx_problem(path: Path, password: str) -> Optional[str]:
    """Why the PFX at ``path`` cannot be imported, or ``None``.

    The file must open with the password (PKCS#12, as ``X509Certificate2Collection.Import``
    reads it on the host) and hold a certificate with its private key. The message never holds
    the password.
    """

    if not path.is_file():
        return None
    key = _key(path)
    if key is None:
        return None
    # Results are kept per file and password digest (never the password), so 50 hosts sharing
    # one PFX open it once.
    cache_key = (key, hashlib.sha256(password.encode("utf-8")).hexdigest())
    if cache_key not in _PFX_RESULTS:
        _PFX_RESULTS[cache_key] = _pfx_problem(key[0], password)
    return _PFX_RESULTS[cache_key]


_PFX_RESULTS: dict[tuple[tuple[str, int, int], str], Optional[str]] = {}


def _pfx_problem(path: str, password: str) -> Optional[str]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror})"
    try:
        private_key, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode("utf-8") if password else None)
    except (ValueError, TypeError):
        return f"{path} does not open with the given password (or is not a PKCS#12 / PFX file)"
    if certificate is None or private_key is None:
        return f"{path} holds no certificate with its private key (HTTP.sys needs the key)"
    return None


def artifact_problems(path: Path, app: str, version: str, python: str) -> list[str]:
    """What is wrong with the release artifact at ``path`` for this app, version and Python.

    Checks that it is a zip with a valid ``manifest.json`` naming ``app``, ``version`` and
    ``python``; that every file the manifest lists is in the zip with its size and SHA-256 and
    nothing else is; that the requirements include the server (``uvicorn``); and that the
    entry point's module is in ``app/`` and assigns its attribute at module level.
    """

    key = _key(path)
    return [] if key is None else list(_artifact_problems(key, app, version, python))


@functools.lru_cache(maxsize=32)
def _artifact_problems(key: tuple[str, int, int], app: str, version: str, python: str) -> tuple[str, ...]:
    from .release.manifest import APP_DIR, MANIFEST_NAME, Manifest

    name = Path(key[0]).name
    try:
        archive = zipfile.ZipFile(key[0])
    except (OSError, zipfile.BadZipFile) as exc:
        return (f"{name} is not a zip file ({exc})",)
    with archive:
        try:
            manifest = Manifest.from_json(archive.read(MANIFEST_NAME))
        except KeyError:
            return (f"{name} has no {MANIFEST_NAME}: not a release artifact",)
        except (ValidationError, ValueError) as exc:
            return (f"{name}: invalid {MANIFEST_NAME} ({type(exc).__name__})",)
        problems = []
        if manifest.app != app:
            problems.append(f"{name} is a release of {manifest.app!r}, not {app!r}")
        if str(manifest.version) != version:
            problems.append(f"{name} is version {manifest.version}, not {version}")
        if manifest.python != python:
            problems.append(f"{name} is built for Python {manifest.python}, the host runs {python}")
        problems += _content_problems(archive, manifest, name, MANIFEST_NAME)
        if not any(r.name.lower().replace("_", "-") == SERVER_PACKAGE for r in manifest.requirements):
            problems.append(f"{name}: the lock has no {SERVER_PACKAGE}, which web.config starts the app with")
        problems += _entry_point_problems(archive, manifest.entry_point, APP_DIR, name)
    return tuple(problems)


def _content_problems(archive: zipfile.ZipFile, manifest: Any, name: str, manifest_name: str) -> list[str]:
    present = {info.filename: info for info in archive.infolist() if not info.is_dir()}
    present.pop(manifest_name, None)
    problems = [f"{name}: {path} is listed in the manifest but missing" for path in sorted(set(manifest.files) - set(present))]
    problems += [f"{name}: {path} is not listed in the manifest" for path in sorted(set(present) - set(manifest.files))]
    for path in sorted(set(manifest.files) & set(present)):
        entry = manifest.files[path]
        digest = hashlib.sha256()
        with archive.open(present[path]) as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
        if present[path].file_size != entry.size or digest.hexdigest() != entry.sha256:
            problems.append(f"{name}: {path} does not match its manifest entry (size or SHA-256)")
    return problems


def _entry_point_problems(archive: zipfile.ZipFile, entry_point: str, app_dir: str, name: str) -> list[str]:
    module, _, attribute = entry_point.partition(":")
    parts = module.split(".")
    candidates = [PurePosixPath(app_dir, *parts).with_suffix(".py").as_posix(), PurePosixPath(app_dir, *parts, "__init__.py").as_posix()]
    found = next((c for c in candidates if c in archive.namelist()), None)
    if found is None:
        return [f"{name}: entry point {entry_point}: no {candidates[0]} in the artifact"]
    try:
        tree = ast.parse(archive.read(found), filename=found)
    except SyntaxError as exc:
        return [f"{name}: entry point {entry_point}: {found} does not parse (line {exc.lineno})"]
    if attribute not in _module_names(tree.body):
        return [f"{name}: entry point {entry_point}: {found} defines no {attribute!r} at module level"]
    return []


def _module_names(body: Iterable[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names |= _module_names(node.body) | _module_names(getattr(node, "orelse", []))
    return names
