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
* restart (``SimServer.restart()`` or ``{"restart": true}``): the WinRM service restarts and
  every shell is lost.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class Faults:
    """The fault settings of one host; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0
        self._drop_in: int | None = None
        self._function_failures: dict[str, int] = {}
        #: Set by the server: kills all workers / restarts the service.
        self.on_kill_worker: Callable[[], int] | None = None
        self.on_restart: Callable[[], None] | None = None

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

    def kill_worker(self) -> int:
        """Kill every running worker now; returns how many were killed."""

        return self.on_kill_worker() if self.on_kill_worker else 0

    def fail_function(self, name: str, times: int = 1) -> None:
        """Make the next ``times`` calls of module function ``name`` fail."""

        with self._lock:
            self._function_failures[name.lower()] = self._function_failures.get(name.lower(), 0) + int(times)

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

    def as_dict(self) -> dict[str, Any]:
        """The current settings as JSON-compatible data."""

        with self._lock:
            return {"latency_ms": round(self.latency * 1000, 3), "drop_in": self._drop_in,
                    "fail_functions": dict(self._function_failures)}

    def apply(self, control: dict[str, Any]) -> dict[str, Any]:
        """Apply a control document, e.g. ``{"latency_ms": 20, "drop_after": 3,
        "fail_function": {"name": "Set-IisConfig", "times": 1}, "kill_worker": true,
        "restart": true, "clear": true}`` (``fail_function`` may also be a plain name).

        Returns:
            what was done, e.g. ``{"killed_workers": 1}`` plus the new settings.

        Raises:
            ValueError: unknown keys or values of the wrong type.
        """

        known = {"latency_ms", "drop_after", "fail_function", "kill_worker", "restart", "clear"}
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
        if control.get("kill_worker"):
            done["killed_workers"] = self.kill_worker()
        if control.get("restart"):
            if self.on_restart:
                self.on_restart()
            done["restarted"] = True
        done["faults"] = self.as_dict()
        return done
