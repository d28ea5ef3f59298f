"""The project's PowerShell (worker and module) against tree-sitter and Microsoft's cmdlet reference,
the checker itself, and remote calls as PowerShell sees them (no injection possible)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyinfra_iis.protocol import Secret, remote_call
from pyinfra_iis.remote import module_files, module_source, read_remote_file
from support.powershell import (
    FunctionDef,
    check_script,
    command_calls,
    decode_single_quoted,
    load_reference,
    syntax_errors,
)

REMOTE = Path(__file__).resolve().parent.parent / "pyinfra_iis" / "remote"
PS_FILES = sorted(str(path.relative_to(REMOTE)) for path in REMOTE.rglob("*.ps1"))
FILE_FUNCTIONS = ("Start-FileUpload", "Complete-FileUpload", "Stop-FileUpload", "Get-FileHashInfo", "Read-FileChunk")


def module_functions() -> dict[str, FunctionDef]:
    """Every function defined in any module file (they form one module)."""

    return dict(command_calls(module_source()).defined)


# --- The project's PowerShell ------------------------------------------------------------


def test_there_is_powershell_to_check():
    assert "worker.ps1" in PS_FILES
    assert "PyinfraIis/00-common.ps1" in module_files()
    assert "PyinfraIis/10-files.ps1" in module_files()


@pytest.mark.parametrize("name", PS_FILES)
def test_every_ps1_parses(name):
    assert syntax_errors((REMOTE / name).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("name", PS_FILES)
def test_every_ps1_names_only_real_cmdlets_and_parameters(name, reference_data):
    problems = check_script((REMOTE / name).read_text(encoding="utf-8"), defined=module_functions(), reference=reference_data)
    assert [str(problem) for problem in problems] == []


def test_module_functions_never_shadow_a_cmdlet(reference_data):
    cmdlets = load_reference(reference_data)
    shadowing = sorted(definition.name for definition in module_functions().values() if cmdlets.lookup(definition.name))
    assert shadowing == []


def test_module_header_sets_strict_mode_and_preferences():
    header = read_remote_file("PyinfraIis/00-common.ps1")
    calls = command_calls(header).calls
    strict = [call for call in calls if call.name == "Set-StrictMode"]
    assert len(strict) == 1 and [e.text for e in strict[0].elements] == ["Version", "Latest"]
    assert "\n$ErrorActionPreference = 'Stop'\n" in header
    assert "\n$ProgressPreference = 'SilentlyContinue'\n" in header


def test_file_functions_take_one_mandatory_json_argument():
    functions = module_functions()
    for name in FILE_FUNCTIONS:
        definition = functions[name.lower()]
        assert (definition.parameters, definition.mandatory) == (("Json",), ("Json",)), name


def test_worker_and_module_agree_on_upload_data():
    # worker.ps1 calls AddCommand('Add-FileUploadChunk').AddParameter('Base64', ...) for each "+" line.
    worker = read_remote_file("worker.ps1")
    assert "AddCommand('PyinfraIis\\Add-FileUploadChunk').AddParameter('Base64'," in worker
    chunk = module_functions()["add-fileuploadchunk"]
    assert chunk.parameters == ("Base64",)
    assert "[AllowEmptyString()]" in read_remote_file("PyinfraIis/10-files.ps1")  # an empty "+" line must bind


# --- The checker catches what it should ----------------------------------------------------


def errors(text: str, reference: Path, **kwargs) -> list[str]:
    return [str(problem) for problem in check_script(text, reference=reference, **kwargs)]


@pytest.mark.parametrize(
    "script, expected",
    [
        ("Get-Itme -Path C:\\x", "unknown command 'Get-Itme'"),
        ("Get-ChildItem -Path C:\\x -Recursive", "unknown parameter -Recursive"),
        ("Get-ChildItem -Path C:\\x -Rec", "unknown parameter -Rec"),  # prefixes are not accepted
        ("Remove-Item -Path C:\\x -Recurse $true", "switch -Recurse given a separate value '$true'"),
        ("New-Item -ItemType Directory -Force", "missing mandatory parameter(s) -Path"),
        ("Get-Item -Path 'C:\\x", "syntax"),
        ("Install-WindowsFeature", "missing mandatory parameter(s) -Name"),
        ("Set-ItemProperty -Path HKLM:\\x -Name y -Value", "parameter -Value needs a value"),
        ("Start-FileUpload -Jsn '{}'", "unknown parameter -Jsn"),
        ("Write-CallResult", "missing mandatory parameter(s) -InputObject"),
    ],
)
def test_checker_reports(script, expected, reference_data):
    found = errors(script, reference_data, defined=module_functions())
    assert any(expected in problem for problem in found), found
    assert all(problem.startswith("1:") for problem in found)


@pytest.mark.parametrize(
    "script",
    [
        "Remove-Item -Path C:\\x -Recurse:$true -Force -ErrorAction Stop",  # colon form, common parameter
        "Remove-Item -LiteralPath C:\\x -ea SilentlyContinue",  # common parameter alias
        "gci C:\\x | % { $_.FullName }",  # aliases; positional Path; pipeline-fed mandatory parameter
        "Get-Item C:\\x",  # mandatory Path given by position
        "$raw | ConvertFrom-Json",  # InputObject from the pipeline
        "New-Object System.Text.StringBuilder",
        "[System.IO.File]::Move($a, $b); $stream.Write($bytes, 0, 4)",  # .NET calls are not commands
        "& msiexec.exe /i $msi /qn /norestart",
        "& 'C:\\Windows\\System32\\netsh.exe' http show sslcert",
        "& $python -m venv $target",  # computed name: not checkable, skipped
        "Get-ChildItem -Path C:\\x -Attributes Directory",
        "Start-FileUpload -Json '{}'",
        "$size = 16MB",
    ],
)
def test_checker_accepts(script, reference_data):
    assert errors(script, reference_data, defined=module_functions()) == []


def test_checker_checks_parameters_of_functions_defined_in_the_text(reference_data):
    script = "function Get-Thing {\n  param([Parameter(Mandatory = $true)][string]$Name, [switch]$All)\n  $Name\n}\nGet-Thing -Name x -All\nGet-Thing -All $true\nGet-Thing -Nam x\n"
    found = errors(script, reference_data)
    # Line 7: after the unknown -Nam, x binds to Name by position, so nothing is missing.
    assert len(found) == 3, found
    assert found[0].startswith("6:1:") and "missing mandatory parameter(s) -Name" in found[0]
    assert found[1].startswith("6:16:") and "switch -All given a separate value" in found[1]
    assert found[2].startswith("7:") and "unknown parameter -Nam" in found[2]


@pytest.mark.parametrize(
    "script, wrong",
    [
        ("Get-Item -Path (Join-Path $a -ChildPath b -Recurse) -Force", "Join-Path: unknown parameter -Recurse"),
        ("Get-Item -Path:$(Join-Path $a -ChildPath b -Recurse) -Force", "Join-Path: unknown parameter -Recurse"),
        ("Write-Output -InputObject @(Get-ChildItem -Path x -Force -Resolve) -NoEnumerate", "Get-ChildItem: unknown parameter -Resolve"),
        ("Write-Output \"x $(Get-Date -Format o -Recurse)\" -NoEnumerate", "Get-Date: unknown parameter -Recurse"),
        ("$x | Where-Object -FilterScript { Test-Path -LiteralPath $_ -PathType Leaf } -Force", "Where-Object: unknown parameter -Force"),
        ("$x | Where-Object -FilterScript { Test-Path -LiteralPath $_ -Recurse }", "Test-Path: unknown parameter -Recurse"),
        ("Set-Content -LiteralPath $p -Value (Get-Content -LiteralPath $q -NoNewline) -Encoding UTF8", "Get-Content: unknown parameter -NoNewline"),
    ],
)
def test_parameters_of_nested_commands_belong_to_the_nested_command(script, wrong, reference_data):
    # (...), $(...), @(...), "$(...)" and script blocks hold commands of their own: each parameter is
    # checked against the command it is written in, never against the outer one.
    found = errors(script, reference_data)
    assert [problem.split(": ", 1)[1].split(" (")[0] for problem in found] == [wrong], found
    outer, inner = (script.split(" ", 1)[0], wrong.split(":")[0])
    assert not any(problem.split(": ", 1)[1].startswith(outer + ":") for problem in found) or outer == inner


def test_nested_command_parameters_do_not_count_for_the_outer_command():
    # -ChildPath and -Format are Join-Path's / Get-Date's: Get-Item's parameters are Path and Force only.
    outer, join, date = command_calls("Get-Item -Path (Join-Path $a -ChildPath ($b + (Get-Date -Format o))) -Force").calls
    assert (outer.name, outer.parameters) == ("Get-Item", ["Path", "Force"])
    assert (join.name, join.parameters) == ("Join-Path", ["ChildPath"])
    assert (date.name, date.parameters) == ("Get-Date", ["Format"])


def test_parameter_set_mismatch_is_only_a_warning(reference_data):
    # -Path and -LiteralPath are in different parameter sets of Get-Item.
    script = "Get-Item -Path C:\\x -LiteralPath C:\\y"
    assert check_script(script, reference=reference_data) == []
    warnings = check_script(script, reference=reference_data, include_warnings=True)
    assert [problem.severity for problem in warnings] == ["warning"]


def test_command_calls_reads_parameters_switches_and_definitions():
    found = command_calls("function script:Send-X {\n param([int]$Id, [switch]$Now)\n}\nSend-X -Id:3 -Now\n$a | Out-String -Width 4096")
    assert set(found.defined) == {"send-x"}
    assert found.defined["send-x"].switches == ("Now",)
    send, out = found.calls
    assert (send.name, send.parameters, send.piped) == ("Send-X", ["Id", "Now"], False)
    assert send.elements[0].colon_value and send.elements[1].text == "3"
    assert (out.name, out.parameters, out.piped, out.line) == ("Out-String", ["Width"], True, 5)


@pytest.mark.parametrize(
    "script",
    [
        "ForEach-Object -InputObject 1 -Process { $_ }",
        "foreach-object -InputObject 1 { $_ }",
        "if ($a) { ForEach-Object -InputObject 1 -Process { $_ } }",
        "$x = ForEach-Object -InputObject 1 -Process { $_ }; FOREACH-OBJECT -InputObject 2 -Process { $_ }",
    ],
)
def test_foreach_object_at_the_start_of_a_statement_is_a_command(script, reference_data):
    # tree-sitter-powershell reads it as the foreach keyword; PowerShell runs the cmdlet.
    assert syntax_errors(script) == []
    names = [call.name for call in command_calls(script).calls]
    assert names and all(name.lower() == "foreach-object" for name in names)
    assert names[-1] in ("ForEach-Object", "foreach-object", "FOREACH-OBJECT")
    assert errors(script, reference_data) == []
    assert "unknown parameter -Parallel" in errors(script.replace("-InputObject 1", "-Parallel"), reference_data)[0]


def test_foreach_keyword_still_parses():
    assert syntax_errors("foreach ($i in 1..3) { $i }\n$x = foreach ($i in 1..3) { $i }") == []


def test_syntax_errors_carry_line_and_column():
    assert syntax_errors("Get-Item 'x'\n") == []
    found = syntax_errors("$a = 1\nif ($a) { Get-Item 'x'\n")
    assert found and all(":" in error for error in found)
    assert any(error.startswith("2:") or error.startswith("3:") for error in found), found


# --- Remote calls: one command, one -Json literal, no injection ------------------------------

NASTY_PAYLOADS = [
    {"path": "C:\\it's\\a ‘quoted’ ‚path‛"},
    {"s": "'; Remove-Item -Recurse C:\\ ; '"},
    {"s": "’; Remove-Item -Recurse C:\\ ; ‘"},
    {"s": '" $(Stop-Computer) ${env:PATH} `n `"'},
    {"s": "line one\nline two\r\n'@\n\"@"},
    {"s": "; & | > < @( ) { } # <# #>"},
    {"s": "unicode: é ß 中文 🙂 \u2028 \x00 \x1b"},
    {"nested": {"list": ["'", "''", "'''", "‘’", "`'"], "n": 1, "b": True, "z": None}},
    {"password": Secret("p'a’s$(s)`\"w;o|rd")},
]


def reveal(value):
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


@pytest.mark.parametrize("payload", NASTY_PAYLOADS, ids=range(len(NASTY_PAYLOADS)))
def test_remote_call_is_one_command_with_one_json_literal(payload):
    text = remote_call("Set-IisConfig", payload).get_raw_value()
    assert syntax_errors(text) == []
    calls = command_calls(text).calls
    assert len(calls) == 1
    (call,) = calls
    assert call.name == "Set-IisConfig"
    assert [(element.kind, element.text) for element in call.elements[:1]] == [("parameter", "Json")]
    assert len(call.elements) == 2 and call.elements[1].kind == "argument"
    # PowerShell's own rule for single-quoted literals (typographic quotes included, which
    # tree-sitter does not know): the literal must end exactly at the end of the command.
    prefix = "Set-IisConfig -Json "
    assert text.startswith(prefix)
    value, rest = decode_single_quoted(text[len(prefix):])
    assert rest == ""
    assert call.elements[1].text == text[len(prefix):]
    assert json.loads(value) == reveal(payload)


@pytest.mark.parametrize(
    "payload",
    [{"s": "'; Remove-Item -Recurse C:\\ ; '"}, {"s": "’; Remove-Item -Recurse C:\\ ; ‘"}],
)
def test_naive_splicing_would_be_caught(payload):
    # The control: the same checks fail for a command that splices JSON without doubling quotes.
    text = "Set-IisConfig -Json '" + json.dumps(payload, ensure_ascii=False) + "'"
    value, rest = decode_single_quoted(text[len("Set-IisConfig -Json "):])
    assert rest != ""
    assert value != json.dumps(payload, ensure_ascii=False)


# --- What hosts load: the module with its comment lines blanked --------------------------


def code_tokens(text: str) -> list[tuple[str, str]]:
    """Every leaf of the tree-sitter parse that is not a comment, as (type, text), in order."""

    from support.powershell import parse

    tokens, stack = [], [parse(text).root_node]
    while stack:
        node = stack.pop()
        if node.type == "comment":
            continue
        if node.child_count == 0:
            tokens.append((node.type, node.text.decode()))
        else:
            stack.extend(reversed(node.children))
    return tokens


def test_hosts_load_the_same_code_without_the_comments_on_the_same_lines():
    from pyinfra_iis.remote import host_module_source

    full, sent = module_source(), host_module_source()
    assert syntax_errors(sent) == []
    assert code_tokens(sent) == code_tokens(full)  # the same code, token for token
    assert sent.count("\n") == full.count("\n")  # line numbers in PowerShell errors still match the files
    assert len(sent) < 0.75 * len(full)
    assert "<#" not in sent and ".SYNOPSIS" not in sent


def test_blanking_keeps_here_strings_requires_and_comments_after_code():
    from pyinfra_iis.remote import blank_comment_lines

    source = "\n".join([
        "#Requires -Version 5.1",
        "# a comment",
        "    <#",
        "    .SYNOPSIS",
        "    #>",
        "<# one line #>",
        "$text = @'",
        "# not a comment: inside a here-string",
        "<# neither",
        "'@",
        "$x = 1  # kept: after code",
        "<# a #> $y = 2",
    ])
    assert blank_comment_lines(source).split("\n") == [
        "#Requires -Version 5.1", "", "", "", "", "",
        "$text = @'", "# not a comment: inside a here-string", "<# neither", "'@",
        "$x = 1  # kept: after code", "<# a #> $y = 2",
    ]


# --- Size: what runs only on Windows stays small enough to review line by line ---------------------------

#: The most lines of PowerShell the project may hold (every ``.ps1``, comments included): half of the
#: 5,267 lines the remote layer had when its logic still lived on the host.
MAX_POWERSHELL_LINES = 2600

#: The most lines one function of the module may have.
MAX_FUNCTION_LINES = 80


def test_powershell_stays_small():
    total = sum(len((REMOTE / name).read_text(encoding="utf-8").splitlines()) for name in PS_FILES)
    assert total <= MAX_POWERSHELL_LINES, total
    from support.powershell import _walk, parse

    long = {f"{name}:{node.start_point.row + 1}": node.end_point.row - node.start_point.row + 1
            for name in PS_FILES for node in _walk(parse((REMOTE / name).read_text(encoding="utf-8")).root_node)
            if node.type == "function_statement" and node.end_point.row - node.start_point.row + 1 > MAX_FUNCTION_LINES}
    assert long == {}
