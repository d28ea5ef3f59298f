"""Fleet benchmark: does a fleet of simulated hosts converge like one? (a script, not a test)

    /work/venv/bin/python benchmarks/fleet.py [--hosts 1,10,50] [--latency-ms 20]
        [--hosts-per-sim 10] [--repeat 5] [--no-release] [--no-baseline-converge] [--no-unpatched]
        [--quiet-wait 60]
        [--workdir DIR] [--json FILE]

For each fleet size N, on N fresh simulated hosts (``python -m pyinfra_iis.sim serve``, in
child processes of ``--hosts-per-sim`` hosts each, ``--latency-ms`` injected per WinRM
request), in the same run:

1. first converge: ``pyinfra inventories/sim.py deploys/site.py -y --parallel N`` (the shipped
   inventory and deploy, through pyinfra's command line), with release 1.0.0 of
   ``examples/app`` unless ``--no-release`` (the simulator then runs a real Uvicorn app per host);
2. no-op re-run: once the machine is quiet (fewer than 0.25 busy cores, waiting at most
   ``--quiet-wait`` seconds: the converge's apps start up meanwhile), the same command again
   (it must change nothing), ``--repeat`` times, the fastest kept (the least disturbed by
   other work on the machine);
3. unless ``--no-unpatched``, the no-op re-run with ``$PYINFRA_IIS_PYINFRA_SPEEDUPS=0``:
   pyinfra's own operation-ordering, argument and connector functions instead of
   :mod:`pyinfra_iis.pyinfra_speedups`, likewise repeated, to show what those save;
4. the no-op re-run through the per-command-process baseline connector
   (``benchmarks/baseline_connector.py``: new login, shell, ``powershell.exe`` and module load
   per command), likewise repeated;
5. unless ``--no-baseline-converge``, the baseline's first converge of a second fresh fleet:
   a no-op is a single fact call, where both connectors cost the same; a converge has a step
   per change, where they differ.

Figures come from the simulator's counters (``GET /pyinfra-iis-sim/state`` of every host:
``http_requests``, ``processes``, ``shells``) and the wall seconds of each pyinfra process
(pyinfra's own start-up included, as an operator sees it). ``--parallel N`` is passed because
pyinfra's default pool is 20 greenlets per CPU (40 here), which would queue hosts 41-50.
The simulators' CPU seconds are printed too: on a small machine they, not the controller, can
be the bottleneck.

Targets: a no-op re-run costs at most 8 HTTP requests, 32 KB sent (request
bodies, the simulator's ``bytes_in``) and 1 worker process per host, and 50 hosts take less
than 3 times the wall time of one. Figures only: the exit code is
non-zero on errors (a pyinfra run or a simulator failed), never on a missed target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from pyinfra_iis.pyinfra_speedups import ENV_SWITCH

PROJECT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "baseline_connector.py"
#: Release shipped by the first converge (built from examples/app, cached in the work folder).
VERSION = "1.0.0"
#: The fleet targets (no-op of 50 hosts under 3x one host; per host at most 8 requests, 32 KB sent).
MAX_NOOP_REQUESTS_PER_HOST = 8
MAX_NOOP_KB_SENT_PER_HOST = 32
MAX_NOOP_PROCESSES_PER_HOST = 1
MAX_FLEET_WALL_RATIO = 3.0
#: Seconds one pyinfra run may take before it counts as failed.
RUN_TIMEOUT = 1800
COUNTERS = ("http_requests", "processes", "shells", "bytes_in")
#: Before the no-op runs: wait up to this many seconds for fewer than QUIET_CORES busy cores.
QUIET_WAIT_SECONDS = 60.0
QUIET_CORES = 0.25


class BenchmarkError(RuntimeError):
    """A simulator or a pyinfra run failed: the figures would be meaningless."""


# --- Simulated hosts -------------------------------------------------------------------------


class SimFleet:
    """``hosts`` simulated hosts in ``ceil(hosts / per_process)`` simulator processes.

    Args:
        workdir: state folders go to ``<workdir>/host-NN`` (fresh hosts: the folder must not
            hold earlier state).
        hosts: number of simulated hosts.
        per_process: hosts served by one ``python -m pyinfra_iis.sim serve`` process.
        latency_ms: milliseconds injected before every WinRM request is answered.
        user / password: the administrator account (the password reaches the simulators
            through ``$PYINFRA_IIS_SIM_PASSWORD``, never a command line).

    Raises:
        BenchmarkError: a simulator process did not come up.
    """

    def __init__(self, workdir: Path, hosts: int, per_process: int, latency_ms: float, user: str, password: str):
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        env = {**os.environ, "PYINFRA_IIS_SIM_PASSWORD": password}
        try:
            for first in range(0, hosts, per_process):
                indexes = range(first, min(first + per_process, hosts))
                command = [sys.executable, "-m", "pyinfra_iis.sim", "serve", "--user", user, "--latency-ms", str(latency_ms)]
                for index in indexes:
                    command += ["--port", "0", "--state-dir", str(workdir / f"host-{index + 1:02d}")]
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                self.processes.append(process)
                for _ in indexes:  # one JSON line per host once listening
                    line = process.stdout.readline()
                    if not line:
                        raise BenchmarkError(f"simulator process {process.pid} did not start (exit {process.poll()})")
                    self.ports.append(int(json.loads(line)["url"].rsplit(":", 1)[1].split("/", 1)[0]))
        except BaseException:
            self.stop()
            raise

    def counters(self) -> list[dict[str, int]]:
        """Each host's counters (``GET /pyinfra-iis-sim/state``), in host order."""

        result = []
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/pyinfra-iis-sim/state", timeout=30) as response:
                counters = json.loads(response.read())["counters"]
            result.append({name: int(counters.get(name, 0)) for name in COUNTERS})
        return result

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the simulator processes have used so far (Linux /proc)."""

        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        """SIGTERM every simulator (they save state and kill their app processes), then wait."""

        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- pyinfra runs ----------------------------------------------------------------------------


@dataclass
class Run:
    """One pyinfra run against the fleet.

    Attributes:
        seconds: wall seconds of the pyinfra process.
        controller_cpu: CPU seconds of the pyinfra process (user + system).
        sim_cpu: CPU seconds the simulator processes used meanwhile.
        requests: HTTP requests per host (list, host order); likewise processes and shells.
        changes: operation results that reported a change (``[host] Success`` lines).
        bytes_sent: bytes of request bodies per host (the simulator's ``bytes_in``).
    """

    seconds: float
    controller_cpu: float
    sim_cpu: float
    requests: list[int]
    processes: list[int]
    shells: list[int]
    changes: int
    bytes_sent: list[int] = field(default_factory=list)

    def per_host(self, name: str) -> float:
        """Mean of ``requests``/``processes``/``shells`` over the hosts."""

        values = getattr(self, name)
        return sum(values) / len(values)


def run_pyinfra(fleet: SimFleet, environment: dict[str, str], secrets: list[str], log: Path, baseline: bool = False) -> Run:
    """Run ``pyinfra inventories/sim.py deploys/site.py -y --parallel N`` in the project folder
    (through :mod:`baseline_connector` when ``baseline``) and measure it; pyinfra's output,
    secrets masked, goes to the file ``log``.

    Raises:
        BenchmarkError: pyinfra exited non-zero (its output, secrets masked, is in the message).
    """

    launcher = [str(BASELINE)] if baseline else ["-m", "pyinfra"]
    command = [sys.executable, *launcher, "inventories/sim.py", "deploys/site.py", "-y", "--parallel", str(len(fleet.ports))]
    before, sim_before = fleet.counters(), fleet.cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    seconds = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu, after = fleet.cpu_seconds() - sim_before, fleet.counters()
    output = result.stdout + result.stderr
    for secret in secrets:
        output = output.replace(secret, "*MASKED*")
    log.write_text(output, encoding="utf-8")
    if result.returncode != 0:
        raise BenchmarkError(f"{'baseline ' if baseline else ''}pyinfra exited {result.returncode}:\n{output[-4000:]}")
    deltas = {name: [a[name] - b[name] for a, b in zip(after, before)] for name in COUNTERS}
    cpu = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    return Run(seconds, cpu, sim_cpu, deltas["http_requests"], deltas["processes"], deltas["shells"],
               changes=len(re.findall(r"\] Success", output)), bytes_sent=deltas["bytes_in"])


def best_of(runs: list[Run]) -> Run:
    """The fastest of repeated runs (the least disturbed by other load on the machine), with
    each host's highest counters over all repeats and every change any repeat reported."""

    best = min(runs, key=lambda run: run.seconds)
    worst = {name: [max(values) for values in zip(*(getattr(run, name) for run in runs))]
             for name in ("requests", "processes", "shells", "bytes_sent")}
    return Run(best.seconds, best.controller_cpu, best.sim_cpu, changes=sum(run.changes for run in runs), **worst)


@dataclass
class FleetResult:
    """The runs against one fleet size (``baseline_converge`` on a second fresh fleet)."""

    hosts: int
    sim_processes: int
    converge: Run
    noop: Run
    baseline: Run
    baseline_converge: Run | None = None
    noop_unpatched: Run | None = None
    notes: list[str] = field(default_factory=list)


class FleetRunner:
    """Fresh fleets of one size, with the secrets, files and environment of
    ``inventories/sim.py`` (from :class:`pyinfra_iis.demo.Demo`: hosts run in child processes
    here, not in the Demo's own process)."""

    def __init__(self, hosts: int, args: argparse.Namespace, workdir: Path, artifact: Path | None):
        from pyinfra_iis.demo import Demo, write_sim_files

        self.hosts, self.args, self.workdir, self.artifact = hosts, args, workdir, artifact
        self.demo = Demo(workdir)
        write_sim_files(self.demo.files, self.demo.pfx_password)
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def fleet(self, name: str) -> SimFleet:
        """Start ``hosts`` fresh simulated hosts under ``<workdir>/<name>``."""

        from pyinfra_iis.demo import SIM_USER

        return SimFleet(self.workdir / name, self.hosts, self.args.hosts_per_sim, self.args.latency_ms, SIM_USER, self.demo.password)

    def run(self, fleet: SimFleet, label: str, baseline: bool = False, repeat: int = 1,
            extra_env: dict[str, str] | None = None) -> Run:
        """``repeat`` pyinfra runs of deploys/site.py against ``fleet`` (with ``extra_env`` added
        to their environment); :func:`best_of` them."""

        servers = [SimpleNamespace(port=port) for port in fleet.ports]
        environment = self.demo.environment(version=VERSION if self.artifact else None, artifact=self.artifact, servers=servers)
        # pyinfra_speedups are opt-in: the measured runs turn them on, the 'unpatched' run turns them off.
        environment.update({ENV_SWITCH: "1", **(extra_env or {})})
        print(f" {label} ...", end="", flush=True)
        runs = [run_pyinfra(fleet, environment, self.demo.secrets(), self.logs / f"{label.replace(' ', '-')}-{index + 1}.log", baseline)
                for index in range(repeat)]
        result = best_of(runs)
        print(f" {result.seconds:.1f} s;", end="", flush=True)
        return result


def bench_fleet(hosts: int, args: argparse.Namespace, workdir: Path, artifact: Path | None) -> FleetResult:
    """On ``hosts`` fresh simulated hosts: converge, no-op re-run and baseline no-op re-run
    (each no-op ``args.repeat`` times, best kept); then, unless ``args.no_baseline_converge``,
    the baseline's converge of a second fresh fleet.

    Raises:
        BenchmarkError: a simulator or a pyinfra run failed.
    """

    runner = FleetRunner(hosts, args, workdir, artifact)
    fleet = runner.fleet("fleet")
    print(f"  {hosts} host(s) in {len(fleet.processes)} simulator process(es):", end="", flush=True)
    try:
        converge = runner.run(fleet, "converge")
        busy = wait_until_quiet(args.quiet_wait)
        print(f" (machine at {busy:.2f} busy cores)", end="", flush=True)
        noop = runner.run(fleet, "no-op", repeat=args.repeat)
        unpatched = None
        if not args.no_unpatched:
            unpatched = runner.run(fleet, "no-op unpatched", repeat=args.repeat, extra_env={ENV_SWITCH: "0"})
        baseline = runner.run(fleet, "baseline no-op", baseline=True, repeat=args.repeat)
    finally:
        fleet.stop()
    result = FleetResult(hosts, len(fleet.processes), converge, noop, baseline, noop_unpatched=unpatched)
    if not args.no_baseline_converge:
        fleet = runner.fleet("baseline-fleet")
        try:
            result.baseline_converge = runner.run(fleet, "baseline converge", baseline=True)
        finally:
            fleet.stop()
    print(flush=True)
    for label, run in (("no-op re-run", noop), ("unpatched no-op re-run", unpatched), ("baseline no-op re-run", baseline)):
        if run is not None and run.changes:
            result.notes.append(f"{hosts} hosts: the {label} reported {run.changes} changes (not a no-op)")
    return result


# --- Report ----------------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``1.23x`` (``-`` when the denominator is 0)."""

    return f"{numerator / denominator:.2f}x" if denominator else "-"


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Right-aligned columns separated by ``|``."""

    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [" | ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]


def report(results: list[FleetResult], args: argparse.Namespace, load: tuple[str, str]) -> list[str]:
    """The tables, ratios and targets as lines of text (``load``: /proc/loadavg before/after)."""

    release = "without a release (--no-release)" if args.no_release else f"with release {VERSION} of examples/app"
    lines = [f"deploys/site.py on simulated hosts, {args.latency_ms:g} ms injected latency per WinRM request, first converge {release}",
             f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.hosts_per_sim} hosts per simulator process, "
             f"load average before {load[0]}, after {load[1]}",
             f"no-op seconds: best of {args.repeat} runs; requests and processes: per host, the mean (worst host) over all runs", ""]
    rows = [("hosts", "sims", "converge s", "no-op s", "requests/host", "processes/host",
             "baseline no-op s", "baseline requests/host", "baseline processes/host", "baseline/ours no-op s")]
    for r in results:
        rows.append((str(r.hosts), str(r.sim_processes), f"{r.converge.seconds:.1f}", f"{r.noop.seconds:.2f}",
                     f"{r.noop.per_host('requests'):.1f} ({max(r.noop.requests)})",
                     f"{r.noop.per_host('processes'):.1f} ({max(r.noop.processes)})",
                     f"{r.baseline.seconds:.2f}", f"{r.baseline.per_host('requests'):.1f}",
                     f"{r.baseline.per_host('processes'):.1f}", ratio(r.baseline.seconds, r.noop.seconds)))
    lines += table(rows)

    lines += ["", "converge (first run on fresh hosts), ours and the baseline connector's (a second fresh fleet):"]
    rows = [("hosts", "converge s", "requests/host", "processes/host", "baseline converge s", "baseline requests/host",
             "baseline processes/host", "baseline/ours converge s")]
    for r in results:
        b = r.baseline_converge
        rows.append((str(r.hosts), f"{r.converge.seconds:.1f}", f"{r.converge.per_host('requests'):.0f}",
                     f"{r.converge.per_host('processes'):.0f}",
                     *((f"{b.seconds:.1f}", f"{b.per_host('requests'):.0f}", f"{b.per_host('processes'):.0f}",
                        ratio(b.seconds, r.converge.seconds)) if b else ("-",) * 4)))
    lines += table(rows)

    lines += ["", "CPU seconds (controller = the pyinfra process; sims = the simulator processes, apps excluded):"]
    rows = [("hosts", "converge controller", "converge sims", "no-op controller", "no-op sims", "no-op wall")]
    for r in results:
        rows.append((str(r.hosts), f"{r.converge.controller_cpu:.1f}", f"{r.converge.sim_cpu:.1f}",
                     f"{r.noop.controller_cpu:.1f}", f"{r.noop.sim_cpu:.1f}", f"{r.noop.seconds:.1f}"))
    lines += table(rows)

    if any(r.noop_unpatched for r in results):
        lines += ["", "no-op with pyinfra's own operation-ordering, argument and connector functions "
                  "($PYINFRA_IIS_PYINFRA_SPEEDUPS=0) vs with pyinfra_iis.pyinfra_speedups:"]
        rows = [("hosts", "no-op s", "controller CPU s", "unpatched no-op s", "unpatched controller CPU s", "unpatched/ours no-op s")]
        for r in results:
            u = r.noop_unpatched
            rows.append((str(r.hosts), f"{r.noop.seconds:.2f}", f"{r.noop.controller_cpu:.2f}",
                         *((f"{u.seconds:.2f}", f"{u.controller_cpu:.2f}", ratio(u.seconds, r.noop.seconds)) if u else ("-",) * 3)))
        lines += table(rows)

    lines.append("")
    one = next((r for r in results if r.hosts == 1), None)
    for other in (r for r in results if one and r.hosts > 1):
        lines.append(f"ratio {other.hosts} hosts vs 1: no-op {ratio(other.noop.seconds, one.noop.seconds)}, "
                     f"converge {ratio(other.converge.seconds, one.converge.seconds)}, "
                     f"baseline no-op {ratio(other.baseline.seconds, one.baseline.seconds)}"
                     + (f", unpatched no-op {ratio(other.noop_unpatched.seconds, one.noop_unpatched.seconds)}"
                        if other.noop_unpatched and one.noop_unpatched else ""))
    for other in (r for r in results if one and r.hosts > 1):
        extra = (other.noop.controller_cpu - one.noop.controller_cpu) / (other.hosts - 1)
        lines.append(f"controller CPU per extra host, no-op ({other.hosts} vs 1 hosts): {extra * 1000:.0f} ms "
                     f"(the pyinfra process runs on one core: this bounds how many hosts fit in one host's wall time)")
    for r in results:
        lines.append(f"ratio baseline vs ours, {r.hosts} hosts: no-op {ratio(r.baseline.seconds, r.noop.seconds)} seconds, "
                     f"{ratio(r.baseline.per_host('requests'), r.noop.per_host('requests'))} requests, "
                     f"{ratio(r.baseline.per_host('processes'), r.noop.per_host('processes'))} processes"
                     + (f"; converge {ratio(r.baseline_converge.seconds, r.converge.seconds)} seconds, "
                        f"{ratio(r.baseline_converge.per_host('requests'), r.converge.per_host('requests'))} requests, "
                        f"{ratio(r.baseline_converge.per_host('processes'), r.converge.per_host('processes'))} processes"
                        if r.baseline_converge else ""))

    worst_requests = max(max(r.noop.requests) for r in results)
    worst_processes = max(max(r.noop.processes) for r in results)
    lines.append("")
    for r in results:
        if r.noop.bytes_sent:
            lines.append(f"no-op per host, {r.hosts} hosts: {r.noop.per_host('requests'):.1f} requests, "
                         f"{r.noop.per_host('bytes_sent') / 1024:.1f} KB sent (worst host {max(r.noop.requests)} requests, "
                         f"{max(r.noop.bytes_sent) / 1024:.1f} KB)")
    worst_kb = max((max(r.noop.bytes_sent) for r in results if r.noop.bytes_sent), default=0) / 1024
    lines.append(f"target: no-op <= {MAX_NOOP_KB_SENT_PER_HOST} KB sent/host: "
                 f"{'met' if worst_kb <= MAX_NOOP_KB_SENT_PER_HOST else 'MISSED'} (worst host {worst_kb:.1f} KB)")
    lines.append(f"target: no-op <= {MAX_NOOP_REQUESTS_PER_HOST} HTTP requests/host: "
                 f"{'met' if worst_requests <= MAX_NOOP_REQUESTS_PER_HOST else 'MISSED'} (worst host {worst_requests})")
    lines.append(f"target: no-op <= {MAX_NOOP_PROCESSES_PER_HOST} worker process/host: "
                 f"{'met' if worst_processes <= MAX_NOOP_PROCESSES_PER_HOST else 'MISSED'} (worst host {worst_processes})")
    largest = max(results, key=lambda r: r.hosts)
    if one and largest.hosts >= 50:
        fleet_ratio = largest.noop.seconds / one.noop.seconds
        lines.append(f"target: {largest.hosts} hosts < {MAX_FLEET_WALL_RATIO:g}x the wall time of 1 (no-op): "
                     f"{'met' if fleet_ratio < MAX_FLEET_WALL_RATIO else 'MISSED'} ({fleet_ratio:.2f}x)")
    else:
        lines.append(f"target: 50 hosts < {MAX_FLEET_WALL_RATIO:g}x the wall time of 1: not measured (--hosts must include 1 and 50)")
    unchanged = all(not run.changes for r in results for run in (r.noop, r.noop_unpatched) if run is not None)
    lines.append(f"no-op re-runs changed nothing: {'yes' if unchanged else 'NO'}")
    for r in results:
        lines.extend(f"note: {note}" for note in r.notes)
    return lines


def busy_cores(window: float = 1.0) -> float:
    """CPU cores the whole machine kept busy over ``window`` seconds (Linux ``/proc/stat``)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    busy_before, total_before = sample()
    time.sleep(window)
    busy_after, total_after = sample()
    elapsed = (total_after - total_before) or 1
    return (os.cpu_count() or 1) * (busy_after - busy_before) / elapsed


def wait_until_quiet(limit_seconds: float = QUIET_WAIT_SECONDS, threshold: float = QUIET_CORES) -> float:
    """Wait (at most ``limit_seconds``) until the machine keeps fewer than ``threshold`` cores
    busy, e.g. after a converge whose apps are still starting; return the last reading.
    The no-op figures are the controller's cost, not what the converge left running."""

    deadline = time.monotonic() + limit_seconds
    busy = busy_cores()
    while busy >= threshold and time.monotonic() < deadline:
        busy = busy_cores()
    return busy


def load_average() -> str:
    """The 1-minute load average (other work on the machine skews wall times)."""

    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless a simulator or a pyinfra run failed."""

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,10,50", help="comma-separated fleet sizes (default 1,10,50)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="injected per WinRM request (default 20)")
    parser.add_argument("--hosts-per-sim", type=int, default=10, help="hosts per simulator process (default 10)")
    parser.add_argument("--no-release", action="store_true", help="converge IIS only (no release version)")
    parser.add_argument("--repeat", type=int, default=5, help="no-op runs per connector, best kept (default 5)")
    parser.add_argument("--no-baseline-converge", action="store_true", help="skip the baseline's converge of a second fleet")
    parser.add_argument("--quiet-wait", type=float, default=QUIET_WAIT_SECONDS,
                        help=f"before the no-op runs, wait at most this many seconds for fewer than {QUIET_CORES} busy cores "
                             f"(default {QUIET_WAIT_SECONDS:g})")
    parser.add_argument("--no-unpatched", action="store_true",
                        help="skip the no-op runs with pyinfra's own functions ($PYINFRA_IIS_PYINFRA_SPEEDUPS=0)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temporary one, deleted afterwards)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.hosts.split(",") if n.strip()]
    if not sizes or min(sizes) < 1 or args.hosts_per_sim < 1 or args.repeat < 1:
        parser.error("--hosts needs positive sizes, --hosts-per-sim and --repeat >= 1")
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="pyinfra-iis-fleet-") as scratch:
        workdir = args.workdir or Path(scratch)
        try:
            artifact = None
            if not args.no_release:
                from pyinfra_iis.demo import build_artifact

                print(f"building release {VERSION} of examples/app ...", flush=True)
                artifact = build_artifact(VERSION, workdir / "dist")
            results = []
            for hosts in sizes:
                # a fresh work folder per size: fresh hosts, and a fresh Demo's files and secrets
                results.append(bench_fleet(hosts, args, workdir / f"size-{hosts}", artifact))
        except (BenchmarkError, subprocess.TimeoutExpired) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
    lines = report(results, args, (load_before, load_average()))
    print("\n".join(["", *lines]))
    if args.json:
        args.json.write_text(json.dumps({"latency_ms": args.latency_ms, "hosts_per_sim": args.hosts_per_sim,
                                         "release": not args.no_release, "results": [asdict(r) for r in results],
                                         "report": lines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
