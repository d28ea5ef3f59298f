"""A fleet run with hostile hosts (issue 12): ten simulated hosts converge while four hostile
ones on loopback each fail alone, with one line naming the host and the cause, in bounded time.

Hostile hosts: a port answering every request with a body that is not XML, one streaming a
huge body (256 MiB, chunked, so no Content-Length gives it away), one that accepts and never
answers, and a simulated host whose ``Get-HostState`` prints a line that is not JSON. The real
``pyinfra`` command line runs ``deploys/site.py``; its peak memory (ru_maxrss) is printed as a
figure (target < 200 MB; before the bounded read a 256 MB body alone took it to ~584 MB).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyinfra_iis.sim import SimServer

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "Fleet-Pw'9"
HEALTHY = 10
HUGE = 256 * 1024 * 1024

#: Runs pyinfra and writes its peak resident memory (KiB, Linux ru_maxrss) to argv[1].
MEASURE = """
import atexit, resource, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
sys.argv[0] = "pyinfra"
runpy.run_module("pyinfra", run_name="__main__", alter_sys=True)
"""


class Hostile:
    """A loopback TCP server that misbehaves as ``kind`` says: ``nonxml``, ``huge``, ``silent``."""

    def __init__(self, kind: str):
        self.kind = kind
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.kind == "silent":
                self.held.append(conn)  # accepted, never answered, never closed
                self.stopping.wait()
                return
            while self._read_request(conn):
                if self.kind == "nonxml":
                    body = b"<html><body>Welcome to nginx!</body>"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                else:  # huge, chunked: no Content-Length announces it
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                    block = b"<" * (1024 * 1024)
                    frame = b"%x\r\n" % len(block) + block + b"\r\n"
                    while self.sent < HUGE and not self.stopping.is_set():
                        conn.sendall(frame)
                        self.sent += len(block)
                    conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            if self.kind != "silent":
                conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_ten_hosts_converge_and_each_hostile_host_fails_alone(tmp_path):
    msi = tmp_path / "hph.msi"
    msi.write_bytes(b"not really an msi, the simulator checks the hash only")
    iis = {
        "iis_extensions": [{"product": "HttpPlatformHandler", "source": str(msi),
                            "sha256": hashlib.sha256(msi.read_bytes()).hexdigest()}],
        "iis_app_pools": [{"name": "api"}],
        "iis_sites": [{"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
                       "log_directory": "C:\\sites\\api\\logs",
                       "bindings": [{"protocol": "http", "port": 8080, "host_name": "api.example.com"}]}],
    }
    sims = [SimServer(tmp_path / f"sim-{index}", user=USER, password=PASSWORD, port=0, allow_unencrypted=True).start()
            for index in range(HEALTHY + 1)]
    garbled = sims.pop()
    garbled.faults.garble_function("Get-HostState")
    hostile = {kind: Hostile(kind) for kind in ("nonxml", "huge", "silent")}
    try:
        hosts = [(f"@winrm/127.0.0.1:{sim.port}", {}) for sim in sims + [garbled]]
        # The raw ports speak no NTLM: Basic (opted in) lets their replies reach the XML layer.
        raw = {"winrm_transport": "basic", "winrm_allow_insecure": True,
               "winrm_operation_timeout_sec": 2, "winrm_read_timeout_sec": 5}
        hosts += [(f"@winrm/127.0.0.1:{server.port}", raw) for server in hostile.values()]
        data = {"winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", **iis}
        (tmp_path / "inventory.py").write_text(
            "import json\n"
            f"hosts = ([tuple(h) for h in json.loads({json.dumps(json.dumps(hosts))})], json.loads({json.dumps(json.dumps(data))}))\n")
        (tmp_path / "deploy.py").write_text("from pyinfra_iis.deploys.iis import configure_iis\nconfigure_iis()\n")
        rss_file = tmp_path / "maxrss"
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", MEASURE, str(rss_file), "inventory.py", "deploy.py", "-y"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - started
        output = result.stdout + result.stderr
        peak_mb = int(rss_file.read_text()) / 1024 if rss_file.exists() else float("nan")
        print(f"\nfleet of {HEALTHY} + 4 hostile hosts: {elapsed:.1f} s, controller peak RSS {peak_mb:.0f} MB "
              f"(target < 200 MB); the huge host sent {hostile['huge'].sent / 2**20:.0f} MiB before the controller hung up")
        assert "Traceback" not in output, output
        assert PASSWORD not in output

        for sim in sims:
            config = sim.host.path("C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config").read_text(encoding="utf-8-sig")
            assert "*:8080:api.example.com" in config, f"{sim.port} did not converge:\n{output}"

        def failure_line(port: int, *words: str) -> str:
            lines = [line for line in output.splitlines() if f"127.0.0.1:{port}]" in line and any(
                word.lower() in line.lower() for word in words)]
            assert lines, f"no one-line failure for 127.0.0.1:{port} ({words}):\n{output}"
            return lines[0]

        print(failure_line(hostile["nonxml"].port, "not WinRM XML"))
        print(failure_line(hostile["huge"].port, "larger than"))
        print(failure_line(hostile["silent"].port, "timeout", "no answer", "timed out"))
        print(failure_line(garbled.port, "JSON"))
        assert hostile["huge"].sent < 64 * 1024 * 1024, "the controller kept reading the huge body"
    finally:
        for sim in sims + [garbled]:
            sim.close()
        for server in hostile.values():
            server.close()
