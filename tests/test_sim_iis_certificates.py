"""The simulated host's certificate store: Import-IisCertificate and Grant-CertificateKeyAccess."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from pyinfra_iis.sim.functions import SimFunctionError, call
from support.sim_calls import DIGEST_KEY, iis_host, run

PASSWORD = "pfx-pass-9f8e7d"
PFX_PATH = "C:\\ProgramData\\pyinfra-iis\\certs\\api.pfx"


@pytest.fixture
def host(tmp_path):
    return iis_host(tmp_path / "web01", pools=["api"])


def make_pfx(with_key: bool = True) -> tuple[bytes, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example.com"), x509.DNSName("www.example.com")]), False)
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"api", key if with_key else None, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode()))
    return data, cert


def upload(host, data: bytes) -> None:
    local = host.path(PFX_PATH)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)


def test_import_reports_the_certificate_and_deletes_the_pfx(host):
    data, cert = make_pfx()
    upload(host, data)
    result = run(host, "Import-IisCertificate", {"path": PFX_PATH, "password": PASSWORD, "store": "WebHosting", "exportable": False})
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert result == {"thumbprint": thumbprint, "subject": "CN=api.example.com, O=Example", "store": "WebHosting", "imported": True}
    assert not host.path(PFX_PATH).exists()

    raw = call(host, "Get-HostState", {"digest_key": DIGEST_KEY, "cert_stores": ["My", "WebHosting"]}, {})
    assert PASSWORD not in raw and PASSWORD not in host.path("C:\\").parent.joinpath("host.json").read_text()
    [listed] = json.loads(raw)["certificates"]
    assert listed == {"store": "WebHosting", "thumbprint": thumbprint, "subject": "CN=api.example.com, O=Example",
                      "dns_names": ["api.example.com", "www.example.com"], "not_before": "2026-01-01T00:00:00Z",
                      "not_after": "2027-01-01T00:00:00Z", "has_private_key": True,
                      "key_readers": ["BUILTIN\\Administrators", "NT AUTHORITY\\SYSTEM"]}
    assert run(host, "Get-HostState", {"cert_stores": ["My"]})["certificates"] == []

    upload(host, data)
    again = run(host, "Import-IisCertificate", {"path": PFX_PATH, "password": PASSWORD, "store": "WebHosting"})
    assert again["imported"] is False
    assert not host.path(PFX_PATH).exists()


def test_wrong_password_error_has_no_password_and_the_pfx_is_deleted(host):
    data, _ = make_pfx()
    upload(host, data)
    wrong = "wrong-" + PASSWORD
    with pytest.raises(SimFunctionError) as error:
        run(host, "Import-IisCertificate", {"path": PFX_PATH, "password": wrong, "store": "My"})
    assert "password is not correct" in str(error.value)
    assert wrong not in str(error.value) and PASSWORD not in str(error.value)
    assert not host.path(PFX_PATH).exists()
    assert run(host, "Get-HostState", {})["certificates"] == []


def test_key_access_grant(host):
    data, _ = make_pfx()
    upload(host, data)
    thumbprint = run(host, "Import-IisCertificate", {"path": PFX_PATH, "password": PASSWORD, "store": "My"})["thumbprint"]
    grant = {"thumbprint": thumbprint.lower(), "store": "My", "principal": "IIS AppPool\\api"}
    assert run(host, "Grant-CertificateKeyAccess", grant) == {"changed": True}
    assert run(host, "Grant-CertificateKeyAccess", grant) == {"changed": False}
    assert run(host, "Get-HostState", {})["certificates"][0]["key_readers"] == [
        "BUILTIN\\Administrators", "IIS APPPOOL\\api", "NT AUTHORITY\\SYSTEM"]
    with pytest.raises(SimFunctionError, match="could not be translated"):
        run(host, "Grant-CertificateKeyAccess", {**grant, "principal": "IIS AppPool\\nope"})
    with pytest.raises(SimFunctionError, match="not found"):
        run(host, "Grant-CertificateKeyAccess", {**grant, "thumbprint": "00" * 20})


def test_key_access_needs_a_private_key(host):
    data, _ = make_pfx(with_key=False)
    upload(host, data)
    result = run(host, "Import-IisCertificate", {"path": PFX_PATH, "password": PASSWORD, "store": "My"})
    assert run(host, "Get-HostState", {})["certificates"][0]["has_private_key"] is False
    with pytest.raises(SimFunctionError, match="no private key"):
        run(host, "Grant-CertificateKeyAccess", {"thumbprint": result["thumbprint"], "store": "My", "principal": "IIS AppPool\\api"})
