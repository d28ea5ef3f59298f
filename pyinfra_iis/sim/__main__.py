"""Command line of the simulator.

``python -m pyinfra_iis.sim serve --port 5985 --state-dir DIR [--port 5986 --state-dir DIR2 ...]
[--user admin --password P] [--allow-unencrypted] [--max-envelope-kb 500] [--latency-ms 20]
[--drop-after N] [--fail-function NAME]``

serves one simulated host per ``--port``/``--state-dir`` pair, all in this process, until
SIGINT or SIGTERM, then saves every host and exits 0. It prints one JSON line per host
(``{"hostname", "url", "state_dir"}``) once listening. The password comes from
``--password``, else ``$PYINFRA_IIS_SIM_PASSWORD``, else a random one printed in that line.
Fault options apply to every host; change them at run time with ``POST
/pyinfra-iis-sim/control`` on a host's port.

``python -m pyinfra_iis.sim show --state-dir DIR`` prints the host state document (host
name, counters of HTTP requests, shells and processes, ...) as JSON, plus ``"script_block_log"``
(every script block text a Windows host with Script Block Logging on would record, event 4104)
and ``"served_bindings"``:
which loopback port serves which site binding, and whether it listens now (``sim/apps``; apps
run with this OS's Python, not the target Windows Python).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from .apps import describe_state
from .host import SimHost
from .server import DEFAULT_MAX_ENVELOPE_KB, SimServer


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pyinfra_iis.sim``."""

    parser = argparse.ArgumentParser(prog="python -m pyinfra_iis.sim", description="Simulated Windows Server WinRM hosts")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve simulated hosts until SIGINT/SIGTERM")
    serve.add_argument("--port", type=int, action="append", required=True, help="TCP port on 127.0.0.1 (repeat per host)")
    serve.add_argument("--state-dir", action="append", required=True, help="state directory (repeat per host)")
    serve.add_argument("--user", default="admin")
    serve.add_argument("--password", default=None)
    serve.add_argument("--allow-unencrypted", action="store_true", help="accept Basic and plain bodies over HTTP")
    serve.add_argument("--max-envelope-kb", type=int, default=DEFAULT_MAX_ENVELOPE_KB)
    serve.add_argument("--latency-ms", type=float, default=0.0)
    serve.add_argument("--drop-after", type=int, default=None)
    serve.add_argument("--fail-function", action="append", default=[])
    show = commands.add_parser("show", help="print a host's state as JSON")
    show.add_argument("--state-dir", required=True)
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run ``serve``; returns the exit code."""

    if len(args.port) != len(args.state_dir):
        print("error: give one --state-dir per --port", file=sys.stderr)
        return 2
    password = args.password or os.environ.get("PYINFRA_IIS_SIM_PASSWORD")
    servers = []
    stop = threading.Event()
    for port, state_dir in zip(args.port, args.state_dir):
        server = SimServer(state_dir, user=args.user, password=password, port=port,
                           allow_unencrypted=args.allow_unencrypted, max_envelope_kb=args.max_envelope_kb)
        server.faults.latency = args.latency_ms / 1000.0
        if args.drop_after is not None:
            server.faults.drop_after(args.drop_after)
        for name in args.fail_function:
            server.faults.fail_function(name)
        servers.append(server.start())
    for server in servers:
        line = {"hostname": server.host.hostname, "url": server.url, "state_dir": str(server.host.state_dir),
                "user": server.user}
        if password is None:
            line["password"] = server.password  # generated: the operator has no other way to learn it
        print(json.dumps(line), flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for server in servers:
            server.close()
    return 0


def show(args: argparse.Namespace) -> int:
    """Run ``show``; returns the exit code."""

    path = Path(args.state_dir)
    if not (path / SimHost.STATE_FILE).exists():
        print(f"error: no simulated host in {path} ({SimHost.STATE_FILE} missing)", file=sys.stderr)
        return 1
    state = json.loads((path / SimHost.STATE_FILE).read_text(encoding="utf-8"))
    state["served_bindings"] = describe_state(state)
    # Script Block Logging (event 4104) as Windows would record it: what a 4104 reader sees.
    state["script_block_log"] = SimHost(path).script_block_log()
    print(json.dumps(state, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""

    args = build_parser().parse_args(argv)
    return serve(args) if args.command == "serve" else show(args)


if __name__ == "__main__":
    sys.exit(main())
