"""Decode PowerShell CLIXML found on stderr into readable text.

When PowerShell writes error records to a redirected stderr it serialises them as CLIXML:
a ``#< CLIXML`` line followed by one ``<Objs>`` document per write. Only ``<S S="Error">``
strings carry error text; progress records (``<Obj S="progress">``) and others are noise.
Strings escape characters XML cannot carry as ``_xHHHH_`` (UTF-16 code units, so characters
outside the BMP appear as a surrogate pair ``_xD83D__xDE00_``; a literal underscore before
``x`` is ``_x005F_``). pywinrm's ``_clean_error_msg`` only handles ``_x000D__x000A_``
(docs/field-facts.md, "WinRM / WinRS"); this module decodes every escape.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

CLIXML_PREFIX = "#< CLIXML"

#: Most characters of stderr decoded per step (the end is kept): bounded time and memory.
MAX_STDERR_CHARS = 1_000_000

_ESCAPES_RE = re.compile(r"(?:_x[0-9A-Fa-f]{4}_)+")
_UNIT_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_PREFIX_RE = re.compile(r"#< CLIXML\r?\n?")
_OBJS_RE = re.compile(r"<Objs\b.*?</Objs>", re.DOTALL)
_ERROR_STRING_RE = re.compile(r"<S\s+S=\"Error\"\s*>(.*?)</S>", re.DOTALL)


def unescape(text: str) -> str:
    """Replace every ``_xHHHH_`` escape of ``text`` by the character it stands for.

    Consecutive escapes are decoded together as UTF-16 code units, so surrogate pairs become
    one character; a lone surrogate becomes U+FFFD.
    """

    def decode_run(match: re.Match[str]) -> str:
        units = b"".join(int(hex_, 16).to_bytes(2, "little") for hex_ in _UNIT_RE.findall(match.group(0)))
        return units.decode("utf-16-le", errors="replace")

    return _ESCAPES_RE.sub(decode_run, text)


def _error_strings(document: str) -> list[str]:
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        # Truncated or odd documents: fall back to a plain scan of the error strings.
        from html import unescape as html_unescape

        return [html_unescape(raw) for raw in _ERROR_STRING_RE.findall(document)]
    return [
        element.text or ""
        for element in root.iter()
        if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") == "Error"
    ]


def decode_stderr(text: str) -> str:
    """Return ``text`` (a command's stderr) with CLIXML replaced by its error text.

    Args:
        text: stderr as decoded text, possibly mixing plain lines and CLIXML blocks.

    Returns:
        the plain text kept as is, each CLIXML block replaced by the concatenated, unescaped
        ``S="Error"`` strings (which carry their own CRLF); progress and other records are
        dropped. Text without ``#< CLIXML`` is returned unchanged.
    """

    if len(text) > MAX_STDERR_CHARS:
        text = "[... earlier stderr cut ...]\r\n" + text[-MAX_STDERR_CHARS:]
    if CLIXML_PREFIX not in text:
        return text
    # One pass, each search starting where the last ended: linear in the text (a regex scan
    # from every unclosed "<Objs" was quadratic).
    parts: list[str] = []
    position = 0
    while True:
        start = text.find("<Objs", position)
        end = text.find("</Objs>", start) if start >= 0 else -1
        if end < 0:
            break
        end += len("</Objs>")
        parts.append(_PREFIX_RE.sub("", text[position:start]))
        parts.extend(unescape(item) for item in _error_strings(text[start:end]))
        position = end
    parts.append(_PREFIX_RE.sub("", text[position:]))
    return "".join(parts)
