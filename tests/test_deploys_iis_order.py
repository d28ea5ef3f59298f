"""deploys/iis.py: the order of the operations the ``Configure IIS`` deploy runs."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from pyinfra import context

from pyinfra_iis.deploys import iis
from pyinfra_iis.operations import acl, app_pools, certificates, extensions, features, rights, server, sites
from pyinfra_iis.operations.testing import make_host


@pytest.fixture
def pfx(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "api.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .sign(key, hashes.SHA256()))
    path = tmp_path / "api.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"api", key, cert, None, BestAvailableEncryption(b"pw")))
    return path


def test_private_key_access_is_granted_after_the_pools_exist(pfx, monkeypatch):
    """Issue 9 defect 7: the old deploy granted key access inside the certificate operation, before
    the app pool operations, when ``IIS AppPool\\api`` does not resolve on a new host yet."""

    calls: list[str] = []
    for module, names in ((features, ["windows_features"]), (extensions, ["msi_extension"]), (server, ["server_config"]),
                          (certificates, ["certificate", "private_key_access"]), (app_pools, ["app_pool"]),
                          (sites, ["site"]), (acl, ["acl"]), (rights, ["granted_rights"])):
        for op in names:
            monkeypatch.setattr(module, op, lambda *a, _op=op, **kw: calls.append((_op, kw.get("principals"))))
    data = {"iis_app_pools": [{"name": "api"}],
            "iis_certificates": [{"name": "api", "pfx": str(pfx), "password": "pw", "grant_private_key_to_pools": True}]}
    state, host = make_host(data)
    with context.ctx_state.use(state), context.ctx_host.use(host):
        iis.configure_iis._inner()
    order = [name for name, _ in calls]
    assert order.index("private_key_access") > order.index("app_pool") > order.index("certificate")
    assert ("private_key_access", ["IIS AppPool\\api"]) in calls
