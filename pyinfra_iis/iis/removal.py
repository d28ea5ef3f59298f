"""What goes when the inventory asks for a removal, read from the ``iis`` part of the fact.

Pure functions (no host calls): who uses an application pool (on the host now, and after the
changes a run makes), and which of a site's bindings are removed. The operations
(:mod:`pyinfra_iis.operations.sites`, :mod:`~pyinfra_iis.operations.app_pools`,
:mod:`~pyinfra_iis.operations.applications`) and the ``Configure IIS`` deploy word and send
the removals.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from . import config
from .adopt import binding_key
from .defaults import SITES

#: ``(site name, application path)`` case-folded: how IIS tells applications apart.
AppKey = tuple[str, str]


def site_item(iis: Mapping[str, Any] | None, name: str) -> config.Element | None:
    """The ``<site>`` ELEMENT named ``name`` (case-insensitive), or ``None``."""

    return config.find_item(config.section(iis, SITES), "site", {"name": name})


def application_pool(iis: Mapping[str, Any] | None, site: config.Element | None, application: config.Element | None) -> str | None:
    """The pool an application runs in, as IIS resolves it: its ``applicationPool``, else the
    site's ``applicationDefaults``, else the sites section's ``applicationDefaults``."""

    value = config.get_attribute(application, "applicationPool")
    if value is None:
        value = config.get_attribute(config.child(site, "applicationDefaults"), "applicationPool")
    if value is None:
        value = config.get_attribute(config.child(config.section(iis, SITES), "applicationDefaults"), "applicationPool")
    return value


def user_label(site: str, path: str) -> str:
    """``"site api"`` for a root application, ``"application api/v2"`` for another."""

    return f"site {site}" if path == "/" else f"application {site}{path}"


def application_pools(iis: Mapping[str, Any] | None) -> dict[AppKey, tuple[str, str | None]]:
    """Every application of the host: ``{(site, path) folded: (label, pool)}``."""

    uses: dict[AppKey, tuple[str, str | None]] = {}
    for site in config.items(config.section(iis, SITES), "site"):
        name = config.get_attribute(site, "name") or ""
        for app in config.items(site, "application"):
            path = config.get_attribute(app, "path") or "/"
            uses[(name.casefold(), path.casefold())] = (user_label(name, path), application_pool(iis, site, app))
    return uses


def pool_users(iis: Mapping[str, Any] | None, pool: str, *, sites: Iterable[Any] = (), removed_sites: Iterable[Any] = (),
               applications: Iterable[Any] = ()) -> list[str]:
    """Sites and applications that use ``pool`` after a run's changes (case-insensitive).

    Args:
        iis: the ``iis`` part of the fact (the host before the run).
        pool: the pool to remove.
        sites: present :class:`~pyinfra_iis.models.site.Site` models (their root application
            gets their ``app_pool``).
        removed_sites: sites removed in the run (their applications go with them).
        applications: :class:`~pyinfra_iis.models.application.Application` models (present ones
            with an ``app_pool`` move there; removed ones go).

    Returns:
        labels (``"site api"``, ``"application api/v2"``), sorted.
    """

    uses = application_pools(iis)
    gone = {site.name.casefold() for site in removed_sites}
    uses = {key: value for key, value in uses.items() if key[0] not in gone}
    for site in sites:
        uses[(site.name.casefold(), "/")] = (user_label(site.name, "/"), site.app_pool)
    for app in applications:
        key = (app.site.casefold(), app.path.casefold())
        if not app.present:
            uses.pop(key, None)
        elif app.app_pool is not None:
            uses[key] = (user_label(app.site, app.path), app.app_pool)
        elif key not in uses:
            site = site_item(iis, app.site)
            uses[key] = (user_label(app.site, app.path), application_pool(iis, site, None))
    return sorted(label for label, used in uses.values() if used is not None and used.casefold() == pool.casefold())


def binding_removals(host_bindings: Iterable[config.Element], declared: Iterable[Any], exclusive: bool) -> list[config.Element]:
    """The host's ``<binding>`` items to remove.

    Args:
        host_bindings: the ``binding`` items of the site on the host.
        declared: the site's :class:`~pyinfra_iis.models.site.Binding` models.
        exclusive: the declared list is authoritative (``exclusive_bindings``): a host binding
            it does not name is removed too.

    Returns:
        the items named by a ``present: false`` entry, plus (``exclusive``) those not named.
    """

    declared = list(declared)
    absent = {binding_key(b.protocol, b.binding_information) for b in declared if not b.present}
    wanted = {binding_key(b.protocol, b.binding_information) for b in declared if b.present}
    removals = []
    for item in host_bindings:
        key = binding_key(config.get_attribute(item, "protocol") or "", config.get_attribute(item, "bindingInformation") or "")
        if key in absent or (exclusive and key not in wanted):
            removals.append(item)
    return removals
