"""HTTP.sys SSL certificate bindings: where IIS keeps the certificate of an https binding.

The certificate of an https binding is not in applicationHost.config: IIS's RSCA extension
(``inetsrv\\config\\schema\\rscaext.xml``) keeps it in HTTP.sys, per endpoint: ``hostnameport``
(``api.example.com:443``) for a binding with the SNI bit of ``sslFlags``, ``ipport``
(``0.0.0.0:443``, ``10.0.0.5:443``, ``[::]:443``) otherwise, ``ccs`` (port) for the Central
Certificate Store.

The host reports the text of ``netsh http show sslcert``
(https://learn.microsoft.com/windows/win32/http/show-sslcert). It is parsed here BY FIELD ORDER,
not by label, because netsh translates its labels (a German Windows writes
"Zertifikathash"): every record starts with the endpoint, then the certificate hash, the
application ID and the certificate store name (the order of ``HTTP_SERVICE_CONFIG_SSL_PARAM``,
https://learn.microsoft.com/windows/win32/api/http/ns-http-http_service_config_ssl_param), each
on a line ``<label><spaces>: <value>``. The simulator renders its table in the same format
(:func:`render_sslcert`), so both sides go through this parser.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: IIS's application ID on the SSL bindings it creates (the RSCA methods use it).
IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"

_FIELD = re.compile(r"^\s*(\S.*?)\s+:\s?(.*?)\s*$")
_HASH = re.compile(r"^[0-9A-Fa-f]{40}$|^[0-9A-Fa-f]{64}$")
_IPPORT = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.%]*\]):\d+$")


def endpoint_kind(endpoint: str) -> str:
    """``"ipport"``, ``"hostnameport"`` or ``"ccs"`` (a bare port) for an endpoint of the table."""

    if endpoint.isdigit():
        return "ccs"
    return "ipport" if _IPPORT.match(endpoint) else "hostnameport"


def parse_sslcert(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``netsh http show sslcert`` output into ``{endpoint: {"kind", "hash", "store",
    "appid"}}`` (hostnames lower-cased, hashes upper-cased; a missing store is ``"MY"``, the
    HTTP.sys default)."""

    fields = [m.group(2) for m in (_FIELD.match(line) for line in text.splitlines()) if m]
    result: dict[str, dict[str, Any]] = {}
    index = 0
    while index + 1 < len(fields):
        endpoint, digest = fields[index], fields[index + 1]
        if not _HASH.match(digest):
            index += 1
            continue
        appid = fields[index + 2] if index + 2 < len(fields) else ""
        store = fields[index + 3] if index + 3 < len(fields) else ""
        if _HASH.match(store) or store.startswith("{"):
            store = ""
        kind = endpoint_kind(endpoint)
        key = endpoint.lower() if kind == "hostnameport" else endpoint
        result[key] = {"kind": kind, "hash": digest.upper(), "store": store or "MY", "appid": appid.lower()}
        index += 4
    return result


def render_sslcert(table: Mapping[str, Mapping[str, str]]) -> str:
    """Text of ``netsh http show sslcert`` (English) for the simulator's table
    ``{endpoint: {"certificateHash", "certificateStoreName", "appid"}}``."""

    lines = ["", "SSL Certificate bindings:", "-------------------------", ""]
    for endpoint, entry in table.items():
        label = {"ipport": "IP:port", "hostnameport": "Hostname:port", "ccs": "Central Certificate Store"}[endpoint_kind(endpoint)]
        lines += [
            f"    {label:<29}: {endpoint}",
            f"    {'Certificate Hash':<29}: {entry['certificateHash'].lower()}",
            f"    {'Application ID':<29}: {entry.get('appid') or IIS_APPID}",
            f"    {'Certificate Store Name':<29}: {entry.get('certificateStoreName') or 'MY'}",
            f"    {'Verify Client Certificate Revocation':<29}: Enabled",
            f"    {'Negotiate Client Certificate':<29}: Disabled",
            "",
        ]
    return "\r\n".join(lines) + "\r\n"


def binding_endpoint(protocol: str, binding_information: str, ssl_flags: str | int | None) -> str | None:
    """HTTP.sys endpoint of a binding: ``"host:port"`` with the SNI bit (sslFlags & 1),
    ``"<ip or 0.0.0.0>:port"`` otherwise; ``None`` unless the protocol is https."""

    if protocol.casefold() != "https":
        return None
    ip, _, rest = binding_information.partition(":")
    port, _, hostname = rest.partition(":")
    flags = str(ssl_flags or "0")
    if flags.isdigit() and int(flags) & 1:
        return f"{hostname.casefold()}:{port}"
    return f"{'0.0.0.0' if ip in ('', '*') else ip}:{port}"
