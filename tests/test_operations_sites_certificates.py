"""site and certificate operations: bindings one by one, certificate checks, PFX import."""

from __future__ import annotations

import base64
import copy
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyinfra.api.exceptions import OperationError, OperationValueError

from pyinfra_iis.operations.certificates import certificate, covers, private_key_access
from pyinfra_iis.operations.sites import site
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.sddl import app_pool_sid

NOW = datetime.datetime.now(datetime.timezone.utc)


def make_pfx(path, names=("api.example.com",), days=365, password=b"pfx-pass'1"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"api", key, cert, None, BestAvailableEncryption(password)))
    return cert.fingerprint(hashes.SHA1()).hex().upper()


@pytest.fixture
def pfx(tmp_path):
    path = tmp_path / "api.pfx"
    return path, make_pfx(path)


def cert_model(path):
    return {"name": "api", "pfx": str(path), "password": "pfx-pass'1", "grant_private_key_to_pools": True}


SITE = {"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api", "log_directory": "C:\\sites\\api\\logs",
        "bindings": [{"protocol": "https", "host_name": "api.example.com", "certificate": "api"},
                     {"protocol": "http", "host_name": "api.example.com"}]}


def imported(fact, thumbprint, names=("api.example.com",), days=365, key=True):
    fact["certificates"].append({"store": "My", "thumbprint": thumbprint, "subject": "CN=" + names[0], "dns_names": list(names),
                                 "not_before": (NOW - datetime.timedelta(days=1)).isoformat(), "not_after": (NOW + datetime.timedelta(days=days)).isoformat(),
                                 "has_private_key": key, "key_readers": []})
    return fact


def test_certificate_import_sends_the_pfx_as_secret_data_with_masked_password(pfx):
    """Security finding "PFX on disk": no upload; the PFX bytes and the password travel in the call as Secrets."""

    path, thumbprint = pfx
    result = run_operation(certificate._inner, empty_fact(), certificate=cert_model(path))
    assert len(result.commands) == 1
    assert not any(c.startswith("upload") for c in result.commands)
    assert parse_remote_call(result.commands[0]) == ("Import-IisCertificate", {
        "pfx": base64.b64encode(path.read_bytes()).decode("ascii"), "password": "pfx-pass'1", "store": "My",
        "exportable": False, "thumbprint": thumbprint})
    assert "pfx-pass" not in result.masked[0] and base64.b64encode(path.read_bytes()).decode()[:20] not in result.masked[0]
    assert result.masked[0].count("*MASKED*") == 2
    assert run_operation(certificate._inner, imported(empty_fact(), thumbprint), certificate=cert_model(path)).commands == []


def test_certificate_larger_than_the_envelope_is_refused_clearly(tmp_path):
    from pyinfra_iis.models.certificates import Certificate
    from pyinfra_iis.operations.certificates import pfx_bytes

    big = tmp_path / "big.pfx"
    big.write_bytes(b"\0" * (301 * 1024))
    with pytest.raises(OperationValueError, match="at most 300 KB"):
        pfx_bytes(Certificate.model_validate(cert_model(big)))
    small = tmp_path / "small.pfx"
    make_pfx(small)
    assert pfx_bytes(Certificate.model_validate(cert_model(small))) == small.read_bytes()


def test_key_access_goes_through_grant_path_access_on_the_key_file_by_sid(pfx):
    """Issue 9 defect 7: the rule carries the pool's S-1-5-82 SID, so it does not depend on the host
    resolving ``IIS AppPool\\api``; the deploy runs it after the pools exist."""

    path, thumbprint = pfx
    key_path = "C:\\ProgramData\\Microsoft\\Crypto\\Keys\\abc"
    fact = imported(empty_fact(), thumbprint)
    fact["certificates"][0].update({"key_path": key_path, "key_readers": ["BUILTIN\\Administrators"],
                                    "key_reader_sids": ["S-1-5-32-544"]})
    result = run_operation(private_key_access._inner, copy.deepcopy(fact), certificate=cert_model(path), principals=["IIS AppPool\\api"])
    assert [parse_remote_call(c) for c in result.commands] == [("Grant-PathAccess", {
        "path": key_path, "principal": "IIS AppPool\\api", "sid": app_pool_sid("api"), "rights": "Read",
        "inheritance": "None", "propagation": "None"})]
    apply_to_fact(fact, result.commands)
    assert run_operation(private_key_access._inner, fact, certificate=cert_model(path), principals=["IIS AppPool\\api"]).commands == []
    # Named by the host differently (or not at all): the SID decides.
    fact["certificates"][0].update({"key_readers": ["S-1-5-82-1"], "key_reader_sids": [app_pool_sid("API")]})
    assert run_operation(private_key_access._inner, fact, certificate=cert_model(path), principals=["IIS AppPool\\api"]).commands == []
    # Not imported yet (plan before the import ran): nothing now, the execution pass grants.
    assert run_operation(private_key_access._inner, empty_fact(), certificate=cert_model(path), principals=["IIS AppPool\\api"]).commands == []


def test_certificate_wrong_password_or_thumbprint_is_refused_without_the_password(pfx):
    path, _ = pfx
    with pytest.raises(OperationValueError) as info:
        run_operation(certificate._inner, empty_fact(), certificate={**cert_model(path), "password": "wrong-secret"})
    assert "wrong-secret" not in str(info.value)
    with pytest.raises(OperationValueError, match="not the expected"):
        run_operation(certificate._inner, empty_fact(), certificate={**cert_model(path), "thumbprint": "AB" * 20})


def test_new_site_one_set_call_with_bindings_and_anonymous_auth(pfx):
    path, thumbprint = pfx
    result = run_operation(site._inner, empty_fact(["Web-Server"]), site=SITE, certificates=[cert_model(path)])
    assert [parse_remote_call(c)[0] for c in result.commands] == ["Initialize-Directory", "Set-IisConfig", "Set-IisSslBinding", "Set-IisRuntimeState"]
    edits = parse_remote_call(result.commands[1])[1]["edits"]
    https = next(e for e in edits if e["path"][-1].get("key", {}).get("protocol") == "https")
    assert https["path"][-1]["key"] == {"protocol": "https", "bindingInformation": "*:443:api.example.com"}
    # The certificate is HTTP.sys's, not configuration (issue 9, defect 2): the binding's RSCA method.
    assert https["attributes"] == {"sslFlags": "1"}
    assert parse_remote_call(result.commands[2]) == ("Set-IisSslBinding", {
        "site": "api", "binding_information": "*:443:api.example.com", "action": "add", "thumbprint": thumbprint, "store": "My"})
    anon = next(e for e in edits if e["section"].endswith("anonymousAuthentication"))
    assert anon == {"section": "system.webServer/security/authentication/anonymousAuthentication", "location": "api", "path": [], "action": "set", "attributes": {"userName": ""}}
    vdir = next(e for e in edits if e["path"][-1].get("item") == "virtualDirectory")
    assert vdir["attributes"] == {"physicalPath": "C:\\sites\\api\\current"}


def test_converged_site_yields_nothing_and_a_removed_binding_is_added_alone(pfx):
    path, thumbprint = pfx
    fact = imported(empty_fact(["Web-Server"]), thumbprint)
    apply_to_fact(fact, run_operation(site._inner, copy.deepcopy(fact), site=SITE, certificates=[cert_model(path)]).commands)
    assert run_operation(site._inner, copy.deepcopy(fact), site=SITE, certificates=[cert_model(path)]).commands == []
    bindings = fact["iis"]["sections"]["system.applicationHost/sites"]["items"][0]["children"]["bindings"]["items"]
    bindings[:] = [b for b in bindings if b["attributes"]["protocol"] == "https"]
    bindings.append({"tag": "binding", "attributes": {"protocol": "http", "bindingInformation": "*:8080:"}, "children": {}, "items": []})
    result = run_operation(site._inner, fact, site=SITE, certificates=[cert_model(path)], diff=True)
    (_, payload), = [parse_remote_call(c) for c in result.commands]
    assert [(e["action"], e["path"][-1]["key"]) for e in payload["edits"]] == [
        ("set", {"protocol": "http", "bindingInformation": "*:80:api.example.com"}),
    ]  # issue 10: the unlisted *:8080: is kept (removal only on request)
    assert not any("*:8080:" in line for line in result.logs)


@pytest.mark.parametrize("names, days, key, error", [
    (("other.example.com",), 365, True, "not api.example.com"),
    (("api.example.com",), -1, True, "expired"),
    (("api.example.com",), 365, False, "no private key"),
])
def test_certificate_checks_before_binding(tmp_path, names, days, key, error):
    thumbprint = "CD" * 20
    fact = imported(empty_fact(["Web-Server"]), thumbprint, names=names, days=days, key=key)
    bad = {**SITE, "bindings": [{"protocol": "https", "host_name": "api.example.com", "certificate": thumbprint}]}
    with pytest.raises(OperationError, match=error):
        run_operation(site._inner, fact, site=bad)


def test_expiring_certificate_is_warned_and_wildcards_cover_one_label(tmp_path):
    thumbprint = "EF" * 20
    fact = imported(empty_fact(["Web-Server"]), thumbprint, names=("*.example.com",), days=10)
    ok = {**SITE, "bindings": [{"protocol": "https", "host_name": "api.example.com", "certificate": thumbprint}]}
    result = run_operation(site._inner, fact, site=ok)
    assert any("expires in 9 days" in line or "expires in 10 days" in line for line in result.logs)
    assert covers(["*.example.com"], "api.example.com") and not covers(["*.example.com"], "a.b.example.com")
    assert covers(["*.example.com"], "*.example.com") and not covers(["*.example.com"], "example.com")
    missing = {**SITE, "bindings": [{"protocol": "https", "host_name": "api.example.com", "certificate": "12" * 20}]}
    with pytest.raises(OperationError, match="not in Cert"):
        run_operation(site._inner, fact, site=missing)


def test_site_repairs_a_missing_or_different_http_sys_certificate_and_leaves_a_matching_one(pfx):
    # Issue 9, defect 2: the certificate lives in HTTP.sys, per endpoint; the config alone serves nothing.
    path, thumbprint = pfx
    fact = imported(empty_fact(["Web-Server"]), thumbprint)
    apply_to_fact(fact, run_operation(site._inner, copy.deepcopy(fact), site=SITE, certificates=[cert_model(path)]).commands)
    assert fact["iis"]["ssl_bindings"]["api.example.com:443"]["hash"] == thumbprint
    assert run_operation(site._inner, copy.deepcopy(fact), site=SITE, certificates=[cert_model(path)]).commands == []
    missing = copy.deepcopy(fact)
    missing["iis"]["ssl_bindings"].clear()
    (call,) = run_operation(site._inner, missing, site=SITE, certificates=[cert_model(path)]).commands
    assert parse_remote_call(call)[1]["action"] == "add"
    other = copy.deepcopy(fact)
    other["iis"]["ssl_bindings"]["api.example.com:443"]["hash"] = "AB" * 20
    (call,) = run_operation(site._inner, other, site=SITE, certificates=[cert_model(path)]).commands
    assert parse_remote_call(call) == ("Set-IisSslBinding", {"site": "api", "binding_information": "*:443:api.example.com",
                                                             "action": "rebind", "thumbprint": thumbprint, "store": "My"})
    http_only = {**SITE, "bindings": [SITE["bindings"][1]]}
    commands = run_operation(site._inner, copy.deepcopy(fact), site=http_only, certificates=[cert_model(path)]).commands
    assert commands == []  # issue 10: the unlisted https binding is kept, and its certificate in HTTP.sys

def test_a_host_with_the_leaf_but_not_its_chain_gets_the_import_again(tmp_path):
    """Issue 9 defect 6 on hosts an older version set up: the leaf is there, the intermediate is not."""

    inter_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    inter_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Example CA")])
    inter = (x509.CertificateBuilder().subject_name(inter_name).issuer_name(inter_name).public_key(inter_key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
             .not_valid_after(NOW + datetime.timedelta(days=900)).sign(inter_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "api.example.com")]))
            .issuer_name(inter_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
            .sign(inter_key, hashes.SHA256()))
    path = tmp_path / "chain.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"api", key, leaf, [inter], BestAvailableEncryption(b"pfx-pass'1")))
    thumbprint, inter_thumbprint = (c.fingerprint(hashes.SHA1()).hex().upper() for c in (leaf, inter))
    fact = imported(empty_fact(), thumbprint)
    [command] = run_operation(certificate._inner, copy.deepcopy(fact), certificate=cert_model(path)).commands
    assert parse_remote_call(command)[1]["thumbprint"] == thumbprint
    fact["certificates"].append({**fact["certificates"][0], "store": "CA", "thumbprint": inter_thumbprint, "has_private_key": False})
    assert run_operation(certificate._inner, fact, certificate=cert_model(path)).commands == []
