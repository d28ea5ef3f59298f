"""Benchmark of the WinRM transport against the simulator (a script, not a test).

    /work/venv/bin/python benchmarks/transport.py [--commands 200] [--latency-ms 20] [--upload-mb 100]

Runs the simulator in its own process (``python -m pyinfra_iis.sim serve``) so its memory
does not count as the controller's, then, in the same run:

1. ``--commands`` small commands through the @winrm connector's worker session, with
   ``--latency-ms`` injected per request;
2. the same commands through a baseline that opens a new shell and a new powershell.exe per
   command (pywinrm ``Session.run_ps``, which also logs in again each time);
3. an upload of ``--upload-mb`` MB with latency 0, in a fresh child process whose peak RSS
   (``resource.getrusage``) is the controller's memory figure.

Prints requests per command, processes started, seconds, upload MB/s, peak controller RSS and
the ratios, and the targets: <= 2 HTTP requests per command and no new process,
upload >= 25 MB/s on loopback, peak RSS < 150 MB. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PASSWORD = "bench-Secr3t"
USER = "admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimProcess:
    """The simulator in a child process, driven through its control and state URLs."""

    def __init__(self, state_dir: Path, latency_ms: float):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyinfra_iis.sim", "serve", "--port", str(self.port), "--state-dir", str(state_dir),
             "--user", USER, "--password", PASSWORD, "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline()  # one JSON line once listening
        if not line:
            raise RuntimeError("the simulator did not start")
        self.base = f"http://127.0.0.1:{self.port}"

    def control(self, **document) -> None:
        request = urllib.request.Request(self.base + "/pyinfra-iis-sim/control", data=json.dumps(document).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def counters(self) -> dict:
        with urllib.request.urlopen(self.base + "/pyinfra-iis-sim/state", timeout=10) as response:
            return json.loads(response.read())["counters"]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the simulator process has used so far."""

        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def host_data() -> dict:
    return {"winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", "winrm_transport": "ntlm"}


def connect(port: int):
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all

    name = f"@winrm/127.0.0.1:{port}"
    inventory = Inventory(([name], {}), override_data=host_data())
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host(name)


def measure(sim: SimProcess, run) -> dict:
    before = sim.counters()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    after = sim.counters()
    return {"seconds": seconds, **{key: after.get(key, 0) - before.get(key, 0) for key in ("http_requests", "shells", "processes")}}


def bench_worker(sim: SimProcess, count: int) -> dict:
    from pyinfra.api.connect import disconnect_all

    state, host = connect(sim.port)
    host.run_shell_command("Write-Output 'warm'")

    def run() -> None:
        for index in range(count):
            ok, output = host.run_shell_command(f"Write-Output 'n{index}'")
            assert ok and output.stdout_lines == [f"n{index}"], output

    result = measure(sim, run)
    disconnect_all(state)
    return result


def bench_baseline(sim: SimProcess, count: int) -> dict:
    import winrm

    def run() -> None:
        session = winrm.Session(f"http://127.0.0.1:{sim.port}/wsman", auth=(USER, PASSWORD), transport="ntlm")
        for index in range(count):
            response = session.run_ps(f"Write-Output 'n{index}'")
            assert response.status_code == 0 and response.std_out.strip() == f"n{index}".encode(), response.std_err

    return measure(sim, run)


def upload_child(port: int, megabytes: int) -> None:
    """Runs in a fresh process: upload a generated file, print figures as JSON."""

    from pyinfra_iis.transport import files

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "payload.bin"
        block = os.urandom(1 << 20)
        with open(path, "wb") as handle:
            for _ in range(megabytes):
                handle.write(block)
        state, host = connect(port)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        result = files.put(host.connector.session, str(path), r"C:\bench\payload.bin")
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        assert not result.skipped
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(json.dumps({"seconds": seconds, "mb_per_s": megabytes / seconds, "peak_rss_mb": peak_kb / 1024, "cpu": cpu,
                          "sends": host.connector.session.stats.sends}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--upload-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        upload_child(args.upload_child, args.upload_mb)
        return 0

    with tempfile.TemporaryDirectory() as state_dir:
        sim = SimProcess(Path(state_dir), args.latency_ms)
        try:
            worker = bench_worker(sim, args.commands)
            baseline = bench_baseline(sim, args.commands)
            sim.control(latency_ms=0)
            sim_cpu_before = sim.cpu_seconds()
            child = subprocess.run([sys.executable, __file__, "--upload-child", str(sim.port), "--upload-mb", str(args.upload_mb)],
                                   capture_output=True, text=True, timeout=900)
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            upload = json.loads(child.stdout.strip().splitlines()[-1])
            upload["sim_cpu"] = sim.cpu_seconds() - sim_cpu_before
        finally:
            sim.stop()

    n = args.commands
    print(f"{n} commands, {args.latency_ms:g} ms injected latency per request")
    print(f"{'':24}{'worker session':>16}{'new shell+process':>20}{'ratio':>9}")
    rows = [
        ("HTTP requests/command", worker["http_requests"] / n, baseline["http_requests"] / n),
        ("processes started", worker["processes"], baseline["processes"]),
        ("shells opened", worker["shells"], baseline["shells"]),
        ("seconds", worker["seconds"], baseline["seconds"]),
        ("ms/command", worker["seconds"] * 1000 / n, baseline["seconds"] * 1000 / n),
    ]
    for label, ours, theirs in rows:
        ratio = f"{theirs / ours:8.1f}x" if ours else "      -"
        print(f"{label:24}{ours:16.2f}{theirs:20.2f}{ratio:>9}")
    print(f"upload {args.upload_mb} MB (latency 0): {upload['seconds']:.2f} s, {upload['mb_per_s']:.1f} MB/s, "
          f"{upload['sends']} Sends, peak controller RSS {upload['peak_rss_mb']:.0f} MB")
    client_cpu, sim_cpu = upload["cpu"], upload["sim_cpu"]
    print(f"upload CPU: controller {client_cpu:.2f} s, simulator {sim_cpu:.2f} s "
          f"(simulator alone could take {args.upload_mb / sim_cpu:.1f} MB/s, controller alone {args.upload_mb / client_cpu:.1f} MB/s; "
          f"fully serial {args.upload_mb / (client_cpu + sim_cpu):.1f} MB/s). Other load on this machine lowers the wall-clock figure.")
    print("targets: <= 2 requests/command and 0 processes: "
          f"{'met' if worker['http_requests'] / n <= 2 and worker['processes'] == 0 else 'MISSED'}; "
          f"upload >= 25 MB/s: {'met' if upload['mb_per_s'] >= 25 else 'MISSED'}; "
          f"peak RSS < 150 MB: {'met' if upload['peak_rss_mb'] < 150 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
