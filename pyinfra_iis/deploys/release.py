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
``release_apps``       several apps on the host, instead of ``release_app``/``_site``/``_app_pool``:
                       a list of ``{app, site, app_pool?, version?, artifact?}`` (each its own
                       app_name, root, site and pool; ``load_release_configs``)
``release_only``       the ``app_name`` a run is limited to (``--data release_only=api``)
=====================  ======================================================================

``--data release_version=1.4.2`` wins over the environment, which wins over nothing. With
several apps, the version goes to the one named by ``release_only`` (or each entry's own).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import OperationValueError

from ..facts.host_state import host_data_dict, host_state
from ..models import InventoryError, InventoryReport, Problem, load_host_config
from ..models.base import IisModel
from ..models.host import did_you_mean
from ..models.release import ReleaseSettings
from ..models.site import Site
from ..models.types import ControllerPath, PoolName, ReleaseVersion, SiteName
from ..operations import acl, release, rights
from ..operations._common import controller_file
from ..operations.python import PythonInstaller, python_entry, python_install
from ..operations.release import release_report
from ..operations import arr as arr_ops
from .arr import arr_release, check_server_proxy

#: Environment variables a pipeline sets instead of ``--data``.
ENV_VERSION = "PYINFRA_IIS_RELEASE_VERSION"
ENV_ARTIFACT = "PYINFRA_IIS_RELEASE_ARTIFACT"

#: Host data keys read by :class:`ReleaseHostConfig`.
RELEASE_MODEL_KEYS = ("release_app", "release_site", "release_app_pool", "release_python", "release_version", "release_artifact")
#: Every ``release_*`` host data key: the one-app keys, ``release_apps`` (several apps) and
#: ``release_only`` (the app a run is limited to; :func:`load_release_configs`).
RELEASE_DATA_KEYS = (*RELEASE_MODEL_KEYS, "release_apps", "release_only")
#: Keys of one ``release_apps`` entry: the one-app keys without ``release_`` (``release_python``
#: is shared by every app of the host).
APP_ENTRY_KEYS = ("app", "site", "app_pool", "version", "artifact")


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
    #: In a rollback run, ``release_version`` is the release to go back to: it is moved here
    #: (``version`` stays ``None``, so nothing is shipped and no artifact is needed).
    rollback_to: Optional[ReleaseVersion] = Field(None, exclude=True)

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


def rollback_run(argv: Optional[list[str]] = None) -> bool:
    """Whether this pyinfra command runs ``deploys/rollback.py`` (``sys.argv``). The inventory
    check runs before the deploy file is loaded, and in a rollback ``release_version`` names an
    installed release, not an artifact to check on the controller."""

    import sys

    return any(Path(arg).name == "rollback.py" for arg in (sys.argv if argv is None else argv)[1:])


def as_rollback(config: ReleaseHostConfig) -> ReleaseHostConfig:
    """``config`` for a rollback: its version becomes ``rollback_to``, nothing is shipped."""

    return config.model_copy(update={"rollback_to": config.version, "version": None, "artifact": None})


def revision_problems(host_name: str, field: str, config: ReleaseHostConfig) -> list[Problem]:
    """A version to ship that is a config revision's name (``1.4.2+r2``): those are made by the
    release deploy from changed settings, never shipped."""

    from ..operations.release import revision_of

    if config.version is None or revision_of(config.version) == (config.version, 1):
        return []
    base = revision_of(config.version)[0]
    return [Problem(host_name, field, f"{config.version} names a config revision of {base}, which the release deploy makes, not an artifact",
                    f"release {base} (changed app_settings make the revision), or roll back to {config.version} with deploys/rollback.py")]


def load_release_config(data: Mapping[str, Any], host_name: str = "host", environ: Mapping[str, str] = os.environ,
                        rollback: Optional[bool] = None) -> Optional[ReleaseHostConfig]:
    """Validate the ``release_*`` keys of one host's data.

    Args:
        data: the host data (group data merged).
        host_name: for the report.
        environ: where ``PYINFRA_IIS_RELEASE_VERSION`` / ``_ARTIFACT`` are read (default
            ``os.environ``) when the data has no ``release_version`` / ``release_artifact``.
        rollback: a rollback run (default :func:`rollback_run`): the environment is not read
            and the version is the release to go back to (:func:`as_rollback`).

    Returns:
        ``None`` when the host has no ``release_app`` (and no other ``release_*`` key). With
        ``release_apps`` (all validated here too: :func:`load_release_configs`): the app of the
        run when there is one (``release_only``, or a one-entry list), so the inventory check
        checks its site, pool and artifact; else ``None``.

    Raises:
        InventoryError: unknown ``release_*`` key (with a did-you-mean) or invalid values; the
            report never echoes values (``app_secrets`` may be among them).
    """

    rollback = rollback_run() if rollback is None else rollback
    environ = {} if rollback else environ
    wanted = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith("release_")}
    if not wanted:
        return None
    if "release_apps" in wanted:
        several = load_release_configs(data, host_name, environ, rollback)
        return several[0] if len(several) == 1 else None
    problems = [Problem(host_name, key, "unknown release key", f"did you mean {did_you_mean(key, list(RELEASE_DATA_KEYS))}?"
                        if did_you_mean(key, list(RELEASE_DATA_KEYS)) else f"known keys: {', '.join(RELEASE_DATA_KEYS)}")
                for key in wanted if key not in RELEASE_DATA_KEYS]
    if wanted.get("release_version") in (None, "") and environ.get(ENV_VERSION):
        wanted["release_version"] = environ[ENV_VERSION]
    if wanted.get("release_artifact") in (None, "") and environ.get(ENV_ARTIFACT):
        wanted["release_artifact"] = environ[ENV_ARTIFACT]
    wanted = {k: v for k, v in wanted.items() if k in RELEASE_MODEL_KEYS and v not in (None, "")}
    result = None
    if not problems:
        try:
            result = ReleaseHostConfig.model_validate(wanted)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                where = ".".join(str(p) for p in error.get("loc", ()))
                problems.append(Problem(host_name, where, error.get("msg", "invalid")))
    if not problems and result is not None and not rollback:
        problems += revision_problems(host_name, "release_version", result)
    if problems:
        raise InventoryError(InventoryReport(hosts=[host_name], problems=problems))
    return as_rollback(result) if rollback and result is not None else result


def _entry_problems(host_name: str, where: str, error: dict) -> Problem:
    loc = [str(p) for p in error.get("loc", ())]
    if loc and loc[0].startswith("release_") and loc[0] != "release_python":
        loc[0] = f"{where}.{loc[0][len('release_'):]}"
    return Problem(host_name, ".".join(loc) or where, error.get("msg", "invalid"))


def _nested(a: str, b: str) -> bool:
    a, b = a.rstrip("\\").lower() + "\\", b.rstrip("\\").lower() + "\\"
    return a.startswith(b) or b.startswith(a)


def load_release_configs(data: Mapping[str, Any], host_name: str = "host", environ: Mapping[str, str] = os.environ,
                         rollback: Optional[bool] = None) -> list[ReleaseHostConfig]:
    """Validate the release data of one host: one app (``release_app`` ...) or several
    (``release_apps``); return the apps this run releases, in data order.

    ``release_apps`` is a list of ``{"app": ReleaseSettings, "site", "app_pool"?, "version"?,
    "artifact"?}`` (the one-app keys without ``release_``; ``release_python`` is shared). Each
    app needs its own ``app_name``, ``root`` (not inside another's), site and pool: a switch moves
    the site's root physicalPath and recycles the pool, and the app secrets are the pool's
    environment variables. (The pools are compared by :func:`release_targets`, which knows each
    site's default pool.)

    ``release_only`` (e.g. ``--data release_only=api``) limits the run to the app of that
    ``app_name``. ``release_version`` / ``release_artifact`` (or ``$PYINFRA_IIS_RELEASE_VERSION``
    / ``_ARTIFACT``) apply to the one app of the run: with several, name it with
    ``release_only`` or give each entry its own ``version``. ``rollback``: as for
    :func:`load_release_config`.

    Raises:
        InventoryError: every problem found, each naming the host, the field (e.g.
            ``release_apps[1].root``) and the fix; values are never echoed.
    """

    rollback = rollback_run() if rollback is None else rollback
    environ = {} if rollback else environ
    if "release_apps" not in data:
        config = load_release_config(data, host_name, environ, rollback)
        only = data.get("release_only")
        if config is not None and only not in (None, "") and only != config.app.app_name:
            raise InventoryError(InventoryReport(hosts=[host_name], problems=[Problem(
                host_name, "release_only", f"this host releases {config.app.app_name!r}, not {only!r}",
                f"use release_only={config.app.app_name} or leave it out")]))
        return [config] if config is not None else []
    problems: list[Problem] = []

    def problem(field: str, reason: str, fix: Optional[str] = None) -> None:
        problems.append(Problem(host_name, field, reason, fix))

    for key in data:
        if isinstance(key, str) and key.startswith("release_") and key not in RELEASE_DATA_KEYS:
            guess = did_you_mean(key, list(RELEASE_DATA_KEYS))
            problem(key, "unknown release key", f"did you mean {guess}?" if guess else f"known keys: {', '.join(RELEASE_DATA_KEYS)}")
    single = [key for key in ("release_app", "release_site", "release_app_pool") if data.get(key) not in (None, "")]
    if single:
        problem("release_apps", f"given together with {', '.join(single)}",
                "give one app with release_app/release_site/release_app_pool, or several as release_apps entries, not both")
    apps = data.get("release_apps")
    if not isinstance(apps, (list, tuple)) or not apps:
        problem("release_apps", "expected a non-empty list of {app, site, app_pool?, version?, artifact?}",
                "list one entry per app, e.g. [{'app': {...}, 'site': 'api'}]")
        apps = []
    version = data.get("release_version") or environ.get(ENV_VERSION) or None
    artifact = data.get("release_artifact") or environ.get(ENV_ARTIFACT) or None
    only = data.get("release_only") or None
    entries: list[tuple[int, dict]] = []
    for index, entry in enumerate(apps):
        where = f"release_apps[{index}]"
        if not isinstance(entry, Mapping):
            problem(where, "expected a mapping {app, site, app_pool?, version?, artifact?}")
            continue
        for key in entry:
            if key not in APP_ENTRY_KEYS:
                guess = did_you_mean(str(key), list(APP_ENTRY_KEYS))
                problem(f"{where}.{key}", "unknown key", f"did you mean {guess}?" if guess else f"known keys: {', '.join(APP_ENTRY_KEYS)}")
        entries.append((index, {f"release_{k}": v for k, v in entry.items() if k in APP_ENTRY_KEYS and v not in (None, "")}))
    names = {i: (e.get("release_app") or {}).get("app_name") if isinstance(e.get("release_app"), Mapping) else None for i, e in entries}
    if only is not None and only not in names.values():
        guess = did_you_mean(str(only), [n for n in names.values() if n])
        problem("release_only", f"no app named {only!r} in release_apps", f"did you mean {guess}?" if guess else
                f"name one of: {', '.join(str(n) for n in names.values() if n)}")
    chosen = [i for i, _ in entries if only is None or names[i] == only]
    if version is not None and len(chosen) > 1:
        problem("release_version", f"{len(chosen)} apps in release_apps: the version names no app",
                "limit the run to one app with --data release_only=<app_name>, or give each entry its own version")
    configs: dict[int, ReleaseHostConfig] = {}
    for index, values in entries:
        values = {**values, "release_python": data.get("release_python")}
        if index in chosen and len(chosen) == 1:
            values.update({k: v for k, v in (("release_version", version), ("release_artifact", artifact)) if v is not None})
        try:
            configs[index] = ReleaseHostConfig.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            problems.extend(_entry_problems(host_name, f"release_apps[{index}]", error) for error in exc.errors(include_input=False, include_url=False))
    seen: list[tuple[int, ReleaseHostConfig]] = []
    for index, config in configs.items():
        where = f"release_apps[{index}]"
        for other, earlier in seen:
            name = f"release_apps[{other}] ({earlier.app.app_name})"
            if config.app.app_name == earlier.app.app_name:
                problem(f"{where}.app.app_name", f"{config.app.app_name!r} is also the app of release_apps[{other}]",
                        "give each app its own app_name (artifacts and release_only go by it)")
            if _nested(config.app.root, earlier.app.root):
                problem(f"{where}.app.root", f"{config.app.root} is, holds or lies inside the root of {name}",
                        "give each app its own folder, e.g. C:\\sites\\<app_name>")
            if config.site.lower() == earlier.site.lower():
                problem(f"{where}.site", f"site {config.site!r} already serves {name}: a switch moves the site's root physicalPath",
                        "give each app its own site in iis_sites")
            if config.app_pool and earlier.app_pool and config.app_pool.lower() == earlier.app_pool.lower():
                problem(f"{where}.app_pool", f"app pool {config.app_pool!r} already runs {name}",
                        "give each app its own pool in iis_app_pools (a switch recycles it; app secrets are its variables)")
        seen.append((index, config))
    if not rollback:
        for index in chosen:
            if index in configs:
                problems += revision_problems(host_name, f"release_apps[{index}].version", configs[index])
    if problems:
        raise InventoryError(InventoryReport(hosts=[host_name], problems=problems))
    return [as_rollback(configs[i]) if rollback else configs[i] for i in chosen]


class ReleaseTarget:
    """A host's release data resolved against its IIS data: the settings, the ``Site`` model
    serving them, the pool name and the pool's principal (``IIS AppPool\\<pool>`` or the
    pool's own identity)."""

    def __init__(self, release: ReleaseHostConfig, site: Site, app_pool: str, principal: str):
        self.release, self.site, self.app_pool, self.principal = release, site, app_pool, principal

    @property
    def settings(self) -> ReleaseSettings:
        return self.release.app


def release_targets(current_host: Any = None, environ: Mapping[str, str] = os.environ, rollback: Optional[bool] = None,
                    data: Optional[Mapping[str, Any]] = None) -> list[ReleaseTarget]:
    """Resolve the current host's release data (:func:`load_release_configs`): one
    :class:`ReleaseTarget` per app of this run, in data order (``[]`` when it has none).

    Args:
        current_host: the pyinfra host (default: the current one).
        environ: where ``$PYINFRA_IIS_RELEASE_VERSION`` / ``_ARTIFACT`` are read.
        rollback: a rollback run (default :func:`rollback_run`; the rollback deploy passes
            ``True``): see :func:`load_release_config`.
        data: the host data to read (default: the host's own).

    Raises:
        InventoryError: invalid release data, a release site that is not an ``iis_sites``
            name, or two apps run by one application pool.
    """

    current_host = host if current_host is None else current_host
    data = host_data_dict(current_host) if data is None else data
    configs = load_release_configs(data, current_host.name, environ, rollback)
    if not configs:
        return []
    iis = load_host_config(current_host.name, data)
    several = "release_apps" in data
    targets, problems = [], []
    for index, release_config in enumerate(configs):
        prefix = f"release_apps[{index}]." if several else "release_"
        site = next((s for s in iis.sites if s.name.lower() == release_config.site.lower()), None)
        if site is None:
            guess = did_you_mean(release_config.site, [s.name for s in iis.sites])
            problems.append(Problem(current_host.name, f"{prefix}site", f"site {release_config.site!r} is not defined in iis_sites",
                                    f"did you mean {guess!r}?" if guess else "add the site to iis_sites"))
            continue
        pool_name = release_config.app_pool or site.app_pool
        pool = iis.pool(pool_name)
        principal = pool.principal if pool is not None else f"IIS AppPool\\{pool_name}"
        for other in targets:
            if other.app_pool.lower() == pool_name.lower():
                problems.append(Problem(current_host.name, f"{prefix}app_pool", f"app pool {pool_name!r} already runs {other.settings.app_name} "
                                        f"(site {other.site.name})", "give each app its own pool (a switch recycles it; app secrets are its variables)"))
        check_server_proxy(data, release_config.app, current_host.name)  # ARR mode: iis_server.proxy must agree (deploys/arr.py)
        targets.append(ReleaseTarget(release_config, site, pool_name, principal))
    if problems:
        raise InventoryError(InventoryReport(hosts=[current_host.name], problems=problems))
    return targets


def declared_release_targets(current_host: Any = None) -> list[ReleaseTarget]:
    """Every app the host's data declares, whatever this run releases: ``release_only``, the
    version and the artifact are ignored (they do not change where an app lives or which pool
    runs it). The record of granted rights keeps what these name, so a run that releases one
    app never revokes another's rights (:func:`pyinfra_iis.operations.rights.inventory_grants`).

    Raises:
        InventoryError: as :func:`release_targets`.
    """

    current_host = host if current_host is None else current_host
    data = {key: value for key, value in host_data_dict(current_host).items()
            if key not in ("release_only", "release_version", "release_artifact")}
    if isinstance(data.get("release_apps"), (list, tuple)):
        data["release_apps"] = [{k: v for k, v in entry.items() if k not in ("version", "artifact")} if isinstance(entry, Mapping) else entry
                                for entry in data["release_apps"]]
    return release_targets(current_host, environ={}, rollback=True, data=data)


def release_target(current_host: Any = None, environ: Mapping[str, str] = os.environ) -> Optional[ReleaseTarget]:
    """The first app of :func:`release_targets` (``None`` when the host has none): for hosts
    with one app.

    Raises:
        InventoryError: as :func:`release_targets`.
    """

    targets = release_targets(current_host, environ)
    return targets[0] if targets else None


def iis_overrides(target: Any, current_host: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``configure_iis`` so that a converge agrees with the release(s)
    (``target``: a :class:`ReleaseTarget`, a list of them, or ``None``):
    the app secrets join the pool's environment variables, and the site keeps serving the
    release the host currently serves (from the fact's release state; the inventory's
    physicalPath only until a first release is switched to).

    The app secrets are NOT given to the pool operation: it leaves them alone
    (``release_variables``), so a changed secret never recycles the live release before the
    release steps; the release deploy's ``app_secrets`` changes them with the health-checked
    switch (or with one ``Set-IisConfig`` while no release is served).
    """

    targets = [t for t in (target if isinstance(target, (list, tuple)) else [target]) if t is not None]
    if not targets:
        return {}
    overrides: dict[str, Any] = {"release_variables": {}}
    fact = host_state(host if current_host is None else current_host, release_roots=[t.settings.root for t in targets])
    for one in targets:
        settings = one.settings
        overrides["release_variables"][one.app_pool] = list(settings.app_secrets)
        if settings.mode == "arr":  # ARR mode: the site's root is the empty wwwroot, the app runs as services (deploys/arr.py)
            overrides.setdefault("site_physical_paths", {})[one.site.name] = arr_ops.wwwroot(settings)
            continue
        overrides.setdefault("pool_attributes", {})[one.app_pool] = release.release_pool_attributes(settings)  # zero-downtime switch
        current = release_report(fact, settings.root).get("current")
        if current:
            overrides.setdefault("site_physical_paths", {})[one.site.name] = settings.release_dir(current)
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
def python_runtime(target: Optional[ReleaseTarget] = None, targets: Optional[list[ReleaseTarget]] = None) -> None:
    """The pinned CPython of the host's release data, and the pools' read access to it.

    ``target``: one app; ``targets``: several (one install for all: they share
    ``release_python``, and two installs planned from the same fact would both run); neither:
    every app of the host data."""

    targets = [target] if target is not None else (targets if targets is not None else release_targets())
    if not targets:
        return
    python_install(name=f"Python {targets[0].release.python.version}", python=targets[0].release.python, app_pools=[t.app_pool for t in targets])
    for one in targets:
        rule = acl_rules(one)[0]
        acl.acl(name=f"ACL {rule['path']} {rule['principal']}", rule=rule)



@deploy("Release")
def release_app(target: Optional[ReleaseTarget] = None, with_runtime: bool = True, recheck_upgrade: Optional[bool] = None) -> None:
    """Ship ``release_version`` to the current host and serve it once healthy.

    Steps: Python (when ``with_runtime``; an upgrade of the interpreter drains the pool first and
    is followed by a health-checked recycle) → ACLs (root RX, logs Modify) → install (upload
    once, unpack, verify against the controller's manifest, venv, web.config, completion
    marker) → config revision when the installed version's web.config differs from today's
    (``<version>+r<N>``, :func:`pyinfra_iis.operations.release.config_revision`) →
    ``Switch-Release`` to that folder with the app secrets (health check through the binding; a
    failing host keeps its previous release and secrets and fails) → cleanup. Without a
    version, the served version gets a config revision when today's ``app_settings`` differ and
    its artifact is on the controller (:func:`served_revision`), and changed secrets are still
    applied health-checked to the served release.

    ``recheck_upgrade``: recycle and health-check the served release after a Python upgrade
    (default: ``with_runtime``; :func:`release_all` installs Python for every app first).

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
    for rule in rights.release_folder_rules(target):
        acl.acl(name=f"ACL {rule['path']} {rule['principal']}", rule=rule, create=False)
    rights.granted_rights(name="Granted rights: revoke what the inventory no longer names")
    if release_config.version is None and settings.mode == "arr":  # ARR mode: secrets live in the service XML, not the pool
        arr_release(target, None)
        return
    if release_config.version is None:
        revised = served_revision(target)
        if revised is not None:  # today's app_settings differ from the served release's: a config revision
            base, artifact, folder = revised
            release.release_revised(name=f"Config of {settings.app_name} {base}", settings=settings, version=base, artifact=artifact,
                                    app_pool=target.app_pool)
            release.release_switched(name=f"Switch {target.site.name} to {folder}", settings=settings, version=folder,
                                     site=target.site, app_pool=target.app_pool)
            return
        release.app_secrets(name=f"App secrets of {settings.app_name}", settings=settings, app_pool=target.app_pool, site=target.site)
        host.noop(f"no release version given (--data release_version=... or ${ENV_VERSION}): {settings.app_name} keeps its current release")
        return
    version = release_config.version
    if settings.mode == "arr":  # ARR reverse-proxy mode: install, then blue/green services (deploys/arr.py)
        release.release_installed(name=f"Install {settings.app_name} {version}", settings=settings, version=version,
                                  artifact=str(release_config.artifact_path()), python_exe=release_config.python.python_exe,
                                  app_pool=target.app_pool)
        arr_release(target, version)
        rights.granted_rights(name="Granted rights: record the release folders")  # created by the install, the service account's ACLs
        release.old_releases_removed(name=f"Keep {settings.keep_releases} releases of {settings.app_name}", settings=settings)
        return
    release.release_installed(name=f"Install {settings.app_name} {version}", settings=settings, version=version,
                              artifact=str(release_config.artifact_path()), python_exe=release_config.python.python_exe,
                              app_pool=target.app_pool)
    rights.granted_rights(name="Granted rights: record the release folders")  # the install created them with the pool's ACL
    folder = config_folder(target, version)
    release.release_revised(name=f"Config of {settings.app_name} {version}", settings=settings, version=version,
                            artifact=str(release_config.artifact_path()), app_pool=target.app_pool)
    release.release_switched(name=f"Switch {target.site.name} to {folder}", settings=settings, version=folder,
                             site=target.site, app_pool=target.app_pool,
                             recheck=upgrade and (with_runtime if recheck_upgrade is None else recheck_upgrade))
    release.old_releases_removed(name=f"Keep {settings.keep_releases} releases of {settings.app_name}", settings=settings)


def config_folder(target: ReleaseTarget, version: str) -> str:
    """The release folder that serves ``version`` with today's settings: ``version`` or a config
    revision ``<version>+r<N>`` (:func:`pyinfra_iis.operations.release.config_revision`; an
    unreadable artifact is reported by the ``release_revised`` operation, ``version`` here)."""

    settings = target.settings
    report = release_report(host_state(host, release_roots=[settings.root]), settings.root)
    try:
        return release.config_revision(report, settings, version, str(target.release.artifact_path()))[0]
    except OperationValueError:
        return version


def served_revision(target: ReleaseTarget) -> Optional[tuple[str, str, str]]:
    """Without a version to ship: ``(version, artifact, folder)`` when the release the site
    serves needs another config revision for today's ``app_settings`` (or its earlier
    folder again), else ``None``.

    Only when that version's artifact is on the controller (``release_artifact`` /
    ``$PYINFRA_IIS_RELEASE_ARTIFACT``, else ``dist/<app_name>-<version>.zip``) and is that
    version's (its manifest names the entry point): without it the host keeps what it serves.
    """

    settings = target.settings
    fact = host_state(host, release_roots=[settings.root])
    current = release.serving(fact, settings, target.site.name)
    if not current:
        return None
    base = release.revision_of(current)[0]
    artifact = str(target.release.artifact or Path("dist") / f"{settings.app_name}-{base}.zip")
    try:
        if release.read_manifest(controller_file(Path(artifact), "artifact")).version != base:
            return None
        folder = release.config_revision(release_report(fact, settings.root), settings, base, artifact)[0]
    except OperationValueError:
        return None
    return (base, artifact, folder) if folder != current else None


@deploy("Releases")
def release_all(targets: Optional[list[ReleaseTarget]] = None) -> None:
    """Every app of the host's release data (``release_app`` or ``release_apps``), one after
    the other: one Python install for all, then :func:`release_app` for each (each its own
    install, config revision, health-checked switch of its own site and cleanup).

    ``targets``: from :func:`release_targets` (default: resolved here).

    Raises:
        InventoryError: invalid ``release_*`` data.
    """

    targets = release_targets() if targets is None else targets
    if not targets:
        host.noop("no release_app or release_apps in the host data: nothing to release")
        return
    if len(targets) == 1:
        release_app(target=targets[0])
        return
    python_runtime(targets=targets)
    for target in targets:
        release_app(target=target, with_runtime=False, recheck_upgrade=True)


@deploy("Rollback")
def rollback_release(target: Optional[ReleaseTarget] = None) -> None:
    """Serve an earlier release again on the current host, health-checked like any switch
    (:func:`pyinfra_iis.operations.release.release_rolled_back`).

    ``--data release_version=1.0.0`` names the release (``1.0.0+r1``: its first configuration);
    without it, the release state's ``previous``, and a retried unnamed rollback stays where
    the first one went. ``$PYINFRA_IIS_RELEASE_VERSION`` is NOT read here: a pipeline sets it
    for its release job, and a rollback job inheriting it would go to the release that failed.
    With several apps, every app rolls back, or the one named by ``--data release_only=<app>``
    (required with a version).

    Raises:
        InventoryError: invalid ``release_*`` data.
        OperationError: (per host, before anything changes) the named release is not
            installed and complete, or there is no previous release.
    """

    targets = [target] if target is not None else release_targets(rollback=True)
    if not targets:
        host.noop("no release_app in the host data: nothing to roll back")
        return
    for one in targets:
        version = one.release.rollback_to or one.release.version
        if one.settings.mode == "arr":  # ARR mode: the release in the idle slot (deploys/arr.py)
            arr_release(one, version, rollback=True)
            continue
        release.release_rolled_back(name=f"Roll back {one.site.name}" + (f" to {version}" if version else ""), settings=one.settings,
                                    site=one.site, app_pool=one.app_pool, version=version)
