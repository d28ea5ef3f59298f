"""TLS for simulated https bindings: the bound certificate and its private key, as imported
by ``Import-IisCertificate`` (``sim/functions/certificates.py`` keeps the key as PEM under
``C:\\ProgramData\\Microsoft\\Crypto\\Keys``, like CNG's machine keys).

``ssl`` needs a file holding certificate and key: it is written to
``<state dir>/sim-apps/tls/<thumbprint>.pem`` (mode 0600), outside the simulated drives, so no
function of the simulated host can read it.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from ..functions.certificates import find_certificate

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost


class TlsError(Exception):
    """The binding has no usable certificate (absent, or without private key). IIS then
    resets the TLS handshake; the simulator does not serve the binding and says why."""


def server_context(host: "SimHost", thumbprint: str | None, store: str = "My") -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2+) with certificate ``thumbprint`` from ``store``.

    Raises:
        TlsError: no thumbprint on the binding, certificate not in the store, or no private key.
    """

    if not thumbprint:
        raise TlsError("the https binding has no certificateHash")
    with host.lock:
        record = find_certificate(host, store, thumbprint)
        record = dict(record) if record else None
    if record is None:
        raise TlsError(f"certificate {thumbprint} is not in Cert:\\LocalMachine\\{store}")
    if not record.get("has_private_key") or not record.get("key_file"):
        raise TlsError(f"certificate {thumbprint} has no private key")
    key_pem = host.path(record["key_file"]).read_bytes()
    folder = host.state_dir / "sim-apps" / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    pem = folder / f"{record['thumbprint']}.pem"
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(record["certificate_pem"].encode("ascii") + b"\n" + key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(Path(pem)))
    return context
