"""A static checker for Windows PowerShell 5.1 on .NET Framework 4.x.

No machine here runs Windows PowerShell, and tree-sitter accepts a lot that 5.1 rejects or runs
differently. :func:`check_ps51` looks for the defects that parse but fail (or silently misbehave)
on Windows PowerShell 5.1; each finding names the line, a rule id and the fix. Run it from the
command line on any files::

    PYTHONPATH=tests python -m support.ps51 pyinfra_iis/remote/PyinfraIis/*.ps1

What it checks (rule ids):

=====================  ========================================================================
PS7-SYNTAX             ``??``, ``??=``, ``?.``, ``?[]``, ternary ``a ? b : c``, ``&&``/``||``
                       pipeline chains, ``clean {}`` blocks (PowerShell 7 only).
PS7-CMDLET             cmdlets that exist only in PowerShell 7 (``Test-Json``, ``Join-String``,
                       ``Get-Error``, ``Start-ThreadJob``, ...).
PS7-PARAMETER          parameters added in PowerShell 6/7 (``ForEach-Object -Parallel``,
                       ``ConvertFrom-Json -AsHashtable``/``-Depth``, ``Get-Content -AsByteStream``,
                       ``Invoke-WebRequest -SkipCertificateCheck``, ...), prefixes included.
PS7-VARIABLE           ``$IsWindows``, ``$IsLinux``, ``$IsMacOS``, ``$IsCoreCLR``, ``$PSStyle``, ...
                       (undefined in 5.1: an error under ``Set-StrictMode -Version Latest``).
PS7-ENCODING           ``-Encoding`` values 5.1 does not know (``utf8NoBOM``, ``utf8BOM``, ``ansi``,
                       ``latin1``, code-page numbers).
JOIN-PATH              ``Join-Path`` with more than two paths (positional or ``-AdditionalChildPath``).
NETCORE-MEMBER         .NET Core/.NET 5+ only types and members (``Path.GetRelativePath``,
                       ``Path.Join``, ``Convert.ToHexString``, ``SHA256.HashData``, ``File.*Async``,
                       ``Environment.ProcessPath``, ``RandomNumberGenerator.GetBytes(int)``,
                       ``Random.Shared``, ``String.Contains(char)`` and ``Contains(x, comparison)``,
                       ``HttpClient.Send``, ...).
ADD-TYPE               ``ZipFile``/``ZipArchive`` without ``Add-Type -AssemblyName
                       System.IO.Compression.FileSystem`` (or ``System.IO.Compression`` for
                       ``ZipArchive``), ``System.Net.Http`` types without ``Add-Type -AssemblyName
                       System.Net.Http``, in the same file or module (``context`` argument).
PSCUSTOMOBJECT-PARAM   a parameter typed ``[System.Management.Automation.PSCustomObject]``, which
                       cannot bind objects from ``ConvertFrom-Json`` (PowerShell #2295, #4343).
NULL-ARG               a literal ``$null`` passed to a .NET method: for a ``string`` parameter
                       PowerShell passes ``''`` (use ``[NullString]::Value``).
BASIC-PARSING          ``Invoke-WebRequest``/``Invoke-RestMethod`` without ``-UseBasicParsing``.
ENCODING-DEFAULT       ``Out-File``/``Set-Content``/``Add-Content`` without ``-Encoding``.
REDIRECTION            ``>``/``>>`` into a file (UTF-16 LE in 5.1); ``> $null`` is fine.
JSON-DEPTH             ``ConvertTo-Json`` without ``-Depth`` (5.1 silently truncates at depth 2).
OUTPUT-LEAK            a statement whose value reaches the output: ``.Add(``, ``.AddRange(``,
                       ``.Remove(``, ``.Insert(``, ``.Append*(`` calls and ``New-Item``/``mkdir``
                       not assigned, cast to ``[void]``, piped to ``Out-Null`` or redirected.
SPLIT-MULTICHAR        ``.Split('ab')``: 5.1 (``Split(params char[])``) splits on EACH character.
RSCA-ATTRIBUTE         ``GetAttributeValue``/``SetAttributeValue``/``GetAttribute``/indexer with a
                       runtime (RSCA) attribute name of ``tests/data/iis-runtime-schema/rscaext.xml``
                       (``state``, ``certificateHash``, ``certificateStoreName``,
                       ``applicationPoolSid``, ``workerProcesses``, ...); and a generic
                       ``SetAttributeValue($name, ...)`` in a file that names such an attribute
                       in a string literal (it may receive one as data).
RSCA-WALK              walks over ``.Attributes``/``.ChildElements`` of Microsoft.Web.Administration
                       elements, which read the runtime members too.
NATIVE-PROGRAM         a native program run directly (``& $exe``, ``netsh.exe ...``, ``cmd /c``)
                       instead of through the module's program runner (``Invoke-HostProgram``).
PARSE                  any other syntax error tree-sitter reports.
=====================  ========================================================================

On lines tree-sitter cannot parse, the rules that read the shape of the tree (NATIVE-PROGRAM,
REDIRECTION, JOIN-PATH, OUTPUT-LEAK) stay silent and PARSE reports the line instead.

A finding can be silenced, with a reason, by a comment on its line or the line above:
``# ps51-ignore: NULL-ARG the parameter is an object``.

What it cannot see (it reads text, not types, and runs nothing):

- Types: a variable's type is known only from an assignment in the same file
  (``$c = New-Object System.Net.Http.HttpClient``, ``$h = @{}``) or a type constraint, so a .NET
  Core member reached through an untyped variable is missed (member names that exist nowhere in
  .NET Framework, such as ``AsSpan``, are caught on any receiver). Overloads are judged from
  literal arguments only: ``.Split($sep)`` with a multi-character ``$sep`` is missed.
- NULL-ARG flags every literal ``$null`` argument of a .NET method, because the parameter type
  is unknown; for an ``object`` parameter silence it with a ``ps51-ignore`` comment. A ``$null``
  that reaches a method through a variable is missed.
- OUTPUT-LEAK cannot tell a method that returns void (``List[T].Add``) from one that returns a
  value (``ArrayList.Add``) unless the receiver's type is known; it asks for ``[void]`` on all of
  them (the module's rule), and its message says when the leak is only potential.
- RSCA-WALK follows XML/file receivers of ``.Attributes`` through variables of the same file
  only; an XML node passed in as an untyped parameter is reported (silence it).
- ADD-TYPE accepts an ``Add-Type`` anywhere in the file or module, in any order, even in a
  function that is never called.
- ``-Encoding $enc`` is not checked. Parameters splatted from a hashtable (``@params``) are read
  from a ``$params = @{...}`` literal of the same file; a call splatting anything else is not
  checked for a missing ``-UseBasicParsing``/``-Encoding``/``-Depth``, nor for PowerShell 7
  parameters.
- NATIVE-PROGRAM cannot tell what a ``$var`` run with ``&`` holds unless the file assigns it a
  script block; a bare name is reported only when it looks like a program (``.exe``, a path, a
  well-known Windows tool); other unknown names are left to the cmdlet check.
- PS7-SYNTAX does not look inside ``"...$(...)..."`` sub-expressions (blanked with the string).

The cmdlet and parameter existence check is :func:`support.powershell.check_script`.
"""

from __future__ import annotations

import functools
import re
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Iterable, Iterator, Mapping

from tree_sitter import Node

from . import REFERENCE
from .powershell import _text, _walk  # the tree helpers of the cmdlet check
from .powershell import (
    ALLOWED_EXECUTABLES,
    CmdletReference,
    CommandCall,
    FunctionDef,
    command_calls,
    decode_single_quoted,
    load_reference,
    parse,
    restore_command_name,
    syntax_errors,
)

__all__ = ["Problem", "RULES", "check_ps51", "check_files", "rsca_names", "main"]

#: Rule id -> one-line description (the module docstring has the details).
RULES = {
    "PS7-SYNTAX": "PowerShell 7 syntax",
    "PS7-CMDLET": "PowerShell 7-only cmdlet",
    "PS7-PARAMETER": "PowerShell 6/7-only parameter",
    "PS7-VARIABLE": "PowerShell 6/7-only automatic variable",
    "PS7-ENCODING": "PowerShell 6/7-only -Encoding value",
    "JOIN-PATH": "Join-Path with more than two paths",
    "NETCORE-MEMBER": ".NET Core-only type or member",
    "ADD-TYPE": "assembly not loaded with Add-Type",
    "PSCUSTOMOBJECT-PARAM": "parameter typed with the full PSCustomObject name",
    "NULL-ARG": "literal $null passed to a .NET method",
    "BASIC-PARSING": "Invoke-WebRequest/Invoke-RestMethod without -UseBasicParsing",
    "ENCODING-DEFAULT": "text written with the default encoding",
    "REDIRECTION": "> / >> redirection into a file",
    "JSON-DEPTH": "ConvertTo-Json without -Depth",
    "SERVICE-WAIT": "service cmdlet that waits without a time limit",
    "OUTPUT-LEAK": "result leaks into the output",
    "SPLIT-MULTICHAR": ".Split with a multi-character string",
    "RSCA-ATTRIBUTE": "RSCA runtime attribute read or written as a plain attribute",
    "RSCA-WALK": "walk over .Attributes/.ChildElements of an MWA element",
    "NATIVE-PROGRAM": "native program run directly",
    "PARSE": "syntax error",
}

#: Programs (and cmd built-ins) of Windows and common tools that are run by bare name, lower case.
KNOWN_PROGRAMS = frozenset(
    """cmd netsh icacls msiexec sc certutil appcmd reg schtasks robocopy xcopy takeown powershell pwsh
    python py pip git curl wevtutil bcdedit dism setx net net1 whoami hostname ipconfig iisreset wmic
    bitsadmin tar expand findstr attrib mklink openssl dotnet choco winget nssm timeout shutdown
    tasklist taskkill fsutil cacls secedit auditpol w32tm sfc route arp nslookup ping tracert
    certreq cscript wscript rundll32 regsvr32 mountvol diskpart subst mountvol""".split()
)

#: The module's program runner (pyinfra_iis/remote/PyinfraIis/15-programs.ps1).
PROGRAM_RUNNER = "Invoke-HostProgram"

RSCA_SCHEMA = REFERENCE / "iis-runtime-schema" / "rscaext.xml"


@dataclass(frozen=True)
class Problem:
    """One finding: ``path:line:column``, the rule id and a message that names the fix."""

    path: str
    line: int
    column: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule} {self.message}"


# --- Tables -------------------------------------------------------------------------------

#: Cmdlets that PowerShell 7 has and Windows PowerShell 5.1 does not (lower case -> what to use).
PS7_CMDLETS = {
    "test-json": "parse with ConvertFrom-Json in try/catch, or validate in Python",
    "join-string": "use -join or [string]::Join()",
    "get-error": "read $Error[0] / the ErrorRecord",
    "convertfrom-markdown": "not available in 5.1",
    "show-markdown": "not available in 5.1",
    "get-markdownoption": "not available in 5.1",
    "set-markdownoption": "not available in 5.1",
    "remove-alias": "use Remove-Item -Path Alias:\\name",
    "remove-service": "use sc.exe delete through the program runner, or CIM",
    "get-uptime": "use (Get-CimInstance Win32_OperatingSystem).LastBootUpTime",
    "start-threadjob": "use Start-Job (the ThreadJob module is not in 5.1)",
    "get-experimentalfeature": "not available in 5.1",
    "enable-experimentalfeature": "not available in 5.1",
    "disable-experimentalfeature": "not available in 5.1",
    "get-pssubsystem": "not available in 5.1",
    "convertto-clixml": "use [System.Management.Automation.PSSerializer]::Serialize()",
    "convertfrom-clixml": "use [System.Management.Automation.PSSerializer]::Deserialize()",
    "get-securerandom": "use [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($buffer)",
}

#: Parameters PowerShell 6/7 added (cmdlet lower case -> parameter names). A name is reported
#: only when the 5.1 reference does not know it for that cmdlet.
PS7_PARAMETERS = {
    "foreach-object": ("Parallel", "ThrottleLimit", "TimeoutSeconds", "AsJob", "UseNewRunspace"),
    "convertfrom-json": ("AsHashtable", "Depth", "NoEnumerate", "DateKind"),
    "convertto-json": ("EnumsAsStrings", "AsArray", "EscapeHandling"),
    "get-content": ("AsByteStream",),
    "set-content": ("AsByteStream",),
    "add-content": ("AsByteStream",),
    "invoke-webrequest": (
        "SkipCertificateCheck", "SslProtocol", "Authentication", "Token", "SkipHeaderValidation",
        "SkipHttpErrorCheck", "StatusCodeVariable", "MaximumRetryCount", "RetryIntervalSec", "Form",
        "Resume", "NoProxy", "ResponseHeadersVariable", "CustomMethod", "AllowUnencryptedAuthentication",
        "PreserveAuthorizationOnRedirect", "HttpVersion", "ConnectionTimeoutSeconds",
        "OperationTimeoutSeconds", "AllowInsecureRedirect", "PreserveHttpMethodOnRedirect", "UnixSocket",
    ),
    "invoke-restmethod": (
        "SkipCertificateCheck", "SslProtocol", "Authentication", "Token", "SkipHeaderValidation",
        "SkipHttpErrorCheck", "StatusCodeVariable", "MaximumRetryCount", "RetryIntervalSec", "Form",
        "Resume", "NoProxy", "ResponseHeadersVariable", "CustomMethod", "AllowUnencryptedAuthentication",
        "PreserveAuthorizationOnRedirect", "HttpVersion", "FollowRelLink", "MaximumFollowRelLink",
        "ConnectionTimeoutSeconds", "OperationTimeoutSeconds", "AllowInsecureRedirect",
        "PreserveHttpMethodOnRedirect", "UnixSocket",
    ),
    "select-object": ("SkipIndex", "SkipLast", "CaseInsensitive"),
    "sort-object": ("Top", "Bottom", "Stable"),
    "get-date": ("AsUTC", "FromUnixTime", "UnixTimeSeconds"),
    "select-string": ("Raw", "NoEmphasis", "Culture"),
    "split-path": ("LeafBase", "Extension"),
    "where-object": ("Not",),
    "export-csv": ("UseQuotes", "QuoteFields", "IncludeTypeInformation"),
    "convertto-csv": ("UseQuotes", "QuoteFields", "IncludeTypeInformation"),
    "test-connection": ("TargetName", "Ping", "IPv4", "IPv6", "ResolveDestination", "Traceroute", "MtuSize", "TcpPort", "Detailed", "Repeat", "TimeoutSeconds"),
    "start-process": ("Environment",),
    "get-random": ("Shuffle",),
    "start-sleep": ("Duration",),
    "out-string": ("NoNewline",),
    "format-hex": ("Count", "Offset"),
    "get-filehash": (),
}

#: Automatic variables that exist only in PowerShell 6/7.
PS7_VARIABLES = {
    "iswindows": "5.1 only runs on Windows: drop the test",
    "islinux": "5.1 only runs on Windows: drop the test",
    "ismacos": "5.1 only runs on Windows: drop the test",
    "iscoreclr": "5.1 is never CoreCLR: drop the test",
    "psstyle": "not available in 5.1",
    "enabledexperimentalfeatures": "not available in 5.1",
    "psnativecommandargumentpassing": "not available in 5.1",
    "psnativecommanduseerroractionpreference": "check $LASTEXITCODE (through the program runner)",
}

#: -Encoding values of the 5.1 FileSystemCmdletProviderEncoding enumeration (lower case).
PS51_ENCODINGS = frozenset(
    "unknown string unicode bigendianunicode utf8 utf7 utf32 ascii default oem byte bigendianutf32".split()
)

#: .NET Core/.NET 5+ only static members: type (lower case, without "system.") -> member -> fix.
NETCORE_STATIC = {
    "io.path": {
        "getrelativepath": "compute it with [Uri]::MakeRelativeUri() or in Python",
        "join": "use [System.IO.Path]::Combine()",
        "trimendingdirectoryseparator": "use .TrimEnd('\\')",
        "endsindirectoryseparator": "use .EndsWith('\\')",
        "ispathfullyqualified": "use [System.IO.Path]::IsPathRooted() and check the drive/UNC prefix",
        "exists": "use Test-Path -LiteralPath",
    },
    "convert": {
        "tohexstring": "use [System.BitConverter]::ToString($bytes).Replace('-', '')",
        "tohexstringlower": "use [System.BitConverter]::ToString($bytes).Replace('-', '').ToLowerInvariant()",
        "fromhexstring": "convert pairs with [Convert]::ToByte($hex.Substring($i, 2), 16)",
        "tryfrombase64string": "use [Convert]::FromBase64String() in try/catch",
    },
    "io.file": {
        name: "use the synchronous [System.IO.File] method"
        for name in (
            "readalltextasync", "writealltextasync", "readallbytesasync", "writeallbytesasync",
            "readalllinesasync", "writealllinesasync", "appendalltextasync", "appendalllinesasync",
            "readlinesasync",
        )
    }
    | {"createsymboliclink": "use New-Item -ItemType SymbolicLink", "resolvelinktarget": "use (Get-Item).Target", "openhandle": "use [System.IO.File]::Open()"},
    "io.directory": {
        "createsymboliclink": "use New-Item -ItemType SymbolicLink",
        "resolvelinktarget": "use (Get-Item).Target",
        "createtempsubdirectory": "use [System.IO.Path]::GetTempPath() and New-Item",
    },
    "environment": {
        "processpath": "use [System.Diagnostics.Process]::GetCurrentProcess().MainModule.FileName",
        "processid": "use $PID",
        "isprivilegedprocess": "check the Administrators role with WindowsPrincipal",
    },
    "security.cryptography.randomnumbergenerator": {
        "getbytes": "use [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($buffer)",
        "fill": "use [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($buffer)",
        "getint32": "use RandomNumberGenerator.Create().GetBytes() and reduce the value",
        "gethexstring": "use RandomNumberGenerator.Create().GetBytes() and BitConverter",
        "getstring": "use RandomNumberGenerator.Create().GetBytes()",
        "getitems": "use RandomNumberGenerator.Create().GetBytes()",
    },
    "random": {"shared": "use New-Object System.Random (or Get-Random)"},
    "text.encoding": {"latin1": "use [System.Text.Encoding]::GetEncoding(28591)"},
    "net.http.httpclient": {"defaultproxy": "use [System.Net.WebRequest]::DefaultWebProxy"},
    "net.http.httpmethod": {"patch": "use New-Object System.Net.Http.HttpMethod 'PATCH'"},
    "net.httpversion": {"version20": "HTTP/2 is not available to HttpClient on .NET Framework", "version30": "not on .NET Framework"},
    "math": {"clamp": "use [Math]::Min([Math]::Max($v, $lo), $hi)"},
    "operatingsystem": {"iswindows": "5.1 only runs on Windows: drop the test"},
    "security.cryptography.x509certificates.x509certificate2": {"createfrompem": "convert the PEM to DER in Python and use the byte[] constructor", "createfrompemfile": "convert the PEM to DER in Python"},
    "guid": {"createversion7": "use [Guid]::NewGuid()"},
}
for _hash in ("md5", "sha1", "sha256", "sha384", "sha512", "hmacsha256", "hmacsha1", "hmacsha384", "hmacsha512", "hmacmd5"):
    NETCORE_STATIC["security.cryptography." + _hash] = {
        "hashdata": f"use $h = [System.Security.Cryptography.{_hash.upper()}]::Create(); $h.ComputeHash($bytes); $h.Dispose()",
        "hashdataasync": "use ComputeHash() on an instance",
        "tryhashdata": "use ComputeHash() on an instance",
    }

#: Static members that exist on .NET Framework only with fewer arguments: type -> member -> max count.
NETCORE_ARITY = {
    ("io.path", "getfullpath"): (1, "GetFullPath(path, basePath) is .NET Core: use [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($base, $path))"),
    ("io.file", "move"): (2, "File.Move(src, dst, overwrite) is .NET Core: delete the target first or use [System.IO.File]::Replace()"),
    ("io.directory", "move"): (2, "Directory.Move has no overwrite flag on .NET Framework"),
}

#: Types that do not exist in .NET Framework 4.x (lower case, without "system.").
NETCORE_TYPES = {
    "text.json.jsonserializer", "text.json.jsondocument", "text.json.jsonelement", "text.json.nodes.jsonnode",
    "text.json.utf8jsonwriter", "text.rune", "range", "index", "half", "dateonly", "timeonly", "hashcode",
    "net.http.socketshttphandler", "threading.periodictimer", "collections.generic.priorityqueue",
    "io.enumerationoptions", "operatingsystem", "buffers.arraypool", "formats.asn1.asnreader",
    "security.cryptography.x509certificates.x509certificateloader", "io.unixfilemode",
    # PowerShell 6+ types and accelerators
    "semver", "management.automation.semanticversion", "norunspaceaffinity",
}

#: Instance members whose name exists nowhere in .NET Framework 4.x (any receiver).
NETCORE_INSTANCE = {
    "asspan": "use the array itself",
    "asmemory": "use the array itself",
    "readexactly": "loop over Read() until the count is reached",
    "readatleast": "loop over Read()",
    "replacelineendings": "use -replace '\\r?\\n', \"`r`n\"",
    "disposeasync": "use Dispose()",
}

#: Instance members that .NET Core added to a type the script's variables are known to hold.
NETCORE_TYPED_INSTANCE = {
    "net.http.httpclient": {
        "send": "use SendAsync(...).GetAwaiter().GetResult()",
        "defaultrequestversion": "not on .NET Framework",
        "defaultversionpolicy": "not on .NET Framework",
    },
}

#: Types that need an assembly loaded with Add-Type in Windows PowerShell 5.1: type prefix
#: (lower case, without "system.") -> accepted assembly names.
ASSEMBLY_TYPES = {
    "io.compression.zipfile": ("System.IO.Compression.FileSystem",),
    "io.compression.zipfileextensions": ("System.IO.Compression.FileSystem",),
    "io.compression.ziparchive": ("System.IO.Compression", "System.IO.Compression.FileSystem"),
    "io.compression.ziparchiveentry": ("System.IO.Compression", "System.IO.Compression.FileSystem"),
    "io.compression.ziparchivemode": ("System.IO.Compression", "System.IO.Compression.FileSystem"),
    "net.http.": ("System.Net.Http",),
}

#: Methods whose result reaches the output when the statement does not swallow it.
LEAKING_METHODS = frozenset({"add", "addrange", "remove", "insert", "append", "appendline", "appendformat"})
#: Methods that return void, by receiver type: the finding says so (the rule still asks for [void]).
_VOID_METHODS = {
    "collections.generic.list": ("add", "addrange", "insert"),
    "collections.hashtable": ("add", "remove"),
    "collections.specialized.ordereddictionary": ("add", "remove", "insert"),
    "collections.generic.dictionary": ("add",),
}
_TYPE_DISPLAY = {
    "collections.generic.list": "List[T]",
    "collections.hashtable": "Hashtable",
    "collections.specialized.ordereddictionary": "OrderedDictionary",
    "collections.generic.dictionary": "Dictionary[K,V]",
}
#: Commands whose result reaches the output the same way (lower case; aliases resolve).
LEAKING_COMMANDS = frozenset({"new-item", "mkdir", "md"})

#: Commands writing text files with an encoding default that differs between 5.1 and 7.
TEXT_WRITERS = frozenset({"out-file", "set-content", "add-content"})
WEB_CMDLETS = frozenset({"invoke-webrequest", "invoke-restmethod"})
#: Service cmdlets that wait for the target state without a limit while the service is pending
#: (5.1's ServiceOperationBaseCommand.DoWaitForStatus loops on 2-second WaitForStatus calls).
SERVICE_WAITERS = frozenset({"start-service", "stop-service", "restart-service", "suspend-service", "resume-service"})

#: Receivers of ``.Attributes`` that are not MWA elements: XML nodes and files.
_NOT_MWA = re.compile(
    r"\[xml\]|XmlDocument|XmlElement|XmlNode|SelectNodes|SelectSingleNode|DocumentElement|ChildNodes|"
    r"\bGet-Item\b|\bGet-ChildItem\b|FileInfo|DirectoryInfo|FileSystemInfo|\bgci\b|\bgi\b",
    re.I,
)


@functools.lru_cache(maxsize=1)
def rsca_names() -> frozenset[str]:
    """The runtime (RSCA) attribute and element names of ``rscaext.xml`` (lower case): those
    declared with ``extension="Microsoft.ApplicationHost.RscaExtension"``."""

    names = set()
    for node in ElementTree.parse(RSCA_SCHEMA).iter():
        if node.tag in ("attribute", "element") and node.get("extension") and node.get("name"):
            names.add(node.get("name").lower())
    return frozenset(names)


# --- Tree helpers -------------------------------------------------------------------------


def _type_key(name: str) -> str:
    """``System.IO.Path`` / ``IO.Path`` / ``io.path`` -> ``io.path``."""

    key = re.sub(r"\s+", "", name).lower()
    key = re.sub(r"\[.*$", "", key)  # generic arguments
    return key[7:] if key.startswith("system.") else key


def _type_literal_name(node: Node) -> str:
    spec = next((c for c in node.children if c.type == "type_spec"), None)
    return _text(spec) if spec is not None else _text(node).strip("[]")


def _member_parts(node: Node) -> tuple[Node | None, str, str] | None:
    """For an ``invokation_expression`` or ``member_access``: (receiver, operator, member)."""

    receiver = node.children[0] if node.children else None
    operator = next((c for c in node.children if c.type in (".", "::")), None)
    member = next((c for c in node.children if c.type == "member_name"), None)
    if operator is None or member is None:
        return None
    return receiver, operator.type, _text(member)


def _arguments(node: Node) -> list[Node]:
    holder = next((c for c in node.children if c.type == "argument_list"), None)
    if holder is None:
        return []
    listing = next((c for c in holder.children if c.type == "argument_expression_list"), None)
    if listing is None:
        return []
    return [c for c in listing.children if c.type == "argument_expression"]


def _string_value(node: Node) -> str | None:
    """The value of ``node`` when it is only a constant string literal, else None."""

    return _string_value_text(_text(node))


def _string_value_text(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text[0] in "'\u2018\u2019\u201a\u201b":
        try:
            value, rest = decode_single_quoted(text)
        except ValueError:
            return None
        return value if rest == "" else None
    if text[0] == '"' and text.endswith('"') and len(text) >= 2 and "$" not in text.replace("`$", ""):
        escapes = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}
        body = re.sub(r"`(.)", lambda m: escapes.get(m.group(1), m.group(1)), text[1:-1].replace('""', '"'))
        return body
    return None


def _unwrap(node: Node) -> Node:
    """Descend through the single-child expression wrappers tree-sitter nests."""

    while node.child_count == 1 and node.type not in ("command", "variable", "string_literal"):
        node = node.children[0]
    return node


# --- Masking strings and comments (for the PS7 syntax scan) ------------------------------

_SQ = "'\u2018\u2019\u201a\u201b"
_DQ = '"\u201c\u201d\u201e'


def code_mask(text: str) -> str:
    """``text`` with comments and the insides of strings blanked (newlines kept), so that
    operators can be searched with regular expressions. Expandable sub-expressions inside
    double-quoted strings are blanked too (not scanned)."""

    out = list(text)
    n = len(text)
    i = 0

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] not in "\r\n":
                out[k] = " "

    while i < n:
        ch = text[i]
        if text.startswith("<#", i):
            end = text.find("#>", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\r\n;{}()|"):
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif ch == "@" and i + 1 < n and text[i + 1] in _SQ + _DQ and text[i + 2 : i + 4].lstrip(" \t")[:1] in ("\n", "\r"):
            quote = text[i + 1]
            match = re.compile(r"\r?\n[" + (_SQ if quote in _SQ else _DQ) + "]@").search(text, i + 2)
            end = n if match is None else match.end()
            blank(i + 2, end - 2)
            i = end
        elif ch in _SQ:
            k = i + 1
            while k < n:
                if text[k] in _SQ:
                    if k + 1 < n and text[k + 1] in _SQ:
                        k += 2
                        continue
                    break
                k += 1
            blank(i + 1, k)
            i = k + 1
        elif ch in _DQ:
            k = i + 1
            while k < n:
                if text[k] == "`":
                    k += 2
                    continue
                if text[k] in _DQ:
                    if k + 1 < n and text[k + 1] in _DQ:
                        k += 2
                        continue
                    break
                k += 1
            blank(i + 1, k)
            i = k + 1
        elif ch == "`":
            blank(i, i + 2)
            i += 2
        elif text.startswith("${", i):
            end = text.find("}", i)
            end = n if end < 0 else end
            blank(i + 2, end)
            i = end + 1
        else:
            i += 1
    return "".join(out)


_PS7_PATTERNS = [
    (re.compile(r"\?\?="), "'??=' (null-coalescing assignment) is PowerShell 7: write if ($null -eq $x) { $x = ... }"),
    (re.compile(r"(?<![?=])\?\?(?!=)"), "'??' (null-coalescing) is PowerShell 7: write if ($null -ne $a) { $a } else { $b }"),
    (re.compile(r"(?:\}|\)|\]|\$\w+(?:\.\w+)*)\?\."), "'?.' (null-conditional member access) is PowerShell 7: test for $null first"),
    (re.compile(r"(?:\}|\)|\]|\$\w+(?:\.\w+)*)\?\["), "'?[]' (null-conditional index) is PowerShell 7: test for $null first"),
    (re.compile(r"(?<![&|])(?:&&|\|\|)(?![&|])"), "'&&'/'||' pipeline chains are PowerShell 7: use if ($?) / try/catch, or -and/-or in expressions"),
    (re.compile(r"(?:^|[;{}])[ \t]*clean[ \t]*\{", re.I | re.M), "a 'clean {}' block is PowerShell 7.3: use try/finally in end {}"),
]
# A '?' after an operand (not after '|', ';', '(' or '{' where it is the Where-Object alias)
# followed by ' : ' on the same line.
_TERNARY = re.compile(r"(?P<before>[^\s|;({=,])[ \t]+\?[ \t]+(?P<rest>[^\n{]*?)[ \t]:[ \t]")


def _ps7_syntax(masked: str) -> Iterator[tuple[int, int, str]]:
    for pattern, message in _PS7_PATTERNS:
        for match in pattern.finditer(masked):
            start = match.start()
            clean = re.search(r"clean", match.group(0), re.I)
            if clean is not None and "{" in match.group(0):
                start += clean.start()
            yield start, 0, message
    for match in _TERNARY.finditer(masked):
        if match.group("before") in "-":
            continue
        yield match.start() + 1, 0, "the ternary operator 'a ? b : c' is PowerShell 7: write if (a) { b } else { c }"


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


# --- The checker --------------------------------------------------------------------------


#: Rules that read the shape of the tree, not a name: not reported on lines tree-sitter could
#: not parse (a PARSE finding is reported there instead).
_STRUCTURAL_RULES = frozenset({"NATIVE-PROGRAM", "REDIRECTION", "JOIN-PATH", "OUTPUT-LEAK"})


class _Context:
    def __init__(self, text: str, path: str, defined: Mapping[str, FunctionDef | None], reference: CmdletReference, context_text: str):
        self.text = text
        self.path = path
        self.tree = parse(text)
        self.nodes = list(_walk(self.tree.root_node))
        self.calls = command_calls(text)
        self.defined = {**{k.lower(): v for k, v in defined.items()}, **self.calls.defined}
        self.reference = reference
        self.context_text = context_text
        self.problems: list[Problem] = []
        self.error_lines = {
            line
            for node in self.nodes
            if node.type == "ERROR" or node.is_missing
            for line in range(node.start_point.row + 1, node.end_point.row + 2)
        }
        self.variable_types = self._variable_types()

    def add(self, node_or_line, rule: str, message: str, column: int | None = None) -> None:
        if isinstance(node_or_line, int):
            line, col = node_or_line, column or 1
        elif isinstance(node_or_line, CommandCall):
            line, col = node_or_line.line, node_or_line.column
        else:
            line, col = node_or_line.start_point.row + 1, node_or_line.start_point.column + 1
        if rule in _STRUCTURAL_RULES and line in self.error_lines:
            return  # tree-sitter could not parse the line: its shape is a guess (PARSE reports it)
        message = " ".join(message.split())
        self.problems.append(Problem(self.path, line, col, rule, message))

    def resolve(self, name: str | None) -> str | None:
        """Lower-case cmdlet name of a command name (aliases resolved), or the name itself."""

        if name is None:
            return None
        key = name.lower()
        if key in self.defined:
            return key
        spec = self.reference.lookup(name)
        return spec.name.lower() if spec is not None else key

    def _variable_types(self) -> dict[str, str]:
        """Variable (lower case, without $) -> type key, from ``$v = New-Object T`` /
        ``$v = [T]::new(...)`` / ``[T]$v`` in this file."""

        types: dict[str, str] = {}
        for match in re.finditer(r"\$(\w+)\s*=\s*(?:New-Object\s+(?:-TypeName\s+)?['\"]?([\w.]+)|\[([\w.]+)\]::(?:new|Create)\b)", self.text, re.I):
            types[match.group(1).lower()] = _type_key(match.group(2) or match.group(3))
        for match in re.finditer(r"\$(\w+)\s*=\s*(\[ordered\]\s*)?@\{", self.text, re.I):
            types[match.group(1).lower()] = "collections.specialized.ordereddictionary" if match.group(2) else "collections.hashtable"
        for match in re.finditer(r"\[([\w.]+)(?:\[[^\]\n]*\])?\]\s*\$(\w+)", self.text):
            types.setdefault(match.group(2).lower(), _type_key(match.group(1)))
        return types


def _suppressed(lines: list[str], problem: Problem) -> bool:
    for index in (problem.line - 1, problem.line - 2):
        if 0 <= index < len(lines):
            match = re.search(r"#\s*ps51-ignore\s*:?\s*([A-Z0-9, -]+)", lines[index])
            if match and problem.rule in re.split(r"[\s,]+", match.group(1)):
                return True
    return False


def check_ps51(
    text: str,
    path: str = "<text>",
    *,
    defined: Iterable[str] | Mapping[str, FunctionDef | None] = (),
    context: str = "",
    reference: Path | str | CmdletReference = REFERENCE,
) -> list[Problem]:
    """Check PowerShell ``text`` for Windows PowerShell 5.1 / .NET Framework 4.x defects.

    Args:
        text: PowerShell source.
        path: the name used in the findings.
        defined: functions of the module the script may call (names or name -> FunctionDef);
            they are neither PowerShell 7 cmdlets nor native programs.
        context: the rest of the module the text is part of (other files): an ``Add-Type``
            there counts for ADD-TYPE.
        reference: the cmdlet reference (``powershell-cmdlets.json`` or its folder).

    Returns:
        the findings, sorted by line, column and rule; empty when nothing was found.
    """

    if not isinstance(defined, Mapping):
        defined = {name: None for name in defined}
    ctx = _Context(text, path, defined, load_reference(reference), context)
    for rule in _RULES:
        rule(ctx)
    lines = text.splitlines()
    problems = {(p.line, p.column, p.rule, p.message): p for p in ctx.problems if not _suppressed(lines, p)}
    return sorted(problems.values(), key=lambda p: (p.line, p.column, p.rule))


# --- Rules --------------------------------------------------------------------------------


def _rule_syntax(ctx: _Context) -> None:
    """PS7-SYNTAX on the text with strings and comments blanked; PARSE for other tree-sitter
    errors on lines without a PowerShell 7 finding. Cannot see PowerShell 7 syntax inside
    ``"...$(...)..."`` sub-expressions (blanked with the string)."""

    masked = code_mask(ctx.text)
    ps7_lines = set()
    for offset, _, message in _ps7_syntax(masked):
        line, column = _line_col(ctx.text, offset)
        ps7_lines.add(line)
        ctx.add(line, "PS7-SYNTAX", message, column)
    for error in syntax_errors(ctx.text):
        line, column, rest = error.split(":", 2)
        if int(line) not in ps7_lines:
            ctx.add(int(line), "PARSE", rest.strip() + " (tree-sitter-powershell cannot parse this line)", int(column))


def _rule_commands(ctx: _Context) -> None:
    """PS7-CMDLET, PS7-PARAMETER, PS7-ENCODING, JOIN-PATH, BASIC-PARSING, ENCODING-DEFAULT,
    SERVICE-WAIT, JSON-DEPTH on every command call (aliases resolved through the 5.1 alias table)."""

    for call in ctx.calls.calls:
        if call.name is None:
            continue
        cmdlet = ctx.resolve(call.name)
        spec = ctx.reference.lookup(call.name) if cmdlet not in ctx.defined else None
        params = [e for e in call.elements if e.kind == "parameter"]
        if cmdlet in PS7_CMDLETS and spec is None and cmdlet not in ctx.defined:
            ctx.add(call, "PS7-CMDLET", f"{call.name} is a PowerShell 7 cmdlet, not in Windows PowerShell 5.1: {PS7_CMDLETS[cmdlet]}")
            continue
        if spec is None:
            continue
        for element in params:
            key = element.text.lower()
            if not key or key in spec.names or key in ctx.reference.common:
                continue
            if cmdlet == "join-path" and "additionalchildpath".startswith(key):
                continue  # JOIN-PATH reports it
            for new in PS7_PARAMETERS.get(cmdlet, ()):
                if new.lower().startswith(key) and not any(name.startswith(key) for name in spec.names):
                    ctx.add(element.line, "PS7-PARAMETER", f"{spec.name} -{new} is PowerShell 6/7 only: {_ps7_parameter_fix(cmdlet, new)}", element.column)
                    break
        _check_encoding(ctx, call)
        names = {spec.names.get(e.text.lower(), e.text).lower() for e in params}
        splats = [e.text[1:] for e in call.elements if e.kind == "argument" and re.fullmatch(r"@\w+", e.text)]
        if splats:
            keys = _splatted_keys(ctx.text, splats)
            if keys is None:
                continue  # splatted from something this file does not spell out: cannot see
            names |= {spec.names.get(key, key).lower() for key in keys}
        if cmdlet == "join-path":
            _check_join_path(ctx, call)
        if cmdlet in WEB_CMDLETS and "usebasicparsing" not in names:
            ctx.add(call, "BASIC-PARSING", f"{call.name} without -UseBasicParsing fails where Internet Explorer was never run (Server Core, service accounts): add -UseBasicParsing")
        if cmdlet in TEXT_WRITERS and "encoding" not in names:
            ctx.add(call, "ENCODING-DEFAULT", f"{call.name} without -Encoding writes UTF-16 LE / ANSI in 5.1: write with [System.IO.File]::WriteAllText($path, $text, (New-Object System.Text.UTF8Encoding $false)) or give -Encoding")
        if cmdlet in SERVICE_WAITERS and "nowait" not in names:
            ctx.add(call, "SERVICE-WAIT", f"{call.name} waits without a time limit while the service stays StartPending/StopPending "
                    "(its DoWaitForStatus loop), hanging the call: use the ServiceController's Start()/Stop() and "
                    "WaitForStatus(<status>, [TimeSpan]::FromSeconds(<limit>)), which throws after the limit")
        if cmdlet == "convertto-json" and "depth" not in names:
            ctx.add(call, "JSON-DEPTH", "ConvertTo-Json without -Depth truncates nested objects at depth 2 (to their type name): add -Depth (and -Compress)")


def _splatted_keys(text: str, variables: list[str]) -> set[str] | None:
    """The keys (lower case) of the hashtables ``$v = @{ ... }`` (and ``$v.Key = ...`` /
    ``$v['Key'] = ...``) that the file writes for each splatted variable, or None when one of
    them is not a hashtable literal of this file."""

    keys: set[str] = set()
    for variable in variables:
        literal = re.search(r"\$" + re.escape(variable) + r"\s*=\s*@\{(?P<body>.*?)\n?\s*\}", text, re.I | re.S)
        if literal is None:
            return None
        keys |= {k.lower() for k in re.findall(r"(?:^|[;{\s])['\"]?(\w+)['\"]?\s*=", literal.group("body"))}
        keys |= {k.lower() for k in re.findall(r"\$" + re.escape(variable) + r"(?:\.(\w+)|\[['\"](\w+)['\"]\])\s*=", text, re.I) for k in k if k}
    return keys


def _ps7_parameter_fix(cmdlet: str, parameter: str) -> str:
    fixes = {
        ("foreach-object", "Parallel"): "use a plain foreach loop (or Start-Job)",
        ("convertfrom-json", "AsHashtable"): "use the PSCustomObject it returns (.PSObject.Properties) or ConvertFrom-CallJson",
        ("convertfrom-json", "Depth"): "drop it (5.1 has no depth limit on reading)",
        ("get-content", "AsByteStream"): "use [System.IO.File]::ReadAllBytes() (or -Encoding Byte in 5.1)",
        ("set-content", "AsByteStream"): "use [System.IO.File]::WriteAllBytes()",
        ("add-content", "AsByteStream"): "use a FileStream",
        ("invoke-webrequest", "SkipCertificateCheck"): "not available in 5.1; use a trusted certificate",
    }
    return fixes.get((cmdlet, parameter), "not available in Windows PowerShell 5.1")


def _check_encoding(ctx: _Context, call: CommandCall) -> None:
    elements = list(call.elements)
    for index, element in enumerate(elements):
        if element.kind != "parameter" or element.text.lower() not in ("encoding", "en"):
            continue
        if index + 1 >= len(elements) or elements[index + 1].kind != "argument":
            continue
        raw = elements[index + 1].text.strip()
        value = raw.strip("'\"")
        if raw.startswith("$") or raw.startswith("(") or raw.startswith("["):
            continue  # computed: cannot see
        if value.lower() not in PS51_ENCODINGS:
            fix = "use UTF8 (with BOM in 5.1) or write with [System.IO.File]::WriteAllText and New-Object System.Text.UTF8Encoding $false"
            if value.isdigit():
                fix = "code-page numbers are PowerShell 7: use [System.Text.Encoding]::GetEncoding(" + value + ") with [System.IO.File]"
            ctx.add(elements[index + 1].line, "PS7-ENCODING", f"-Encoding {value} is not a Windows PowerShell 5.1 encoding: {fix}", elements[index + 1].column)


def _check_join_path(ctx: _Context, call: CommandCall) -> None:
    """Counts the values of -Path/-ChildPath and the positional arguments (values of other
    parameters skipped, switches known from the reference); -AdditionalChildPath always makes a
    third path. Cannot see an array passed to -ChildPath or paths splatted from a hashtable."""

    spec = ctx.reference.lookup("Join-Path")
    switches = {name.lower() for name in spec.switches} | {"verbose", "debug"} if spec else {"resolve"}
    paths = 0
    additional = False
    elements = list(call.elements)
    index = 0
    while index < len(elements):
        element = elements[index]
        index += 1
        if element.kind == "argument":
            paths += 1
            continue
        key = element.text.lower()
        canonical = (spec.names.get(key, key) if spec else key).lower()
        if len(key) >= 2 and "additionalchildpath".startswith(key):
            additional = True
        takes_value = element.colon_value or canonical not in switches
        if takes_value and index < len(elements) and elements[index].kind == "argument":
            if canonical in ("path", "childpath"):
                paths += 1
            index += 1
    if paths > 2 or additional:
        ctx.add(call, "JOIN-PATH", "Join-Path takes two paths in 5.1 (-AdditionalChildPath and more positional paths are PowerShell 6+): nest it, Join-Path (Join-Path $a $b) $c, or use [System.IO.Path]::Combine($a, $b, $c)")


def _rule_members(ctx: _Context) -> None:
    """NETCORE-MEMBER, NULL-ARG, SPLIT-MULTICHAR, RSCA-ATTRIBUTE, RSCA-WALK on member access
    and method calls. Instance members are judged by name, or by the receiver's type when this
    file assigns it (see the module docstring)."""

    rsca = rsca_names()
    for node in ctx.nodes:
        if node.type == "type_literal":
            key = _type_key(_type_literal_name(node))
            if key in NETCORE_TYPES:
                ctx.add(node, "NETCORE-MEMBER", f"[{_type_literal_name(node)}] does not exist in Windows PowerShell 5.1 / .NET Framework 4.x: use a Framework type or do it in Python")
            continue
        if node.type == "element_access":
            _check_index(ctx, node, rsca)
            continue
        if node.type not in ("invokation_expression", "member_access"):
            continue
        parts = _member_parts(node)
        if parts is None:
            continue
        receiver, operator, member = parts
        lower = member.lower()
        arguments = _arguments(node) if node.type == "invokation_expression" else []
        if operator == "::" and receiver is not None and receiver.type == "type_literal":
            type_key = _type_key(_type_literal_name(receiver))
            fix = NETCORE_STATIC.get(type_key, {}).get(lower)
            if fix:
                ctx.add(node, "NETCORE-MEMBER", f"[{_type_literal_name(receiver)}]::{member} is .NET Core only: {fix}")
            arity = NETCORE_ARITY.get((type_key, lower))
            if arity and len(arguments) > arity[0]:
                ctx.add(node, "NETCORE-MEMBER", arity[1])
        elif operator == ".":
            if lower in NETCORE_INSTANCE:
                ctx.add(node, "NETCORE-MEMBER", f".{member} is .NET Core only: {NETCORE_INSTANCE[lower]}")
            receiver_text = _text(receiver).lower() if receiver is not None else ""
            variable = receiver_text[1:] if re.fullmatch(r"\$\w+", receiver_text) else None
            typed = NETCORE_TYPED_INSTANCE.get(ctx.variable_types.get(variable or "", ""), {})
            if lower in typed:
                ctx.add(node, "NETCORE-MEMBER", f".{member} on {ctx.variable_types[variable]} is .NET Core only: {typed[lower]}")
            if node.type == "invokation_expression":
                _check_string_overloads(ctx, node, lower, arguments)
                _check_rsca_call(ctx, node, member, arguments, rsca)
            if lower in ("attributes", "childelements"):
                _check_walk(ctx, node, receiver, member)
        if node.type == "invokation_expression":
            for argument in arguments:
                if _text(argument).strip().lower() == "$null":
                    ctx.add(argument, "NULL-ARG", f"$null passed to .NET method {member}() becomes '' for a string parameter: pass [NullString]::Value (for an object parameter, silence with '# ps51-ignore: NULL-ARG')")


def _check_string_overloads(ctx: _Context, node: Node, member: str, arguments: list[Node]) -> None:
    """SPLIT-MULTICHAR for a literal first argument longer than one character; NETCORE-MEMBER for
    ``Contains([char]...)`` and ``Contains(x, [StringComparison]...)``. Cannot see separators
    held in variables."""

    if member == "split" and arguments:
        first = arguments[0]
        value = _string_value(first)
        if value is None:
            cast = re.fullmatch(r"\[(?:system\.)?string\]\s*(.+)", _text(first).strip(), re.I | re.S)
            value = _string_value_text(cast.group(1)) if cast else None
        if value is not None and len(value) > 1:
            shown = value.encode("unicode_escape").decode("ascii")
            ctx.add(node, "SPLIT-MULTICHAR", f".Split('{shown}') splits on EACH of the characters {list(value)!r} in 5.1 (String.Split(params char[])): use -split '{re.escape(value).encode('unicode_escape').decode('ascii')}' (a regex) or .Split([string[]]@('{shown}'), [System.StringSplitOptions]::None)")
    if member in ("contains", "startswith", "endswith") and arguments:
        first = _text(arguments[0]).strip().lower()
        if first.startswith("[char]"):
            ctx.add(node, "NETCORE-MEMBER", f"String.{member.title()}(char) is .NET Core only: pass a string")
        if member == "contains" and len(arguments) == 2 and "stringcomparison" in _text(arguments[1]).lower():
            ctx.add(node, "NETCORE-MEMBER", "String.Contains(string, StringComparison) is .NET Core only: use .IndexOf(x, [System.StringComparison]::OrdinalIgnoreCase) -ge 0")


def _check_rsca_call(ctx: _Context, node: Node, member: str, arguments: list[Node], rsca: frozenset[str]) -> None:
    if member.lower() not in ("getattributevalue", "setattributevalue", "getattribute", "getchildelement", "getmetadata") or not arguments:
        return
    value = _string_value(arguments[0])
    if value is None and member.lower() in ("setattributevalue", "getattributevalue") and _text(arguments[0]).strip().startswith("$"):
        # A generic write/read whose name is data: reported when this file names a distinctive
        # runtime attribute in a string literal (it knows it may receive one).
        named = sorted({m.group(1) for m in re.finditer(r"['\"]([A-Za-z]+)['\"]", ctx.text) if m.group(1).lower() in rsca - _COMMON_WORDS})
        if named:
            ctx.add(node, "RSCA-ATTRIBUTE", f"generic {member}({_text(arguments[0]).strip()}, ...) in a file that handles the runtime (RSCA) attribute(s) {', '.join(named)}: a generic write of those creates no HTTP.sys binding and fails while WAS is stopped; handle them with the typed API or the RSCA methods (AddSslCertificate, RebindSslCertificate) and refuse them here")
        return
    if value is not None and value.lower() in rsca:
        ctx.add(node, "RSCA-ATTRIBUTE", f"{member}('{value}') reads/writes the runtime (RSCA) member {value!r} as a plain attribute; it fails or blocks when WAS/W3SVC is not answering: use the typed API in try/catch (ApplicationPool.State, Site.State, Binding.CertificateHash) or the RSCA methods (AddSslCertificate, Start, Stop)")


#: RSCA names too common to prove that a file handles runtime attributes (hashtable keys).
_COMMON_WORDS = frozenset({"state", "bindings", "id", "guid", "data", "url", "verb", "idle", "hostname", "sitename", "siteid"})


def _check_index(ctx: _Context, node: Node, rsca: frozenset[str]) -> None:
    """``$element['state']``: cannot tell an MWA element from a hashtable, so only receivers
    that are MWA-looking member chains (``.Attributes[...]``, ``GetChildElement(...)[...]``,
    ``.Bindings[...]``...) or variables this file assigns from MWA calls are judged."""

    key_node = next((c for c in node.children if c.type not in ("[", "]") and c is not node.children[0]), None)
    if key_node is None:
        return
    value = _string_value(_unwrap(key_node))
    if value is None or value.lower() not in rsca:
        return
    receiver = _text(node.children[0])
    mwa = re.search(r"\.(Attributes|ChildElements|GetChildElement|GetCollection|GetSection|Bindings|Sites|ApplicationPools|Applications|CreateElement)\b", receiver)
    variable = receiver[1:].lower() if re.fullmatch(r"\$\w+", receiver) else None
    if variable and re.search(r"\$" + re.escape(variable) + r"\s*=\s*[^\n]*\.(GetChildElement|GetCollection|GetSection|CreateElement|Sites|ApplicationPools|Bindings)\b", ctx.text, re.I):
        mwa = True
    if variable and re.search(r"foreach\s*\(\s*\$" + re.escape(variable) + r"\s+in\s+[^)]*\.(GetCollection|Sites|ApplicationPools|Bindings|ChildElements)\b", ctx.text, re.I):
        mwa = True
    if mwa:
        ctx.add(node, "RSCA-ATTRIBUTE", f"indexer ['{value}'] reads/writes the runtime (RSCA) member {value!r} as a plain attribute: use the typed API in try/catch or the RSCA methods")


def _check_walk(ctx: _Context, node: Node, receiver: Node | None, member: str) -> None:
    """``.ChildElements`` is MWA only: always reported. ``.Attributes`` also exists on XML nodes
    and files: reported unless the receiver is a ``Get-Item``/XML expression, or a variable this
    file assigns from one, types as XML/file, or loops over XML nodes. Cannot see a receiver that
    a caller passes as an untyped parameter holding XML (silence with ps51-ignore)."""

    receiver_text = _text(receiver) if receiver is not None else ""
    if member.lower() == "attributes" and _is_xml_or_file(ctx, receiver_text, 3):
        return
    ctx.add(node, "RSCA-WALK", f"{receiver_text}.{member} walks every attribute/child of an MWA element, the runtime (RSCA) members too ({', '.join(sorted(rsca_names() & {'state', 'certificatehash', 'workerprocesses', 'applicationpoolsid'}))}), which fail or block when WAS/W3SVC is not answering: read the attributes you need by name (the schema: .Schema.AttributeSchemas) or parse the config XML")


def _is_xml_or_file(ctx: _Context, expression: str, depth: int) -> bool:
    """True when ``expression`` is (or its leading variable is assigned, typed or looped from) an
    XML or file-system expression in this file, following variables ``depth`` levels deep."""

    if _NOT_MWA.search(expression):
        return True
    match = re.match(r"\$(\w+)", expression.strip())
    if not match or depth <= 0:
        return False
    name = re.escape(match.group(1))
    patterns = (
        r"\$" + name + r"\s*=\s*([^\n]*)",
        r"foreach\s*\(\s*\$" + name + r"\s+in\s+([^)\n]*)\)",
        r"(\[[\w.]+\])\s*\$" + name + r"\b",
    )
    for pattern in patterns:
        for found in re.finditer(pattern, ctx.text, re.I):
            source = found.group(1).strip()
            if source.startswith("$" + match.group(1)):
                continue
            if _is_xml_or_file(ctx, source, depth - 1):
                return True
    return False


def _rule_parameters(ctx: _Context) -> None:
    """PSCUSTOMOBJECT-PARAM in every ``param()`` (functions and script blocks)."""

    for node in ctx.nodes:
        if node.type != "script_parameter":
            continue
        for inner in _walk(node):
            if inner.type == "type_literal" and _type_key(_type_literal_name(inner)) in ("management.automation.pscustomobject",):
                ctx.add(inner, "PSCUSTOMOBJECT-PARAM", f"parameter typed [{_type_literal_name(inner)}] cannot bind objects from ConvertFrom-Json (PowerShell #2295, #4343): use [psobject] or [object]")


def _rule_variables(ctx: _Context) -> None:
    """PS7-VARIABLE: reads of PowerShell 7 automatic variables this file does not assign."""

    for node in ctx.nodes:
        if node.type != "variable":
            continue
        name = _text(node).lstrip("$").strip("{}").lower()
        name = re.sub(r"^(script|global|local):", "", name)
        if name in PS7_VARIABLES and not re.search(r"\$(?:script:|global:)?" + name + r"\s*=(?!=)", ctx.text, re.I):
            ctx.add(node, "PS7-VARIABLE", f"${name} is a PowerShell 6/7 automatic variable, undefined in 5.1 (an error under Set-StrictMode -Version Latest): {PS7_VARIABLES[name]}")


def _rule_add_type(ctx: _Context) -> None:
    """ADD-TYPE: a type literal or ``New-Object`` type of ``System.IO.Compression`` zip types or
    ``System.Net.Http`` without the assembly loaded in this file or ``context``. An Add-Type
    counts wherever it is in the file/module (5.1 resolves type literals when the statement
    runs; order inside a function is not checked)."""

    loaded = ctx.text + "\n" + ctx.context_text
    used: list[tuple[object, str]] = []
    for node in ctx.nodes:
        if node.type == "type_literal":
            used.append((node, _type_key(_type_literal_name(node))))
    for call in ctx.calls.calls:
        if ctx.resolve(call.name) == "new-object":
            for element in call.elements:
                if element.kind == "argument":
                    used.append((call, _type_key(element.text.strip("'\""))))
                    break
    reported = set()
    for where, key in used:
        for prefix, assemblies in ASSEMBLY_TYPES.items():
            if not (key == prefix or (prefix.endswith(".") and key.startswith(prefix))):
                continue
            if any(_loads_assembly(loaded, assembly) for assembly in assemblies):
                continue
            if (prefix, getattr(where, "line", None)) in reported:
                continue
            reported.add((prefix, getattr(where, "line", None)))
            ctx.add(where, "ADD-TYPE", f"System.{key} lives in an assembly Windows PowerShell 5.1 does not load: add 'Add-Type -AssemblyName {assemblies[0]}' (once, in the module) before using it")


def _loads_assembly(text: str, assembly: str) -> bool:
    name = re.escape(assembly) + r"(?![\w.])"
    return bool(
        re.search(r"Add-Type\b[^\n]*-AssemblyName\b[^\n]*['\"\s,]" + name, text, re.I)
        or re.search(r"Add-Type\b[^\n]*-A(?:ssemblyName)?\s*['\"]?" + name, text, re.I)
        or re.search(r"\[(?:System\.)?Reflection\.Assembly\]::Load(?:WithPartialName)?\(\s*['\"]" + name, text, re.I)
    )


def _statement_pipelines(ctx: _Context) -> Iterator[Node]:
    for node in ctx.nodes:
        if node.type == "pipeline" and node.parent is not None and node.parent.type == "statement_list":
            yield node


def _rule_output_leak(ctx: _Context) -> None:
    """OUTPUT-LEAK: a statement (not an assignment, not ``[void]``, not ``| Out-Null``, not
    redirected) made of a ``.Add/.AddRange/.Remove/.Insert/.Append*`` call or ``New-Item``/
    ``mkdir``. Methods that return void (``List.Remove`` returns bool, ``Hashtable.Remove`` void)
    cannot be told apart without types: every such statement must be voided."""

    for pipeline in _statement_pipelines(ctx):
        first = pipeline.children[0] if pipeline.children else None
        if first is None or first.type != "pipeline_chain":
            continue
        chain = first
        parts = [c for c in chain.children if c.type not in ("|", "comment")]
        if not parts or any(c.type == "redirections" for c in parts):
            continue
        commands = [c for c in parts if c.type == "command"]
        if any(ctx.resolve(_command_name(c)) == "out-null" for c in commands):
            continue
        head = parts[0]
        if head.type == "command":
            name = ctx.resolve(_command_name(head))
            if name in LEAKING_COMMANDS and not any(c.type == "redirection" for c in _walk(head) if c.parent is not None and c.parent.type == "command_elements"):
                ctx.add(head, "OUTPUT-LEAK", f"{_command_name(head)} returns the item it creates, which leaks into the function's output: write $null = {_command_name(head)} ... or pipe to Out-Null")
            continue
        inner = _unwrap(head)
        if inner.type == "invokation_expression":
            parts_ = _member_parts(inner)
            if parts_ and parts_[1] == "." and parts_[2].lower() in LEAKING_METHODS:
                receiver = _text(parts_[0]).lower() if parts_[0] is not None else ""
                known = ctx.variable_types.get(receiver[1:], "") if re.fullmatch(r"\$\w+", receiver) else ""
                void = _VOID_METHODS.get(known, ())
                if parts_[2].lower() in void:
                    why = f"{_TYPE_DISPLAY.get(known, known)}.{parts_[2]} returns void today, but the module's rule is to void every .{parts_[2]}() so that a change of type (ArrayList, HashSet) cannot leak"
                else:
                    why = f".{parts_[2]}() can return a value (ArrayList.Add: the index, HashSet.Add/List.Remove: a bool, StringBuilder: itself) that leaks into the function's output"
                ctx.add(inner, "OUTPUT-LEAK", why + ": prefix with [void] or assign to $null")


def _command_name(command: Node) -> str | None:
    for child in command.children:
        if child.type == "command_name":
            return restore_command_name(_text(child))
        if child.type == "command_name_expr":
            return None
    return None


def _rule_native(ctx: _Context) -> None:
    """NATIVE-PROGRAM: ``& $x`` (unless ``$x`` is a script block assigned in this file),
    ``& 'C:\\...\\x.exe'``, and any command that is not a cmdlet, alias or module function
    (``netsh``, ``msiexec.exe``, ``cmd /c``). Cannot tell what a ``$x`` from elsewhere holds."""

    for node in ctx.nodes:
        if node.type != "command":
            continue
        name_expr = next((c for c in node.children if c.type == "command_name_expr"), None)
        invocation = next((c for c in node.children if c.type == "command_invokation_operator"), None)
        name = _command_name(node)
        if name_expr is not None:
            target = _text(name_expr).strip()
            if invocation is not None and _text(invocation).strip() == "." :
                continue
            if target.startswith("{") or target.startswith("("):
                continue
            variable = re.fullmatch(r"\$(\w+)", target)
            if variable and (
                re.search(r"\$" + re.escape(variable.group(1)) + r"\s*=\s*(\{|\[scriptblock\]::Create|\$ExecutionContext\.InvokeCommand\.NewScriptBlock)", ctx.text, re.I)
                or re.search(r"\[(System\.Management\.Automation\.)?scriptblock\]\s*\$" + re.escape(variable.group(1)) + r"\b", ctx.text, re.I)
            ):
                continue  # a script block, not a program
            literal = _string_value(name_expr)
            if literal is not None and ctx.resolve(literal) in ctx.defined or (literal and ctx.reference.lookup(literal)):
                continue
            ctx.add(node, "NATIVE-PROGRAM", f"'& {target}' runs a program with the worker's stdin and no time limit: run it through {PROGRAM_RUNNER}")
            continue
        if name is None or re.match(r"^(?:0x[0-9a-f]+|[0-9.]+)(?:[dlu]|ul|lu)?(?:kb|mb|gb|tb|pb)$", name, re.I):
            continue
        if name.lower() in ctx.defined or ctx.reference.lookup(name) is not None or name.lower() in PS7_CMDLETS:
            continue
        program = PureWindowsPath(name).name.lower()
        if program.endswith((".ps1", ".psm1")):
            continue  # a PowerShell script, not a native program
        looks_native = (
            re.search(r"\.(exe|com|bat|cmd)$", program) is not None
            or "\\" in name or "/" in name
            or program in KNOWN_PROGRAMS
            or program in {p.removesuffix(".exe") for p in ALLOWED_EXECUTABLES}
        )
        if not looks_native:
            continue  # an unknown bareword (a DSC keyword, a typo): the cmdlet check reports it
        ctx.add(node, "NATIVE-PROGRAM", f"'{name}' runs a native program with the worker's stdin and no time limit: run it through {PROGRAM_RUNNER}")


def _rule_redirection(ctx: _Context) -> None:
    """REDIRECTION: ``>``/``>>`` (any stream) into anything but ``$null``."""

    for node in ctx.nodes:
        if node.type != "redirection":
            continue
        operator = next((c for c in node.children if c.type == "file_redirection_operator"), None)
        target = next((c for c in node.children if c.type == "redirected_file_name"), None)
        if operator is None or target is None:
            continue
        if _text(target).strip().lower() == "$null":
            continue
        ctx.add(node, "REDIRECTION", f"'{_text(operator).strip()} {_text(target).strip()}' writes UTF-16 LE in Windows PowerShell 5.1: write with [System.IO.File]::WriteAllText($path, $text, (New-Object System.Text.UTF8Encoding $false))")


_RULES = [_rule_syntax, _rule_commands, _rule_members, _rule_parameters, _rule_variables, _rule_add_type, _rule_output_leak, _rule_native, _rule_redirection]


# --- Files and the command line -----------------------------------------------------------


def project_module_functions() -> dict[str, FunctionDef]:
    """Every function defined by the project's PowerShell module (its files form one module)."""

    from pyinfra_iis.remote import module_source

    return dict(command_calls(module_source()).defined)


def check_files(paths: Iterable[Path | str], *, root: Path | None = None) -> list[Problem]:
    """Check files: the project's module functions and every function in ``paths`` count as
    defined, and ``Add-Type`` anywhere in the files of one folder counts for that folder (the
    module's files are dot-sourced into one module)."""

    files = [Path(p) for p in paths]
    texts = {p: p.read_text(encoding="utf-8-sig") for p in files}
    defined: dict[str, FunctionDef | None] = {}
    try:
        defined.update(project_module_functions())
    except Exception:  # noqa: BLE001 - outside the project the module may not import
        pass
    for text in texts.values():
        defined.update(command_calls(text).defined)
    problems = []
    for path, text in texts.items():
        context = "\n".join(other for p, other in texts.items() if p.parent == path.parent and p != path)
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        problems.extend(check_ps51(text, name, defined=defined, context=context))
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m support.ps51 FILE...``: print one finding per line; exit 1 if any."""

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m support.ps51 FILE.ps1 ...  (rules: " + ", ".join(RULES) + ")")
        return 2
    problems = check_files(args, root=Path.cwd())
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
