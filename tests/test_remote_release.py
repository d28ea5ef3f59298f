"""The release half of the PowerShell module (00-common, 15-programs, 85-python, 90..94) as host
primitives (issue 9's design change), checked statically (no PowerShell here), and the issue 15
items that live in that text. Each test names the item; each fails on the code before the change.
"""

from __future__ import annotations

import re

import pytest

from pyinfra_iis.remote import module_source, read_remote_file
from test_remote_contract import function_bodies

FILES = ("PyinfraIis/00-common.ps1", "PyinfraIis/15-programs.ps1", "PyinfraIis/85-python.ps1",
         "PyinfraIis/90-release-state.ps1", "PyinfraIis/91-release-install.ps1", "PyinfraIis/92-release-health.ps1",
         "PyinfraIis/93-release-switch.ps1", "PyinfraIis/94-release-cleanup.ps1")
TEXT = {name: read_remote_file(name) for name in FILES}
BODIES = {fn: body for text in TEXT.values() for fn, body in function_bodies(text).items()}
PRIMITIVES = ("Install-Release", "Invoke-Program", "Write-TextFile", "Remove-ReleasePaths", "Switch-Release", "Install-Python")


def test_release_files_fit_their_budget_and_functions_stay_small():
    assert sum(len(text.splitlines()) for text in TEXT.values()) <= 1000
    long = {fn: len(body.splitlines()) for fn, body in BODIES.items() if len(body.splitlines()) > 85}
    assert long == {}


def test_shared_helpers_keep_their_names_and_parameters():
    for name, parameters in {"Invoke-HostProgram": ("FilePath", "Arguments", "WorkingDirectory", "Environment", "TimeoutSeconds", "Step", "Function"),
                             "Assert-FileSha256": ("Path", "Expected"), "Get-TextFileTail": ("Path", "Count"),
                             "Get-CallValue": ("Call", "Name", "Type"), "Get-ReleaseRootState": ("Roots", "Function"),
                             "Get-PythonState": ("Versions", "Function")}.items():
        for parameter in parameters:
            assert f"${parameter}" in BODIES[name], (name, parameter)


@pytest.mark.parametrize("name", PRIMITIVES)
def test_each_primitive_cites_microsoft_learn_and_prints_through_write_call_result(name):
    body = BODIES[name]
    assert "Write-CallResult" in body or name == "Switch-Release" and "Write-CallResult" in body
    assert "# Docs: https://" in body


def test_no_null_to_a_string_parameter_of_file_replace():  # issue 9 defect 3
    source = "\n".join(TEXT.values())
    assert not re.search(r"Replace\([^)]*\$null\)", source)
    # The temp file goes into place through 10-files.ps1's Move-FileIntoPlace: File.Replace with
    # [NullString]::Value, and never losing the file when ReplaceFile fails with error 1176.
    assert "Move-FileIntoPlace -Temp $temp -Path $path" in BODIES["Write-TextFile"]
    assert "CreateNew" in BODIES["Write-TextFile"] and "GetRandomFileName" in BODIES["Write-TextFile"]


def test_removal_refuses_reparse_points_before_deleting_and_retries():  # issue 9 defect 9, issue 15 item 22
    body = BODIES["Remove-ReleasePaths"]
    assert body.index("Find-ReparsePoint") < body.index("Delete($doomed")
    assert body.index("Delete($markerPath)") < body.index("Move($path, $doomed)")
    assert "Invoke-WithRetry" in body and "ReparsePoint" in BODIES["Find-ReparsePoint"]
    assert "Remove-Item" not in body  # no recursive delete that follows junctions


def test_python_installer_never_reboots_and_reports_restart_needed():  # issue 15 item 12, 23
    body = BODIES["Install-Python"]
    assert "'/norestart'" in body and "'CompileAll=1'" in body
    assert "restart_needed = ($code -eq 3010)" in body
    assert "1638" in body and "downgrade" in body
    assert "python-{0}_*.log" in body  # the MSI package log joins the bundle log


def test_python_install_checks_the_registered_path():  # issue 15 item 14
    assert "$registered" in BODIES["Install-Python"] and "$targetDir" in BODIES["Install-Python"]


def test_health_request_pins_the_binding_certificate_per_request():  # issue 15 item 13
    body = BODIES["Invoke-HealthRequest"]
    assert "$request.ServerCertificateValidationCallback" in body
    assert "ServicePointManager]::ServerCertificateValidationCallback" not in module_source()
    assert "GetCertHashString()" in body


def test_health_requires_the_release_version():  # issue 15 item 15
    assert "expect_version" in BODIES["Wait-ReleaseHealthy"] and "X-Release-Version" in BODIES["Invoke-HealthRequest"]


def test_program_output_is_not_read_before_waitall_succeeded():  # issue 15 item 23
    body = BODIES["Invoke-HostProgram"]
    assert "if (-not [System.Threading.Tasks.Task]::WaitAll(" in body
    assert body.index("WaitAll(") < body.index("$stdoutTask.Result")


def test_the_failure_report_tails_the_log_the_new_process_wrote():  # issue 15 item 23
    body = BODIES["Switch-Release"]
    assert "$before" in body and "ContainsKey" in body and "LastWriteTime" not in body


def test_switch_commits_path_and_secrets_once_and_restores_both():  # issue 15 item 21
    body = BODIES["Set-ReleaseConfig"]
    assert body.count("CommitChanges()") == 1 and "environmentVariables" in body
    assert "$old['environment']" in BODIES["Switch-Release"]


def test_artifact_hash_is_checked_before_unpacking():
    body = BODIES["Install-Release"]
    assert body.index("Assert-FileSha256") < body.index("OpenRead")
    assert body.index("StartsWith($prefix") < body.index("ExtractToFile")


def test_switch_checks_everything_before_it_commits():
    """Review of the release path: a value read only after the commit (the health settings, the state
    texts) or a pool that cannot be recycled must not leave the site switched without a check or a
    restore; the deadline accepts what the model allows (7200 s)."""

    body = BODIES["Switch-Release"]
    commit = body.index("$old = Set-ReleaseConfig")
    for needle in ("-Name 'state_ok'", "-Name 'state_failed'", "-Name 'deadline_seconds'", "-Maximum 7200"):
        assert body.index(needle) < commit, needle
    after = body[commit:]
    assert after.index("try {") < after.index("Restart-ReleasePool") < after.index("} catch {") < after.index("physicalPath restored")
    assert "-Maximum 7200" in BODIES["Wait-ReleaseHealthy"]
    assert "$environment[$name] = $null" in body  # a JSON null removes a variable


def test_the_simulated_write_text_file_refuses_a_missing_folder_as_the_module_does(tmp_path):
    """The module's ``FileStream(CreateNew)`` does not create folders (it throws "Could not find
    a part of the path"); the simulator created them, so a caller that forgot its folder passed
    here and would fail on Windows."""

    import json

    from pyinfra_iis.sim.functions import SimFunctionError
    from pyinfra_iis.sim.functions.release import _local, write_text_file
    from pyinfra_iis.sim.host import SimHost

    host = SimHost(tmp_path / "web01")
    with pytest.raises(SimFunctionError, match="cannot write C:\\\\nowhere\\\\state.json"):
        write_text_file(host, {"path": "C:\\nowhere\\state.json", "text": "{}"})
    assert not _local(host, "C:\\nowhere").exists()
    _local(host, "C:\\data").mkdir(parents=True)
    assert json.loads(write_text_file(host, {"path": "C:\\data\\state.json", "text": "{}"})) == {"written": True}
