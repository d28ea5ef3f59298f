"""Certificates: PFX import (``Import-IisCertificate``), private-key access for pools
(``Grant-PathAccess`` on the key file the fact reports), and the checks made before a
certificate is bound."""

from __future__ import annotations

import base64
import datetime
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from pydantic import SecretStr
from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError, OperationValueError

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.certificates import Certificate
from ..protocol import Secret, remote_call
from ..sddl import principal_sid
from ._common import controller_file, from_arguments, validated

#: Largest PFX sent (bytes): its base64 travels inside the call, which must fit the WinRM
#: envelope (MaxEnvelopeSizekb, 500 KB by default). A server certificate's PFX is a few KB.
MAX_PFX_BYTES = 300 * 1024

#: Warn when a bound certificate expires within this many days.
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateInfo:
    """What the checks need to know of a certificate (from the fact or from a PFX).

    Attributes: thumbprint (40 upper hex), dns_names, not_before/not_after (aware UTC),
    has_private_key, chain (thumbprints of the PFX's other certificates, which the import puts
    into ``LocalMachine\\CA``).
    """

    thumbprint: str
    dns_names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    has_private_key: bool
    chain: tuple[str, ...] = ()



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

    key, cert, others = pkcs12.load_key_and_certificates(data, password)
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
        chain=tuple(other.fingerprint(hashes.SHA1()).hex().upper() for other in others or ()),
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


def pfx_bytes(model: Certificate) -> bytes:
    """The PFX file of ``model`` (controller side).

    Raises:
        OperationValueError: larger than :data:`MAX_PFX_BYTES`.
    """

    data = controller_file(model.pfx, "certificate", "pfx").read_bytes()
    if len(data) > MAX_PFX_BYTES:
        raise OperationValueError(f"certificate {model.name!r}: {model.pfx.name} is {len(data) // 1024} KB; at most "
                                  f"{MAX_PFX_BYTES // 1024} KB is sent in one call (a server certificate's PFX is a few KB)")
    return data


@operation()
def certificate(
    certificate: Certificate | dict | None = None,
    *,
    certificate_name: str | None = None,
    present: bool = True,
    pfx: str | Path | None = None,
    password: str | SecretStr | None = None,
    store: Literal["My", "WebHosting"] | None = None,
    exportable: bool | None = None,
    thumbprint: str | None = None,
):
    """
    Import a PFX into ``Cert:\\LocalMachine\\<store>`` unless its certificate is there; the
    other certificates of the PFX (intermediates) go to ``LocalMachine\\CA``.

    Give the certificate either as keyword arguments (pyinfra style) or as one model:

    + certificate_name: the name bindings use in ``certificate`` (required in the keyword
      form). Not ``name``: pyinfra takes ``name=`` for the operation's label.
    + present: ``True`` (default) imports; ``False`` removes the certificate and its private key
      from the store (the model's ``ensure="absent"``; give ``thumbprint``, or ``pfx`` and
      ``password`` to read it from), refused while an HTTP.sys SSL binding uses it.
    + pfx: the PFX file on the controller (required; relative to pyinfra's working directory).
    + password: the PFX password (required; a secret).
    + store: ``My`` (default) or ``WebHosting``.
    + exportable: mark the private key exportable; default false.
    + thumbprint: the expected thumbprint, checked against the PFX (optional).
    + certificate: instead of the keywords, a ``Certificate`` model or dict (host data
      ``iis_certificates`` entry). Giving both is an error.

    The thumbprint is read from the PFX on the controller (so nothing is sent when the store
    already holds it). The PFX bytes (base64) and the password travel inside the call as
    ``Secret`` values: no file is written on the host. Private-key access for pools:
    :func:`private_key_access`. pyinfra prints the arguments of an operation called without
    ``name=``: give ``name=`` or pass the password as ``pydantic.SecretStr``.

    **Example:**

    .. code:: python

        certificate(name="TLS certificate", certificate_name="api", pfx="files/api.pfx",
                    password=SecretStr(os.environ["API_PFX_PASSWORD"]))
    """

    if certificate is not None and present is not True:
        raise OperationValueError("argument 'present' goes with the keyword form; give a certificate with ensure='absent' instead")
    model = from_arguments(Certificate, certificate, "certificate", {
        "certificate_name": certificate_name, "pfx": pfx, "password": password, "store": store,
        "exportable": exportable, "thumbprint": thumbprint,
        "ensure": None if certificate is not None or present else "absent",
    }, {"certificate_name": "name"})
    if not model.present:
        yield from _removed(model)
        return
    info = pfx_info(model)
    if model.thumbprint and model.thumbprint != info.thumbprint:
        raise OperationValueError(f"argument 'certificate': {model.pfx.name} holds {info.thumbprint}, not the expected {model.thumbprint}")
    # The chain's store is read only for a PFX that has a chain (a host imported
    # by an older version has the leaf without its intermediates; the import adds what is missing).
    fact = host_state(host, cert_stores=["CA"] if info.chain else [])
    leaf_present = fact_certificate(fact, info.thumbprint, model.store) is not None
    missing_chain = [t for t in info.chain if fact_certificate(fact, t, "CA") is None]
    if leaf_present and not missing_chain:
        host.noop(f"certificate {model.name} ({info.thumbprint}) is in {model.store}")
        return
    data = pfx_bytes(model)
    diff = [] if leaf_present else [Change(f"certificate {model.name}", None, f"{info.thumbprint} in {model.store}")]
    diff += [Change(f"certificate {model.name}: chain", None, f"{t} in CA") for t in missing_chain]
    log_changes(host, f"Will change certificate {model.name}", diff)
    yield remote_call("Import-IisCertificate", {
        "pfx": Secret(base64.b64encode(data).decode("ascii")),
        "password": Secret(model.password.get_secret_value()),
        "store": model.store, "exportable": model.exportable,
        # Lets a re-sent call answer "already imported" without opening the PFX again.
        "thumbprint": info.thumbprint,
    })


def removal_thumbprint(model: Certificate) -> str:
    """The thumbprint of a certificate to remove: ``thumbprint``, else read from its PFX."""

    return model.thumbprint or pfx_info(model).thumbprint


def bound_endpoints(fact: dict, thumbprint: str) -> list[str]:
    """The HTTP.sys SSL bindings (endpoints, sorted) whose certificate is ``thumbprint``."""

    table = ((fact.get("iis") or {}).get("ssl_bindings") or {})
    return sorted(endpoint for endpoint, entry in table.items() if str(entry.get("hash", "")).upper() == thumbprint.upper())


def unmoved_endpoints(config: Any, fact: dict, thumbprint: str) -> list[str]:
    """The HTTP.sys SSL bindings using ``thumbprint`` that no declared https binding of
    ``config`` (an ``IisHostConfig``) moves to another certificate."""

    from ..iis import httpsys

    declared = {}
    for site in config.sites:
        for binding in site.bindings:
            endpoint = httpsys.binding_endpoint(binding.protocol, binding.binding_information, binding.ssl_flags)
            if endpoint is not None:
                declared[endpoint] = binding
    return [e for e in bound_endpoints(fact, thumbprint)
            if e not in declared or (declared[e].certificate_thumbprint or "").upper() == thumbprint.upper()]


def _moved_by_the_sites(fact: dict, thumbprint: str) -> bool:
    """At plan time: whether the host's inventory moves every HTTP.sys binding of
    ``thumbprint`` to another certificate (the site operations run before the removal)."""

    from pyinfra import context

    from ..facts.host_state import host_data_dict
    from ..models import load_host_config

    state = context.state if context.ctx_state.isset() else None
    if state is None or getattr(state, "is_executing", False):
        return False
    try:
        config = load_host_config(host.name, host_data_dict(host))
    except Exception:  # noqa: BLE001 - the deploy reports an invalid inventory
        return False
    return not unmoved_endpoints(config, fact, thumbprint)


def removal_problems(config: Any, fact: dict) -> list[tuple[int, str]]:
    """``(index in iis_certificates, reason)`` for each certificate the inventory removes while an
    HTTP.sys SSL binding uses it and no declared https binding of that endpoint moves it to
    another certificate (the site operation, which runs before the removal, rebinds those).
    A declared binding naming the certificate itself is refused by the model's cross-check."""

    problems = []
    for index, cert in enumerate(config.certificates):
        if cert.present:
            continue
        thumbprint = removal_thumbprint(cert)
        used = unmoved_endpoints(config, fact, thumbprint)
        if used:
            problems.append((index, f"certificate {cert.name} ({thumbprint}) is to be removed but HTTP.sys SSL binding(s) "
                                    f"{', '.join(used)} use it"))
    return problems


def refuse_bound_removals(current_host: Any, config: Any) -> None:
    """Refuse, before any operation runs, an inventory that removes a certificate an HTTP.sys
    SSL binding still uses (:func:`removal_problems`; reads the host's fact).

    Raises:
        InventoryError: naming the host, ``iis_certificates.<i>.ensure`` and the endpoints.
    """

    from ..models import InventoryError, InventoryReport, Problem

    problems = removal_problems(config, host_state(current_host))
    if problems:
        raise InventoryError(InventoryReport(hosts=[current_host.name], problems=[
            Problem(current_host.name, f"iis_certificates.{index}.ensure", reason,
                    "bind another certificate to those endpoints in iis_sites (or remove the bindings) first, or keep the certificate")
            for index, reason in problems]))


def _removed(model: Certificate):
    """The body of ``certificate`` for ``ensure="absent"``."""

    thumbprint = removal_thumbprint(model)
    fact = host_state(host)
    if fact_certificate(fact, thumbprint, model.store) is None:
        host.noop(f"certificate {model.name} ({thumbprint}) is not in {model.store}")
        return
    used = bound_endpoints(fact, thumbprint)
    if used and not _moved_by_the_sites(fact, thumbprint):  # at execution the fact shows the sites' rebinds
        raise OperationError(f"certificate {model.name} ({thumbprint}): HTTP.sys SSL binding(s) {', '.join(used)} still use it; "
                             "bind another certificate to them (or remove their sites' https bindings) before removing it")
    log_changes(host, f"Will remove certificate {model.name}", [Change(f"certificate {model.name}", f"{thumbprint} in {model.store}", None)])
    yield remote_call("Remove-IisCertificate", {"thumbprint": thumbprint, "store": model.store})


@operation()
def private_key_access(certificate: Any, principals: Iterable[str] = ()):
    """
    Give principals Read on a certificate's private key file: one ``Grant-PathAccess`` rule per
    principal on the ``key_path`` the fact reports (the same rule primitive as any ACL), with the
    principal's SID when the controller can compute it (``IIS AppPool\\<name>``, well-known
    accounts), so the rule does not depend on the host translating the name.

    + certificate: the ``Certificate`` model (or dict) the key belongs to.
    + principals: account names, e.g. the pools' ``IIS AppPool\\api``.

    Run it after the certificate operation (the ``Configure IIS`` deploy runs it after the
    pools exist). While the certificate is not in the store yet (a plan before the import ran),
    nothing is yielded: pyinfra runs the operation again at execution, after the import.

    **Example:**

    .. code:: python

        private_key_access(name="Pool reads the key", certificate=cert, principals=["IIS AppPool\\api"])
    """

    model = validated(Certificate, certificate, "certificate")
    wanted = list(dict.fromkeys(principals))
    if not wanted:
        host.noop(f"certificate {model.name}: no key readers asked")
        return
    info = pfx_info(model)
    entry = fact_certificate(host_state(host), info.thumbprint, model.store)
    if entry is None:
        host.noop(f"certificate {model.name} ({info.thumbprint}) is not in {model.store} yet; key access is granted once it is imported")
        return
    if not entry.get("has_private_key") or not entry.get("key_path"):
        raise OperationError(f"certificate {model.name} ({info.thumbprint}) in {model.store}: the host reports no private key file")
    names = {str(n).lower() for n in entry.get("key_readers") or ()}
    sids = set(entry.get("key_reader_sids") or ())
    missing = [p for p in wanted if not (principal_sid(p) in sids or p.lower() in names)]
    if not missing:
        host.noop(f"certificate {model.name}: {', '.join(wanted)} can read the private key")
        return
    log_changes(host, f"Will change certificate {model.name}", [Change(f"certificate {model.name}: key reader {p}", None, "Read") for p in missing])
    for principal in missing:
        call = {"path": entry["key_path"], "principal": principal, "rights": "Read", "inheritance": "None", "propagation": "None"}
        sid = principal_sid(principal)
        if sid is not None:
            call["sid"] = sid
        yield remote_call("Grant-PathAccess", call)
