"""Every https binding: HTTP.sys SSL binding, certificate, private key, expiry, host name, chain, SNI.

Evidence: the site's bindings (applicationHost.config), HTTP.sys's SSL bindings (``netsh http
show sslcert``, parsed by :mod:`pyinfra_iis.iis.httpsys`) and the certificates of the stores
``My``, ``WebHosting``, ``CA`` and ``Root`` as DER with their key file's SDDL
(``facts/certificate_state.py``); the DER is parsed here with ``cryptography``.

HTTP.sys terminates TLS: the private key must be readable by SYSTEM (HTTP.sys and LSASS use it);
the pool identity needs it only when the app itself uses the certificate (docs/field-facts.md), so
``https.key_access`` reports the pool's access without failing on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509

from .. import sddl
from ..iis.httpsys import IIS_APPID, binding_endpoint
from .access import effective_rights, pool_token
from .model import FAIL, OK, WARN, Check, Evidence, split_binding

#: A certificate expiring within this many days is reported (warn).
EXPIRY_WARN_DAYS = 30
READ_DATA = 0x1


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def host_matches(host_name: str, dns_names: list[str]) -> bool:
    """RFC 6125 matching: exact (case-insensitive) or a wildcard for exactly one left-most label."""

    host = host_name.casefold().rstrip(".")
    for name in dns_names:
        name = name.casefold().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _x509(entry: dict[str, Any]) -> x509.Certificate | None:
    der = entry.get("_der")
    return x509.load_der_x509_certificate(der) if der else None


def _certificates(evidence: Evidence) -> list[dict[str, Any]]:
    return list(evidence.state.get("certificates") or [])


def chain_problem(leaf: x509.Certificate, pool: list[x509.Certificate], now: datetime) -> str | None:
    """Why the chain of ``leaf`` cannot be built from ``pool`` (the host's certificates;
    ``None``: complete): each issuer found by subject name and, when both carry one, by key
    identifier (authority key id of the child = subject key id of the issuer), up to a
    self-signed certificate. Signatures are not verified (Windows does when it builds the chain)."""

    def key_ids_match(child: x509.Certificate, issuer: x509.Certificate) -> bool:
        try:
            wanted = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            have = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except (x509.ExtensionNotFound, ValueError):
            return True
        return wanted is None or wanted == have

    current, seen = leaf, 0
    while seen < 10:
        if current.issuer == current.subject:
            return None
        issuers = [c for c in pool if c.subject == current.issuer and key_ids_match(current, c)]
        if not issuers:
            return f"issuer {current.issuer.rfc4514_string()} of {current.subject.rfc4514_string()} is in no store (CA, Root)"
        valid = [c for c in issuers if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
        if not valid:
            return f"issuer {current.issuer.rfc4514_string()} has expired"
        current, seen = valid[0], seen + 1
    return "chain longer than 10 certificates"


def check_https(evidence: Evidence) -> list[Check]:
    """The ``https.*`` checks of every https binding of every examined site."""

    if evidence.config is None:
        return []
    iis = evidence.state.get("iis") or {}
    ssl_bindings = iis.get("ssl_bindings") or {}
    certificates = _certificates(evidence)
    checks: list[Check] = []
    for site in evidence.site_names():
        pool = evidence.site_pool(site)
        token, identity = pool_token(evidence, pool) if pool else (None, "")
        for binding in evidence.bindings(site):
            if binding.get("protocol", "").casefold() != "https":
                continue
            checks += _binding_checks(evidence, site, binding, ssl_bindings, certificates, token, identity)
    return checks


def _binding_checks(evidence: Evidence, site: str, binding: dict[str, str], ssl_bindings: dict, certificates: list,
                    token: set[str] | None, identity: str) -> list[Check]:
    info = binding.get("bindingInformation", "")
    host_name = split_binding(info)[2]
    flags = int(binding.get("sslFlags", "0") or 0) if str(binding.get("sslFlags", "0")).isdigit() else 0
    label = f"[{site} {info}]"
    key = "iis_sites[].bindings[].certificate"
    checks: list[Check] = []

    sni = bool(flags & 1)
    if sni and not host_name:
        checks.append(Check(f"https.sni{label}", FAIL, f"sslFlags={flags} asks for SNI but the binding has no host name",
                            "iis_sites[].bindings[].host_name (SNI needs one) or sslFlags without the SNI bit"))
    elif host_name and not sni and not flags & 2:
        checks.append(Check(f"https.sni{label}", WARN, f"host name {host_name} without the SNI bit (sslFlags={flags}): one "
                            "certificate for every https site on this IP and port", "iis_sites[].bindings[].ssl_flags: add Sni (1)"))
    else:
        checks.append(Check(f"https.sni{label}", OK, f"sslFlags={flags}, host name {host_name or '(any)'}"))

    if flags & 2:
        checks.append(Check(f"https.sslcert{label}", WARN, "Central Certificate Store binding: certificate not checked", key))
        return checks
    endpoint = binding_endpoint("https", info, flags)
    entry = ssl_bindings.get(endpoint or "")
    if entry is None:
        checks.append(Check(f"https.sslcert{label}", FAIL, f"HTTP.sys has no SSL binding for {endpoint}: the TLS handshake fails",
                            f"{key}; re-run deploys/site.py, or: netsh http add sslcert hostnameport={endpoint} certhash=<thumbprint> "
                            f"appid={IIS_APPID} certstorename=<store>"))
        return checks
    cert = next((c for c in certificates if c.get("thumbprint", "").upper() == entry["hash"].upper()
                 and c.get("store", "").casefold() == entry["store"].casefold()), None)
    expected = evidence.target.certificates.get(f"{site}|{info}".casefold())
    if expected is not None and expected[1].upper() != entry["hash"].upper():
        checks.append(Check(f"https.sslcert{label}", WARN, f"HTTP.sys {endpoint} -> {entry['hash']}, not the inventory's certificate "
                            f"{expected[0]} ({expected[1]}): bound by hand since the last deploy?",
                            "re-run deploys/site.py (it rebinds the inventory's certificate)"))
    elif entry.get("appid") and entry["appid"].casefold() != IIS_APPID:
        checks.append(Check(f"https.sslcert{label}", WARN, f"HTTP.sys binding {endpoint} belongs to application {entry['appid']}, not IIS",
                            f"netsh http delete sslcert {endpoint}, then re-run deploys/site.py"))
    else:
        checks.append(Check(f"https.sslcert{label}", OK, f"HTTP.sys {endpoint} -> {entry['hash']} in {entry['store']}"))
    if cert is None:
        checks.append(Check(f"https.certificate{label}", FAIL, f"certificate {entry['hash']} is not in LocalMachine\\{entry['store']}",
                            f"{key} / iis_certificates: import it, then re-run deploys/site.py"))
        return checks
    checks.append(Check(f"https.certificate{label}", OK, f"{cert['subject']} ({cert['thumbprint']}) in {cert['store']}"))

    if not cert.get("has_private_key"):
        checks.append(Check(f"https.private_key{label}", FAIL, f"{cert['thumbprint']} has no private key: HTTP.sys cannot use it",
                            "iis_certificates[].pfx: import the PFX with its key"))
    else:
        checks.append(Check(f"https.private_key{label}", OK, f"key file {cert.get('key_path') or '(not found on disk)'}"))
    checks.append(_key_access(cert, label, token, identity))
    checks.append(_expiry(evidence, cert, label))
    checks.append(_host_name(cert, host_name, label))
    checks.append(_chain(evidence, cert, certificates, label))
    return checks


def _key_access(cert: dict, label: str, token: set[str] | None, identity: str) -> Check:
    check = f"https.key_access{label}"
    if not cert.get("has_private_key"):
        return Check(check, WARN, "no private key", "iis_certificates[].pfx")
    sddl_text = cert.get("key_sddl")
    if not sddl_text:
        return Check(check, WARN, "key file not found: access not checked (a CNG key in another provider?)", "")
    system = effective_rights(sddl_text, {sddl.SYSTEM, "S-1-1-0", "S-1-5-11"}) & READ_DATA
    pool = bool(token and effective_rights(sddl_text, token) & READ_DATA)
    pool_text = f"{identity} {'can' if pool else 'cannot'} read it (needed only when the app itself uses the certificate)"
    if not system:
        return Check(check, FAIL, f"SYSTEM cannot read the key {cert.get('key_path')}: HTTP.sys fails the handshake; {pool_text}",
                     "certlm.msc > the certificate > Manage Private Keys: give SYSTEM Full control; or re-import iis_certificates")
    return Check(check, OK, f"SYSTEM can read the key; {pool_text}")


def _expiry(evidence: Evidence, cert: dict, label: str) -> Check:
    check = f"https.expiry{label}"
    after, before = _time(cert["not_after"]), _time(cert["not_before"])
    fix = "iis_certificates[].pfx: a renewed certificate, then deploys/site.py"
    if evidence.now > after:
        return Check(check, FAIL, f"expired {cert['not_after']}", fix)
    if evidence.now < before:
        return Check(check, FAIL, f"not valid before {cert['not_before']}", fix)
    left = after - evidence.now
    if left < timedelta(days=EXPIRY_WARN_DAYS):
        return Check(check, WARN, f"expires {cert['not_after']} (in {left.days} days)", fix)
    return Check(check, OK, f"valid until {cert['not_after']} ({left.days} days)")


def _host_name(cert: dict, host_name: str, label: str) -> Check:
    check = f"https.host_name{label}"
    names = cert.get("dns_names") or []
    if not host_name:
        return Check(check, OK, f"binding answers any host name; certificate names {', '.join(names) or '(none)'}")
    if host_matches(host_name, names):
        return Check(check, OK, f"{host_name} matches SAN {', '.join(names)}")
    return Check(check, FAIL, f"{host_name} is not among the certificate's SAN DNS names ({', '.join(names) or 'none'}): browsers refuse it",
                 "iis_certificates[].pfx: a certificate issued for this host name")


def _chain(evidence: Evidence, cert: dict, certificates: list, label: str) -> Check:
    check = f"https.chain{label}"
    leaf = _x509(cert)
    if leaf is None:
        return Check(check, WARN, "certificate not parsed", "")
    if leaf.issuer == leaf.subject:
        return Check(check, OK, "self-signed: nothing to chain (clients must trust it explicitly)")
    pool = [c for c in (_x509(e) for e in certificates if e.get("store", "").casefold() in ("ca", "root", "my", "webhosting")) if c is not None]
    problem = chain_problem(leaf, pool, evidence.now)
    if problem:
        return Check(check, FAIL, f"{problem}: HTTP.sys sends an incomplete chain", "import the intermediate into LocalMachine\\CA "
                     "(iis_certificates[].pfx with its chain)")
    return Check(check, OK, f"chain to a root complete from issuer {leaf.issuer.rfc4514_string()}")
