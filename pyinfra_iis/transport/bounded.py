"""A bound on the size of every HTTP response the controller reads from a host.

pywinrm reads whole response bodies (``response.content``): a host (or anything on its port)
that sends a huge body would take the controller's memory with it (issue: a 256 MB body took
the controller from 69 MB to 584 MB). A valid WinRM reply fits in the MaxEnvelopeSize the
client asks for (pywinrm's ``Protocol.max_env_sz``) and the host's ``MaxEnvelopeSizekb``
(docs/field-facts.md, "WinRM / WinRS"), so anything larger is refused after reading at most
that many bytes, and the connection is closed.

Without forking pywinrm: :func:`bound_protocol` makes the protocol's transport mount
:class:`BoundedAdapter` (a ``requests`` transport adapter that streams the body and stops at
the limit) on its HTTP session before the first request, including the authentication
requests pywinrm sends while it builds the session.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from winrm.protocol import Protocol
from winrm.transport import Transport

from .errors import ResponseTooLarge

#: Room above the envelope limit for the multipart framing of an encrypted body (NTLM/Kerberos
#: message encryption adds a few hundred bytes) and a SOAP fault's detail.
SLACK = 64 * 1024

#: Bytes read per chunk while streaming a body.
CHUNK = 64 * 1024


class BoundedAdapter(HTTPAdapter):
    """An HTTP adapter that reads at most ``limit`` bytes of a (non-streamed) response body.

    Raises:
        ResponseTooLarge: the ``Content-Length`` or the body read so far exceeds ``limit``;
            the connection is closed, not returned to the pool.
    """

    def __init__(self, limit: int, endpoint: str = "the host", **kwargs: Any):
        super().__init__(**kwargs)
        self.limit = int(limit)
        self.endpoint = endpoint

    def send(self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        # requests' HTTPAdapter never preloads the body (Session.send reads it later, after the
        # authentication hooks, which need the socket for NTLM channel binding): refuse an
        # announced oversize at once, and make the later read stop at the limit.
        response = super().send(request, stream=stream, **kwargs)
        length = response.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > self.limit:
            response.close()
            raise self._too_large(f"announced {int(length)} bytes")
        raw = response.raw
        original = raw.stream
        limit = self.limit

        def bounded_stream(amt: Any = CHUNK, decode_content: Any = None) -> Any:
            total = 0
            for data in original(amt, decode_content=decode_content):
                total += len(data)  # decoded bytes: a compressed bomb is bounded too
                if total > limit:
                    raw.close()  # the connection is dropped, never returned to the pool
                    raise self._too_large(f"more than {limit} bytes read")
                yield data

        raw.stream = bounded_stream  # what Response.iter_content (and .content) reads through
        return response

    def _too_large(self, detail: str) -> ResponseTooLarge:
        return ResponseTooLarge(f"{self.endpoint}: the host sent a reply larger than any valid WinRM reply "
                                f"({detail}; the limit is {self.limit} bytes, from MaxEnvelopeSize): not a WinRM "
                                "service, or a broken one")


class _BoundedTransport(Transport):
    """pywinrm's transport, mounting :class:`BoundedAdapter` before each session's first request."""

    _bounded_limit: int = 0
    _bounded_endpoint: str = "the host"

    def _send_message_request(self, session: requests.Session, prepared_request: requests.PreparedRequest) -> requests.Response:
        if not getattr(session, "_pyinfra_iis_bounded", False):
            adapter = BoundedAdapter(self._bounded_limit, self._bounded_endpoint)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session._pyinfra_iis_bounded = True  # type: ignore[attr-defined]
        return super()._send_message_request(session, prepared_request)


def response_limit(protocol: Protocol, max_envelope_kb: int) -> int:
    """The most bytes a response body may have: the larger of the envelope size the client
    asks for and the host's MaxEnvelopeSizekb, plus :data:`SLACK`."""

    return max(int(protocol.max_env_sz), int(max_envelope_kb) * 1024) + SLACK


def bound_protocol(protocol: Protocol, max_envelope_kb: int, endpoint: str) -> Protocol:
    """Make every response ``protocol`` reads bounded (see the module docstring); returns it."""

    transport = protocol.transport
    if not isinstance(transport, _BoundedTransport):
        transport.__class__ = _BoundedTransport
    transport._bounded_limit = response_limit(protocol, max_envelope_kb)  # type: ignore[attr-defined]
    transport._bounded_endpoint = endpoint  # type: ignore[attr-defined]
    return protocol
