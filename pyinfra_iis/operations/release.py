"""Releases on a host: ``Install-Release``, ``Switch-Release``, ``Remove-OldReleases`` and the
app's secrets as application pool environment variables (``docs/remote-functions.md``,
"Releases"; design.md "Releases").

Host layout under a release root (``ReleaseSettings.root``)::

    <root>\\artifacts\\<app>-<version>.zip   uploaded once (the connector skips a matching hash)
    <root>\\releases\\<version>\\            complete releases only (built in <version>.partial)
    <root>\\logs\\                           stdout logs
    <root>\\release-state.json               current / previous / history

Every operation reads the ``releases`` part of ``Get-HostState`` (asked with the root in
``release_roots``) and yields nothing when the host is already so.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any, Optional

from pydantic import TypeAdapter, ValidationError
from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.api.exceptions import OperationError, OperationValueError

from ..facts.host_state import host_state
from ..iis import config
from ..iis.defaults import APP_POOLS, SITES
from ..iis.diff import Change, log_changes
from ..iis.edits import child_step, item_step, set_edit
from ..models.app_pool import AppPool
from ..models.release import ReleaseSettings
from ..models.site import Site
from ..models.types import ReleaseVersion
from ..protocol import Secret, remote_call, secret_digest
from ..release.manifest import MANIFEST_NAME, Manifest
from ..release.webconfig import render_web_config
from ._common import controller_file, iis_of, validated, warn

_VERSION = TypeAdapter(ReleaseVersion)

#: ``expect_status`` of the health check: FastAPI's /healthz answers 200 when healthy.
HEALTHY_STATUS = 200


# --- Reading the fact ----------------------------------------------------------------------


def release_report(fact: dict, root: str) -> dict:
    """Return the fact's ``releases[root]`` (root compared ignoring case; ``{}`` when absent).

    Shape: ``{"current": str|None, "previous": str|None, "versions": [{"version", "complete",
    "web_config_sha256"}], "history": [...]}``.
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


def health_check(site: Site, settings: ReleaseSettings) -> dict[str, Any]:
    """The ``health`` argument of ``Switch-Release``: the health path through the site's binding.

    The first https binding is used when there is one (TLS through HTTP.sys, as clients see
    it), else the first http binding. The connection goes to the binding's IP (``127.0.0.1``
    for ``*``) and port; ``Host`` (and SNI) is the binding's host name, a wildcard's ``*``
    replaced by ``health``, or ``localhost`` for a binding that answers any host name.

    Returns:
        ``{"url", "host", "deadline_seconds", "expect_status"}`` (deadline from
        ``settings.health_deadline``, seconds).

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
    return {
        "url": f"{binding.protocol}://{address}:{port}{settings.health_check_path}",
        "host": name,
        "deadline_seconds": settings.health_deadline.seconds,
        "expect_status": HEALTHY_STATUS,
    }


def _version(version: Any) -> str:
    try:
        return _VERSION.validate_python(version)
    except ValidationError:
        raise OperationValueError(f"argument 'version': {version!r} is not a release version (PEP 440, e.g. 1.4.2)") from None


# --- Operations ---------------------------------------------------------------------------


def web_config_drift(report: dict, model: ReleaseSettings, version: str, artifact: Any) -> Optional[str]:
    """Why the installed release ``version`` has another web.config than the inventory renders
    now, or ``None`` when they are the same (or the host did not report a hash).

    A release's web.config is written once, by ``Install-Release``: it carries the non-secret
    app settings, the HttpPlatformHandler timeouts and the process line. Rewriting it in place
    would restart the app with new settings and no health check, so a changed setting takes
    effect with the next release version; this says so instead of reporting "no change".

    Without the artifact on the controller (an installed release does not need it) there is
    nothing to render, and so no answer: ``None``.

    Raises:
        OperationValueError: the artifact is not a release artifact.
    """

    entry = next((e for e in report.get("versions") or [] if e.get("version") == version and e.get("complete")), None)
    installed = (entry or {}).get("web_config_sha256")
    if not installed:
        return None
    try:
        local = controller_file(Path(artifact), "artifact")
    except OperationValueError:  # an installed release needs no artifact; without it, no check
        return None
    rendered = render_web_config(model, model.release_dir(version), manifest=read_manifest(local))
    if hashlib.sha256(rendered.encode("utf-8")).hexdigest() == str(installed).lower():
        return None
    return (f"release {version} was installed with another web.config than this inventory renders now (release_app "
            f"settings such as app_settings or timeouts changed since): it keeps running as installed; ship the "
            f"changed settings as a new release version")


@operation()
def release_installed(settings: Any, version: str, artifact: Any, python_exe: str):
    """
    Put one release on the host, complete, without switching traffic to it.

    + settings: the app's ``ReleaseSettings`` (or dict; host data ``release_app``).
    + version: the release version (``1.4.2``), also its folder name.
    + artifact: the release zip on the controller (``python -m pyinfra_iis.release build``).
    + python_exe: the base interpreter on the host (``C:\\Program Files\\Python312\\python.exe``).

    Nothing happens when the fact lists ``version`` as a complete release under the root (with
    a warning when its web.config differs from the one rendered now: :func:`web_config_drift`).
    Otherwise the zip is uploaded to ``<root>\\artifacts\\<app>-<version>.zip`` (skipped by the
    connector when the hash matches) and ``Install-Release`` unpacks it into
    ``<version>.partial``, verifies every file against the manifest, builds the venv offline
    from the wheelhouse, writes the web.config rendered here (``render_web_config``: no
    secrets) and renames the folder. The artifact's manifest must name this app, version and
    Python version.

    **Example:**

    .. code:: python

        release_installed(name="Release 1.4.2", settings=settings, version="1.4.2",
                          artifact="dist/api-1.4.2.zip", python_exe=r"C:\\Program Files\\Python312\\python.exe")
    """

    model = validated(ReleaseSettings, settings, "settings")
    version = _version(version)
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    if version in complete_versions(report):
        drift = web_config_drift(report, model, version, artifact)
        if drift:
            warn([drift])
        host.noop(f"release {version} is installed in {model.release_dir(version)}")
        return
    local = controller_file(Path(artifact), "artifact")
    manifest = read_manifest(local)
    check_manifest(manifest, model, version, local)
    destination = f"{model.root}\\artifacts\\{artifact_name(model, version)}"
    web_config = render_web_config(model, model.release_dir(version), manifest=manifest)
    log_changes(host, f"Will install release {version}", [Change(f"release {model.app_name}", None, f"{version} in {model.release_dir(version)}")])
    yield FileUploadCommand(str(local), destination)
    yield remote_call("Install-Release", {"root": model.root, "artifact": destination, "version": version,
                                          "python": python_exe, "web_config": web_config})


@operation()
def release_switched(settings: Any, version: str, site: Any, app_pool: str):
    """
    Move the site's traffic to an installed release, only once it answers healthy.

    + settings: the app's ``ReleaseSettings`` (or dict).
    + version: the installed release to serve.
    + site: the ``Site`` (or dict) whose root physicalPath moves; its binding is where the
      health check goes (:func:`health_check`).
    + app_pool: the site's application pool (recycled by the switch).

    Nothing happens when the release state's ``current`` is ``version`` and the site's
    physicalPath is that release's folder. Otherwise ONE ``Switch-Release``: it sets the
    physicalPath, recycles the pool and requests the health URL through the IIS binding until
    200 or ``health_deadline``; on failure the host restores the previous release and the
    call fails with the health answer and the stdout log tail, which pyinfra prints as the
    host's error.
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    version = _version(version)
    fact = host_state(host, release_roots=[model.root])
    report = release_report(fact, model.root)
    if serving(fact, model, site_model.name) == version:
        host.noop(f"site {site_model.name} serves release {version}")
        return
    log_changes(host, f"Will switch site {site_model.name}", [Change(f"site {site_model.name}: release", report.get("current"), version)])
    yield remote_call("Switch-Release", {"root": model.root, "version": version, "site": site_model.name,
                                         "app_pool": app_pool, "health": health_check(site_model, model)})


@operation()
def release_rolled_back(settings: Any, site: Any, app_pool: str):
    """
    Serve the previous release again (the release state's ``previous``), health-checked like
    any switch.

    + settings, site, app_pool: as for :func:`release_switched`.

    Running it twice goes back and forth between the last two releases (a switch makes the
    current release the previous one). To go to a given installed version, run the release
    deploy with that version instead.

    Raises:
        OperationError: the host has no previous release to go back to.
    """

    model = validated(ReleaseSettings, settings, "settings")
    site_model = validated(Site, site, "site")
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    previous = report.get("previous")
    if not previous:
        raise OperationError(f"no previous release under {model.root} (current: {report.get('current') or 'none'}); nothing to roll back to")
    if previous not in complete_versions(report):
        raise OperationError(f"previous release {previous} is no longer installed under {model.releases_dir}")
    log_changes(host, f"Will roll back site {site_model.name}", [Change(f"site {site_model.name}: release", report.get("current"), previous)])
    yield remote_call("Switch-Release", {"root": model.root, "version": previous, "site": site_model.name,
                                         "app_pool": app_pool, "health": health_check(site_model, model)})


@operation()
def old_releases_removed(settings: Any):
    """
    Keep ``keep_releases`` complete releases; remove older ones and stale ``.partial`` folders.

    + settings: the app's ``ReleaseSettings`` (or dict).

    Nothing happens when the fact lists at most ``keep_releases`` complete releases and no
    incomplete one. ``Remove-OldReleases`` never removes the current or previous release.
    """

    model = validated(ReleaseSettings, settings, "settings")
    report = release_report(host_state(host, release_roots=[model.root]), model.root)
    versions = report.get("versions") or []
    complete = complete_versions(report)
    partial = [entry["version"] for entry in versions if not entry.get("complete")]
    if len(complete) <= model.keep_releases and not partial:
        host.noop(f"{len(complete)} release(s) kept under {model.releases_dir} (at most {model.keep_releases})")
        return
    keep = {report.get("current"), report.get("previous")}
    old = [v for v in complete[: max(0, len(complete) - model.keep_releases)] if v not in keep]
    log_changes(host, f"Will remove old releases of {model.app_name}",
                [Change(f"release {v}", "installed", None) for v in old] + [Change(f"release {v}.partial", "incomplete", None) for v in partial])
    yield remote_call("Remove-OldReleases", {"root": model.root, "keep": model.keep_releases})


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
def app_secrets(settings: Any, app_pool: str):
    """
    Give the app's secrets to its application pool as environment variables.

    + settings: the app's ``ReleaseSettings`` (or dict): ``app_secrets`` are used.
    + app_pool: the pool the app runs in.

    Secrets live in applicationHost.config (readable by administrators only), never in
    web.config, which the pool identity and IIS_IUSRS read (design.md "Releases"). The fact
    holds digests only (``protocol.secret_digest``), so values are compared by digest and sent
    as ``Secret`` (masked in every output). One ``Set-IisConfig``, or nothing.
    """

    model = validated(ReleaseSettings, settings, "settings")
    validated(AppPool, {"name": app_pool}, "app_pool")  # the name is checked like any pool name
    if not model.app_secrets:
        host.noop(f"{model.app_name} has no app secrets")
        return
    edits, diff = secret_edits(app_pool, dict(model.app_secrets), host_state(host))
    if not edits:
        host.noop(f"app pool {app_pool} has the app's {len(model.app_secrets)} secret(s)")
        return
    log_changes(host, f"Will set secrets of app pool {app_pool}", diff)
    yield remote_call("Set-IisConfig", {"edits": edits})
