"""IIS schema defaults of every attribute the project manages, and value comparison.

Each :class:`AttributeSpec` names where an attribute lives (section, element), its schema type
and its default as written in Microsoft's schema files
(``%windir%\\System32\\inetsrv\\config\\schema\\``; copies in ``tests/data/iis-schema``:
``IIS_schema.xml`` for IIS 10.0, ``arr_schema.xml`` for ARR 3.0). ``tests/test_facts_iis_defaults.py``
checks every entry against those files.

Collections with a default element (``applicationPoolDefaults``, ``siteDefaults``,
``applicationDefaults``, ``virtualDirectoryDefaults``) inherit from it first: see
:data:`COLLECTION_DEFAULTS` and :func:`pyinfra_iis.iis.config.effective`.

Values are compared by type (:func:`same_value`): booleans case-insensitively, time spans by
duration (IIS writes ``1.05:00:00`` for the schema's ``29:00:00``), numbers by value, enums and
flags case-insensitively (flags as sets), strings exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping

APP_POOLS = "system.applicationHost/applicationPools"
SITES = "system.applicationHost/sites"
PROXY = "system.webServer/proxy"
REQUEST_FILTERING = "system.webServer/security/requestFiltering"
ANONYMOUS_AUTH = "system.webServer/security/authentication/anonymousAuthentication"
SERVER_VARIABLES = "system.webServer/rewrite/allowedServerVariables"
GLOBAL_MODULES = "system.webServer/globalModules"


@dataclass(frozen=True)
class AttributeSpec:
    """One managed attribute.

    Attributes:
        section: section path in the schema.
        element: schema element path below the section, ``/``-separated, where the attribute
            is declared (``""`` = the section element; ``"add"`` = the collection item;
            ``"add/processModel"``...). Used by the schema test.
        name: attribute name.
        type: schema type: ``bool``, ``uint``, ``int64``, ``timeSpan``, ``enum``, ``flags``,
            ``string``; ``hex`` (case-insensitive string) for certificate hashes.
        default: schema ``defaultValue``; ``None`` when the schema declares none (IIS then
            uses the type's empty value: ``""`` for strings).
        source: schema file holding the declaration (``None``: not in the reference copies).
        expanded: the schema marks the attribute ``expanded="true"``: IIS expands
            ``%VARIABLE%`` references in it, so values compare by their expanded form
            (:func:`same_value` with the host's environment).
    """

    section: str
    element: str
    name: str
    type: str
    default: str | None
    source: str | None = "IIS_schema.xml"
    expanded: bool = False


def _specs(section: str, element: str, prefix: str, table: Mapping[str, tuple[str, str | None]], source: str | None = "IIS_schema.xml") -> dict[str, AttributeSpec]:
    specs = {}
    for dotted, (type_, default) in table.items():
        *tags, name = dotted.split(".")
        path = "/".join(part for part in [element, *tags] if part)
        specs[prefix + dotted] = AttributeSpec(section, path, name, type_, default, source)
    return specs


#: Application pool (``applicationPools/add``) attributes by dotted name.
APP_POOL: dict[str, AttributeSpec] = _specs(APP_POOLS, "add", "", {
    "queueLength": ("uint", "1000"),
    "autoStart": ("bool", "true"),
    "enable32BitAppOnWin64": ("bool", "false"),
    "managedRuntimeVersion": ("string", ""),
    "managedPipelineMode": ("enum", "Integrated"),
    "startMode": ("enum", "OnDemand"),
    "processModel.identityType": ("enum", "ApplicationPoolIdentity"),
    "processModel.userName": ("string", None),
    "processModel.loadUserProfile": ("bool", "false"),
    "processModel.idleTimeout": ("timeSpan", "00:20:00"),
    "processModel.idleTimeoutAction": ("enum", "Terminate"),
    "processModel.maxProcesses": ("uint", "1"),
    "recycling.disallowOverlappingRotation": ("bool", "false"),
    "recycling.periodicRestart.time": ("timeSpan", "29:00:00"),
    "failure.rapidFailProtection": ("bool", "true"),
    "failure.rapidFailProtectionInterval": ("timeSpan", "00:05:00"),
    "failure.rapidFailProtectionMaxCrashes": ("uint", "5"),
})

#: Site (``sites/site``) attributes by dotted name.
SITE: dict[str, AttributeSpec] = _specs(SITES, "site", "", {
    "serverAutoStart": ("bool", "true"),
    "limits.connectionTimeout": ("timeSpan", "00:02:00"),
    "logFile.directory": ("string", r"%SystemDrive%\inetpub\logs\LogFiles"),
    "logFile.enabled": ("bool", "true"),
    "logFile.period": ("enum", "Daily"),
})

SITE["logFile.directory"] = replace(SITE["logFile.directory"], expanded=True)

#: Application (``site/application``) attributes.
APPLICATION: dict[str, AttributeSpec] = _specs(SITES, "site/application", "", {
    "applicationPool": ("string", None),
    "enabledProtocols": ("string", "http"),
    "preloadEnabled": ("bool", "false"),
})

#: Virtual directory (``application/virtualDirectory``) attributes.
VIRTUAL_DIRECTORY: dict[str, AttributeSpec] = _specs(SITES, "site/application/virtualDirectory", "", {
    "physicalPath": ("string", None),
})
VIRTUAL_DIRECTORY["physicalPath"] = replace(VIRTUAL_DIRECTORY["physicalPath"], expanded=True)

#: Binding (``site/bindings/binding``) attributes. ``certificateHash`` and
#: ``certificateStoreName`` exist since IIS 8 (Microsoft docs, sites/site/bindings/binding) but
#: are missing from the 2015 schema copy, hence ``source=None``; they are compared
#: case-insensitively (type ``hex`` / ``enum`` here: ``Cert:\`` shows upper case, IIS may keep
#: what it was given).
BINDING: dict[str, AttributeSpec] = {
    **_specs(SITES, "site/bindings/binding", "", {"sslFlags": ("uint", "0")}),
    **_specs(SITES, "site/bindings/binding", "", {
        "certificateHash": ("hex", None),
        "certificateStoreName": ("enum", None),
    }, source=None),
}

#: ARR proxy (``system.webServer/proxy``, applicationHost only). The ARR 3.0 schema says
#: ``timeout`` 00:02:00; Microsoft's ARR troubleshooting page speaks of 30 s (docs/field-facts.md):
#: set it explicitly.
PROXY_ATTRS: dict[str, AttributeSpec] = _specs(PROXY, "", "", {
    "enabled": ("bool", "false"),
    "timeout": ("timeSpan", "00:02:00"),
    "preserveHostHeader": ("bool", "false"),
    "reverseRewriteHostInResponseHeaders": ("bool", "true"),
    "includePortInXForwardedFor": ("bool", "true"),
    "xForwardedForHeaderName": ("string", "X-Forwarded-For"),
}, source="arr_schema.xml")

#: requestFiltering attributes (docs/field-facts.md: maxAllowedContentLength 30,000,000 bytes).
REQUEST_FILTERING_ATTRS: dict[str, AttributeSpec] = _specs(REQUEST_FILTERING, "", "", {
    "requestLimits.maxAllowedContentLength": ("uint", "30000000"),
    "requestLimits.maxUrl": ("uint", "4096"),
    "requestLimits.maxQueryString": ("uint", "2048"),
})

#: anonymousAuthentication attributes (``userName=""`` runs as the pool identity; docs/field-facts.md).
ANONYMOUS_AUTH_ATTRS: dict[str, AttributeSpec] = _specs(ANONYMOUS_AUTH, "", "", {
    "enabled": ("bool", "true"),
    "userName": ("string", "IUSR"),
})

#: Every table, for the schema test.
ALL_TABLES: dict[str, dict[str, AttributeSpec]] = {
    "app_pool": APP_POOL,
    "site": SITE,
    "application": APPLICATION,
    "virtual_directory": VIRTUAL_DIRECTORY,
    "binding": BINDING,
    "proxy": PROXY_ATTRS,
    "request_filtering": REQUEST_FILTERING_ATTRS,
    "anonymous_auth": ANONYMOUS_AUTH_ATTRS,
}

#: Collection default elements: scope → (section, child tags below the section element).
#: ``applicationDefaults`` and ``virtualDirectoryDefaults`` are children of the sites section
#: (IIS_schema.xml); a site may also carry its own, which the project does not write.
COLLECTION_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "app_pool": (APP_POOLS, ("applicationPoolDefaults",)),
    "site": (SITES, ("siteDefaults",)),
    "application": (SITES, ("applicationDefaults",)),
    "virtual_directory": (SITES, ("virtualDirectoryDefaults",)),
}


def spec_for(table: Mapping[str, AttributeSpec], dotted: str) -> AttributeSpec | None:
    """Return the spec of ``dotted`` in ``table`` (case-insensitive), or ``None``."""

    spec = table.get(dotted)
    if spec is None:
        for name, candidate in table.items():
            if name.lower() == dotted.lower():
                return candidate
    return spec


_TIMESPAN_RE = re.compile(r"^(?P<neg>-)?(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+)(?:\.(?P<f>\d+))?)?$")


def timespan_seconds(value: str) -> float:
    """Parse an IIS time span (``[-][d.]hh:mm[:ss[.fffffff]]``; hours may exceed 23 as in the
    schema's ``29:00:00``) into seconds.

    Raises:
        ValueError: not a time span.
    """

    match = _TIMESPAN_RE.match(value.strip())
    if not match:
        raise ValueError(f"not a time span: {value!r}")
    seconds = (int(match["days"] or 0) * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60
               + int(match["s"] or 0) + float("0." + (match["f"] or "0")))
    return -seconds if match["neg"] else seconds


def normalize(type_: str | None, value: str | None) -> object:
    """Return a comparable form of ``value`` for schema type ``type_`` (``None`` → ``""``)."""

    if value is None:
        value = ""
    value = str(value)
    try:
        if type_ == "bool":
            return value.strip().lower()
        if type_ == "timeSpan":
            return timespan_seconds(value)
        if type_ in ("uint", "int", "int64"):
            return int(value.strip())
        if type_ in ("enum", "hex"):
            return value.strip().lower()
        if type_ == "flags":
            return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    except ValueError:
        return value
    return value


_VARIABLE_RE = re.compile(r"%([^%\\/:*?\"<>|]+)%")


def expand_variables(text: str, environment: Mapping[str, str] | None) -> str:
    """Expand ``%NAME%`` references in ``text`` as Windows does (``ExpandEnvironmentStrings``:
    names case-insensitive, an unknown name stays as written).

    Args:
        text: the value, e.g. ``%SystemDrive%\\inetpub\\wwwroot``.
        environment: the host's variables (``Get-HostState``'s ``environment``); ``None``
            expands nothing.
    """

    if not environment or "%" not in text:
        return text
    folded = {name.casefold(): value for name, value in environment.items() if isinstance(value, str) and value}

    def _one(match: "re.Match[str]") -> str:
        return folded.get(match.group(1).casefold(), match.group(0))

    return _VARIABLE_RE.sub(_one, text)


def normalize_path(value: str | None, environment: Mapping[str, str] | None = None) -> str:
    """A comparable form of a Windows path as IIS uses it: variables expanded, ``/`` as ``\\``,
    no trailing separator, case-folded (NTFS names are case-insensitive)."""

    text = expand_variables(value or "", environment).replace("/", "\\")
    if len(text) > 3 or not re.match(r"^[A-Za-z]:\\$", text):
        text = text.rstrip("\\")
    return text.casefold()


def same_value(spec: AttributeSpec | None, current: str | None, desired: str | None,
               environment: Mapping[str, str] | None = None) -> bool:
    """True when ``current`` and ``desired`` mean the same value for the attribute ``spec``
    (``None`` spec: exact string comparison). An ``expanded`` attribute (physicalPath, log
    directory) compares as a path after expanding ``%VARIABLE%`` with the host's
    ``environment``: ``%SystemDrive%\\inetpub\\wwwroot`` equals ``C:\\inetpub\\wwwroot`` on a
    host whose SystemDrive is ``C:``."""

    if spec is not None and spec.expanded:
        return normalize_path(current, environment) == normalize_path(desired, environment)
    type_ = spec.type if spec else None
    return normalize(type_, current) == normalize(type_, desired)
