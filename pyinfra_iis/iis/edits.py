"""Build the EDIT objects of ``Set-IisConfig`` (``docs/remote-functions.md``).

    EDIT = {"section": str, "location": str | None, "path": [STEP], "action": "set" | "remove",
            "attributes": {name: str | Secret}}
    STEP = {"child": tag} | {"item": tag, "key": {attribute: value}}

Attribute values are strings as IIS writes them; a :class:`~pyinfra_iis.protocol.Secret` value is
sent raw and shown masked.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

from ..protocol import Secret

Step = dict[str, Any]
Edit = dict[str, Any]


def child_step(tag: str) -> Step:
    """STEP into the child element ``tag`` (created if missing)."""

    return {"child": tag}


def item_step(tag: str, **key: str) -> Step:
    """STEP into the collection item ``tag`` whose key attributes equal ``key``."""

    return {"item": tag, "key": dict(key)}


def set_edit(section: str, path: Sequence[Step], attributes: Mapping[str, Any] | None = None, location: str | None = None) -> Edit:
    """EDIT that navigates ``path`` (creating what is missing) and sets ``attributes``.

    Args:
        section: section path, e.g. ``"system.applicationHost/applicationPools"``.
        path: list of STEPs from the section element down to the target element.
        attributes: ``{name: value}``; values become strings unless they are ``Secret``.
        location: ``None`` (server level) or a ``<location path>`` such as ``"api"``.
    """

    values = {name: value if isinstance(value, Secret) else str(value) for name, value in (attributes or {}).items()}
    return {"section": section, "location": location, "path": list(path), "action": "set", "attributes": values}


def remove_edit(section: str, path: Sequence[Step], location: str | None = None) -> Edit:
    """EDIT that removes the item addressed by the last STEP of ``path`` (an item step).

    Raises:
        ValueError: the last step is not an item step.
    """

    if not path or "item" not in path[-1]:
        raise ValueError("a remove edit must end with an item step")
    return {"section": section, "location": location, "path": list(path), "action": "remove", "attributes": {}}


def attribute_edits(section: str, base: Sequence[Step], changes: Mapping[str, Any], location: str | None = None) -> list[Edit]:
    """Group dotted attribute changes into one ``set`` EDIT per element.

    Args:
        section: section path.
        base: STEPs to the element the dotted names are relative to (e.g. the pool item).
        changes: ``{"startMode": "AlwaysRunning", "processModel.idleTimeout": "00:00:00"}``.
        location: ``<location path>`` or ``None``.

    Returns:
        edits in first-seen order of their element: ``[set base {startMode}, set
        base+processModel {idleTimeout}]``.
    """

    grouped: "OrderedDict[tuple[str, ...], dict[str, Any]]" = OrderedDict()
    for dotted, value in changes.items():
        *tags, name = dotted.split(".")
        grouped.setdefault(tuple(tags), {})[name] = value
    return [
        set_edit(section, [*base, *(child_step(tag) for tag in tags)], attributes, location)
        for tags, attributes in grouped.items()
    ]
