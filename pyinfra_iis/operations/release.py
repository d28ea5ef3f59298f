"""Releases on a host: install (host primitives driven from here), ``Switch-Release``, cleanup and the
app's secrets as application pool environment variables (``docs/remote-functions.md``,
"Releases"; docs/design.md "Releases").

Host layout under a release root (``ReleaseSettings.root``)::

    <root>\\artifacts\\<app>-<version>.zip   uploaded once (the connector skips a matching hash)
    <root>\\releases\\<version>\\            built in place; complete once .pyinfra-iis-complete exists
    <root>\\logs\\                           stdout logs (kept by count and age)
    <root>\\release-state.json               current / previous / history

Every operation reads the ``releases`` part of ``Get-HostState`` (asked with the root in
``release_roots``) and yields nothing when the host is already so. The host only runs
primitives; what is complete, what to remove and whether the unpacked files are the artifact's
is decided here (an install reacts to each answer in a pyinfra ``FunctionCommand``).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from pydantic import TypeAdapter, ValidationError
from pyinfra import host
from pyinfra.api import FileUploadCommand, FunctionCommand, operation
from pyinfra.api.exceptions import OperationError, OperationValueError

from ..facts.host_state import host_state
from ..iis import config
from ..iis.defaults import APP_POOLS, SITES
from ..iis.diff import Change, log_changes
from ..iis.edits import child_step, item_step, set_edit
from ..models.app_pool import AppPool
from ..models.release import ReleaseSettings
from ..models.site import Site
from ..models.types import Duration, ReleaseVersion
from ..protocol import Secret, remote_call, secret_digest
from ..release.manifest import MANIFEST_NAME, REQUIREMENTS_NAME, WHEELHOUSE_DIR, Manifest, sha256_file
from ..release.startcheck import start_check
from ..release.webconfig import RELEASE_VARIABLE, render_web_config
from ..sddl import app_pool_sid, protected_sddl
from .progress import timed_step
from ._common import ReleaseStepError, call_host, controller_file, host_step, iis_of, validated, warn

_VERSION = TypeAdapter(ReleaseVersion)

#: ``expect_status`` of the health check: FastAPI's /healthz answers 200 when healthy.
HEALTHY_STATUS = 200
#: Answers IIS gives itself that end the health wait early: 502 (HttpPlatformHandler's 502.3: the
#: process failed to start ``startupRetryCount`` times, or ``rapidFailsPerMinute`` holds it for the
#: rest of the minute) and 503 (the pool stopped, e.g. by rapid-fail protection). Neither
#: recovers within a health deadline of minutes (docs/field-facts.md, HttpPlatformHandler 1.2).
GIVE_UP_STATUSES = (502, 503)
#: The completion marker: written last into a release folder; it alone defines "complete".
COMPLETE_MARKER = ".pyinfra-iis-complete"
#: Stdout logs kept in ``<root>\\logs``: at most this many, none older than LOG_MAX_AGE (the
#: newest two always stay: the running process writes one of them).
LOG_KEEP = 20
LOG_MAX_AGE = timedelta(days=30)
#: Windows MAX_PATH (260 with the terminating NUL): long paths are off by default and a quiet
#: Python install does not enable them, so every unpacked file must fit.
MAX_PATH = 259
#: Time limits (seconds) of the venv and pip steps.
VENV_TIMEOUT, PIP_TIMEOUT = 600, 1800


def directory_sddl(app_pool: Optional[str], logs: bool = False) -> str:
    """The protected ACL of a release folder: SYSTEM and Administrators full control, the pool
    Read & Execute (``logs``: Modify), nobody else (no ``Users`` create rights from ``C:\\``)."""

    pool = [app_pool_sid(app_pool)] if app_pool else []
    return protected_sddl(read_execute=() if logs else pool, modify=pool if logs else ())


def directory_calls(settings: ReleaseSettings, app_pool: Optional[str]) -> list:
    """``Initialize-Directory`` of the root, releases, artifacts and logs, each with its
    protected ACL (the function also refuses a reparse point or a folder owned by anyone but
    SYSTEM or Administrators)."""

    folders = [(settings.root, False), (settings.releases_dir, False), (f"{settings.root}\\artifacts", False), (settings.logs_dir, True)]
    return [remote_call("Initialize-Directory", {"path": path, "sddl": directory_sddl(app_pool, logs)}) for path, logs in folders]


# --- Reading the fact ----------------------------------------------------------------------


def release_report(fact: dict, root: str) -> dict:
    """Return the fact's ``releases[root]`` (root compared ignoring case; ``{}`` when absent).

    Shape: ``{"current": str|None, "previous": str|None, "rolled_back_from": str|None,
    "versions": [{"version", "complete", "web_config_sha256"}], "history": [...]}``.
    """

    for name, report in (fact.get("releases") or {}).items():
        if name.lower() == root.lower():
            return report or {}
    return {}


def complete_versions(report: dict) -> list[str]:
    """Complete release versions on the host, oldest completion first (the fact's order)."""

    return [entry["version"] for entry in report.get("versions") or [] if entry.get("complete")]


def site_physical_path(fact: dict, site: str) -> Optional[str]:
    """The ``physicalPath`` of the site's root virtual directory in applicationHost.config."""

    section = config.section(iis_of(fact), SITES)
    element = config.find_item(section, "site", {"name": site})
    element = config.find_item(element, "application", {"path": "/"})
    element = config.find_item(element, "virtualDirectory", {"path": "/"})
    return config.get_attribute(element, "physicalPath")


def serving(fact: dict, settings: ReleaseSettings, site: str) -> Optional[str]:
    """The version the site serves: the release state's ``current`` when the site's
    physicalPath points at that release folder, else ``None``."""

    current = release_report(fact, settings.root).get("current")
    path = site_physical_path(fact, site)
    if current and path and path.rstrip("\\").lower() == settings.release_dir(current).lower():
        return current
    return None


# --- Controller side -------------------------------------------------------------------------


def artifact_name(settings: ReleaseSettings, version: str) -> str:
    """``<app>-<version>.zip``: the name ``python -m pyinfra_iis.release build`` gives."""

    return f"{settings.app_name}-{version}.zip"


def read_manifest(artifact: Path) -> Manifest:
    """Read ``manifest.json`` from a release zip on the controller.

    Raises:
        OperationValueError: not a zip, no manifest, or an invalid manifest.
    """

    try:
        with zipfile.ZipFile(artifact) as archive:
            return Manifest.from_json(archive.read(MANIFEST_NAME))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise OperationValueError(f"{artifact} is not a release artifact with a {MANIFEST_NAME}: {exc}") from None
    except ValidationError as exc:
        raise OperationValueError(f"{artifact}: invalid {MANIFEST_NAME} ({exc.error_count()} problem(s))") from None


def check_manifest(manifest: Manifest, settings: ReleaseSettings, version: str, artifact: Path) -> None:
    """Refuse an artifact that is not this app's release ``version`` for this Python.

    Raises:
        OperationValueError: app name, version or target Python differ.
    """

    problems = []
    if manifest.app != settings.app_name:
        problems.append(f"app {manifest.app!r}, not {settings.app_name!r}")
    if manifest.version != version:
        problems.append(f"version {manifest.version!r}, not {version!r}")
    if manifest.python != settings.python_version:
        problems.append(f"built for Python {manifest.python}, the host runs {settings.python_version}")
    if problems:
        raise OperationValueError(f"{artifact.name}: {'; '.join(problems)}")


def health_check(site: Site, settings: ReleaseSettings, version: Optional[str] = None) -> dict[str, Any]:
    """The ``health`` argument of ``Switch-Release``: the health path through the site's binding.

    The first https binding is used when there is one (TLS through HTTP.sys, as clients see
    it), else the first http binding. The connection goes to the binding's IP (``127.0.0.1``
    for ``*``) and port; ``Host`` (and SNI) is the binding's host name, a wildcard's ``*``
    replaced by ``health``, or ``localhost`` for a binding that answers any host name. An https
    binding passes its certificate's thumbprint (``certificate_hash``): the host accepts the
    handshake when the presented certificate is that one, whatever name it carries (a binding
    without a host name would otherwise fail the name check and roll back every switch).
    ``expect_version``: the answer must come from that release (header ``X-Release-Version`` or
    the version in the body), not from an old worker process still answering.
    ``give_up_statuses``: :data:`GIVE_UP_STATUSES`; an answer IIS gives itself (no
    ``X-Release-Version``) with one of them ends the wait at once (it cannot get better before
    the deadline), reported with the new stdout log's tail.

    Returns:
        ``{"url", "host", "certificate_hash", "expect_version", "deadline_seconds",
        "expect_status", "give_up_statuses"}`` (deadline from ``settings.health_deadline``, seconds).

    Raises:
        OperationValueError: the site has no binding.
    """

    if not site.bindings:
        raise OperationValueError(f"site {site.name} has no binding to check the release's health through")
    binding = next((b for b in site.bindings if b.protocol == "https"), site.bindings[0])
    port = binding.port or (443 if binding.protocol == "https" else 80)
    address = "127.0.0.1" if binding.ip in ("*", "") else binding.ip
    if ":" in address:
        address = f"[{address}]"
    name = binding.host_name.replace("*", "health", 1) if binding.host_name else "localhost"
    certificate = getattr(binding, "certificate", None) if binding.protocol == "https" else None
    return {
        "url": f"{binding.protocol}://{address}:{port}{settings.health_check_path}",
        "host": name,
        "certificate_hash": certificate.upper() if isinstance(certificate, str) and len(certificate) == 40 else None,
        "expect_version": version,
        "deadline_seconds": settings.health_deadline.seconds,
        "expect_status": HEALTHY_STATUS,
        "give_up_statuses": list(GIVE_UP_STATUSES),
    }


def _version(version: Any) -> str:
    try:
        return _VERSION.validate_python(version)
    except ValidationError:
        raise OperationValueError(f"argument 'version': {version!r} is not a release version (PEP 440, e.g. 1.4.2)") from None


# --- Operations ---------------------------------------------------------------------------


# --- Config revisions ------------------------------------------------------------------------
#
# A release's web.config (non-secret app settings, HttpPlatformHandler timeouts, the process
# line) is written once and never rewritten in place (that would restart the app unchecked).
# When the inventory renders another web.config for an installed version, the change ships as
# a CONFIG REVISION of that version: the folder ``<root>\\releases\\<version>+r<N>`` (N = 2, 3...;
# ``<version>.r<N>`` when the version already has a local label, ``1.5.0+build.7.r2``) holding
# only web.config and the completion marker. Its web.config runs the base version's venv and
# app (``<root>\\releases\\<version>``) and names the revision in ``PYINFRA_IIS_RELEASE``, so the
# health check of the switch knows the answer comes from the new configuration. It is switched
# to, health-checked, rolled back and recorded in release-state.json like any release;
# ``<version>+r1`` names the version's own folder (its first configuration).

_REVISION_RE = re.compile(r"^(?P<base>.+?)[+.]r(?P<number>[1-9][0-9]{0,5})$")


def revision_name(version: str, number: int) -> str:
    """Name of config revision ``number`` of ``version``: ``1.4.2+r2`` (``version`` itself for 1)."""

    if number <= 1:
        return version
    return f"{version}{'.' if '+' in version else '+'}r{number}"


def revision_of(name: str) -> tuple[str, int]:
    """``(version, revision number)`` of a release folder name: ``1.4.2+r2`` → ``("1.4.2", 2)``,
    ``1.4.2`` → ``("1.4.2", 1)``."""

    match = _REVISION_RE.match(name)
    if match and (int(match["number"]) == 1 or revision_name(match["base"], int(match["number"])) == name):
        return match["base"], int(match["number"])
    return name, 1


def revision_web_config(model: ReleaseSettings, version: str, revision: str, manifest: Manifest) -> str:
    """The web.config of ``revision`` of ``version``: the version's own (its venv, its app) with
    ``PYINFRA_IIS_RELEASE`` naming the revision.

    Raises:
        OperationValueError: the web.config template does not write ``PYINFRA_IIS_RELEASE``
            (a custom ``templates/web.config.j2`` must keep that variable).
    """

    text = render_web_config(model, model.release_dir(version), manifest=manifest)
    if revision == version:
        return text
    written = f'name="{RELEASE_VARIABLE}" value="{version}"'
    if text.count(written) != 1:
        raise OperationValueError(f"the web.config template must write <environmentVariable {written} /> once (the health "
                                  f"check needs it to tell a config revision's answer from the old one's)")
    return text.replace(written, f'name="{RELEASE_VARIABLE}" value="{revision}"')


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_revision(report: dict, model: ReleaseSettings, version: str, artifact: Any, warn_missing: bool = False) -> tuple[str, Optional[str]]:
    """Which folder serves ``version`` with the web.config the inventory renders now:
    ``(release folder name, web.config text to write)``; the text is ``None`` when that folder
    is already complete.

    * ``version`` not installed yet: ``(version, None)`` (the install writes today's web.config).
    * a complete folder of ``version`` (itself or a revision) has today's web.config:
      that one (the served one first, else the newest), nothing to write. Going back to earlier
      settings therefore switches back to the folder that has them.
    * none: the next revision ``<version>+r<N>`` and its web.config.
    * the artifact is not on the controller (an installed release does not need it; its
      manifest names the entry point): nothing can be rendered, so the served folder of
      ``version`` (or ``version``) is kept (a warning with ``warn_missing``).

    Raises:
        OperationValueError: the artifact is not a release artifact; the template lacks
            ``PYINFRA_IIS_RELEASE`` (:func:`revision_web_config`).
    """

    versions = report.get("versions") or []
    complete = {e["version"]: e for e in versions if e.get("complete")}
    if version not in complete:
        return version, None
    candidates = [name for name in complete if revision_of(name)[0] == version]  # completion order
    current = report.get("current")
    try:
        local = controller_file(Path(artifact), "artifact")
    except OperationValueError:
        if warn_missing:
            warn([f"release {version}: {artifact} is not on the controller, so its web.config cannot be compared with the "
                  f"inventory's; it keeps running as installed (give --data release_artifact=... to apply changed settings)"])
        return (current if current in candidates else candidates[-1]), None
    manifest = read_manifest(local)
    matching = []
    for name in candidates:
        installed = str(complete[name].get("web_config_sha256") or "").lower()
        if installed and _sha256_text(revision_web_config(model, version, name, manifest)) == installed:
            matching.append(name)
    if current in matching:
        return current, None
    if matching:
        return matching[-1], None
    number = max([revision_of(e.get("version") or "")[1] for e in versions if revision_of(e.get("version") or "")[0] == version] + [1]) + 1
    revision = revision_name(version, number)
    return revision, revision_web_config(model, version, revision, manifest)


def manifest_problems(manifest: Manifest, manifest_bytes: bytes, files: list[dict]) -> list[str]:
    """Compare the host's listing of an unpacked release with the CONTROLLER's manifest.

    Every file the manifest lists (and ``manifest.json`` itself) must be there with its size
    and SHA-256; nothing else may be there.
    """

    expected = {path: (entry.size, entry.sha256) for path, entry in manifest.files.items()}
    expected[MANIFEST_NAME] = (len(manifest_bytes), hashlib.sha256(manifest_bytes).hexdigest())
    found = {entry["path"]: (entry["size"], str(entry["sha256"]).lower()) for entry in files}
    problems = [f"{path}: missing" for path in sorted(set(expected) - set(found))]
    problems += [f"{path}: not in the manifest" for path in sorted(set(found) - set(expected))]
    problems += [f"{path}: size/SHA-256 differ from the manifest" for path in sorted(set(found) & set(expected)) if found[path] != expected[path]]
    return problems


def path_budget(manifest: Manifest, release_dir: str) -> Optional[str]:
    """Why a file of the release would exceed MAX_PATH on the host, or ``None``."""

    longest = max([*manifest.files, MANIFEST_NAME], key=len)
    full = f"{release_dir}\\{longest}".replace("/", "\\")
    if len(full) > MAX_PATH:
        return (f"{full} is {len(full)} characters: over Windows' MAX_PATH ({MAX_PATH}), and long paths are off by "
                f"default; use a shorter release root")
    return None


def install_steps(host_: Any, settings: ReleaseSettings, version: str, artifact: str, sha256: str, manifest: Manifest,
                  manifest_bytes: bytes, web_config: str, python_exe: str, stale: list[str]) -> None:
    """The install, one host call at a time (run by a ``FunctionCommand``).

    1. ``Remove-ReleasePaths``: an incomplete folder of this version (an interrupted install).
    2. ``Install-Release``: the artifact's SHA-256 checked, unpacked into the FINAL folder; its
       listing compared here with the controller's manifest.
    3. ``Invoke-Program``: ``python -I -m venv`` and ``pip install --no-index`` from the wheelhouse,
       in the final folder (console-script launchers keep their path).
    4. ``Write-TextFile``: web.config, then the completion marker, last.

    Raises:
        ReleaseStepError: naming the step that failed; the folder stays incomplete (no marker),
            so the next run removes and rebuilds it.
    """

    target = settings.release_dir(version)
    if stale:
        call_host(host_, "Remove-ReleasePaths", {"paths": stale, "marker": COMPLETE_MARKER})
    listing = call_host(host_, "Install-Release", {"artifact": artifact, "sha256": sha256, "destination": target})
    problems = manifest_problems(manifest, manifest_bytes, listing.get("files") or [])
    if problems:
        raise ReleaseStepError(f"release {version}: the unpacked files differ from the artifact's manifest: {'; '.join(problems[:10])}")
    programs = [
        ("create the venv", python_exe, ["-I", "-m", "venv", f"{target}\\venv"], VENV_TIMEOUT),
        ("install the wheels", f"{target}\\venv\\Scripts\\python.exe",
         ["-I", "-m", "pip", "install", "--no-index", "--only-binary=:all:", "--require-hashes", "--disable-pip-version-check",
          "--find-links", f"{target}\\{WHEELHOUSE_DIR}", "-r", f"{target}\\{REQUIREMENTS_NAME}"], PIP_TIMEOUT),
    ]
    for step, program, arguments, timeout in programs:
        # PYTHONUTF8: a piped stdout of Python on Windows is in the ANSI code page; the runner decodes UTF-8.
        with timed_step(host_, f"release {version}: {step}"):  # progress at normal verbosity (hph, issue 11)
            run = call_host(host_, "Invoke-Program", {"file": program, "arguments": arguments, "working_directory": target,
                                                       "environment": {"PYTHONUTF8": "1"}, "timeout_seconds": timeout})
        if run.get("exit_code") != 0:
            tail = "\n".join(((run.get("stderr") or "") + (run.get("stdout") or "")).strip().splitlines()[-30:])
            raise ReleaseStepError(f"release {version}: {step} failed with exit code {run.get('exit_code')}:\n{tail}")
    call_host(host_, "Write-TextFile", {"path": f"{target}\\web.config", "text": web_config})
    # The marker's content is fixed (two identical runs leave identical files); the host reports
    # its last write time, which orders releases by completion.
    call_host(host_, "Write-TextFile", {"path": f"{target}\\{COMPLETE_MARKER}", "text": f"{version}\n"})


@operation()
def release_installed(settings: Any, version: str, artifact: Any, python_exe: str, app_pool: Optional[str] = None):
    """
    Put one release on the host, complete, without switching traffic to it.

    + settings: the app's ``ReleaseSettings`` (or dict; host data ``release_app``).
    + version: the release version (``1.4.2``), also its folder name.
    + artifact: the release zip on the controller (``python -m pyinfra_iis.release build``).
    + python_exe: the base interpreter on the host (``C:\\Program Files\\Python312\\python.exe``).
    + app_pool: the pool that runs the app (Read & Execute on the release folders, Modify on
      ``logs``); none: only SYSTEM and Administrators.

    Nothing happens when the fact lists ``version`` as a complete release under the root (a
    web.config that differs from the one rendered now is :func:`release_revised`'s business).
    Otherwise the folders are created with a protected ACL, the zip is uploaded to
    ``<root>\\artifacts\\<app>-<version>.zip`` (skipped by the connector when the hash matches)
    and :func:`install_steps` build the release in its final folder. The artifact's manifest
    must name this app, version and Python version, and every path must fit MAX_PATH.

    **Example:**

    .. code:: python

        release_installed(name="Release 1.4.2", settings=settings, version="1.4.2",
                          artifact="dist/api-1.4.2.zip", python_exe=r"C:\\Program Files\\Python312\\python.exe")
    """

    model = validated(ReleaseSettings, settings, "settings")
    version = _version(version)
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    if version in complete_versions(report):
        # A web.config that differs from the one rendered now becomes a config revision
        # (:func:`release_revised`), switched and health-checked like a release.
        host.noop(f"release {version} is installed in {model.release_dir(version)}")
        return
    local = controller_file(Path(artifact), "artifact")
    manifest = read_manifest(local)
    check_manifest(manifest, model, version, local)
    too_long = path_budget(manifest, model.release_dir(version))
    if too_long:
        raise OperationValueError(too_long)
    with zipfile.ZipFile(local) as archive:
        manifest_bytes = archive.read(MANIFEST_NAME)
    destination = f"{model.root}\\artifacts\\{artifact_name(model, version)}"
    web_config = render_web_config(model, model.release_dir(version), manifest=manifest)
    stale = [f"{model.releases_dir}\\{e.get('folder') or e['version']}" for e in report.get("versions") or []
             if e["version"] == version and not e.get("complete")]
    log_changes(host, f"Will install release {version}", [Change(f"release {model.app_name}", None, f"{version} in {model.release_dir(version)}")])
    yield from directory_calls(model, app_pool)
    yield FileUploadCommand(str(local), destination)
    yield FunctionCommand(host_step(install_steps), (model, version, destination, sha256_file(local), manifest, manifest_bytes,
                                                     web_config, python_exe, stale), {})



@operation()
def release_revised(settings: Any, version: str, artifact: Any, app_pool: Optional[str] = None):
    """
    Give an installed release the web.config the inventory renders now, as a new config
    revision (``<version>+r<N>``, see :func:`config_revision`), without switching to it.

    + settings: the app's ``ReleaseSettings`` (or dict); ``app_settings`` and the timeouts are
      what web.config carries (``app_secrets`` never: they change with the switch).
    + version: the installed release (``1.4.2``).
    + artifact: its zip on the controller, for the manifest's entry point.
    + app_pool: the pool that runs the app (unused: the folder inherits the protected ACL of
      ``<root>\\releases``, as an installed version does; kept for symmetry with
      :func:`release_installed`).

    Nothing happens when ``version`` is not installed yet (its install writes today's
    web.config) or a complete folder of it already has today's web.config. Otherwise
    ``Initialize-Directory`` of the revision folder, then ``Write-TextFile`` of web.config and of the
    completion marker, last. Switch with :func:`release_switched` to the name
    :func:`config_revision` gives.

    **Example:**

    .. code:: python

        release_revised(name="Config of api 1.4.2", settings=settings, version="1.4.2", artifact="dist/api-1.4.2.zip")
    """

    model = validated(ReleaseSettings, settings, "settings")
    version = _version(version)
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    revision, web_config = config_revision(report, model, version, artifact, warn_missing=True)
    if web_config is None:
        host.noop(f"release {version} has a folder with this web.config: {model.release_dir(revision)}")
        return
    folder = model.release_dir(revision)
    log_changes(host, f"Will write config revision {revision}", [Change(f"release {model.app_name}", report.get("current"), f"{revision} in {folder}")])
    yield remote_call("Initialize-Directory", {"path": folder})  # inherits the releases folder's protected ACL
    yield remote_call("Write-TextFile", {"path": f"{folder}\\web.config", "text": web_config})
    yield remote_call("Write-TextFile", {"path": f"{folder}\\{COMPLETE_MARKER}", "text": f"{revision}\n"})


def state_texts(report: dict, version: str) -> tuple[str, str]:
    """The release-state.json ``Switch-Release`` writes: ``(after success, after failure)``.

    Success: ``current`` = version, ``previous`` = the old current (unchanged when it was
    already version). Both append a history entry ``{at, from, to, ok}`` (the newest 100 kept).

    Rollbacks (:func:`release_rolled_back`) pass the report with ``rollback_from`` set to the
    release they leave: the success state then records it as ``rolled_back_from`` (and the
    history entry gets ``"rollback": true``), which makes a second unnamed rollback a no-op.
    Any other successful switch clears it; a failed one keeps the state as it was.
    """

    current, previous = report.get("current"), report.get("previous")
    rollback_from = report.get("rollback_from")
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = list(report.get("history") or [])[-99:]
    entry = {"at": at, "from": current, "to": version}
    if rollback_from:
        entry["rollback"] = True

    def text(ok: bool) -> str:
        state = {"current": version if ok else current, "previous": (current if current != version else previous) if ok else previous,
                 "history": [*history, {**entry, "ok": ok}]}
        kept = rollback_from if ok else report.get("rolled_back_from")
        if kept:
            state["rolled_back_from"] = kept
        return json.dumps(state, indent=2) + "\n"

    return text(True), text(False)


def secret_changes(pool: str, secrets: dict[str, Any], fact: dict) -> tuple[dict[str, Secret], list[Change]]:
    """The app secrets whose digest differs in pool ``pool``: ``({name: Secret}, changes)``."""

    section = config.section(iis_of(fact), APP_POOLS)
    holder = config.child(config.find_item(section, "add", {"name": pool}), "environmentVariables")
    changed, diff = {}, []
    for name, value in secrets.items():
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        current = config.get_attribute(config.find_item(holder, "add", {"name": name}), "value")
        if current != secret_digest(raw):
            changed[name] = Secret(raw)
            diff.append(Change(f"app pool {pool}: environmentVariables[{name}]", current, "set", secret=True))
    return changed, diff


def release_pool_attributes(settings: ReleaseSettings) -> dict[str, Any]:
    """The application pool attributes the release switch relies on (docs/zero-downtime.md),
    as ``AppPool.extra_attributes`` (``deploys/release.py`` ``iis_overrides`` gives them to the
    site deploy; an inventory's own ``extra_attributes`` win):

    * ``recycling.disallowOverlappingRotation`` false: the recycle after a switch starts the new
      worker process while the old one keeps serving (IIS's default, written so a server set
      otherwise is converged);
    * ``processModel.shutdownTimeLimit``: the longer of ``pool_shutdown_time_limit`` and
      ``request_timeout``, so the old worker may finish a request that is as long as
      HttpPlatformHandler allows before WAS terminates it (IIS default 00:01:30 would cut a
      3-minute request in flight at the switch).

    With the models' defaults (pool ``startMode="AlwaysRunning"``, site ``preloadEnabled``, the
    Web-AppInit feature) and web.config's ``applicationInitialization`` page, the new worker
    starts the app before it takes traffic.
    """

    drain = max(settings.pool_shutdown_time_limit.seconds, settings.request_timeout.seconds)
    return {"recycling.disallowOverlappingRotation": False, "processModel.shutdownTimeLimit": Duration(drain).to_timespan()}


def switch_call(model: ReleaseSettings, report: dict, version: str, site_model: Site, app_pool: str,
                environment: Optional[dict] = None) -> Any:
    """ONE ``Switch-Release``: the release's start check (``preflight``,
    :func:`pyinfra_iis.release.startcheck.start_check`: a release whose app does not start is
    refused before anything is committed), then physicalPath (and changed secrets) in one commit,
    recycle (overlapped: the old worker process serves until the new one has warmed up), health
    check of ``version`` (ending early on :data:`GIVE_UP_STATUSES`), restore on failure,
    release-state.json written either way (docs/zero-downtime.md)."""

    ok_text, failed_text = state_texts(report, version)
    return remote_call("Switch-Release", {
        "site": site_model.name, "app_pool": app_pool, "path": model.release_dir(version), "environment": environment or {},
        "health": health_check(site_model, model, version), "state_file": f"{model.root}\\release-state.json",
        "state_ok": ok_text, "state_failed": failed_text, "logs": model.logs_dir,
        # a config revision (1.4.2+r2) runs its version's venv and app: the start check runs them
        "preflight": start_check(model, revision_of(version)[0], HEALTHY_STATUS)})


@operation()
def release_switched(settings: Any, version: str, site: Any, app_pool: str, recheck: bool = False):
    """
    Move the site's traffic to an installed release, only once it answers healthy.

    + settings: the app's ``ReleaseSettings`` (or dict); its ``app_secrets`` change with the
      switch, in the same commit, health-checked (never before the new release is installed).
    + version: the installed release to serve.
    + site: the ``Site`` (or dict) whose root physicalPath moves; its binding is where the
      health check goes (:func:`health_check`).
    + app_pool: the site's application pool (recycled by the switch).
    + recheck: switch (recycle and health-check) even when nothing differs, e.g. after the
      interpreter the release runs on was upgraded.

    Nothing happens when the release state's ``current`` is ``version``, the site's
    physicalPath is that release's folder and the pool has the app's secrets. Otherwise ONE
    ``Switch-Release`` (:func:`switch_call`); on failure the host restores the previous release
    and secrets and the call fails with the health answer and the new process's stdout log.
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    version = _version(version)
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    environment, diff = secret_changes(app_pool, dict(model.app_secrets), fact)
    if serving(fact, model, site_model.name) == version and not environment and not recheck:
        host.noop(f"site {site_model.name} serves release {version}")
        return
    log_changes(host, f"Will switch site {site_model.name}", [Change(f"site {site_model.name}: release", report.get("current"), version), *diff])
    yield switch_call(model, report, version, site_model, app_pool, environment)


def rollback_target(report: dict, version: Optional[str] = None) -> str:
    """The release folder a rollback goes to.

    * ``version`` given: that installed release. ``1.4.2`` means its newest complete config
      revision (the configuration it last got), ``1.4.2+r1`` its own folder (its first
      configuration), ``1.4.2+r3`` exactly that revision.
    * none: the release state's ``previous``.

    Raises:
        OperationError: no such complete release (the message lists the installed ones), or
            no ``previous``.
    """

    complete = complete_versions(report)
    if version:
        base, number = revision_of(version)
        if number == 1 and version == base:
            found = [name for name in complete if revision_of(name)[0] == version]
        else:
            found = [name for name in complete if name == revision_name(base, number)]
        if not found:
            raise OperationError(f"release {version} is not installed (complete) on this host, so there is nothing to roll back to; "
                                 f"installed: {', '.join(complete) or 'none'}")
        return found[-1]
    previous = report.get("previous")
    if not previous:
        raise OperationError(f"no previous release (current: {report.get('current') or 'none'}); nothing to roll back to")
    if previous not in complete:
        raise OperationError(f"previous release {previous} is no longer installed; name an installed one with --data release_version=... "
                             f"(installed: {', '.join(complete) or 'none'})")
    return previous


@operation()
def release_rolled_back(settings: Any, site: Any, app_pool: str, version: Optional[str] = None):
    """
    Serve an earlier installed release again, health-checked like any switch.

    + settings, site, app_pool: as for :func:`release_switched`.
    + version: the release to go back to (:func:`rollback_target`: ``1.4.2`` is its newest
      config revision, ``1.4.2+r1`` its first configuration); none: the release state's
      ``previous``.

    Idempotent, so a retried pipeline job never undoes a rollback:

    * named: nothing happens when the site already serves that release;
    * unnamed: when the last switch was a rollback (release-state.json's ``rolled_back_from``,
      :func:`state_texts`), it stays at what that rollback went back to: nothing happens when
      the site serves it (else it is switched to it again). To go back further, name the
      version. A release switch clears the record.

    Raises:
        OperationError: the named release is not installed and complete, or (unnamed) there
            is no previous release; raised before any command, so nothing changes.
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    version = _version(version) if version else None
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    current, served = report.get("current"), serving(fact, model, site_model.name)
    if not version and report.get("rolled_back_from") and current in complete_versions(report):
        # The last switch was a rollback: an unnamed one (a retried job) stays there.
        if served == current:
            host.noop(f"site {site_model.name} was rolled back from {report['rolled_back_from']} to {current}; "
                      f"name a version (--data release_version=...) to go further")
            return
        target = current
    else:
        target = rollback_target(report, version)
    if served == target:
        host.noop(f"site {site_model.name} serves release {target}")
        return
    log_changes(host, f"Will roll back site {site_model.name}", [Change(f"site {site_model.name}: release", current, target)])
    yield switch_call(model, {**report, "rollback_from": current}, target, site_model, app_pool)


def removable(model: ReleaseSettings, report: dict, now: Optional[datetime] = None) -> tuple[list[str], list[str], list[str]]:
    """What cleanup removes: ``(old complete versions, incomplete folders, logs)``.

    Keeps the newest ``keep_releases`` complete releases (completion time; a config revision
    counts as one) and always the current and previous one, and the version of every kept
    config revision (it runs that version's venv and app); every incomplete folder goes (``.partial``/``.deleting`` left by an
    interrupted run, or a final name without the completion marker). Logs: beyond the newest
    :data:`LOG_KEEP`, or older than :data:`LOG_MAX_AGE`, except the newest two.
    """

    now = now or datetime.now(timezone.utc)
    versions = report.get("versions") or []
    complete = [e["version"] for e in versions if e.get("complete")]
    keep = {report.get("current"), report.get("previous"), *complete[max(0, len(complete) - model.keep_releases):]}
    keep |= {revision_of(v)[0] for v in keep if v}  # a config revision runs its version's venv and app
    old = [v for v in complete if v not in keep]
    incomplete = [e.get("folder") or e["version"] for e in versions if not e.get("complete")]
    logs = sorted(report.get("logs") or [], key=lambda e: e.get("modified") or "", reverse=True)
    stale_logs = []
    for index, entry in enumerate(logs):
        try:
            modified = datetime.strptime(entry.get("modified") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            modified = now
        if index >= 2 and (index >= LOG_KEEP or now - modified > LOG_MAX_AGE):
            stale_logs.append(entry["name"])
    return old, incomplete, stale_logs


@operation()
def old_releases_removed(settings: Any):
    """
    Keep ``keep_releases`` complete releases; remove older ones (with their artifacts),
    incomplete folders and old stdout logs (:func:`removable`).

    + settings: the app's ``ReleaseSettings`` (or dict).

    One ``Remove-ReleasePaths``, or nothing. A folder loses its completion marker first and is
    renamed to ``.deleting`` before its contents go, so an interrupted delete never leaves a
    folder that looks complete; one holding a reparse point is refused.
    """

    model = validated(ReleaseSettings, settings, "settings")
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    old, incomplete, logs = removable(model, report)
    if not (old or incomplete or logs):
        host.noop(f"{len(complete_versions(report))} release(s) kept under {model.releases_dir} (at most {model.keep_releases})")
        return
    paths = [model.release_dir(v) for v in old] + [f"{model.releases_dir}\\{f}" for f in incomplete]
    paths += [f"{model.root}\\artifacts\\{artifact_name(model, v)}" for v in old if revision_of(v)[0] == v] + [f"{model.logs_dir}\\{n}" for n in logs]
    log_changes(host, f"Will remove old releases of {model.app_name}",
                [Change(f"release {v}", "installed", None) for v in old] + [Change(f"release folder {f}", "incomplete", None) for f in incomplete]
                + [Change(f"log {n}", "kept", None) for n in logs])
    yield remote_call("Remove-ReleasePaths", {"paths": paths, "marker": COMPLETE_MARKER})


def secret_edits(pool: str, secrets: dict[str, Any], fact: dict) -> tuple[list[dict], list[Change]]:
    """``Set-IisConfig`` edits that give pool ``pool`` each secret whose digest differs.

    Only the named variables are touched (never removed: other variables of the pool belong
    to the ``app_pool`` operation, which the site deploy gives the same secrets).
    """

    section = config.section(iis_of(fact), APP_POOLS)
    holder = config.child(config.find_item(section, "add", {"name": pool}), "environmentVariables")
    base = [item_step("add", name=pool), child_step("environmentVariables")]
    edits, diff = [], []
    for name, value in secrets.items():
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        current = config.get_attribute(config.find_item(holder, "add", {"name": name}), "value")
        if current != secret_digest(raw):
            edits.append(set_edit(APP_POOLS, [*base, item_step("add", name=name)], {"value": Secret(raw)}))
            diff.append(Change(f"app pool {pool}: environmentVariables[{name}]", current, "set", secret=True))
    return edits, diff


@operation()
def app_secrets(settings: Any, app_pool: str, site: Any = None):
    """
    Give the app's secrets to its application pool as environment variables.

    + settings: the app's ``ReleaseSettings`` (or dict): ``app_secrets`` are used.
    + app_pool: the pool the app runs in.
    + site: the ``Site`` serving the release: when it serves one, the change is a health-checked
      ``Switch-Release`` to the same release (the new secrets recycle the live pool, so they are
      checked and restored on failure); without a served release, one ``Set-IisConfig``.

    Secrets live in applicationHost.config (readable by administrators only), never in
    web.config, which the pool identity and IIS_IUSRS read (docs/design.md "Releases"). The fact
    holds digests only (``protocol.secret_digest``), so values are compared by digest and sent
    as ``Secret`` (masked in every output).
    """

    model = validated(ReleaseSettings, settings, "settings")
    validated(AppPool, {"name": app_pool}, "app_pool")  # the name is checked like any pool name
    if not model.app_secrets:
        host.noop(f"{model.app_name} has no app secrets")
        return
    fact = host_state(host, release_roots=[model.root])
    edits, diff = secret_edits(app_pool, dict(model.app_secrets), fact)
    if not edits:
        host.noop(f"app pool {app_pool} has the app's {len(model.app_secrets)} secret(s)")
        return
    log_changes(host, f"Will set secrets of app pool {app_pool}", diff)
    site_model = validated(Site, site, "site") if site is not None else None
    current = serving(fact, model, site_model.name) if site_model else None
    if current:
        environment, _ = secret_changes(app_pool, dict(model.app_secrets), fact)
        yield switch_call(model, release_report(fact, model.root), current, site_model, app_pool, environment)
        return
    yield remote_call("Set-IisConfig", {"edits": edits})
