"""Each rule of support.ps51 on a planted defect (must be found, with that rule id, on that line)
and on its clean counterpart (must report nothing at all)."""

from __future__ import annotations

import pytest

from support.ps51 import RULES, check_ps51, code_mask, main, rsca_names

# (rule, planted defect, clean counterpart). The defect is on line 2 of each planted script
# (line 1 is an innocent statement), so the test also proves the line number.
CASES = [
    # PowerShell 7 syntax
    ("PS7-SYNTAX", "$b = 1\n$a = $b ?? 2", "$b = 1\n$a = if ($null -ne $b) { $b } else { 2 }"),
    ("PS7-SYNTAX", "$a = 1\n$a ??= 2", "$a = 1\nif ($null -eq $a) { $a = 2 }"),
    ("PS7-SYNTAX", "$x = Get-Item C:\\x\n$n = ${x}?.Name", "$x = Get-Item C:\\x\n$n = if ($null -ne $x) { $x.Name }"),
    ("PS7-SYNTAX", "$x = @(1)\n$n = ${x}?[0]", "$x = @(1)\n$n = $x[0]"),
    ("PS7-SYNTAX", "$a = 1\n$b = $a -gt 0 ? 'yes' : 'no'", "$a = 1\n$b = if ($a -gt 0) { 'yes' } else { 'no' }"),
    ("PS7-SYNTAX", "$a = 1\nGet-Item C:\\x && Get-Item C:\\y", "$a = 1\nGet-Item C:\\x; if ($?) { Get-Item C:\\y }"),
    ("PS7-SYNTAX", "$a = 1\nGet-Item C:\\x || Write-Warning 'no'", "$a = 1\nif ($a -or $b) { Write-Warning 'no || ?? ?. a ? b : c' }  # && || ??"),
    ("PS7-SYNTAX", "function f {\n  clean { Remove-Item C:\\x }\n}", "function f {\n  end { try { 1 } finally { Remove-Item C:\\x } }\n}"),
    # PowerShell 7-only cmdlets, parameters, variables, encodings
    ("PS7-CMDLET", "$j = '{}'\nTest-Json -Json $j", "$j = '{}'\n$null = ConvertFrom-Json -InputObject $j"),
    ("PS7-CMDLET", "$a = 1\n$s = @(1, 2) | Join-String -Separator ','", "$a = 1\n$s = @(1, 2) -join ','"),
    ("PS7-CMDLET", "$a = 1\nGet-Error", "$a = 1\n$e = $Error[0]"),
    ("PS7-PARAMETER", "$a = 1\n@(1, 2) | ForEach-Object -Parallel { $_ }", "$a = 1\n@(1, 2) | ForEach-Object -Process { $_ }"),
    ("PS7-PARAMETER", "$a = 1\nForEach-Object -InputObject $a -Parallel { $_ } -ThrottleLimit 4", "$a = 1\nForEach-Object -InputObject $a -Process { $_ }"),
    ("PS7-PARAMETER", "$j = '{}'\n$o = ConvertFrom-Json -InputObject $j -AsHashtable", "$j = '{}'\n$o = ConvertFrom-Json -InputObject $j"),
    ("PS7-PARAMETER", "$j = '{}'\n$o = $j | ConvertFrom-Json -Depth 10", "$j = '{}'\n$o = $j | ConvertFrom-Json"),
    ("PS7-PARAMETER", "$a = 1\n$b = Get-Content -LiteralPath C:\\x -AsByteStream", "$a = 1\n$b = [System.IO.File]::ReadAllBytes('C:\\x')"),
    ("PS7-PARAMETER", "$a = 1\n$o = ConvertFrom-Json -InputObject '{}' -AsHash", "$a = 1\n$o = ConvertFrom-Json -InputObject '{}'"),  # a prefix
    ("PS7-VARIABLE", "$a = 1\nif ($IsWindows) { $a = 2 }", "$a = 1\nif ($env:OS -eq 'Windows_NT') { $a = 2 }"),
    ("PS7-VARIABLE", "$a = 1\nif ($IsLinux -or $IsMacOS) { $a = 2 }", "$a = 1\nif ($PSVersionTable.PSEdition -eq 'Core') { $a = 2 }"),
    ("PS7-VARIABLE", "$a = 1\n$c = $PSStyle.Reset", "$a = 1\n$c = $PSVersionTable"),
    ("PS7-VARIABLE", "$a = 1\n$c = $IsCoreCLR", "$IsCoreCLR = $false\n$c = $IsCoreCLR"),  # assigned in the file
    ("PS7-ENCODING", "$a = 1\nGet-Content -LiteralPath C:\\x -Encoding utf8NoBOM", "$a = 1\nGet-Content -LiteralPath C:\\x -Encoding UTF8"),
    ("PS7-ENCODING", "$a = 1\nOut-File -FilePath C:\\x -InputObject $a -Encoding 'utf8BOM'", "$a = 1\nOut-File -FilePath C:\\x -InputObject $a -Encoding 'Unicode'"),
    ("PS7-ENCODING", "$a = 1\nSet-Content -Path C:\\x -Value $a -Encoding ansi", "$a = 1\nSet-Content -Path C:\\x -Value $a -Encoding Default"),
    ("PS7-ENCODING", "$a = 1\nAdd-Content -Path C:\\x -Value $a -Encoding 65001", "$a = 1\nAdd-Content -Path C:\\x -Value $a -Encoding $enc"),
    # Join-Path
    ("JOIN-PATH", "$a = 1\n$p = Join-Path $a 'b' 'c'", "$a = 1\n$p = Join-Path (Join-Path $a 'b') 'c'"),
    ("JOIN-PATH", "$a = 1\n$p = Join-Path -Path $a -ChildPath 'b' -AdditionalChildPath 'c'", "$a = 1\n$p = Join-Path -Path $a -ChildPath 'b'"),
    ("JOIN-PATH", "$a = 1\n$p = Join-Path -Path $a -ChildPath 'b' 'c'", "$a = 1\n$p = Join-Path -Path $a -ChildPath 'b' -Resolve"),
    # .NET Core-only members
    ("NETCORE-MEMBER", "$a = 1\n$r = [System.IO.Path]::GetRelativePath($a, $b)", "$a = 1\n$r = [System.IO.Path]::GetFileName($a)"),
    ("NETCORE-MEMBER", "$a = 1\n$r = [IO.Path]::Join($a, 'b')", "$a = 1\n$r = [IO.Path]::Combine($a, 'b')"),
    ("NETCORE-MEMBER", "$a = 1\n$h = [Convert]::ToHexString($bytes)", "$a = 1\n$h = [BitConverter]::ToString($bytes).Replace('-', '')"),
    ("NETCORE-MEMBER", "$a = 1\n$b = [System.Convert]::FromHexString($h)", "$a = 1\n$b = [System.Convert]::FromBase64String($h)"),
    ("NETCORE-MEMBER", "$a = 1\n$h = [System.Security.Cryptography.SHA256]::HashData($bytes)", "$a = 1\n$h = [System.Security.Cryptography.SHA256]::Create()"),
    ("NETCORE-MEMBER", "$a = 1\n$t = [System.IO.File]::ReadAllTextAsync($p).Result", "$a = 1\n$t = [System.IO.File]::ReadAllText($p)"),
    ("NETCORE-MEMBER", "$a = 1\n[IO.File]::WriteAllBytesAsync($p, $b).Wait()", "$a = 1\n[IO.File]::WriteAllBytes($p, $b)"),
    ("NETCORE-MEMBER", "$a = 1\n[IO.File]::Move($p, $q, $true)", "$a = 1\n[IO.File]::Move($p, $q)"),
    ("NETCORE-MEMBER", "$a = 1\n$f = [System.IO.Path]::GetFullPath($p, $base)", "$a = 1\n$f = [System.IO.Path]::GetFullPath($p)"),
    ("NETCORE-MEMBER", "$a = 'x'\n$c = $a.Contains([char]'x')", "$a = 'x'\n$c = $a.Contains('x')"),
    ("NETCORE-MEMBER", "$a = 'x'\n$c = $a.Contains('x', [System.StringComparison]::OrdinalIgnoreCase)", "$a = 'x'\n$c = $a.IndexOf('x', [System.StringComparison]::OrdinalIgnoreCase) -ge 0"),
    ("NETCORE-MEMBER", "$a = 1\n$p = [Environment]::ProcessPath", "$a = 1\n$p = [Environment]::MachineName"),
    ("NETCORE-MEMBER", "$a = 1\n$r = [System.Security.Cryptography.RandomNumberGenerator]::GetBytes(32)", "$a = 1\n[System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($buffer)"),
    ("NETCORE-MEMBER", "$a = 1\n$n = [Random]::Shared.Next()", "$a = 1\n$n = (New-Object System.Random).Next()"),
    ("NETCORE-MEMBER", "Add-Type -AssemblyName System.Net.Http\n$c = New-Object System.Net.Http.HttpClient; $r = $c.Send($m)", "Add-Type -AssemblyName System.Net.Http\n$c = New-Object System.Net.Http.HttpClient; $r = $c.SendAsync($m).GetAwaiter().GetResult()"),
    ("NETCORE-MEMBER", "$a = 1\n$s = $bytes.AsSpan()", "$a = 1\n$s = $bytes.Clone()"),
    ("NETCORE-MEMBER", "$a = 1\n$o = [System.Text.Json.JsonSerializer]::Serialize($a)", "$a = 1\n$o = ConvertTo-Json -InputObject $a -Depth 4 -Compress"),
    # Assemblies 5.1 does not load
    ("ADD-TYPE", "$a = 1\n$z = [System.IO.Compression.ZipFile]::OpenRead($p)", "Add-Type -AssemblyName System.IO.Compression.FileSystem\n$z = [System.IO.Compression.ZipFile]::OpenRead($p)"),
    ("ADD-TYPE", "$a = 1\n$z = New-Object System.IO.Compression.ZipArchive($s)", "Add-Type -AssemblyName 'System.IO.Compression'\n$z = New-Object System.IO.Compression.ZipArchive($s)"),
    ("ADD-TYPE", "$a = 1\n$c = New-Object -TypeName System.Net.Http.HttpClient", "Add-Type -AssemblyName System.Net.Http\n$c = New-Object -TypeName System.Net.Http.HttpClient"),
    ("ADD-TYPE", "$a = 1\n$c = [System.Net.Http.HttpClient]::new()", "Add-Type -AssemblyName System.Net.Http\n$c = [System.Net.Http.HttpClient]::new()"),
    # PSCustomObject parameter type
    ("PSCUSTOMOBJECT-PARAM", "function f {\n  param([System.Management.Automation.PSCustomObject] $Call)\n  $Call\n}", "function f {\n  param([psobject] $Call, [PSCustomObject] $Other)\n  $Call\n}"),
    ("PSCUSTOMOBJECT-PARAM", "$b = {\n  param([Management.Automation.PSCustomObject] $Call)\n}", "$b = {\n  param([object] $Call)\n}"),
    # $null into .NET methods
    ("NULL-ARG", "$a = 1\n[System.IO.File]::Replace($tmp, $path, $null)", "$a = 1\n[System.IO.File]::Replace($tmp, $path, [NullString]::Value)"),
    ("NULL-ARG", "$a = 1\n$x = $s.Substring($null)", "$a = 1\n$x = $s.Substring(0)  # $null in a comment"),
    # Web cmdlets
    ("BASIC-PARSING", "$a = 1\nInvoke-WebRequest -Uri $u -OutFile $f", "$a = 1\nInvoke-WebRequest -Uri $u -OutFile $f -UseBasicParsing"),
    ("BASIC-PARSING", "$a = 1\n$r = Invoke-RestMethod -Uri $u", "$a = 1\n$r = Invoke-RestMethod -Uri $u -UseBasicParsing"),
    ("BASIC-PARSING", "$a = 1\niwr $u -OutFile $f", "$a = 1\niwr $u -OutFile $f -UseBasicParsing"),
    ("BASIC-PARSING", "$p = @{ Uri = $u; OutFile = $f }\nInvoke-WebRequest @p", "$p = @{ Uri = $u; OutFile = $f }\n$p['UseBasicParsing'] = $true\nInvoke-WebRequest @p; Invoke-WebRequest @fromCaller"),
    ("JSON-DEPTH", "$p = @{\n  Compress = $true }\n$j = $a | ConvertTo-Json @p", "$p = @{\n  Depth = 8; Compress = $true }\n$j = $a | ConvertTo-Json @p"),
    # Encodings and redirection
    ("ENCODING-DEFAULT", "$a = 1\n$a | Out-File -FilePath C:\\x", "$a = 1\n$a | Out-File -FilePath C:\\x -Encoding UTF8"),
    ("ENCODING-DEFAULT", "$a = 1\nSet-Content -Path C:\\x -Value $a", "$a = 1\n[System.IO.File]::WriteAllText('C:\\x', $a, (New-Object System.Text.UTF8Encoding $false))"),
    ("ENCODING-DEFAULT", "$a = 1\nAdd-Content -Path C:\\x -Value $a", "$a = 1\nAdd-Content -Path C:\\x -Value $a -Encoding UTF8"),
    ("REDIRECTION", "$a = 1\n$a > C:\\x.txt", "$a = 1\n$a > $null"),
    ("REDIRECTION", "$a = 1\nGet-Item C:\\x 2>> C:\\err.txt", "$a = 1\nGet-Item C:\\x 2> $null"),
    ("SERVICE-WAIT", "$a = 1\nStart-Service -Name $n", "$a = Get-Service -Name $n\n$a.Start(); $a.WaitForStatus('Running', [TimeSpan]::FromSeconds(120))"),
    ("SERVICE-WAIT", "$a = 1\nStop-Service -Name $n -WarningAction SilentlyContinue", "$a = 1\nStop-Service -Name $n -NoWait"),
    ("JSON-DEPTH", "$a = 1\n$j = ConvertTo-Json -InputObject $a -Compress", "$a = 1\n$j = ConvertTo-Json -InputObject $a -Depth 8 -Compress"),
    ("JSON-DEPTH", "$a = 1\n$j = $a | ConvertTo-Json", "$a = 1\n$j = $a | ConvertTo-Json -Depth 8 -Compress"),
    # Output leaks
    ("OUTPUT-LEAK", "$l = New-Object System.Collections.ArrayList\n$l.Add(1)", "$l = New-Object System.Collections.ArrayList\n[void]$l.Add(1)"),
    ("OUTPUT-LEAK", "$l = New-Object System.Collections.ArrayList\nif ($true) { $l.Add(1) }", "$l = New-Object System.Collections.ArrayList\nif ($true) { $null = $l.Add(1) }"),
    ("OUTPUT-LEAK", "$l = New-Object System.Collections.ArrayList\n$l.AddRange(@(1))", "$l = New-Object System.Collections.ArrayList\n$l.AddRange(@(1)) | Out-Null"),
    ("OUTPUT-LEAK", "$s = New-Object System.Collections.Generic.HashSet[string]\n$s.Remove('x')", "$s = New-Object System.Collections.Generic.HashSet[string]\n$s.Remove('x') > $null"),
    ("OUTPUT-LEAK", "$b = New-Object System.Text.StringBuilder\n$b.Insert(0, 'x')", "$b = New-Object System.Text.StringBuilder\n[void]$b.Insert(0, 'x')"),
    ("OUTPUT-LEAK", "$b = New-Object System.Text.StringBuilder\n$b.Append('x')", "$b = New-Object System.Text.StringBuilder\n$text = $b.Append('x').ToString()"),
    ("OUTPUT-LEAK", "$a = 1\nNew-Item -ItemType Directory -Path C:\\x -Force", "$a = 1\n$null = New-Item -ItemType Directory -Path C:\\x -Force"),
    ("OUTPUT-LEAK", "$a = 1\nNew-Item -ItemType Directory -Path C:\\x | Select-Object -First 1", "$a = 1\nNew-Item -ItemType Directory -Path C:\\x | Out-Null"),
    ("OUTPUT-LEAK", "$a = 1\nmkdir C:\\x", "$a = 1\n[void](New-Item -ItemType Directory -Path C:\\x)"),
    # Split with a multi-character string
    ("SPLIT-MULTICHAR", "$a = 'a, b'\n$p = $a.Split(', ')", "$a = 'a, b'\n$p = $a.Split(',')"),
    ("SPLIT-MULTICHAR", "$a = 'a'\n$p = $a.Split(\"`r`n\")", "$a = 'a'\n$p = $a -split '\\r?\\n'; $q = $a.Split([char]\"`n\")"),
    ("SPLIT-MULTICHAR", "$a = 'a'\n$p = $a.Split([string]'::', [System.StringSplitOptions]::None)", "$a = 'a'\n$p = $a.Split([string[]]@('::'), [System.StringSplitOptions]::None)"),
    ("NETCORE-MEMBER", "$a = 1\n$v = [semver]'1.2.3'", "$a = 1\n$v = [version]'1.2.3'"),
    # RSCA runtime attributes and walks
    ("RSCA-ATTRIBUTE", "$site = $m.Sites['a']\n$s = $site.GetAttributeValue('state')", "$site = $m.Sites['a']\n$s = $site.GetAttributeValue('serverAutoStart')"),
    ("RSCA-ATTRIBUTE", "$b = $site.Bindings[0]\n$b.SetAttributeValue('certificateHash', $hash)", "$b = $site.Bindings[0]\n$b.SetAttributeValue('protocol', 'https')"),
    ("RSCA-ATTRIBUTE", "$b = $site.Bindings[0]\n$b.SetAttributeValue('certificateStoreName', 'My')", "$b = $site.Bindings[0]\n$b.AddSslCertificate($hash, 'My')"),
    ("RSCA-ATTRIBUTE", "$p = $m.ApplicationPools['a']\n$sid = $p.GetAttributeValue('applicationPoolSid')", "$p = $m.ApplicationPools['a']\ntry { $s = $p.State } catch { $s = 'Unknown' }"),
    ("RSCA-ATTRIBUTE", "$p = $m.ApplicationPools['a']\n$w = $p.GetChildElement('workerProcesses')", "$p = $m.ApplicationPools['a']\n$w = $p.GetChildElement('processModel')"),
    ("RSCA-ATTRIBUTE", "$p = $m.ApplicationPools['a']\n$s = $p['state']", "$layout = @{}\n$s = $layout['state']"),
    ("RSCA-ATTRIBUTE", "$names = @('certificateHash', 'protocol')\nforeach ($n in $names) { $binding.SetAttributeValue($n, $v[$n]) }",
     "$names = @('bindingInformation', 'protocol', 'state')\nforeach ($n in $names) { $binding.SetAttributeValue($n, $v[$n]) }"),
    ("RSCA-WALK", "$e = $section.GetChildElement('x')\nforeach ($a in $e.Attributes) { $a.Name }", "$e = $section.GetChildElement('x')\n$v = $e.GetAttributeValue('name')"),
    ("RSCA-WALK", "$e = $section.GetChildElement('x')\nforeach ($c in $e.ChildElements) { $c.ElementTagName }", "$e = $section.GetChildElement('x')\n$c = $e.GetChildElement('limits')"),
    ("RSCA-WALK", "function f {\n  param([object] $Element)\n  $Element.Attributes | ForEach-Object { $_.Name }\n}",
     "function f {\n  param([System.Xml.XmlElement] $Element)\n  $Element.Attributes | ForEach-Object { $_.Name }\n  $x = [xml]$t; $x.DocumentElement.Attributes; (Get-Item C:\\x).Attributes\n}"),
    # Native programs
    ("NATIVE-PROGRAM", "$exe = 'C:\\x.exe'\n& $exe /quiet", "$exe = 'C:\\x.exe'\n$run = Invoke-HostProgram -FilePath $exe -Arguments @('/quiet')"),
    ("NATIVE-PROGRAM", "$a = 1\nnetsh.exe http show sslcert", "$block = { param($x) $x }\n& $block 1"),
    ("NATIVE-PROGRAM", "$a = 1\ncmd /c mklink /d a b", "$a = 1\n& { Get-Item C:\\x }"),
    ("NATIVE-PROGRAM", "function f {\n  param([string] $Action)\n  & $Action\n}", "function f {\n  param([scriptblock] $Action)\n  & $Action\n}"),
    ("NATIVE-PROGRAM", "$a = 1\n& 'C:\\Windows\\System32\\icacls.exe' C:\\x /grant 'a:F'", "$a = 1\n& 'Get-Item' C:\\x"),
]

RUNNER = "function Invoke-HostProgram {\n  param($FilePath, $Arguments)\n}\n"


def _ids():
    seen: dict[str, int] = {}
    for rule, _, _ in CASES:
        seen[rule] = seen.get(rule, 0) + 1
        yield f"{rule}-{seen[rule]}"


def _check(text: str):
    return check_ps51(text, "t.ps1", defined=["Invoke-HostProgram"])


@pytest.mark.parametrize("rule, planted, clean", CASES, ids=list(_ids()))
def test_rule_finds_the_planted_defect(rule, planted, clean):
    found = _check(planted)
    lines = planted.count("\n") + 1
    expected_line = 3 if (rule, lines) in (("RSCA-WALK", 4), ("JSON-DEPTH", 3), ("NATIVE-PROGRAM", 4)) else 2
    assert any(p.rule == rule and p.line == expected_line for p in found), [str(p) for p in found]
    assert all(str(p).startswith(f"t.ps1:{p.line}: {p.rule} ") for p in found)


@pytest.mark.parametrize("rule, planted, clean", CASES, ids=list(_ids()))
def test_clean_counterpart_has_no_finding(rule, planted, clean):
    assert [str(p) for p in _check(clean)] == []


def test_every_rule_has_a_planted_defect():
    assert {rule for rule, _, _ in CASES} | {"PARSE"} == set(RULES)


def test_findings_name_the_fix():
    for rule, planted, _ in CASES:
        for problem in _check(planted):
            assert ": " in problem.message or " use " in problem.message, problem


def test_parse_errors_that_are_not_powershell_7():
    found = _check("$a = 1\nif ($a) { Get-Item 'x'\n")
    assert {p.rule for p in found} == {"PARSE"}


def test_a_comment_silences_one_rule_on_its_line():
    text = "$a = 1\n$x = $obj.Invoke($null)  # ps51-ignore: NULL-ARG the parameter is an object\n# ps51-ignore: NULL-ARG\n$y = $obj.Invoke($null)\n$z = $obj.Invoke($null)  # ps51-ignore: OUTPUT-LEAK\n"
    assert [(p.line, p.rule) for p in _check(text)] == [(5, "NULL-ARG")]


def test_add_type_elsewhere_in_the_module_counts():
    text = "$a = 1\n$z = [System.IO.Compression.ZipFile]::OpenRead($p)"
    assert [p.rule for p in check_ps51(text, "t.ps1")] == ["ADD-TYPE"]
    assert check_ps51(text, "t.ps1", context="Add-Type -AssemblyName 'System.IO.Compression.FileSystem'") == []
    # The module's own guard: load only when the type is missing.
    guarded = "if ($null -eq ('System.IO.Compression.ZipFile' -as [type])) {\n  Add-Type -AssemblyName 'System.IO.Compression.FileSystem'\n}\n" + text
    assert check_ps51(guarded, "t.ps1") == []


def test_module_functions_are_not_native_programs():
    assert [p.rule for p in check_ps51("Get-Thing -Json '{}'\nthing.exe", "t.ps1", defined=["Get-Thing"])] == ["NATIVE-PROGRAM"]


def test_masking_keeps_lines_and_blanks_strings_and_comments():
    text = "$a = 'x ?? y' # && \n<# || #>\n$b = \"q ?. `\" $c\"\n$h = @'\n?? && ||\n'@\n$c = ${a??b}"
    masked = code_mask(text)
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "??" not in masked and "&&" not in masked and "||" not in masked and "?." not in masked


def test_where_object_alias_is_not_a_ternary():
    assert _check("$a = 1\n$b = @(1, 2) | ? { $_ -gt 1 }\n$c = @(1) |\n  ? { $_ }") == []


def test_rsca_names_come_from_the_schema():
    assert {"state", "certificatehash", "certificatestorename", "workerprocesses", "applicationpoolsid"} <= rsca_names()
    assert "protocol" not in rsca_names() and "name" not in rsca_names()


def test_command_line(tmp_path, capsys):
    bad = tmp_path / "bad.ps1"
    bad.write_text("$a = 1\n$b = $a ?? 2\n", encoding="utf-8")
    good = tmp_path / "good.ps1"
    good.write_text("$a = 1\n", encoding="utf-8")
    assert main([str(good)]) == 0
    assert main([str(bad), str(good)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].endswith(out[0].split(": ", 1)[1]) and ":2: PS7-SYNTAX " in out[0]


#: Windows PowerShell 5.1 idioms, with PowerShell 7 operators inside strings, comments and
#: here-strings, the Where-Object alias, XML and file .Attributes, voided calls: nothing to report.
CLEAN_MODULE = r"""#Requires -Version 5.1
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
<# block comment with ?? and ?. and && || and a ? b : c #>
function Get-Thing {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true)]
        [psobject] $Call,
        [ValidateSet('a', 'b')]
        [string] $Mode = 'a'
    )
    $result = [ordered]@{}
    $result['name'] = $Call.name
    $items = New-Object -TypeName 'System.Collections.Generic.List[string]'
    [void]$items.Add('x')
    $null = $items.Remove('x')
    $text = @"
here-string with ?? and ?. and `$x ? 1 : 2 and && ||
"@
    $verbatim = @'
$a ?? $b; clean { }
'@
    $matched = 'file?.txt' -like '*?.txt'
    $regex = [regex]::Match($text, '^(?<k>\w+)\s*[?]\s*(?<v>.*)$')
    $files = Get-ChildItem -LiteralPath 'C:\x' -Filter '*.log' | Where-Object { $_.Length -gt 0 } | ? { $_.Name }
    $first = if ($files) { $files[0] } else { $null }
    $switch = switch -Regex ($Mode) {
        '^a?$' { 1 }
        default { 2 }
    }
    $ok = ($Mode -eq 'a') -and ($null -ne $first) -or (-not $matched)
    $path = Join-Path -Path $env:TEMP -ChildPath 'x.txt'
    $combined = [System.IO.Path]::Combine($env:TEMP, 'a', 'b')
    [System.IO.File]::WriteAllText($path, $text, (New-Object System.Text.UTF8Encoding $false))
    $bytes = [System.IO.File]::ReadAllBytes($path)
    $hex = [System.BitConverter]::ToString($bytes).Replace('-', '')
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try { $hash = $sha.ComputeHash($bytes) } finally { $sha.Dispose() }
    $parts = $text.Split(',')
    $lines = $text -split "`r?`n"
    $json = ConvertTo-Json -InputObject $result -Depth 8 -Compress
    $back = ConvertFrom-Json -InputObject $json
    $env:PATH = "$env:PATH;C:\x"  # && || ?? in a comment
    Get-Item -LiteralPath $path 2> $null
    $output = & { param($v) $v } 1
    $block = [scriptblock]::Create('1')
    $value = & $block
    Remove-Item -LiteralPath $path -Force -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Path 'C:\y' -Force | Out-Null
    $created = New-Item -ItemType File -Path 'C:\y\z' -Force
    $count = @($files).Count
    $r = Invoke-WebRequest -Uri 'https://example.org/' -UseBasicParsing
    $x = [xml]'<a b="1"/>'
    foreach ($attribute in $x.DocumentElement.Attributes) { $attribute.Name }
    $file = Get-Item -LiteralPath 'C:\x'
    $isReadOnly = $file.Attributes -band [System.IO.FileAttributes]::ReadOnly
    $builder = New-Object System.Text.StringBuilder
    [void]$builder.Append('a').Append('b')
    $ternaryLike = @{ a = '?'; b = ':' }
    $call = "Set-X -Json '$json'"
    Write-CallResult -InputObject $result
}
"""


def test_a_clean_5_1_function_has_no_finding():
    assert [str(p) for p in check_ps51(CLEAN_MODULE, "clean.ps1", defined=["Write-CallResult"])] == []
