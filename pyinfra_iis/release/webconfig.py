"""The web.config of a release: IIS runs the app with HttpPlatformHandler and uvicorn.

``render_web_config`` fills ``pyinfra_iis/templates/web.config.j2`` (jinja2, autoescaped: every
value is XML-escaped). What it writes and why (docs/field-facts.md, "HttpPlatformHandler 1.2" and
"Uvicorn / FastAPI behind IIS"):

* ``<handlers>``: ``<remove name="httpPlatformHandler"/>`` then ``<add .../>``, so a
  sub-application that inherits the handler does not fail with "Cannot add duplicate
  collection entry". ``<environmentVariables>`` starts with ``<clear/>`` for the same reason.
* ``processPath``: the release's own venv, ``<release>\\venv\\Scripts\\python.exe``.
* ``arguments``: see :func:`uvicorn_arguments`.
* ``stdoutLogEnabled="true"``, ``stdoutLogFile="<root>\\logs\\stdout"`` (HttpPlatformHandler
  appends ``_<timestamp>_<pid>.log``): outside the release folder so logs survive releases;
  the pool identity needs write access there. ``PYTHONUNBUFFERED=1``, else the log stays empty.
* ``startupTimeLimit``, ``startupRetryCount``, ``requestTimeout`` (whole minutes) from the
  settings, always written (the schema copies disagree on defaults).
* ``processesPerApplication="1"``: one uvicorn process, one port.
* ``<applicationInitialization doAppInitAfterRestart="true">`` with the health path as its
  initialization page: with the pool ``AlwaysRunning`` and the site ``preloadEnabled`` (both
  defaults of the models, Web-AppInit installed by default), a recycled pool's NEW worker process
  starts the app and requests the health path before it takes traffic, while the old worker
  keeps serving (docs/zero-downtime.md). ``doAppInitAfterRestart`` repeats it after an application
  restart inside a running worker (Microsoft Learn, "Application Initialization
  <applicationInitialization>").
* Non-secret app settings as environment variables. Secrets are never written here: web.config
  is readable by the pool identity and IIS_IUSRS; they belong to the pool (docs/design.md "Releases").

The release layout it assumes: ``<release>\\app`` (the app, ``--app-dir``), ``<release>\\venv``,
and web.config itself in ``<release>`` (the site's physicalPath points at the release).
"""

from __future__ import annotations

import os
from functools import lru_cache

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
from pydantic import TypeAdapter

from ..models.release import ReleaseSettings
from ..models.types import WindowsPath
from .manifest import APP_DIR, Manifest

#: uvicorn ``--loop`` value selecting ``asyncio.SelectorEventLoop`` on Windows.
#:
#: uvicorn's built-in ``--loop asyncio`` returns ``asyncio.ProactorEventLoop`` on win32 for a
#: single process (``uvicorn/loops/asyncio.py``: ``if sys.platform == "win32" and not
#: use_subprocess: return asyncio.ProactorEventLoop``), and Proactor's listening socket can die
#: after a reset during ``AcceptEx`` (WinError 64) while the process stays up, so IIS never
#: restarts it (cpython #93821, #93758). Since uvicorn 0.36 ("Allow to provide importable string
#: in --http, --ws and --loop"), a value outside ``LOOP_FACTORIES`` is imported with
#: ``import_from_string`` and used as the loop factory itself (``Config.get_loop_factory``), so
#: ``asyncio:SelectorEventLoop`` makes uvicorn call ``asyncio.SelectorEventLoop()``. Checked in
#: uvicorn 0.54.0's ``config.py``; uvicorn < 0.36 rejects the value (its ``--loop`` was a choice
#: of auto/asyncio/uvloop), and uvicorn < 0.45 takes HttpPlatformHandler's ``X-Forwarded-For:
#: ip:port`` as the client host: the build enforces ``uvicorn>=0.45`` (:data:`UVICORN_FLOOR`).
#:
#: The selector loop's limit: CPython builds ``select()`` on Windows with ``FD_SETSIZE`` 512
#: (``Modules/selectmodule.c``), so one process handles at most about 510 sockets at once (the
#: listening socket and the self-pipe take two). Behind IIS every request in flight holds one
#: connection from HttpPlatformHandler plus whatever the app opens itself (database, HTTP
#: clients): size ``maxConcurrentRequestsPerCPU`` / the pool's queue so that concurrent requests
#: stay below about 500 minus the app's own sockets per process.
SELECTOR_LOOP = "asyncio:SelectorEventLoop"

#: Oldest uvicorn the build accepts.
UVICORN_FLOOR = (0, 45)

#: The environment variable that carries the release version into the app (web.config); the
#: health check of ``Switch-Release`` requires the answer to carry it (header
#: :data:`RELEASE_HEADER` or the version in the body), so an old worker process still answering
#: right after the switch cannot pass for the new release.
RELEASE_VARIABLE = "PYINFRA_IIS_RELEASE"
RELEASE_HEADER = "X-Release-Version"
SELECTOR_LOOP = "asyncio:SelectorEventLoop"

#: IIS sets this variable to the port it proxies to (docs/field-facts.md, HttpPlatformHandler).
PORT_VARIABLE = "%HTTP_PLATFORM_PORT%"

_WINDOWS_PATH = TypeAdapter(WindowsPath)


#: Folders (``os.pathsep``-separated) searched for ``web.config.j2`` before ``./templates`` and the
#: packaged default (``pyinfra_iis/templates``).
TEMPLATES_ENV = "PYINFRA_IIS_TEMPLATES"


def template_folders() -> tuple[str, ...]:
    """Where a user's ``web.config.j2`` is looked for, first match wins: the folders of
    ``$PYINFRA_IIS_TEMPLATES``, then ``templates/`` in pyinfra's working directory (the project's
    top-level ``templates/``); the packaged template is the default after them."""

    folders = [folder for folder in os.environ.get(TEMPLATES_ENV, "").split(os.pathsep) if folder]
    return (*folders, os.path.join(os.getcwd(), "templates"))


@lru_cache(maxsize=8)
def _environment(folders: tuple[str, ...] = ()) -> Environment:
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(list(folders)), PackageLoader("pyinfra_iis", "templates")]),
        autoescape=True,  # XML-escape every value: & < > " '
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _release_dir(release_dir: str) -> str:
    path = _WINDOWS_PATH.validate_python(release_dir)
    if "%" in path:
        raise ValueError(f"{path!r} contains '%', which IIS expands in processPath and arguments")
    return path


def uvicorn_arguments(settings: ReleaseSettings, release_dir: str, entry_point: str = "main:app") -> str:
    """The ``arguments`` of ``<httpPlatform>``: run uvicorn on the port IIS gives.

    ``-m uvicorn <entry_point> --host 127.0.0.1 --port %HTTP_PLATFORM_PORT% --proxy-headers
    --forwarded-allow-ips 127.0.0.1 --loop asyncio:SelectorEventLoop --timeout-keep-alive <s>
    --timeout-graceful-shutdown <s> --no-access-log --app-dir "<release>\\app"``.

    ``--no-access-log``: IIS already writes every request to its W3C log; uvicorn's access log
    would only grow the stdout logs.

    Only IIS on 127.0.0.1 may set X-Forwarded-For / X-Forwarded-Proto (``--forwarded-allow-ips
    127.0.0.1``); ``--app-dir`` makes the import independent of the working directory
    HttpPlatformHandler starts the process in.

    Args:
        settings: the release settings (timeouts in seconds).
        release_dir: the release folder on the host, ``C:\\sites\\api\\releases\\1.4.2``.
        entry_point: ``module:attribute`` of the ASGI app inside ``app\\``.

    Raises:
        pydantic.ValidationError / ValueError: ``release_dir`` is not an absolute Windows path or
            contains ``%``.
    """

    release_dir = _release_dir(release_dir)
    return " ".join(
        [
            "-m uvicorn", entry_point,
            "--host 127.0.0.1", f"--port {PORT_VARIABLE}",
            "--proxy-headers", "--forwarded-allow-ips 127.0.0.1",
            f"--loop {SELECTOR_LOOP}",
            f"--timeout-keep-alive {settings.timeout_keep_alive.seconds}",
            f"--timeout-graceful-shutdown {settings.timeout_graceful_shutdown.seconds}",
            "--no-access-log",
            f'--app-dir "{release_dir}\\{APP_DIR}"',
        ]
    )  # fmt: skip


def render_web_config(settings: ReleaseSettings, release_dir: str, entry_point: str | None = None, manifest: Manifest | None = None) -> str:
    """Render the web.config of one release (text, UTF-8 XML declaration, trailing newline).

    Args:
        settings: the app's :class:`~pyinfra_iis.models.release.ReleaseSettings`.
        release_dir: ``<root>\\releases\\<version>`` on the host (an absolute Windows path).
        entry_point: ``module:attribute``; default the manifest's, else ``main:app``.
        manifest: the release manifest, for its entry point (optional).

    Returns:
        the XML text. App settings appear after ``PYTHONUNBUFFERED``, sorted by name; app
        secrets never appear.

    Raises:
        pydantic.ValidationError / ValueError: ``release_dir`` invalid (see :func:`uvicorn_arguments`).
    """

    entry_point = entry_point or (manifest.entry_point if manifest else "main:app")
    release_dir = _release_dir(release_dir)
    # PYTHONUTF8=1: redirected stdout on Windows uses the ANSI code page with strict errors, so
    # printing non-Latin text would raise (PEP 540). The release version lets
    # the health check tell which release answered.
    reserved = [("PYTHONUNBUFFERED", "1"), ("PYTHONUTF8", "1"), (RELEASE_VARIABLE, release_dir.rsplit("\\", 1)[-1])]
    environment = [*reserved, *sorted(settings.app_settings.items(), key=lambda kv: kv[0].upper())]
    return _environment(template_folders()).get_template("web.config.j2").render(
        process_path=f"{release_dir}\\venv\\Scripts\\python.exe",
        arguments=uvicorn_arguments(settings, release_dir, entry_point),
        stdout_log_file=f"{settings.logs_dir}\\stdout",
        startup_time_limit=settings.startup_time_limit.seconds,
        startup_retry_count=settings.startup_retry_count,
        request_timeout=settings.request_timeout.to_timespan(),
        environment=environment,
        initialization_page=settings.health_check_path,
    )


def platform_environment(platform) -> dict[str, str]:
    """The environment an ``<httpPlatform>`` element (an ElementTree element) gives its process:
    its ``<environmentVariables>`` applied in order as IIS applies a collection (``clear``
    empties it, ``environmentVariable`` or ``add`` sets, ``remove`` deletes). Names compare
    case-insensitively, as Windows environment names do; the last spelling written is kept."""

    environment: dict[str, str] = {}
    variables = platform.find("environmentVariables")
    for item in list(variables) if variables is not None else []:
        name = item.get("name") or ""
        if item.tag == "clear":
            environment.clear()
            continue
        if not name or item.tag not in ("environmentVariable", "add", "remove"):
            continue
        for key in [key for key in environment if key.upper() == name.upper()]:
            del environment[key]
        if item.tag != "remove":
            environment[name] = item.get("value", "")
    return environment
