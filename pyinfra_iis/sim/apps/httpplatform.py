"""What HttpPlatformHandler reads: the ``<httpPlatform>`` section of a site's web.config, and
how the simulator turns its Windows command line into one it can run here.

Defaults are HttpPlatformHandler 1.2's (Microsoft, "HttpPlatformHandler Configuration
Reference"; docs/field-facts.md "HttpPlatformHandler 1.2"): startupTimeLimit 10 s, startupRetryCount 10,
rapidFailsPerMinute 10, requestTimeout 00:02:00, stdoutLogEnabled false, stdoutLogFile
``httpplatform-stdout``. A path starting with ``.`` is relative to the site root (v1.2).
"""

from __future__ import annotations

import ntpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ...release.webconfig import platform_environment

#: IIS sets this to the port the process must listen on (docs/field-facts.md).
PORT_VARIABLE = "HTTP_PLATFORM_PORT"

_TIMESPAN_RE = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})(?:\.\d+)?$")
_VARIABLE_RE = re.compile(r"%([^%\s]+)%")
_WINDOWS_ABSOLUTE_RE = re.compile(r"^[A-Za-z]:[\\/]")


class WebConfigError(ValueError):
    """web.config is unreadable or has no usable ``<httpPlatform>`` (IIS: 500.19)."""


@dataclass(frozen=True)
class HttpPlatform:
    """The ``<httpPlatform>`` settings of one web.config (times in seconds)."""

    process_path: str
    arguments: str = ""
    startup_time_limit: float = 10.0
    startup_retry_count: int = 10
    rapid_fails_per_minute: int = 10
    request_timeout: float = 120.0
    stdout_log_enabled: bool = False
    stdout_log_file: str = "httpplatform-stdout"
    environment: dict[str, str] = field(default_factory=dict)


def timespan_seconds(text: str) -> float:
    """``[d.]hh:mm:ss[.fff]`` → seconds (``00:02:00`` → 120.0).

    Raises:
        WebConfigError: not a timespan.
    """

    match = _TIMESPAN_RE.match(text.strip())
    if not match:
        raise WebConfigError(f"requestTimeout {text!r} is not a timespan (hh:mm:ss)")
    days = int(match.group("days") or 0)
    return float(days * 86400 + int(match.group("h")) * 3600 + int(match.group("m")) * 60 + int(match.group("s")))


def _int(element: ET.Element, name: str, default: int) -> int:
    value = element.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise WebConfigError(f"httpPlatform {name}={value!r} is not an integer") from None


def parse_web_config(text: str) -> HttpPlatform | None:
    """Parse web.config text; return its ``<httpPlatform>`` or ``None`` when it has none.

    ``<environmentVariables>`` honours ``<clear/>``, ``<add>``/``<environmentVariable>`` items
    and ``<remove>`` in document order.

    Raises:
        WebConfigError: malformed XML, or ``<httpPlatform>`` without ``processPath``.
    """

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise WebConfigError(f"web.config is not well-formed XML: {exc}") from None
    element = root.find("system.webServer/httpPlatform")
    if element is None:
        return None
    process_path = element.get("processPath")
    if not process_path:
        raise WebConfigError("httpPlatform has no processPath (a required attribute)")
    environment = platform_environment(element)
    return HttpPlatform(
        process_path=process_path,
        arguments=element.get("arguments", ""),
        startup_time_limit=float(_int(element, "startupTimeLimit", 10)),
        startup_retry_count=_int(element, "startupRetryCount", 10),
        rapid_fails_per_minute=_int(element, "rapidFailsPerMinute", 10),
        request_timeout=timespan_seconds(element.get("requestTimeout", "00:02:00")),
        stdout_log_enabled=element.get("stdoutLogEnabled", "false").lower() == "true",
        stdout_log_file=element.get("stdoutLogFile", "httpplatform-stdout"),
        environment=environment,
    )


def split_windows_arguments(text: str) -> list[str]:
    """Split a Windows command line as ``CommandLineToArgvW`` / the MSVC runtime do.

    Whitespace separates arguments outside double quotes; ``2n`` backslashes before ``"`` give
    ``n`` backslashes and a quote toggle, ``2n+1`` give ``n`` and a literal ``"``; other
    backslashes are literal (Microsoft docs, "Parsing C command-line arguments").
    """

    args: list[str] = []
    current: list[str] = []
    in_quotes = started = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            j = i
            while j < len(text) and text[j] == "\\":
                j += 1
            count = j - i
            if j < len(text) and text[j] == '"':
                current.append("\\" * (count // 2))
                if count % 2:
                    current.append('"')
                    i = j + 1
                else:
                    i = j
                started = True
                continue
            current.append("\\" * count)
            started, i = True, j
            continue
        if char == '"':
            if in_quotes and i + 1 < len(text) and text[i + 1] == '"':
                current.append('"')  # "" inside quotes: a literal quote (MSVC 2008+)
                i += 2
                continue
            in_quotes, started = not in_quotes, True
        elif char in " \t" and not in_quotes:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if started:
        args.append("".join(current))
    return args


def expand_variables(text: str, environment: Mapping[str, str]) -> str:
    """Replace ``%NAME%`` by its value (names case-insensitive, as on Windows); unknown
    variables stay as written, as ``ExpandEnvironmentStrings`` leaves them."""

    folded = {name.upper(): value for name, value in environment.items()}
    return _VARIABLE_RE.sub(lambda m: folded.get(m.group(1).upper(), m.group(0)), text)


def map_argument(argument: str, map_path: Callable[[str], str]) -> str:
    """Map a Windows path in one argument: the whole argument (``C:\\x``) or the value of
    ``--name=C:\\x``; anything else is returned unchanged."""

    if _WINDOWS_ABSOLUTE_RE.match(argument):
        return map_path(argument)
    name, sep, value = argument.partition("=")
    if sep and _WINDOWS_ABSOLUTE_RE.match(value):
        return f"{name}={map_path(value)}"
    return argument


def resolve_site_relative(path: str, site_root: str) -> str:
    """HttpPlatformHandler 1.2: a path starting with ``.`` is relative to the site root
    (``.\\logs\\out`` or ``..\\logs\\out``); others are returned unchanged."""

    if path.startswith("."):
        return ntpath.normpath(ntpath.join(site_root, path))
    return path


@dataclass(frozen=True)
class InitializationPage:
    """One ``system.webServer/applicationInitialization/add``: ``page`` (``initializationPage``)
    and ``host_name`` (``hostName``, the Host header of the warm-up request; default localhost)."""

    page: str
    host_name: str = "localhost"


def parse_initialization_pages(text: str) -> list[InitializationPage] | None:
    """The ``<applicationInitialization>`` pages of a web.config text (Microsoft Learn,
    "Application Initialization <applicationInitialization>"): ``None`` when the section is
    absent or the text unreadable, else the listed pages in order (may be empty)."""

    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    element = root.find("system.webServer/applicationInitialization")
    if element is None:
        return None
    pages = []
    for item in element:
        if item.tag == "clear":
            pages.clear()
        elif item.tag == "add" and item.get("initializationPage"):
            pages.append(InitializationPage(item.get("initializationPage"), item.get("hostName") or "localhost"))
    return pages
