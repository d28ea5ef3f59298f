"""Refuse a bad inventory before any host is contacted (docs/design.md "Layers" item 1).

pyinfra's CLI loads the inventory, then connects every host (``connect_all``), and only then
loads the deploy file, whose operations would validate the data host by host. So the check
runs where nothing has been sent yet: the ``@winrm`` connector's ``connect()`` calls
:func:`require_valid_inventory` first. The FIRST call of a run validates every host of the
run (the hosts pyinfra connects: those in ``--limit``, all by default) and caches the result
on the pyinfra ``State``; when anything is wrong it logs ONE report naming host, field path
and reason of every problem of every host, and every host's ``connect()`` then fails with a
short :class:`~pyinfra.api.exceptions.ConnectError`, so no host is contacted and pyinfra exits
non-zero ("No hosts remaining!"). ``--dry`` connects too, so it is refused the same way.

What is validated per host:

* ``iis_*`` keys: :func:`pyinfra_iis.models.validate_inventory` (with the controller files,
  PFX and MSI, resolved from pyinfra's working directory ``state.cwd``);
* ``release_*`` keys: :func:`pyinfra_iis.deploys.release.load_release_config` (with
  ``$PYINFRA_IIS_RELEASE_VERSION`` / ``_ARTIFACT``), and, when both parts are valid, that
  ``release_site`` names an ``iis_sites`` site and ``release_app_pool`` an ``iis_app_pools``
  pool (the pool receives the app secrets as environment variables);
* the controller files both parts name (:func:`pyinfra_iis.preflight.file_problems`): every
  PFX opens with its password and holds its key, every installer matches its pin, and the
  release artifact is this app's release for this Python, intact, with its server and entry
  point. A ``-y`` run never stops half-way because of a controller file.

``winrm_*`` keys are checked earlier, when pyinfra builds each host's connector
(:mod:`pyinfra_iis.transport.settings`). Reports never contain a value (pydantic input is
dropped), so a secret typed into the wrong field cannot leak through them.

Inventory data in pyinfra's own log: with ``--debug`` pyinfra's CLI logs every group data
file as ``Adding data to group all: {...}`` (``pyinfra_cli/inventory.py``), which would print
the PFX password, ``winrm_password`` and the app secrets. :class:`SecretDataFilter` masks the
values of secret keys (:data:`SECRET_KEY_PATTERN`) in the dict/list arguments of every record
of the ``pyinfra`` logger. It is installed when this module is imported: pyinfra imports the
``@winrm`` connector (which imports this module) while it builds its first ``Inventory``,
before the CLI loads any group data.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from pyinfra import logger as pyinfra_logger
from pyinfra.api.exceptions import ConnectError

from .models import InventoryError, InventoryReport, Problem, validate_inventory
from .models.host import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

__all__ = ["INVALID_MESSAGE", "MASK", "OTHERS_INVALID_MESSAGE", "SECRET_KEY_PATTERN", "SecretDataFilter", "check_hosts",
           "check_state", "install_secret_data_filter", "mask_secret_data", "require_valid_inventory"]

#: Attribute of the pyinfra ``State`` holding the cached :class:`InventoryReport`.
STATE_ATTRIBUTE = "_pyinfra_iis_inventory_report"

#: The ``ConnectError`` message of a host whose own data is invalid.
INVALID_MESSAGE = "inventory data is invalid: see the report above; no host was contacted"

#: The ``ConnectError`` message of a valid host in a run where another host's data is invalid.
OTHERS_INVALID_MESSAGE = "not connected: the inventory data of other hosts is invalid (see the report above)"


def check_hosts(hosts: Iterable[tuple[str, Mapping[str, Any]]], *, base_dir: Optional[Path] = None,
                environ: Mapping[str, str] = os.environ, check_files: bool = True) -> InventoryReport:
    """Validate the ``iis_*`` and ``release_*`` data of every host into one report.

    Args:
        hosts: ``(host name, host data)`` pairs, the data with group data merged
            (``host.data.dict()``).
        base_dir: directory relative controller paths (PFX, MSI) are resolved against
            (default: the process's working directory).
        environ: where the release version/artifact variables are read (default ``os.environ``).
        check_files: check that the PFX and MSI files exist on the controller (default true).

    Returns:
        an :class:`~pyinfra_iis.models.InventoryReport` of every problem, grouped by host in the
        order given; it never raises for bad data.
    """

    hosts = list(hosts)
    report = validate_inventory(hosts, check_files=check_files, base_dir=base_dir)
    extra = {name: _release_problems(name, data, report, environ, check_files, base_dir) for name, data in hosts}
    if any(extra.values()):
        by_host = {name: [p for p in report.problems if p.host == name] + extra[name] for name, _ in hosts}
        report.problems = [p for name in report.hosts for p in by_host.get(name, [])]
        for name, problems in extra.items():
            if problems:
                report.configs.pop(name, None)
    return report


def check_state(state: "State", hosts: Optional[Iterable["Host"]] = None) -> InventoryReport:
    """Validate the hosts of a pyinfra run once; the report is cached on ``state``.

    Args:
        state: the pyinfra ``State`` (its inventory and ``cwd`` are read).
        hosts: the hosts to validate the first time (default: the hosts in the run's limit,
            i.e. those ``connect_all`` connects). A later call for a host not yet validated
            (a host activated outside the initial limit) validates it and merges the result.

    Returns:
        the cached report (``report.hosts`` lists every host validated so far).
    """

    report: Optional[InventoryReport] = getattr(state, STATE_ATTRIBUTE, None)
    if report is None:
        chosen = list(hosts) if hosts is not None else [h for h in state.inventory if state.is_host_in_limit(h)]
        report = _check_pyinfra_hosts(state, chosen)
        setattr(state, STATE_ATTRIBUTE, report)
    elif hosts is not None:
        new = [h for h in hosts if h.name not in report.hosts]
        if new:
            more = _check_pyinfra_hosts(state, new)
            report.hosts += more.hosts
            report.problems += more.problems
            report.configs.update(more.configs)
    return report


def require_valid_inventory(state: "State", host: "Host") -> None:
    """Refuse to connect ``host`` while the run's inventory data has a problem.

    Called at the start of the ``@winrm`` connector's ``connect()``. The first call of a run
    validates every host (:func:`check_state`) and, when there are problems, logs the one
    report through pyinfra's logger (stderr under the CLI); later calls log nothing more.

    Raises:
        pyinfra.api.exceptions.ConnectError: with :data:`INVALID_MESSAGE` when this host's data
            is invalid, :data:`OTHERS_INVALID_MESSAGE` when only other hosts' data is.
    """

    first = getattr(state, STATE_ATTRIBUTE, None) is None
    report = check_state(state)
    if first and not report.ok:
        _log_report(report)
    if host.name not in report.hosts:
        before = len(report.problems)
        check_state(state, [host])
        if len(report.problems) > before:
            _log_report(InventoryReport(hosts=[host.name], problems=report.problems[before:]))
    if not report.ok:
        own = any(problem.host == host.name for problem in report.problems)
        raise ConnectError(INVALID_MESSAGE if own else OTHERS_INVALID_MESSAGE)


# --- helpers --------------------------------------------------------------------------------


def _check_pyinfra_hosts(state: "State", hosts: list["Host"]) -> InventoryReport:
    base_dir = Path(state.cwd) if getattr(state, "cwd", None) else None
    return check_hosts(((h.name, h.data.dict()) for h in hosts), base_dir=base_dir)


def _log_report(report: InventoryReport) -> None:
    pyinfra_logger.error(report.format() + "\n")


def _release_problems(host: str, data: Mapping[str, Any], report: InventoryReport, environ: Mapping[str, str],
                      check_files: bool = True, base_dir: Optional[Path] = None) -> list[Problem]:
    """Problems of the ``release_*`` keys, of their references into the ``iis_*`` data, and
    (``check_files``) of the controller files both name (:mod:`pyinfra_iis.preflight`)."""

    from .deploys.release import load_release_config  # deploys import pyinfra's host context
    from .preflight import file_problems

    if not isinstance(data, Mapping):
        return []  # validate_inventory has reported it
    try:
        release = load_release_config(data, host, environ=environ)
    except InventoryError as exc:
        return list(exc.report.problems)
    iis = report.configs.get(host)
    problems = file_problems(host, iis, release, base_dir) if check_files else []
    if release is None or iis is None:
        return problems
    site = next((s for s in iis.sites if s.name.lower() == release.site.lower()), None)
    if site is None:
        guess = did_you_mean(release.site, [s.name for s in iis.sites])
        problems.append(Problem(host, "release_site", f"site {release.site!r} is not defined in iis_sites",
                                f"did you mean {guess!r}?" if guess else "add the site to iis_sites"))
    if release.app_pool is not None and iis.pool(release.app_pool) is None:
        guess = did_you_mean(release.app_pool, [p.name for p in iis.app_pools])
        problems.append(Problem(host, "release_app_pool", f"application pool {release.app_pool!r} is not defined in iis_app_pools",
                                f"did you mean {guess!r}?" if guess else "add the pool to iis_app_pools"))
    return problems


# --- secrets in pyinfra's log ---------------------------------------------------------------

#: Keys whose values are secrets: anything named like a password, secret, token or private key
#: (``winrm_password``, ``iis_certificates[].password``, ``iis_app_pools[].password``,
#: ``_sudo_password``...), and every value under ``app_secrets`` (release settings) and a
#: pool's ``environment_variables`` (secret values, ``AppPool``).
SECRET_KEY_PATTERN = re.compile(r"passw|secret|token|private_?key|passphrase|credential|environment_variables", re.IGNORECASE)

#: What a masked value shows (pyinfra's own ``HiddenValue`` mask).
MASK = "*MASKED*"


def mask_secret_data(value: Any, secret: bool = False) -> Any:
    """Return a copy of ``value`` (dicts, lists, tuples, scalars) with secret values masked.

    Args:
        value: data as an inventory holds it.
        secret: whether ``value`` sits under a secret key (then every non-empty scalar in it
            is masked; ``None``, ``False`` and ``""`` stay, they hide nothing).

    Returns:
        the masked copy; objects of other types are returned as they are.
    """

    if isinstance(value, dict):
        return {k: mask_secret_data(v, secret or (isinstance(k, str) and bool(SECRET_KEY_PATTERN.search(k)))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secret_data(v, secret) for v in value)
    if secret and value not in (None, False, ""):
        return MASK
    return value


class SecretDataFilter(logging.Filter):
    """Mask secret values in the dict/list/tuple arguments of log records (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, (dict, list, tuple)) for a in record.args):
            record.args = tuple(mask_secret_data(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = mask_secret_data(record.args)
        return True


def install_secret_data_filter(logger: logging.Logger = pyinfra_logger) -> None:
    """Add one :class:`SecretDataFilter` to ``logger`` (default: the ``pyinfra`` logger,
    which pyinfra's CLI and API log through); a second call adds nothing."""

    if not any(isinstance(f, SecretDataFilter) for f in logger.filters):
        logger.addFilter(SecretDataFilter())


install_secret_data_filter()
