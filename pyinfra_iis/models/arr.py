"""ARR reverse-proxy mode of a release (``release_app.mode = "arr"``): the app runs as two
Windows services (blue and green slots, WinSW wrapping Uvicorn) on two loopback ports, and IIS
fronts the active one with a URL Rewrite rule proxied by ARR (docs/hosting-modes.md).

``ArrSettings`` is the ``arr`` sub-model of :class:`~pyinfra_iis.models.release.ReleaseSettings`;
the timeout rules that involve both (keep-alive, graceful shutdown) are checked there
(:func:`check_arr_timeouts`), because the Uvicorn timeouts are release settings shared with the
HttpPlatformHandler mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from .base import IisModel
from .extensions import MsiSource
from .types import Duration, Sha256Hex, TimeSpanRange

if TYPE_CHECKING:  # pragma: no cover
    from .release import ReleaseSettings

#: The hosting modes of a release (docs/hosting-modes.md).
HostingMode = Literal["httpplatform", "arr"]

#: The two slots, in the order a first release uses them.
SLOTS: tuple[str, str] = ("blue", "green")

#: ``proxy/@timeout`` range in arr_schema.xml (``timeSpanRange 1,86400,1``).
PROXY_TIMEOUT_RANGE = TimeSpanRange(1, 86400, 1)


class WinswPin(IisModel):
    """The service wrapper, pinned like the MSIs (``iis_extensions``): WinSW 2.x x64
    (https://github.com/winsw/winsw/releases), e.g. ``WinSW-x64.exe``.

    Attributes:
        source: a controller file (uploaded), an ``https://`` URL (downloaded by the host) or a
            UNC path, as :data:`~pyinfra_iis.models.extensions.MsiSource` accepts.
        sha256: its SHA-256 (required: the host refuses another file before installing anything).
    """

    source: MsiSource
    sha256: Sha256Hex


class ArrSettings(IisModel):
    """How the ARR mode runs one app (host data ``release_app["arr"]``).

    Attributes:
        winsw: the service wrapper pin (:class:`WinswPin`); required.
        workers: Uvicorn ``--workers`` per slot, 1-64 (default 2). Uvicorn's multiprocess
            supervisor runs on Windows (it sends CTRL_BREAK to workers, uvicorn/supervisors/
            multiprocess.py); docs/hosting-modes.md.
        blue_port, green_port: the slots' loopback ports, 1024-65535, different (8001, 8002).
        proxy_timeout: ARR ``system.webServer/proxy/@timeout``: the longest a request may take
            through IIS (default 120 s; 1 s to 1 day, arr_schema.xml). Set it above your
            longest request.
        drain: seconds the old slot keeps running after the switch, for requests it accepted
            before (default 90 s).
        stop_timeout: WinSW ``<stoptimeout>``: how long the wrapper waits after Ctrl+C before
            it kills the process (default 45 s).
        log_size_kb, log_keep: WinSW ``roll-by-size`` log rotation: a log file rolls at this
            size (KB, default 10240) and this many rolled files are kept (default 8).

    Cross-field rules (:func:`check_arr_timeouts`, with the release's Uvicorn timeouts).
    """

    winsw: WinswPin
    workers: int = Field(2, ge=1, le=64)
    blue_port: int = Field(8001, ge=1024, le=65535)
    green_port: int = Field(8002, ge=1024, le=65535)
    proxy_timeout: Annotated[Duration, PROXY_TIMEOUT_RANGE] = Duration(120)
    drain: Annotated[Duration, TimeSpanRange(0, 3600, 1)] = Duration(90)
    stop_timeout: Annotated[Duration, TimeSpanRange(1, 3600, 1)] = Duration(45)
    log_size_kb: int = Field(10240, ge=64, le=4194304)
    log_keep: int = Field(8, ge=1, le=100)

    @model_validator(mode="after")
    def _ports(self) -> "ArrSettings":
        if self.blue_port == self.green_port:
            raise ValueError(f"blue_port and green_port are both {self.blue_port}: the two slots need two ports")
        return self

    def port(self, slot: str) -> int:
        """The loopback port of ``slot`` (``blue`` or ``green``)."""

        return self.blue_port if slot == "blue" else self.green_port


def other_slot(slot: str | None) -> str:
    """The slot a release goes to when ``slot`` is active (``blue`` when none is)."""

    return "green" if slot == "blue" else "blue"


def check_arr_timeouts(settings: "ReleaseSettings") -> None:
    """Refuse misaligned timeouts of an ARR-mode release (docs/hosting-modes.md, "Timeouts").

    1. ``timeout_keep_alive >= arr.proxy_timeout``: ARR keeps backend connections to Uvicorn
       and reuses them; if Uvicorn closes an idle one first, the request ARR sends on it fails
       (502.3, WinError 64). proxy/@timeout is the longest ARR itself holds one.
    2. ``arr.stop_timeout > timeout_graceful_shutdown``: WinSW kills the process after
       stoptimeout, so a longer graceful shutdown would be cut.
    3. ``arr.drain + timeout_graceful_shutdown >= arr.proxy_timeout``: a request accepted by the
       old slot just before the switch may take up to proxy_timeout (then ARR gives up anyway);
       drain plus the graceful shutdown lets it finish.
    4. ``health_deadline > startup_time_limit`` is the release's own rule (it holds here too).

    Raises:
        ValueError: naming the fields and the fix.
    """

    arr = settings.arr
    if arr is None:
        return
    proxy, keep = arr.proxy_timeout.seconds, settings.timeout_keep_alive.seconds
    graceful = settings.timeout_graceful_shutdown.seconds
    if keep < proxy:
        raise ValueError(f"timeout_keep_alive {keep} s is shorter than arr.proxy_timeout {proxy} s: Uvicorn could close "
                         f"idle connections ARR still reuses (502.3 / WinError 64); set timeout_keep_alive >= arr.proxy_timeout")
    if arr.stop_timeout.seconds <= graceful:
        raise ValueError(f"arr.stop_timeout {arr.stop_timeout.seconds} s is not above timeout_graceful_shutdown {graceful} s: "
                         f"WinSW kills the service before Uvicorn finishes its graceful shutdown")
    if arr.drain.seconds + graceful < proxy:
        raise ValueError(f"arr.drain {arr.drain.seconds} s + timeout_graceful_shutdown {graceful} s is below arr.proxy_timeout "
                         f"{proxy} s: a request the old slot accepted before the switch could be cut; raise arr.drain to at "
                         f"least {proxy - graceful} s")
