"""Certificates: PFX import (``Import-IisCertificate``), private-key access for pools
(``Grant-CertificateKeyAccess``), and the checks made before a certificate is bound."""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from pyinfra import host
from pyinfra.api import FileUploadCommand, operation
from pyinfra.api.exceptions import OperationError, OperationValueError

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.certificates import Certificate
from ..protocol import Secret, remote_call
from ._common import controller_file, validated

#: Where a PFX is uploaded; ``Import-IisCertificate`` deletes it after the call.
UPLOAD_DIR = r"C:\ProgramData\pyinfra-iis\certs"

#: Warn when a bound certificate expires within this many days (issue 3).
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateInfo:
    """What the checks need to know of a certificate (from the fact or from a PFX).

    Attributes: thumbprint (40 upper hex), dns_names, not_before/not_after (aware UTC),
    has_private_key.
    """

    thumbprint: str
    dns_names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    has_private_key: bool



def pfx_info(model: Certificate) -> CertificateInfo:
    """Read the PFX of ``model`` on the controller (needs its password).

    Opening a PFX runs its key derivation (about 10 ms of CPU); every host of a fleet shares
    the same file, so results are cached per (file bytes, password) for the process.

    Raises:
        OperationValueError: missing file, wrong password or no certificate inside (the
            message never contains the password).
    """

    data = controller_file(model.pfx, "certificate", "pfx").read_bytes()
    try:
        info = _open_pfx(data, model.password.get_secret_value().encode("utf-8"))
    except ValueError:
        raise OperationValueError(f"certificate {model.name!r}: cannot open {model.pfx.name} (wrong password or not a PFX)") from None
    if info is None:
        raise OperationValueError(f"certificate {model.name!r}: {model.pfx.name} holds no certificate")
    return info


@functools.lru_cache(maxsize=32)
def _open_pfx(data: bytes, password: bytes) -> CertificateInfo | None:
    """The certificate of PFX ``data``, or None when it holds none; ValueError: cannot open."""

    key, cert, _ = pkcs12.load_key_and_certificates(data, password)
    if cert is None:
        return None
    try:
        names = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = tuple(a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME))
    return CertificateInfo(
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),
        dns_names=tuple(str(n).lower() for n in names),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        has_private_key=key is not None,
    )


def _parse_time(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def fact_certificate(fact: dict, thumbprint: str, store: str) -> dict | None:
    """Return the fact's entry of ``thumbprint`` in ``store`` (case-insensitive), or ``None``."""

    for entry in fact.get("certificates") or []:
        if str(entry.get("thumbprint", "")).upper() == thumbprint.upper() and str(entry.get("store", "")).lower() == store.lower():
            return entry
    return None


def info_of_fact_entry(entry: dict) -> CertificateInfo:
    """Convert a ``Get-HostState`` certificate entry into :class:`CertificateInfo`."""

    return CertificateInfo(
        thumbprint=str(entry["thumbprint"]).upper(),
        dns_names=tuple(str(n).lower() for n in entry.get("dns_names") or ()),
        not_before=_parse_time(entry["not_before"]),
        not_after=_parse_time(entry["not_after"]),
        has_private_key=bool(entry.get("has_private_key")),
    )


def covers(dns_names: Iterable[str], host_name: str) -> bool:
    """Whether a certificate for ``dns_names`` is valid for ``host_name`` (RFC 6125 6.4.3: a
    ``*`` wildcard stands for exactly one leftmost label; a wildcard host header needs the same
    wildcard name)."""

    wanted = host_name.lower().rstrip(".")
    for name in dns_names:
        name = name.lower().rstrip(".")
        if name == wanted:
            return True
        if name.startswith("*.") and not wanted.startswith("*."):
            label, _, rest = wanted.partition(".")
            if label and rest == name[2:]:
                return True
    return False


def check_for_binding(info: CertificateInfo, host_name: str, what: str, now: datetime.datetime | None = None) -> list[str]:
    """Check a certificate before it is bound; return warnings.

    Args:
        info: the certificate.
        host_name: the binding's host header (``""``: any name, not checked).
        what: how to name it in messages (``"certificate api for site api *:443:api.example.com"``).
        now: the current time (aware UTC; default now).

    Raises:
        OperationError: no private key, not yet valid, expired, or host name not covered.
    """

    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not info.has_private_key:
        raise OperationError(f"{what}: {info.thumbprint} has no private key; HTTP.sys cannot use it for TLS")
    if now < info.not_before:
        raise OperationError(f"{what}: {info.thumbprint} is not valid before {info.not_before.isoformat()}")
    if now >= info.not_after:
        raise OperationError(f"{what}: {info.thumbprint} expired on {info.not_after.isoformat()}")
    if host_name and not covers(info.dns_names, host_name):
        raise OperationError(f"{what}: {info.thumbprint} is for {', '.join(info.dns_names) or '(no DNS name)'}, not {host_name}")
    warnings = []
    left = info.not_after - now
    if left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        warnings.append(f"{what}: {info.thumbprint} expires in {left.days} days ({info.not_after.date().isoformat()})")
    return warnings


@operation()
def certificate(certificate: Any, key_readers: Iterable[str] = ()):
    """
    Import a PFX into ``Cert:\\LocalMachine\\<store>`` unless its certificate is there, and give
    principals read access to its private key.

    + certificate: a ``Certificate`` model or dict: ``name``, ``pfx`` (controller file),
      ``password`` (secret), ``store`` (default My), ``exportable`` (default false),
      ``thumbprint`` (optional: checked against the PFX).
    + key_readers: principals (``IIS AppPool\\api``) to grant Read on the private key; the
      ``Configure IIS`` deploy passes the pool identities when ``grant_private_key_to_pools``.

    The thumbprint is read from the PFX on the controller (so nothing is uploaded when the
    store already holds it). The PFX is uploaded to ``C:\\ProgramData\\pyinfra-iis\\certs``
    and the host deletes it after the import; the password travels as a ``Secret``.

    **Example:**

    .. code:: python

        certificate(name="TLS certificate", certificate={"name": "api", "pfx": "files/api.pfx",
                    "password": os.environ["API_PFX_PASSWORD"]})
    """

    model = validated(Certificate, certificate, "certificate")
    info = pfx_info(model)
    if model.thumbprint and model.thumbprint != info.thumbprint:
        raise OperationValueError(f"argument 'certificate': {model.pfx.name} holds {info.thumbprint}, not the expected {model.thumbprint}")
    fact = host_state(host)
    entry = fact_certificate(fact, info.thumbprint, model.store)
    readers = {r.lower() for r in (entry or {}).get("key_readers") or []}
    missing_readers = [p for p in dict.fromkeys(key_readers) if p.lower() not in readers]
    if entry is not None and not missing_readers:
        host.noop(f"certificate {model.name} ({info.thumbprint}) is in {model.store}")
        return
    diff = [Change(f"certificate {model.name}", None, f"{info.thumbprint} in {model.store}")] if entry is None else []
    diff += [Change(f"certificate {model.name}: key reader {p}", None, "Read") for p in missing_readers]
    log_changes(host, f"Will change certificate {model.name}", diff)
    if entry is None:
        remote = UPLOAD_DIR + "\\" + model.name + ".pfx"
        yield FileUploadCommand(str(controller_file(model.pfx, "certificate", "pfx")), remote)
        yield remote_call("Import-IisCertificate", {
            "path": remote, "password": Secret(model.password.get_secret_value()),
            "store": model.store, "exportable": model.exportable,
            # Lets a re-sent call answer "already imported" once the host has deleted the PFX.
            "thumbprint": info.thumbprint,
        })
    for principal in missing_readers:
        yield remote_call("Grant-CertificateKeyAccess", {"thumbprint": info.thumbprint, "store": model.store, "principal": principal})

