"""Progress lines for steps that take more than a couple of seconds (issue 11 "progress"), at
pyinfra's normal verbosity: ``host.log(..., logger.info)`` / pyinfra's logger at INFO, which the
``pyinfra`` command line shows without ``-v``.

* :class:`UploadProgress`: bytes uploaded of a file (the connector passes it as ``on_sent`` to
  ``transport.files.put``), at most one line per :data:`INTERVAL_SECONDS` and a last one.
* :func:`timed_step`: a line when a host step starts and one with its seconds when it ends (the
  venv and wheel installs: one host call each, so their output arrives at the end).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from pyinfra import logger

#: Seconds between two progress lines of one step; steps shorter than this print nothing more.
INTERVAL_SECONDS = 2.0


class UploadProgress:
    """``on_sent(byte count)`` callback that logs ``<prefix>uploading <remote>: 12.0 of 40.0 MB (30%)``.

    Args:
        remote: the destination path (shown).
        total: the file's size in bytes (``None``: unknown, only the count is shown).
        prefix: pyinfra's host prefix (``host.print_prefix``).
        log: where lines go (default pyinfra's logger at INFO).
        clock: monotonic seconds (tests replace it).
    """

    def __init__(self, remote: str, total: int | None, prefix: str = "", log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.remote, self.total, self.prefix = remote, total, prefix
        self.log, self.clock = log or logger.info, clock
        self.sent, self.started = 0, clock()
        self._last = self.started

    @classmethod
    def for_source(cls, source: Any, remote: str, prefix: str = "") -> "UploadProgress":
        """For a local path (its size is the total) or a file-like object (total unknown)."""

        total = os.path.getsize(source) if isinstance(source, (str, os.PathLike)) and os.path.isfile(source) else None
        return cls(remote, total, prefix)

    def line(self) -> str:
        """The current progress line (without the prefix)."""

        done = f"{self.sent / 1e6:.1f}"
        if self.total:
            return f"uploading {self.remote}: {done} of {self.total / 1e6:.1f} MB ({100 * self.sent // self.total}%)"
        return f"uploading {self.remote}: {done} MB"

    def __call__(self, count: int) -> None:
        self.sent += count
        now = self.clock()
        finished = self.total is not None and self.sent >= self.total
        if now - self._last >= INTERVAL_SECONDS or (finished and now - self.started >= INTERVAL_SECONDS):
            self._last = now
            self.log(f"{self.prefix}{self.line()}")


@contextmanager
def timed_step(host: Any, what: str, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Log ``<what>...`` before the block and ``<what>: done in 12.3 s`` after it (or ``failed
    after``), through ``host.log`` at INFO; a host object without ``log`` (a test double) logs
    nothing."""

    log = getattr(host, "log", None)
    started = clock()
    if log:
        log(f"{what}...", logger.info)
    try:
        yield
    except BaseException:
        if log:
            log(f"{what}: failed after {clock() - started:.1f} s", logger.info)
        raise
    if log:
        log(f"{what}: done in {clock() - started:.1f} s", logger.info)
