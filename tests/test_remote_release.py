"""The module's host programs, Python and release functions (PyinfraIis/15-programs.ps1,
85-python.ps1, 90..94-release-*.ps1) against the contract (docs/remote-functions.md, "Releases")
and the rules of design.md "The PowerShell module", as far as a static look can check them: there
is no PowerShell here.

Parsing and the cmdlet/parameter check of every module file are in test_powershell_module.py,
the contract's function list for module and simulator in test_remote_contract.py; this file
checks what is specific to releases.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyinfra_iis.remote import module_source, read_remote_file
from support.powershell import check_script, command_calls, load_reference, syntax_errors
from test_remote_contract import APPROVED_VERBS, CONTRACT, code_without_strings_and_comments, function_bodies, release_contract_functions

RELEASE_FILES = (
    "PyinfraIis/15-programs.ps1",
    "PyinfraIis/85-python.ps1",
    "PyinfraIis/90-release-state.ps1",
    "PyinfraIis/91-release-install.ps1",
    "PyinfraIis/92-release-health.ps1",
    "PyinfraIis/93-release-switch.ps1",
    "PyinfraIis/94-release-cleanup.ps1",
)
TEXT = {name: read_remote_file(name) for name in RELEASE_FILES}
#: The release parts (90..94) as one text.
RELEASES_TEXT = "\n".join(text for name, text in TEXT.items() if name.startswith("PyinfraIis/9"))
BODIES = {fn: body for text in TEXT.values() for fn, body in function_bodies(text).items()}
ALL_BODIES = function_bodies(module_source())

#: The contract's release functions and the keys of the one JSON line each prints.
RESULT_KEYS = {
    "Install-Python": {"installed", "version", "path"},
    "Install-Release": {"version", "installed", "path"},
    "Switch-Release": {"switched", "from", "to", "health"},
    "Remove-OldReleases": {"removed"},
}


def contract_section(title: str) -> str:
    text = CONTRACT.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def code(name: str) -> str:
    """Body of function ``name`` without strings and comments."""

    return code_without_strings_and_comments(BODIES[name])


def called(body: str) -> set[str]:
    return {call.name for call in command_calls(body).calls if call.name}


# --- The files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_file_parses(name):
    assert syntax_errors(TEXT[name]) == []


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_file_names_only_real_cmdlets_parameters_and_module_functions(name, reference_data):
    defined = dict(command_calls(module_source()).defined)
    problems = check_script(TEXT[name], defined=defined, reference=reference_data, include_warnings=True)
    assert [str(problem) for problem in problems] == []


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_full_cmdlet_and_parameter_names_only(name, reference_data):
    cmdlets = load_reference(reference_data)
    problems = []
    for call in command_calls(TEXT[name]).calls:
        spec = cmdlets.lookup(call.name or "")
        if spec is None:
            continue
        if call.name != spec.name:
            problems.append(f"{call.line}: {call.name} is an alias or miscased; write {spec.name}")
        canonical = set(spec.names.values()) | set(cmdlets.common.values())
        problems.extend(f"{call.line}: {call.name} -{e.text}: use the full name" for e in call.elements if e.kind == "parameter" and e.text not in canonical)
    assert problems == []


def test_no_function_shadows_a_cmdlet(reference_data):
    cmdlets = load_reference(reference_data)
    assert sorted(fn for fn in BODIES if cmdlets.lookup(fn)) == []


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_functions_use_approved_verbs(name):
    verbs = {fn.split("-", 1)[0] for fn in function_bodies(TEXT[name])}
    assert verbs and verbs <= APPROVED_VERBS, sorted(verbs - APPROVED_VERBS)


@pytest.mark.parametrize("name", RELEASE_FILES)
def test_no_powershell_7_syntax_and_no_native_stderr_redirection(name):
    text = code_without_strings_and_comments(TEXT[name])
    for token in ("??", "?.", "&&", "||", "?[", "-Parallel", "2>&1"):
        assert token not in text, f"{name} uses {token!r}"


def test_function_names_are_unique_across_the_module():
    names = re.findall(r"(?m)^function ([A-Za-z-]+)", module_source())
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert set(BODIES) <= set(ALL_BODIES)


# --- The contract's release functions -----------------------------------------------------------


def test_contract_release_functions_are_the_ones_we_implement():
    # Guards the heading the list is cut from: an empty list would make the next tests vacuous.
    assert release_contract_functions() == set(RESULT_KEYS)


@pytest.mark.parametrize("name", sorted(RESULT_KEYS))
def test_release_function_is_defined_here_with_one_mandatory_json_argument(name):
    assert name in BODIES, f"{name} should be defined in {RELEASE_FILES}"
    definition = command_calls(module_source()).defined[name.lower()]
    assert (definition.parameters, definition.mandatory, definition.advanced) == (("Json",), ("Json",), True)


@pytest.mark.parametrize("name", sorted(RESULT_KEYS))
def test_release_function_reads_json_and_prints_only_through_write_call_result(name):
    names = called(BODIES[name])
    assert {"ConvertFrom-CallJson", "Write-CallResult"} <= names
    assert not names & {"Write-Host", "Write-Output", "Out-Host", "Out-Default", "Out-String"}


@pytest.mark.parametrize("name", sorted(RESULT_KEYS))
def test_result_keys_are_the_contracts(name):
    # The keys of the [ordered]@{...} literals handed to Write-CallResult (directly or through
    # New-SwitchResult), compared with the contract's example output.
    body = BODIES[name] + (BODIES["New-SwitchResult"] if name == "Switch-Release" else "")
    keys = set()
    for literal in re.findall(r"\[ordered\]@\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", body):
        keys |= set(re.findall(r"(?:^|[;\n]|\{)\s*([a-z_]+) = ", literal))
    section = contract_section("## Releases")
    example = re.search(re.escape(name) + r" -Json '[^\n]*'\n\s*→ (\{[^\n]*\})", section).group(1)
    documented = set(re.findall(r'"([a-z_]+)":', example)) - {"status", "body", "seconds"}
    assert documented == RESULT_KEYS[name]
    assert RESULT_KEYS[name] <= keys, (name, keys)


# --- Install-Python -----------------------------------------------------------------------------


def test_python_installer_hash_is_checked_before_the_installer_runs():
    body = BODIES["Install-Python"]
    assert 0 < body.index("Assert-FileSha256") < body.index("Invoke-HostProgram")
    assert "Get-FileHash" in called(BODIES["Assert-FileSha256"])
    # The idempotent answer comes before the hash check: a converged host runs nothing.
    assert body.index("installed = $false") < body.index("Assert-FileSha256")


def test_python_installer_arguments_are_the_contracts_and_the_simulators():
    from pyinfra_iis.sim.functions.python import INSTALLER_ARGUMENTS

    documented = re.search(r"`<installer> ([^`]*)`", CONTRACT.read_text(encoding="utf-8").replace("\n", " ")).group(1)
    documented = re.sub(r"\s+", " ", documented).replace("<target_dir>", "{target_dir}")
    line = re.search(r"\$arguments = @\((.*)\)\n", BODIES["Install-Python"]).group(1)
    written = " ".join(re.findall(r"'([^']*)'", line)[:-1]) + "{target_dir}"
    assert written == documented == INSTALLER_ARGUMENTS
    assert "'/log', $log" in line  # the installer log, tailed on failure


def test_python_detection_reads_hklm_pythoncore_only():
    body = BODIES["Get-PythonInstallState"] + BODIES["Get-PythonInstallFolder"]
    assert r"'SOFTWARE\Python\PythonCore\' + $Tag" in body
    assert "'ExecutablePath'" in body and "$key + '\\InstallPath'" in body
    assert "LocalMachine" in body and "CurrentUser" not in module_source()


def test_install_python_accepts_only_success_exit_codes_and_tails_the_log():
    body = BODIES["Install-Python"]
    assert "$run['exit_code'] -ne 0 -and $run['exit_code'] -ne 3010" in body
    assert "Get-TextFileTail -Path $log -Count 30" in body


def test_host_programs_never_inherit_the_workers_standard_streams():
    # A child reading the worker's stdin or writing its stdout would corrupt the frame protocol.
    body = code("Invoke-HostProgram")
    for stream in ("Input", "Output", "Error"):
        assert f"$startInfo.RedirectStandard{stream} = $true" in body
    assert "$startInfo.UseShellExecute = $false" in body
    assert "$process.WaitForExit($TimeoutSeconds * 1000)" in body and "$process.Kill()" in body
    assert "Start-Process" not in called(module_source())


# --- Install-Release ----------------------------------------------------------------------------


def test_install_release_builds_in_partial_and_renames_last():
    body = code("Install-Release")
    order = [
        "Remove-Item -LiteralPath $partial",
        "Expand-ReleaseArchive",
        "Test-ReleaseFiles",
        "-Arguments @(",  # -m venv
        "$pipArguments",
        "$script:ReleaseCompleteMarker",
        "Move-ReleaseFolder -Source $partial -Destination $final",
    ]
    positions = [body.index(step) for step in order]
    assert positions == sorted(positions), dict(zip(order, positions))
    assert ".CommitChanges()" not in body


def test_pip_installs_offline_from_the_wheelhouse_and_the_manifests_requirements():
    from pyinfra_iis.release.manifest import REQUIREMENTS_NAME, WHEELHOUSE_DIR

    body = BODIES["Install-Release"]
    pip = re.search(r"\$pipArguments = @\((.*?)\)\n", body, re.DOTALL).group(1)
    assert "'--no-index'" in pip and "'--find-links'" in pip and "'--requirement'" in pip
    assert f"-ChildPath '{WHEELHOUSE_DIR}'" in pip
    assert f"-ChildPath '{REQUIREMENTS_NAME}'" in body
    assert "@('-m', 'venv', $venv)" in body


def test_release_files_are_checked_for_zip_slip_before_extraction():
    body = BODIES["Expand-ReleaseArchive"]
    assert body.index("Resolve-ReleaseEntryPath") < body.index("ExtractToFile")
    guard = BODIES["Resolve-ReleaseEntryPath"]
    assert "$segments -contains '..'" in guard and "$relative.IndexOf(':')" in guard
    assert "$full.StartsWith($base, [System.StringComparison]::OrdinalIgnoreCase)" in guard
    # Every manifest path goes through the same guard before it is hashed.
    assert "Resolve-ReleaseEntryPath -Folder $Folder -Name $name" in BODIES["Test-ReleaseFiles"]


def test_text_files_are_written_as_utf8_without_bom():
    assert "-ArgumentList $false" in BODIES["Get-Utf8NoBom"] and "UTF8Encoding" in BODIES["Get-Utf8NoBom"]
    writes = re.findall(r"\[System\.IO\.File\]::WriteAllText\(([^\n]*)\)\n", RELEASES_TEXT)
    assert len(writes) == 3  # web.config, completion marker, release-state.json
    assert all(write.endswith(", (Get-Utf8NoBom)") for write in writes), writes


def test_release_state_is_replaced_atomically():
    body = code("Write-ReleaseState")
    assert "$temp = $Path +" in body
    assert body.index("WriteAllText($temp") < body.index("[System.IO.File]::Replace($temp, $Path, $null)")
    assert "[System.IO.File]::Move($temp, $Path)" in body


# --- Switch-Release -----------------------------------------------------------------------------


def test_only_set_site_root_path_commits_and_it_commits_once():
    committing = [fn for fn, body in BODIES.items() if ".CommitChanges()" in code_without_strings_and_comments(body)]
    assert committing == ["Set-SiteRootPath"]
    assert code("Set-SiteRootPath").count(".CommitChanges()") == 1
    assert "$directory.PhysicalPath = $Path" in BODIES["Set-SiteRootPath"]
    assert "$SiteObject.Applications['/']" in BODIES["Get-SiteRootDirectory"]
    assert "$application.VirtualDirectories['/']" in BODIES["Get-SiteRootDirectory"]


def test_switch_refuses_incomplete_releases_before_touching_iis():
    body = code("Switch-Release")
    assert body.index("Test-ReleaseComplete -Folder $target") < body.index("Set-SiteRootPath")
    marker_checks = BODIES["Test-ReleaseComplete"]
    assert "$script:ReleaseCompleteMarker, 'manifest.json', 'web.config'" in marker_checks


def test_switch_restores_and_records_a_failed_health_check():
    body = BODIES["Switch-Release"]
    healthy = body.index("if ($answer['ok'])", body.index("Wait-ReleaseHealthy -Health $health -Clock $clock"))
    restore = body.index("Restore-SiteRootPath", healthy)
    assert body.index("-Ok $false") > restore
    assert body.rstrip().endswith("}") and "throw (" in body[restore:]
    restore_body = BODIES["Restore-SiteRootPath"]
    assert "Set-SiteRootPath -Site $Site -Path $OldPath" in restore_body
    assert restore_body.index("Set-SiteRootPath") < restore_body.index("Restart-ReleaseAppPool")


def test_health_request_sets_host_and_bounds_every_wait():
    body = BODIES["Invoke-HealthRequest"]
    for line in ("$request.Host = $HostName", "$request.Timeout = $TimeoutSeconds * 1000",
                 "$request.ReadWriteTimeout = $TimeoutSeconds * 1000", "$request.AllowAutoRedirect = $false",
                 "$request.KeepAlive = $false"):
        assert line in body
    assert "SecurityProtocolType]::Tls12" in ALL_BODIES["Enable-ModernTls"]
    assert "Enable-ModernTls" in called(BODIES["Wait-ReleaseHealthy"])
    # The loop ends once the deadline is near: the exit test compares elapsed time with it.
    assert "-ge $deadline" in BODIES["Wait-ReleaseHealthy"]


def test_failure_message_carries_body_head_and_log_tail():
    source = RELEASES_TEXT
    assert re.search(r"\$script:HealthBodyBytes = 2048\b", source)
    assert re.search(r"\$script:ReleaseLogTailLines = 30\b", source)
    body = BODIES["Switch-Release"]
    assert "Format-HealthAnswer -Answer $answer -Health $health" in body
    assert "Get-NewestLogTail -Folder $layout['logs'] -Count $script:ReleaseLogTailLines" in body


# --- Remove-OldReleases and Get-HostState --------------------------------------------------------


def test_remove_old_releases_protects_current_and_previous():
    body = code("Remove-OldReleases")
    assert "$protected = @([string]$state['current'], [string]$state['previous'])" in BODIES["Remove-OldReleases"]
    assert "if ($protected -contains $folder.Version) { continue }" in BODIES["Remove-OldReleases"]
    assert body.index("$complete.Count - $keep") < body.index("Remove-Item")


def test_get_host_state_reports_pythons_and_releases():
    body = ALL_BODIES["Get-HostState"]
    if "pythons" not in body:
        pytest.skip("20-hoststate.ps1 does not merge the release parts yet")
    assert "python_versions" in body and "release_roots" in body
    assert "pythons = Get-PythonState -Versions $pythonVersions" in body
    assert "releases = Get-ReleaseRootState -Roots $releaseRoots" in body
