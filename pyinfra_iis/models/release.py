"""Release settings an inventory gives for one app: where it lives, how it starts, its settings.

``ReleaseSettings`` is what ``render_web_config`` (``pyinfra_iis.release.webconfig``) and the
release deploy read. Durations accept what :class:`~pyinfra_iis.models.types.Duration` accepts
(seconds as a number, ``"90s"``, ``"2m"``, ``"00:02:00"``).

Host layout under ``root`` (docs/design.md "Releases")::

    <root>\\releases\\<version>\\   one unpacked release (app\\, wheelhouse\\, venv\\, manifest.json, web.config)
    <root>\\logs\\                 stdout logs of the app (the pool identity needs write access)
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from .arr import ArrSettings, HostingMode, check_arr_timeouts
from .base import IisModel
from .types import Duration, EnvVarName, PythonVersion, WholeMinutes, WindowsPath

#: Environment variables HttpPlatformHandler or this project set themselves; refused as app
#: settings or secrets. HTTP_PLATFORM_PORT: the port IIS gives the process (docs/field-facts.md,
#: HttpPlatformHandler). PYTHONUNBUFFERED=1: always set, else the stdout log stays empty.
RESERVED_ENV_VARS = frozenset({"HTTP_PLATFORM_PORT", "PYTHONUNBUFFERED", "PYTHONUTF8", "PYINFRA_IIS_RELEASE"})

#: Application pool ``processModel/@shutdownTimeLimit`` default, seconds: the time WAS waits for
#: a worker process to stop before killing it (IIS_schema.xml, ``defaultValue="00:01:30"``).
POOL_SHUTDOWN_TIME_LIMIT = 90


def _root(value: str) -> str:
    if "%" in value:
        raise ValueError(f"{value!r} contains '%': processPath and stdoutLogFile are expanded by IIS (%VAR% is replaced), so '%' cannot appear in the release root")
    if len(value) <= 3:
        raise ValueError(f"{value!r} is a drive root; give a folder for the app, e.g. C:\\sites\\api")
    return value


def _health_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() or ord(c) < 32 for c in value) or "://" in value:
        raise ValueError(f"{value!r} is not a URL path like /healthz (starts with '/', no spaces)")
    return value


def _seconds(low: int, high: int):
    def check(value: Duration) -> Duration:
        if not low <= value.seconds <= high:
            raise ValueError(f"{value.seconds} s is outside {low}-{high} s")
        return value

    return AfterValidator(check)


class ReleaseSettings(IisModel):
    """How one app is released and run behind IIS through HttpPlatformHandler.

    Attributes:
        app_name: the app's name (artifact ``<app_name>-<version>.zip``); letters, digits, ``. _ -``.
        root: the app's folder on the host, an absolute drive path like ``C:\\sites\\api``.
        python_version: CPython on the host, ``3.10``..``3.14`` (default ``3.12``).
        keep_releases: releases kept under ``<root>\\releases`` (default 5, at least 2 so a
            rollback target exists).
        health_check_path: path requested through the IIS binding after a switch (``/healthz``).
        health_deadline: how long the deploy waits for a healthy answer (default 120 s, 1-7200 s).
        request_timeout: HttpPlatformHandler ``requestTimeout``, whole minutes, 1 min to 30 days
            (default ``00:02:00``; a longer request gets 502.3; docs/field-facts.md, HttpPlatformHandler).
        startup_time_limit: HttpPlatformHandler ``startupTimeLimit``, 1-3600 s. Set explicitly
            (default 60 s here): Microsoft's reference says 10 s, some schema copies 120 s (field
            notes), and a cold CPython + FastAPI import on a freshly booted server can exceed 10 s.
        startup_retry_count: HttpPlatformHandler ``startupRetryCount``, 0-100 (default 10, its own).
        timeout_keep_alive: uvicorn ``--timeout-keep-alive`` (default 120 s, uvicorn's is 5 s).
        timeout_graceful_shutdown: uvicorn ``--timeout-graceful-shutdown`` (default 30 s).
        pool_shutdown_time_limit: the application pool's ``processModel/@shutdownTimeLimit`` this app
            runs under (default 90 s, IIS's default); only used to check the graceful shutdown.
        app_settings: non-secret environment variables, written to web.config
            ``<environmentVariables>`` (readable by the pool identity and IIS_IUSRS).
        app_secrets: secret environment variables: they go to the application pool's
            ``environmentVariables`` in applicationHost.config (readable by administrators
            only; docs/design.md "Releases"), NEVER to web.config.

    Timeout rules (checked; cite docs/field-facts.md "Uvicorn / FastAPI behind IIS" and docs/design.md
    "Timeouts that do not line up"):

    1. ``timeout_keep_alive >= request_timeout``. Uvicorn closing an idle backend connection
       that IIS is about to reuse gives intermittent 502.3 / WinError 64, so keep-alive must
       exceed the proxy's idle reuse of backend connections. HttpPlatformHandler does not
       document that period [I]; requestTimeout is the longest time IIS itself holds a backend
       connection for one request, so a keep-alive at least that long keeps uvicorn from being
       the side that closes first within any window IIS uses. Idle connections come only from
       IIS on 127.0.0.1, so a long keep-alive costs nothing.
    2. ``timeout_graceful_shutdown < pool_shutdown_time_limit``: WAS kills the worker process
       (and HttpPlatformHandler's child with it) after shutdownTimeLimit, so a longer graceful
       shutdown is cut short. (HttpPlatformHandler 1.2 has no graceful stop of its own.)
    3. ``health_deadline > startup_time_limit``: the first request through IIS waits up to
       startupTimeLimit for the process to listen; a shorter deadline would fail a healthy,
       slow-starting release.

    Settings and secrets must be disjoint (ignoring case: Windows environment names are
    case-insensitive), valid names (``[A-Za-z_][A-Za-z0-9_]*``) and not :data:`RESERVED_ENV_VARS`.
    """

    # Validation errors never echo the input: it may hold app_secrets values.
    model_config = ConfigDict(hide_input_in_errors=True)

    app_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    root: Annotated[WindowsPath, AfterValidator(_root)]
    python_version: PythonVersion = "3.12"
    keep_releases: int = Field(5, ge=2, le=100)
    health_check_path: Annotated[str, AfterValidator(_health_path)] = "/healthz"
    health_deadline: Annotated[Duration, _seconds(1, 7200)] = Duration(120)
    request_timeout: Annotated[WholeMinutes, _seconds(60, 2592000)] = Duration(120)
    startup_time_limit: Annotated[Duration, _seconds(1, 3600)] = Duration(60)
    startup_retry_count: int = Field(10, ge=0, le=100)
    timeout_keep_alive: Annotated[Duration, _seconds(1, 2592000)] = Duration(120)
    timeout_graceful_shutdown: Annotated[Duration, _seconds(0, 3600)] = Duration(30)
    pool_shutdown_time_limit: Annotated[Duration, _seconds(1, 4294967)] = Duration(POOL_SHUTDOWN_TIME_LIMIT)
    app_settings: dict[EnvVarName, str] = Field(default_factory=dict)
    app_secrets: dict[EnvVarName, SecretStr] = Field(default_factory=dict)
    #: ``"httpplatform"`` (default: IIS starts uvicorn through HttpPlatformHandler) or ``"arr"``
    #: (two Windows services, blue/green, behind URL Rewrite + ARR; needs ``arr``). See
    #: docs/hosting-modes.md and :mod:`pyinfra_iis.models.arr`.
    mode: HostingMode = "httpplatform"
    #: The ARR mode's settings (:class:`~pyinfra_iis.models.arr.ArrSettings`); required with
    #: ``mode="arr"``, refused otherwise.
    arr: Optional[ArrSettings] = None

    @field_validator("app_settings")
    @classmethod
    def _setting_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if any(ord(c) < 32 for c in text):
                raise ValueError(f"the value of {name} contains control characters (newline, tab...), which web.config (XML 1.0) cannot carry reliably")
        return value

    @field_validator("app_settings", "app_secrets")
    @classmethod
    def _names(cls, value: dict) -> dict:
        folded: dict[str, str] = {}
        for name in value:
            if name.upper() in RESERVED_ENV_VARS:
                raise ValueError(f"{name} is set by HttpPlatformHandler / pyinfra-iis itself; choose another name")
            if name.upper() in folded:
                raise ValueError(f"{folded[name.upper()]} and {name} differ only in case; Windows environment names are case-insensitive")
            folded[name.upper()] = name
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ReleaseSettings":
        both = sorted({n.upper() for n in self.app_settings} & {n.upper() for n in self.app_secrets})
        if both:
            raise ValueError(f"{', '.join(both)} given both as app setting and as app secret; a name is one or the other")
        if self.timeout_keep_alive.seconds < self.request_timeout.seconds:
            raise ValueError(
                f"timeout_keep_alive {self.timeout_keep_alive.seconds} s is shorter than request_timeout "
                f"{self.request_timeout.seconds} s: uvicorn could close idle connections IIS still reuses (502.3 / WinError 64); "
                f"set timeout_keep_alive >= request_timeout"
            )
        if self.timeout_graceful_shutdown.seconds >= self.pool_shutdown_time_limit.seconds:
            raise ValueError(
                f"timeout_graceful_shutdown {self.timeout_graceful_shutdown.seconds} s is not below the pool's shutdownTimeLimit "
                f"{self.pool_shutdown_time_limit.seconds} s: IIS kills the process first"
            )
        if self.mode == "arr" and self.arr is None:
            raise ValueError("mode 'arr' needs arr settings (at least arr.winsw: the service wrapper's source and sha256)")
        if self.mode != "arr" and self.arr is not None:
            raise ValueError("arr settings are given but mode is not 'arr'; set mode: 'arr' or drop arr")
        check_arr_timeouts(self)
        if self.health_deadline.seconds <= self.startup_time_limit.seconds:
            raise ValueError(
                f"health_deadline {self.health_deadline.seconds} s must exceed startup_time_limit "
                f"{self.startup_time_limit.seconds} s: the first request waits up to startupTimeLimit for the app to start"
            )
        return self

    @property
    def releases_dir(self) -> str:
        """``<root>\\releases``."""

        return f"{self.root}\\releases"

    @property
    def logs_dir(self) -> str:
        """``<root>\\logs``: where the stdout log goes (the pool identity needs Modify here)."""

        return f"{self.root}\\logs"

    def release_dir(self, version: str) -> str:
        """``<root>\\releases\\<version>``."""

        return f"{self.releases_dir}\\{version}"
