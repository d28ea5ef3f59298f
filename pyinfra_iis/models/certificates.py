"""Certificates imported from PFX files on the controller."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from .types import show
from .base import EnsureModel
from .types import ControllerPath, Thumbprint


def _certificate_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        shown = show(value) if isinstance(value, str) else type(value).__name__
        raise PydanticCustomError("certificate_name", "{name} is not a certificate name (letters, digits, . _ -, at most 64)", {"name": shown})
    return value


#: The key bindings use to refer to a certificate entry.
CertificateName = Annotated[str, AfterValidator(_certificate_name)]


class Certificate(EnsureModel):
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
            With ``ensure: absent``, which certificate to remove (or give ``pfx`` and
            ``password`` to read it from the PFX).
        ensure: ``present`` (default) or ``absent``: remove the certificate (and its private
            key) from ``LocalMachine\\<store>``; refused while a binding uses it. ``present:
            false`` (the spelling of sites, pools and bindings) means the same.

    ``pfx`` and ``password`` are required with ``ensure: present``.
    """

    name: CertificateName
    pfx: Optional[ControllerPath] = None
    password: Optional[SecretStr] = Field(None, description="PFX password (secret).")
    store: Literal["My", "WebHosting"] = "My"
    exportable: bool = False
    grant_private_key_to_pools: bool = False
    thumbprint: Optional[Thumbprint] = None
    ensure: Literal["present", "absent"] = "present"

    @model_validator(mode="after")
    def _source(self) -> "Certificate":
        if self.ensure == "present" and (self.pfx is None or self.password is None):
            raise PydanticCustomError("certificate", "pfx and password are required (or present: false, with thumbprint, to remove it)")
        if self.ensure == "absent" and self.thumbprint is None and (self.pfx is None or self.password is None):
            raise PydanticCustomError("certificate", "ensure absent needs the thumbprint (40 hex digits) of the certificate to remove, or pfx and password")
        return self

    @property
    def present(self) -> bool:
        """Whether the certificate should be in the store (``ensure`` is ``present``)."""

        return self.ensure == "present"
