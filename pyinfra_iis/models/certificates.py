"""Certificates imported from PFX files on the controller."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, SecretStr
from pydantic_core import PydanticCustomError

from .types import show
from .base import IisModel
from .types import ControllerPath, Thumbprint


def _certificate_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        shown = show(value) if isinstance(value, str) else type(value).__name__
        raise PydanticCustomError("certificate_name", "{name} is not a certificate name (letters, digits, . _ -, at most 64)", {"name": shown})
    return value


#: The key bindings use to refer to a certificate entry.
CertificateName = Annotated[str, AfterValidator(_certificate_name)]


class Certificate(IisModel):
    """One entry of host data ``iis_certificates``: a PFX imported into ``Cert:\\LocalMachine\\<store>``.

    Attributes:
        name: key that bindings use in ``certificate``.
        pfx: the PFX file on the controller (uploaded, verified by SHA-256).
        password: PFX password (secret; masked in output, never in reports).
        store: ``My`` (default, Personal) or ``WebHosting`` (IIS 8+ store meant for many
            site certificates).
        exportable: mark the private key exportable. Default false: the key never needs to
            leave the host.
        grant_private_key_to_pools: give the pools read access to the private key. Default
            false: HTTP.sys terminates TLS and only needs the key itself; the pool needs it only
            if the app uses the certificate (docs/field-facts.md, IIS [V/I]).
        thumbprint: the expected thumbprint; the import fails if the PFX holds another one.
    """

    name: CertificateName
    pfx: ControllerPath
    password: SecretStr = Field(description="PFX password (secret).")
    store: Literal["My", "WebHosting"] = "My"
    exportable: bool = False
    grant_private_key_to_pools: bool = False
    thumbprint: Optional[Thumbprint] = None
