"""Server-level settings: ARR proxy, URL Rewrite allowed server variables, request limits."""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .types import show
from .base import IisModel, iis_bool
from .types import Duration, TimeSpanRange, _refuse_bool

#: ``system.webServer/proxy`` defaults in arr_schema.xml (ARR 3.0), as IIS writes them.
#: docs/field-facts.md say ARR times out after 30 s (ARR troubleshooting [V]); the schema file says
#: 00:02:00. We set the value explicitly either way.
ARR_DEFAULTS: dict[str, str] = {
    "enabled": "false",
    "timeout": "00:02:00",
    "preserveHostHeader": "false",
    "reverseRewriteHostInResponseHeaders": "true",
    "xForwardedForHeaderName": "X-Forwarded-For",
    "includePortInXForwardedFor": "true",
}
#: ``timeSpanRange`` of ``proxy/@timeout`` in arr_schema.xml (1 s to 1 day, whole seconds).
PROXY_TIMEOUT_RANGE = TimeSpanRange(1, 86400, 1)

#: ``requestFiltering/requestLimits/@maxAllowedContentLength`` default (IIS_schema.xml; field
#: notes: 30,000,000 bytes [V]).
IIS_MAX_ALLOWED_CONTENT_LENGTH = 30000000

#: Server variables our rewrite rules set when ARR fronts the app: uvicorn reads
#: X-Forwarded-Proto (docs/field-facts.md, Uvicorn [V]) and ARR does not set it (docs/field-facts.md, ARR [V]);
#: each variable a rule sets must be allow-listed at server level. X-Forwarded-Host is not in
#: the default: uvicorn ignores it and ``preserve_host_header`` keeps ``Host`` intact.
DEFAULT_ALLOWED_SERVER_VARIABLES = ("HTTP_X_FORWARDED_PROTO",)


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}", value):
        raise PydanticCustomError("header_name", "{name} is not an HTTP header name (RFC 9110 token)", {"name": show(value)})
    return value


def _server_variable(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,127}", value):
        raise PydanticCustomError("server_variable", "{name} is not a server variable name like HTTP_X_FORWARDED_PROTO", {"name": show(value)})
    return value.upper()


HeaderName = Annotated[str, AfterValidator(_header_name)]
ServerVariable = Annotated[str, AfterValidator(_server_variable)]


class ProxySettings(IisModel):
    """``system.webServer/proxy`` (ARR; applicationHost.config only).

    Attributes:
        enabled: turn the proxy on. Default true (why configure it otherwise).
        timeout: ``proxy/@timeout``. Default 00:02:00, aligned with HttpPlatformHandler's
            ``requestTimeout`` (2 min, docs/field-facts.md): misaligned timeouts give 502.3 (docs/design.md).
            ARR's effective default is 30 s per the docs/field-facts.md (00:02:00 in arr_schema.xml).
        preserve_host_header: keep the client's ``Host`` (uvicorn and the app see the real
            host; docs/field-facts.md, Uvicorn). Default true (ARR default false).
        reverse_rewrite_host_in_response_headers: rewrite backend host names in responses.
            Default false (ARR default true): with ``Host`` preserved there is nothing to rewrite,
            and rewriting breaks redirects the app builds itself.
        x_forwarded_for_header_name: default ``X-Forwarded-For``.
        include_port_in_xff: append the client port to X-Forwarded-For. Default false (ARR
            default true): uvicorn takes the X-Forwarded-For value as the client host, so a port
            would end up in ``request.client.host``.
    """

    enabled: bool = True
    timeout: Annotated[Duration, PROXY_TIMEOUT_RANGE] = Duration(120)
    preserve_host_header: bool = True
    reverse_rewrite_host_in_response_headers: bool = False
    x_forwarded_for_header_name: HeaderName = "X-Forwarded-For"
    include_port_in_xff: bool = False

    def config_attributes(self) -> dict[str, str]:
        """Return ``{attribute: value text}`` of ``system.webServer/proxy``."""

        return {
            "enabled": iis_bool(self.enabled),
            "timeout": self.timeout.to_timespan(),
            "preserveHostHeader": iis_bool(self.preserve_host_header),
            "reverseRewriteHostInResponseHeaders": iis_bool(self.reverse_rewrite_host_in_response_headers),
            "xForwardedForHeaderName": self.x_forwarded_for_header_name,
            "includePortInXForwardedFor": iis_bool(self.include_port_in_xff),
        }


class ServerConfig(IisModel):
    """Host data ``iis_server``: server-level settings.

    Attributes:
        proxy: ARR settings; ``None`` (default) leaves ``system.webServer/proxy`` alone (no ARR:
            HttpPlatformHandler forwards to uvicorn by itself). Needs the ARR extension.
        allowed_server_variables: names for ``system.webServer/rewrite/allowedServerVariables``.
            Default: ``["HTTP_X_FORWARDED_PROTO"]`` when ``proxy`` is set, else ``[]``. Needs URL
            Rewrite when not empty.
        max_allowed_content_length: request body limit in bytes (``requestLimits``), range
            0-4294967295 (uint). Default ``None``: the server's value is left as it is (a
            brownfield server may hold 50,000,000 for its other sites; issue 10). IIS's own
            default is :data:`IIS_MAX_ALLOWED_CONTENT_LENGTH` (30,000,000, docs/field-facts.md [V]).

    Server-level settings change only when declared: no ``iis_server`` key (or an empty one)
    changes nothing server-wide; ``proxy`` declared applies the project's proxy settings above.
    """

    proxy: Optional[ProxySettings] = None
    allowed_server_variables: Optional[tuple[ServerVariable, ...]] = None
    max_allowed_content_length: Optional[Annotated[int, BeforeValidator(_refuse_bool), Field(ge=0, le=4294967295)]] = None

    @model_validator(mode="after")
    def _default_variables(self) -> "ServerConfig":
        if self.allowed_server_variables is None:
            value = DEFAULT_ALLOWED_SERVER_VARIABLES if self.proxy is not None else ()
            object.__setattr__(self, "allowed_server_variables", value)
        names = list(self.allowed_server_variables or ())
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PydanticCustomError("allowed_server_variables", "server variable {names} is listed twice", {"names": ", ".join(duplicates)})
        return self

    def config_attributes(self) -> dict[str, dict[str, str]]:
        """Return ``{section path: {attribute path: value text}}`` for the server-level sections
        this model manages: only what is declared (``requestFiltering`` when
        ``max_allowed_content_length`` is set, ``system.webServer/proxy`` when ``proxy`` is)."""

        sections: dict[str, dict[str, str]] = {}
        if self.max_allowed_content_length is not None:
            sections["system.webServer/security/requestFiltering"] = {"requestLimits.maxAllowedContentLength": str(self.max_allowed_content_length)}
        if self.proxy is not None:
            sections["system.webServer/proxy"] = self.proxy.config_attributes()
        return sections
