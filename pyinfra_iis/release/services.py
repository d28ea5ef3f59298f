"""The ARR mode's Windows services, rendered on the controller: the WinSW service XML of one
slot, its Uvicorn command line, names and folders (docs/hosting-modes.md).

Host layout under the release root (``ReleaseSettings.root``)::

    <root>\\services\\<slot>\\<service>.exe   WinSW, renamed to the service id (WinSW reads
                                            <service>.xml beside it)
    <root>\\services\\<slot>\\<service>.xml   this module's XML (app settings AND app secrets:
                                            the folder is SYSTEM, Administrators and the
                                            service account only)
    <root>\\logs\\services\\                  WinSW's rolling logs (<service>.out.log, .err.log,
                                            .wrapper.log)

WinSW XML reference: https://github.com/winsw/winsw/blob/v2.12.0/doc/xmlConfigFile.md and
https://github.com/winsw/winsw/blob/v2.12.0/doc/loggingAndErrorReporting.md (``roll-by-size``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Optional

from ..models.release import ReleaseSettings
from .manifest import APP_DIR
from .webconfig import SELECTOR_LOOP

#: The account the services run as: LocalService, not WinSW's default LocalSystem (the app
#: needs no machine-wide rights; it gets Read & Execute on the releases and the base Python
#: and Modify on its log folder). https://learn.microsoft.com/windows/win32/services/localservice-account
SERVICE_ACCOUNT = "NT AUTHORITY\\LOCAL SERVICE"
SERVICE_ACCOUNT_SID = "S-1-5-19"


def service_name(settings: ReleaseSettings, slot: str) -> str:
    """``pyinfra-iis-<app>-<slot>`` (the app name's ``.`` become ``-``: WinSW ids are plain)."""

    return f"pyinfra-iis-{re.sub(r'[^A-Za-z0-9-]', '-', settings.app_name)}-{slot}"


def services_dir(settings: ReleaseSettings) -> str:
    """``<root>\\services``."""

    return f"{settings.root}\\services"


def slot_dir(settings: ReleaseSettings, slot: str) -> str:
    """``<root>\\services\\<slot>``: the wrapper and its XML."""

    return f"{services_dir(settings)}\\{slot}"


def service_logs_dir(settings: ReleaseSettings) -> str:
    """``<root>\\logs\\services``: WinSW's rolling logs (a sub-folder, so the release cleanup's
    stdout-log pruning of ``<root>\\logs`` never touches a log the wrapper holds open)."""

    return f"{settings.logs_dir}\\services"


def wrapper_path(settings: ReleaseSettings, slot: str) -> str:
    """``<root>\\services\\<slot>\\<service>.exe``."""

    return f"{slot_dir(settings, slot)}\\{service_name(settings, slot)}.exe"


def xml_path(settings: ReleaseSettings, slot: str) -> str:
    """``<root>\\services\\<slot>\\<service>.xml``."""

    return f"{slot_dir(settings, slot)}\\{service_name(settings, slot)}.xml"


def uvicorn_arguments(settings: ReleaseSettings, release_dir: str, port: int, entry_point: str = "main:app") -> list[str]:
    """Uvicorn's arguments in one slot (after ``python.exe``).

    ``-m uvicorn <entry_point> --host 127.0.0.1 --port <port> --workers <n> --loop
    asyncio:SelectorEventLoop --proxy-headers --forwarded-allow-ips 127.0.0.1
    --timeout-keep-alive <s> --timeout-graceful-shutdown <s> --no-access-log --app-dir
    <release>\\app``.

    ``--loop asyncio:SelectorEventLoop``, not ``--loop asyncio``: uvicorn's ``asyncio`` factory
    returns the Proactor loop on Windows when it runs ONE process and the selector loop only
    with workers or reload (uvicorn/loops/asyncio.py, 0.55), so the class is named explicitly
    (docs/hosting-modes.md).
    """

    arr = settings.arr
    workers = arr.workers if arr is not None else 1
    return ["-m", "uvicorn", entry_point, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", SELECTOR_LOOP, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
            "--timeout-keep-alive", str(settings.timeout_keep_alive.seconds),
            "--timeout-graceful-shutdown", str(settings.timeout_graceful_shutdown.seconds),
            "--no-access-log", "--app-dir", f"{release_dir}\\{APP_DIR}"]


def _quote(argument: str) -> str:
    # CommandLineToArgvW quoting (only what our arguments need: spaces, no quotes in paths).
    return f'"{argument}"' if (not argument or any(c in argument for c in " \t")) else argument


def render_service_xml(settings: ReleaseSettings, slot: str, version: str, release_dir: str, port: int,
                       entry_point: Optional[str] = None) -> str:
    """The WinSW XML of ``slot`` running release ``version`` (text with a trailing newline).

    Environment: ``PYTHONUNBUFFERED=1``, ``PYTHONUTF8=1``, ``PYINFRA_IIS_RELEASE=<version>``,
    the app settings, then the app SECRETS (the XML is readable only by SYSTEM, Administrators
    and the service account: :func:`services_dir`'s ACL). Stop: WinSW sends Ctrl+C to Uvicorn's
    main process first (``stopparentprocessfirst``), which stops its workers gracefully, and
    kills after ``stoptimeout``. Logs: ``roll-by-size`` in :func:`service_logs_dir`.
    """

    arr = settings.arr
    if arr is None:
        raise ValueError("render_service_xml needs ARR settings (mode 'arr')")
    root = ET.Element("service")
    name = service_name(settings, slot)

    def add(tag: str, text: Optional[str] = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(root, tag, attributes)
        if text is not None:
            element.text = text
        return element

    add("id", name)
    add("name", f"{settings.app_name} ({slot})")
    add("description", f"{settings.app_name} {version}: uvicorn on 127.0.0.1:{port}, fronted by IIS (pyinfra-iis ARR mode)")
    add("executable", f"{release_dir}\\venv\\Scripts\\python.exe")
    arguments = uvicorn_arguments(settings, release_dir, port, entry_point or "main:app")
    add("arguments", " ".join(_quote(a) for a in arguments))
    add("workingdirectory", release_dir)
    add("startmode", "Automatic")
    add("stoptimeout", f"{arr.stop_timeout.seconds} sec")
    add("stopparentprocessfirst", "true")
    add("onfailure", action="restart", delay="10 sec")
    add("resetfailure", "1 hour")
    account = add("serviceaccount")
    ET.SubElement(account, "domain").text = "NT AUTHORITY"
    ET.SubElement(account, "user").text = "LocalService"
    add("logpath", service_logs_dir(settings))
    log = add("log", mode="roll-by-size")
    ET.SubElement(log, "sizeThreshold").text = str(arr.log_size_kb)
    ET.SubElement(log, "keepFiles").text = str(arr.log_keep)
    variables = {"PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1", "PYINFRA_IIS_RELEASE": version}
    variables.update(sorted(settings.app_settings.items()))
    variables.update((k, v.get_secret_value()) for k, v in sorted(settings.app_secrets.items()))
    for key, value in variables.items():
        add("env", name=key, value=value)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def parse_service_xml(text: str) -> dict:
    """What the simulator (and tests) read back from a WinSW XML: ``{"id", "executable",
    "arguments", "workingdirectory", "logpath", "stoptimeout", "log": {mode, sizeThreshold,
    keepFiles}, "env": {name: value}}`` (missing elements: ``None``).

    Raises:
        ValueError: not a WinSW ``<service>`` document.
    """

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"the service XML is not well-formed: {exc}") from None
    if root.tag != "service":
        raise ValueError("the service XML's root element is not <service>")

    def text_of(tag: str) -> Optional[str]:
        element = root.find(tag)
        return element.text if element is not None else None

    log = root.find("log")
    return {
        "id": text_of("id"), "executable": text_of("executable"), "arguments": text_of("arguments") or "",
        "workingdirectory": text_of("workingdirectory"), "logpath": text_of("logpath"), "stoptimeout": text_of("stoptimeout"),
        "log": {"mode": log.get("mode") if log is not None else None,
                "sizeThreshold": log.findtext("sizeThreshold") if log is not None else None,
                "keepFiles": log.findtext("keepFiles") if log is not None else None},
        "env": {e.get("name"): e.get("value", "") for e in root.findall("env") if e.get("name")},
    }
