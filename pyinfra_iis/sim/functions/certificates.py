"""Certificates of the simulated host: ``Import-IisCertificate`` and
``Grant-CertificateKeyAccess`` over ``Cert:\\LocalMachine\\My`` and ``...\\WebHosting``.

Store model (``host.state["certificates"]``, keyed ``"<store>/<THUMBPRINT>"``): thumbprint
(SHA-1 of the DER certificate, upper-case hex, as Windows shows it), subject (RDNs most
specific first, ``", "``-separated, like ``X509Certificate2.Subject``), SAN DNS names, validity
(UTC, ISO 8601 with ``Z``), whether a private key came with it, the exportable flag, the key
file and the principals with read on it (``key_readers``: SYSTEM and Administrators, as for
every machine key, plus those granted with ``Grant-CertificateKeyAccess``; sorted ordinally,
spelled as Windows prints them, like the PowerShell module).

The private key is kept (PEM, unencrypted: a test double) at
``C:\\ProgramData\\Microsoft\\Crypto\\Keys\\<container>``, where CNG keeps machine keys, so
that other parts of the simulator can terminate TLS with it. The PFX password is used only
to open the PFX: it is never stored, logged or put into an error message.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ..host import SimPathError
from . import SimFunctionError, sim_function
from .acl import canonical_principal

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: Stores the functions accept (LocalMachine), in reporting order.
STORES = ("My", "WebHosting")
KEY_FOLDER = "C:\\ProgramData\\Microsoft\\Crypto\\Keys"
DEFAULT_KEY_READERS = ("BUILTIN\\Administrators", "NT AUTHORITY\\SYSTEM")
_WRONG_PASSWORD = "The specified network password is not correct. (Exception from HRESULT: 0x80070056)"


def _store(payload: dict[str, Any]) -> str:
    store = payload.get("store", "My")
    match = next((s for s in STORES if isinstance(store, str) and s.casefold() == store.casefold()), None)
    if match is None:
        raise SimFunctionError(f"certificate store must be one of {', '.join(STORES)}, not {store!r}")
    return match


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(cert: x509.Certificate) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(cert.subject.rdns))


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def certificate_store(host: "SimHost") -> dict[str, Any]:
    """Return ``host.state["certificates"]`` (created empty). Call under ``host.lock``."""

    return host.state.setdefault("certificates", {})


def find_certificate(host: "SimHost", store: str, thumbprint: str) -> dict[str, Any] | None:
    """Return the stored record of ``thumbprint`` (any case) in ``store``, or ``None``."""

    return certificate_store(host).get(f"{store}/{thumbprint.upper()}")


def describe_certificates(host: "SimHost", stores: Iterable[str]) -> list[dict[str, Any]]:
    """Return the contract's certificate objects for the given stores (unknown stores: none)."""

    wanted = [s.casefold() for s in stores]
    result = []
    for record in certificate_store(host).values():
        if record["store"].casefold() in wanted:
            result.append({key: record[key] for key in (
                "store", "thumbprint", "subject", "dns_names", "not_before", "not_after", "has_private_key", "key_readers")})
    return sorted(result, key=lambda r: (STORES.index(r["store"]), r["thumbprint"]))


def _load_pfx(data: bytes, password: str):
    try:
        return pkcs12.load_key_and_certificates(data, password.encode("utf-8") if password else None)
    except (ValueError, TypeError):
        # cryptography says "Invalid password or PKCS12 data"; Windows says this. Neither
        # message contains the password.
        raise SimFunctionError(f"Cannot import the PFX: {_WRONG_PASSWORD}") from None


@sim_function("Import-IisCertificate")
def import_iis_certificate(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"path","password","store","exportable","thumbprint"?}`` → ``{"thumbprint","subject","store","imported"}``.

    The PFX file is deleted after the call, success or not. ``imported`` is false when the
    store already holds that thumbprint; with the optional ``thumbprint`` (the PFX's, computed
    by the controller) already in the store the file is not needed, so a call re-sent after a
    lost reply (the file is gone by then) answers ``imported: false`` (steps are idempotent;
    found by tests/test_fault_matrix.py). Errors: missing file, wrong password or not a PFX,
    no certificate in the PFX, unknown store, a thumbprint that is not 40 hex digits.
    """

    path = payload.get("path")
    if not isinstance(path, str):
        raise SimFunctionError("'path' must be a Windows path string")
    try:
        local = host.path(path)
    except SimPathError as exc:
        raise SimFunctionError(str(exc)) from None
    try:
        store = _store(payload)
        known = _already_imported(host, store, payload.get("thumbprint"))
        if known is not None:
            return known
        if not local.is_file():
            raise SimFunctionError(f"Cannot find path '{path}' because it does not exist.")
        password = payload.get("password") or ""
        if not isinstance(password, str):
            raise SimFunctionError("'password' must be a string")
        key, cert, others = _load_pfx(local.read_bytes(), password)
        if cert is None and others:
            cert = others[0]  # a PFX without a key: its certificate comes back as an "additional" one
        if cert is None:
            raise SimFunctionError(f"Cannot import '{path}': the PFX holds no certificate")
        return _import(host, store, key, cert, bool(payload.get("exportable", False)))
    finally:
        try:
            local.unlink(missing_ok=True)
        except OSError:
            pass


def _already_imported(host: "SimHost", store: str, thumbprint: Any) -> str | None:
    """The call's answer when ``thumbprint`` (optional, from the payload) is already in
    ``store``: ``imported: false`` without reading the PFX; None otherwise.

    Raises:
        SimFunctionError: ``thumbprint`` is given but not 40 hex digits.
    """

    if thumbprint is None:
        return None
    if not isinstance(thumbprint, str) or not re.fullmatch(r"[0-9A-Fa-f]{40}", thumbprint):
        raise SimFunctionError("Import-IisCertificate: thumbprint must be 40 hex digits")
    with host.lock:
        record = find_certificate(host, store, thumbprint)
        if record is None:
            return None
        return json.dumps({"thumbprint": record["thumbprint"], "subject": record["subject"], "store": store,
                           "imported": False})


def _import(host: "SimHost", store: str, key, cert: x509.Certificate, exportable: bool) -> str:
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    subject = _subject(cert)
    with host.lock:
        if find_certificate(host, store, thumbprint) is not None:
            return json.dumps({"thumbprint": thumbprint, "subject": subject, "store": store, "imported": False})
        key_file = None
        if key is not None:
            key_file = f"{KEY_FOLDER}\\{uuid.uuid4().hex}"
            local_key = host.path(key_file)
            local_key.parent.mkdir(parents=True, exist_ok=True)
            local_key.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        certificate_store(host)[f"{store}/{thumbprint}"] = {
            "store": store,
            "thumbprint": thumbprint,
            "subject": subject,
            "dns_names": _dns_names(cert),
            "not_before": _iso(cert.not_valid_before_utc),
            "not_after": _iso(cert.not_valid_after_utc),
            "has_private_key": key is not None,
            "exportable": exportable,
            "key_file": key_file,
            "key_readers": sorted(DEFAULT_KEY_READERS) if key is not None else [],
            "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        }
        host.save()
    return json.dumps({"thumbprint": thumbprint, "subject": subject, "store": store, "imported": True})


@sim_function("Grant-CertificateKeyAccess")
def grant_certificate_key_access(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"thumbprint","store","principal"}`` → ``{"changed": bool}``: Read on the private key.

    Errors: certificate absent, certificate without private key, unknown principal.
    """

    thumbprint = payload.get("thumbprint")
    if not isinstance(thumbprint, str) or not thumbprint:
        raise SimFunctionError("'thumbprint' must be the certificate's SHA-1 thumbprint")
    store = _store(payload)
    principal = canonical_principal(host, payload.get("principal", ""))
    with host.lock:
        record = find_certificate(host, store, thumbprint)
        if record is None:
            raise SimFunctionError(f"Certificate {thumbprint.upper()} was not found in Cert:\\LocalMachine\\{store}")
        if not record["has_private_key"]:
            raise SimFunctionError(f"Certificate {record['thumbprint']} in {store} has no private key")
        if any(p.casefold() == principal.casefold() for p in record["key_readers"]):
            return json.dumps({"changed": False})
        record["key_readers"] = sorted([*record["key_readers"], principal])
        host.save()
    return json.dumps({"changed": True})
