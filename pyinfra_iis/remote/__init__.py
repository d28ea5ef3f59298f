"""The PowerShell that runs on the host: the worker loop and the project's module.

``worker.ps1`` is the read-eval loop started once per host (see ``pyinfra_iis.protocol``);
``PyinfraIis/*.ps1`` are the module's functions, one file per concern, joined in name order
into one module source by :func:`module_source`; hosts keep it in an administrators-only
cache named by its SHA-256 and receive it only when missing (``pyinfra_iis.protocol``). All of it
targets Windows PowerShell 5.1 (WebAdministration and IISAdministration do not load under
PowerShell 7; docs/field-facts.md, IIS).
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

#: A line that opens a here-string (``@'`` or ``@"`` at its end) and one that closes it.
_HERE_STRING_OPEN = re.compile(r"@['\"]\s*$")
_HERE_STRING_CLOSE = re.compile(r"^['\"]@")


def read_remote_file(name: str) -> str:
    """Return the text of a file under ``pyinfra_iis/remote/``."""

    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def module_files() -> list[str]:
    """Return the names of the module's files, ``PyinfraIis/*.ps1``, in load order."""

    folder = resources.files(__package__).joinpath("PyinfraIis")
    return sorted(f"PyinfraIis/{entry.name}" for entry in folder.iterdir() if entry.name.endswith(".ps1"))


@functools.lru_cache(maxsize=1)
def module_source() -> str:
    """Return the whole module source: the module header then each file in name order.

    Read once per controller process (the files are package data and do not change during a
    run): every host's worker loads it, and re-reading 19 files per host showed in a 50-host run.
    """

    return "\n\n".join(read_remote_file(name) for name in module_files())


def blank_comment_lines(source: str) -> str:
    """Return PowerShell ``source`` with comment-only lines and whole-line ``<# ... #>`` blocks
    made empty; every other line, and the number of lines, unchanged.

    Conservative by design: a line is blanked only when it starts (after spaces) with ``#``
    (``#Requires`` kept) or belongs to a ``<# ... #>`` block that starts and ends its lines;
    here-string bodies (from a line ending ``@'``/``@"`` to a line starting ``'@``/``"@``) and
    comments after code are kept. Line numbers in PowerShell's error positions still match
    the files. ``tests/test_powershell_module.py`` checks with tree-sitter that the module's
    code (every token that is not a comment) is the same before and after.
    """

    lines = []
    in_here_string = in_block = False
    for line in source.split("\n"):
        text = line.strip()
        if in_here_string:
            lines.append(line)
            in_here_string = not _HERE_STRING_CLOSE.match(line)
        elif in_block:
            lines.append("")
            in_block = not text.endswith("#>")
        elif text.startswith("<#") and "#>" not in text[2:]:
            lines.append("")
            in_block = True
        elif text.startswith("<#") and text.endswith("#>") and text.count("#>") == 1:
            lines.append("")
        elif text.startswith("#") and not text.lower().startswith("#requires"):
            lines.append("")
        else:
            lines.append(line)
            in_here_string = bool(_HERE_STRING_OPEN.search(line)) and not text.startswith("<#")
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def host_module_source() -> str:
    """Return what every host's worker loads: :func:`module_source` with its comments blanked
    (:func:`blank_comment_lines`), about two thirds of the size. The module is sent to a host
    only when its cache lacks this version, and its documentation stays in the files.
    """

    return blank_comment_lines(module_source())


def module_version() -> str:
    """Return a short SHA-256 of :func:`module_source`, to tell module builds apart."""

    return hashlib.sha256(module_source().encode("utf-8")).hexdigest()[:16]
