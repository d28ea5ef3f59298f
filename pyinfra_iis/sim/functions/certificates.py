"""Certificates of the simulated host: ``Import-IisCertificate`` over ``Cert:\\LocalMachine``.

Store model (``host.state["certificates"]``, keyed ``"<store>/<THUMBPRINT>"``): the DER
(``der``, base64, what ``Get-HostState`` reports, as the PowerShell module reports
``X509Certificate2.RawData``), thumbprint (SHA-1 of the DER, upper hex), subject, whether a
private key came with it, the exportable flag and the key file. The host parses nothing for the
fact: ``facts/certificate_state.py`` does (thumbprint, subject, SAN, validity, key readers).

A PFX arrives as bytes inside the call (``"pfx"``, base64, a ``protocol.Secret``), never as a
file; leftovers of the old upload folder are swept on every import. The
leaf (the certificate with the private key) goes into the asked store, every other certificate of
the PFX into ``CA`` (intermediates, so HTTP.sys serves the whole chain), never into ``Root``.

The private key is kept (PEM, unencrypted: a test double) at
``C:\\ProgramData\\Microsoft\\Crypto\\Keys\\<container>``, where CNG keeps machine keys, with the
ACL Windows gives an imported machine key (SYSTEM and Administrators, protected), held in the
simulated ACL store like any file's, so access is granted with ``Grant-PathAccess`` on that path.
The PFX password is used only to open the PFX: never stored, logged or put into an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ... import sddl
from . import SimFunctionError, sim_function
from .acl import _entry, _key, acl_store, add_explicit_acls, render_acl

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: Stores the import accepts (LocalMachine), in reporting order; ``CA`` receives chains.
STORES = ("My", "WebHosting")
CHAIN_STORE = "CA"
KEY_FOLDER = "C:\\ProgramData\\Microsoft\\Crypto\\Keys"
#: Where the old module uploaded PFX files; swept on every import.
LEGACY_UPLOAD_DIR = "C:\\ProgramData\\pyinfra-iis\\certs"
#: Largest PFX accepted (bytes): its base64 must fit the WinRM envelope (500 KB by default).
MAX_PFX_BYTES = 300 * 1024
_WRONG_PASSWORD = "The specified network password is not correct. (Exception from HRESULT: 0x80070056)"


def _store(payload: dict[str, Any]) -> str:
    store = payload.get("store", "My")
    match = next((s for s in STORES if isinstance(store, str) and s.casefold() == store.casefold()), None)
    if match is None:
        raise SimFunctionError(f"certificate store must be one of {', '.join(STORES)}, not {store!r}")
    return match


def _subject(cert: x509.Certificate) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(cert.subject.rdns))


def certificate_store(host: "SimHost") -> dict[str, Any]:
    """Return ``host.state["certificates"]`` (created empty). Call under ``host.lock``."""

    return host.state.setdefault("certificates", {})


def find_certificate(host: "SimHost", store: str, thumbprint: str) -> dict[str, Any] | None:
    """Return the stored record of ``thumbprint`` (any case) in ``store``, or ``None``."""

    return certificate_store(host).get(f"{store}/{thumbprint.upper()}")


def describe_certificates(host: "SimHost", stores: Iterable[str]) -> list[dict[str, Any]]:
    """Return the contract's raw certificate objects for the given stores (unknown stores: none):
    ``{"store", "der", "has_private_key", "key_path", "key_sddl", "key_sids"}``."""

    order = [s.casefold() for s in stores]
    result = []
    with host.lock:
        for record in certificate_store(host).values():
            if record["store"].casefold() not in order:
                continue
            der = record.get("der") or base64.b64encode(
                x509.load_pem_x509_certificate(record["certificate_pem"].encode("ascii")).public_bytes(serialization.Encoding.DER)).decode("ascii")
            key = record.get("key_file") if record.get("has_private_key") else None
            key_sddl, key_sids = render_acl(host, key, False) if key else (None, {})
            result.append({"store": record["store"], "der": der, "has_private_key": bool(record.get("has_private_key")),
                           "key_path": key, "key_sddl": key_sddl, "key_sids": key_sids})
    return sorted(result, key=lambda r: (order.index(r["store"].casefold()), hashlib.sha1(base64.b64decode(r["der"])).hexdigest()))


def _load_pfx(data: bytes, password: str):
    try:
        return pkcs12.load_key_and_certificates(data, password.encode("utf-8") if password else None)
    except (ValueError, TypeError):
        # cryptography says "Invalid password or PKCS12 data"; Windows says this. Neither
        # message contains the password.
        raise SimFunctionError(f"Import-IisCertificate: cannot import the PFX: {_WRONG_PASSWORD}") from None


def _sweep_uploads(host: "SimHost") -> None:
    """Delete PFX files the old module may have left in its upload folder."""

    folder = host.path(LEGACY_UPLOAD_DIR)
    if folder.is_dir():
        for leftover in folder.glob("*.pfx"):
            leftover.unlink(missing_ok=True)


def _pfx_bytes(payload: dict[str, Any]) -> bytes:
    text = payload.get("pfx")
    if not isinstance(text, str) or not text:
        raise SimFunctionError("Import-IisCertificate: 'pfx' must be the PFX as base64")
    if len(text) > (MAX_PFX_BYTES * 4) // 3 + 4:
        raise SimFunctionError(f"Import-IisCertificate: the PFX is larger than {MAX_PFX_BYTES // 1024} KB")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SimFunctionError("Import-IisCertificate: 'pfx' is not valid base64") from None


@sim_function("Import-IisCertificate")
def import_iis_certificate(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"pfx","password","store","exportable"?,"thumbprint"}`` → ``{"thumbprint","subject","store","imported","chain"}``.

    ``thumbprint`` (the leaf's, computed by the controller) is required: it says whether the
    leaf is already there before the PFX is opened, so a re-sent call persists no second key.
    The leaf goes into ``store`` when missing (``imported``), every other certificate into ``CA``
    when missing (``chain``: the thumbprints added). Errors: not base64, too large, wrong password
    or not a PFX, no certificate with a private key, a leaf other than ``thumbprint``, unknown
    store; none contains the password or the bytes. Leftover PFX files of the old upload folder
    are deleted, success or not.
    """

    try:
        store = _store(payload)
        expected = payload.get("thumbprint")
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9A-Fa-f]{40}", expected):
            raise SimFunctionError('Import-IisCertificate: "thumbprint" must be 40 hex digits')
        data = _pfx_bytes(payload)
        password = payload.get("password") or ""
        if not isinstance(password, str):
            raise SimFunctionError("Import-IisCertificate: 'password' must be a string")
        key, cert, others = _load_pfx(data, password)
        if cert is None or key is None:
            raise SimFunctionError("Import-IisCertificate: the PFX holds no certificate with a private key")
        leaf = _record(store, cert, None, False)["thumbprint"]
        if leaf != expected.upper():
            raise SimFunctionError(f"Import-IisCertificate: the PFX holds {leaf}, not {expected.upper()}")
        return _import(host, store, key, cert, list(others or []), bool(payload.get("exportable", False)))
    finally:
        _sweep_uploads(host)


def _record(store: str, cert: x509.Certificate, key_file: str | None, exportable: bool) -> dict[str, Any]:
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"store": store, "thumbprint": hashlib.sha1(der).hexdigest().upper(), "subject": _subject(cert),
            "der": base64.b64encode(der).decode("ascii"), "has_private_key": key_file is not None,
            "exportable": exportable, "key_file": key_file,
            "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii")}


def _import(host: "SimHost", store: str, key, cert: x509.Certificate, chain: list[x509.Certificate], exportable: bool) -> str:
    leaf = _record(store, cert, None, exportable)
    thumbprint = leaf["thumbprint"]
    with host.lock:
        added = []
        for other in chain:
            record = _record(CHAIN_STORE, other, None, False)
            if find_certificate(host, CHAIN_STORE, record["thumbprint"]) is None:
                certificate_store(host)[f"{CHAIN_STORE}/{record['thumbprint']}"] = record
                added.append(record["thumbprint"])
        if find_certificate(host, store, thumbprint) is not None:
            host.save()
            return json.dumps({"thumbprint": thumbprint, "subject": leaf["subject"], "store": store, "imported": False, "chain": added})
        key_file = f"{KEY_FOLDER}\\{uuid.uuid4().hex}"
        local_key = host.path(key_file)
        local_key.parent.mkdir(parents=True, exist_ok=True)
        local_key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        # The ACL Windows gives a machine key it persists: SYSTEM and Administrators only.
        add_explicit_acls(host, {key_file: {"protected": True, "owner": sddl.ADMINISTRATORS, "entries": [
            _entry("NT AUTHORITY\\SYSTEM", "FullControl", "None"), _entry("BUILTIN\\Administrators", "FullControl", "None")]}})
        certificate_store(host)[f"{store}/{thumbprint}"] = {**leaf, "has_private_key": True, "key_file": key_file}
        host.save()
    return json.dumps({"thumbprint": thumbprint, "subject": leaf["subject"], "store": store, "imported": True, "chain": added})


def _public_key(record: dict[str, Any]) -> bytes:
    certificate = x509.load_der_x509_certificate(base64.b64decode(record["der"]))
    return certificate.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _shared_key(host: "SimHost", removed: dict[str, Any]) -> bool:
    """``Test-SharedCertificateKey``: a certificate left in My, WebHosting or the removed one's store
    with a private key and the same public key (a renewal that kept the key, a copy in another
    store) uses that key, which then stays."""

    stores = {"my", "webhosting", removed["store"].casefold()}
    return any(other.get("has_private_key") and str(other.get("store")).casefold() in stores and _public_key(other) == _public_key(removed)
               for other in certificate_store(host).values())


@sim_function("Remove-IisCertificate")
def remove_iis_certificate(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"thumbprint", "store"?}`` → ``{"removed": bool}``: the certificate leaves
    ``LocalMachine\\<store>`` and its private key file (with that file's ACL, key readers
    included) is deleted, as ``CngKey.Delete`` does, unless another certificate uses that key
    (:func:`_shared_key`); chain certificates in ``CA`` stay. A store
    that does not exist or a certificate that is not there: ``removed`` false. The controller
    refuses the call first while a binding uses the certificate."""

    store = _store(payload)
    thumbprint = payload.get("thumbprint")
    if not isinstance(thumbprint, str) or not re.fullmatch(r"[0-9A-Fa-f]{40}", thumbprint):
        raise SimFunctionError('Remove-IisCertificate: "thumbprint" must be 40 hex digits')
    with host.lock:
        record = certificate_store(host).pop(f"{store}/{thumbprint.upper()}", None)
        if record is None:
            return json.dumps({"removed": False})
        key_file = record.get("key_file")
        if key_file and _shared_key(host, record):
            key_file = None
        if key_file:
            host.path(key_file).unlink(missing_ok=True)
            acl_store(host).pop(_key(key_file), None)
        host.save()
    return json.dumps({"removed": True})
