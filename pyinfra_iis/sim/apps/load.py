"""Clients calling simulated hosts through their IIS bindings for as long as a run lasts, so a
test or a benchmark can count the requests a release switch failed.

Python API::

    from pyinfra_iis.sim.apps.load import ClientLoad
    with ClientLoad(demo.servers, "/info", clients=8) as load:   # 8 threads, round-robin over the hosts
        load.step("v2")                # from now on, answers count for step "v2"
        ...run the release...
    load.summary()                     # {"v2": {"requests", "failed", "p50_ms", "p99_ms", "failures"}}

A request fails when it gets no answer (connection refused or reset, timeout) or a status other
than 200 (the 502.3 of issue 11 included). Each client makes one request at a time with a new
connection (https with SNI, as :func:`pyinfra_iis.demo.fetch`), so every request goes through the
binding's listener and the pool's serving worker process at that moment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

#: Failures kept per step (status and the first characters of the answer), for messages.
FAILURES_KEPT = 20


@dataclass
class StepFigures:
    """What the clients saw during one step: latencies of every request (seconds) and failures."""

    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """``{"requests", "failed", "p50_ms", "p99_ms", "max_ms", "failures"}`` (percentiles by
        nearest rank; ``None`` without requests)."""

        ordered = sorted(self.latencies)

        def rank(p: float):
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else None

        return {"requests": len(ordered), "failed": self.failed, "p50_ms": rank(0.50), "p99_ms": rank(0.99),
                "max_ms": round(ordered[-1] * 1000, 1) if ordered else None, "failures": list(self.failures)}


class ClientLoad:
    """``clients`` threads requesting ``path`` through the https binding of ``servers`` in turn.

    Args:
        servers: simulated hosts (``SimServer``, as ``Demo.servers``).
        path: the URL path requested (``/info``).
        clients: concurrent clients (threads).
        fetch: ``fetch(server, path) -> (status, body)``; default :func:`pyinfra_iis.demo.fetch`.
        pause: seconds a client waits between two requests (0: back to back).
    """

    def __init__(self, servers: Sequence[Any], path: str = "/info", clients: int = 8,
                 fetch: Callable[[Any, str], tuple[int, str]] | None = None, pause: float = 0.0):
        if fetch is None:
            from ...demo import fetch as demo_fetch

            fetch = demo_fetch
        self.servers, self.path, self.clients, self.fetch, self.pause = list(servers), path, clients, fetch, pause
        self._lock = threading.Lock()
        self._steps: dict[str, StepFigures] = {}
        self._current = "start"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def step(self, name: str) -> None:
        """Count the answers from now on for step ``name`` (a request is counted for the step in
        which it started)."""

        with self._lock:
            self._current = name
            self._steps.setdefault(name, StepFigures())

    def start(self) -> "ClientLoad":
        """Start the clients."""

        self.step(self._current)
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), name=f"sim-client-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the clients (each finishes its request in flight)."""

        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def __enter__(self) -> "ClientLoad":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _client(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            server = self.servers[turn % len(self.servers)]
            turn += 1
            with self._lock:
                step = self._current
            started = time.monotonic()
            try:
                status, body = self.fetch(server, self.path)
                problem = None if status == 200 else f"HTTP {status}: {body[:160]}"
            except Exception as exc:  # noqa: BLE001 - every kind of failure is a failed request
                problem = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - started
            with self._lock:
                figures = self._steps.setdefault(step, StepFigures())
                figures.latencies.append(elapsed)
                if problem is not None:
                    figures.failed += 1
                    if len(figures.failures) < FAILURES_KEPT:
                        figures.failures.append(problem)
            if self.pause:
                self._stop.wait(self.pause)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per step, in the order the steps began: :meth:`StepFigures.summary`."""

        with self._lock:
            return {name: figures.summary() for name, figures in self._steps.items()}
