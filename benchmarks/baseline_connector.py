"""The per-command-process baseline: ``pyinfra`` with a @winrm connector that opens a new
WinRS shell and a new ``powershell.exe`` for every command (a script, not a test).

    /work/venv/bin/python benchmarks/baseline_connector.py <pyinfra arguments...>
    # e.g. benchmarks/baseline_connector.py inventories/sim.py deploys/site.py -y

This is what a connector built on pywinrm's ``Session.run_ps`` costs (docs/design.md, "The
connector": a login, a shell, a process and about 5 requests per command). The simulator
answers module calls (``Verb-Noun -Json '...'``) only inside the worker, so the baseline cannot
be ``run_ps`` itself: per command it starts a whole worker session — new HTTP session with a
new NTLM login, new shell, new ``powershell.exe``, module load — runs the one step, then ends
the worker and deletes the shell. It reuses the real connector
(:class:`pyinfra_iis.connectors.winrm.WinrmConnector`) and differs only in that lifecycle.

Only for benchmarks/fleet.py: it is deliberately not an entry point of the distribution.
pyinfra finds connectors through the ``pyinfra.connectors`` entry points, so this launcher
makes ``@winrm`` hosts load :class:`BaselineConnector` for this process only
(:func:`use_baseline_for_winrm`) and then runs pyinfra's own command line: same inventory,
same deploy, same pyinfra — only the connector's lifecycle differs.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

# pyinfra's CLI monkey-patches the stdlib for gevent on import: it must come first, as
# ``python -m pyinfra`` would do it.
import pyinfra_cli  # noqa: F401,E402 - import for its side effect (gevent monkey patching)

from pyinfra_iis.connectors.winrm import WinrmConnector  # noqa: E402

T = TypeVar("T")


class BaselineConnector(WinrmConnector):
    """A @winrm connector that rebuilds its whole session around every command.

    ``connect()`` sends nothing (like constructing a pywinrm ``Session``); every
    :meth:`run_shell_command`, :meth:`put_file` and :meth:`get_file` opens a fresh session
    (login, shell, worker process, module), runs, and closes it again, whatever the outcome.
    Errors are those of :class:`WinrmConnector`; a host that cannot be reached fails at its
    first command with ``ConnectError`` instead of at connect time.
    """

    def __repr__(self) -> str:
        return f"<BaselineConnector {self.label}>"

    def connect(self) -> None:
        """Nothing on the wire: the session is opened per command."""

    def _per_command(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.disconnect()
        WinrmConnector.connect(self)
        try:
            return call(*args, **kwargs)
        finally:
            self.disconnect()

    def run_shell_command(self, *args: Any, **kwargs: Any):
        """:meth:`WinrmConnector.run_shell_command` in a session of its own."""

        return self._per_command(super().run_shell_command, *args, **kwargs)

    def put_file(self, *args: Any, **kwargs: Any) -> bool:
        """:meth:`WinrmConnector.put_file` in a session of its own."""

        return self._per_command(super().put_file, *args, **kwargs)

    def get_file(self, *args: Any, **kwargs: Any) -> bool:
        """:meth:`WinrmConnector.get_file` in a session of its own."""

        return self._per_command(super().get_file, *args, **kwargs)


def use_baseline_for_winrm() -> None:
    """Make pyinfra load :class:`BaselineConnector` for the ``winrm`` connector entry point
    (in this process only): wraps ``pyinfra.api.connectors._load_connector``, through which
    every connector lookup of pyinfra 3 (inventory and host) passes."""

    from pyinfra.api import connectors

    original = connectors._load_connector

    def load(entrypoint):
        return BaselineConnector if entrypoint.name == "winrm" else original(entrypoint)

    connectors._load_connector = load


def main(argv: list[str] | None = None) -> None:
    """Run pyinfra's command line (``argv``, default ``sys.argv[1:]``) with the baseline
    connector; exits as pyinfra does."""

    from pyinfra_cli.main import main as pyinfra_main

    use_baseline_for_winrm()
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    pyinfra_main()


if __name__ == "__main__":
    main()
