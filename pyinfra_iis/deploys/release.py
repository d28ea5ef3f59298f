"""Release deploys: Python, ACLs, secrets, install, switch and pruning, from ``release_*`` host data.

Host data keys (validated by :class:`ReleaseHostConfig`; ``load_release_config``):

=====================  ======================================================================
``release_app``        ``ReleaseSettings``: app_name, root, python_version, keep_releases,
                       health_check_path, health_deadline, timeouts, app_settings, app_secrets
``release_site``       the ``iis_sites`` name whose root physicalPath serves the release
``release_app_pool``   its application pool (default: the site's ``app_pool``)
``release_python``     ``PythonInstaller``: version ``3.12.7``, source (installer), sha256,
                       target_dir
``release_version``    the version to ship; else ``$PYINFRA_IIS_RELEASE_VERSION``; none: the
                       release steps keep what the host serves
``release_artifact``   the zip on the controller; else ``$PYINFRA_IIS_RELEASE_ARTIFACT``; else
                       ``dist/<app_name>-<version>.zip``
=====================  ======================================================================

``--data release_version=1.4.2`` wins over the environment, which wins over nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pyinfra import host
from pyinfra.api import deploy

from ..facts.host_state import host_data_dict, host_state
from ..models import InventoryError, InventoryReport, Problem, load_host_config
from ..models.base import IisModel
from ..models.host import did_you_mean
from ..models.release import ReleaseSettings
from ..models.site import Site
from ..models.types import ControllerPath, PoolName, ReleaseVersion, SiteName
from ..operations import acl, release
from ..operations.python import PythonInstaller, python_entry, python_install
from ..operations.release import release_report

#: Environment variables a pipeline sets instead of ``--data``.
ENV_VERSION = "PYINFRA_IIS_RELEASE_VERSION"
ENV_ARTIFACT = "PYINFRA_IIS_RELEASE_ARTIFACT"

#: Host data keys read by :class:`ReleaseHostConfig`.
RELEASE_DATA_KEYS = ("release_app", "release_site", "release_app_pool", "release_python", "release_version", "release_artifact")


class ReleaseHostConfig(IisModel):
    """What one host's ``release_*`` data asks for (see the module docstring).

    Cross-check: ``release_python.version`` must be a release of ``release_app.python_version``
    (the wheelhouse is built for that ``x.y``).
    """

    app: ReleaseSettings = Field(alias="release_app")
    site: SiteName = Field(alias="release_site")
    app_pool: Optional[PoolName] = Field(None, alias="release_app_pool")
    python: PythonInstaller = Field(alias="release_python")
    version: Optional[ReleaseVersion] = Field(None, alias="release_version")
    artifact: Optional[ControllerPath] = Field(None, alias="release_artifact")

    @model_validator(mode="after")
    def _python_matches(self) -> "ReleaseHostConfig":
        if self.python.minor != self.app.python_version:
            raise PydanticCustomError("python", "release_python.version {v} is not a {want} release (release_app.python_version)",
                                      {"v": self.python.version, "want": self.app.python_version})
        return self

    def artifact_path(self) -> Optional[Path]:
        """The zip to ship: ``artifact``, else ``dist/<app_name>-<version>.zip``; ``None``
        without a version."""

        if self.version is None:
            return None
        return self.artifact or Path("dist") / f"{self.app.app_name}-{self.version}.zip"


def load_release_config(data: Mapping[str, Any], host_name: str = "host", environ: Mapping[str, str] = os.environ) -> Optional[ReleaseHostConfig]:
    """Validate the ``release_*`` keys of one host's data.

    Args:
        data: the host data (group data merged).
        host_name: for the report.
        environ: where ``PYINFRA_IIS_RELEASE_VERSION`` / ``_ARTIFACT`` are read (default
            ``os.environ``) when the data has no ``release_version`` / ``release_artifact``.

    Returns:
        ``None`` when the host has no ``release_app`` (and no other ``release_*`` key).

    Raises:
        InventoryError: unknown ``release_*`` key (with a did-you-mean) or invalid values; the
            report never echoes values (``app_secrets`` may be among them).
    """

    wanted = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith("release_")}
    if not wanted:
        return None
    problems = [Problem(host_name, key, "unknown release key", f"did you mean {did_you_mean(key, list(RELEASE_DATA_KEYS))}?"
                        if did_you_mean(key, list(RELEASE_DATA_KEYS)) else f"known keys: {', '.join(RELEASE_DATA_KEYS)}")
                for key in wanted if key not in RELEASE_DATA_KEYS]
    if wanted.get("release_version") in (None, "") and environ.get(ENV_VERSION):
        wanted["release_version"] = environ[ENV_VERSION]
    if wanted.get("release_artifact") in (None, "") and environ.get(ENV_ARTIFACT):
        wanted["release_artifact"] = environ[ENV_ARTIFACT]
    wanted = {k: v for k, v in wanted.items() if k in RELEASE_DATA_KEYS and v not in (None, "")}
    result = None
    if not problems:
        try:
            result = ReleaseHostConfig.model_validate(wanted)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                where = ".".join(str(p) for p in error.get("loc", ()))
                problems.append(Problem(host_name, where, error.get("msg", "invalid")))
    if problems:
        raise InventoryError(InventoryReport(hosts=[host_name], problems=problems))
    return result


class ReleaseTarget:
    """A host's release data resolved against its IIS data: the settings, the ``Site`` model
    serving them, the pool name and the pool's principal (``IIS AppPool\\<pool>`` or the
    pool's own identity)."""

    def __init__(self, release: ReleaseHostConfig, site: Site, app_pool: str, principal: str):
        self.release, self.site, self.app_pool, self.principal = release, site, app_pool, principal

    @property
    def settings(self) -> ReleaseSettings:
        return self.release.app


def release_target(current_host: Any = None) -> Optional[ReleaseTarget]:
    """Resolve the current host's ``release_*`` data (``None`` when it has none).

    Raises:
        InventoryError: invalid release data, or ``release_site`` is not an ``iis_sites`` name.
    """

    current_host = current_host or host
    data = host_data_dict(current_host)
    release_config = load_release_config(data, current_host.name)
    if release_config is None:
        return None
    iis = load_host_config(current_host.name, data)
    site = next((s for s in iis.sites if s.name.lower() == release_config.site.lower()), None)
    if site is None:
        guess = did_you_mean(release_config.site, [s.name for s in iis.sites])
        raise InventoryError(InventoryReport(hosts=[current_host.name], problems=[Problem(
            current_host.name, "release_site", f"site {release_config.site!r} is not defined in iis_sites",
            f"did you mean {guess!r}?" if guess else "add the site to iis_sites")]))
    pool_name = release_config.app_pool or site.app_pool
    pool = iis.pool(pool_name)
    principal = pool.principal if pool is not None else f"IIS AppPool\\{pool_name}"
    return ReleaseTarget(release_config, site, pool_name, principal)


def iis_overrides(target: Optional[ReleaseTarget], current_host: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``configure_iis`` so that a converge agrees with the release:
    the app secrets join the pool's environment variables, and the site keeps serving the
    release the host currently serves (from the fact's release state; the inventory's
    physicalPath only until a first release is switched to).

    The app secrets are NOT given to the pool operation: it leaves them alone
    (``release_variables``), so a changed secret never recycles the live release before the
    release steps; the release deploy's ``app_secrets`` changes them with the health-checked
    switch (or with one ``Set-IisConfig`` while no release is served).
    """

    if target is None:
        return {}
    settings = target.settings
    overrides: dict[str, Any] = {"release_variables": {target.app_pool: list(settings.app_secrets)}}
    overrides["pool_attributes"] = {target.app_pool: release.release_pool_attributes(settings)}  # zero-downtime switch
    current = release_report(host_state(current_host or host, release_roots=[settings.root]), settings.root).get("current")
    if current:
        overrides["site_physical_paths"] = {target.site.name: settings.release_dir(current)}
    return overrides


def acl_rules(target: ReleaseTarget) -> list[dict[str, Any]]:
    """The pool identity's access: ReadAndExecute on the release root and the base Python
    install (a venv's python.exe starts the base interpreter; docs/field-facts.md), Modify on the logs
    folder only (HttpPlatformHandler writes the stdout log there)."""

    settings, principal = target.settings, target.principal
    return [
        {"path": target.release.python.target_dir, "principal": principal, "rights": "ReadAndExecute"},
        {"path": settings.root, "principal": principal, "rights": "ReadAndExecute"},
        {"path": settings.logs_dir, "principal": principal, "rights": "Modify"},
    ]


@deploy("Python runtime")
def python_runtime(target: Optional[ReleaseTarget] = None) -> None:
    """The pinned CPython of the host's release data, and the pool's read access to it."""

    target = target or release_target()
    if target is None:
        return
    python_install(name=f"Python {target.release.python.version}", python=target.release.python, app_pools=[target.app_pool])
    rule = acl_rules(target)[0]
    acl.acl(name=f"ACL {rule['path']} {rule['principal']}", rule=rule)


@deploy("Release")
def release_app(target: Optional[ReleaseTarget] = None, with_runtime: bool = True) -> None:
    """Ship ``release_version`` to the current host and serve it once healthy.

    Steps: Python (when ``with_runtime``; an upgrade of the interpreter drains the pool first and
    is followed by a health-checked recycle) → ACLs (root RX, logs Modify) → install (upload
    once, unpack, verify against the controller's manifest, venv, web.config, completion
    marker) → ``Switch-Release`` with the app secrets (health check through the binding; a
    failing host keeps its previous release and secrets and fails) → cleanup. Without a
    version, changed secrets are still applied health-checked to the served release.

    Raises:
        InventoryError: invalid ``release_*`` data.
    """

    target = target or release_target()
    if target is None:
        host.noop("no release_app in the host data: nothing to release")
        return
    settings, release_config = target.settings, target.release
    found = python_entry(host_state(host, python_versions=[release_config.python.minor]), release_config.python.minor)
    upgrade = bool(found.get("installed")) and found.get("version") != release_config.python.version
    if with_runtime:
        python_runtime(target=target)
    for rule in acl_rules(target)[1:]:
        acl.acl(name=f"ACL {rule['path']} {rule['principal']}", rule=rule)
    if release_config.version is None:
        release.app_secrets(name=f"App secrets of {settings.app_name}", settings=settings, app_pool=target.app_pool, site=target.site)
        host.noop(f"no release version given (--data release_version=... or ${ENV_VERSION}): {settings.app_name} keeps its current release")
        return
    version = release_config.version
    release.release_installed(name=f"Install {settings.app_name} {version}", settings=settings, version=version,
                              artifact=str(release_config.artifact_path()), python_exe=release_config.python.python_exe,
                              app_pool=target.app_pool)
    release.release_switched(name=f"Switch {target.site.name} to {version}", settings=settings, version=version,
                             site=target.site, app_pool=target.app_pool, recheck=upgrade and with_runtime)
    release.old_releases_removed(name=f"Keep {settings.keep_releases} releases of {settings.app_name}", settings=settings)


@deploy("Rollback")
def rollback_release(target: Optional[ReleaseTarget] = None) -> None:
    """Serve the previous release of the current host again (health-checked like any switch).

    Raises:
        InventoryError: invalid ``release_*`` data.
    """

    target = target or release_target()
    if target is None:
        host.noop("no release_app in the host data: nothing to roll back")
        return
    release.release_rolled_back(name=f"Roll back {target.site.name}", settings=target.settings, site=target.site, app_pool=target.app_pool)
