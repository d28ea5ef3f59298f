"""The app process of one site, run the way HttpPlatformHandler runs it.

What the simulator does, and where it differs from HttpPlatformHandler 1.2 (HPH):

* Command line: ``processPath`` + ``arguments`` from web.config, ``%HTTP_PLATFORM_PORT%`` (and
  any other ``%VAR%`` of the process environment) expanded, Windows paths mapped into the
  state directory. ``<release>\\venv\\Scripts\\python.exe`` is mapped to the local venv named
  by the marker ``venv\\pyinfra-iis-sim-venv.json`` that the release's pip step left (this OS's
  Python, not the target version). Any other executable cannot run here: start failure.
* Working directory: the site's physicalPath (the release folder holding web.config). HPH's
  source is not public; ASP.NET Core Module's out-of-process mode, which grew out of HPH,
  starts the process in the application's physical path. The generated arguments pass
  ``--app-dir`` so the app does not depend on it either way.
* Environment: a small base (PATH, HOME, LANG, TMPDIR of the simulator), then the application
  pool's ``environmentVariables`` (applicationHost.config: where secrets live; w3wp.exe has
  them and the child inherits them), then web.config's ``environmentVariables``, then
  ``HTTP_PLATFORM_PORT``. Values are never logged.
* stdout and stderr go to ``<stdoutLogFile>_<yyyyMMddHHmmss>_<pid>.log`` when
  ``stdoutLogEnabled`` (the naming Microsoft documents for ASP.NET Core Module's stdout log,
  ``stdout_20180205194132_1934.log``; webconfig.py assumes the same for HPH). The folder is
  NOT created: a missing log folder means no log, the "silent failure" of docs/design.md.
* Start: one process per app (processesPerApplication 1), started when the pool starts or
  recycles (warm-up) and on a request when it is not running. A start waits until the port
  accepts connections, at most ``startupTimeLimit`` seconds; a process that exits or does not
  listen in time is killed and the start retried, ``startupRetryCount`` attempts in all; then
  the request gets 502.3 as from HPH. A process that dies later is restarted on the next
  request, unless ``rapidFailsPerMinute`` failures happened in the last 60 s (then 502.3
  without trying, until the minute has passed).
* Stop: HPH has no graceful stop in v1.2 (docs/field-facts.md): the process group is killed
  (SIGKILL) on pool stop, recycle, or when the simulator stops.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .httpplatform import HttpPlatform, PORT_VARIABLE, expand_variables

#: Seconds between two connection attempts while a process starts.
CONNECT_POLL_SECONDS = 0.05

#: Environment variables of the simulator passed on to app processes.
BASE_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class AppStartError(Exception):
    """The app could not be started (or rapid-fail protection holds); the message says why
    (never an environment value)."""


@dataclass
class LaunchSpec:
    """How to start one site's app on this machine.

    Attributes:
        site: site name; argv: the command line with ``%HTTP_PLATFORM_PORT%`` still in it;
        cwd: working directory; environment: variables (secrets included: never log them);
        log_base: local path of stdoutLogFile (``None`` when stdout logging is off);
        windows_log_base: the same on the simulated host; platform: the parsed web.config.
    """

    site: str
    argv: list[str]
    cwd: Path
    environment: dict[str, str]
    platform: HttpPlatform
    log_base: Path | None = None
    windows_log_base: str | None = None
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def base_environment() -> dict[str, str]:
    """The part of the simulator's environment an app process gets (:data:`BASE_ENVIRONMENT`)."""

    return {name: os.environ[name] for name in BASE_ENVIRONMENT if name in os.environ}


#: App processes started by this simulator process; killed at interpreter exit so a simulator
#: that is not stopped cleanly (a test that fails before its teardown) leaves no app behind
#: (they run in their own session, so nothing else would end them).
_LIVE: "weakref.WeakSet[AppProcess]" = weakref.WeakSet()


def kill_process_group(process: subprocess.Popen) -> None:
    """Kill ``process`` and its process group (uvicorn's worker processes) at once, and reap it;
    nothing when it has already exited."""

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        pass


@atexit.register
def _kill_live_processes() -> None:
    for app in list(_LIVE):
        app._kill()


class AppProcess:
    """One site's app process (see the module docstring for the rules).

    Args:
        spec: the launch specification (built from web.config and applicationHost.config).
        clock: monotonic seconds source (tests may replace it).
    """

    def __init__(self, spec: LaunchSpec, clock=time.monotonic):
        self.spec = spec
        self._clock = clock
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._port: int | None = None
        self._failures: collections.deque[float] = collections.deque()
        self._stopped = False
        self.starts = 0
        self.last_error: str | None = None
        self.log_file: Path | None = None

    # --- state ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running process, or ``None``."""

        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def port(self) -> int | None:
        """The port the running process listens on (``HTTP_PLATFORM_PORT``), or ``None``."""

        return self._port if self.pid is not None else None

    def status(self) -> dict[str, Any]:
        """``{"state": "running"|"not started"|"stopped", "pid", "port", "starts", "last_error",
        "log_file"}`` (no environment values)."""

        state = "stopped" if self._stopped else ("running" if self.pid is not None else "not started")
        return {"state": state, "pid": self.pid, "port": self.port, "starts": self.starts,
                "last_error": self.last_error, "log_file": str(self.log_file) if self.log_file else None}

    # --- start and stop ---------------------------------------------------------------

    def ensure_running(self) -> int:
        """Return the app's port, starting the process first when it is not running.

        Raises:
            AppStartError: stopped, rapid-fail protection, or every start attempt failed.
        """

        with self._lock:
            if self._stopped:
                raise AppStartError("the application pool is stopped")
            process = self._process
            if process is not None and process.poll() is None and self._port is not None:
                return self._port
            if process is not None:
                self._record_failure(f"the process exited with code {process.returncode}")
                self._process = None
            self._check_rapid_fails()
            attempts = max(1, self.spec.platform.startup_retry_count)
            for _ in range(attempts):
                if self._stopped:
                    raise AppStartError("the application pool is stopped")
                port = self._start_once()
                if port is not None:
                    return port
                self._check_rapid_fails()
            raise AppStartError(f"the process failed to start after {attempts} attempt(s): {self.last_error}")

    def stop(self) -> None:
        """Kill the process (and its group); later :meth:`ensure_running` calls fail. A start
        in progress notices the flag within :data:`CONNECT_POLL_SECONDS` and gives up."""

        self._stopped = True
        with self._lock:
            self._stopped = True
            self._kill()

    def _check_rapid_fails(self) -> None:
        now = self._clock()
        while self._failures and now - self._failures[0] > 60.0:
            self._failures.popleft()
        limit = self.spec.platform.rapid_fails_per_minute
        if limit > 0 and len(self._failures) >= limit:
            raise AppStartError(
                f"rapidFailsPerMinute ({limit}) reached: no new start for the rest of the minute; last error: {self.last_error}")

    def _record_failure(self, message: str) -> None:
        self._failures.append(self._clock())
        self.last_error = message

    def _open_log(self):
        base = self.spec.log_base
        if base is None:
            return subprocess.DEVNULL, None, ""
        if not base.parent.is_dir():
            note = f"stdout log folder {self.spec.windows_log_base or base.parent} is missing: no stdout log (HPH does not create it)"
            if note not in self.spec.notes:
                self.spec.notes.append(note)
            return subprocess.DEVNULL, None, ""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        pending = base.parent / f"{base.name}_{stamp}_starting-{uuid.uuid4().hex[:8]}.log"
        return open(pending, "ab"), pending, stamp

    def _start_once(self) -> int | None:
        port = free_port()
        variables = {**self.spec.environment, PORT_VARIABLE: str(port)}
        argv = [expand_variables(arg, variables) for arg in self.spec.argv]
        log, pending, stamp = self._open_log()
        self.starts += 1
        try:
            process = subprocess.Popen(argv, cwd=self.spec.cwd, env=variables, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._record_failure(f"cannot start {Path(argv[0]).name}: {exc.strerror or exc}")
            return None
        finally:
            if pending is not None:
                log.close()
        self._process = process  # from here on, _kill() can end it whatever happens
        _LIVE.add(self)
        if pending is not None:
            final = self.spec.log_base.parent / f"{self.spec.log_base.name}_{stamp}_{process.pid}.log"
            os.replace(pending, final)
            self.log_file = final
        deadline = self._clock() + self.spec.platform.startup_time_limit
        while self._clock() < deadline and not self._stopped:
            if process.poll() is not None:
                self._record_failure(f"the process exited with code {process.returncode} before listening on the port")
                self._process = None
                return None
            if _accepts(port):
                self._port = port
                return port
            time.sleep(CONNECT_POLL_SECONDS)
        self._kill()
        self._record_failure(
            f"the process did not listen on the port within startupTimeLimit ({self.spec.platform.startup_time_limit:g} s)")
        return None

    def _kill(self) -> None:
        process, self._process, self._port = self._process, None, None
        if process is not None:
            kill_process_group(process)
