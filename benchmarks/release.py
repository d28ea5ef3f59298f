"""Release benchmark: do clients see a failed request while a fleet moves from release to release?
(a script, not a test)

    /work/venv/bin/python benchmarks/release.py [--mode httpplatform|arr|both] [--hosts 2] [--clients 8]
        [--path /info] [--workdir DIR] [--json FILE]

Per hosting mode (``--mode``, repeatable; ``both`` or none: every mode in :data:`MODES`,
``httpplatform`` then ``arr``): ``--hosts`` fresh
simulated hosts (in this process, ``pyinfra_iis.demo.Demo``) are converged with release 1.0.0 of
``examples/app`` by ``deploys/site.py`` (the shipped inventory and deploys, through pyinfra's
command line). Then ``--clients`` threads call ``--path`` through the hosts' https bindings
(round robin, one request at a time each, a new connection per request) for the rest of the run,
while ``deploys/release.py`` ships 2.0.0, then 3.0.0 (which fails at import: it must be
refused), then ``deploys/rollback.py`` runs.

Printed per mode and step (``v2``, ``broken v3``, ``rollback``): the requests the clients made
and how many failed (no answer, or a status other than 200) during the whole step and during its
``Switch-Release`` calls, p50/p99 latency during the switches, the wall seconds of the pyinfra
run and, for the broken release, the seconds from its ``Switch-Release`` call to the refusal
(target: within twice its ``startup_time_limit``). Target: 0 failed requests in every step.
Figures only: the exit code is non-zero on errors (a deploy that should have passed failed, or
the broken one passed), never on a missed target.

A mode is one function in :data:`MODES` (``mode(args, work, artifacts) -> list[StepResult]``)
that prepares its hosts and runs :func:`release_steps`. In the ARR mode (:func:`arr`) the
"switch" is the ARR release's host calls (``Start-AppService`` with its health check, the
rewrite rule's ``Set-IisConfig``, ``Stop-AppService``; :data:`WATCHED`), and the broken release's
refusal is timed from its ``Start-AppService`` call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from pyinfra_iis.demo import Demo, build_artifact  # noqa: E402
from pyinfra_iis.release.variants import make_broken_app  # noqa: E402
from pyinfra_iis.sim import functions as sim_functions  # noqa: E402
from pyinfra_iis.sim.apps.load import ClientLoad  # noqa: E402

EXAMPLE_APP = PROJECT / "examples" / "app"
#: Seconds one pyinfra run may take.
RUN_TIMEOUT = 900
#: The shipped group data's startup_time_limit (seconds): the broken release must be refused
#: within twice this.
STARTUP_TIME_LIMIT = 60


class BenchmarkError(RuntimeError):
    """A deploy did not end as it must (the figures would be meaningless)."""


@dataclass
class StepResult:
    """One step of one mode: the clients' figures during the whole step and during its switches."""

    mode: str
    step: str
    ok: bool
    run_seconds: float
    whole: dict[str, Any]
    switch: dict[str, Any]
    switch_seconds: list[float] = field(default_factory=list)
    refused_after: float | None = None


#: Per mode, the simulator functions that make its switch: the clients count for
#: ``"<step> switch"`` while any host is in one; the first one's seconds are the switch seconds
#: (and, for the broken release, its refusal time).
#: In the ARR mode the release's start check (an ``Invoke-Program`` of the start-check script,
#: never the install's venv/pip runs) comes first and refuses a broken release before its slot
#: starts: its seconds are that release's refusal time.
WATCHED = {"httpplatform": ("switch-release",), "arr": ("start-appservice", "set-iisconfig", "stop-appservice", "invoke-program")}


def start_check_call(key: str, payload: Any) -> bool:
    """Whether an ``Invoke-Program`` call is a release's start check (``python -I -c <script>``)."""

    return key != "invoke-program" or (isinstance(payload, dict) and (payload.get("arguments") or [])[:2] == ["-I", "-c"])


class SwitchWatch:
    """Wraps the simulator's ``Switch-Release`` (or ``keys``; the hosts run in this process):
    while any host switches, the clients count for ``"<step> switch"``; records the seconds of
    each call of the first key."""

    def __init__(self, load: ClientLoad, keys: tuple[str, ...] = ("switch-release",)):
        self.load, self.step, self.seconds, self.checks, self.active = load, "start", [], [], 0
        self._lock = threading.Lock()
        sim_functions.load_all()
        self._keys = keys
        self._originals = {key: sim_functions._REGISTRY[key] for key in keys}

    def _watched(self, key: str, original: Callable) -> Callable:
        def watched(host, payload):
            if not start_check_call(key, payload):
                return original(host, payload)
            with self._lock:
                self.active += 1
                self.load.step(f"{self.step} switch")
            started = time.monotonic()
            try:
                return original(host, payload)
            finally:
                with self._lock:
                    if key == self._keys[0]:
                        self.seconds.append(round(time.monotonic() - started, 2))
                    elif key == "invoke-program":
                        self.checks.append(round(time.monotonic() - started, 2))
                    self.active -= 1
                    if not self.active:
                        self.load.step(self.step)

        return watched

    def __enter__(self) -> "SwitchWatch":
        for key, (name, original) in self._originals.items():
            sim_functions._REGISTRY[key] = (name, self._watched(key, original))
        return self

    def __exit__(self, *exc) -> None:
        sim_functions._REGISTRY.update(self._originals)

    def begin(self, step: str) -> None:
        with self._lock:
            self.step, self.seconds, self.checks = step, [], []
            self.load.step(step)


def refusal_seconds(watch: SwitchWatch) -> float | None:
    """A refused release's seconds: its longest switch call, else (ARR mode: refused by the start
    check before its slot started) its longest start check."""

    return max(watch.seconds or watch.checks) if (watch.seconds or watch.checks) else None


def release_steps(mode: str, demo: Demo, artifacts: dict[str, Path], clients: int, path: str) -> list[StepResult]:
    """v2, broken v3, rollback on ``demo``'s hosts with ``clients`` calling ``path`` meanwhile."""

    steps = [("v2", "deploys/release.py", "2.0.0", True), ("broken v3", "deploys/release.py", "3.0.0", False),
             ("rollback", "deploys/rollback.py", None, True)]
    results = []
    with ClientLoad(demo.servers, path, clients=clients) as load, SwitchWatch(load, WATCHED[mode]) as watch:
        time.sleep(1.0)
        for name, deploy, version, must_pass in steps:
            watch.begin(name)
            started = time.monotonic()
            run = demo.pyinfra(deploy, version=version, artifact=artifacts.get(version or ""), timeout=RUN_TIMEOUT)
            seconds = time.monotonic() - started
            if (run.returncode == 0) is not must_pass:
                raise BenchmarkError(f"{mode} {name}: pyinfra ended with {run.returncode}:\n{(run.stdout + run.stderr)[-3000:]}")
            time.sleep(1.0)  # requests that began during the step finish within it
            figures = load.summary()
            outside, during = figures.get(name, {}), figures.get(f"{name} switch", {})
            whole = {"requests": outside.get("requests", 0) + during.get("requests", 0),
                     "failed": outside.get("failed", 0) + during.get("failed", 0),
                     "failures": [*during.get("failures", []), *outside.get("failures", [])]}
            results.append(StepResult(mode, name, run.returncode == 0, round(seconds, 1), whole, during, list(watch.seconds),
                                      refusal_seconds(watch) if not must_pass else None))
    return results


def httpplatform(args: argparse.Namespace, work: Path, artifacts: dict[str, Path]) -> list[StepResult]:
    """HttpPlatformHandler mode: the shipped inventory as it is (the release's web.config warms
    the app up; the site deploy converges the pool for an overlapped recycle)."""

    root = work / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with Demo(work / "hosts", hosts=args.hosts, root=root) as demo:
        first = demo.pyinfra("deploys/site.py", version="1.0.0", artifact=artifacts["1.0.0"], timeout=RUN_TIMEOUT)
        if first.returncode != 0:
            raise BenchmarkError(f"httpplatform: the first converge failed:\n{(first.stdout + first.stderr)[-3000:]}")
        return release_steps("httpplatform", demo, artifacts, args.clients, args.path)


#: The ARR mode's group data (appended to the shipped inventory's): the shipped release_app
#: with ``mode="arr"``, a stand-in for the pinned WinSW (the simulator runs the services itself)
#: and timeouts shortened so a run takes minutes, aligned as ``models.arr.check_arr_timeouts``
#: demands (proxy_timeout 10 s <= drain 8 s + graceful shutdown 3 s; keep-alive 120 s).
ARR_GROUP_DATA = """
release_app = {{**release_app, "mode": "arr", "timeout_keep_alive": "120s", "timeout_graceful_shutdown": "3s",
                "arr": {{"winsw": {{"source": {winsw!r}, "sha256": "{sha256}"}}, "workers": 2,
                        "proxy_timeout": "10s", "drain": "8s", "stop_timeout": "10s"}}}}
iis_server = {{**iis_server, "proxy": {{**iis_server["proxy"], "timeout": "10s"}}}}
"""


def arr(args: argparse.Namespace, work: Path, artifacts: dict[str, Path]) -> list[StepResult]:
    """ARR reverse-proxy mode (docs/hosting-modes.md): the shipped inventory with
    :data:`ARR_GROUP_DATA`; each release goes to the idle blue/green slot, is health-checked on
    its port, the rewrite rule switches, the old slot drains and stops."""

    root = work / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    winsw = work / "winsw" / "WinSW-x64.exe"
    winsw.parent.mkdir(parents=True, exist_ok=True)
    winsw.write_bytes(b"MZ pyinfra-iis benchmark stand-in for WinSW 2.12 x64\r\n")
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(ARR_GROUP_DATA.format(winsw=str(winsw), sha256=hashlib.sha256(winsw.read_bytes()).hexdigest()))
    with Demo(work / "hosts", hosts=args.hosts, root=root) as demo:
        first = demo.pyinfra("deploys/site.py", version="1.0.0", artifact=artifacts["1.0.0"], timeout=RUN_TIMEOUT)
        if first.returncode != 0:
            raise BenchmarkError(f"arr: the first converge failed:\n{(first.stdout + first.stderr)[-3000:]}")
        return release_steps("arr", demo, artifacts, args.clients, args.path)


#: Hosting modes: name -> function(args, work folder, artifacts) -> step results (run in this order).
MODES: dict[str, Callable[[argparse.Namespace, Path, dict[str, Path]], list[StepResult]]] = {"httpplatform": httpplatform, "arr": arr}


def chosen_modes(asked: list[str] | None) -> list[str]:
    """The modes to run for ``--mode`` values: none or ``both``: every mode of :data:`MODES`."""

    if not asked or "both" in asked:
        return list(MODES)
    return list(dict.fromkeys(asked))


def build_artifacts(folder: Path) -> dict[str, Path]:
    """1.0.0 and 2.0.0 of examples/app, 3.0.0 failing at import (wheels cached as the demo's)."""

    broken = make_broken_app(EXAMPLE_APP, folder / "broken-app", "import-error")
    return {"1.0.0": build_artifact("1.0.0", folder), "2.0.0": build_artifact("2.0.0", folder),
            "3.0.0": build_artifact("3.0.0", folder, app_dir=broken)}


def report(results: list[StepResult]) -> list[str]:
    """The printed table and the target lines."""

    lines = ["mode | step | run s | requests | failed | switch requests | switch failed | switch p50 ms | switch p99 ms | switch s | refused after s"]
    for r in results:
        lines.append(" | ".join(str(v) for v in (r.mode, r.step, r.run_seconds, r.whole.get("requests"), r.whole.get("failed"),
                                                  r.switch.get("requests"), r.switch.get("failed"), r.switch.get("p50_ms"),
                                                  r.switch.get("p99_ms"), ",".join(map(str, r.switch_seconds)) or "-",
                                                  r.refused_after if r.refused_after is not None else "-")))
    failed = sum((r.whole.get("failed") or 0) for r in results)
    lines.append(f"target: 0 failed requests: {'met' if failed == 0 else f'MISSED ({failed} failed)'}")
    for r in results:
        for failure in (r.whole.get("failures") or [])[:3]:
            lines.append(f"  {r.mode} {r.step}: {failure}")
        if r.refused_after is not None:
            met = r.refused_after <= 2 * STARTUP_TIME_LIMIT
            lines.append(f"target: {r.mode} broken release refused within 2 x startup_time_limit ({2 * STARTUP_TIME_LIMIT} s): "
                         f"{'met' if met else 'MISSED'} ({r.refused_after} s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=[*MODES, "both"], help="hosting mode (repeatable; both or none: all)")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--path", default="/info")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary folder, removed afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    import tempfile

    temporary = tempfile.TemporaryDirectory(prefix="pyinfra-iis-release-bench-") if args.workdir is None else None
    work = Path(temporary.name) if temporary else args.workdir
    try:
        artifacts = build_artifacts(work / "dist")
        results: list[StepResult] = []
        for mode in chosen_modes(args.mode):
            results += MODES[mode](args, work / mode, artifacts)
        print("\n".join(report(results)))
        if args.json:
            args.json.write_text(json.dumps({"results": [asdict(r) for r in results]}, indent=2), encoding="utf-8")
        return 0
    except BenchmarkError as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        return 1
    finally:
        if temporary:
            temporary.cleanup()


if __name__ == "__main__":
    sys.exit(main())
