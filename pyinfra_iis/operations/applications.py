"""IIS applications and virtual directories under a site, through ``Set-IisConfig`` (the
``<application>`` and ``<virtualDirectory>`` items of a ``<site>``): no PowerShell of their own."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationValueError

from ..facts.host_state import host_state
from ..iis import config
from ..iis.compare import differing
from ..iis.defaults import APP_POOLS, APPLICATION, SITES, VIRTUAL_DIRECTORY
from ..iis.diff import Change, log_changes
from ..iis.edits import Edit, attribute_edits, item_step, remove_edit, set_edit
from ..iis.removal import site_item
from ..models.application import Application, VirtualDirectory
from ..protocol import remote_call
from ._common import from_arguments, iis_of


def _defaults(iis: dict | None, site: config.Element | None, tag: str) -> config.Element | None:
    """The ``applicationDefaults``/``virtualDirectoryDefaults`` that apply: the site's own, else
    the sites section's."""

    return config.child(site, tag) or config.child(config.section(iis, SITES), tag)


def _vdir_edits(label: str, base: list, site: config.Element | None, app: config.Element | None, iis: dict | None,
                directory: VirtualDirectory, host_name: str) -> tuple[list[Edit], list[Change]]:
    item = config.find_item(app, "virtualDirectory", {"path": directory.path})
    path = [*base, item_step("virtualDirectory", path=directory.path)]
    sub = f"{label}: virtualDirectory {directory.path}"
    if not directory.present:
        if item is None:
            return [], []
        return [remove_edit(SITES, path)], [Change(sub, "present", None)]
    if item is None and directory.physical_path is None:
        raise OperationValueError(f"{host_name}: {sub} does not exist: physical_path is required to create it")
    wanted = {"physicalPath": directory.physical_path} if directory.physical_path is not None else {}
    changes, diff = differing(item, wanted, VIRTUAL_DIRECTORY, defaults_element=_defaults(iis, site, "virtualDirectoryDefaults"), label=sub)
    edits = attribute_edits(SITES, path, changes)
    if item is None:
        diff.insert(0, Change(sub, None, "created"))
    return edits, diff


def application_edits(model: Application, iis: dict | None, host_name: str = "host", *, sites: Iterable[str] = (),
                      pools: Iterable[str] = ()) -> tuple[list[Edit], list[Change]]:
    """Return the ``Set-IisConfig`` edits (and diff lines) that make application ``model`` so.

    Only declared attributes are compared (declared-only: an existing application keeps the
    rest); an attribute is written when its effective value (explicit, then the
    ``applicationDefaults``/``virtualDirectoryDefaults`` of the site, then of the sites
    section, then the schema default) differs. ``present: false`` removes the application
    with its virtual directories when the host has it.

    Args:
        model: the application.
        iis: the ``iis`` part of the fact.
        host_name: for error messages.
        sites: site names that exist after this run though the host may not have them yet
            (``iis_sites``).
        pools: pool names that exist after this run (``iis_app_pools``).

    Raises:
        OperationValueError: the site or pool is neither declared nor on the host; a new
            application or virtual directory has no ``physical_path``.
    """

    site = site_item(iis, model.site)
    site_name = config.get_attribute(site, "name") or model.site
    app = config.find_item(site, "application", {"path": model.path})
    base = [item_step("site", name=site_name), item_step("application", path=model.path)]
    label = f"site {site_name}: application {model.path}"
    if not model.present:
        if app is None:
            return [], []
        diff = [Change(label, "present", None)]
        diff += [Change(f"{label}: virtualDirectory {config.get_attribute(v, 'path')}", "present", None)
                 for v in config.items(app, "virtualDirectory") if config.get_attribute(v, "path") != "/"]
        return [remove_edit(SITES, base)], diff
    if site is None and model.site.casefold() not in {name.casefold() for name in sites}:
        raise OperationValueError(f"{host_name}: {model.label}: site {model.site!r} is neither in iis_sites nor on the host")
    if model.app_pool is not None:
        on_host = config.find_item(config.section(iis, APP_POOLS), "add", {"name": model.app_pool}) is not None
        if not on_host and model.app_pool.casefold() not in {name.casefold() for name in pools}:
            raise OperationValueError(f"{host_name}: {model.label}: application pool {model.app_pool!r} is neither in iis_app_pools nor on the host")
    if app is None and model.physical_path is None:
        raise OperationValueError(f"{host_name}: {model.label} does not exist: physical_path is required to create it")
    changes, diff = differing(app, model.config_attributes(), APPLICATION, defaults_element=_defaults(iis, site, "applicationDefaults"), label=label)
    edits = attribute_edits(SITES, base, changes)
    if app is None:
        diff.insert(0, Change(label, None, "created"))
        if not edits:
            edits.append(set_edit(SITES, base))
    root = VirtualDirectory.model_construct(path="/", physical_path=model.physical_path, present=True)
    for directory in (root, *model.virtual_directories):
        more, lines = _vdir_edits(label, base, site, app, iis, directory, host_name)
        edits += more
        diff += lines
    return edits, diff


@operation()
def application(
    application: Application | dict | None = None,
    sites: Iterable[str] = (),
    pools: Iterable[str] = (),
    *,
    site_name: str | None = None,
    path: str | None = None,
    present: bool = True,
    physical_path: str | None = None,
    app_pool: str | None = None,
    preload_enabled: bool | None = None,
    virtual_directories: Sequence[VirtualDirectory | Mapping[str, Any]] | None = None,
):
    """
    Create, update or remove an IIS application (and its virtual directories) under a site.

    Give it either as keyword arguments (pyinfra style) or as one model:

    + site_name: the site (in ``iis_sites`` or on the host). Not ``name``: pyinfra takes
      ``name=`` for the operation's label.
    + path: the application's virtual path, e.g. ``/api`` (starts with ``/``; not ``/``, the
      site's root application).
    + present: ``False`` removes the application with its virtual directories (give only
      ``site_name`` and ``path``); its FILES ARE NEVER DELETED. Default true.
    + physical_path: folder of its root virtual directory; required to create it.
    + app_pool: its pool (in ``iis_app_pools`` or on the host). Unset: an existing application
      keeps its pool; a new one gets IIS's ``applicationDefaults`` (``DefaultAppPool``).
    + preload_enabled: ``preloadEnabled``; unset: left as it is (IIS default false).
    + virtual_directories: ``[{"path": "/static", "physical_path": "C:\\\\static"}, {"path":
      "/old", "present": False}]``; directories not listed are left as they are.
    + application: instead of the keywords, an ``Application`` model or dict (host data
      ``iis_applications`` entry; the ``Configure IIS`` deploy uses this form).
    + sites, pools: names of the sites and pools the run creates before this operation (the
      deploy passes ``iis_sites`` and ``iis_app_pools``), accepted though the host lacks them.

    Declared-only: attributes not given are left as they are on an existing application.
    Everything goes in ONE ``Set-IisConfig``; nothing when the host matches.

    **Example:**

    .. code:: python

        application(name="API v2", site_name="api", path="/v2", physical_path=r"C:\\sites\\api-v2",
                    app_pool="api-v2", virtual_directories=[{"path": "/static", "physical_path": r"C:\\static"}])
        application(name="Old app goes", site_name="api", path="/old", present=False)

    Raises:
        OperationValueError: invalid arguments; site or pool unknown; a new application or
            virtual directory without ``physical_path``.
    """

    model = from_arguments(Application, application, "application", {
        "site_name": site_name, "path": path, "physical_path": physical_path, "app_pool": app_pool,
        "preload_enabled": preload_enabled, "virtual_directories": virtual_directories,
        "present": None if present is True else present,
    }, {"site_name": "site"})
    iis = iis_of(host_state(host))
    edits, diff = application_edits(model, iis, host.name, sites=sites, pools=pools)
    if not edits:
        host.noop(f"{model.label} is {'configured' if model.present else 'absent'}")
        return
    title = f"Will {'change' if model.present else 'remove'} {model.label}" + ("" if model.present else " (its files stay)")
    log_changes(host, title, diff)
    yield remote_call("Set-IisConfig", {"edits": edits})
