"""Exceptions of the transport layer, independent of pywinrm's and requests' own.

:mod:`pyinfra_iis.transport.winrs` turns every pywinrm/requests failure into one of these
(docs/field-facts.md, "WinRM / WinRS", list what pywinrm raises). Callers decide what to do from the
class alone:

* :class:`AuthenticationFailed` is final: never retried.
* :class:`Recoverable` (and subclasses) mean "rebuild the shell and the worker, then re-send
  the step once" (steps are idempotent).
* anything else derived from :class:`TransportError` is reported as is.

No message built here ever contains a password: only host names, ports, fault codes and the
server's own reason text.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every error raised by :mod:`pyinfra_iis.transport`."""


class AuthenticationFailed(TransportError):
    """The host rejected the credentials (HTTP 401). Never retried."""


class HostUnreachable(TransportError):
    """No TCP connection could be made to the WinRM endpoint (refused, no route, DNS)."""


class TlsRejected(TransportError):
    """The TLS handshake failed: the server certificate is not trusted (unknown CA) or does
    not name the host. Never retried: only a change of settings fixes it."""


class Recoverable(TransportError):
    """A failure after which rebuilding the shell and worker and re-sending the step may help."""


class ConnectionDropped(Recoverable):
    """The HTTP connection broke or no answer came within the read timeout."""


class ShellLost(Recoverable):
    """The server no longer knows the shell or the command (WSMan fault 2150858843), or asks
    for a new shell (WMI error 0x803381A6, operation quota exceeded)."""


class WorkerDied(Recoverable):
    """The worker process ended (WinRS command state Done) while a step was outstanding."""


class WSManFault(TransportError):
    """A WS-Management SOAP fault that is neither retryable nor a lost shell.

    Attributes:
        wsman_code: Microsoft WSManFault code (int) or None.
        wmi_code: MSFT_WmiError code (int) or None.
        reason: the server's reason text.
    """

    def __init__(self, message: str, wsman_code: int | None = None, wmi_code: int | None = None, reason: str = ""):
        super().__init__(message)
        self.wsman_code = wsman_code
        self.wmi_code = wmi_code
        self.reason = reason


class HttpError(TransportError):
    """An unexpected HTTP status without a SOAP fault (pywinrm ``WinRMTransportError``)."""


class ResponseTooLarge(TransportError):
    """The host sent an HTTP response larger than any valid WinRM reply (above MaxEnvelopeSize);
    it was not read further. Never retried."""


class StepTimeout(TransportError):
    """A step did not reply within the caller's time limit (pyinfra ``_timeout``)."""


class WorkerError(TransportError):
    """The worker broke the protocol or failed to load the module."""


class FileTransferError(TransportError):
    """An upload or download failed: refused by the host, or the SHA-256 did not match."""
