"""``Install-MsiProduct`` on the simulated host: HttpPlatformHandler, URL Rewrite, ARR.

The simulator does not run msiexec. It copies the MSI to ``C:\\ProgramData\\pyinfra-iis\\msi\\``,
checks its SHA-256 BEFORE "running" it, writes a verbose-log-like file to
``C:\\ProgramData\\pyinfra-iis\\logs\\<product>.log``, records the product in
``host.state["products"]`` and makes the installer's changes the project relies on:

* HttpPlatformHandler 1.2: ``%SystemRoot%\\system32\\inetsrv\\httpPlatformHandler.dll``, global
  module ``httpPlatformHandler`` (also enabled in ``<modules>``), section
  ``system.webServer/httpPlatform``;
* URL Rewrite 2.1: ``rewrite.dll``, ``RewriteModule``, the ``system.webServer/rewrite`` group
  (rules, globalRules, outboundRules, providers, rewriteMaps, allowedServerVariables);
* ARR 3.0 (needs URL Rewrite): ``requestRouter.dll``, ``ApplicationRequestRouting``, sections
  ``system.webServer/proxy``, ``system.webServer/diskCache`` and ``webFarms``.

Sources: a path on the host; an ``https://`` URL or a UNC path only when the test pre-seeded
its content with :func:`seed_remote_source` (the simulator has no network) — otherwise an
error says it is not supported by the simulator.

Installing a product that is already installed returns exit code 0 and changes nothing
(msiexec would run a repair; the simulator chooses the no-op), with ``"changed": false``.

Exit codes: :func:`set_next_exit_code` makes the next install of a product end with that code
(3010 → success, restart needed; 1641 → success, reboot started; others → error with the
exit code and the last 30 lines of the log), for failure tests; :func:`set_next_exit_codes`
queues one code per msiexec run. 1618 (another installation is in progress) is retried, as the
module does: up to :data:`MSI_BUSY_RETRIES` more runs, after backoff delays
the simulator only records (``host.state["msi_busy_waits"]``), it does not sleep.

The MSI folder ``C:\\ProgramData\\pyinfra-iis\\msi`` is administrators-only on Windows
(``Initialize-ProtectedFolder``); the simulator has no ACL model for it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Any

from ..host import SimPathError
from ..iis.fresh import add_global_module
from ..iis.store import config_file, load_config
from . import SimFunctionError, sim_function

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

MSI_FOLDER = "C:\\ProgramData\\pyinfra-iis\\msi"
LOG_FOLDER = "C:\\ProgramData\\pyinfra-iis\\logs"
LOG_TAIL_LINES = 30
#: 1618 is retried this many times after delays starting at MSI_BUSY_FIRST_DELAY, doubling
#: (the module: 10, 20, 40, 80, 160 seconds).
MSI_BUSY_RETRIES = 5
MSI_BUSY_FIRST_DELAY = 10
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

#: What each product's installer adds. Versions are those of the current downloads
#: (registry ``HKLM\\SOFTWARE\\Microsoft\\IIS Extensions\\...\\Version``). The product codes
#: are the simulator's placeholders, not Microsoft's (several installer builds exist; detection
#: never relies on them).
PRODUCTS: dict[str, dict[str, Any]] = {
    "HttpPlatformHandler": {
        "display_name": "Microsoft HTTP Platform Handler 1.2",
        "version": "1.2.1975.0",
        "product_code": "{B7840F8E-7E5E-4B1A-A98B-0B2C5B0D1B5A}",
        "files": ["C:\\Windows\\System32\\inetsrv\\httpPlatformHandler.dll"],
        "modules": [("httpPlatformHandler", "%SystemRoot%\\system32\\inetsrv\\httpPlatformHandler.dll")],
        "sections": [("system.webServer/httpPlatform", {"overrideModeDefault": "Allow"})],
        "requires": [],
    },
    "UrlRewrite": {
        "display_name": "IIS URL Rewrite Module 2",
        "version": "7.2.1993",
        "product_code": "{9BCA2118-F753-4A1E-BCF3-5A820729965C}",
        "files": ["C:\\Windows\\System32\\inetsrv\\rewrite.dll"],
        "modules": [("RewriteModule", "%SystemRoot%\\system32\\inetsrv\\rewrite.dll")],
        "sections": [
            ("system.webServer/rewrite/globalRules", {"overrideModeDefault": "Deny", "allowDefinition": "AppHostOnly"}),
            ("system.webServer/rewrite/rules", {"overrideModeDefault": "Allow"}),
            ("system.webServer/rewrite/outboundRules", {"overrideModeDefault": "Allow"}),
            ("system.webServer/rewrite/providers", {"overrideModeDefault": "Allow"}),
            ("system.webServer/rewrite/rewriteMaps", {"overrideModeDefault": "Allow"}),
            ("system.webServer/rewrite/allowedServerVariables", {"overrideModeDefault": "Deny"}),
        ],
        "requires": [],
    },
    "ARR": {
        "display_name": "Microsoft Application Request Routing 3.0",
        "version": "7.1.1952.0",
        "product_code": "{279B4CB0-A213-4F98-8D73-D57FA8C9C2D2}",
        "files": ["C:\\Program Files\\IIS\\Application Request Routing\\requestRouter.dll"],
        "modules": [("ApplicationRequestRouting", "%ProgramFiles%\\IIS\\Application Request Routing\\requestRouter.dll")],
        "sections": [
            ("system.webServer/proxy", {"overrideModeDefault": "Deny", "allowDefinition": "AppHostOnly"}),
            ("system.webServer/diskCache", {"overrideModeDefault": "Deny"}),
            ("webFarms", {"overrideModeDefault": "Deny", "allowDefinition": "AppHostOnly"}),
        ],
        "requires": ["UrlRewrite"],
    },
}


# --- test helpers -------------------------------------------------------------------------


def seed_remote_source(host: "SimHost", source: str, data: bytes) -> None:
    """Make ``source`` (an ``https://`` URL or a UNC path) readable by the simulated host with
    content ``data``: the simulator cannot reach the network, tests pre-seed what it serves."""

    folder = host.state_dir / "remote-sources"
    folder.mkdir(exist_ok=True)
    name = hashlib.sha256(source.encode("utf-8")).hexdigest()
    (folder / name).write_bytes(data)
    with host.lock:
        host.state.setdefault("remote_sources", {})[source] = name
        host.save()


def set_next_exit_code(host: "SimHost", product: str, exit_code: int) -> None:
    """Make the next ``Install-MsiProduct`` of ``product`` end with ``exit_code`` (once)."""

    set_next_exit_codes(host, product, [exit_code])


def set_next_exit_codes(host: "SimHost", product: str, exit_codes: list[int]) -> None:
    """Make the next msiexec runs for ``product`` end with ``exit_codes``, one per run (then 0)."""

    with host.lock:
        host.state.setdefault("msi_exit_codes", {})[product] = [int(code) for code in exit_codes]
        host.save()


def _run_msiexec(host: "SimHost", product: str) -> tuple[int, int]:
    # (exit code, attempts): 1618 retried with backoff, like the module's Install-MsiProduct.
    queued = host.state.setdefault("msi_exit_codes", {}).get(product) or []
    if isinstance(queued, int):
        queued = [queued]
    delay = MSI_BUSY_FIRST_DELAY
    attempt = 1
    while True:
        exit_code = queued.pop(0) if queued else 0
        if exit_code != 1618 or attempt > MSI_BUSY_RETRIES:
            break
        host.state.setdefault("msi_busy_waits", []).append(delay)
        delay *= 2
        attempt += 1
    host.state["msi_exit_codes"].pop(product, None)
    if queued:
        host.state["msi_exit_codes"][product] = queued
    return exit_code, attempt


# --- the function ---------------------------------------------------------------------------


def _fetch(host: "SimHost", source: str, product: str) -> tuple[str, bytes]:
    """Return ``(file name, content)`` of the MSI at ``source``."""

    if source.lower().startswith("https://") or source.startswith("\\\\"):
        seeded = host.state.get("remote_sources", {}).get(source)
        if seeded is None:
            raise SimFunctionError(
                f"not supported by the simulator: it cannot download or read '{source}' (no network); "
                "upload the MSI to the host and pass its path, or seed the source in the test"
            )
        name = PureWindowsPath(source.replace("/", "\\")).name or f"{product}.msi"
        return name, (host.state_dir / "remote-sources" / seeded).read_bytes()
    if source.lower().startswith("http://"):
        raise SimFunctionError(f"refusing to download an MSI over plain http: {source}")
    try:
        local = host.path(source)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None
    if not local.is_file():
        raise SimFunctionError(f"Cannot find path '{source}' because it does not exist.")
    return local.name, local.read_bytes()


def _log_lines(product: str, msi: str, log: str, exit_code: int, error: str | None = None) -> list[str]:
    spec = PRODUCTS[product]
    now = datetime.now(timezone.utc).strftime("%H:%M:%S")
    status = {0: "success or error status: 0", 3010: "success or error status: 0"}.get(exit_code, "success or error status: 1603")
    lines = [
        f"=== Verbose logging started: {datetime.now(timezone.utc):%m/%d/%Y  %H:%M:%S}  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===",
        f"MSI (c) [{now}:000]: Command line: /i {msi} /qn /norestart /l*v {log}",
        f"MSI (s) [{now}:010]: Product: {spec['display_name']} -- Installation started (simulated: pyinfra-iis simulator, msiexec was not run).",
        f"MSI (s) [{now}:020]: PROPERTY CHANGE: Adding ProductCode property. Its value is '{spec['product_code']}'.",
        f"MSI (s) [{now}:030]: PROPERTY CHANGE: Adding ProductVersion property. Its value is '{spec['version']}'.",
    ]
    for file in spec["files"]:
        lines.append(f"MSI (s) [{now}:040]: Executing op: FileCopy(DestName={PureWindowsPath(file).name},DestPath={PureWindowsPath(file).parent})")
    for name, image in spec["modules"]:
        lines.append(f"MSI (s) [{now}:050]: Executing op: CustomActionSchedule(Action=RegisterModule,Data=name={name};image={image})")
    for section, _ in spec["sections"]:
        lines.append(f"MSI (s) [{now}:060]: Executing op: CustomActionSchedule(Action=RegisterSection,Data={section})")
    if error:
        lines.append(f"MSI (s) [{now}:065]: Product: {spec['display_name']} -- {error}")
    if exit_code not in (0, 3010, 1641):
        lines.append(f"MSI (s) [{now}:070]: Product: {spec['display_name']} -- Error 1603. A fatal error occurred during installation.")
        lines.append(f"MSI (s) [{now}:071]: Note: 1: 1708")
        lines.append(f"MSI (s) [{now}:072]: Product: {spec['display_name']} -- Installation failed.")
    else:
        lines.append(f"MSI (s) [{now}:070]: Product: {spec['display_name']} -- Installation completed successfully.")
    if exit_code in (3010, 1641):
        lines.append(f"MSI (s) [{now}:071]: Product: {spec['display_name']} -- Restart required. The installation or update for the product required a restart for all changes to take effect.")
    lines.append(f"MSI (s) [{now}:080]: Windows Installer installed the product. Product Name: {spec['display_name']}. Product Version: {spec['version']}. Product Language: 1033. Manufacturer: Microsoft Corporation. Installation {status}.")
    lines.append(f"MSI (c) [{now}:090]: MainEngineThread is returning {exit_code}")
    lines.append(f"=== Verbose logging stopped: {datetime.now(timezone.utc):%m/%d/%Y  %H:%M:%S} ===")
    return lines


def _apply_installer_changes(host: "SimHost", product: str) -> None:
    spec = PRODUCTS[product]
    for file in spec["files"]:
        local = host.path(file)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(f"MZ simulator stand-in for {PureWindowsPath(file).name} ({spec['display_name']} {spec['version']})".encode())
    config = load_config(host)
    for section, attributes in spec["sections"]:
        config.register_section(section, **attributes)
    for name, image in spec["modules"]:
        add_global_module(config, name, image, in_modules=True, lock_item=False)
    config.save(config_file(host))


def _payload(payload: dict[str, Any]) -> tuple[str, str, str]:
    product = payload.get("product")
    if product not in PRODUCTS:
        raise SimFunctionError(f"'product' must be one of {', '.join(PRODUCTS)}, not {product!r}")
    source = payload.get("source")
    if not isinstance(source, str) or not source:
        raise SimFunctionError("'source' must be a host path, an https:// URL or a UNC path")
    sha256 = payload.get("sha256")
    if not isinstance(sha256, str) or not _HEX64.match(sha256):
        raise SimFunctionError("'sha256' must be 64 hex digits")
    return product, source, sha256.lower()


@sim_function("Install-MsiProduct")
def install_msi_product(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"product","source","sha256"}`` → ``{"product","exit_code","restart_needed","log","changed"}``.

    Errors (nothing installed): unknown product, source unreadable, SHA-256 mismatch (expected
    and actual in the message), IIS not installed, ARR before URL Rewrite, an injected failing
    exit code (message has the code and the log's last 30 lines).
    """

    product, source, expected = _payload(payload)
    spec = PRODUCTS[product]
    log = f"{LOG_FOLDER}\\{product}.log"
    with host.lock:
        products = host.state.setdefault("products", {})
        if product in products:
            return json.dumps({"product": product, "exit_code": 0, "restart_needed": False, "log": log, "changed": False,
                               "attempts": 0})
        name, data = _fetch(host, source, product)
        msi = f"{MSI_FOLDER}\\{name}"
        local_msi = host.path(msi)
        local_msi.parent.mkdir(parents=True, exist_ok=True)
        if not local_msi.exists() or local_msi.read_bytes() != data:
            local_msi.write_bytes(data)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise SimFunctionError(
                f"SHA-256 mismatch for {msi}: expected {expected}, actual {actual}; msiexec was not run"
            )
        for required in spec["requires"]:
            if required not in products:
                raise SimFunctionError(
                    f"{spec['display_name']} needs {PRODUCTS[required]['display_name']}: install {required} first"
                )
        exit_code, attempts = _run_msiexec(host, product)
        error = None
        if "Web-Server" not in host.state.get("features", {}) or load_config(host) is None:
            # The extension installers refuse to run without IIS (a launch condition).
            error = "IIS Version 7.0 or greater is required to install this product."
            exit_code = 1603
        lines = _log_lines(product, msi, log, exit_code, error)
        local_log = host.path(log)
        local_log.parent.mkdir(parents=True, exist_ok=True)
        local_log.write_text("\r\n".join(lines) + "\r\n", encoding="utf-16")
        if exit_code not in (0, 3010, 1641):
            host.save()
            tail = "\n".join(lines[-LOG_TAIL_LINES:])
            raise SimFunctionError(f"msiexec exited with {exit_code} installing {product} from {msi} after {attempts} "
                                   f"attempt(s); last lines of {log}:\n{tail}")
        _apply_installer_changes(host, product)
        products[product] = {
            "display_name": spec["display_name"], "version": spec["version"], "product_code": spec["product_code"],
            "msi": msi, "sha256": actual,
        }
        restart = exit_code in (3010, 1641)
        if restart:
            host.state["reboot_pending"] = True
        host.save()
    return json.dumps({"product": product, "exit_code": exit_code, "restart_needed": restart, "log": log, "changed": True,
                       "attempts": attempts})
