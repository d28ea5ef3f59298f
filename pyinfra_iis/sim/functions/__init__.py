"""Registry of the Python implementations of the project's PowerShell module functions.

Each function of ``remote/PyinfraIis`` that the simulator supports has a Python twin here,
registered with :func:`sim_function`::

    from pyinfra_iis.sim.functions import SimFunctionError, sim_function

    @sim_function("Get-Thing")
    def get_thing(host, payload):
        '''host: SimHost; payload: the dict from -Json '...'. Returns stdout text.'''
        with host.lock:
            thing = host.state.setdefault("things", {}).get(payload["name"])
        if thing is None:
            raise SimFunctionError(f"no thing named {payload['name']}")  # -> rc 1, stderr
        return json.dumps(thing)

Rules:

* A function takes ``(host: SimHost, payload: dict)`` and returns its stdout text (usually
  ``json.dumps`` of the result; the worker adds the CRLF that PowerShell's ``Out-String``
  adds) or raises :class:`SimFunctionError` (exit code 1, message on stderr).
* Put new functions in a new module of this package (``iis_config.py``, ...): every module
  here is imported automatically on first use.
* State that belongs to the worker process (like the ``$script:`` variables of the real
  module, e.g. an open upload) lives in :func:`session`, a dict per worker.
* Change ``host.state`` only under ``host.lock`` and call ``host.save()`` after a change.
"""

from __future__ import annotations

import contextvars
import importlib
import pkgutil
import re
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

SimFunction = Callable[["SimHost", dict[str, Any]], str]

_REGISTRY: dict[str, tuple[str, SimFunction]] = {}
_LOADED = False
_LOAD_LOCK = threading.Lock()
_NAME_RE = re.compile(r"^[A-Z][a-z]+-[A-Z][A-Za-z0-9]+$")
#: Modules of this package that failed to import: name -> error text (their functions are
#: then missing, and a call reports this).
LOAD_ERRORS: dict[str, str] = {}
_SESSION: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("pyinfra_iis_sim_session")


class SimFunctionError(Exception):
    """A module function failed; the message goes to stderr and the exit code is 1."""


def sim_function(name: str) -> Callable[[SimFunction], SimFunction]:
    """Register the decorated callable as the simulator's version of module function ``name``.

    Raises:
        ValueError: ``name`` is not ``Verb-Noun`` or is already registered.
    """

    if not _NAME_RE.match(name):
        raise ValueError(f"not a module function name (Verb-Noun): {name!r}")

    def register(function: SimFunction) -> SimFunction:
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key][1] is not function:
            raise ValueError(f"simulator function {name} is registered twice")
        _REGISTRY[key] = (name, function)
        return function

    return register


def load_all() -> None:
    """Import every module of this package once (they register their functions); a module
    that fails to import is recorded in :data:`LOAD_ERRORS` and skipped."""

    global _LOADED
    if _LOADED:
        return
    with _LOAD_LOCK:
        if _LOADED:
            return
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                try:
                    importlib.import_module(f"{__name__}.{info.name}")
                except Exception as exc:  # one broken module must not hide the others
                    LOAD_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
        _LOADED = True


def get_function(name: str) -> SimFunction | None:
    """Return the implementation of ``name`` (case-insensitive, like PowerShell) or None."""

    load_all()
    entry = _REGISTRY.get(name.lower())
    return entry[1] if entry else None


def registered() -> list[str]:
    """Names of all registered functions, sorted."""

    load_all()
    return sorted(name for name, _ in _REGISTRY.values())


def session() -> dict[str, Any]:
    """The state dict of the worker process running the current call.

    Raises:
        RuntimeError: called outside a function call dispatched by a worker.
    """

    try:
        return _SESSION.get()
    except LookupError:
        raise RuntimeError("no worker session: session() is only available inside a simulator function call") from None


def call(host: "SimHost", name: str, payload: dict[str, Any], worker_session: dict[str, Any]) -> str:
    """Run function ``name`` with ``payload`` inside ``worker_session``.

    Raises:
        KeyError: no such function is registered.
        SimFunctionError: the function failed.
    """

    function = get_function(name)
    if function is None:
        raise KeyError(name)
    token = _SESSION.set(worker_session)
    try:
        return function(host, payload)
    finally:
        _SESSION.reset(token)
