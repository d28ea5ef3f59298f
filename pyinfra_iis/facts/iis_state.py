"""The ``iis`` part of ``Get-HostState``: what the host reports, as the operations read it.

The host sends RAW data (``docs/remote-functions.md``, "Read: Get-HostState"):

    "iis": null | {"config": "<applicationHost.config text, secret values as keyed digests>",
                   "redirection": null | "<redirection.config text>",
                   "runtime": {"app_pools": {name: state}, "sites": {name: state}},
                   "sslcert": "<netsh http show sslcert output>"}

:func:`convert` turns it into the shape the operations use: ``sections`` and ``locations`` of
ELEMENTs parsed here with the parser the simulator keeps the file with
(:mod:`pyinfra_iis.iis.appconfig`), the ``runtime`` as sent, and ``ssl_bindings`` (HTTP.sys,
:func:`pyinfra_iis.iis.httpsys.parse_sslcert`). It refuses a host whose IIS uses shared
configuration: its ``applicationHost.config`` is not the one IIS reads.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from pyinfra.api.exceptions import FactProcessError

from ..iis.appconfig import AppHostConfig, ConfigError, reported_configuration
from ..iis.httpsys import parse_sslcert

#: Sections the fact reports, at server level and under each ``<location>``, when registered
#: in ``<configSections>`` (proxy: with ARR; rewrite/allowedServerVariables: with URL Rewrite).
REPORTED_SECTIONS = (
    "system.applicationHost/applicationPools",
    "system.applicationHost/sites",
    "system.webServer/globalModules",
    "system.webServer/proxy",
    "system.webServer/rewrite/allowedServerVariables",
    "system.webServer/rewrite/rules",  # ARR mode: the site's proxy rule (operations/arr.py), under its <location>
    "system.webServer/security/requestFiltering",
    "system.webServer/security/authentication/anonymousAuthentication",
)

#: Extension → the global module that shows it is installed (docs/field-facts.md: detection).
EXTENSION_MODULES = {
    "HttpPlatformHandler": "httpPlatformHandler",
    "UrlRewrite": "RewriteModule",
    "ARR": "ApplicationRequestRouting",
}


class SharedConfigurationError(FactProcessError):
    """IIS on the host reads its configuration from a share (``redirection.config``)."""


def shared_configuration_path(redirection: str | None) -> str | None:
    """The share path when ``redirection.config`` enables shared configuration, else ``None``
    (https://learn.microsoft.com/iis/web-hosting/configuring-servers-in-the-windows-web-platform/shared-configuration_211)."""

    if not redirection or not redirection.strip():
        return None
    try:
        root = ET.fromstring(redirection)
    except ET.ParseError:
        return "(unreadable redirection.config)"
    element = root.find("configurationRedirection")
    if element is None or element.get("enabled", "false").strip().lower() != "true":
        return None
    return element.get("path") or "(no path)"


def _global_modules(sections: dict[str, Any]) -> set[str]:
    modules = sections.get("system.webServer/globalModules") or {}
    return {str(item["attributes"].get("name", "")).casefold() for item in modules.get("items", []) if item.get("tag") == "add"}


def convert_iis(raw_iis: dict[str, Any] | None, computer_name: str) -> dict[str, Any] | None:
    """The processed ``iis`` part (``None`` stays ``None``: IIS not installed).

    Raises:
        SharedConfigurationError: shared configuration is enabled (names the host and the fix).
        FactProcessError: applicationHost.config is not a configuration file.
    """

    if raw_iis is None:
        return None
    shared = shared_configuration_path(raw_iis.get("redirection"))
    if shared is not None:
        raise SharedConfigurationError(
            f"{computer_name}: IIS uses shared configuration (redirection.config enabled, path {shared}); "
            "pyinfra-iis manages the local applicationHost.config only: disable shared configuration on this "
            "host (IIS Manager > Shared Configuration, or configurationRedirection enabled=\"false\") or leave "
            "it out of the inventory"
        )
    try:
        config = AppHostConfig.from_text(raw_iis.get("config") or "")
    except ConfigError as exc:
        raise FactProcessError(f"{computer_name}: cannot parse applicationHost.config: {exc}") from None
    result = reported_configuration(config, REPORTED_SECTIONS)
    result["runtime"] = raw_iis.get("runtime") or {"app_pools": {}, "sites": {}}
    result["ssl_bindings"] = parse_sslcert(raw_iis.get("sslcert") or "")
    return result


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with this part converted (in place; returned for chaining):
    ``iis`` parsed, and each extension also ``installed`` when its global module is registered."""

    iis = convert_iis(raw.get("iis"), str(raw.get("computer_name") or "host"))
    raw["iis"] = iis
    if iis is not None:  # what IIS expands %VARIABLE% to (physicalPath, log directories)
        iis["environment"] = dict(raw.get("environment") or {})
    if iis is not None:
        modules = _global_modules(iis["sections"])
        for product, module in EXTENSION_MODULES.items():
            entry = raw.setdefault("extensions", {}).setdefault(product, {"installed": False, "version": None})
            entry["installed"] = bool(entry.get("installed")) or module.casefold() in modules
    return raw
