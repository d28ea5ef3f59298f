"""The start check of a release: before ``Switch-Release`` commits anything, the host runs the
release's app once, outside IIS, and asks its health path (docs/zero-downtime.md, "Refusing a
broken release without a failed request").

Why: after a switch, IIS's Application Initialization lets the new worker process take the
traffic once its initialization request has completed, whatever that request answered [I], so a
release whose app cannot start would answer 502.3 to every client until the switch restores the
previous one. The start check catches such a release (an import error, a crash in startup, a
health path that does not answer ``expect_status``) in the time the app takes to fail, with its
traceback, while the old release keeps serving untouched.

The check is :data:`START_CHECK_SCRIPT`, run by the release's own venv interpreter
(``<release>\\venv\\Scripts\\python.exe -I -c SCRIPT SPEC``; a config revision runs its version's
venv and app with its own web.config) through the host's program runner
(``Invoke-HostProgram``, part 15). It reads ``<release>\\web.config`` (the environment variables and
the entry point IIS will use; the app secrets come in the runner's environment, as the pool gives
them), imports the app from ``<release>\\app``, serves it with uvicorn on a free loopback port in
a thread, requests the health path until ``seconds`` pass, prints its verdict as the last line
(``start check of <release>: <outcome> after <s> s <details as JSON>``; a traceback before it on
stderr) and exits:

====  =====================================================================
0     the health path answered ``status``
3     the import failed (traceback on stderr)
4     the app stopped during startup (lifespan error)
5     the health path answered another status
6     no answer within ``seconds`` (the web.config's ``startupTimeLimit``)
====  =====================================================================
"""

from __future__ import annotations

import json
from typing import Any

from ..models.release import ReleaseSettings
from ..protocol import Secret
from .webconfig import SELECTOR_LOOP

#: The check waits this many times ``startupTimeLimit`` for a healthy answer: it is the first run of
#: a new venv, which also writes the bytecode caches the IIS start then finds (an app slower than
#: startupTimeLimit itself is still caught after the switch: the health wait gives up on 502.3).
START_CHECK_FACTOR = 2
#: Extra seconds the runner gives the check beyond ``startupTimeLimit`` (interpreter start, stop).
RUNNER_MARGIN_SECONDS = 30

#: The check, run with ``-I -c`` (single quotes only: it travels as one command-line argument).
START_CHECK_SCRIPT = """
import json, os, socket, sys, threading, time, traceback, urllib.error, urllib.request
import xml.etree.ElementTree as ET
started = time.monotonic()
spec = json.loads(sys.argv[1])
def answer(outcome, code, **more):
    sys.stderr.flush()
    print('start check of %s: %s after %.1f s %s' % (spec['label'], outcome, time.monotonic() - started, json.dumps(more)))
    sys.stdout.flush()
    os._exit(code)
release = spec['release']
platform = ET.parse(os.path.join(release, 'web.config')).getroot().find('system.webServer/httpPlatform')
variables = platform.find('environmentVariables')
for item in (list(variables) if variables is not None else []):
    if item.get('name'):
        os.environ[item.get('name')] = item.get('value', '')
words = platform.get('arguments', '').split()
entry = words[words.index('uvicorn') + 1]
sys.path.insert(0, os.path.join(spec.get('code', release), 'app'))
os.chdir(spec.get('code', release))
try:
    import importlib
    module, _, attribute = entry.partition(':')
    app = getattr(importlib.import_module(module), attribute)
except BaseException:
    traceback.print_exc()
    answer('import failed', 3, entry=entry)
import uvicorn
with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning', loop=spec['loop']))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
url = 'http://127.0.0.1:%d%s' % (port, spec['path'])
last = None
while time.monotonic() < started + spec['seconds']:
    if not thread.is_alive():
        answer('exited', 4, error='the app stopped during startup')
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, header = response.status, response.headers.get('X-Release-Version')
    except urllib.error.HTTPError as error:
        status, header = error.code, error.headers.get('X-Release-Version')
    except OSError as error:
        last = repr(error)
        time.sleep(0.1)
        continue
    server.should_exit = True
    thread.join(10)
    answer('answered', 0 if status == spec['status'] else 5, status=status, release=header)
answer('timeout', 6, error=last)
"""


def start_check(settings: ReleaseSettings, version: str, expect_status: int = 200, code_version: str | None = None) -> dict[str, Any]:
    """The ``preflight`` member of ``Switch-Release``: an ``Invoke-Program``-shaped payload
    ``{"file", "arguments", "working_directory", "environment", "timeout_seconds"}`` that runs
    :data:`START_CHECK_SCRIPT` for release ``version``.

    ``environment``: ``PYTHONUTF8=1`` and the app secrets as :class:`~pyinfra_iis.protocol.Secret`
    (sent raw, shown masked; the app may need them at import, as it gets them from the pool).
    The check waits :data:`START_CHECK_FACTOR` x ``startup_time_limit`` seconds for a healthy answer
    (HttpPlatformHandler waits ``startupTimeLimit`` per start attempt); the runner's limit adds
    :data:`RUNNER_MARGIN_SECONDS`.

    ``code_version``: the release whose venv and app run (default ``version``); a config revision
    (``1.4.2+r2``) holds only its web.config and runs its version's venv and app.
    """

    release = settings.release_dir(version)
    code = settings.release_dir(code_version or version)
    spec = {"release": release, "code": code, "label": release, "path": settings.health_check_path, "status": expect_status,
            "seconds": START_CHECK_FACTOR * settings.startup_time_limit.seconds, "loop": SELECTOR_LOOP}
    environment: dict[str, Any] = {"PYTHONUTF8": "1"}
    for name, value in settings.app_secrets.items():
        environment[name] = Secret(value.get_secret_value())
    return {"file": f"{code}\\venv\\Scripts\\python.exe", "arguments": ["-I", "-c", START_CHECK_SCRIPT, json.dumps(spec, separators=(",", ":"))],
            "working_directory": code, "environment": environment,
            "timeout_seconds": START_CHECK_FACTOR * settings.startup_time_limit.seconds + RUNNER_MARGIN_SECONDS}
