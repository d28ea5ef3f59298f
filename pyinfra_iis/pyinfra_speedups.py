"""Equivalent, cheaper versions of three pyinfra 3 internals that run for every host or operation.

A no-op ``deploys/site.py`` run is one fact call per host, so on a fleet the controller's CPU
(one core: pyinfra runs every host in gevent greenlets of one process) decides the wall time.
cProfile of a 50-host no-op (``benchmarks/README.md``) found most of it in three pyinfra
functions whose results never change during a run, or that read source text only to throw it
away:

``pyinfra.api.util.get_operation_order_from_stack``
    Called for every operation on every host (CLI mode). It runs ``inspect.stack()`` and then
    ``inspect.getframeinfo()`` on each frame again, with the default context of one source
    line: ~20 ``getframeinfo`` calls per operation. For a frame of an exec'd deploy file
    (``deploys/site.py`` is no module) ``inspect.getmodule`` misses its cache and walks all of
    ``sys.modules`` (~900 modules) each time. Only each frame's file name and line number are
    used.
    :func:`operation_order_from_stack` reads those two straight from the frames.
``pyinfra.api.arguments.all_global_arguments``
    Called by ``pop_global_arguments`` for every operation and deploy call: it evaluates
    ``typing.get_type_hints(AllArguments)`` anew each time; the answer is fixed once pyinfra is
    imported. :func:`all_global_arguments` keeps it.
``pyinfra.api.connectors.get_all_connectors``
    Called twice per ``@connector`` host while the inventory is built; every call scans all
    installed distributions' entry points. :func:`all_connectors` scans once per process.

Measured by ``benchmarks/fleet.py`` (which runs the no-op both ways) on a quiet 2-vCPU
machine: a 50-host no-op took 5.16 s wall and 4.75 s of controller CPU without them, 3.04 s and
2.64 s with them; one host 1.24 s and 1.20 s.

They are OPT-IN: ``$PYINFRA_IIS_PYINFRA_SPEEDUPS=1`` turns them on; by default pyinfra runs
unmodified. :func:`install` swaps them into pyinfra's modules; the connector calls it when an
inventory names a ``@winrm`` host, so runs without one are untouched whatever the switch says.
It installs nothing (and says why at debug level, shown by ``pyinfra --debug``) unless the
switch is ``1``, when pyinfra's version is outside the range these were checked against
(:data:`CHECKED_PYINFRA`, the range ``pyproject.toml`` requires), or when another library
already replaced one of the functions.
``tests/test_pyinfra_speedups.py`` checks each replacement against the installed pyinfra's own
function, so a pyinfra release that changes their meaning fails CI rather than reordering
operations.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any

#: pyinfra's own logger, so ``pyinfra --debug`` shows whether the replacements are in place.
logger = logging.getLogger("pyinfra")

#: Environment variable: ``1`` installs the replacements; unset or anything else keeps pyinfra's
#: own functions (the default: pyinfra runs unmodified).
ENV_SWITCH = "PYINFRA_IIS_PYINFRA_SPEEDUPS"

#: The value of :data:`ENV_SWITCH` that turns the replacements on.
ENABLED = "1"

#: pyinfra versions the replacements were checked against: ``(lowest, below)``; the same range
#: as the dependency in ``pyproject.toml``.
CHECKED_PYINFRA = ((3, 10), (4,))

#: pyinfra's functions while the replacements are in place: ``{"module.attribute": function}``.
_REPLACED: dict[str, Any] = {}


class _ReplacedFrame:
    """Stands for the frame of pyinfra's own function, which ``inspect.stack()`` lists last
    (reversed) and which is always skipped as being inside pyinfra."""

    f_code = None


def operation_order_from_stack(state: Any) -> list[int]:
    """The operation order of the calling operation: what
    ``pyinfra.api.util.get_operation_order_from_stack(state)`` returns, without source lookups.

    Args:
        state: the pyinfra ``State``; its ``current_deploy_filename`` (the deploy file pyinfra
            is running, or ``None``) and ``current_op_file_number`` are read.

    Returns:
        In CLI mode the deploy file's number first, then the line number of every frame from
        the outermost frame of the deploy file inwards, skipping frames of files under
        pyinfra's install folder (``pyinfra.api.util.PYINFRA_INSTALL_DIR``). A frame's file
        and line are ``f_code.co_filename`` and ``f_lineno``, which is what
        ``inspect.getframeinfo`` reports for frames of Python source.
    """

    import pyinfra
    from pyinfra.api.util import PYINFRA_INSTALL_DIR

    frames: list[Any] = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    frames.append(_ReplacedFrame)  # pyinfra's function's own frame: see _ReplacedFrame

    start = 0
    if state.current_deploy_filename:
        # As pyinfra does: the first frame of the deploy file, else the last frame.
        for start, item in enumerate(frames):
            if item.f_code is not None and item.f_code.co_filename == state.current_deploy_filename:
                break

    line_numbers = []
    if pyinfra.is_cli:
        line_numbers.append(state.current_op_file_number)
    for item in frames[start:]:
        if item.f_code is None or item.f_code.co_filename.startswith(PYINFRA_INSTALL_DIR):
            continue
        line_numbers.append(item.f_lineno)
    return line_numbers


@functools.lru_cache(maxsize=None)
def _global_arguments() -> tuple[tuple[str, Any], ...]:
    from pyinfra.api.arguments import AllArguments
    from typing import get_type_hints

    return tuple(get_type_hints(AllArguments).items())


def all_global_arguments() -> list[tuple[str, type]]:
    """pyinfra's global operation arguments and their types, as
    ``pyinfra.api.arguments.all_global_arguments()`` returns them (a new list each call),
    with the type hints evaluated once per process."""

    return list(_global_arguments())


@functools.lru_cache(maxsize=None)
def _connectors() -> tuple[tuple[str, Any], ...]:
    from pyinfra.api import connectors

    original = _REPLACED.get("pyinfra.api.connectors.get_all_connectors", connectors.get_all_connectors)
    return tuple(original().items())


def all_connectors() -> dict[str, Any]:
    """``{name: connector class}`` of the installed ``pyinfra.connectors`` entry points, as
    ``pyinfra.api.connectors.get_all_connectors()`` returns it (a new dict each call), with
    the entry points read once per process."""

    return dict(_connectors())


def _targets() -> list[tuple[Any, str, Any]]:
    """``(module, attribute, replacement)`` for each name the replacements go to."""

    import pyinfra.api.operation  # noqa: F401  (the module, not pyinfra.api's `operation` name)
    from pyinfra.api import arguments, connectors, inventory

    return [
        (sys.modules["pyinfra.api.operation"], "get_operation_order_from_stack", operation_order_from_stack),
        (arguments, "all_global_arguments", all_global_arguments),
        (connectors, "get_all_connectors", all_connectors),  # get_execution_connectors calls it
        (inventory, "get_all_connectors", all_connectors),
    ]


def _refusal() -> str | None:
    """Why the replacements cannot be installed, or ``None``."""

    switch = os.environ.get(ENV_SWITCH)
    if switch is None or switch.strip() != ENABLED:
        return f"${ENV_SWITCH} is not {ENABLED} (they are opt-in)"
    import pyinfra

    version = getattr(pyinfra, "__version__", "")
    try:
        numbers = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return f"pyinfra version {version!r} is not of the form MAJOR.MINOR[.PATCH]"
    lowest, below = CHECKED_PYINFRA
    if not lowest <= numbers < below:
        return f"pyinfra {version} is outside the checked range {lowest} to below {below}"
    for module, name, _ in _targets():
        if getattr(getattr(module, name, None), "__module__", "").split(".")[0] != "pyinfra":
            return f"{module.__name__}.{name} is not pyinfra's own function (already replaced?)"
    return None


def install() -> bool:
    """Put the replacements into pyinfra's modules, once per process.

    Returns:
        ``True`` when they are in place (now or from an earlier call), ``False`` when they were
        not installed; the reason is logged at debug level. Never raises for a refusal.
    """

    if _REPLACED:
        return True
    reason = _refusal()
    if reason is not None:
        logger.debug("pyinfra speedups not installed: %s", reason)
        return False
    for module, name, replacement in _targets():
        _REPLACED[f"{module.__name__}.{name}"] = getattr(module, name)
        setattr(module, name, replacement)
    logger.debug("pyinfra speedups installed (see pyinfra_iis.pyinfra_speedups)")
    return True


def uninstall() -> None:
    """Put pyinfra's own functions back (tests and comparisons); a no-op if not installed."""

    for module, name, _ in _targets():
        original = _REPLACED.pop(f"{module.__name__}.{name}", None)
        if original is not None:
            setattr(module, name, original)
    _connectors.cache_clear()
