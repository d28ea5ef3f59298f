"""Authentication for the simulated WinRM listener: Basic and NTLM, with NTLM message
encryption over HTTP.

Behaviour modelled on a Windows WinRM HTTP listener:

* Unauthenticated requests get ``401`` offering ``Negotiate`` (and ``Basic realm="WSMAN"``
  when Basic is allowed).
* Basic is refused over plain HTTP unless the host allows unencrypted traffic (Windows'
  ``AllowUnencrypted=false`` default; docs/field-facts.md, WinRM): the request gets 401, which
  pywinrm reports as ``InvalidCredentialsError``.
* NTLM (``Authorization: Negotiate <NTLM token>`` or ``NTLM <token>``) authenticates the
  TCP connection; afterwards bodies are ``multipart/encrypted;
  protocol="application/HTTP-SPNEGO-session-encrypted"``, sealed with the NTLM session
  (pyspnego ``wrap_winrm`` / ``unwrap_winrm``, [MS-WSMV] 2.2.9.1.1).

pyspnego's NTLM acceptor reads the accepted credentials from the file named by the
``NTLM_USER_FILE`` environment variable (lines ``DOMAIN:USER:PASSWORD``) while it builds the
context and while it checks the AUTHENTICATE message. Each :class:`Authenticator` writes its
own file (mode 0600, in a private temporary folder) and points the variable at it only for
the duration of those calls, under one process-wide lock, then restores the previous value;
so several simulated hosts in one process never see each other's credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass

import spnego

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'

_ENV_LOCK = threading.Lock()
_LENGTH_RE = re.compile(rb"Length=(\d+)")


class AuthError(Exception):
    """Authentication failed or the request is not acceptable; answer 401."""


class EncryptionError(Exception):
    """An encrypted body could not be parsed or unsealed; answer 400."""


@dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection (NTLM authenticates connections)."""

    ntlm: object | None = None  # a pyspnego context, complete or in progress
    user: str | None = None
    encrypted: bool = False


class Authenticator:
    """Checks credentials for one simulated host.

    Args:
        user: the account name (compared case-insensitively; ``HOST\\user``, ``.\\user`` and
            ``user@host`` forms are accepted too).
        password: its password (compared exactly).
        hostname: the host's NetBIOS name (a valid domain part of the user name).
        allow_unencrypted: accept Basic and unencrypted bodies over plain HTTP.
        allow_basic / allow_ntlm: which schemes the listener offers.
    """

    def __init__(self, user: str, password: str, hostname: str, allow_unencrypted: bool = False,
                 allow_basic: bool = True, allow_ntlm: bool = True):
        self.user = user
        self._password = password
        self.hostname = hostname
        self.allow_unencrypted = allow_unencrypted
        self.allow_basic = allow_basic
        self.allow_ntlm = allow_ntlm
        self._dir = tempfile.mkdtemp(prefix="pyinfra-iis-sim-ntlm-")
        self._file = os.path.join(self._dir, "users")
        fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for domain in ("", hostname, ".", "WORKSTATION"):
                handle.write(f"{domain}:{user}:{password}\n")

    def close(self) -> None:
        """Remove the credential file."""

        shutil.rmtree(self._dir, ignore_errors=True)

    def offers(self) -> list[str]:
        """``WWW-Authenticate`` values of a 401 (one header each)."""

        values = []
        if self.allow_ntlm:
            values.append("Negotiate")
        if self.allow_basic:
            values.append('Basic realm="WSMAN"')
        return values

    # --- Basic --------------------------------------------------------------------------

    def _user_matches(self, name: str) -> bool:
        name = name.strip()
        if "\\" in name:
            domain, _, name = name.partition("\\")
            if domain.upper() not in ("", ".", self.hostname.upper()):
                return False
        elif "@" in name:
            name, _, domain = name.partition("@")
            if domain.upper() != self.hostname.upper():
                return False
        return name.lower() == self.user.lower()

    def check_basic(self, token: str, secure: bool) -> str:
        """Check a Basic token; returns the user.

        Raises:
            AuthError: Basic disabled, plain HTTP without allow_unencrypted, or bad credentials.
        """

        if not self.allow_basic:
            raise AuthError("Basic authentication is disabled on this host")
        if not secure and not self.allow_unencrypted:
            raise AuthError("Basic over HTTP refused: the host does not allow unencrypted traffic")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        ok_user = self._user_matches(user)
        ok_password = hmac.compare_digest(password.encode("utf-8"), self._password.encode("utf-8"))
        if not (ok_user and ok_password):
            raise AuthError("bad credentials")
        return self.user

    # --- NTLM ---------------------------------------------------------------------------

    def _with_user_file(self, action):
        with _ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = self._file
            try:
                return action()
            finally:
                if previous is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = previous

    def step_ntlm(self, connection: ConnectionAuth, token: bytes) -> bytes | None:
        """Feed one NTLM token; returns the token to send back (challenge) or None once the
        connection is authenticated.

        Raises:
            AuthError: NTLM disabled, a malformed token, or bad credentials.
        """

        if not self.allow_ntlm:
            raise AuthError("NTLM is disabled on this host")
        if token[:8] != b"NTLMSSP\x00":
            raise AuthError("not supported by the simulator: only raw NTLM tokens (no SPNEGO/Kerberos)")
        message_type = struct.unpack("<I", token[8:12])[0] if len(token) >= 12 else 0
        if message_type == 1 or connection.ntlm is None:
            connection.ntlm = None
            connection.user = None
            context = self._with_user_file(lambda: spnego.server(protocol="ntlm", service="http"))
            connection.ntlm = context
        context = connection.ntlm
        try:
            out = self._with_user_file(lambda: context.step(token))
        except Exception:
            connection.ntlm = None
            raise AuthError("NTLM authentication failed") from None
        if context.complete:
            principal = context.client_principal or ""
            if not self._user_matches(principal):
                connection.ntlm = None
                raise AuthError("NTLM user is not allowed on this host")
            connection.user = self.user
            return None
        return out

    # --- message encryption ----------------------------------------------------------

    @staticmethod
    def unwrap(connection: ConnectionAuth, body: bytes) -> bytes:
        """Unseal a ``multipart/encrypted`` body.

        Raises:
            EncryptionError: no NTLM session on this connection, or a malformed body.
        """

        context = connection.ntlm
        if context is None or not context.complete:
            raise EncryptionError("encrypted body on a connection without an NTLM session")
        first = body.find(BOUNDARY + b"\r\n")
        second = body.find(BOUNDARY + b"\r\n", first + 1)
        if first < 0 or second < 0:
            raise EncryptionError("malformed multipart/encrypted body")
        length_match = _LENGTH_RE.search(body, first, second)
        if not length_match:
            raise EncryptionError("multipart/encrypted body without OriginalContent Length")
        payload_start = body.find(b"\r\n", second + len(BOUNDARY) + 2)  # end of the Content-Type line
        end = body.rfind(BOUNDARY + b"--")
        if payload_start < 0 or end < 0:
            raise EncryptionError("malformed multipart/encrypted body")
        payload = memoryview(body)[payload_start + 2:end]
        header_length = struct.unpack("<i", payload[:4])[0]
        header = bytes(payload[4:4 + header_length])
        data = bytes(payload[4 + header_length:])
        try:
            message = context.unwrap_winrm(header, data)
        except Exception:
            raise EncryptionError("the encrypted body could not be unsealed") from None
        if len(message) != int(length_match.group(1)):
            raise EncryptionError("the encrypted body's length does not match OriginalContent")
        return message

    @staticmethod
    def wrap(connection: ConnectionAuth, message: bytes) -> bytes:
        """Seal ``message`` as a ``multipart/encrypted`` body for this connection."""

        context = connection.ntlm
        header, data, padding = context.wrap_winrm(message)
        return b"".join((
            BOUNDARY, b"\r\n\tContent-Type: ", ENCRYPTED_PROTOCOL.encode(), b"\r\n",
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(message) + padding).encode(), b"\r\n",
            BOUNDARY, b"\r\n\tContent-Type: application/octet-stream\r\n",
            struct.pack("<i", len(header)), header, data,
            BOUNDARY, b"--\r\n",
        ))
