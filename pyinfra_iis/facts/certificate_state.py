"""The ``certificates`` part of ``Get-HostState``: raw certificates in, what the operations read out.

The host reports each certificate of the asked ``Cert:\\LocalMachine`` stores raw
(``Get-CertificateState``, ``docs/remote-functions.md``)::

    {"store": "My", "der": "<base64 of RawData>", "has_private_key": true,
     "key_path": "C:\\ProgramData\\Microsoft\\Crypto\\Keys\\<unique name>" | null,
     "key_sddl": "D:PAI(A;;FA;;;SY)..." | null, "key_sids": {"S-1-5-18": "NT AUTHORITY\\SYSTEM"}}

:func:`convert` parses the DER here with ``cryptography`` (the host parses nothing) into::

    {"store", "thumbprint" (SHA-1 of the DER, upper hex), "subject" (RDNs most specific first,
     ", "-separated, like X509Certificate2.Subject), "dns_names" (SAN dNSName entries),
     "not_before", "not_after" ("2026-01-01T00:00:00Z"), "has_private_key", "key_path",
     "key_readers" (account names with an Allow entry including ReadData on the key file),
     "key_reader_sids" (their SIDs), "key_entries" (the key file's ACL entries, as the "acls"
     part reports a path's: principal, sid, type, rights, inherited, inheritance, propagation)}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography import x509

from .. import sddl

READ_DATA = 0x1


def _subject(cert: x509.Certificate) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(cert.subject.rdns))


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:  # a malformed extension: the certificate is still listed, without names
        return []
    return list(san.get_values_for_type(x509.DNSName))


def key_readers(key_sddl: str | None, names: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """Return ``(names, sids)`` of the principals with an Allow entry including ReadData in a
    key file's SDDL (sorted ordinally by name)."""

    if not key_sddl:
        return [], []
    descriptor = sddl.parse_sddl(key_sddl)
    sids: list[str] = []
    for ace in descriptor.dacl:
        if ace.type == "Allow" and "IO" not in ace.flags and ace.mask & READ_DATA and ace.sid not in sids:
            sids.append(ace.sid)
    pairs = sorted((sddl.account_name(sid, names), sid) for sid in sids)
    return [name for name, _ in pairs], [sid for _, sid in pairs]


def convert_certificate(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the processed form of one raw certificate entry.

    Raises:
        ValueError: the DER is not base64 or not a certificate.
    """

    try:
        der = base64.b64decode(entry["der"], validate=True)
        cert = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"certificate in store {entry.get('store')!r}: cannot read its DER ({exc})") from None
    readers, reader_sids = key_readers(entry.get("key_sddl"), entry.get("key_sids") or {})
    return {
        "store": entry.get("store"),
        "thumbprint": hashlib.sha1(der).hexdigest().upper(),
        "subject": _subject(cert),
        "dns_names": _dns_names(cert),
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "has_private_key": bool(entry.get("has_private_key")),
        "key_path": entry.get("key_path"),
        "key_readers": readers,
        "key_reader_sids": reader_sids,
        "key_entries": sddl.acl_entries(sddl.parse_sddl(entry["key_sddl"]), entry.get("key_sids") or {}) if entry.get("key_sddl") else [],
    }


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with its ``certificates`` converted (in place; returned for
    chaining). Entries without ``der`` are taken as already converted."""

    certificates = raw.get("certificates")
    if isinstance(certificates, list):
        raw["certificates"] = [convert_certificate(e) if isinstance(e, dict) and "der" in e else e for e in certificates]
    return raw
