"""Compare desired dotted attributes with an element of the fact: the differing ones only."""

from __future__ import annotations

from typing import Any, Mapping

from . import config
from .defaults import AttributeSpec, same_value, spec_for
from .diff import Change


def differing(
    element: config.Element | None,
    desired: Mapping[str, Any],
    table: Mapping[str, AttributeSpec],
    *,
    defaults_element: config.Element | None = None,
    label: str,
    environment: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[Change]]:
    """Return ``(changes, diff)`` for the dotted attributes of ``desired`` whose effective value
    on ``element`` differs.

    Args:
        element: the item/section ELEMENT (``None``: absent, every attribute is compared with
            its inherited/schema default, as a new item would get).
        desired: ``{"processModel.idleTimeout": "00:00:00", ...}`` (strings).
        table: the :mod:`~pyinfra_iis.iis.defaults` table of the element's attributes.
        defaults_element: the collection default element (``applicationPoolDefaults``...).
        label: prefix of diff lines, e.g. ``"app pool api"``.
        environment: the host's environment variables, for attributes IIS expands
            (``AttributeSpec.expanded``); default none (compared as written).
    """

    changes: dict[str, Any] = {}
    diff: list[Change] = []
    for dotted, wanted in desired.items():
        spec = spec_for(table, dotted)
        current = config.effective(element, dotted, defaults_element=defaults_element, schema_default=spec.default if spec else None)
        if not same_value(spec, current, wanted, environment):
            changes[dotted] = wanted
            diff.append(Change(f"{label}: {dotted}", current, wanted))
    return changes, diff
