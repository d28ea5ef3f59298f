"""The start check of ``Switch-Release`` (``preflight``, :mod:`pyinfra_iis.release.startcheck`) on
the simulated host: the controller's script runs for real, with the local stand-in venv of the
release (``launch.SIM_VENV_MARKER``) instead of ``<release>\\venv\\Scripts\\python.exe`` and the
release folder mapped into the state directory.

As on Windows (``Invoke-HostProgram``): the runner's ``environment`` is added to the
simulator's (the base of :func:`.process.base_environment`), the working directory is the
release folder, the run is killed after ``timeout_seconds``; a non-zero exit code refuses the
switch before anything is committed.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from .bindings import HttpError
from .launch import _local_python
from .process import base_environment

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: Characters of each output stream kept (as the host's runner: 8 KB).
OUTPUT_LIMIT = 8192
#: Lines of output in the refusal message.
TAIL_LINES = 30


def run_start_check(host: "SimHost", preflight: dict[str, Any]) -> dict[str, Any]:
    """Run the start check; ``{"exit_code", "stdout", "stderr"}`` (tails), exit code 1 with the
    reason on stderr when the simulator cannot run it; ``{"error"}`` when the run exceeded
    ``timeout_seconds`` (stopped; the host's runner throws then)."""

    try:
        python = _local_python(host, str(preflight["file"]))
        arguments = list(preflight["arguments"])
        spec = json.loads(arguments[-1])
        spec["release"] = str(host.path(spec["release"]))
        if spec.get("code"):  # a config revision runs its version's venv and app
            spec["code"] = str(host.path(spec["code"]))
        arguments[-1] = json.dumps(spec)
        cwd = host.path(str(preflight.get("working_directory") or spec["release"]))
    except (HttpError, SimPathError, KeyError, ValueError, IndexError) as exc:
        return {"exit_code": 1, "stdout": "", "stderr": f"the simulator cannot run the start check: {exc}"}
    environment = {**base_environment(), **{str(k): str(v.get_secret_value() if hasattr(v, "get_secret_value") else v)
                                            for k, v in (preflight.get("environment") or {}).items()}}
    try:
        done = subprocess.run([python, *arguments], cwd=cwd, env=environment, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=float(preflight.get("timeout_seconds") or 60))
    except subprocess.TimeoutExpired:
        # As Invoke-HostProgram: the run is stopped and the call fails naming the step.
        return {"error": f"Switch-Release: the release start check: {preflight['file']} did not finish within "
                         f"{preflight.get('timeout_seconds')} s and was stopped"}
    return {"exit_code": done.returncode, "stdout": done.stdout[-OUTPUT_LIMIT:], "stderr": done.stderr[-OUTPUT_LIMIT:]}


def start_check_refusal(path: str, run: dict[str, Any]) -> str | None:
    """The error of ``Switch-Release`` when the start check failed (``None`` when it passed):
    the same words as part 93 (``Switch-Release <path>: start check failed with exit code N;
    nothing was switched. Last lines:`` and the output tail), or the runner's timeout error."""

    if run.get("error"):
        return str(run["error"])
    if run.get("exit_code") == 0:
        return None
    tail = "\n".join(f"{run.get('stderr') or ''}\n{run.get('stdout') or ''}".strip().splitlines()[-TAIL_LINES:])
    return f"Switch-Release {path}: start check failed with exit code {run.get('exit_code')}; nothing was switched. Last lines:\n{tail}"
