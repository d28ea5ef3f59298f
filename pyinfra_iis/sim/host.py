"""The simulated Windows Server host: its file system and its state document.

A :class:`SimHost` lives in a state directory:

* ``DIR/C/...``: drive ``C:`` (one folder per drive letter), so ``C:\\foo\\bar.txt`` is
  ``DIR/C/foo/bar.txt``. :meth:`SimHost.path` maps Windows paths and refuses anything that
  could escape the drive folder.
* ``DIR/host.json``: the host state document (host name, features, installed products,
  certificates, ACLs, services, counters, ...), written atomically and reloaded on start, so a
  restarted simulator is the same host.

Other parts of the simulator (and the Python implementations of module functions in
``sim/functions/``) read and change ``host.state`` under ``host.lock`` and call
``host.save()``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

#: Counters every host keeps (all start at 0). ``http_requests``: HTTP requests received on
#: /wsman; ``shells``: WinRS shells created; ``processes``: processes started (one per WinRS
#: Command); ``workers``: of those, pyinfra-iis workers; ``bytes_in``/``bytes_out``: HTTP body
#: bytes; ``faults``: WS-Management faults returned; ``dropped``: connections dropped by
#: fault injection; ``function_calls``: module function calls dispatched; ``module_loads``:
#: modules loaded into workers; ``worker_steps``: frame lines (steps) workers received.
COUNTER_NAMES = (
    "http_requests",
    "shells",
    "processes",
    "workers",
    "bytes_in",
    "bytes_out",
    "faults",
    "dropped",
    "function_calls",
    "module_loads",
    "worker_steps",
)

_DRIVE_PATH_RE = re.compile(r"^(?P<drive>[A-Za-z]):[\\/](?P<rest>.*)$", re.DOTALL)
_FORBIDDEN_NAME_CHARS = set('<>:"|?*') | {chr(c) for c in range(32)}


class SimPathError(ValueError):
    """A Windows path the simulator refuses to map (relative, UNC, escaping its drive, ...)."""


def default_hostname(state_dir: Path) -> str:
    """Return a NetBIOS-style host name derived from the state folder's name.

    Upper case, ``A-Z 0-9 -`` only, at most 15 characters (the NetBIOS limit), e.g.
    ``/tmp/web01`` → ``WEB01``; an unusable name gives ``SIMHOST``.
    """

    name = re.sub(r"[^A-Z0-9-]", "-", state_dir.resolve().name.upper()).strip("-")
    return (name or "SIMHOST")[:15].rstrip("-") or "SIMHOST"


def fresh_state(hostname: str, user: str) -> dict[str, Any]:
    """Return the state document of a freshly installed Windows Server 2022 host."""

    return {
        "version": 1,
        "hostname": hostname,
        "os": {"caption": "Microsoft Windows Server 2022 Standard", "version": "10.0.20348", "build": 20348},
        "users": [user],
        "features": {},
        "products": {},
        "certificates": {},
        "acls": {},
        "services": {},
        "counters": {name: 0 for name in COUNTER_NAMES},
    }


class SimHost:
    """A simulated Windows host stored under ``state_dir``.

    Args:
        state_dir: folder holding ``host.json`` and the drive folders; created if missing.
        user: the administrator account WinRM clients log in as (default ``"admin"``); it
            becomes part of the state on first start.
        hostname: host name for a fresh host; default derived from ``state_dir``
            (:func:`default_hostname`). An existing ``host.json`` keeps its name.

    Attributes:
        state: the host state document (a JSON-compatible dict); change it only while
            holding ``lock``, then call :meth:`save`.
        lock: a re-entrant lock guarding ``state`` and the counters.
    """

    STATE_FILE = "host.json"

    def __init__(self, state_dir: str | os.PathLike[str], user: str = "admin", hostname: str | None = None):
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.user = user
        loaded = self._load()
        if loaded is None:
            self.state = fresh_state(hostname or default_hostname(self.state_dir), user)
            self.save()
        else:
            self.state = loaded
            self.state.setdefault("counters", {})
            for name in COUNTER_NAMES:
                self.state["counters"].setdefault(name, 0)
            if user not in self.state.setdefault("users", []):
                self.state["users"].append(user)
        self._dirty = False
        (self.state_dir / "C").mkdir(exist_ok=True)

    # --- state document -------------------------------------------------------------

    @property
    def hostname(self) -> str:
        """The host name (``COMPUTERNAME``), upper case."""

        return self.state["hostname"]

    @property
    def counters(self) -> dict[str, int]:
        """A copy of the counters (see :data:`COUNTER_NAMES`)."""

        with self.lock:
            return dict(self.state["counters"])

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``; persisted by the next :meth:`save`."""

        with self.lock:
            counters = self.state["counters"]
            counters[name] = counters.get(name, 0) + amount
            self._dirty = True

    def reset_counters(self) -> None:
        """Set every counter to 0."""

        with self.lock:
            self.state["counters"] = {name: 0 for name in COUNTER_NAMES}
            self._dirty = True

    #: File of the Script Block Logging record (one JSON line per script block).
    SCRIPT_BLOCK_LOG = "script-block-log.jsonl"

    def log_script_block(self, text: str) -> None:
        """Record a script block's text as Windows does with Script Block Logging on (event
        4104, Microsoft-Windows-PowerShell/Operational): every script block PowerShell
        compiles. The simulator records the worker's ``-EncodedCommand`` text, the module
        source when it is loaded and each script step; a remote call sent as data compiles
        nothing new. Kept beside ``host.json`` (``python -m pyinfra_iis.sim show``)."""

        with self.lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.state_dir / self.SCRIPT_BLOCK_LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps({"event": 4104, "text": text}) + "\n")

    def script_block_log(self) -> list[str]:
        """The texts recorded by :meth:`log_script_block`, oldest first."""

        path = self.state_dir / self.SCRIPT_BLOCK_LOG
        if not path.exists():
            return []
        with self.lock:
            return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def snapshot(self) -> dict[str, Any]:
        """Return a deep copy of the state document."""

        with self.lock:
            return copy.deepcopy(self.state)

    def save(self) -> None:
        """Write ``host.json`` atomically (temporary file in the same folder, then rename)."""

        with self.lock:
            text = json.dumps(self.state, indent=2, sort_keys=True)
            self._dirty = False
        fd, tmp = tempfile.mkstemp(prefix=".host.", suffix=".json", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.state_dir / self.STATE_FILE)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def save_if_dirty(self) -> None:
        """Save only when counters or state changed through :meth:`count` since the last save."""

        if self._dirty:
            self.save()

    def _load(self) -> dict[str, Any] | None:
        path = self.state_dir / self.STATE_FILE
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    # --- file system ------------------------------------------------------------------

    def path(self, windows_path: str) -> Path:
        """Map an absolute Windows path to the file under the state directory.

        ``C:\\inetpub\\app\\web.config`` → ``DIR/C/inetpub/app/web.config``. Both ``\\`` and
        ``/`` separate components (as on Windows). The drive letter is upper-cased; other
        components keep their case (unlike NTFS, the simulator's file system is case
        sensitive: a known difference).

        Raises:
            SimPathError: the path is relative or drive-relative (``foo``, ``C:foo``), UNC or
                a device path (``\\\\server\\share``, ``\\\\?\\C:\\``), contains ``..`` or
                characters Windows forbids in names, or is not a string.
        """

        if not isinstance(windows_path, str) or not windows_path:
            raise SimPathError(f"not a Windows path: {windows_path!r}")
        if windows_path.startswith(("\\\\", "//")):
            raise SimPathError(f"UNC and device paths are not supported by the simulator: {windows_path}")
        match = _DRIVE_PATH_RE.match(windows_path)
        if not match:
            raise SimPathError(f"not an absolute Windows path (expected like C:\\folder\\file): {windows_path}")
        parts = [part for part in re.split(r"[\\/]+", match.group("rest")) if part and part != "."]
        for part in parts:
            if part == "..":
                raise SimPathError(f"'..' is not allowed in paths given to the simulator: {windows_path}")
            if any(char in _FORBIDDEN_NAME_CHARS for char in part):
                raise SimPathError(f"invalid character in path component {part!r}: {windows_path}")
        drive = self.state_dir / match.group("drive").upper()
        return drive.joinpath(*parts)

    def windows_path(self, path: Path) -> str:
        """Reverse :meth:`path`: ``DIR/C/foo/bar`` → ``C:\\foo\\bar``.

        Raises:
            SimPathError: ``path`` is not inside a drive folder of this host.
        """

        try:
            relative = Path(path).resolve().relative_to(self.state_dir)
        except ValueError:
            raise SimPathError(f"not a path on the simulated host: {path}") from None
        parts = relative.parts
        if not parts or len(parts[0]) != 1 or not parts[0].isalpha():
            raise SimPathError(f"not a path on a simulated drive: {path}")
        return parts[0] + ":\\" + "\\".join(parts[1:])
