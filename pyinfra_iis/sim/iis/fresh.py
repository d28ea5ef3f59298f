"""A fresh IIS 10 installation on the simulated Windows Server 2022 host.

:func:`fresh_config` builds the applicationHost.config that installing the Web-Server role
writes; :func:`add_feature` adds what a later role service (Web-WebSockets, Web-AppInit, ...)
adds. The skeleton follows the layout of the file a fresh Windows Server install writes, as
documented in Microsoft's "IIS 7 and IIS 8 Configuration Reference" (MicrosoftDocs/iis-docs,
iis/get-started/planning-your-iis-architecture/) and seen in published default files:
``<configSections>`` registering every core IIS section, ``DefaultAppPool`` with
``applicationPoolDefaults`` (``managedRuntimeVersion="v4.0"``, ``ApplicationPoolIdentity``),
``Default Web Site`` (id 1, ``*:80:``, ``%SystemDrive%\\inetpub\\wwwroot``), ``siteDefaults``
log directories, the ``system.webServer`` defaults, and ``<location path="" overrideMode="Allow">``
holding ``<modules>`` and ``<handlers>``. It is trimmed: long lists (MIME map, request
filtering extensions, trace areas) keep a representative subset.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

from .appconfig import AppHostConfig, real_children
from .roles import CATALOG, ORDER

# Section registrations of the core IIS schema (IIS_schema.xml), as a fresh file has them.
_CONFIG_SECTIONS = """
  <configSections>
    <sectionGroup name="system.applicationHost">
      <section name="applicationPools" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="configHistory" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="customMetadata" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="listenerAdapters" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="log" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="serviceAutoStartProviders" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="sites" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="webLimits" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
    </sectionGroup>
    <sectionGroup name="system.webServer">
      <section name="asp" overrideModeDefault="Deny" />
      <section name="caching" overrideModeDefault="Allow" />
      <section name="cgi" overrideModeDefault="Deny" />
      <section name="defaultDocument" overrideModeDefault="Allow" />
      <section name="directoryBrowse" overrideModeDefault="Allow" />
      <section name="fastCgi" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="globalModules" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="handlers" overrideModeDefault="Deny" />
      <section name="httpCompression" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
      <section name="httpErrors" overrideModeDefault="Allow" />
      <section name="httpLogging" overrideModeDefault="Deny" />
      <section name="httpProtocol" overrideModeDefault="Allow" />
      <section name="httpRedirect" overrideModeDefault="Allow" />
      <section name="httpTracing" overrideModeDefault="Deny" />
      <section name="isapiFilters" allowDefinition="MachineToApplication" overrideModeDefault="Deny" />
      <section name="modules" allowDefinition="MachineToApplication" overrideModeDefault="Deny" />
      <section name="applicationInitialization" allowDefinition="MachineToApplication" overrideModeDefault="Allow" />
      <section name="odbcLogging" overrideModeDefault="Deny" />
      <sectionGroup name="security">
        <section name="access" overrideModeDefault="Deny" />
        <section name="applicationDependencies" overrideModeDefault="Deny" />
        <sectionGroup name="authentication">
          <section name="anonymousAuthentication" overrideModeDefault="Deny" />
          <section name="basicAuthentication" overrideModeDefault="Deny" />
          <section name="clientCertificateMappingAuthentication" overrideModeDefault="Deny" />
          <section name="digestAuthentication" overrideModeDefault="Deny" />
          <section name="iisClientCertificateMappingAuthentication" overrideModeDefault="Deny" />
          <section name="windowsAuthentication" overrideModeDefault="Deny" />
        </sectionGroup>
        <section name="authorization" overrideModeDefault="Allow" />
        <section name="ipSecurity" overrideModeDefault="Deny" />
        <section name="dynamicIpSecurity" overrideModeDefault="Deny" />
        <section name="isapiCgiRestriction" allowDefinition="AppHostOnly" overrideModeDefault="Deny" />
        <section name="requestFiltering" overrideModeDefault="Allow" />
      </sectionGroup>
      <section name="serverRuntime" overrideModeDefault="Deny" />
      <section name="serverSideInclude" overrideModeDefault="Deny" />
      <section name="staticContent" overrideModeDefault="Allow" />
      <sectionGroup name="tracing">
        <section name="traceFailedRequests" overrideModeDefault="Allow" />
        <section name="traceProviderDefinitions" overrideModeDefault="Deny" />
      </sectionGroup>
      <section name="urlCompression" overrideModeDefault="Allow" />
      <section name="validation" overrideModeDefault="Allow" />
      <sectionGroup name="webdav">
        <section name="globalSettings" overrideModeDefault="Deny" />
        <section name="authoring" overrideModeDefault="Deny" />
        <section name="authoringRules" overrideModeDefault="Deny" />
      </sectionGroup>
      <section name="webSocket" overrideModeDefault="Deny" />
    </sectionGroup>
  </configSections>
"""

_APPLICATION_HOST = r"""
  <system.applicationHost>
    <applicationPools>
      <add name="DefaultAppPool" />
      <applicationPoolDefaults managedRuntimeVersion="v4.0">
        <processModel identityType="ApplicationPoolIdentity" />
      </applicationPoolDefaults>
    </applicationPools>
    <configHistory />
    <listenerAdapters>
      <add name="http" />
    </listenerAdapters>
    <log>
      <centralBinaryLogFile enabled="true" directory="%SystemDrive%\inetpub\logs\LogFiles" />
      <centralW3CLogFile enabled="true" directory="%SystemDrive%\inetpub\logs\LogFiles" />
    </log>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/">
          <virtualDirectory path="/" physicalPath="%SystemDrive%\inetpub\wwwroot" />
        </application>
        <bindings>
          <binding protocol="http" bindingInformation="*:80:" />
        </bindings>
      </site>
      <siteDefaults>
        <logFile logFormat="W3C" directory="%SystemDrive%\inetpub\logs\LogFiles" />
        <traceFailedRequestsLogging directory="%SystemDrive%\inetpub\logs\FailedReqLogFiles" />
      </siteDefaults>
      <applicationDefaults applicationPool="DefaultAppPool" />
      <virtualDirectoryDefaults allowSubDirConfig="true" />
    </sites>
    <webLimits />
  </system.applicationHost>
"""

_WEB_SERVER = r"""
  <system.webServer>
    <asp>
      <cache diskTemplateCacheDirectory="%SystemDrive%\inetpub\temp\ASP Compiled Templates" />
    </asp>
    <caching enabled="true" enableKernelCache="true" />
    <cgi />
    <defaultDocument enabled="true">
      <files>
        <add value="Default.htm" />
        <add value="Default.asp" />
        <add value="index.htm" />
        <add value="index.html" />
        <add value="iisstart.htm" />
      </files>
    </defaultDocument>
    <directoryBrowse enabled="false" />
    <fastCgi />
    <globalModules />
    <httpCompression directory="%SystemDrive%\inetpub\temp\IIS Temporary Compressed Files">
      <scheme name="gzip" dll="%Windir%\system32\inetsrv\gzip.dll" />
      <staticTypes>
        <add mimeType="text/*" enabled="true" />
        <add mimeType="message/*" enabled="true" />
        <add mimeType="application/javascript" enabled="true" />
        <add mimeType="application/atom+xml" enabled="true" />
        <add mimeType="application/xaml+xml" enabled="true" />
        <add mimeType="image/svg+xml" enabled="true" />
        <add mimeType="*/*" enabled="false" />
      </staticTypes>
    </httpCompression>
    <httpErrors lockAttributes="allowAbsolutePathsWhenDelegated,defaultPath">
      <error statusCode="401" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="401.htm" />
      <error statusCode="403" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="403.htm" />
      <error statusCode="404" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="404.htm" />
      <error statusCode="405" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="405.htm" />
      <error statusCode="406" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="406.htm" />
      <error statusCode="412" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="412.htm" />
      <error statusCode="500" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="500.htm" />
      <error statusCode="501" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="501.htm" />
      <error statusCode="502" prefixLanguageFilePath="%SystemDrive%\inetpub\custerr" path="502.htm" />
    </httpErrors>
    <httpLogging dontLog="false" />
    <httpProtocol>
      <customHeaders>
        <clear />
        <add name="X-Powered-By" value="ASP.NET" />
      </customHeaders>
      <redirectHeaders>
        <clear />
      </redirectHeaders>
    </httpProtocol>
    <httpRedirect />
    <httpTracing />
    <isapiFilters />
    <odbcLogging />
    <security>
      <access sslFlags="None" />
      <applicationDependencies />
      <authentication>
        <anonymousAuthentication enabled="true" userName="IUSR" />
        <basicAuthentication />
        <clientCertificateMappingAuthentication />
        <digestAuthentication />
        <iisClientCertificateMappingAuthentication />
        <windowsAuthentication>
          <providers>
            <add value="Negotiate" />
            <add value="NTLM" />
          </providers>
        </windowsAuthentication>
      </authentication>
      <authorization />
      <ipSecurity />
      <isapiCgiRestriction />
      <requestFiltering>
        <fileExtensions allowUnlisted="true" applyToWebDAV="true">
          <add fileExtension=".asa" allowed="false" />
          <add fileExtension=".asax" allowed="false" />
          <add fileExtension=".ascx" allowed="false" />
          <add fileExtension=".config" allowed="false" />
          <add fileExtension=".cs" allowed="false" />
          <add fileExtension=".mdb" allowed="false" />
        </fileExtensions>
        <verbs allowUnlisted="true" applyToWebDAV="true" />
        <hiddenSegments applyToWebDAV="true">
          <add segment="web.config" />
          <add segment="bin" />
          <add segment="App_code" />
          <add segment="App_Data" />
        </hiddenSegments>
      </requestFiltering>
    </security>
    <serverRuntime />
    <serverSideInclude ssiExecDisable="false" />
    <staticContent lockAttributes="isDocFooterFileName">
      <mimeMap fileExtension=".css" mimeType="text/css" />
      <mimeMap fileExtension=".htm" mimeType="text/html" />
      <mimeMap fileExtension=".html" mimeType="text/html" />
      <mimeMap fileExtension=".ico" mimeType="image/x-icon" />
      <mimeMap fileExtension=".js" mimeType="application/javascript" />
      <mimeMap fileExtension=".json" mimeType="application/json" />
      <mimeMap fileExtension=".png" mimeType="image/png" />
      <mimeMap fileExtension=".svg" mimeType="image/svg+xml" />
      <mimeMap fileExtension=".txt" mimeType="text/plain" />
      <mimeMap fileExtension=".xml" mimeType="text/xml" />
    </staticContent>
    <tracing>
      <traceFailedRequests />
      <traceProviderDefinitions>
        <add name="WWW Server" guid="{3a2a4e84-4c21-4981-ae10-3fda0d9b0f83}">
          <areas>
            <clear />
            <add name="Authentication" value="2" />
            <add name="Security" value="4" />
            <add name="Filter" value="8" />
            <add name="StaticFile" value="16" />
          </areas>
        </add>
      </traceProviderDefinitions>
    </tracing>
    <urlCompression />
    <validation />
    <webdav />
    <webSocket />
  </system.webServer>
"""

_SERVER_LEVEL_LOCATION = """
  <location path="" overrideMode="Allow">
    <system.webServer>
      <modules />
      <handlers accessPolicy="Read, Script">
        <add name="TRACEVerbHandler" path="*" verb="TRACE" modules="ProtocolSupportModule" requireAccess="None" />
        <add name="OPTIONSVerbHandler" path="*" verb="OPTIONS" modules="ProtocolSupportModule" requireAccess="None" />
        <add name="StaticFile" path="*" verb="*" modules="" resourceType="Either" requireAccess="Read" />
      </handlers>
    </system.webServer>
  </location>
"""

_HEADER_COMMENT = """

    IIS configuration sections.

    For schema documentation, see
    %windir%\\system32\\inetsrv\\config\\schema\\IIS_schema.xml.

    Please make a backup of this file before making any changes to it.

    (Written by the pyinfra-iis simulator: a fresh Windows Server 2022 IIS 10 file, trimmed.)

"""

#: Default order of the StaticFile handler's modules (as in a fresh file).
_STATIC_HANDLER_ORDER = ("StaticFileModule", "DefaultDocumentModule", "DirectoryListingModule")


def _skeleton() -> AppHostConfig:
    text = "<configuration>" + _CONFIG_SECTIONS + _APPLICATION_HOST + _WEB_SERVER + _SERVER_LEVEL_LOCATION + "</configuration>"
    config = AppHostConfig.from_text(text)
    config.root.insert(0, ET.Comment(_HEADER_COMMENT))
    return config


def _server_modules(config: AppHostConfig) -> ET.Element:
    return config.section_element("system.webServer/modules", location="", create=True)


def _static_handler(config: AppHostConfig) -> ET.Element | None:
    handlers = config.section_element("system.webServer/handlers", location="", create=True)
    return next((h for h in real_children(handlers) if h.tag == "add" and h.get("name") == "StaticFile"), None)


def add_global_module(config: AppHostConfig, name: str, image: str, in_modules: bool = True, lock_item: bool = True) -> bool:
    """Add a native module: ``<globalModules><add name image>`` and, when ``in_modules``,
    ``<modules><add name [lockItem="true"]>`` in the server-level location.

    Returns:
        ``True`` when anything was added (existing entries are left alone, by name,
        case-insensitive).
    """

    added = False
    global_modules = config.section_element("system.webServer/globalModules", create=True)
    if not any(m.get("name", "").casefold() == name.casefold() for m in real_children(global_modules)):
        ET.SubElement(global_modules, "add", {"name": name, "image": image})
        added = True
    if in_modules:
        modules = _server_modules(config)
        if not any(m.get("name", "").casefold() == name.casefold() for m in real_children(modules)):
            ET.SubElement(modules, "add", {"name": name, **({"lockItem": "true"} if lock_item else {})})
            added = True
    return added


def add_feature(config: AppHostConfig, feature_name: str) -> bool:
    """Add the configuration a role service's installation adds (see ``roles.py``).

    Returns:
        whether the document changed.
    """

    feature = CATALOG[feature_name]
    changed = False
    for module, dll in feature.global_modules:
        image = f"%windir%\\System32\\inetsrv\\{dll}"
        changed |= add_global_module(config, module, image, in_modules=module in feature.modules)
    if feature.static_handler_module:
        handler = _static_handler(config)
        if handler is not None:
            current = [m for m in handler.get("modules", "").split(",") if m]
            if feature.static_handler_module not in current:
                current.append(feature.static_handler_module)
                current.sort(key=lambda m: _STATIC_HANDLER_ORDER.index(m) if m in _STATIC_HANDLER_ORDER else 99)
                handler.set("modules", ",".join(current))
                changed = True
    return changed


def fresh_config(features: Iterable[str]) -> AppHostConfig:
    """Return the applicationHost.config of a fresh IIS with the given role services installed
    (feature names from ``roles.CATALOG``; unknown or non-IIS names are ignored)."""

    config = _skeleton()
    for name in sorted((f for f in set(features) if f in CATALOG), key=ORDER.__getitem__):
        add_feature(config, name)
    return config


def iisstart_html() -> str:
    """Return a stand-in for ``C:\\inetpub\\wwwroot\\iisstart.htm`` (the IIS welcome page)."""

    return (
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" "
        "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n"
        "<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n"
        "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\" />\r\n"
        "<title>IIS Windows Server</title>\r\n</head>\r\n<body>\r\n"
        "<div id=\"container\"><a href=\"http://go.microsoft.com/fwlink/?linkid=66138&amp;clcid=0x409\">"
        "<img src=\"iisstart.png\" alt=\"IIS\" width=\"960\" height=\"600\" /></a></div>\r\n"
        "</body>\r\n</html>"
    )
