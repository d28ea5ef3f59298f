"""The ``release`` part of ``Get-HostState``: what the host reports, as the operations read it.

:func:`convert` turns the host's raw answer for this part into the shape the operations use
(``docs/remote-functions.md``); it is called by :meth:`pyinfra_iis.facts.host_state.HostState.process`.
"""

from __future__ import annotations

from typing import Any


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with this part converted (in place; returned for chaining)."""

    return raw
