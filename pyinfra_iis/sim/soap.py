"""WS-Management SOAP for the simulator: parse requests, build responses and faults.

Response shapes are copied from real Windows Server answers recorded in
``tests/data/winrs-recordings/*.yml`` (namespace prefixes ``s a x w rsp p``, the
``rsp:Shell`` block of a Create, ``rsp:Stream`` / ``rsp:CommandState`` of a Receive, the
empty body of a Delete). Faults follow the shape Windows sends (``s:Fault`` with
``s:Code/s:Subcode``, ``s:Reason`` and ``f:WSManFault Code=... Machine=...`` holding an
``f:Message``), as seen in pywinrm's and pypsrp's test data captured from real hosts.

Requests are parsed with ``xml.etree.ElementTree``; responses are built as text from
templates (no DOM), which keeps a no-op request around a millisecond.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}

SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CMD_RESOURCE_URI = SHELL_URI + "/cmd"
CONFIG_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"

ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
ACTION_COMMAND = SHELL_URI + "/Command"
ACTION_SEND = SHELL_URI + "/Send"
ACTION_RECEIVE = SHELL_URI + "/Receive"
ACTION_SIGNAL = SHELL_URI + "/Signal"

SIGNAL_TERMINATE = SHELL_URI + "/signal/terminate"
SIGNAL_CTRL_C = SHELL_URI + "/signal/ctrl_c"
SIGNAL_CTRL_BREAK = SHELL_URI + "/signal/ctrl_break"

STATE_DONE = SHELL_URI + "/CommandState/Done"
STATE_RUNNING = SHELL_URI + "/CommandState/Running"

ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

# WS-Management error codes (winerror.h ERROR_WSMAN_*, as the windows crates list them).
ERROR_WSMAN_OPERATION_TIMEDOUT = 2150858793  # 0x80338029
ERROR_WSMAN_UNEXPECTED_SELECTORS = 2150858843  # 0x8033805B, "shell was not found"
ERROR_WSMAN_INVALID_SELECTORS = 2150858813
ERROR_WSMAN_INVALID_SOAP_BODY = 2150858791
ERROR_WSMAN_INVALID_ACTIONURI = 2150858753
ERROR_WSMAN_INVALID_XML = 2150858819
ERROR_WSMAN_RESOURCE_NOT_FOUND = 2150858752

_DURATION_RE = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class SoapError(Exception):
    """A request the simulator cannot parse; answered with a WS-Management fault.

    Attributes:
        code: the WSManFault code (``ERROR_WSMAN_*``).
        subcode: the SOAP subcode, e.g. ``w:InvalidSelectors``.
        reason: the human text of ``s:Reason``.
        message: the text of ``f:Message`` (defaults to ``reason``).
        sender: True for a ``s:Sender`` fault (client's fault), False for ``s:Receiver``.
    """

    def __init__(self, code: int, subcode: str, reason: str, message: str | None = None, sender: bool = True,
                 detail: str | None = None):
        super().__init__(message or reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.message = message or reason
        self.sender = sender
        self.detail = detail


def operation_timeout_fault() -> SoapError:
    """The fault of a Receive that saw no output within OperationTimeout (retryable)."""

    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "
    return SoapError(ERROR_WSMAN_OPERATION_TIMEDOUT, "w:TimedOut", text, sender=False)


def unknown_shell_fault(shell_id: str) -> SoapError:
    """The fault Windows returns for a ShellId it does not know (text from a real host)."""

    return SoapError(
        ERROR_WSMAN_UNEXPECTED_SELECTORS,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. ",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on the "
        "server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. "
        "Provide the correct ShellId or create a new shell and retry the operation. ",
        detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
    )


def unknown_command_fault(command_id: str) -> SoapError:
    """Fault for a CommandId the shell does not know.

    Best guess: real hosts answer with the same code as an unknown shell (docs/field-facts.md:
    2150858843 "unknown shell/command id"); the message text here is the simulator's own.
    """

    return SoapError(
        ERROR_WSMAN_UNEXPECTED_SELECTORS,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors for the resource. ",
        f"The request for the Windows Remote Shell command with CommandId {command_id} failed because the command was "
        "not found on the server (simulator's wording).",
        detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
    )


def parse_duration(text: str | None, default: float) -> float:
    """Parse an xs:duration like ``PT20S``, ``PT7200.000S`` or ``PT1M30S`` into seconds.

    Returns ``default`` when ``text`` is empty or not a duration this parser understands.
    """

    if not text:
        return default
    match = _DURATION_RE.match(text.strip())
    if not match:
        return default
    parts = {key: float(value) for key, value in match.groupdict().items() if value}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


@dataclass
class Request:
    """One parsed WS-Management request.

    Attributes:
        action: the ``wsa:Action`` URI.
        message_id: ``wsa:MessageID`` (echoed as ``RelatesTo``).
        resource_uri: ``wsman:ResourceURI``.
        selectors: ``wsman:SelectorSet`` as a dict (``ShellId`` ...).
        options: ``wsman:OptionSet`` as a dict (``WINRS_SKIP_CMD_SHELL`` ...).
        operation_timeout: ``wsman:OperationTimeout`` in seconds (default 60).
        max_envelope_size: ``wsman:MaxEnvelopeSize`` in bytes, or None when absent.
        body: the first child of ``s:Body`` or None.
    """

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float = 60.0
    max_envelope_size: int | None = None
    body: ET.Element | None = None


def _q(prefix: str, name: str) -> str:
    return "{%s}%s" % (NS[prefix], name)


#: A Stream text longer than this (bytes) is cut out before XML parsing (see _lift_stream_text).
LARGE_TEXT = 16384


def _lift_stream_text(data: bytes) -> tuple[bytes, str | None]:
    """Cut the text of the first ``Stream`` element out of a large envelope.

    A Send of an upload carries ~500 KB of base64 in one ``rsp:Stream``; expat would spend
    about 2 ms per envelope on it. Base64 contains no ``<`` or ``&``, so the text is exactly
    the bytes between the start tag's ``>`` and the next ``<``; the rest is parsed normally
    and the text put back on the element. Texts with ``&`` (entities) are left to the parser.
    """

    if len(data) < LARGE_TEXT:
        return data, None
    tag = data.find(b":Stream ")
    if tag < 0:
        tag = data.find(b"<Stream ")
    if tag < 0:
        return data, None
    start = data.find(b">", tag)
    if start < 0 or data[start - 1:start] == b"/":
        return data, None
    end = data.find(b"<", start)
    if end < 0 or end - start < LARGE_TEXT or data.find(b"&", start, end) >= 0:
        return data, None
    return data[:start + 1] + data[end:], data[start + 1:end].decode("ascii", "replace")


def parse_request(data: bytes) -> Request:
    """Parse a SOAP envelope.

    Raises:
        SoapError: not XML, or no ``wsa:Action`` header.
    """

    data, lifted = _lift_stream_text(data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SoapError(ERROR_WSMAN_INVALID_XML, "w:SchemaValidationError", f"The request is not well-formed XML: {exc}") from None
    header = root.find(_q("s", "Header"))
    if header is None:
        raise SoapError(ERROR_WSMAN_INVALID_XML, "w:SchemaValidationError", "The SOAP envelope has no header.")
    request = Request(action="", message_id="", resource_uri="")
    for child in header:
        tag = child.tag.rsplit("}", 1)[-1]
        text = (child.text or "").strip()
        if tag == "Action":
            request.action = text
        elif tag == "MessageID":
            request.message_id = text
        elif tag == "ResourceURI":
            request.resource_uri = text
        elif tag == "OperationTimeout":
            request.operation_timeout = parse_duration(text, 60.0)
        elif tag == "MaxEnvelopeSize":
            try:
                request.max_envelope_size = int(text)
            except ValueError:
                pass
        elif tag == "SelectorSet":
            request.selectors = {s.get("Name", ""): (s.text or "").strip() for s in child}
        elif tag == "OptionSet":
            request.options = {o.get("Name", ""): (o.text or "").strip() for o in child}
    if not request.action:
        raise SoapError(ERROR_WSMAN_INVALID_ACTIONURI, "w:InvalidMessageInformationHeader", "The request has no wsa:Action header.")
    body = root.find(_q("s", "Body"))
    if body is not None and len(body):
        request.body = body[0]
    if lifted is not None:
        for element in root.iter():
            if element.tag.endswith("}Stream") or element.tag == "Stream":
                element.text = lifted
                break
    return request


# --- responses ------------------------------------------------------------------------

_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    '{extra}'
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    '{rsp}'
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)
_X = 'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
_RSP = 'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '


def _new_id() -> str:
    return str(uuid.uuid4()).upper()


def envelope(action: str, relates_to: str, body: str, transfer_ns: bool = True, rsp_ns: bool = True) -> bytes:
    """Return a response envelope with the header real hosts send and ``body`` inside ``s:Body``."""

    head = _ENVELOPE_OPEN.format(extra=_X if transfer_ns else "", rsp=_RSP if rsp_ns else "")
    return (
        f"{head}<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{_new_id()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To><a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def create_response(request: Request, endpoint: str, shell_id: str, owner: str, client_ip: str,
                    input_streams: str, output_streams: str) -> bytes:
    """Answer a shell Create: ``x:ResourceCreated`` then ``rsp:Shell`` (shape of a real host)."""

    body = (
        f"<x:ResourceCreated><a:Address>{escape(endpoint)}</a:Address><a:ReferenceParameters>"
        f"<w:ResourceURI>{CMD_RESOURCE_URI}</w:ResourceURI><w:SelectorSet>"
        f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
        f"</x:ResourceCreated>"
        f'<rsp:Shell xmlns:rsp="{SHELL_URI}"><rsp:ShellId>{shell_id}</rsp:ShellId>'
        f"<rsp:ResourceUri>{CMD_RESOURCE_URI}</rsp:ResourceUri><rsp:Owner>{escape(owner)}</rsp:Owner>"
        f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        f"<rsp:InputStreams>{escape(input_streams)}</rsp:InputStreams>"
        f"<rsp:OutputStreams>{escape(output_streams)}</rsp:OutputStreams>"
        f"<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
        f"</rsp:Shell>"
    )
    return envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", request.message_id, body)


def command_response(request: Request, command_id: str) -> bytes:
    """Answer a Command with its CommandId."""

    body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    return envelope(SHELL_URI + "/CommandResponse", request.message_id, body)


def send_response(request: Request) -> bytes:
    """Answer a Send (empty ``rsp:SendResponse``)."""

    return envelope(SHELL_URI + "/SendResponse", request.message_id, "<rsp:SendResponse/>")


def signal_response(request: Request) -> bytes:
    """Answer a Signal (empty ``rsp:SignalResponse``)."""

    return envelope(SHELL_URI + "/SignalResponse", request.message_id, "<rsp:SignalResponse/>")


def delete_response(request: Request) -> bytes:
    """Answer a Delete: empty body, no ``x`` and ``rsp`` namespaces (as recorded)."""

    return envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", request.message_id, "",
                    transfer_ns=False, rsp_ns=False)


#: Bytes a ReceiveResponse needs besides its base64 stream text (header, two End streams,
#: CommandState with ExitCode, per-stream element overhead); measured about 1,300 bytes
#: with 36-character ids, rounded up generously.
RECEIVE_OVERHEAD = 2048


def receive_response(request: Request, command_id: str, chunks: list[tuple[str, str]], done: bool,
                     exit_code: int | None) -> bytes:
    """Answer a Receive.

    Args:
        chunks: ``(stream name, base64 text)`` in output order (one ``rsp:Stream`` each).
        done: the process ended and all its output is in this response: adds the two
            ``End="true"`` streams and ``CommandState .../Done`` with ``ExitCode``.
        exit_code: the process exit code (used when ``done``).
    """

    cid = quoteattr(command_id)
    parts = ["<rsp:ReceiveResponse>"]
    for name, text in chunks:
        parts.append(f'<rsp:Stream Name="{name}" CommandId={cid}>{text}</rsp:Stream>')
    if done:
        parts.append(f'<rsp:Stream Name="stdout" CommandId={cid} End="true"></rsp:Stream>')
        parts.append(f'<rsp:Stream Name="stderr" CommandId={cid} End="true"></rsp:Stream>')
        parts.append(f'<rsp:CommandState CommandId={cid} State="{STATE_DONE}"><rsp:ExitCode>{int(exit_code or 0)}'
                     f"</rsp:ExitCode></rsp:CommandState>")
    else:
        parts.append(f'<rsp:CommandState CommandId={cid} State="{STATE_RUNNING}"/>')
    parts.append("</rsp:ReceiveResponse>")
    return envelope(SHELL_URI + "/ReceiveResponse", request.message_id, "".join(parts), transfer_ns=False)


def config_response(request: Request, max_envelope_kb: int) -> bytes:
    """Answer a Get of ``winrm/config`` with the quotas clients read (pypsrp reads
    ``cfg:Config/cfg:MaxEnvelopeSizekb``).

    Best guess of the shape: ``cfg:Config`` with the top-level values of ``winrm get
    winrm/config`` (defaults from Microsoft's "Installation and configuration for Windows
    Remote Management"); the nested Client/Service/Winrs sections are not simulated.
    """

    body = (
        f'<cfg:Config xmlns:cfg="{CONFIG_RESOURCE_URI}"><cfg:MaxEnvelopeSizekb>{int(max_envelope_kb)}</cfg:MaxEnvelopeSizekb>'
        "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms><cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
        "<cfg:MaxProviderRequests>4294967295</cfg:MaxProviderRequests></cfg:Config>"
    )
    return envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse", request.message_id, body,
                    rsp_ns=False)


def fault_response(relates_to: str, error: SoapError, machine: str) -> bytes:
    """Return a WS-Management fault envelope (sent with HTTP status 500)."""

    code = "s:Sender" if error.sender else "s:Receiver"
    detail = f"<w:FaultDetail>{escape(error.detail)}</w:FaultDetail>" if error.detail else ""
    body = (
        f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{escape(error.subcode)}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(error.reason)}</s:Text></s:Reason><s:Detail>{detail}'
        f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{int(error.code)}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(error.message)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    head = (
        '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:e="http://schemas.xmlsoap.org/ws/2004/08/eventing" '
        'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
    )
    return (
        f"{head}<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
        f"<a:MessageID>uuid:{_new_id()}</a:MessageID><a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")
