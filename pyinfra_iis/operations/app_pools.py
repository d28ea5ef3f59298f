"""Application pools: ``Set-IisConfig`` (only differing attributes) and ``Set-IisRuntimeState``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import SecretStr

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationValueError

from ..facts.host_state import host_state
from ..iis import config
from ..iis.compare import differing
from ..iis.defaults import APP_POOL, APP_POOLS, normalize
from ..iis.diff import Change, log_changes
from ..iis.edits import Edit, attribute_edits, child_step, item_step, remove_edit, set_edit
from ..models.app_pool import CREATE_ATTRIBUTES, AppPool, IdentityType, RapidFailProtection
from ..protocol import Secret, secret_digest
from ..iis.removal import pool_users
from ._common import from_arguments, iis_of


def _environment_edits(model: AppPool, pool_item: config.Element | None, base: list,
                       keep: Iterable[str] = ()) -> tuple[list[Edit], list[Change]]:
    """Edits for the pool's ``environmentVariables``: set each variable whose digest differs,
    remove the variables the model does not list (one item per edit, never a clear). Variables
    named in ``keep`` (the release's app secrets, changed only by its health-checked switch) are
    neither set nor removed here."""

    holder = config.child(pool_item, "environmentVariables")
    path = [*base, child_step("environmentVariables")]
    edits: list[Edit] = []
    diff: list[Change] = []
    kept = {name.lower() for name in keep}
    wanted = {name.lower(): (name, value.get_secret_value()) for name, value in model.environment_variables.items()
              if name.lower() not in kept}
    for name, value in wanted.values():
        item = config.find_item(holder, "add", {"name": name})
        current = config.get_attribute(item, "value")
        if current != secret_digest(value):
            edits.append(set_edit(APP_POOLS, [*path, item_step("add", name=name)], {"value": Secret(value)}))
            diff.append(Change(f"app pool {model.name}: environmentVariables[{name}]", current, "set", secret=True))
    for item in config.items(holder, "add"):
        name = config.get_attribute(item, "name") or ""
        if name.lower() not in wanted and name.lower() not in kept:
            edits.append(remove_edit(APP_POOLS, [*path, item_step("add", name=name)]))
            diff.append(Change(f"app pool {model.name}: environmentVariables[{name}]", "set", None, secret=True))
    return edits, diff


def _schedule_edits(model: AppPool, pool_item: config.Element | None, base: list) -> tuple[list[Edit], list[Change]]:
    """Edits for ``recycling/periodicRestart/schedule``: add missing times, remove others."""

    holder = config.descend(pool_item, ["recycling", "periodicRestart", "schedule"])
    path = [*base, child_step("recycling"), child_step("periodicRestart"), child_step("schedule")]
    current = {normalize("timeSpan", config.get_attribute(item, "value")): config.get_attribute(item, "value") for item in config.items(holder, "add")}
    wanted = {normalize("timeSpan", value): value for value in model.schedule_values}
    edits: list[Edit] = []
    diff: list[Change] = []
    for key, value in wanted.items():
        if key not in current:
            edits.append(set_edit(APP_POOLS, [*path, item_step("add", value=value)]))
            diff.append(Change(f"app pool {model.name}: periodicRestart.schedule", None, value))
    for key, value in current.items():
        if key not in wanted:
            edits.append(remove_edit(APP_POOLS, [*path, item_step("add", value=value)]))
            diff.append(Change(f"app pool {model.name}: periodicRestart.schedule", value, None))
    return edits, diff


def app_pool_edits(model: AppPool, iis: dict | None, keep_variables: Iterable[str] = (),
                   serves_release: bool = False) -> tuple[list[Edit], list[Change]]:
    """Return the ``Set-IisConfig`` edits (and diff lines) that make pool ``model`` so.

    Which attributes are wanted (:meth:`AppPool.wanted_attributes`): all of the model's when the
    pool is created (plus ``enable32BitAppOnWin64="false"`` written explicitly); on an existing
    pool only those the inventory declares, plus, when ``serves_release``, those a release needs
    (``models.app_pool.RELEASE_ATTRIBUTES``). The environment variables and the recycling
    schedule of an existing pool are changed only when declared.

    Attributes are compared with their effective values (explicit → applicationPoolDefaults →
    schema default; :mod:`pyinfra_iis.iis.defaults`); only differing ones are set, grouped by
    element. A SpecificUser password is compared by digest and sent as a ``Secret``.
    """

    section = config.section(iis, APP_POOLS)
    item = config.find_item(section, "add", {"name": model.name})
    defaults_element = config.child(section, "applicationPoolDefaults")
    base = [item_step("add", name=model.name)]
    label = f"app pool {model.name}"
    wanted = model.wanted_attributes(exists=item is not None, serves_release=serves_release)
    changes, diff = differing(item, wanted, APP_POOL, defaults_element=defaults_element, label=label)
    if item is None:
        diff.insert(0, Change(label, None, "created"))
        for path, value in CREATE_ATTRIBUTES.items():  # explicit, whatever applicationPoolDefaults says
            if wanted.get(path) == value and path not in changes:
                changes[path] = value
                diff.append(Change(f"{label}: {path}", None, value))
    if model.password is not None:
        current = config.explicit(item, "processModel.password")
        if current != secret_digest(model.password.get_secret_value()):
            changes["processModel.password"] = Secret(model.password.get_secret_value())
            diff.append(Change(f"{label}: processModel.password", current, "set", secret=True))
    edits = attribute_edits(APP_POOLS, base, changes)
    if item is None and not any(edit["path"] == base for edit in edits):
        edits.insert(0, set_edit(APP_POOLS, base))
    collections = []
    if item is None or model.declares("environment_variables"):
        collections.append(_environment_edits(model, item, base, keep_variables))
    if item is None or model.declares("periodic_restart_schedule"):
        collections.append(_schedule_edits(model, item, base))
    for extra in collections:
        edits.extend(extra[0])
        diff.extend(extra[1])
    return edits, diff


def runtime_state_wanted(model: AppPool, exists: bool, serves_release: bool = False) -> bool:
    """Whether the operation brings the pool to ``model.state``: when it creates the pool, when
    the inventory declares ``state``, or when the pool serves a release (it must run). An
    existing pool the inventory names without ``state`` keeps its runtime state."""

    return not exists or serves_release or model.declares("state")


@operation()
def app_pool(
    pool: AppPool | dict | None = None,
    keep_variables: Iterable[str] = (),
    *,
    pool_name: str | None = None,
    present: bool = True,
    managed_runtime_version: Literal["", "v4.0", "v2.0"] | None = None,
    identity_type: IdentityType | None = None,
    user: str | None = None,
    password: str | SecretStr | None = None,
    start_mode: Literal["AlwaysRunning", "OnDemand"] | None = None,
    idle_timeout: int | str | timedelta | None = None,
    load_user_profile: bool | None = None,
    periodic_restart_time: int | str | timedelta | None = None,
    periodic_restart_schedule: Sequence[str] | None = None,
    rapid_fail_protection: RapidFailProtection | Mapping[str, Any] | None = None,
    queue_length: int | None = None,
    environment_variables: Mapping[str, str | SecretStr] | None = None,
    state: Literal["Started", "Stopped"] | None = None,
    extra_attributes: Mapping[str, bool | int | str] | None = None,
    check_users: bool = True,
    serves_release: bool = False,
):
    """
    Create or update an application pool, then bring it to its runtime state.

    Give the pool either as keyword arguments (pyinfra style) or as one model:

    + pool_name: the pool's name (required in the keyword form). Not ``name``: pyinfra takes
      ``name=`` for the operation's label before the operation sees it.
    + present: ``False`` removes the pool (give only ``pool_name``; :func:`app_pool_removal`):
      refused with :class:`PoolInUseError` while a site or application of the host uses it.
      Default true.
    + managed_runtime_version: ``""`` (No Managed Code, default), ``"v4.0"`` or ``"v2.0"``.
    + identity_type: default ``ApplicationPoolIdentity``; ``SpecificUser`` needs ``user`` and
      ``password``.
    + start_mode: ``AlwaysRunning`` (default) or ``OnDemand``.
    + idle_timeout: seconds, ``"hh:mm:ss"`` or ``"20m"``; default 0 (never).
    + load_user_profile: default true.
    + periodic_restart_time: default 0 (off); periodic_restart_schedule: times of day (``["03:30"]``).
    + rapid_fail_protection: ``{"enabled", "max_failures", "interval"}`` (IIS defaults).
    + queue_length: default 1000.
    + environment_variables: ``{NAME: value}``, sent as secrets.
    + state: ``Started`` (default) or ``Stopped``.
    + extra_attributes: other schema attributes, ``{"processModel.maxProcesses": 1}``.
    + pool: instead of the keywords, an ``AppPool`` model or dict (host data ``iis_app_pools``
      entry; the ``Configure IIS`` deploy uses this form). Giving both is an error.
    + check_users: with ``present=False``, refuse while the host's sites or applications use the
      pool (default true). The ``Configure IIS`` deploy passes false: it checks the users after
      the run's changes itself, before any operation (:func:`check_pool_removals`).
    + keep_variables: environment variable names this operation neither sets nor removes (the
      release's app secrets: they change only with the release's health-checked switch, never by
      a recycle of the live pool here); default none.
    + serves_release: the pool runs the host's release (the ``Configure IIS`` deploy sets it for
      the release's pool): an existing pool then also gets the settings a release needs
      (``models.app_pool.RELEASE_ATTRIBUTES``, docs/design.md "Adopting a server"); default false.

    Declared-only: a pool the operation CREATES gets the model's defaults below; a pool that
    already exists gets only the attributes given (keywords, or keys of the dict), and keeps its
    runtime state unless ``state`` is given. Drift of a given attribute is repaired.

    The defaults (the ``AppPool`` model's) are right for Python behind HttpPlatformHandler
    (docs/field-facts.md, IIS): No Managed Code, ApplicationPoolIdentity, AlwaysRunning, idle
    timeout 0, periodic restart off. Keyword values are validated by the same model, with the
    same messages (naming the keyword, e.g. ``pool_name``).

    Only the attributes whose effective value differs are sent, in ONE ``Set-IisConfig``; pool
    environment variables are compared through ``protocol.secret_digest`` (the fact never holds
    their values) and sent as secrets; variables the model does not list are removed one by
    one. ``Set-IisRuntimeState`` runs only when the pool is not in the wanted state.

    pyinfra prints the arguments of an operation called without ``name=``: give ``name=``, or
    pass secrets (``password``, variable values) as ``pydantic.SecretStr``.

    **Example:**

    .. code:: python

        app_pool(name="API pool", pool_name="api", start_mode="AlwaysRunning",
                 environment_variables={"API_KEY": SecretStr(os.environ["API_KEY"])})
    """

    model = from_arguments(AppPool, pool, "pool", {
        "pool_name": pool_name, "managed_runtime_version": managed_runtime_version, "identity_type": identity_type,
        "user": user, "password": password, "start_mode": start_mode, "idle_timeout": idle_timeout,
        "load_user_profile": load_user_profile, "periodic_restart_time": periodic_restart_time,
        "periodic_restart_schedule": periodic_restart_schedule, "rapid_fail_protection": rapid_fail_protection,
        "queue_length": queue_length, "environment_variables": environment_variables, "state": state,
        "extra_attributes": extra_attributes, "present": None if present is True else present,
    }, {"pool_name": "name"})
    fact = host_state(host)
    iis = iis_of(fact)
    if not model.present:
        yield from app_pool_removal(model, iis, host.name, check_users=check_users)
        return
    edits, diff = app_pool_edits(model, iis, keep_variables, serves_release)
    runtime = ((iis or {}).get("runtime") or {}).get("app_pools") or {}
    current_state = next((value for name, value in runtime.items() if name.lower() == model.name.lower()), None)
    exists = config.find_item(config.section(iis, APP_POOLS), "add", {"name": model.name}) is not None
    change_state = runtime_state_wanted(model, exists, serves_release) and current_state != model.state
    if change_state:
        diff.append(Change(f"app pool {model.name}: state", current_state, model.state))
    if not edits and not change_state:
        host.noop(f"app pool {model.name} is configured" + (f" and {model.state}" if current_state == model.state else ""))
        return
    log_changes(host, f"Will change app pool {model.name}", diff)
    if edits:
        yield remote_call_set(edits)
    if change_state:
        yield remote_call_runtime(app_pools={model.name: model.state})


def remote_call_set(edits: list[Edit]):
    """``Set-IisConfig`` with ``edits`` (all committed together)."""

    from ..protocol import remote_call

    return remote_call("Set-IisConfig", {"edits": edits})


def remote_call_runtime(app_pools: dict | None = None, sites: dict | None = None):
    """``Set-IisRuntimeState`` for the given pools/sites (``{name: "Started"|"Stopped"}``)."""

    from ..protocol import remote_call

    payload: dict = {}
    if app_pools:
        payload["app_pools"] = app_pools
    if sites:
        payload["sites"] = sites
    return remote_call("Set-IisRuntimeState", payload)


class PoolInUseError(OperationValueError):
    """An application pool to remove is still used by sites or applications."""


def pool_in_use_message(host_name: str, pool: str, users: list[str]) -> str:
    """The error text of :class:`PoolInUseError`: host, pool, the users and the fix."""

    return (f"{host_name}: application pool {pool!r} is not removed: it is still used by {', '.join(users)}; "
            "move them to another pool (app_pool) or remove them (present: false) first. Nothing was changed")


def check_pool_removals(host_name: str, iis: dict | None, pools: Iterable[AppPool], *, sites: Iterable[Any] = (),
                        removed_sites: Iterable[Any] = (), applications: Iterable[Any] = ()) -> None:
    """Refuse, before anything changes, to remove a pool that a site or application still uses
    AFTER this run's changes (declared sites and applications moved to their pools, removed
    ones gone; :func:`pyinfra_iis.iis.removal.pool_users`).

    Raises:
        PoolInUseError: naming host, pool and every user of it.
    """

    sites, removed_sites, applications = list(sites), list(removed_sites), list(applications)
    for pool in pools:
        users = pool_users(iis, pool.name, sites=sites, removed_sites=removed_sites, applications=applications)
        if users:
            raise PoolInUseError(pool_in_use_message(host_name, pool.name, users))


def app_pool_removal(model: AppPool, iis: dict | None, host_name: str, check_users: bool = True):
    """Yield the ``Set-IisConfig`` that removes pool ``model.name`` (with its environment
    variables) when the host has it; nothing (a no-op) when it does not. WAS stops its worker
    processes. The virtual account ``IIS AppPool\\<name>`` ceases to exist; rights granted to
    it stay on the files until revoked.

    Raises:
        PoolInUseError: ``check_users`` and a site or application of the host uses the pool.
    """

    item = config.find_item(config.section(iis, APP_POOLS), "add", {"name": model.name})
    if item is None:
        host.noop(f"app pool {model.name} is absent")
        return
    name = config.get_attribute(item, "name") or model.name
    if check_users:
        users = pool_users(iis, name)
        if users:
            raise PoolInUseError(pool_in_use_message(host_name, name, users))
    log_changes(host, f"Will remove app pool {name}", [Change(f"app pool {name}", "present", None)])
    yield remote_call_set([remove_edit(APP_POOLS, [item_step("add", name=name)])])
