"""Validated value types for inventory data (docs/design.md "Layers" item 1).

Every type here is an ``Annotated`` pydantic type (or a small value class with a pydantic
schema): inventory values are checked and normalised when a model is built, so operations
never see a raw string where a Windows path, a host name, a thumbprint, a principal or a
duration is meant. Error messages name the reason and, where useful, the fix; they show the
offending value with ``repr`` (control characters escaped) and never a secret.

Sources are cited per type; "[V]/[R]/[I]" refer to ``docs/field-facts.md``.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable

from pydantic import AfterValidator, BeforeValidator, Field, GetCoreSchemaHandler, SecretStr
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "BindingIp",
    "ControllerPath",
    "Duration",
    "EnvVarName",
    "HostName",
    "PoolName",
    "Port",
    "Principal",
    "PythonVersion",
    "ReleaseVersion",
    "SecretStr",
    "Sha256Hex",
    "SiteName",
    "SslFlags",
    "SSL_FLAG_BITS",
    "show",
    "Thumbprint",
    "TimeOfDay",
    "TimeSpanRange",
    "WindowsPath",
    "WindowsPathOrUnc",
    "WholeMinutes",
    "pool_of_principal",
    "ssl_flag_names",
]


def show(value: Any) -> str:
    """Return ``value`` quoted for a message: text as ``'C:\\x'`` with only control characters
    escaped (``\\n``, ``\\x00``), so Windows paths stay readable; anything else as ``repr``."""

    if not isinstance(value, str):
        return repr(value)
    escaped = "".join(c if 32 <= ord(c) != 127 else repr(c)[1:-1] for c in value)
    return f"'{escaped}'"


def _fail(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, context or None)


def _control_chars(text: str) -> list[str]:
    return [c for c in text if ord(c) < 32 or ord(c) == 127]


def _refuse_bool(value: Any) -> Any:
    # pydantic's lax int accepts True/False; a port or a flag set of True is a typo.
    if isinstance(value, bool):
        raise _fail("not_a_number", "expected a number, not a boolean")
    return value


# --- Windows paths ------------------------------------------------------------------------

#: Characters Windows refuses in a file or folder name (Microsoft docs, "Naming Files, Paths,
#: and Namespaces"): ``< > : " / \\ | ? *`` and control characters 0-31. ``/`` and ``\\`` are
#: separators here and ``:`` is only allowed after the drive letter.
_PATH_FORBIDDEN = set('<>"|?*')

#: Reserved device names (same page): refused as a segment, also with an extension (``NUL.txt``).
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}

#: MAX_PATH (260) including the terminating NUL, so 259 usable characters. IIS, msiexec and
#: many tools still break on longer paths even where long paths are enabled; our release
#: layout (``<root>\\releases\\<version>\\...``) stays far below it.
MAX_PATH = 259


def _check_segments(segments: Iterable[str], shown: str) -> None:
    for segment in segments:
        if segment == "":
            raise _fail("windows_path", "{path} has an empty segment (doubled separator)", path=shown)
        if segment in (".", ".."):
            raise _fail("windows_path", "{path} contains a '.' or '..' segment; give the path without relative parts", path=shown)
        if segment[-1] in ". ":
            raise _fail("windows_path", "{path}: segment {segment} ends with a dot or a space, which Windows strips silently", path=shown, segment=show(segment))
        bad = sorted(set(segment) & (_PATH_FORBIDDEN | {":"}))
        if bad:
            raise _fail("windows_path", "{path} contains characters Windows refuses in names: {chars}", path=shown, chars=" ".join(bad))
        stem = segment.split(".", 1)[0].rstrip(" ").upper()
        if stem in _RESERVED_NAMES:
            raise _fail("windows_path", "{path}: {segment} is a reserved device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)", path=shown, segment=show(segment))


def _common_path_checks(value: Any) -> str:
    if not isinstance(value, (str, Path)) or isinstance(value, bytes):
        raise _fail("windows_path", "expected a path as text")
    text = str(value).replace("/", "\\")
    shown = show(text)
    if _control_chars(text):
        raise _fail("windows_path", "{path} contains control characters (newline, tab, ...)", path=shown)
    if len(text) > MAX_PATH:
        raise _fail("windows_path", "{path} is {length} characters long; Windows MAX_PATH allows {max}", path=shown, length=len(text), max=MAX_PATH)
    return text


_DRIVE_RE = re.compile(r"^([A-Za-z]):\\")


def _windows_path(value: Any) -> str:
    text = _common_path_checks(value)
    match = _DRIVE_RE.match(text)
    if not match:
        raise _fail("windows_path", "{path} is not an absolute drive path; write it like C:\\inetpub\\api", path=show(text))
    rest = text[3:].rstrip("\\")
    if rest:
        _check_segments(rest.split("\\"), show(text))
    return match.group(1).upper() + ":\\" + rest


_UNC_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _unc_path(text: str) -> str:
    parts = text[2:].split("\\")
    if len(parts) < 3 or not parts[1]:
        raise _fail("windows_path", "{path} is not a UNC file path; write it like \\\\server\\share\\file.msi", path=show(text))
    host = parts[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _UNC_HOST_RE.match(host):
            raise _fail("windows_path", "{path}: {host} is not a valid server name", path=show(text), host=show(host)) from None
    _check_segments(parts[1:], show(text))
    return text


def _windows_path_or_unc(value: Any) -> str:
    text = _common_path_checks(value)
    if text.startswith("\\\\"):
        return _unc_path(text)
    return _windows_path(text)


#: An absolute drive path on the Windows host, normalised: ``/`` becomes ``\\``, the drive
#: letter is upper-case, no trailing separator. Refused: relative paths, ``.``/``..``
#: segments, ``< > : " | ? *``, control characters (newline included), segments ending in a
#: dot or space, reserved device names, more than 259 characters (MAX_PATH).
WindowsPath = Annotated[str, AfterValidator(_windows_path)]

#: :data:`WindowsPath`, or a UNC path ``\\\\server\\share\\...`` the host reads (MSI sources).
WindowsPathOrUnc = Annotated[str, AfterValidator(_windows_path_or_unc)]


#: Environment variables a path IIS expands may start with (``expanded="true"`` attributes of
#: IIS_schema.xml: physicalPath, log directories). ``Get-HostState`` reports their values
#: (``environment``), so the controller compares such paths by their expanded value.
EXPANDABLE_VARIABLES = ("SystemDrive", "SystemRoot", "windir", "ProgramData", "ProgramFiles", "ALLUSERSPROFILE", "PUBLIC")

_VARIABLE_PREFIX_RE = re.compile(r"^%([^%]*)%(\\|$)")


def _iis_path(value: Any) -> str:
    text = _common_path_checks(value)
    match = _VARIABLE_PREFIX_RE.match(text)
    if match is None:
        return _windows_path(text)
    name = next((n for n in EXPANDABLE_VARIABLES if n.lower() == match.group(1).lower()), None)
    if name is None:
        raise _fail("windows_path", "{path}: %{name}% is not a variable the host reports ({known}); write the path with a drive letter, like C:\\inetpub\\api",
                    path=show(text), name=match.group(1), known=", ".join(EXPANDABLE_VARIABLES))
    rest = text[match.end():].rstrip("\\")
    if rest:
        _check_segments(rest.split("\\"), show(text))
    return f"%{name}%" + ("\\" + rest if rest else "")


#: A path IIS expands (``physicalPath``, log directories): a :data:`WindowsPath`, or one that
#: starts with a variable of :data:`EXPANDABLE_VARIABLES` as IIS itself writes them
#: (``%SystemDrive%\\inetpub\\wwwroot``; kept as written, the variable's name spelled as listed).
#: Compared with the host's value by its expansion (``iis.defaults.same_value``).
IisPath = Annotated[str, AfterValidator(_iis_path)]


def _controller_path(value: Any) -> Path:
    if not isinstance(value, (str, Path)):
        raise _fail("controller_path", "expected a file path on the controller")
    text = str(value)
    if not text.strip():
        raise _fail("controller_path", "the controller file path is empty")
    if _control_chars(text) or "\x00" in text:
        raise _fail("controller_path", "{path} contains control characters", path=show(text))
    return Path(text).expanduser()


#: A file on the controller (uploaded to the host), as a ``pathlib.Path`` with ``~`` expanded.
#: Existence is checked by :func:`pyinfra_iis.models.report.validate_inventory` (``check_files``),
#: so a model can be built for a host whose files live elsewhere.
ControllerPath = Annotated[Path, BeforeValidator(_controller_path)]


# --- Network ------------------------------------------------------------------------------

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _host_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("host_name", "expected a host name as text")
    if value == "":
        return ""
    shown = show(value)
    if _control_chars(value) or value != value.strip():
        raise _fail("host_name", "{host} contains spaces or control characters", host=shown)
    if not value.isascii():
        raise _fail("host_name", "{host} is not ASCII; write an internationalised name in its xn-- (punycode) form", host=shown)
    name = value.lower()
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise _fail("host_name", "{host} is an IP address; a host header is a DNS name (RFC 6066 forbids IP literals in SNI): put the address in `ip` and leave host_name empty", host=shown)
    if len(name) > 253:
        raise _fail("host_name", "{host} is longer than 253 characters (RFC 1123)", host=shown)
    body = name[2:] if name.startswith("*.") else name
    labels = body.split(".")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise _fail("host_name", "{host}: label {label} is not an RFC 1123 label (letters, digits, inner hyphens, 1-63 characters; '*' only as a whole leading '*.' label)", host=shown, label=show(label))
    if name.startswith("*.") and len(labels) < 2:
        raise _fail("host_name", "{host}: a wildcard host header needs a domain with at least two labels, like *.example.com", host=shown)
    if labels[-1].isdigit():
        raise _fail("host_name", "{host}: the top-level label is all digits, which is not a DNS name", host=shown)
    return name


#: A binding host header: RFC 1123 labels, at most 253 characters, lower-cased. A leading
#: ``*.`` wildcard is allowed: IIS 10 (Windows Server 2016+) supports wildcard host headers
#: such as ``*.contoso.com`` ("What's new in IIS 10.0", Microsoft IIS team blog). IP literals
#: are refused: the address belongs in the binding's ``ip``, and SNI cannot carry an IP
#: (RFC 6066 section 3). ``""`` means "any host name" (IIS writes ``*:443:``).
HostName = Annotated[str, AfterValidator(_host_name)]

#: A TCP port, 1-65535 (booleans refused).
Port = Annotated[int, BeforeValidator(_refuse_bool), Field(ge=1, le=65535)]


def _binding_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("binding_ip", "expected '*' or an IP address as text")
    if value == "*":
        return value
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise _fail("binding_ip", "{ip} is neither '*' (all unassigned) nor an IPv4/IPv6 address", ip=show(value)) from None
    return str(address)


#: A binding IP: ``*`` (All Unassigned) or an IPv4/IPv6 literal (normalised; brackets dropped,
#: :attr:`pyinfra_iis.models.site.Binding.binding_information` adds them back for IPv6).
BindingIp = Annotated[str, AfterValidator(_binding_ip)]


# --- Hashes -------------------------------------------------------------------------------

#: Invisible characters that copy-paste adds around a thumbprint: U+200E LEFT-TO-RIGHT MARK
#: (the certificate dialog / certmgr.msc puts one before the value: Microsoft KB 2023835
#: "Certificate thumbprint displayed in MMC certificate snap-in has extra invisible unicode
#: character"; dotnet/corefx #31463; ansible/ansible #60130), U+200F, U+FEFF, U+202A/U+202C
#: and non-breaking space.
_INVISIBLE = "\u200e\u200f\ufeff\u00a0\u202a\u202c"


def _thumbprint(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("thumbprint", "expected a thumbprint as text")
    cleaned = "".join(c for c in value if c not in _INVISIBLE and not c.isspace() and c != ":")
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", cleaned):
        raise _fail("thumbprint", "{value} is not a SHA-1 thumbprint (40 hexadecimal digits; spaces and colons are ignored)", value=show(value))
    return cleaned.upper()


#: A certificate thumbprint: 40 hex digits, upper-case (as ``Cert:\\`` and IIS show it);
#: spaces, colons and the invisible marks MMC copy-paste adds are stripped.
Thumbprint = Annotated[str, AfterValidator(_thumbprint)]


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f]{64}", value.strip()):
        raise _fail("sha256", "expected a SHA-256 digest: 64 hexadecimal digits")
    return value.strip().lower()


#: A SHA-256 digest as 64 hex digits, lower-case (``sha256sum`` / ``Get-FileHash`` output).
Sha256Hex = Annotated[str, AfterValidator(_sha256)]


# --- IIS names ----------------------------------------------------------------------------

#: Characters refused in every name we manage, beyond IIS's own lists: quotes, backtick,
#: ``$`` and ``%`` (PowerShell / cmd / IIS ``expanded`` attribute expansion). IIS would accept
#: some of them, but names also appear in ``IIS AppPool\\<name>`` principals, folder names,
#: appcmd/netsh command lines and logs, where they are a trap.
_POLICY_FORBIDDEN = set("'`$%\u2018\u2019")


def _iis_name(value: Any, *, kind: str, forbidden: str, max_length: int, source: str) -> str:
    if not isinstance(value, str):
        raise _fail(kind, "expected a name as text")
    shown = show(value)
    if not value.strip():
        raise _fail(kind, "the name is empty")
    if value != value.strip():
        raise _fail(kind, "{name} starts or ends with whitespace", name=shown)
    if _control_chars(value):
        raise _fail(kind, "{name} contains control characters", name=shown)
    if len(value) > max_length:
        raise _fail(kind, "{name} is longer than {max} characters", name=shown, max=max_length)
    bad = sorted(set(value) & set(forbidden))
    if bad:
        raise _fail(kind, "{name} contains {chars}, refused by IIS ({source})", name=shown, chars=" ".join(bad), source=source)
    bad = sorted(set(value) & _POLICY_FORBIDDEN)
    if bad:
        raise _fail(kind, "{name} contains {chars}: quotes, backtick, $ and % are refused in names (they expand in PowerShell, cmd and IIS expanded attributes)", name=shown, chars=" ".join(bad))
    if set(value) == {"."}:
        raise _fail(kind, "{name} is not a name", name=shown)
    return value


#: IIS ``applicationPoolName`` validation (IAppHostPropertySchema::ValidationType, Microsoft
#: docs; same list as ``ApplicationPoolCollection.InvalidApplicationPoolNameCharacters``).
POOL_NAME_FORBIDDEN = '|<>&\\"/[]+=;:,?*@'

#: WAS refuses longer pool ids (event 5050 "The application pool id ... exceeds length
#: limits"); 64 is the limit commonly reported for IIS 7+ [R].
POOL_NAME_MAX = 64

#: IIS ``siteName`` validation refuses ``/ \\ ?`` (IAppHostPropertySchema::ValidationType) and IIS
#: Manager refuses ``? : @ & = , / \\ < > " * |`` (IIS team blog, "Why does the IIS7 UI limit
#: certain characters?"). We refuse the union so a site can always be managed in the UI.
SITE_NAME_FORBIDDEN = '/\\?:@&=,<>"*|'

#: No documented IIS limit; our policy keeps site names short enough for folder and log names.
SITE_NAME_MAX = 128


def _pool_name(value: Any) -> str:
    return _iis_name(value, kind="pool_name", forbidden=POOL_NAME_FORBIDDEN, max_length=POOL_NAME_MAX, source="applicationPoolName validation")


def _site_name(value: Any) -> str:
    return _iis_name(value, kind="site_name", forbidden=SITE_NAME_FORBIDDEN, max_length=SITE_NAME_MAX, source="siteName validation / IIS Manager")


#: An application pool name: 1-64 characters, none of ``| < > & \\ " / [ ] + = ; : , ? * @``,
#: no control characters, no leading/trailing whitespace, none of ``' ` $ %``.
PoolName = Annotated[str, AfterValidator(_pool_name)]

#: A site name: 1-128 characters, none of ``/ \\ ? : @ & = , < > " * |``, no control
#: characters, no leading/trailing whitespace, none of ``' ` $ %``. Dots are allowed
#: (``www.contoso.com`` is a common site name).
SiteName = Annotated[str, AfterValidator(_site_name)]


def _env_var_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", value):
        shown = show(value) if isinstance(value, str) else type(value).__name__
        raise _fail("env_var_name", "{name} is not a portable environment variable name (letter or _, then letters, digits, _; at most 255)", name=shown)
    return value


#: An environment variable name, ``[A-Za-z_][A-Za-z0-9_]*`` up to 255 characters. Windows
#: allows more (anything but ``=``), but Python's ``os.environ`` users and shells expect this.
EnvVarName = Annotated[str, AfterValidator(_env_var_name)]


# --- Versions -----------------------------------------------------------------------------


def _release_version(value: Any) -> str:
    from packaging.version import InvalidVersion, Version

    if not isinstance(value, str):
        raise _fail("release_version", "expected a version as text, e.g. '1.4.2'")
    shown = show(value)
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}", value) or value.endswith("."):
        raise _fail("release_version", "{version} is not usable as a release folder name (letters, digits, . + _ -, at most 64, no trailing dot)", version=shown)
    try:
        Version(value)
    except InvalidVersion:
        raise _fail("release_version", "{version} is not a PEP 440 version (e.g. 1.4.2, 2024.11.1, 1.5.0rc1, 1.5.0+build.7)", version=shown) from None
    return value


#: A release version: a PEP 440 version (``packaging.version``) that is also a safe folder name
#: under ``<root>\\releases\\`` (docs/design.md "Releases"): ``[0-9A-Za-z][0-9A-Za-z.+_-]*``, at most
#: 64 characters, kept as written (not normalised) so the folder name is what the operator gave.
ReleaseVersion = Annotated[str, AfterValidator(_release_version)]

#: Python minor versions we support on hosts (python.org Windows installers; 3.10 is the
#: oldest still receiving security fixes, 3.14 the newest).
SUPPORTED_PYTHON = ((3, 10), (3, 11), (3, 12), (3, 13), (3, 14))


def _python_version(value: Any) -> str:
    if isinstance(value, float):
        raise _fail("python_version", "write the Python version as text ('3.12'): a float turns 3.10 into 3.1")
    if not isinstance(value, str):
        raise _fail("python_version", "expected a Python version as text, e.g. '3.12' or '3.12.7'")
    match = re.fullmatch(r"3\.(\d{1,2})(?:\.(\d{1,3}))?", value.strip())
    if not match:
        raise _fail("python_version", "{version} is not a Python version like '3.12' or '3.12.7'", version=show(value))
    if (3, int(match.group(1))) not in SUPPORTED_PYTHON:
        raise _fail("python_version", "Python {version} is not supported; use 3.10 to 3.14", version=value.strip())
    return value.strip()


#: A CPython version ``3.X`` or ``3.X.Y`` with X in 10..14.
PythonVersion = Annotated[str, BeforeValidator(_python_version)]


# --- sslFlags -----------------------------------------------------------------------------

#: ``binding/@sslFlags`` bits (docs/field-facts.md "sslFlags bits" [V/R]; IIS 10 1809+ for 4..64).
SSL_FLAG_BITS = {
    "Sni": 1,
    "CentralCertStore": 2,
    "DisableHTTP2": 4,
    "DisableOCSPStapling": 8,
    "DisableQUIC": 16,
    "DisableTLS13": 32,
    "DisableLegacyTLS": 64,
}
_SSL_FLAG_LOOKUP = {name.lower(): bit for name, bit in SSL_FLAG_BITS.items()}


def _ssl_flags(value: Any) -> int:
    if isinstance(value, bool):
        raise _fail("ssl_flags", "sslFlags is a number 0-127 or a set of names, not a boolean")
    if isinstance(value, int):
        if not 0 <= value <= 127:
            raise _fail("ssl_flags", "sslFlags {value} is outside 0-127 (bits 1 Sni .. 64 DisableLegacyTLS)", value=value)
        return value
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    if isinstance(value, (list, tuple, set, frozenset)):
        bits = 0
        for name in value:
            bit = _SSL_FLAG_LOOKUP.get(str(name).strip().lower()) if isinstance(name, str) else None
            if bit is None:
                raise _fail("ssl_flags", "unknown sslFlags name {name}; known: {known}", name=show(name), known=", ".join(SSL_FLAG_BITS))
            bits |= bit
        return bits
    raise _fail("ssl_flags", "sslFlags must be a number 0-127 or a list of names like ['Sni']")


#: ``sslFlags`` as the integer IIS stores; accepts ``0..127``, a list/set of names
#: (case-insensitive) or a comma-separated string ``"Sni, DisableHTTP2"``.
SslFlags = Annotated[int, BeforeValidator(_ssl_flags)]


def ssl_flag_names(bits: int) -> list[str]:
    """Return the names of the bits set in ``bits`` (an sslFlags integer), lowest bit first."""

    return [name for name, bit in SSL_FLAG_BITS.items() if bits & bit]


# --- Durations ----------------------------------------------------------------------------

_UNIT_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_TIMESPAN_RE = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


@dataclass(frozen=True, order=True)
class Duration:
    """A whole number of seconds, written to IIS as a TimeSpan.

    Accepted input: an ``int`` (seconds), a ``datetime.timedelta`` of whole seconds, IIS
    TimeSpan text ``"hh:mm:ss"`` or ``"d.hh:mm:ss"`` (hours may exceed 23 without a day part,
    as the schema's ``29:00:00``), or units ``"90s"``, ``"2m"``, ``"1h30m"``, ``"1d"``.
    Fractions of a second are refused (no attribute we manage needs them).

    Attributes:
        seconds: the length in seconds (>= 0).
    """

    seconds: int

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        """Parse ``value`` (see the class docstring).

        Raises:
            PydanticCustomError: not a duration (inside pydantic this becomes a validation error).
        """

        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise _fail("duration", "a duration is a number of seconds or text like '00:02:00' or '2m', not a boolean")
        if isinstance(value, int):
            if value < 0:
                raise _fail("duration", "a duration cannot be negative")
            return cls(value)
        if isinstance(value, datetime.timedelta):
            if value.microseconds or value.total_seconds() < 0:
                raise _fail("duration", "a duration is a whole, non-negative number of seconds")
            return cls(int(value.total_seconds()))
        if isinstance(value, str):
            return cls(_parse_duration_text(value))
        raise _fail("duration", "a duration is a number of seconds or text like '00:02:00' or '2m'")

    def to_timespan(self) -> str:
        """Return the TimeSpan text IIS writes: ``"00:02:00"``, ``"1.05:00:00"``."""

        days, rest = divmod(self.seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
        return f"{days}.{text}" if days else text

    def __str__(self) -> str:
        return self.to_timespan()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda d: d.to_timespan()),
        )


def _parse_duration_text(value: str) -> int:
    text = value.strip()
    shown = show(value)
    if not text:
        raise _fail("duration", "the duration is empty")
    if text.isdigit():
        return int(text)
    match = _TIMESPAN_RE.match(text)
    if match:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        if minutes > 59 or seconds > 59 or (match.group(1) and hours > 23):
            raise _fail("duration", "{value}: minutes and seconds must be 00-59 (and hours 00-23 after a day part)", value=shown)
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    match = _UNIT_RE.match(text.lower())
    if match and any(match.groups()):
        days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    raise _fail("duration", "{value} is not a duration; write 'hh:mm:ss', 'd.hh:mm:ss', '90s', '2m', '1h', '1d' or a number of seconds", value=shown)


@dataclass(frozen=True)
class TimeSpanRange:
    """IIS ``validationType="timeSpanRange"``: ``validationParameter="min,max,granularity"``.

    All three are seconds; the value must lie in ``[minimum, maximum]`` and be a multiple of
    ``granularity`` (60 = whole minutes). Use as ``Annotated[Duration, TimeSpanRange(...)]``
    with the numbers copied from the attribute in the IIS schema.
    """

    minimum: int
    maximum: int
    granularity: int = 1

    def check(self, value: Duration) -> Duration:
        """Return ``value`` if it fits; raise ``PydanticCustomError`` naming the range."""

        if not self.minimum <= value.seconds <= self.maximum:
            raise _fail(
                "duration_range",
                "{value} is outside the allowed range {low} to {high}",
                value=value.to_timespan(),
                low=Duration(self.minimum).to_timespan(),
                high=Duration(self.maximum).to_timespan(),
            )
        if value.seconds % self.granularity:
            unit = "whole minutes" if self.granularity == 60 else f"multiples of {self.granularity} s"
            raise _fail("duration_granularity", "{value} must be in {unit}", value=value.to_timespan(), unit=unit)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


#: Whole minutes, 0 to 30 days: HttpPlatformHandler ``requestTimeout`` ("whole minutes only",
#: docs/field-facts.md; schema ``timeSpanRange 0,2592000,60``).
WholeMinutes = Annotated[Duration, TimeSpanRange(0, 2592000, 60)]


def _time_of_day(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        return value.strip() + ":00"
    return value


#: A time of day for ``recycling/periodicRestart/schedule`` (schema ``timeSpanRange
#: 0,86399,60``: 00:00 to 23:59, whole minutes). Also accepts ``"03:30"`` (hh:mm).
TimeOfDay = Annotated[Duration, BeforeValidator(_time_of_day), TimeSpanRange(0, 86399, 60)]


# --- Principals ---------------------------------------------------------------------------

#: Characters Windows refuses in user and group names (Microsoft docs, "Naming conventions in
#: Active Directory": ``" / \\ [ ] : ; | = , + * ? < >``, and ``@`` outside the UPN form).
_ACCOUNT_FORBIDDEN = set('"/\\[]:;|=,+*?<>@')
#: NetBIOS domain names refuse ``\\ / : * ? " < > |`` and are at most 15 characters (same page).
_DOMAIN_FORBIDDEN = set('\\/:*?"<>|')

#: Well-known prefixes and bare names, normalised to the case Windows displays.
_PREFIXES = {"iis apppool": "IIS AppPool", "builtin": "BUILTIN", "nt authority": "NT AUTHORITY", "nt service": "NT SERVICE"}
_BARE = {"iis_iusrs": "IIS_IUSRS", "iusr": "IUSR", "everyone": "Everyone", "administrators": "Administrators", "users": "Users", "system": "SYSTEM"}


def _account_part(part: str, whole: str, *, max_length: int = 256) -> str:
    if not part or part != part.strip() or len(part) > max_length:
        raise _fail("principal", "{principal}: account name is empty, padded or longer than {max} characters", principal=show(whole), max=max_length)
    bad = sorted(set(part) & (_ACCOUNT_FORBIDDEN | _POLICY_FORBIDDEN))
    if bad or _control_chars(part):
        raise _fail("principal", "{principal}: account name contains characters Windows or this project refuses: {chars}", principal=show(whole), chars=" ".join(bad) or "control characters")
    return part


def _principal(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("principal", "expected a principal as text, e.g. 'IIS AppPool\\\\api' or 'CONTOSO\\\\svc-api'")
    if _control_chars(value):
        raise _fail("principal", "{principal} contains control characters", principal=show(value))
    text = value.strip()
    if "\\" in text:
        domain, _, account = text.partition("\\")
        prefix = _PREFIXES.get(domain.lower())
        if prefix == "IIS AppPool":
            return f"IIS AppPool\\{_pool_name(account)}"
        if prefix:
            return f"{prefix}\\{_account_part(account, value)}"
        if not domain or len(domain) > 15 or set(domain) & (_DOMAIN_FORBIDDEN | _POLICY_FORBIDDEN) or domain != domain.strip():
            raise _fail("principal", "{principal}: {domain} is not a NetBIOS domain or computer name (1-15 characters, none of \\ / : * ? \" < > |)", principal=show(value), domain=show(domain))
        return f"{domain.upper()}\\{_account_part(account, value)}"
    if "@" in text:
        user, _, domain = text.partition("@")
        _account_part(user, value)
        try:
            _host_name(domain)
        except PydanticCustomError:
            raise _fail("principal", "{principal}: {domain} is not a DNS domain", principal=show(value), domain=show(domain)) from None
        if not domain or "*" in domain:
            raise _fail("principal", "{principal}: a UPN needs a DNS domain after @", principal=show(value))
        return f"{user}@{domain.lower()}"
    bare = _BARE.get(text.lower())
    return bare or _account_part(text, value)


#: A Windows security principal for ACLs: ``IIS AppPool\\<pool>`` (pool name validated),
#: ``IIS_IUSRS``, ``IUSR``, ``BUILTIN\\X``, ``NT AUTHORITY\\X``, ``DOMAIN\\user``,
#: ``user@domain`` or a local account name. Well-known prefixes and names are normalised to the
#: case Windows shows (``iis apppool\\api`` -> ``IIS AppPool\\api``); NetBIOS domains are
#: upper-cased. docs/field-facts.md, IIS: ``IIS AppPool\\<pool>``, ``IIS_IUSRS``, ``IUSR`` [V].
Principal = Annotated[str, AfterValidator(_principal)]


def pool_of_principal(principal: str) -> str | None:
    """Return the pool name of an ``IIS AppPool\\<pool>`` principal, else ``None``."""

    prefix = "IIS AppPool\\"
    return principal[len(prefix):] if principal.startswith(prefix) else None
