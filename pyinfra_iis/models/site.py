"""Sites and bindings (``system.applicationHost/sites``)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .base import IisModel, iis_bool
from .types import BindingIp, HostName, IisPath, PoolName, Port, SiteName, SslFlags, _refuse_bool, _thumbprint

#: IIS defaults (IIS_schema.xml) of the attributes :meth:`Site.config_attributes` writes.
IIS_DEFAULTS: dict[str, str] = {
    "serverAutoStart": "true",
    "application.preloadEnabled": "false",
    "logFile.directory": "%SystemDrive%\\inetpub\\logs\\LogFiles",
    "bindings.binding.sslFlags": "0",
}

#: ``system.webServer/security/authentication/anonymousAuthentication`` default (IIS_schema.xml):
#: requests run as IUSR unless ``userName`` is set to ``""`` (then: the pool identity).
ANONYMOUS_AUTH_IIS_DEFAULTS: dict[str, str] = {"userName": "IUSR"}

SNI = 1
CENTRAL_CERT_STORE = 2


def is_thumbprint(text: str) -> bool:
    """Return whether ``text`` reads as a certificate thumbprint (see ``types.Thumbprint``)."""

    try:
        _thumbprint(text)
    except PydanticCustomError:
        return False
    return True


class Binding(IisModel):
    """One binding of a site.

    Attributes:
        protocol: ``http`` or ``https``.
        ip: ``*`` (All Unassigned, default) or an IP literal.
        port: default 80 for http, 443 for https.
        host_name: host header; ``""`` (default) answers any host name. ``*.example.com``
            wildcards need IIS 10.
        ssl_flags: ``sslFlags`` bits (names or 0-127). Default: ``Sni`` when an https binding
            has a host name (several certificates on one IP:port need SNI), else 0.
        certificate: for https: the ``name`` of an entry of ``iis_certificates`` or a
            thumbprint of a certificate already in the store. Not needed with
            ``CentralCertStore``.
        certificate_store: ``My`` or ``WebHosting``; default: the named certificate's store,
            or ``My`` for a thumbprint.
        present: ``False`` removes this binding from the site when the host has it (matched by
            protocol, ip, port and host name); a removal entry needs no certificate. Default true.
    """

    protocol: Literal["http", "https"] = "http"
    ip: BindingIp = "*"
    port: Optional[Port] = None
    host_name: HostName = ""
    ssl_flags: Optional[SslFlags] = None
    certificate: Optional[str] = None
    certificate_store: Optional[Literal["My", "WebHosting"]] = None
    present: bool = True

    @model_validator(mode="after")
    def _rules(self) -> "Binding":
        if self.port is None:
            object.__setattr__(self, "port", 443 if self.protocol == "https" else 80)
        if not self.present:
            if self.certificate or self.certificate_store or self.ssl_flags is not None:
                raise PydanticCustomError("binding", "a binding with present false is removed: give only protocol, ip, port and host_name")
            object.__setattr__(self, "ssl_flags", 0)
            return self
        if self.protocol == "http":
            if self.certificate or self.certificate_store or self.ssl_flags:
                raise PydanticCustomError("binding", "an http binding takes no certificate, certificate_store or ssl_flags; use protocol https")
            object.__setattr__(self, "ssl_flags", 0)
            return self
        if self.ssl_flags is None:
            object.__setattr__(self, "ssl_flags", SNI if self.host_name else 0)
        if self.ssl_flags & SNI and not self.host_name:
            raise PydanticCustomError("binding", "sslFlags Sni needs a host_name (SNI selects the certificate by host name)")
        if not self.certificate and not self.ssl_flags & CENTRAL_CERT_STORE:
            raise PydanticCustomError("binding", "an https binding needs a certificate: the name of an iis_certificates entry or a thumbprint")
        if self.certificate is not None:
            if not self.certificate.strip() or any(ord(c) < 32 for c in self.certificate):
                raise PydanticCustomError("binding", "certificate must be a certificate name or a thumbprint")
            if is_thumbprint(self.certificate):
                object.__setattr__(self, "certificate", _thumbprint(self.certificate))
        return self

    @property
    def binding_information(self) -> str:
        """``bindingInformation`` as IIS writes it: ``"IP:PORT:HOST"`` (``"*:443:api.example.com"``,
        ``"[2001:db8::1]:80:"`` for IPv6)."""

        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{ip}:{self.port}:{self.host_name}"

    @property
    def key(self) -> tuple[str, str, int, str]:
        """The binding's identity: (protocol, ip, port, host_name)."""

        return (self.protocol, self.ip, int(self.port or 0), self.host_name)

    @property
    def certificate_thumbprint(self) -> Optional[str]:
        """The thumbprint when ``certificate`` is one, else ``None`` (a certificate name)."""

        return self.certificate if self.certificate and is_thumbprint(self.certificate) else None


def _unique_bindings(bindings: list[Binding]) -> list[Binding]:
    keys = [b.key for b in bindings]
    duplicates = sorted({f"{k[0]} {b.binding_information}" for k, b in zip(keys, bindings) if keys.count(k) > 1})
    if duplicates:
        raise PydanticCustomError("bindings", "binding {which} is listed twice", {"which": ", ".join(duplicates)})
    return bindings


def _site_id(value: object) -> object:
    return _refuse_bool(value)


class Site(IisModel):
    """One entry of host data ``iis_sites``.

    Attributes:
        name: site name (unique per host, case-insensitive).
        physical_path: root folder (the root virtual directory's ``physicalPath``).
        app_pool: name of a pool in ``iis_app_pools`` (the root application's pool).
        bindings: at least one, each (protocol, ip, port, host) once.
        log_directory: ``logFile/@directory``; ``None`` keeps IIS's default
            ``%SystemDrive%\\inetpub\\logs\\LogFiles``.
        preload_enabled: root application ``preloadEnabled`` (IIS default false). Default true:
            with the pool ``AlwaysRunning`` IIS warms the app up after every (re)start, so the
            first user request does not wait for Python (docs/field-facts.md, IIS). Needs Web-AppInit.
        anonymous_auth_as_pool_identity: anonymous authentication ``userName=""`` (IIS default
            ``IUSR``), so requests run as the pool identity and one principal needs file access
            (docs/field-facts.md, IIS [V]). Default true.
        state: ``Started`` / ``Stopped`` (also ``serverAutoStart``).
        id: the site id; ``None`` lets the operation pick the next free id.
        present: ``False`` removes the site (with its bindings, applications and virtual
            directories, and the HTTP.sys certificate bindings of its https bindings); such an
            entry gives only ``name``. Its files are NEVER deleted: nothing in pyinfra-iis
            deletes a site's folders. Default true (then ``physical_path``, ``app_pool`` and at
            least one binding are required).
        exclusive_bindings: ``True`` makes ``bindings`` authoritative: a binding the host has
            and the list does not name is removed. Default false: unlisted bindings are left
            as they are (a binding is removed only by an entry with ``present: false``).
    """

    name: SiteName
    physical_path: Optional[IisPath] = None
    app_pool: Optional[PoolName] = None
    bindings: Annotated[list[Binding], AfterValidator(_unique_bindings)] = Field(default_factory=list)
    log_directory: Optional[IisPath] = None
    preload_enabled: bool = True
    anonymous_auth_as_pool_identity: bool = True
    state: Literal["Started", "Stopped"] = "Started"
    id: Optional[Annotated[int, BeforeValidator(_site_id), Field(ge=1, le=4294967295)]] = None
    present: bool = True
    exclusive_bindings: bool = False

    @model_validator(mode="after")
    def _present_or_removed(self) -> "Site":
        if not self.present:
            extra = sorted(self.model_fields_set - {"name", "present"})
            if extra:
                raise PydanticCustomError("site_removed", "a site with present false is removed (its files are kept): give only name, not {fields}", {"fields": ", ".join(extra)})
            return self
        missing = [field for field in ("physical_path", "app_pool") if getattr(self, field) is None]
        if missing:
            raise PydanticCustomError("site_required", "{fields} required for a site that is present (or set present false to remove it)", {"fields": " and ".join(missing)})
        if not any(binding.present for binding in self.bindings):
            raise PydanticCustomError("bindings", "a site needs at least one binding")
        return self

    @property
    def present_bindings(self) -> list[Binding]:
        """The bindings the site must have (entries with ``present`` true)."""

        return [binding for binding in self.bindings if binding.present]

    def config_attributes(self) -> dict[str, str]:
        """Return ``{attribute path: value text}`` for the site as IIS writes them.

        Paths are relative to ``sites/site[@name]``: ``serverAutoStart``, ``id`` (when set),
        ``logFile.directory`` (when set), and for the root application (``path="/"``)
        ``application.applicationPool`` and ``application.preloadEnabled``, and its root virtual
        directory ``virtualDirectory.physicalPath``. Bindings are a collection: see
        :attr:`Binding.binding_information` and :attr:`Binding.ssl_flags`.
        """

        attributes = {
            "serverAutoStart": iis_bool(self.state == "Started"),
            "application.applicationPool": self.app_pool,
            "application.preloadEnabled": iis_bool(self.preload_enabled),
            "virtualDirectory.physicalPath": self.physical_path,
        }
        if self.id is not None:
            attributes["id"] = str(self.id)
        if self.log_directory is not None:
            attributes["logFile.directory"] = self.log_directory
        return attributes

    @property
    def anonymous_user_name(self) -> Optional[str]:
        """``anonymousAuthentication/@userName`` for the site's location: ``""`` (pool identity)
        or ``None`` (leave IIS's ``IUSR``)."""

        return "" if self.anonymous_auth_as_pool_identity else None
