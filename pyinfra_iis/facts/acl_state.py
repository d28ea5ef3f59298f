"""The ``acls`` part of ``Get-HostState``: raw SDDL in, what the operations read out.

The host reports each asked path raw (``Get-PathAclState``, ``docs/remote-functions.md``)::

    {"exists": true, "is_directory": true, "is_reparse_point": false,
     "sddl": "D:AI(A;OICI;0x1200a9;;;S-1-5-82-...)(A;OICIID;FA;;;SY)...",
     "sids": {"S-1-5-82-...": "IIS APPPOOL\\api", ...}}

:func:`convert` parses the SDDL here (:mod:`pyinfra_iis.sddl`) into::

    {"exists", "is_directory", "is_reparse_point", "inheritance_protected",
     "entries": [{"principal", "sid", "type", "rights", "inherited", "inheritance", "propagation"}]}

(rights as .NET ``FileSystemRights.ToString()`` writes them, entries in DACL order).

The ``grant_record`` part (``Get-GrantRecord``: the text of the record of rights this project
granted, ``null`` when there is none) becomes ``granted``: the list of recorded grants
(:func:`parse_grant_record`), or ``None`` when there is no record (nothing is then revoked), and
``grant_record_error`` when the text is not a record (also read as no record).
"""

from __future__ import annotations

import json
from typing import Any

from .. import sddl

#: Members of one recorded grant (``operations/rights.py`` writes them).
GRANT_MEMBERS = ("kind", "target", "sid", "principal", "rights")


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


def parse_grant_record(text: str) -> list[dict[str, Any]]:
    """Return the grants of a record's text: ``{"version": 1, "grants": [{"kind": "path"|"key",
    "target": path or thumbprint, "sid", "principal", "rights", "inheritance"?, "propagation"?,
    "store"? (keys)}]}``.

    Raises:
        ValueError: not JSON, or not that shape.
    """

    data = json.loads(text)
    grants = data.get("grants") if isinstance(data, dict) else None
    if not isinstance(grants, list):
        raise ValueError("no 'grants' list")
    for grant in grants:
        if not isinstance(grant, dict) or grant.get("kind") not in ("path", "key") or \
                not all(isinstance(grant.get(m), str) and grant.get(m) for m in GRANT_MEMBERS):
            raise ValueError(f"a grant must have {', '.join(GRANT_MEMBERS)} (kind path or key)")
    return grants


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with its ``acls`` converted (in place; returned for
    chaining). Reports without ``sddl`` (a missing path, or already converted) stay as they are.
    A ``grant_record`` text becomes ``granted`` (see the module docstring)."""

    acls = raw.get("acls")
    if isinstance(acls, dict):
        raw["acls"] = {path: convert_path(e) if isinstance(e, dict) and "sddl" in e else e for path, e in acls.items()}
    if "grant_record" in raw:
        text = raw.pop("grant_record")
        raw["granted"] = None
        if isinstance(text, str) and text.strip():
            try:
                raw["granted"] = parse_grant_record(text.lstrip("\ufeff"))
            except ValueError as exc:
                raw["grant_record_error"] = f"the record of granted rights is unreadable ({exc}); it is rewritten, nothing is revoked from it"
    return raw
