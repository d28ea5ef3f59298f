"""Adopting a server that already runs other sites (issue 10): which attributes of an existing
site the project changes, bindings compared by meaning, and binding conflicts with sites the
inventory does not manage.

* Declared-only: a site the project CREATES gets every attribute of
  :meth:`pyinfra_iis.models.site.Site.config_attributes` (the project's defaults); an EXISTING
  site gets its root application's pool and physicalPath (required fields of the model) and
  the attributes the inventory gives itself (``state`` → ``serverAutoStart`` and the runtime
  state, ``preload_enabled``, ``log_directory``, ``id``, ``anonymous_auth_as_pool_identity``).
* Bindings are identified by (protocol, IP, port, host name) with the IP in canonical form
  (:func:`binding_key`): ``[2001:DB8:0::1]:80:`` and ``[2001:db8::1]:80:`` are one binding.
* Conflicts: :func:`host_binding_conflicts` names each binding of a site that another site on
  the host already holds; IIS would refuse to start the second one.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping, Optional

from . import config
from .defaults import SITES

#: Site model fields → the attribute paths of ``Site.config_attributes`` they write.
SITE_FIELD_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "state": ("serverAutoStart",),
    "preload_enabled": ("application.preloadEnabled",),
    "log_directory": ("logFile.directory",),
    "id": ("id",),
}

#: Attributes every existing site named in the inventory gets: the model requires them.
SITE_REQUIRED_ATTRIBUTES = ("application.applicationPool", "virtualDirectory.physicalPath")


def _declared(model: Any, field: str) -> bool:
    return field in getattr(model, "model_fields_set", set())


#: What the site that serves the release always gets, also when it existed before, and why:
#: ``serverAutoStart`` (with the runtime state ``Started``): the release is served after a
#: reboot and its health check needs a running site; anonymous authentication as the pool
#: identity: the release's files are readable by the pool's principal only (the release ACLs),
#: not by IUSR.
SITE_RELEASE_ATTRIBUTES = ("serverAutoStart",)


def site_wanted_attributes(model: Any, exists: bool, serves_release: bool = False) -> dict[str, str]:
    """Return the attributes (``Site.config_attributes`` paths) the site must have: all of them
    when the project creates the site, else the required and the declared ones (and, for the
    site that serves the release, :data:`SITE_RELEASE_ATTRIBUTES`)."""

    every = model.config_attributes()
    if not exists:
        return every
    required = SITE_REQUIRED_ATTRIBUTES + (SITE_RELEASE_ATTRIBUTES if serves_release else ())
    wanted = {path: every[path] for path in required if path in every}
    for field, paths in SITE_FIELD_ATTRIBUTES.items():
        if _declared(model, field):
            wanted.update({path: every[path] for path in paths if path in every})
    return wanted


def site_runtime_wanted(model: Any, exists: bool, serves_release: bool = False) -> bool:
    """Whether the site operation brings the site to ``model.state``: when it creates the site,
    when the inventory gives ``state``, or when the site serves the release; an existing site
    otherwise keeps its runtime state."""

    return not exists or serves_release or _declared(model, "state")


def anonymous_auth_wanted(model: Any, exists: bool, serves_release: bool = False) -> bool:
    """Whether ``anonymousAuthentication`` at the site's location is managed: on a site the
    project creates, on the site that serves the release, or when the inventory gives
    ``anonymous_auth_as_pool_identity``."""

    return not exists or serves_release or _declared(model, "anonymous_auth_as_pool_identity")


def canonical_ip(text: str) -> str:
    """The canonical form of a binding's IP part: ``*`` (also for ``""``, All Unassigned), an
    IPv4 address, or an IPv6 address compressed and lower-case, without brackets
    (``ipaddress``). Text that is not an address is returned case-folded."""

    text = text.strip()
    if text in ("", "*"):
        return "*"
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text.casefold()


def split_binding_information(information: str) -> Optional[tuple[str, str, str]]:
    """Split ``bindingInformation`` ``IP:PORT:HOST`` into ``(ip, port, host)`` (IPv6 in
    brackets: ``[2001:db8::1]:443:``); ``None`` when it is not of that form (net.tcp ``808:*``)."""

    if information.startswith("["):
        end = information.find("]")
        if end < 0:
            return None
        ip, rest = information[: end + 1], information[end + 2:] if information[end + 1: end + 2] == ":" else None
        if rest is None:
            return None
    else:
        ip, sep, rest = information.partition(":")
        if not sep:
            return None
    port, sep, host = rest.partition(":")
    if not sep or not port.isdigit():
        return None
    return ip, port, host


def binding_key(protocol: str, information: str) -> tuple[str, ...]:
    """The identity of a binding as IIS compares it: protocol, canonical IP, port number, host
    name (case-insensitive). Bindings of other forms are keyed by their text, case-folded."""

    parts = split_binding_information(information)
    if parts is None or protocol.lower() not in ("http", "https"):
        return (protocol.lower(), information.casefold())
    ip, port, host = parts
    return (protocol.lower(), canonical_ip(ip), str(int(port)), host.casefold())


def host_bindings(iis: Mapping[str, Any] | None) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Every binding of every site on the host: ``(site name, protocol, bindingInformation, key)``."""

    found = []
    for site in config.items(config.section(iis, SITES), "site"):
        name = config.get_attribute(site, "name") or ""
        for item in config.items(config.child(site, "bindings"), "binding"):
            protocol = config.get_attribute(item, "protocol") or ""
            information = config.get_attribute(item, "bindingInformation") or ""
            found.append((name, protocol, information, binding_key(protocol, information)))
    return found


def host_binding_conflicts(model: Any, iis: Mapping[str, Any] | None, managed_sites: Iterable[str] = ()) -> list[str]:
    """Return one message per binding of ``model`` (a ``Site``) that another site on the host
    already holds, when that other site is not in ``managed_sites`` (the host's ``iis_sites``
    names; conflicts between those are refused by the inventory check).

    The message names both sites, the binding and the fix.
    """

    managed = {name.casefold() for name in managed_sites} | {model.name.casefold()}
    holders: dict[tuple[str, ...], tuple[str, str, str]] = {}
    for name, protocol, information, key in host_bindings(iis):
        if name.casefold() not in managed:
            holders.setdefault(key, (name, protocol, information))
    messages = []
    for binding in model.bindings:
        key = binding_key(binding.protocol, binding.binding_information)
        if key in holders:
            other, protocol, information = holders[key]
            messages.append(
                f"site {model.name!r}: {binding.protocol} binding {binding.binding_information} is already held by site "
                f"{other!r} on the host ({protocol} {information}), which the inventory does not manage; IIS would not start "
                f"the second site: choose another IP, port or host name, or remove the binding from {other!r} first")
    return messages


def kept_binding_conflicts(sites: Iterable[Any], iis: Mapping[str, Any] | None) -> list[str]:
    """Messages for a binding one inventory site lists while ANOTHER inventory site holds it on
    the host without listing it: that site keeps its unlisted bindings, so both would have it.
    (Two inventory sites LISTING one binding are refused by the inventory check.)"""

    sites = list(sites)
    by_name = {site.name.casefold(): site for site in sites}
    listed = {site.name.casefold(): {binding_key(b.protocol, b.binding_information) for b in site.bindings} for site in sites}
    messages = []
    for holder, protocol, information, key in host_bindings(iis):
        owner = by_name.get(holder.casefold())
        if owner is None or key in listed[holder.casefold()]:
            continue
        for site in sites:
            if site is not owner and key in listed[site.name.casefold()]:
                messages.append(
                    f"site {site.name!r}: {protocol} binding {information} is held on the host by site {owner.name!r}, "
                    f"which keeps the bindings it does not list; IIS would not start both: remove the binding from "
                    f"{owner.name!r} first, or choose another IP, port or host name")
    return messages


def refuse_host_binding_conflicts(host_name: str, iis: Mapping[str, Any] | None, sites: Iterable[Any]) -> None:
    """Raise when a site of the inventory (``sites``: ``Site`` models of the host's
    ``iis_sites``) uses a binding a site outside the inventory holds on the host.

    Called by the ``Configure IIS`` deploy while pyinfra loads the deploy, so the run stops
    before any operation executes on the host (with ``-y`` pyinfra runs operation generators
    only at execution; a check inside the site operation would come after the pools changed).

    Raises:
        pyinfra.api.exceptions.OperationError: naming the host, both sites, the binding and the fix.
    """

    from pyinfra.api.exceptions import OperationError

    sites = list(sites)
    names = [site.name for site in sites]
    messages = [message for site in sites for message in host_binding_conflicts(site, iis, names)]
    messages += kept_binding_conflicts(sites, iis)
    if messages:
        raise OperationError(f"{host_name}: binding conflict, nothing was changed: " + "; ".join(messages))
