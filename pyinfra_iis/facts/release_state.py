"""The ``releases`` part of ``Get-HostState``: the host's raw report, as the operations read it.

The host reports, per release root (``Get-ReleaseRootState``): ``{"state": release-state.json
text or null, "folders": [{"name", "marker": the completion marker's last write time or null,
"web_config_sha256"}], "logs": [{"name", "size", "modified"}]}``. :func:`convert` decides here:

* a release is **complete** when its folder has a final name (no ``.partial``/``.deleting``)
  and the completion marker (written last by the install; its write time is the completion time);
* ``versions``: complete releases by completion time, oldest first, then the other folders
  (``complete: false``, ``folder`` = the folder's name, to be removed and rebuilt);
* ``current``/``previous``/``history`` from release-state.json (an unreadable file is reported
  as no state: the next switch rewrites it), and ``rolled_back_from``: the release the last
  switch rolled back from, when that switch was a rollback (``operations.release.state_texts``).
* a config revision (``1.4.2+r2``: web.config and the marker only, running ``1.4.2``'s venv) is
  a folder like any other here; ``operations.release.revision_of`` tells its version.
"""

from __future__ import annotations

import json
from typing import Any

SUFFIXES = (".partial", ".deleting")


def convert_root(raw: dict[str, Any]) -> dict[str, Any]:
    """One root's raw report → ``{"current", "previous", "rolled_back_from", "history", "versions", "logs"}``."""

    if "versions" in raw:  # already converted (tests set the processed shape)
        return raw
    try:
        state = json.loads(raw.get("state") or "{}")
    except ValueError:
        state = {}
    state = state if isinstance(state, dict) else {}
    complete, other = [], []
    for folder in raw.get("folders") or []:
        name = folder["name"]
        marker = folder.get("marker")
        final = not name.lower().endswith(SUFFIXES)
        version = name
        for suffix in SUFFIXES:
            if version.lower().endswith(suffix):
                version = version[: -len(suffix)]
        entry = {"version": version, "folder": name, "complete": bool(final and marker is not None),
                 "completed_at": (marker or "").strip() or None, "web_config_sha256": folder.get("web_config_sha256")}
        (complete if entry["complete"] else other).append(entry)
    complete.sort(key=lambda e: (e["completed_at"] or "", e["version"]))
    return {"current": state.get("current"), "previous": state.get("previous"), "rolled_back_from": state.get("rolled_back_from"),
            "history": list(state.get("history") or []),
            "versions": complete + other, "logs": list(raw.get("logs") or []),
            # ARR mode (operations/arr.py): which slot serves and the version each slot runs.
            "active_slot": state.get("active_slot"), "slots": dict(state.get("slots") or {}),
            # ARR mode: "<slot>\\<service id>.xml" -> keyed digest of the slot's WinSW XML (its config).
            "services": dict(raw.get("services") or {}), "entry_point": state.get("entry_point")}


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with ``releases`` converted (in place; returned)."""

    releases = raw.get("releases")
    if isinstance(releases, dict):
        raw["releases"] = {root: convert_root(report or {}) for root, report in releases.items()}
    return raw
