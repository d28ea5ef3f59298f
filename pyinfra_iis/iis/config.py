"""Navigate the ELEMENT JSON of ``Get-HostState`` (``docs/remote-functions.md``).

An ELEMENT is ``{"attributes": {name: str}, "children": {tag: ELEMENT}, "items": [ITEM]}``
where an ITEM is an ELEMENT with a ``"tag"``. It holds only the attributes written explicitly in
applicationHost.config; :func:`effective` adds the inheritance IIS applies (item → collection
default element such as ``applicationPoolDefaults`` → schema default).

Names of items (pools, sites, server variables, principals) are compared case-insensitively,
as IIS does for its collection keys.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

Element = Mapping[str, Any]

EMPTY: Element = {"attributes": {}, "children": {}, "items": []}


def attributes(element: Element | None) -> dict[str, str]:
    """Return the explicit attributes of ``element`` (``{}`` for ``None``)."""

    if not element:
        return {}
    return dict(element.get("attributes") or {})


def get_attribute(element: Element | None, name: str) -> str | None:
    """Return the explicit value of attribute ``name`` (case-insensitive name), or ``None``."""

    for key, value in attributes(element).items():
        if key.lower() == name.lower():
            return value
    return None


def child(element: Element | None, tag: str) -> Element | None:
    """Return the child element ``tag`` of ``element`` (case-insensitive), or ``None``."""

    if not element:
        return None
    for key, value in (element.get("children") or {}).items():
        if key.lower() == tag.lower():
            return value
    return None


def descend(element: Element | None, dotted: Iterable[str]) -> Element | None:
    """Follow child tags (``["processModel"]``, ``["recycling", "periodicRestart"]``)."""

    for tag in dotted:
        element = child(element, tag)
        if element is None:
            return None
    return element


def items(element: Element | None, tag: str | None = None) -> list[Element]:
    """Return the collection items of ``element``, only those of ``tag`` when given."""

    if not element:
        return []
    found = list(element.get("items") or [])
    if tag is not None:
        found = [item for item in found if str(item.get("tag", "")).lower() == tag.lower()]
    return found


def _key_matches(item: Element, key: Mapping[str, str]) -> bool:
    for name, wanted in key.items():
        value = get_attribute(item, name)
        if value is None or value.lower() != str(wanted).lower():
            return False
    return True


def find_item(element: Element | None, tag: str, key: Mapping[str, str]) -> Element | None:
    """Return the first item ``tag`` whose key attributes equal ``key`` (case-insensitive).

    Args:
        element: the element holding the collection (a section, ``bindings``, ...).
        tag: the item tag (``add``, ``site``, ``binding``, ``application``...).
        key: ``{attribute: value}``, e.g. ``{"name": "api"}``.
    """

    for item in items(element, tag):
        if _key_matches(item, key):
            return item
    return None


def section(iis: Mapping[str, Any] | None, path: str, location: str | None = None) -> Element | None:
    """Return a section of the ``iis`` part of the fact.

    Args:
        iis: ``host_state["iis"]`` (``None`` before Web-Server is installed).
        path: section path, e.g. ``"system.applicationHost/applicationPools"``.
        location: ``None`` for server level, else the ``<location path>`` (case-insensitive).

    Returns:
        the ELEMENT, or ``None`` when the section (or location) is not reported.
    """

    if not iis:
        return None
    if location is None:
        return (iis.get("sections") or {}).get(path)
    for name, sections in (iis.get("locations") or {}).items():
        if name.lower() == location.lower():
            return (sections or {}).get(path)
    return None


def split_dotted(dotted: str) -> tuple[list[str], str]:
    """Split ``"processModel.idleTimeout"`` into ``(["processModel"], "idleTimeout")``."""

    parts = dotted.split(".")
    return parts[:-1], parts[-1]


def explicit(element: Element | None, dotted: str) -> str | None:
    """Return the explicit value of a dotted attribute below ``element``, or ``None``."""

    tags, name = split_dotted(dotted)
    return get_attribute(descend(element, tags), name)


def effective(
    element: Element | None,
    dotted: str,
    *,
    defaults_element: Element | None = None,
    schema_default: str | None = None,
) -> str | None:
    """Return the value IIS uses for a dotted attribute of ``element``.

    Order (as IIS resolves it): explicit value on the element, then the collection default
    element (``applicationPoolDefaults``, ``siteDefaults``, ``applicationDefaults``,
    ``virtualDirectoryDefaults``) written in applicationHost.config, then ``schema_default``
    (see :mod:`pyinfra_iis.iis.defaults`).
    """

    value = explicit(element, dotted)
    if value is None and defaults_element is not None:
        value = explicit(defaults_element, dotted)
    if value is None:
        value = schema_default
    return value


def environment(iis: Mapping[str, Any] | None) -> dict[str, str]:
    """Return the host's environment variables IIS expands (``SystemDrive``...), as
    ``Get-HostState`` reported them (``{}`` when not reported)."""

    return dict((iis or {}).get("environment") or {})

