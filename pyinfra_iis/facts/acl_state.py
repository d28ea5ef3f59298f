"""The ``acls`` part of ``Get-HostState``: raw SDDL in, what the operations read out.

The host reports each asked path raw (``Get-PathAclState``, ``docs/remote-functions.md``)::

    {"exists": true, "is_directory": true, "is_reparse_point": false,
     "sddl": "D:AI(A;OICI;0x1200a9;;;S-1-5-82-...)(A;OICIID;FA;;;SY)...",
     "sids": {"S-1-5-82-...": "IIS APPPOOL\\api", ...}}

:func:`convert` parses the SDDL here (:mod:`pyinfra_iis.sddl`) into::

    {"exists", "is_directory", "is_reparse_point", "inheritance_protected",
     "entries": [{"principal", "sid", "type", "rights", "inherited", "inheritance", "propagation"}]}

(rights as .NET ``FileSystemRights.ToString()`` writes them, entries in DACL order).
"""

from __future__ import annotations

from typing import Any

from .. import sddl


def convert_path(entry: dict[str, Any]) -> dict[str, Any]:
    """Return the processed form of one path's raw report."""

    if not entry.get("exists"):
        return {"exists": False}
    descriptor = sddl.parse_sddl(entry["sddl"])
    return {
        "exists": True,
        "is_directory": bool(entry.get("is_directory")),
        "is_reparse_point": bool(entry.get("is_reparse_point")),
        "inheritance_protected": descriptor.protected,
        "entries": sddl.acl_entries(descriptor, entry.get("sids") or {}),
    }


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with its ``acls`` converted (in place; returned for
    chaining). Reports without ``sddl`` (a missing path, or already converted) stay as they are."""

    acls = raw.get("acls")
    if isinstance(acls, dict):
        raw["acls"] = {path: convert_path(e) if isinstance(e, dict) and "sddl" in e else e for path, e in acls.items()}
    return raw
