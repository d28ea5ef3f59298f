"""Plain commands the simulator answers, so that any WinRM client can be checked against it.

Supported (everything else ends with exit code 1 and ``not supported by the simulator:
<command>`` on stderr, never a made-up success):

* ``hostname``, ``whoami`` (``host\\user`` in lower case, as ``whoami`` prints it);
* ``cmd /c echo TEXT``, ``cmd /c exit N`` (also ``exit /b N``), ``cmd /c hostname|whoami``;
* ``powershell[.exe] [-NoLogo -NoProfile -NonInteractive -ExecutionPolicy X ...]`` with
  ``-EncodedCommand <base64 of UTF-16LE>`` (pywinrm's ``run_ps``), ``-Command <text>``, or
  ``-Command -`` / ``-`` with the script on stdin, running the mini-language of
  :func:`run_powershell`.

Output uses CRLF like Windows. PowerShell errors go to stderr as CLIXML, the way
``powershell.exe`` serialises its error stream when its output is redirected: ``#< CLIXML``
then ``<Objs ...><S S="Error">...</S></Objs>`` (shape of real Windows PowerShell 5.1 output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import protocol
from .process import Process

if TYPE_CHECKING:  # pragma: no cover
    from .host import SimHost

NOT_SUPPORTED = "not supported by the simulator: {}"

CLIXML_HEADER = "#< CLIXML\r\n"
CLIXML_OPEN = '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'

_POWERSHELL_NAMES = {"powershell", "powershell.exe", protocol.POWERSHELL_EXE.lower()}
_PS_SWITCHES = {"-nologo", "-noprofile", "-noninteractive", "-noexit", "-sta", "-mta"}
_PS_VALUED = {"-executionpolicy", "-ep", "-inputformat", "-outputformat", "-windowstyle", "-version", "-configurationname"}


@dataclass
class Result:
    """What a plain command printed and its exit code."""

    stdout: str = ""
    stderr: str = ""
    rc: int = 0


def unsupported(what: str) -> Result:
    """The answer to anything the simulator does not know: rc 1 and an explicit message."""

    return Result(stderr=NOT_SUPPORTED.format(what) + "\r\n", rc=1)


def split_command_line(line: str) -> list[str]:
    """Split a Windows command line into arguments (double quotes group, as CommandLineToArgvW
    does for simple cases; backslash escapes are not interpreted)."""

    return [match.group(1) if match.group(1) is not None else match.group(2)
            for match in re.finditer(r'"([^"]*)"|(\S+)', line)]


def whoami(host: "SimHost") -> str:
    """``whoami`` output: ``host\\user`` in lower case."""

    return f"{host.hostname}\\{host.user}".lower()


# --- cmd.exe ----------------------------------------------------------------------------


def run_cmd(host: "SimHost", rest: str) -> Result:
    """Run what follows ``cmd /c``."""

    text = rest.strip()
    word, _, argument = text.partition(" ")
    lowered = word.lower()
    if lowered == "echo":
        return Result(stdout=(argument if argument.strip() else "ECHO is on.") + "\r\n")
    if lowered.startswith("echo."):
        return Result(stdout=text[5:] + "\r\n")
    if lowered == "exit":
        args = argument.split()
        if args and args[0].lower() == "/b":
            args = args[1:]
        if not args:
            return Result(rc=0)
        if len(args) == 1 and re.fullmatch(r"-?\d+", args[0]):
            return Result(rc=int(args[0]))
        return unsupported("cmd /c " + text)
    if lowered in ("hostname", "hostname.exe") and not argument.strip():
        return Result(stdout=host.hostname + "\r\n")
    if lowered in ("whoami", "whoami.exe") and not argument.strip():
        return Result(stdout=whoami(host) + "\r\n")
    return unsupported("cmd /c " + text)


# --- PowerShell mini-language -----------------------------------------------------------


def clixml_escape(text: str) -> str:
    """Escape text for a CLIXML ``<S>`` element: XML entities plus ``_xHHHH_`` for control
    characters (CR LF become ``_x000D__x000A_``) and for a ``_x`` that would be misread."""

    out = []
    for index, char in enumerate(text):
        code = ord(char)
        if char == "_" and text[index + 1:index + 2] == "x":
            out.append("_x005F_")
        elif code < 32 or code == 0x7F:
            out.append(f"_x{code:04X}_")
        elif char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        else:
            out.append(char)
    return "".join(out)


def error_records(script: str, message: str) -> list[str]:
    """The text lines of one ``Write-Error`` record as powershell.exe prints it for a script
    given with ``-EncodedCommand``: the script text, `` : `` and the message, then the
    CategoryInfo and FullyQualifiedErrorId lines and a blank trailer (console-width wrapping
    of long lines is not simulated)."""

    lines = (script.strip() + " : " + message).split("\n")
    lines = [line.rstrip("\r") for line in lines]
    lines.append("    + CategoryInfo          : NotSpecified: (:) [Write-Error], WriteErrorException")
    lines.append("    + FullyQualifiedErrorId : Microsoft.PowerShell.Commands.WriteErrorException")
    lines.append(" ")
    return lines


def clixml_errors(lines: list[str]) -> str:
    """Return CLIXML stderr with one ``<S S="Error">`` per line."""

    records = "".join(f'<S S="Error">{clixml_escape(line + chr(13) + chr(10))}</S>' for line in lines)
    return CLIXML_HEADER + CLIXML_OPEN + records + "</Objs>"


_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"[^\"`$]*\"")


def _split_statements(script: str) -> list[str] | None:
    """Split on newlines and ``;`` outside quotes; None when quotes are unbalanced."""

    statements, current, quote = [], [], None
    index = 0
    while index < len(script):
        char = script[index]
        if quote:
            current.append(char)
            if char == quote:
                if quote == "'" and script[index + 1:index + 2] == "'":
                    current.append("'")
                    index += 1
                else:
                    quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char in ";\n":
            statements.append("".join(current).strip())
            current = []
        elif char == "#":
            # Comment to end of line.
            while index < len(script) and script[index] != "\n":
                index += 1
            continue
        else:
            current.append(char)
        index += 1
    if quote:
        return None
    statements.append("".join(current).strip())
    return [statement for statement in statements if statement]


def _tokens(statement: str) -> list[str] | None:
    """Tokenise one statement into words and string values; None for anything richer
    (variables, sub-expressions, pipelines, script blocks)."""

    tokens = []
    for match in re.finditer(r"'((?:[^']|'')*)'|\"([^\"]*)\"|(\S+)", statement):
        single, double, bare = match.groups()
        if single is not None:
            tokens.append(single.replace("''", "'"))
        elif double is not None:
            if "$" in double or "`" in double:
                return None
            tokens.append(double)
        else:
            if re.search(r"[$()|{}@\[\]`<>&]", bare) and not re.fullmatch(r"-?\d+", bare):
                return None
            tokens.append(bare)
    return tokens


def run_powershell(host: "SimHost", script: str, clixml: bool = True, stop_on_error: bool = False) -> Result:
    """Run a script in the simulator's PowerShell mini-language.

    Statements (separated by newlines or ``;``): ``Write-Output``/``echo``/``Write-Host`` with
    string or bare-word arguments (one line each), a lone string literal, ``Write-Error
    [-Message] TEXT``, ``exit [N]``, ``hostname``, ``whoami``, and assignments of
    ``$ErrorActionPreference`` / ``$ProgressPreference`` to a string. Anything else stops the
    script with exit code 1 and ``not supported by the simulator: <statement>`` on stderr.

    Exit code: ``exit N`` when given; otherwise 1 when the last statement wrote an error
    (``$?`` false, as powershell.exe reports it), else 0. With ``$ErrorActionPreference =
    'Stop'`` a ``Write-Error`` ends the script.

    Args:
        clixml: write errors as CLIXML (powershell.exe with redirected output) or, when
            False, as plain ``message`` lines (the worker's runspace collects messages).
        stop_on_error: start as if ``$ErrorActionPreference = 'Stop'`` (the worker).
    """

    statements = _split_statements(script.replace("\r\n", "\n"))
    if statements is None:
        return unsupported("script with unbalanced quotes")
    stdout: list[str] = []
    errors: list[str] = []  # stderr lines
    rc: int | None = None
    last_failed = False
    for statement in statements:
        tokens = _tokens(statement)
        name = tokens[0].lower() if tokens else ""
        args = tokens[1:] if tokens else []
        last_failed = False
        assignment = re.fullmatch(r"\$(ErrorActionPreference|ProgressPreference)\s*=\s*('[^']*'|\"[^\"$`]*\")", statement,
                                  re.IGNORECASE)
        if assignment:
            if assignment.group(1).lower() == "erroractionpreference":
                stop_on_error = assignment.group(2)[1:-1].lower() == "stop"
        elif not tokens:
            errors.append(NOT_SUPPORTED.format(statement))
            rc = 1
            break
        elif name in ("write-output", "echo", "write-host"):
            stdout.extend(args)
        elif _STRING_RE.fullmatch(statement):
            stdout.append(tokens[0])
        elif name == "write-error":
            if args and args[0].lower() == "-message":
                args = args[1:]
            message = " ".join(args)
            errors.extend(error_records(script, message) if clixml else [message])
            last_failed = True
            if stop_on_error:
                rc = 1
                break
        elif name == "exit" and len(args) <= 1 and all(re.fullmatch(r"-?\d+", a) for a in args):
            rc = int(args[0]) if args else 0
            break
        elif name in ("hostname", "hostname.exe") and not args:
            stdout.append(host.hostname)
        elif name in ("whoami", "whoami.exe") and not args:
            stdout.append(whoami(host))
        else:
            errors.append(NOT_SUPPORTED.format(statement))
            rc = 1
            break
    if rc is None:
        rc = 1 if last_failed else 0
    if errors and clixml:
        stderr = clixml_errors(errors)
    else:
        stderr = "".join(line + "\r\n" for line in errors)
    return Result(stdout="".join(line + "\r\n" for line in stdout), stderr=stderr, rc=rc)


# --- dispatch ---------------------------------------------------------------------------


class PlainProcess(Process):
    """A process whose whole output is known when it starts (or when its stdin ends, for
    ``powershell -Command -``)."""

    kind = "plain"

    def __init__(self, host: "SimHost", command_line: str):
        super().__init__()
        self.host = host
        self.command_line = command_line
        self._stdin = bytearray()
        self._stdin_script = False
        outcome = plan(host, command_line)
        if outcome is None:
            self._stdin_script = True
        else:
            self._emit(outcome)

    def _emit(self, outcome: Result) -> None:
        self.write("stdout", outcome.stdout.encode("utf-8"))
        self.write("stderr", outcome.stderr.encode("utf-8"))
        self.exit(outcome.rc)

    def on_stdin(self, data: bytes) -> None:
        if self._stdin_script:
            self._stdin.extend(data)

    def on_stdin_end(self) -> None:
        if self._stdin_script:
            script = self._stdin.decode("utf-8", "replace")
            self._emit(run_powershell(self.host, script))


def plan(host: "SimHost", command_line: str) -> Result | None:
    """Work out a plain command's result; None when it is a PowerShell reading its script
    from stdin (``-Command -`` or ``-``)."""

    args = split_command_line(command_line)
    if not args:
        return unsupported("an empty command line")
    exe = args[0].lower()
    base = re.split(r"[\\/]", exe)[-1]
    if base in ("cmd", "cmd.exe"):
        match = re.match(r'\s*(?:"[^"]*"|\S+)\s+/[cCkK]\s?(.*)$', command_line, re.DOTALL)
        if not match:
            return unsupported(command_line)
        return run_cmd(host, match.group(1))
    if base in ("hostname", "hostname.exe") and len(args) == 1:
        return Result(stdout=host.hostname + "\r\n")
    if base in ("whoami", "whoami.exe") and len(args) == 1:
        return Result(stdout=whoami(host) + "\r\n")
    if exe in _POWERSHELL_NAMES or base in ("powershell", "powershell.exe"):
        return _plan_powershell(host, command_line, args[1:])
    return unsupported(command_line)


def _plan_powershell(host: "SimHost", command_line: str, args: list[str]) -> Result | None:
    index = 0
    while index < len(args):
        arg = args[index].lower()
        if arg in _PS_SWITCHES:
            index += 1
        elif arg in _PS_VALUED:
            index += 2
        elif arg in ("-encodedcommand", "-enc", "-e", "-ec"):
            if index + 1 >= len(args):
                return unsupported(command_line)
            try:
                script = protocol.decode_powershell_command(args[index + 1])
            except protocol.ProtocolError:
                return Result(stderr="Cannot process the command because the value specified with -EncodedCommand is not "
                                     "properly encoded. The value must be Base64 encoded.\r\n", rc=1)
            return run_powershell(host, script)
        elif arg in ("-command", "-c"):
            rest = args[index + 1:]
            if rest == ["-"]:
                return None
            if not rest:
                return unsupported(command_line)
            return run_powershell(host, " ".join(rest))
        elif arg == "-":
            return None
        else:
            return unsupported(command_line)
    # powershell.exe without a command would start an interactive prompt.
    return unsupported(command_line)
