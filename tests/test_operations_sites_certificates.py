"""site and certificate operations: bindings one by one, certificate checks, PFX import."""

from __future__ import annotations

import copy
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyinfra.api.exceptions import OperationError, OperationValueError

from pyinfra_iis.operations.certificates import certificate, covers
from pyinfra_iis.operations.sites import site
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call

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


def test_certificate_import_uploads_then_imports_with_masked_password_and_grants_key(pfx):
    path, thumbprint = pfx
    result = run_operation(certificate._inner, empty_fact(), certificate=cert_model(path), key_readers=["IIS AppPool\\api"])
    assert len(result.commands) == 3
    assert result.commands[0] == f"upload {path} -> C:\\ProgramData\\pyinfra-iis\\certs\\api.pfx"
    assert parse_remote_call(result.commands[1]) == ("Import-IisCertificate", {"path": "C:\\ProgramData\\pyinfra-iis\\certs\\api.pfx", "password": "pfx-pass'1", "store": "My", "exportable": False, "thumbprint": thumbprint})
    assert "pfx-pass" not in result.masked[1] and "*MASKED*" in result.masked[1]
    assert parse_remote_call(result.commands[2]) == ("Grant-CertificateKeyAccess", {"thumbprint": thumbprint, "store": "My", "principal": "IIS AppPool\\api"})
    fact = imported(empty_fact(), thumbprint)
    assert len(run_operation(certificate._inner, copy.deepcopy(fact), certificate=cert_model(path), key_readers=["IIS AppPool\\api"]).commands) == 1
    fact["certificates"][0]["key_readers"] = ["iis apppool\\API"]
    assert run_operation(certificate._inner, fact, certificate=cert_model(path), key_readers=["IIS AppPool\\api"]).commands == []


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
        ("remove", {"protocol": "http", "bindingInformation": "*:8080:"}),
    ]
    assert any("binding http *:8080:: 'present' -> (absent)" in line for line in result.logs)


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
    assert [parse_remote_call(c)[0] for c in commands] == ["Set-IisSslBinding", "Set-IisConfig"]
    assert parse_remote_call(commands[0])[1]["action"] == "remove"
