"""Connection settings of one host: the ``winrm_*`` host data keys, validated.

Every key is ``winrm_``-prefixed and typed; an unknown ``winrm_*`` key, an ill-typed value or
an insecure combination is refused before any host is touched, with a message naming the
host, the key and the fix (docs/design.md, "Inventory data → models").

Security defaults (docs/design.md, "The connector"; docs/field-facts.md, "WinRM / WinRS"):

* HTTPS on 5986 with server certificate validation unless told otherwise; plain HTTP on 5985.
* Over plain HTTP only NTLM or Kerberos with message encryption is allowed; Basic, or
  ``winrm_message_encryption=never``, over HTTP needs ``winrm_allow_insecure=true``
  (Windows itself refuses unencrypted traffic unless ``AllowUnencrypted=true``).
* ``winrm_server_cert_validation=false`` needs ``winrm_allow_insecure=true`` too, and the
  connector then prints a warning per host.
* The password is kept as :class:`pyinfra_iis.protocol.Secret`: its ``repr`` is masked.

Also: ``winrm_system_root`` (default ``C:\\Windows``), the host's ``%SystemRoot%``: the worker
is started as ``<system root>\\System32\\WindowsPowerShell\\v1.0\\powershell.exe`` without
cmd.exe, so nothing would expand the variable; ``winrm_step_timeout_sec`` (default 3600), the
time limit of a step without pyinfra's ``_timeout`` (pywinrm's ``read_timeout_sec`` bounds the
connection and each request).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from winrm.protocol import Protocol

from ..protocol import Secret
from .bounded import bound_protocol

PREFIX = "winrm_"

#: pyinfra's own --user/--password/--port land in host data under these keys (pyinfra_cli).
PYINFRA_FALLBACKS = {"user": "ssh_user", "password": "ssh_password", "port": "ssh_port"}


#: What each key takes, for the fix suggested in error messages.
_EXPECTED = {
    "port": "a TCP port number (1-65535)",
    "scheme": "http or https",
    "transport": "ntlm, kerberos, certificate or basic",
    "server_cert_validation": "true or false",
    "message_encryption": "auto, always or never",
    "read_timeout_sec": "a whole number of seconds above winrm_operation_timeout_sec",
    "operation_timeout_sec": "a whole number of seconds (>= 1)",
    "max_envelope_kb": "the host's MaxEnvelopeSizekb (whole KiB, 500 by default)",
    "allow_insecure": "true or false",
    "system_root": "the host's %SystemRoot%, e.g. C:\\Windows",
    "step_timeout_sec": "a whole number of seconds (>= 1): the default time limit of one step",
}


#: What to install for ``winrm_transport=kerberos``: pywinrm 0.5 authenticates Kerberos through
#: its vendored requests_kerberos, which needs ``pykerberos`` (``winkerberos`` on Windows),
#: the ``kerberos`` extra of pywinrm and of this project.
KERBEROS_HINT = ("winrm_transport=kerberos needs the Kerberos extra: pip install 'pyinfra-iis[kerberos]' "
                 "(pykerberos, built against the system's Kerberos: apt install libkrb5-dev or dnf install "
                 "krb5-devel first; winkerberos on Windows), then a ticket (kinit user@REALM) and the host's "
                 "DNS name, not its IP address")


def kerberos_available() -> bool:
    """Whether pywinrm can do Kerberos here (its ``HAVE_KERBEROS``: pykerberos or winkerberos)."""

    try:
        from winrm import transport
    except ImportError:  # pragma: no cover - pywinrm is a dependency
        return False
    return bool(getattr(transport, "HAVE_KERBEROS", False))


class SettingsError(ValueError):
    """Host data for the connector is unknown, ill-typed or insecure; the message says how
    to fix it and never contains a secret value."""


class WinrmSettings(BaseModel):
    """The ``winrm_*`` host data of one host (field names without the prefix).

    Defaults: ``scheme`` https (http when ``port`` is 5985), ``port`` 5986 for https and 5985
    for http, ``transport`` ntlm, certificate validation on, ``message_encryption`` auto,
    ``read_timeout_sec`` 30 and ``operation_timeout_sec`` 20 (pywinrm's defaults; the read
    timeout must exceed the operation timeout), ``max_envelope_kb`` 500 (the Windows default
    MaxEnvelopeSizekb; 150 on Server 2008 R2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    hostname: str | None = None
    user: str | None = None
    password: Secret | None = Field(default=None, repr=False)
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Literal["http", "https"] | None = None
    transport: Literal["ntlm", "kerberos", "certificate", "basic"] = "ntlm"
    server_cert_validation: bool = True
    ca_trust_path: str | None = None
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    message_encryption: Literal["auto", "always", "never"] = "auto"
    read_timeout_sec: int = Field(default=30, ge=2)
    operation_timeout_sec: int = Field(default=20, ge=1)
    max_envelope_kb: int = Field(default=500, ge=16, le=1024 * 1024)
    allow_insecure: bool = False
    #: The host's %SystemRoot%: the worker is started without cmd.exe, so nothing expands it.
    system_root: str = Field(default="C:\\Windows", pattern=r"^[A-Za-z]:\\[^\"%\r\n]*$")
    #: Default time limit of one step (pyinfra's ``_timeout`` overrides it): a host that accepts
    #: a step and never answers fails after this, not never.
    step_timeout_sec: int = Field(default=3600, ge=1)

    @field_validator("password", mode="before")
    @classmethod
    def _wrap_secret(cls, value: Any) -> Any:
        if value is None or isinstance(value, Secret):
            return value
        if hasattr(value, "get_secret_value") or isinstance(value, str):
            return Secret(value)
        if type(value).__name__ == "HiddenValue":  # pyinfra HiddenValue
            return Secret(str(value.value))
        raise ValueError("must be a string")

    @model_validator(mode="after")
    def _check(self) -> "WinrmSettings":
        if self.read_timeout_sec <= self.operation_timeout_sec:
            raise ValueError("winrm_read_timeout_sec must be greater than winrm_operation_timeout_sec")
        scheme = self.effective_scheme
        if self.transport == "kerberos" and not kerberos_available():
            raise ValueError(KERBEROS_HINT)
        if self.transport == "certificate":
            if scheme != "https":
                raise ValueError("winrm_transport=certificate needs HTTPS (winrm_scheme=https)")
            if not (self.cert_pem and self.cert_key_pem):
                raise ValueError("winrm_transport=certificate needs winrm_cert_pem and winrm_cert_key_pem")
        elif not self.user:
            raise ValueError("no user: set winrm_user (or pass --user)")
        elif self.password is None and self.transport != "kerberos":
            raise ValueError("no password: set winrm_password (or pass --password)")
        if scheme == "https" and not self.server_cert_validation and not self.allow_insecure:
            raise ValueError("winrm_server_cert_validation=false accepts any certificate (anyone on the path can read "
                             "the password): give winrm_ca_trust_path instead, or set winrm_allow_insecure=true")
        if scheme == "http" and not self.allow_insecure:
            if self.transport == "basic":
                raise ValueError("Basic authentication over plain HTTP sends the password readable: use HTTPS, "
                                 "or NTLM/Kerberos, or set winrm_allow_insecure=true")
            if self.message_encryption == "never":
                raise ValueError("winrm_message_encryption=never over plain HTTP sends everything readable: use HTTPS, "
                                 "or set winrm_allow_insecure=true")
        return self

    @property
    def effective_scheme(self) -> str:
        if self.scheme:
            return self.scheme
        return "http" if self.port == 5985 else "https"

    @property
    def effective_port(self) -> int:
        return self.port or (5985 if self.effective_scheme == "http" else 5986)

    def endpoint(self, hostname: str) -> str:
        """Return the WS-Management URL ``scheme://host:port/wsman`` (IPv6 in brackets)."""

        host = self.hostname or hostname
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.effective_scheme}://{host}:{self.effective_port}/wsman"

    def label(self, hostname: str) -> str:
        """Return ``host:port`` for messages."""

        return self.endpoint(hostname).split("://", 1)[1].rsplit("/", 1)[0]

    def make_protocol(self, hostname: str) -> Protocol:
        """Return a new pywinrm ``Protocol`` for this host (a new HTTP session and login).

        Basic and unencrypted HTTP reach pywinrm only when ``allow_insecure`` let them
        through validation; ``message_encryption`` is passed as is. Response bodies are read
        with a bound (:mod:`.bounded`).
        """

        transport = self.transport
        encryption = self.message_encryption
        if transport == "basic":
            encryption = "never" if self.effective_scheme == "http" else encryption
        validation = "validate" if self.server_cert_validation else "ignore"
        protocol = Protocol(
            endpoint=self.endpoint(hostname),
            transport=transport,
            username=self.user,
            password=self.password.reveal() if self.password is not None else None,
            ca_trust_path=self.ca_trust_path or None,  # None: requests' own bundle, not $REQUESTS_CA_BUNDLE
            cert_pem=self.cert_pem,
            cert_key_pem=self.cert_key_pem,
            server_cert_validation=validation,
            read_timeout_sec=self.read_timeout_sec,
            operation_timeout_sec=self.operation_timeout_sec,
            message_encryption=encryption,
            proxy=None,
        )
        # Every response body is read with a bound (a valid reply fits in MaxEnvelopeSize).
        return bound_protocol(protocol, self.max_envelope_kb, self.label(hostname))


def settings_from_host_data(host_name: str, data: Mapping[str, Any]) -> WinrmSettings:
    """Build :class:`WinrmSettings` from a host's data.

    Args:
        host_name: the inventory name, used in messages.
        data: all host data; ``winrm_*`` keys are read, and pyinfra's ``ssh_user``,
            ``ssh_password`` and ``ssh_port`` (from ``--user/--password/--port``) fill
            ``user``/``password``/``port`` when their ``winrm_`` key is absent.

    Raises:
        SettingsError: unknown key, ill-typed value or insecure combination; the message
            names the host, the key and the fix, never a value of a password.
    """

    fields = WinrmSettings.model_fields
    values: dict[str, Any] = {}
    for key, value in data.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        if name not in fields:
            known = ", ".join(PREFIX + field for field in fields)
            raise SettingsError(f"host {host_name}: unknown host data key {key!r}; known keys: {known}")
        if value is not None:
            values[name] = value
    for name, fallback in PYINFRA_FALLBACKS.items():
        if name not in values and data.get(fallback) not in (None, ""):
            values[name] = data[fallback]
    try:
        return WinrmSettings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            key = f"{PREFIX}{location}" if location else "winrm settings"
            message = error["msg"].removeprefix("Value error, ")
            if location in fields:
                expected = _EXPECTED.get(location, "a string")
                message += f"; set {key} to {expected} in the inventory or with --data {key}=..."
            problems.append(f"{key}: {message}" if location else message)
        raise SettingsError(f"host {host_name}: invalid WinRM settings: " + "; ".join(problems)) from None
