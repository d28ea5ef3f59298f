"""The ``pythons`` part of ``Get-HostState``: the host's raw registry values, as operations read them.

The host reports, per ``x.y`` (``Get-PythonState``, PEP 514 keys under
``HKLM\\SOFTWARE\\Python\\PythonCore\\<x.y>``): ``{"version": value Version, "install_path":
InstallPath's default value, "executable_path": InstallPath's ExecutablePath, "exists": whether
that python.exe exists}`` (nulls when the key is absent). :func:`convert` gives ``{"installed",
"version", "path", "target_dir"}``: installed only when the registered python.exe exists.
"""

from __future__ import annotations

from typing import Any


def convert_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One ``x.y``'s registry values → ``{"installed", "version", "path", "target_dir"}``."""

    if "installed" in raw:  # already converted
        return raw
    folder = (raw.get("install_path") or "").rstrip("\\") or None
    path = raw.get("executable_path") or (f"{folder}\\python.exe" if folder else None)
    if not raw.get("exists") or not path:
        return {"installed": False, "version": None, "path": None, "target_dir": None}
    return {"installed": True, "version": raw.get("version"), "path": path, "target_dir": folder or path.rsplit("\\", 1)[0]}


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the whole fact ``raw`` with ``pythons`` converted (in place; returned)."""

    pythons = raw.get("pythons")
    if isinstance(pythons, dict):
        raw["pythons"] = {tag: convert_entry(entry or {}) for tag, entry in pythons.items()}
    return raw
