"""The contract between the controller and the PowerShell worker on a host.

This module is shared by the connector (``pyinfra_iis.transport``), the simulator
(``pyinfra_iis.sim``) and the operations/facts, so that all three speak exactly the same
language. See ``docs/design.md`` ("Remote calls", "The connector").

Remote calls
============

Every command an operation or fact yields is exactly one call of one function of the
project's PowerShell module with one JSON argument::

    Set-IisAppPool -Json '{"name":"api","startMode":"AlwaysRunning"}'

The JSON sits inside a single-quoted PowerShell literal in which ``'`` (and its typographic
variants, which PowerShell also treats as quotes) is doubled; values are never spliced into
script text, so injection is impossible by construction. :func:`remote_call` builds such a
command (secrets become pyinfra ``HiddenValue`` bits, so pyinfra prints them masked);
:func:`parse_remote_call` reverses it (the simulator uses it).

Worker protocol (version 2)
===========================

The connector starts one ``powershell.exe`` per host per run with ``-EncodedCommand`` of
``remote/worker.ps1`` preceded by ``$ModuleSha256 = '<hex>'`` (:func:`worker_command_line`;
comments and indentation removed). Then:

* **Start-up** (worker stdout, before reading anything): when PowerShell does not run in
  FullLanguage mode (WDAC/AppLocker), one line ``FATAL_MARKER + "language mode <mode>"`` and
  exit code 3. Otherwise a **hello** reply with id 0 whose stdout is
  ``{"protocol": 2, "module": "loaded"|"missing"}``: the worker loaded the module from its
  cache ``%ProgramData%\\pyinfra-iis\\module\\<sha256>.ps1`` (folder owned by and open to
  SYSTEM and Administrators only, content checked against ``$ModuleSha256`` before loading),
  or needs it. Before the hello the controller sends at most one small remote call (it
  waits in the pipe and costs no extra round trip); a script, the module or any large frame
  waits for the hello, so no large Send reaches a process that is not reading yet. When the
  hello says ``missing``, the module follows and that call is sent again.
* **Frames** (client → worker stdin): one line, ``base64(UTF-8 JSON)`` + ``"\\n"``:

  - ``{"id", "op": "module", "source"}``: the module source (sent only when the hello says
    ``missing``); its SHA-256 must equal ``$ModuleSha256``; it is written to the cache and loaded.
  - ``{"id", "op": "call", "name", "json"}``: a remote call (:func:`remote_call`) sent as
    DATA: the worker checks that ``name`` is a function of the module and invokes it with
    ``AddCommand(name).AddParameter("Json", json)``; the JSON (and any secret in it) never
    becomes script text.
  - ``{"id", "op": "run", "script"}``: any other PowerShell (``server.shell``/``exec``), run
    as a script in a local scope with the preferences, ``$LASTEXITCODE`` and location reset.
    ``exit N`` ends the step with rc N, output so far kept.

  A frame whose id equals the last step's is not run again: its reply is written again (the
  controller re-sends a step whose Send or Receive was lost with a dropped connection).
* **Upload data** (client → worker stdin): one line ``"+" + base64(bytes)`` + ``"\\n"``,
  appended to the upload opened by ``Start-FileUpload``; it produces no reply. A write
  error is kept and reported by ``Complete-FileUpload``.
* **Reply** (worker stdout): CRLF, then ``REPLY_MARKER + base64(UTF-8 JSON)`` + CRLF, the
  JSON being ``{"id": int, "rc": int, "stdout": str, "stderr": str}``. The client finds the
  marker anywhere in a line; other text is noise written around PowerShell's pipeline and is
  kept as extra output of the current step. The worker's standard handles point at NUL once
  it has captured the WinRS pipes, so native programs cannot read frames or write replies.
* On stdin EOF the worker exits 0. The connector ends a run by deleting the shell (WinRS
  Delete ends its processes): one request.

A step therefore costs one WinRS Send and (usually) one Receive.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from pyinfra.api import HiddenValue, StringCommand
from pydantic import SecretStr

PROTOCOL_VERSION = 2

#: Name under which the project's PowerShell module is loaded into the worker.
MODULE_NAME = "PyinfraIis"

#: Windows PowerShell 5.1 under the default ``%SystemRoot%`` (no cmd.exe in between, so no
#: variable expansion; docs/field-facts.md, WinRM). Hosts whose Windows folder is elsewhere set host
#: data ``winrm_system_root`` (:func:`powershell_exe`).
POWERSHELL_EXE = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"

#: Arguments before ``-EncodedCommand``.
POWERSHELL_ARGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

#: Prefix of a reply line on the worker's stdout.
REPLY_MARKER = "##pyinfra-iis-reply## "

#: Prefix of the line a worker writes when it cannot start (then exit code 3).
FATAL_MARKER = "##pyinfra-iis-fatal## "

#: Prefix of an upload data line on the worker's stdin.
DATA_PREFIX = "+"

# PowerShell treats these as single quotes inside a single-quoted string (the ASCII
# apostrophe and U+2018..U+201B); each must be doubled to stand for itself.
_PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_PS_QUOTE_RE = re.compile(f"([{_PS_SINGLE_QUOTES}])")

# Function names of the module: Verb-Noun, letters only.
_FUNCTION_RE = re.compile(r"^[A-Z][a-z]+-[A-Z][A-Za-z0-9]+$")

_CALL_RE = re.compile(
    r"^(?P<name>[A-Z][a-z]+-[A-Z][A-Za-z0-9]+) -Json '(?P<literal>(?:[^" + _PS_SINGLE_QUOTES + r"]|["
    + _PS_SINGLE_QUOTES + r"]{2})*)'$",
    re.DOTALL,
)


class ProtocolError(Exception):
    """A frame or a remote call that does not follow this protocol."""


# --- Remote calls -----------------------------------------------------------------------


def ps_single_quote(text: str) -> str:
    """Return ``text`` as the body of a PowerShell single-quoted literal (quotes doubled).

    The result still needs the surrounding quotes; see :func:`ps_literal`.
    """

    return _PS_QUOTE_RE.sub(r"\1\1", text)


def ps_literal(text: str) -> str:
    """Return ``text`` as a complete PowerShell single-quoted string literal."""

    return "'" + ps_single_quote(text) + "'"


def _unquote_ps(body: str) -> str:
    return re.sub(f"([{_PS_SINGLE_QUOTES}])\\1", r"\1", body)


class Secret(SecretStr):
    """A value that must reach the host but never be shown.

    Wrap a password in ``Secret`` inside a :func:`remote_call` payload: pyinfra then shows
    ``*MASKED*`` in its output while the raw value is sent. ``str()`` and ``repr()`` of a
    ``Secret`` never reveal the value.

    Also the type to wrap secrets with in inventories and group data
    (``pyinfra_iis.Secret(os.environ["API_PFX_PASSWORD"])``): pyinfra's ``debug-inventory``
    (and ``--json``) prints host data through ``str``/``to_json``, so it shows ``*MASKED*``.
    It is a pydantic ``SecretStr``, so every secret field of the models takes it as is, and
    the connector's ``winrm_password`` too.
    """

    def __init__(self, value: Any):
        if isinstance(value, SecretStr):  # pydantic SecretStr, or a Secret
            value = value.get_secret_value()
        elif type(value).__name__ == "HiddenValue" and hasattr(value, "value"):  # pyinfra's
            value = value.value
        super().__init__(str(value))

    def reveal(self) -> str:
        """Return the raw secret (only for sending it)."""

        return self.get_secret_value()

    def to_json(self) -> str:
        """What pyinfra's CLI prints for this value (``pyinfra_cli.util.json_encode``)."""

        return "*MASKED*"

    def __str__(self) -> str:
        return "*MASKED*"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.get_secret_value() == self.get_secret_value()

    def __hash__(self) -> int:
        return hash(self.get_secret_value())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self.get_secret_value(),))


#: Placeholder of a secret while the payload is serialised: random per call (``{nonce}``), so no
#: value a caller passes can forge it and be taken for a secret's position.
_SECRET_TOKEN = "\x00pyinfra-iis-secret-{nonce}-{index}\x00"


def remote_call(function: str, payload: Mapping[str, Any] | None = None) -> StringCommand:
    """Build the command ``<function> -Json '<payload as JSON>'``.

    Args:
        function: a function of the project's PowerShell module, ``Verb-Noun``.
        payload: JSON-serialisable mapping; :class:`Secret` values anywhere inside are sent
            raw but shown masked.

    Returns:
        a pyinfra ``StringCommand`` whose raw value is the PowerShell call and whose masked
        value replaces every secret with ``*MASKED*``.

    Raises:
        ProtocolError: the function name is not of the form ``Verb-Noun``.
    """

    if not _FUNCTION_RE.match(function):
        raise ProtocolError(f"not a module function name: {function!r}")

    import secrets as _random

    secrets: list[str] = []
    nonce = _random.token_hex(16)

    def default(value: Any) -> Any:
        if isinstance(value, Secret):
            secrets.append(value.reveal())
            return _SECRET_TOKEN.format(nonce=nonce, index=len(secrets) - 1)
        if hasattr(value, "get_secret_value"):
            return default(Secret(value))
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    # ensure_ascii keeps the command pure ASCII: nothing depends on console code pages.
    text = json.dumps(payload or {}, separators=(",", ":"), sort_keys=True, default=default)
    quoted = ps_single_quote(text)

    bits: list[Any] = []
    rest = quoted
    for index, raw in enumerate(secrets):
        # The token went through json.dumps, which escapes NUL as \u0000.
        token = json.dumps(_SECRET_TOKEN.format(nonce=nonce, index=index))
        before, _, rest = rest.partition(token)
        bits.append(before)
        bits.append(HiddenValue(ps_single_quote(json.dumps(raw))))
    bits.append(rest)

    return StringCommand(f"{function} -Json '", *bits, "'", _separator="")


def parse_remote_call(script: str) -> tuple[str, dict[str, Any]] | None:
    """Parse a script of exactly the form :func:`remote_call` produces.

    Returns:
        ``(function, payload)``, or ``None`` when ``script`` is not a remote call.

    Raises:
        ProtocolError: it has the form of a call but the JSON is invalid or not an object.
    """

    match = _CALL_RE.match(script.strip())
    if not match:
        return None
    try:
        payload = json.loads(_unquote_ps(match.group("literal")))
    except ValueError as exc:
        raise ProtocolError(f"invalid JSON argument to {match.group('name')}: {exc}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"the JSON argument to {match.group('name')} must be an object")
    return match.group("name"), payload


# --- Worker frames ----------------------------------------------------------------------


def worker_script(module_sha256: str = "") -> str:
    """Return the worker's read-eval loop as sent: ``$ModuleSha256 = '<hex>'`` then
    ``remote/worker.ps1`` without comment lines, blank lines and indentation (the command
    line is the largest request of a run that changes nothing)."""

    from .remote import read_remote_file

    if module_sha256 and not re.fullmatch(r"[0-9a-f]{64}", module_sha256):
        raise ProtocolError(f"not a SHA-256: {module_sha256!r}")
    lines = (line.strip() for line in read_remote_file("worker.ps1").splitlines())
    body = "\n".join(line for line in lines if line and not line.startswith("#"))
    return f"$ModuleSha256 = '{module_sha256}'\n{body}\n"


def split_worker_script(script: str) -> tuple[str, str] | None:
    """Reverse :func:`worker_script`: ``(module_sha256, body)``, or None when ``script`` is
    not a worker script (the simulator uses it)."""

    match = re.match(r"\$ModuleSha256 = '([0-9a-f]{64}|)'\n", script)
    if not match or script != worker_script(match.group(1)):
        return None
    return match.group(1), script[match.end():]


def module_sha256(source: str) -> str:
    """SHA-256 (hex) of a module source as UTF-8: the name of its file in the host's cache."""

    import hashlib

    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def powershell_exe(system_root: str = "C:\\Windows") -> str:
    """Full path of Windows PowerShell 5.1 under ``system_root`` (the host's ``%SystemRoot%``)."""

    return system_root.rstrip("\\") + "\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"


def encode_powershell_command(script: str) -> str:
    """Return ``script`` as PowerShell's ``-EncodedCommand`` value (base64 of UTF-16LE)."""

    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def decode_powershell_command(value: str) -> str:
    """Reverse :func:`encode_powershell_command`.

    Raises:
        ProtocolError: ``value`` is not base64 of UTF-16LE text.
    """

    try:
        return base64.b64decode(value, validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"invalid -EncodedCommand value: {exc}") from None


def worker_command_line(module_sha256: str = "", system_root: str = "C:\\Windows") -> tuple[str, list[str]]:
    """Return ``(executable, arguments)`` that start the worker (no cmd.exe) expecting the
    module whose SHA-256 is ``module_sha256``."""

    return powershell_exe(system_root), [*POWERSHELL_ARGS, "-EncodedCommand", encode_powershell_command(worker_script(module_sha256))]


def encode_step(step_id: int, script: str) -> bytes:
    """Return the stdin line of a step: a ``call`` frame when ``script`` is a remote call
    (:func:`parse_remote_call`; its JSON travels as data), else a ``run`` frame."""

    try:
        call = parse_remote_call(script)
    except ProtocolError:
        call = None
    if call is not None:
        literal = _CALL_RE.match(script.strip())
        assert literal is not None
        return _encode_frame({"id": step_id, "op": "call", "name": call[0], "json": _unquote_ps(literal.group("literal"))})
    return _encode_frame({"id": step_id, "op": "run", "script": script})


def encode_module(step_id: int, source: str, name: str = MODULE_NAME) -> bytes:
    """Return the stdin line that sends the module ``source`` (cached and loaded by the worker)."""

    return _encode_frame({"id": step_id, "op": "module", "name": name, "source": source})


def encode_data(chunk: bytes) -> bytes:
    """Return the stdin line carrying one chunk of upload data."""

    return DATA_PREFIX.encode("ascii") + base64.b64encode(chunk) + b"\n"


def _encode_frame(frame: dict[str, Any]) -> bytes:
    raw = json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(raw) + b"\n"


def decode_request_line(line: bytes | str) -> dict[str, Any]:
    """Decode one stdin line into a frame (used by the simulator).

    Returns:
        a step frame (``{"id", "op", ...}``) or ``{"op": "data", "data": bytes}``.

    Raises:
        ProtocolError: the line is not a valid frame.
    """

    if isinstance(line, bytes):
        line = line.decode("ascii", "replace")
    line = line.strip()
    try:
        if line.startswith(DATA_PREFIX):
            return {"op": "data", "data": base64.b64decode(line[1:], validate=True)}
        frame = json.loads(base64.b64decode(line, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"invalid worker frame: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("id"), int) or frame.get("op") not in ("run", "module", "call"):
        raise ProtocolError("invalid worker frame: needs an integer id and op run, call or module")
    return frame


@dataclass(frozen=True)
class Reply:
    """The result of one step: exit code, stdout and stderr as text."""

    id: int
    rc: int
    stdout: str
    stderr: str


def encode_reply(reply: Reply) -> bytes:
    """Return the stdout line of a reply (used by the simulator)."""

    raw = json.dumps(
        {"id": reply.id, "rc": reply.rc, "stdout": reply.stdout, "stderr": reply.stderr},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return b"\r\n" + REPLY_MARKER.encode("ascii") + base64.b64encode(raw) + b"\r\n"


def decode_reply_line(line: str) -> Reply | None:
    """Decode one stdout line; ``None`` when it holds no reply (see :func:`split_reply_line`).

    Raises:
        ProtocolError: it holds the marker but no valid reply.
    """

    return split_reply_line(line)[1]


def split_reply_line(line: str) -> tuple[str, Reply | None]:
    """Split one stdout line into the text before the reply marker and the reply.

    The marker may be anywhere in the line: a step that wrote text without a newline (a
    native program, ``[Console]::Write``) must not hide the reply.

    Returns:
        ``(line, None)`` when the line holds no marker, else ``(text before it, reply)``.

    Raises:
        ProtocolError: it holds the marker but no valid reply.
    """

    line = line.rstrip("\r\n")
    position = line.find(REPLY_MARKER)
    if position < 0:
        return line, None
    try:
        data = json.loads(base64.b64decode(line[position + len(REPLY_MARKER):], validate=True).decode("utf-8"))
        return line[:position], Reply(int(data["id"]), int(data["rc"]), str(data["stdout"]), str(data["stderr"]))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"invalid worker reply: {exc}") from None


# --- Secret digests ---------------------------------------------------------------------

SECRET_DIGEST_PREFIX = "hmac-sha256:"

#: Bytes of a digest key (:func:`new_digest_key`); the module refuses shorter keys.
DIGEST_KEY_BYTES = 32

_process_digest_key: bytes | None = None


def new_digest_key() -> bytes:
    """Return a fresh random digest key (``DIGEST_KEY_BYTES`` bytes from :mod:`secrets`)."""

    import secrets

    return secrets.token_bytes(DIGEST_KEY_BYTES)


def process_digest_key() -> bytes:
    """The digest key of this controller process: random, made on first use, never written
    anywhere; it reaches hosts only as a :class:`Secret` argument of ``Get-HostState`` (shown
    masked)."""

    global _process_digest_key
    if _process_digest_key is None:
        _process_digest_key = new_digest_key()
    return _process_digest_key


def digest_key_argument() -> str:
    """The ``digest_key`` member of a ``Get-HostState`` call: base64 of
    :func:`process_digest_key` (wrap it in :class:`Secret` when sending it)."""

    return base64.b64encode(process_digest_key()).decode("ascii")


def secret_digest(value: str, key: bytes | None = None) -> str:
    """Return the digest a fact reports instead of a secret value.

    Facts never return secret values (pool environment variables, passwords). The controller
    sends ``Get-HostState`` a random key (:func:`process_digest_key`, masked in every log); the
    host reports ``"hmac-sha256:" + hex(HMAC-SHA256(key, UTF-8(value)))`` and operations compare
    it with the digest of the desired value under the same key. The PowerShell module's
    ``ConvertTo-SecretDigest`` computes the same string.

    Why keyed: a fact's output is printed at ``-vvv``. An unkeyed hash of a weak password in a CI
    log could be brute-forced offline; without the key (random per run, never shown) the digest
    says nothing about the value.

    Args:
        value: the secret value.
        key: the digest key; default :func:`process_digest_key` (the simulator passes the key
            it received).
    """

    import hashlib
    import hmac

    key = process_digest_key() if key is None else key
    return SECRET_DIGEST_PREFIX + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
