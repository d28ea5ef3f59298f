"""The simulated host's certificate store: Import-IisCertificate (PFX bytes in the call, chain to
CA), the raw ``certificates`` part of Get-HostState, and key access through Grant-PathAccess."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from pyinfra_iis import sddl
from pyinfra_iis.facts.certificate_state import convert
from pyinfra_iis.sim.functions import SimFunctionError, call
from support.sim_calls import DIGEST_KEY, iis_host, run

PASSWORD = "pfx-pass-9f8e7d"
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture
def host(tmp_path):
    return iis_host(tmp_path / "web01", pools=["api"])


def _cert(name: x509.Name, issuer: x509.Name, public_key, signing_key, ca: bool, san=()):
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(START)
               .not_valid_after(START + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pfx(with_key: bool = True, chain: bool = False) -> tuple[bytes, x509.Certificate, list[x509.Certificate]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    others = []
    if chain:
        root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Root")])
        inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Intermediate")])
        root = _cert(root_name, root_name, root_key.public_key(), root_key, True)
        inter = _cert(inter_name, root_name, inter_key.public_key(), root_key, True)
        cert = _cert(name, inter_name, key.public_key(), inter_key, False, ("api.example.com", "www.example.com"))
        others = [inter, root]
    else:
        cert = _cert(name, name, key.public_key(), key, False, ("api.example.com", "www.example.com"))
    data = pkcs12.serialize_key_and_certificates(
        b"api", key if with_key else None, cert, others or None, serialization.BestAvailableEncryption(PASSWORD.encode()))
    return data, cert, others


def thumb(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def payload(data: bytes, **extra):
    key, cert, _ = pkcs12.load_key_and_certificates(data, PASSWORD.encode())
    return {"pfx": base64.b64encode(data).decode("ascii"), "password": PASSWORD, "store": "My",
            "thumbprint": thumb(cert) if cert is not None else "00" * 20, **extra}


def certificates(host, stores=("My", "WebHosting")):
    return convert(run(host, "Get-HostState", {"cert_stores": list(stores)}, raw=True))["certificates"]


def test_import_from_bytes_reports_raw_der_parsed_by_the_fact(host):
    data, cert, _ = make_pfx()
    result = run(host, "Import-IisCertificate", payload(data, store="WebHosting", exportable=False))
    assert result == {"thumbprint": thumb(cert), "subject": "CN=api.example.com, O=Example", "store": "WebHosting",
                      "imported": True, "chain": []}
    raw = call(host, "Get-HostState", {"digest_key": DIGEST_KEY, "cert_stores": ["My", "WebHosting"]}, {})
    assert PASSWORD not in raw and PASSWORD not in host.path("C:\\").parent.joinpath("host.json").read_text()
    [entry] = json.loads(raw)["certificates"]
    assert set(entry) == {"store", "der", "has_private_key", "key_path", "key_sddl", "key_sids"}
    assert base64.b64decode(entry["der"]) == cert.public_bytes(serialization.Encoding.DER)
    assert entry["key_sddl"] == "D:PAI(A;;FA;;;SY)(A;;FA;;;BA)"
    [listed] = convert({"certificates": [entry]})["certificates"]
    assert listed == {"store": "WebHosting", "thumbprint": thumb(cert), "subject": "CN=api.example.com, O=Example",
                      "dns_names": ["api.example.com", "www.example.com"], "not_before": "2026-01-01T00:00:00Z",
                      "not_after": "2027-01-01T00:00:00Z", "has_private_key": True, "key_path": entry["key_path"],
                      "key_readers": ["BUILTIN\\Administrators", "NT AUTHORITY\\SYSTEM"],
                      "key_reader_sids": ["S-1-5-32-544", "S-1-5-18"],
                      "key_entries": [{"principal": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "type": "Allow", "rights": "FullControl",
                                       "inherited": False, "inheritance": "None", "propagation": "None"},
                                      {"principal": "BUILTIN\\Administrators", "sid": "S-1-5-32-544", "type": "Allow", "rights": "FullControl",
                                       "inherited": False, "inheritance": "None", "propagation": "None"}]}
    assert certificates(host, ["My"]) == []
    again = run(host, "Import-IisCertificate", payload(data, store="WebHosting"))  # re-sent after a lost reply
    assert again == {**result, "imported": False}
    assert len(list(host.path("C:\\ProgramData\\Microsoft\\Crypto\\Keys").iterdir())) == 1  # no second key
    with pytest.raises(SimFunctionError, match="thumbprint"):
        run(host, "Import-IisCertificate", {k: v for k, v in payload(data).items() if k != "thumbprint"})
    with pytest.raises(SimFunctionError, match="not " + "AB" * 20):
        run(host, "Import-IisCertificate", payload(data, thumbprint="AB" * 20))


def test_chain_goes_to_the_ca_store_never_root(host):
    """Issue 9 defect 6: the old import kept only the leaf, so HTTP.sys served an incomplete chain."""

    data, cert, (inter, root) = make_pfx(chain=True)
    result = run(host, "Import-IisCertificate", payload(data))
    assert result["thumbprint"] == thumb(cert) and sorted(result["chain"]) == sorted([thumb(inter), thumb(root)])
    assert run(host, "Import-IisCertificate", payload(data))["chain"] == []
    assert [c["thumbprint"] for c in certificates(host, ["My"])] == [thumb(cert)]
    ca = certificates(host, ["CA"])
    assert sorted(c["thumbprint"] for c in ca) == sorted([thumb(inter), thumb(root)])
    assert all(not c["has_private_key"] for c in ca)
    assert certificates(host, ["Root"]) == []


def test_no_pfx_file_on_disk_and_leftovers_are_swept(host):
    """Security finding "PFX on disk": the PFX arrives as bytes; old uploads are deleted."""

    leftover = host.path("C:\\ProgramData\\pyinfra-iis\\certs\\old.pfx")
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"old pfx")
    data, _, _ = make_pfx()
    run(host, "Import-IisCertificate", payload(data))
    assert not leftover.exists()
    root = host.path("C:\\")
    assert not [p for p in root.rglob("*.pfx")]


def test_wrong_password_too_large_or_no_key_errors_hold_no_secret(host):
    data, _, _ = make_pfx()
    wrong = "wrong-" + PASSWORD
    with pytest.raises(SimFunctionError) as error:
        run(host, "Import-IisCertificate", {**payload(data), "password": wrong})
    assert "password is not correct" in str(error.value)
    assert wrong not in str(error.value) and PASSWORD not in str(error.value)
    assert payload(data)["pfx"][:40] not in str(error.value)
    with pytest.raises(SimFunctionError, match="larger than 300 KB"):
        run(host, "Import-IisCertificate", {**payload(data), "pfx": base64.b64encode(b"x" * (301 * 1024)).decode()})
    keyless, _, _ = make_pfx(with_key=False)
    with pytest.raises(SimFunctionError, match="no certificate with a private key"):
        run(host, "Import-IisCertificate", payload(keyless))
    assert certificates(host) == []


def test_key_access_through_grant_path_access_on_the_key_file(host):
    data, cert, _ = make_pfx()
    run(host, "Import-IisCertificate", payload(data))
    [entry] = certificates(host)
    grant = {"path": entry["key_path"], "principal": "IIS AppPool\\api", "sid": sddl.app_pool_sid("api"),
             "rights": "Read", "inheritance": "None", "propagation": "None"}
    assert run(host, "Grant-PathAccess", grant) == {"changed": True}
    assert run(host, "Grant-PathAccess", grant) == {"changed": False}
    [entry] = certificates(host)
    assert entry["key_readers"] == ["BUILTIN\\Administrators", "IIS APPPOOL\\api", "NT AUTHORITY\\SYSTEM"]
    assert sddl.app_pool_sid("api") in entry["key_reader_sids"]


def test_removal_keeps_a_private_key_another_certificate_still_uses(host):
    # Remove-IisCertificate (70-certificates.ps1) deletes the key only when no certificate left in My, WebHosting
    # or its store has that public key and a private key: a copy MMC made into WebHosting shares the key container.
    from pyinfra_iis.sim.functions.certificates import certificate_store

    data, cert, _ = make_pfx()
    run(host, "Import-IisCertificate", payload(data))
    records = certificate_store(host)
    [mine] = [r for k, r in records.items() if k.startswith("My/")]
    records[f"WebHosting/{mine['thumbprint']}"] = {**mine, "store": "WebHosting"}
    host.save()
    assert run(host, "Remove-IisCertificate", {"thumbprint": thumb(cert), "store": "My"}) == {"removed": True}
    [left] = certificates(host)
    assert left["store"] == "WebHosting" and left["key_path"] == mine["key_file"]
    assert host.path(mine["key_file"]).is_file()
    assert run(host, "Remove-IisCertificate", {"thumbprint": thumb(cert), "store": "WebHosting"}) == {"removed": True}
    assert not host.path(mine["key_file"]).exists() and certificates(host) == []
