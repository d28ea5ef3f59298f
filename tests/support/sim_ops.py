"""Run pyinfra-iis operations against a simulated host without the CLI: the fact comes from the
host's ``Get-HostState``, the operation's commands run through the simulator's functions.

    sim = SimOps(tmp_path / "web01")
    plan = sim.plan(site, site={...})     # what --dry --diff shows; nothing runs
    sim.apply(site, site={...})           # plan, then run every command on the host
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pyinfra_iis.operations.testing import OperationResult, run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH

from .sim_calls import iis_host, run


class SimOps:
    """A simulated host with Web-Server, and operations planned/applied against it."""

    def __init__(self, state_dir: Path):
        self.host = iis_host(state_dir)

    def fact(self) -> dict:
        return run(self.host, "Get-HostState", {})

    def config_text(self) -> str:
        return self.host.path(APPHOST_CONFIG_PATH).read_text(encoding="utf-8-sig")

    def plan(self, operation: Any, **kwargs: Any) -> OperationResult:
        """The operation's commands and ``--diff`` lines for the host as it is now."""

        return run_operation(operation._inner, self.fact(), diff=True, **kwargs)

    def apply(self, operation: Any, **kwargs: Any) -> OperationResult:
        """Plan, then run each command on the host (as pyinfra would execute them)."""

        result = self.plan(operation, **kwargs)
        for command in result.commands:
            call = parse_remote_call(command)
            assert call is not None, command
            run(self.host, *call)
        return result


def diff_lines(result: OperationResult) -> list[str]:
    """The indented change lines of ``--diff`` (without the title line)."""

    return [line.strip() for line in result.logs if line.startswith("    ")]


def noop_lines(result: OperationResult) -> list[str]:
    return [line for line in result.logs if "noop:" in line]


Call = Callable[..., OperationResult]
