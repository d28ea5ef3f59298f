"""Attribute-level before/after lines for ``--diff`` (``state.config.DIFF``).

Like pyinfra's ``files`` operations, an operation logs what will change before yielding its
commands; secrets (``Secret`` values, digests of environment variables and passwords) are shown
as ``*MASKED*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pyinfra import logger

from ..protocol import SECRET_DIGEST_PREFIX, Secret

MASK = "*MASKED*"


@dataclass(frozen=True)
class Change:
    """One attribute change: ``target`` (e.g. ``"app pool api: processModel.idleTimeout"``),
    ``before`` (``None`` = absent), ``after`` (``None`` = removed); ``secret`` masks both."""

    target: str
    before: Any
    after: Any
    secret: bool = False


def show(value: Any, secret: bool = False) -> str:
    """Render one value for a diff line (``(absent)`` for ``None``; secrets masked)."""

    if value is None:
        return "(absent)"
    if secret or isinstance(value, Secret) or (isinstance(value, str) and value.startswith(SECRET_DIGEST_PREFIX)):
        return MASK
    return repr(str(value))


def format_change(change: Change) -> str:
    """Return ``"target: 'before' -> 'after'"`` with secrets masked."""

    return f"{change.target}: {show(change.before, change.secret)} -> {show(change.after, change.secret)}"


def log_changes(host: Any, title: str, changes: Iterable[Change]) -> list[str]:
    """Log ``title`` then one indented line per change through ``host.log`` (pyinfra style)
    when ``--diff`` is on, once per run (at plan time, or at execute time under ``-y``).

    Returns:
        the lines (also when ``--diff`` is off, for tests).
    """

    lines = [format_change(change) for change in changes]
    state = _state()
    if lines and once_per_run() and getattr(getattr(state, "config", None), "DIFF", False):
        host.log(title, logger.info)
        for line in lines:
            logger.info("    %s", line)
    return lines


def _state() -> Any:
    from pyinfra import context

    return context.state if context.ctx_state.isset() else None


def once_per_run() -> bool:
    """True in the one pass of an operation generator whose messages should be printed:
    pyinfra runs a generator at plan time and again at execute time (only at execute time
    under ``-y``)."""

    state = _state()
    if state is None:
        return True
    return not state.is_executing or not state.check_for_changes
