"""The ``@winrm`` pyinfra connector: one WinRS shell and one PowerShell worker per host.

Usage::

    pyinfra @winrm/web1.example.com deploys/site.py
    pyinfra @winrm/127.0.0.1:5985 --user admin --password ... \\
        --data winrm_scheme=http exec -- "Write-Output 'hi'"

Commands are PowerShell text, run by the worker (:mod:`pyinfra_iis.transport.worker`): a
step costs one WinRS Send and one Receive, with no new process (docs/design.md, "The connector").
Host data keys are documented in :mod:`pyinfra_iis.transport.settings`.

Facts cache: ``connector.fact_cache`` is a dict the project's facts use to keep results per
host; it is cleared whenever a command that may change the host runs (anything but a remote
call of a read-only function, ``Get-*``, ``Test-*``, ``Read-*``) and after every upload that
actually sent data (docs/design.md, "Facts").
"""

from __future__ import annotations

import logging
import re
from io import IOBase
from typing import TYPE_CHECKING, Any, Iterator

from pyinfra import logger as pyinfra_logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import ConnectError, ConnectorDataTypeError, PyinfraError
from pyinfra.api.output import echo
from pyinfra.api.util import format_text
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.util import CommandOutput, OutputLine

from .. import protocol as wire
from .. import pyinfra_speedups
from ..inventory_check import require_valid_inventory
from ..transport import files
from ..transport.errors import (
    AuthenticationFailed,
    FileTransferError,
    HostUnreachable,
    StepTimeout,
    TransportError,
)
from ..transport.settings import SettingsError, WinrmSettings, settings_from_host_data
from ..transport.worker import WorkerSession

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

logger = logging.getLogger(__name__)

#: Verbs of module functions that only read the host (their calls keep the fact cache).
READ_ONLY_VERBS = ("Get", "Test", "Read")

#: pyinfra connector arguments that make no sense on Windows.
UNSUPPORTED_ARGUMENTS = ("_sudo", "_sudo_user", "_su_user", "_doas", "_doas_user", "_dzdo", "_dzdo_user", "_stdin", "_chdir", "_env")

_NAME_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?$")

#: A DNS name (labels of letters, digits and hyphens) or an IPv4 address; IPv6 is checked
#: with :mod:`ipaddress`. Anything else (``user@host``, URL parts) is refused.
_DNS_RE = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def valid_host_name(name: str) -> bool:
    """Whether ``name`` is a DNS name or an IP address (no user-info, path or port)."""

    import ipaddress

    try:
        ipaddress.ip_address(name.split("%", 1)[0])
        return True
    except ValueError:
        return bool(_DNS_RE.match(name))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text, shortened: a cause, never a dump."""

    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def _cause(exc: BaseException) -> str:
    """``Type: first line``, said plainly for a reply that is not XML (not a WinRM service)."""

    import xml.etree.ElementTree as ET

    if isinstance(exc, ET.ParseError):
        return f"the reply is not WinRM XML (ParseError: {_one_line(exc)}): is this port a WinRM service?"
    return f"{type(exc).__name__}: {_one_line(exc)}"


class WinrmTransportFailure(OSError):
    """A transport failure during a command; pyinfra reports it as a failure of the host."""


class UnsupportedOnWindows(PyinfraError):
    """A pyinfra argument such as ``_sudo`` was used with the @winrm connector."""


def parse_target(name: str) -> tuple[str, int | None]:
    """Split ``HOST[:PORT]`` (IPv6 literals in brackets) into ``(host, port)``.

    Raises:
        pyinfra.api.exceptions.InventoryError: the name is not of that form.
    """

    from pyinfra.api.exceptions import InventoryError

    match = _NAME_RE.match(name or "")
    if not match or not valid_host_name(match.group("v6") or match.group("host")):
        raise InventoryError(f"@winrm/{name}: expected @winrm/HOST[:PORT], HOST a DNS name or an IP address "
                             "(IPv6 in brackets; no user@)")
    port = match.group("port")
    return match.group("v6") or match.group("host"), int(port) if port else None


def is_read_only(script: str) -> bool:
    """Whether ``script`` is a remote call of a read-only module function (Get-/Test-/Read-)."""

    try:
        call = wire.parse_remote_call(script)
    except wire.ProtocolError:
        return False
    return call is not None and call[0].split("-", 1)[0] in READ_ONLY_VERBS


def split_lines(text: str) -> list[str]:
    """Split output text into lines: CRLF or LF ends a line; a final newline adds no line."""

    if not text:
        return []
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


class WinrmConnector(BaseConnector):
    """Run PowerShell on Windows hosts over WinRM (see the module docstring)."""

    handles_execution = True

    def __init__(self, state: "State", host: "Host"):
        super().__init__(state, host)
        try:
            self.settings: WinrmSettings = settings_from_host_data(host.name, host.data.dict())
        except SettingsError as exc:
            raise ConnectorDataTypeError(str(exc)) from None
        self.hostname = self.settings.hostname or parse_target(host.name.removeprefix("@winrm/"))[0]
        if not valid_host_name(self.hostname):
            raise ConnectorDataTypeError(f"{host.name}: winrm_hostname {self.hostname!r} is not a DNS name or an IP address")
        self.label = self.settings.label(self.hostname)
        self.session: WorkerSession | None = None
        self.fact_cache: dict[Any, Any] = {}
        #: Why every further command of this host is refused (see :meth:`refuse`), or None.
        self.refused: str | None = None

    def __repr__(self) -> str:
        return f"<WinrmConnector {self.label}>"

    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict, list[str]]]:
        """Yield ``("@winrm/NAME", {"winrm_hostname": host[, "winrm_port": port]}, [])``.

        pyinfra calls this for each ``@winrm`` host while it builds the inventory; the first
        call installs :mod:`pyinfra_iis.pyinfra_speedups` if opted in (same results, less controller CPU
        per host and per operation), so runs without a ``@winrm`` host are left untouched.
        """

        from pyinfra.api.exceptions import InventoryError

        pyinfra_speedups.install()

        if not name:
            raise InventoryError("@winrm needs a host: @winrm/HOST[:PORT]")
        host, port = parse_target(name)
        data: dict[str, Any] = {"winrm_hostname": host}
        if port is not None:
            data["winrm_port"] = port
        yield f"@winrm/{name}", data, []

    # -- connection -------------------------------------------------------------------------

    def _new_session(self) -> WorkerSession:
        return WorkerSession(
            lambda: self.settings.make_protocol(self.hostname),
            endpoint=self.label,
            max_envelope_kb=self.settings.max_envelope_kb,
            system_root=self.settings.system_root,
        )

    def connect(self) -> None:
        """Open the shell, start the worker and load the module.

        Raises:
            ConnectError: with "authentication failed" or "cannot reach" in the message; or
                "inventory data is invalid" when any host of the run has bad data
                (:mod:`pyinfra_iis.inventory_check`, checked before any request is sent).
        """

        require_valid_inventory(self.state, self.host)
        if self.settings.effective_scheme == "https" and not self.settings.server_cert_validation:
            pyinfra_logger.warning(f"{self.host.print_prefix}WinRM certificate validation is OFF for {self.label} "
                                   "(winrm_allow_insecure): anyone on the path can read the password")
        session = self._new_session()
        try:
            session.start()
        except AuthenticationFailed:
            raise ConnectError(f"authentication failed for user {self.settings.user!r} at {self.label}: check winrm_user/winrm_password (or --user/--password) and winrm_transport") from None
        except HostUnreachable as exc:
            raise ConnectError(f"cannot reach the WinRM service: {exc}") from None
        except TransportError as exc:
            session.close()
            raise ConnectError(f"WinRM connection to {self.label} failed: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - TLS/OSError/XML from below pywinrm: this host only
            session.close()
            raise ConnectError(f"WinRM connection to {self.label} failed: {_cause(exc)}") from None
        self.session = session

    def disconnect(self) -> None:
        """End the worker and delete the shell (best effort)."""

        session, self.session = self.session, None
        if session is not None:
            session.close()

    def refuse(self, reason: str) -> None:
        """Refuse every further command and upload of this host with ``reason``: a fact the
        run depends on failed, so nothing planned from it may run (this host fails alone)."""

        self.refused = reason

    def _check_refused(self) -> None:
        if self.refused:
            raise WinrmTransportFailure(f"{self.label}: {self.refused}")

    def _session(self) -> WorkerSession:
        if self.session is None:
            self.connect()
        assert self.session is not None
        return self.session

    # -- commands ---------------------------------------------------------------------------

    def run_shell_command(
        self,
        command: StringCommand | str,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> tuple[bool, CommandOutput]:
        """Run PowerShell text as one worker step.

        Args:
            command: a ``StringCommand`` (raw value sent, masked value shown) or a str.
            print_output: echo stdout/stderr lines with the host prefix.
            print_input: echo the (masked) command.
            arguments: pyinfra connector arguments; ``_timeout`` (seconds) and
                ``_success_exit_codes`` are honoured, ``_sudo``/``_su_user``/``_doas`` and
                friends are refused.

        Returns:
            ``(success, CommandOutput)``, lines split on CRLF, stderr CLIXML decoded.

        Raises:
            UnsupportedOnWindows: a Unix-only argument was given.
            TimeoutError: no reply within ``_timeout``.
            WinrmTransportFailure: the transport failed even after one rebuild.
        """

        for name in UNSUPPORTED_ARGUMENTS:
            if arguments.get(name):
                raise UnsupportedOnWindows(f"{self.host.name}: {name} is not supported on Windows (@winrm connector)")
        self._check_refused()
        timeout = arguments.get("_timeout") or self.settings.step_timeout_sec
        success_codes = arguments.get("_success_exit_codes")

        if isinstance(command, StringCommand):
            raw, shown = command.get_raw_value(), command.get_masked_value()
        else:
            raw = shown = str(command)

        logger.debug("Running command on %s: %s", self.host.name, shown)
        if print_input:
            echo(f"{self.host.print_prefix}>>> {shown}", err=True)
        if not is_read_only(raw):
            self.fact_cache.clear()
        try:
            result = self._session().run(raw, timeout=timeout)
        except StepTimeout as exc:
            raise TimeoutError(str(exc)) from None
        except TransportError as exc:
            raise WinrmTransportFailure(str(exc)) from None
        except (OSError, ValueError, SyntaxError) as exc:  # TLS, sockets, malformed XML (ParseError): this host only
            raise WinrmTransportFailure(f"{self.label}: {_cause(exc)}") from None

        lines = [OutputLine("stdout", line) for line in split_lines(result.stdout)]
        lines += [OutputLine("stderr", line) for line in split_lines(result.stderr)]
        if print_output:
            for line in lines:
                text = line.line if line.buffer_name == "stdout" else format_text(line.line, "red")
                echo(f"{self.host.print_prefix}{text}", err=True)
        status = result.rc in success_codes if success_codes else result.rc == 0
        return status, CommandOutput(lines)

    def put_file(
        self,
        filename_or_io: str | IOBase,
        remote_filename: str,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> bool:
        """Upload a local path or file-like object to ``remote_filename`` (a Windows path).

        Skipped when the remote file already has the same SHA-256; ``remote_temp_filename``
        is ignored (the host writes its own temporary file and moves it into place).

        Returns:
            True on success, False when the host refused or the hash did not match.
        """

        self._check_refused()
        if print_input:
            echo(f"{self.host.print_prefix}>>> put {remote_filename}", err=True)
        try:
            from ..operations.progress import UploadProgress  # bytes uploaded, at normal verbosity (issue 11)

            progress = UploadProgress.for_source(filename_or_io, remote_filename, self.host.print_prefix)
            result = files.put(self._session(), filename_or_io, remote_filename, on_sent=progress)
        except FileTransferError as exc:
            pyinfra_logger.error(f"{self.host.print_prefix}{format_text(str(exc), 'red')}")
            self.fact_cache.clear()
            return False
        except TransportError as exc:
            self.fact_cache.clear()
            raise WinrmTransportFailure(str(exc)) from None
        if not result.skipped:
            self.fact_cache.clear()
        if print_output:
            state = "unchanged" if result.skipped else "uploaded"
            echo(f"{self.host.print_prefix}{remote_filename}: {state} ({result.size} bytes, sha256 {result.sha256[:12]})", err=True)
        return True

    def get_file(
        self,
        remote_filename: str,
        filename_or_io: str | IOBase,
        remote_temp_filename: str | None = None,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Any,
    ) -> bool:
        """Download ``remote_filename`` into a local path or file-like object (SHA-256 checked).

        Returns:
            True on success, False when the file is missing or the hash did not match.
        """

        self._check_refused()
        if print_input:
            echo(f"{self.host.print_prefix}>>> get {remote_filename}", err=True)
        try:
            files.get(self._session(), remote_filename, filename_or_io)
        except FileTransferError as exc:
            pyinfra_logger.error(f"{self.host.print_prefix}{format_text(str(exc), 'red')}")
            return False
        except TransportError as exc:
            raise WinrmTransportFailure(str(exc)) from None
        return True
