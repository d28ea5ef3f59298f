"""Fault injection for one simulated host.

Faults are set from Python (``sim.faults``), from the command line (``serve --latency-ms 20
--drop-after 3 --fail-function NAME``) or at run time with ``POST /pyinfra-iis-sim/control``
on the simulator's port (JSON body, see :meth:`Faults.apply`):

* ``latency``: seconds added to every WS-Management request (0 = no overhead at all);
* ``drop_after(n)``: after ``n`` more requests, the next one has its connection closed
  without a response (once);
* ``kill_worker()``: every running pyinfra-iis worker dies at once: its command is Done with
  exit code 1 and further Sends to it fault;
* ``fail_function(name, times)``: the next ``times`` calls of module function ``name`` fail
  (exit code 1, an explicit "simulated failure" message on stderr);
* ``garble_function(name)``: every call of module function ``name`` succeeds but prints a
  line that is not JSON (a host whose module answers garbage);
* restart (``SimServer.restart()`` or ``{"restart": true}``): the WinRM service restarts and
  every shell is lost;
* ``at_step(k, action, kind="frame")``: a fault at the k-th worker step from now, where a step
  is a frame line a worker receives (a remote call or the module; ``kind="data"`` counts upload
  data lines instead). Actions (:data:`STEP_ACTIONS`): ``drop`` (the connection carrying the
  line is closed without a response; the worker never sees the line), ``drop_reply`` (the
  step runs; the next request, normally the Receive carrying its reply, is dropped),
  ``kill_worker`` (the worker dies instead of running the step) and ``restart`` (the WinRM
  service restarts instead of running it). Several triggers may be armed at once, each
  counting from when it was armed. ``step_log`` names the recent lines (function name,
  ``module``, ``script``, or ``data`` for each upload data line) for reports.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

#: What :meth:`Faults.at_step` can do at a step (see the module docstring).
STEP_ACTIONS = ("drop", "drop_reply", "kill_worker", "restart")
#: What :meth:`Faults.at_step` counts: frame lines (steps) or upload data lines.
STEP_KINDS = ("frame", "data")
#: How many step names :attr:`Faults.step_log` keeps.
STEP_LOG_SIZE = 10_000


class DropConnection(Exception):
    """Raised inside request handling when the current connection must be closed without a
    response (``at_step(k, "drop")``); the HTTP layer catches it."""


@dataclass
class _StepTrigger:
    kind: str
    left: int
    action: str


class Faults:
    """The fault settings of one host; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0
        self._drop_in: int | None = None
        self._function_failures: dict[str, int] = {}
        self._garbled: set[str] = set()
        self._triggers: list[_StepTrigger] = []
        #: Names of the most recent worker lines, oldest first (see :meth:`on_line`).
        self.step_log: deque[str] = deque(maxlen=STEP_LOG_SIZE)
        #: Set by the server: kills all workers / restarts the service.
        self.on_kill_worker: Callable[[], int] | None = None
        self.on_restart: Callable[[], None] | None = None
        #: PowerShell's language mode for new processes: "ConstrainedLanguage" models a host
        #: under a WDAC/AppLocker policy (the worker reports it and exits 3).
        self.language_mode = "FullLanguage"
        #: Sends answered with WSMan fault 2150858793 (OperationTimeout) although their data is
        #: delivered, as Windows does while the process has not read its stdin yet.
        self.send_timeouts = 0

    def drop_after(self, requests: int) -> None:
        """Let ``requests`` more requests through, then drop the next connection (once)."""

        if requests < 0:
            raise ValueError("drop_after needs a number of requests >= 0")
        with self._lock:
            self._drop_in = int(requests)

    def should_drop(self) -> bool:
        """Called once per request by the server: True when this request must be dropped."""

        if self._drop_in is None:
            return False
        with self._lock:
            if self._drop_in is None:
                return False
            if self._drop_in == 0:
                self._drop_in = None
                return True
            self._drop_in -= 1
            return False

    def at_step(self, step: int, action: str, kind: str = "frame") -> None:
        """Arm ``action`` at the ``step``-th line of ``kind`` that a worker receives from now
        (1 = the next one); fires once.

        Raises:
            ValueError: ``step`` < 1, or an unknown ``action`` / ``kind``.
        """

        if int(step) < 1:
            raise ValueError("at_step needs a step >= 1")
        if action not in STEP_ACTIONS:
            raise ValueError(f"unknown step action {action!r} (known: {', '.join(STEP_ACTIONS)})")
        if kind not in STEP_KINDS:
            raise ValueError(f"unknown step kind {kind!r} (known: {', '.join(STEP_KINDS)})")
        with self._lock:
            self._triggers.append(_StepTrigger(kind, int(step), action))

    def on_line(self, kind: str, name: str) -> str | None:
        """Called by a worker for each line it receives, before handling it: ``kind`` is
        ``"frame"`` or ``"data"``, ``name`` what the line is (for :attr:`step_log`). Returns
        the action of a trigger firing now, or None."""

        self.step_log.append(name)
        if not self._triggers:
            return None
        fired = None
        with self._lock:
            for trigger in list(self._triggers):
                if trigger.kind != kind:
                    continue
                trigger.left -= 1
                if trigger.left == 0:
                    self._triggers.remove(trigger)
                    fired = fired or trigger.action
        return fired

    def kill_worker(self) -> int:
        """Kill every running worker now; returns how many were killed."""

        return self.on_kill_worker() if self.on_kill_worker else 0

    def fail_function(self, name: str, times: int = 1) -> None:
        """Make the next ``times`` calls of module function ``name`` fail."""

        with self._lock:
            self._function_failures[name.lower()] = self._function_failures.get(name.lower(), 0) + int(times)

    def garble_function(self, name: str) -> None:
        """Make every call of module function ``name`` print a line that is not JSON."""

        with self._lock:
            self._garbled.add(name.lower())

    def garbled(self, name: str) -> bool:
        """Whether the output of ``name`` is to be replaced by a line that is not JSON."""

        return bool(self._garbled) and name.lower() in self._garbled

    def take_function_failure(self, name: str) -> str | None:
        """Called per function call: the injected error message, or None to run normally."""

        if not self._function_failures:
            return None
        with self._lock:
            left = self._function_failures.get(name.lower(), 0)
            if left <= 0:
                return None
            if left == 1:
                del self._function_failures[name.lower()]
            else:
                self._function_failures[name.lower()] = left - 1
        return f"simulated failure of {name} (pyinfra-iis simulator fault injection)"

    def clear(self) -> None:
        """Remove every fault (latency 0, nothing dropped, no failing function)."""

        with self._lock:
            self.latency = 0.0
            self._drop_in = None
            self._function_failures.clear()
            self._garbled.clear()
            self._triggers.clear()
            self.language_mode = "FullLanguage"
            self.send_timeouts = 0

    def as_dict(self) -> dict[str, Any]:
        """The current settings as JSON-compatible data."""

        with self._lock:
            return {"latency_ms": round(self.latency * 1000, 3), "drop_in": self._drop_in,
                    "fail_functions": dict(self._function_failures), "garbled": sorted(self._garbled),
                    "at_steps": [{"kind": t.kind, "left": t.left, "action": t.action} for t in self._triggers]}

    def apply(self, control: dict[str, Any]) -> dict[str, Any]:
        """Apply a control document, e.g. ``{"latency_ms": 20, "drop_after": 3,
        "fail_function": {"name": "Set-IisConfig", "times": 1}, "kill_worker": true,
        "restart": true, "clear": true, "at_step": {"step": 5, "action": "drop", "kind": "frame"}}``
        (``fail_function`` may also be a plain name; ``at_step`` also a list of such objects).

        Returns:
            what was done, e.g. ``{"killed_workers": 1}`` plus the new settings.

        Raises:
            ValueError: unknown keys or values of the wrong type.
        """

        known = {"latency_ms", "drop_after", "fail_function", "kill_worker", "restart", "clear", "at_step",
                 "language_mode", "send_timeouts", "garble_function"}
        unknown = set(control) - known
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        done: dict[str, Any] = {}
        if control.get("clear"):
            self.clear()
        if "latency_ms" in control:
            latency = float(control["latency_ms"])
            if latency < 0:
                raise ValueError("latency_ms must be >= 0")
            self.latency = latency / 1000.0
        if "language_mode" in control:
            if control["language_mode"] not in ("FullLanguage", "ConstrainedLanguage", "RestrictedLanguage", "NoLanguage"):
                raise ValueError("language_mode must be FullLanguage, ConstrainedLanguage, RestrictedLanguage or NoLanguage")
            self.language_mode = control["language_mode"]
        if "send_timeouts" in control:
            self.send_timeouts = int(control["send_timeouts"])
        if control.get("drop_after") is not None:
            self.drop_after(int(control["drop_after"]))
        failing = control.get("fail_function")
        if failing:
            if isinstance(failing, str):
                self.fail_function(failing)
            elif isinstance(failing, dict) and isinstance(failing.get("name"), str):
                self.fail_function(failing["name"], int(failing.get("times", 1)))
            else:
                raise ValueError("fail_function must be a name or {\"name\": ..., \"times\": N}")
        if control.get("garble_function"):
            self.garble_function(str(control["garble_function"]))
        triggers = control.get("at_step")
        for trigger in ([triggers] if isinstance(triggers, dict) else triggers or []):
            if not isinstance(trigger, dict) or "step" not in trigger or "action" not in trigger:
                raise ValueError('at_step must be {"step": N, "action": ..., "kind": "frame"|"data"} or a list of them')
            self.at_step(int(trigger["step"]), str(trigger["action"]), str(trigger.get("kind", "frame")))
        if control.get("kill_worker"):
            done["killed_workers"] = self.kill_worker()
        if control.get("restart"):
            if self.on_restart:
                self.on_restart()
            done["restarted"] = True
        done["faults"] = self.as_dict()
        return done
