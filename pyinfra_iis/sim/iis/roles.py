"""Catalog of the Windows Server 2022 features the simulator knows, and what the IIS role
services among them put into applicationHost.config.

Feature names, parents and the default role services are those ``Get-WindowsFeature`` shows on
Windows Server 2022 (``Install-WindowsFeature Web-Server`` without ``-IncludeAllSubFeature``
installs the ``default=True`` role services below). The global modules, ``<modules>`` entries
and handler modules of each role service follow Microsoft's "IIS on Nano Server", Appendix 2
"Elements of HTTP features" (MicrosoftDocs/windowsserverdocs), which lists, per feature, the
configuration elements its installation adds; images are written as
``%windir%\\System32\\inetsrv\\<dll>`` like a fresh Windows Server file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One Windows feature.

    Attributes:
        name: feature name (``Web-WebSockets``).
        display_name: the name Server Manager shows.
        parent: the feature it sits under (installed with it), or ``None``.
        default: installed by ``Install-WindowsFeature <parent>`` without sub-features.
        global_modules: ``(name, dll)`` pairs added to ``system.webServer/globalModules``
            (dll relative to ``%windir%\\System32\\inetsrv``).
        modules: names added to ``<modules>`` (``lockItem="true"``).
        static_handler_module: module added to the ``StaticFile`` handler's ``modules`` list.
        restart_needed: Install-WindowsFeature reports ``RestartNeeded`` for it.
    """

    name: str
    display_name: str
    parent: str | None = None
    default: bool = False
    global_modules: tuple[tuple[str, str], ...] = ()
    modules: tuple[str, ...] = ()
    static_handler_module: str | None = None
    restart_needed: bool = False


def _f(name, display_name, parent=None, default=False, gm=(), modules=None, static=None, restart=False):
    modules = tuple(m for m, _ in gm) if modules is None else tuple(modules)
    return Feature(name, display_name, parent, default, tuple(gm), modules, static, restart)


_FEATURES = [
    # The web server core (Web-WebServer) gives the cache, protocol support, anonymous
    # authentication and configuration validation modules (cache modules are global only).
    _f("Web-Server", "Web Server (IIS)"),
    _f("Web-WebServer", "Web Server", "Web-Server", True,
       gm=[("UriCacheModule", "cachuri.dll"), ("FileCacheModule", "cachfile.dll"),
           ("TokenCacheModule", "cachtokn.dll"), ("HttpCacheModule", "cachhttp.dll"),
           ("ProtocolSupportModule", "protsup.dll"), ("AnonymousAuthenticationModule", "authanon.dll"),
           ("ConfigurationValidationModule", "validcfg.dll")],
       modules=["HttpCacheModule", "ProtocolSupportModule", "AnonymousAuthenticationModule",
                "ConfigurationValidationModule"]),
    _f("Web-Common-Http", "Common HTTP Features", "Web-WebServer", True),
    _f("Web-Default-Doc", "Default Document", "Web-Common-Http", True,
       gm=[("DefaultDocumentModule", "defdoc.dll")], static="DefaultDocumentModule"),
    _f("Web-Dir-Browsing", "Directory Browsing", "Web-Common-Http", True,
       gm=[("DirectoryListingModule", "dirlist.dll")], static="DirectoryListingModule"),
    _f("Web-Http-Errors", "HTTP Errors", "Web-Common-Http", True, gm=[("CustomErrorModule", "custerr.dll")]),
    _f("Web-Static-Content", "Static Content", "Web-Common-Http", True,
       gm=[("StaticFileModule", "static.dll")], static="StaticFileModule"),
    _f("Web-Http-Redirect", "HTTP Redirection", "Web-Common-Http", gm=[("HttpRedirectionModule", "redirect.dll")]),
    _f("Web-DAV-Publishing", "WebDAV Publishing", "Web-Common-Http", gm=[("WebDAVModule", "webdav.dll")]),
    _f("Web-Health", "Health and Diagnostics", "Web-WebServer", True),
    _f("Web-Http-Logging", "HTTP Logging", "Web-Health", True, gm=[("HttpLoggingModule", "loghttp.dll")]),
    _f("Web-Custom-Logging", "Custom Logging", "Web-Health", gm=[("CustomLoggingModule", "logcust.dll")]),
    _f("Web-Log-Libraries", "Logging Tools", "Web-Health"),
    _f("Web-ODBC-Logging", "ODBC Logging", "Web-Health"),
    _f("Web-Request-Monitor", "Request Monitor", "Web-Health",
       gm=[("RequestMonitorModule", "iisreqs.dll")], modules=[]),
    _f("Web-Http-Tracing", "Tracing", "Web-Health",
       gm=[("TracingModule", "iisetw.dll"), ("FailedRequestsTracingModule", "iisfreb.dll")],
       modules=["FailedRequestsTracingModule"]),
    _f("Web-Performance", "Performance", "Web-WebServer", True),
    _f("Web-Stat-Compression", "Static Content Compression", "Web-Performance", True,
       gm=[("StaticCompressionModule", "compstat.dll")]),
    _f("Web-Dyn-Compression", "Dynamic Content Compression", "Web-Performance",
       gm=[("DynamicCompressionModule", "compdyn.dll")]),
    _f("Web-Security", "Security", "Web-WebServer", True),
    _f("Web-Filtering", "Request Filtering", "Web-Security", True, gm=[("RequestFilteringModule", "modrqflt.dll")]),
    _f("Web-Basic-Auth", "Basic Authentication", "Web-Security", gm=[("BasicAuthenticationModule", "authbas.dll")]),
    _f("Web-CertProvider", "Centralized SSL Certificate Support", "Web-Security"),
    _f("Web-Client-Auth", "Client Certificate Mapping Authentication", "Web-Security",
       gm=[("CertificateMappingAuthenticationModule", "authcert.dll")]),
    _f("Web-Digest-Auth", "Digest Authentication", "Web-Security", gm=[("DigestAuthenticationModule", "authmd5.dll")]),
    _f("Web-Cert-Auth", "IIS Client Certificate Mapping Authentication", "Web-Security",
       gm=[("IISCertificateMappingAuthenticationModule", "authmap.dll")]),
    _f("Web-IP-Security", "IP and Domain Restrictions", "Web-Security",
       gm=[("IpRestrictionModule", "iprestr.dll"), ("DynamicIpRestrictionModule", "diprestr.dll")]),
    _f("Web-Url-Auth", "URL Authorization", "Web-Security", gm=[("UrlAuthorizationModule", "urlauthz.dll")]),
    _f("Web-Windows-Auth", "Windows Authentication", "Web-Security",
       gm=[("WindowsAuthenticationModule", "authsspi.dll")]),
    _f("Web-App-Dev", "Application Development", "Web-WebServer"),
    _f("Web-Net-Ext45", ".NET Extensibility 4.8", "Web-App-Dev"),
    _f("Web-AppInit", "Application Initialization", "Web-App-Dev",
       gm=[("ApplicationInitializationModule", "warmup.dll")]),
    _f("Web-ASP", "ASP", "Web-App-Dev"),
    _f("Web-Asp-Net45", "ASP.NET 4.8", "Web-App-Dev"),
    _f("Web-CGI", "CGI", "Web-App-Dev", gm=[("CgiModule", "cgi.dll"), ("FastCgiModule", "iisfcgi.dll")]),
    _f("Web-ISAPI-Ext", "ISAPI Extensions", "Web-App-Dev", gm=[("IsapiModule", "isapi.dll")]),
    _f("Web-ISAPI-Filter", "ISAPI Filters", "Web-App-Dev", gm=[("IsapiFilterModule", "filter.dll")]),
    _f("Web-Includes", "Server Side Includes", "Web-App-Dev", gm=[("ServerSideIncludeModule", "iis_ssi.dll")]),
    _f("Web-WebSockets", "WebSocket Protocol", "Web-App-Dev", gm=[("WebSocketModule", "iiswsock.dll")]),
    _f("Web-Ftp-Server", "FTP Server", "Web-Server"),
    _f("Web-Ftp-Service", "FTP Service", "Web-Ftp-Server"),
    _f("Web-Ftp-Ext", "FTP Extensibility", "Web-Ftp-Server"),
    _f("Web-Mgmt-Tools", "Management Tools", "Web-Server", True),
    _f("Web-Mgmt-Console", "IIS Management Console", "Web-Mgmt-Tools", True),
    _f("Web-Mgmt-Compat", "IIS 6 Management Compatibility", "Web-Mgmt-Tools"),
    _f("Web-Metabase", "IIS 6 Metabase Compatibility", "Web-Mgmt-Compat"),
    _f("Web-Scripting-Tools", "IIS Management Scripts and Tools", "Web-Mgmt-Tools"),
    _f("Web-Mgmt-Service", "Management Service", "Web-Mgmt-Tools"),
    _f("Web-WHC", "IIS Hostable Web Core"),
    # A few non-IIS features operators commonly list next to the web role.
    _f("NET-Framework-45-Features", ".NET Framework 4.8 Features"),
    _f("NET-Framework-45-Core", ".NET Framework 4.8", "NET-Framework-45-Features"),
    _f("NET-Framework-45-ASPNET", "ASP.NET 4.8", "NET-Framework-45-Features"),
    _f("WAS", "Windows Process Activation Service"),
    _f("WAS-Process-Model", "Process Model", "WAS"),
    _f("WAS-Config-APIs", "Configuration APIs", "WAS"),
    _f("Telnet-Client", "Telnet Client"),
    _f("Containers", "Containers", restart=True),
]

#: Every known feature by name. Windows matches feature names case-insensitively: use
#: :func:`lookup`.
CATALOG: dict[str, Feature] = {feature.name: feature for feature in _FEATURES}

#: Canonical order of features (the order Get-WindowsFeature lists them).
ORDER: dict[str, int] = {feature.name: index for index, feature in enumerate(_FEATURES)}


def lookup(name: str) -> Feature | None:
    """Return the feature named ``name`` (case-insensitive), or ``None`` when unknown."""

    folded = name.casefold()
    return next((f for f in _FEATURES if f.name.casefold() == folded), None)


def with_parents(name: str) -> list[str]:
    """Return ``name`` and its ancestors, root first (installing a role service installs its
    parents). Raises ``KeyError`` for an unknown name."""

    chain = []
    feature: Feature | None = CATALOG[name]
    while feature is not None:
        chain.append(feature.name)
        feature = CATALOG[feature.parent] if feature.parent else None
    return list(reversed(chain))


def default_subfeatures(name: str) -> list[str]:
    """Return the ``default=True`` descendants of ``name`` (recursively), catalog order."""

    result = []
    for feature in _FEATURES:
        if feature.parent == name and feature.default:
            result.append(feature.name)
            result.extend(default_subfeatures(feature.name))
    return result


def is_iis_feature(name: str) -> bool:
    """Whether ``name`` belongs to the Web-Server role (so it touches applicationHost.config)."""

    return name == "Web-Server" or "Web-Server" in with_parents(name)[:1]
