"""pytest fixtures for the simulated Windows host (``pyinfra_iis.sim``).

Imported by ``tests/conftest.py`` (``from sim_fixtures import *``), so every test can use:

* ``sim_password``: the administrator password of simulated hosts, ``Secr3t!'pass`` (a quote
  inside on purpose);
* ``sim_server``: a fresh :class:`~pyinfra_iis.sim.SimServer` in ``tmp_path/sim-host``,
  started on a free 127.0.0.1 port, user ``admin``, Basic and NTLM allowed (Basic over HTTP
  too: ``allow_unencrypted=True``), MaxEnvelopeSizekb 500; stopped after the test.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Iterator

import pytest

from pyinfra_iis.sim import SimServer

SIM_USER = "admin"
SIM_PASSWORD = "Secr3t!'pass"

__all__ = ["SIM_PASSWORD", "SIM_USER", "TestCA", "sim_password", "sim_server", "test_ca"]


class TestCA:
    """A self-signed CA in ``folder`` (``ca.pem``) issuing server certificates (EC P-256)."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, name: str = "pyinfra-iis test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.folder / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, names: list[str], stem: str = "server") -> tuple[Path, Path]:
        """Issue a server certificate for ``names`` (DNS names or IP addresses, as SANs);
        returns ``(cert_path, key_path)`` (the chain file holds the leaf)."""

        x509, NameOID = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, self._hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(self._ser.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(self._ser.Encoding.PEM, self._ser.PrivateFormat.PKCS8,
                                               self._ser.NoEncryption()))
        return cert_path, key_path

    def server_context(self, names: list[str], stem: str = "server") -> ssl.SSLContext:
        """A server-side TLS context holding a certificate for ``names`` issued by this CA."""

        cert_path, key_path = self.issue(names, stem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


@pytest.fixture
def sim_password() -> str:
    """The password of the ``admin`` account on simulated hosts."""

    return SIM_PASSWORD


@pytest.fixture
def sim_server(tmp_path: Path) -> Iterator[SimServer]:
    """A started simulated host (fresh state in ``tmp_path``); stopped after the test."""

    with SimServer(tmp_path / "sim-host", user=SIM_USER, password=SIM_PASSWORD, port=0, allow_unencrypted=True,
                   max_envelope_kb=500) as sim:
        yield sim


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    """A fresh throw-away CA in ``tmp_path/ca``."""

    return TestCA(tmp_path / "ca")
