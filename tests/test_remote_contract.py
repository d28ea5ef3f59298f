"""The remote-function contract (docs/remote-functions.md) against its two implementations.

Every function the contract names must be defined by the PowerShell module (Windows) and
registered in the simulator; the module's IIS functions (PyinfraIis/20..80) must follow the
rules of design.md "The PowerShell module" that a static look can check: one mandatory -Json
argument, one JSON line through Write-CallResult, one CommitChanges() per Set-IisConfig call,
full cmdlet and parameter names (no aliases), approved verbs, no PowerShell 7 syntax, and no
secret variable inside an error message. Parsing and the cmdlet/parameter check of every
module file are in test_powershell_module.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyinfra_iis.remote import module_source, read_remote_file
from support.powershell import command_calls, load_reference, parse

PROJECT = Path(__file__).resolve().parent.parent
CONTRACT = PROJECT / "docs" / "remote-functions.md"

#: The module files implementing the contract's IIS functions (task PI).
IIS_FILES = (
    "PyinfraIis/20-hoststate.ps1",
    "PyinfraIis/30-features.ps1",
    "PyinfraIis/40-msi.ps1",
    "PyinfraIis/50-iis.ps1",
    "PyinfraIis/51-iisconfig-read.ps1",
    "PyinfraIis/52-iisconfig-edit.ps1",
    "PyinfraIis/60-runtime.ps1",
    "PyinfraIis/70-certificates.ps1",
    "PyinfraIis/80-acl.ps1",
)

#: Functions of the contract implemented elsewhere (10-files.ps1, file transfer).
FILE_TRANSFER = {"Start-FileUpload", "Complete-FileUpload", "Stop-FileUpload", "Get-FileHashInfo", "Read-FileChunk"}

#: Get-Verb of Windows PowerShell 5.1. Import-Module warns about any other verb, and the
#: warning would reach the controller on stderr when the worker loads the module.
APPROVED_VERBS = frozenset(
    """Add Clear Close Copy Enter Exit Find Format Get Hide Join Lock Move New Open Optimize Pop Push
    Redo Remove Rename Reset Resize Search Select Set Show Skip Split Step Switch Undo Unlock Watch
    Backup Checkpoint Compare Compress Convert ConvertFrom ConvertTo Dismount Edit Expand Export
    Group Import Initialize Limit Merge Mount Out Publish Restore Save Sync Unpublish Update Approve
    Assert Complete Confirm Deny Disable Enable Install Invoke Register Request Restart Resume Start
    Stop Submit Suspend Uninstall Unregister Wait Debug Measure Ping Repair Resolve Test Trace
    Connect Disconnect Read Receive Send Write Block Grant Protect Revoke Unblock Unprotect Use""".split()
)

_CALL_IN_DOC = re.compile(r"\b([A-Z][a-z]+-[A-Z][A-Za-z0-9]+) -Json\b")

#: Heading of the contract's release part (issue 4, other engineers): its functions are checked
#: for parity between module and simulator only once one side implements them.
RELEASES_HEADING = "\n## Releases"


def contract_functions(text: str | None = None) -> set[str]:
    """Function names of every ``Verb-Noun -Json`` call written in the contract (or in ``text``),
    without the placeholder ``Verb-Noun`` itself."""

    if text is None:
        text = CONTRACT.read_text(encoding="utf-8")
    return set(_CALL_IN_DOC.findall(text)) - {"Verb-Noun"}


def release_contract_functions() -> set[str]:
    text = CONTRACT.read_text(encoding="utf-8")
    return contract_functions(text[text.index(RELEASES_HEADING):]) if RELEASES_HEADING in text else set()


def iis_contract_functions() -> list[str]:
    """The host-level and IIS functions of the contract: everything before the release part,
    less the file transfer functions of 10-files.ps1."""

    text = CONTRACT.read_text(encoding="utf-8")
    if RELEASES_HEADING in text:
        text = text[: text.index(RELEASES_HEADING)]
    return sorted(contract_functions(text) - FILE_TRANSFER)


def simulator_functions():
    """The simulator's registry module, or a skip with the reason."""

    try:
        from pyinfra_iis.sim import functions
    except ImportError as exc:  # pragma: no cover - only while the simulator is being built
        pytest.skip(f"pyinfra_iis.sim.functions is not importable yet: {exc}")
    return functions


def function_bodies(text: str) -> dict[str, str]:
    """``{name: source text of 'function name { ... }'}`` for every function in ``text``."""

    bodies = {}
    stack = [parse(text).root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_statement":
            name = next(child for child in node.children if child.type == "function_name")
            bodies[name.text.decode()] = node.text.decode()
        stack.extend(node.children)
    return bodies


def code_without_strings_and_comments(text: str) -> str:
    """``text`` with every string literal and comment blanked out (same length)."""

    tree = parse(text)
    data = bytearray(text.encode("utf-8"))
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in ("comment", "string_literal", "expandable_string_literal", "verbatim_string_characters",
                         "expandable_here_string_literal", "verbatim_here_string_characters"):
            for index in range(node.start_byte, node.end_byte):
                if data[index] not in (10, 13):
                    data[index] = 32
            continue
        stack.extend(node.children)
    return data.decode("utf-8")


IIS_TEXT = {name: read_remote_file(name) for name in IIS_FILES}
IIS_BODIES = {fn: body for text in IIS_TEXT.values() for fn, body in function_bodies(text).items()}


# --- The contract's function list -------------------------------------------------------------


def test_contract_lists_the_functions_we_expect_to_parse():
    # Guards the regular expression: if the markdown changes shape, the other tests must not pass vacuously.
    names = contract_functions()
    assert {"Get-HostState", "Set-IisConfig", "Install-MsiProduct", "Revoke-PathAccess"} <= names
    assert len(iis_contract_functions()) == 12  # + Set-IisSslBinding; - Grant-CertificateKeyAccess (key access is Grant-PathAccess on the key file); + Remove-IisCertificate


def _pending_release_function(name: str, in_module: bool, in_simulator: bool) -> None:
    # A release function (issue 4) that neither side implements yet is pending, not broken;
    # once one side has it, the other must have it too.
    if name in release_contract_functions() and not in_module and not in_simulator:
        pytest.skip(f"{name} (releases, issue 4) is implemented neither by the module nor by the simulator yet")


@pytest.mark.parametrize("name", sorted(contract_functions()))
def test_every_contract_function_is_defined_by_the_module(name):
    functions = simulator_functions()
    in_module = name.lower() in command_calls(module_source()).defined
    _pending_release_function(name, in_module, functions.get_function(name) is not None)
    assert in_module, f"{name} is in docs/remote-functions.md but no PyinfraIis/*.ps1 defines it"


@pytest.mark.parametrize("name", sorted(contract_functions()))
def test_every_contract_function_is_registered_in_the_simulator(name):
    functions = simulator_functions()
    in_simulator = functions.get_function(name) is not None
    _pending_release_function(name, name.lower() in command_calls(module_source()).defined, in_simulator)
    assert in_simulator, f"{name} is not registered in pyinfra_iis.sim.functions (load errors: {functions.LOAD_ERRORS})"


@pytest.mark.parametrize("name", iis_contract_functions())
def test_iis_contract_functions_live_in_the_iis_files(name):
    assert name in IIS_BODIES, f"{name} should be defined in one of {IIS_FILES}"


@pytest.mark.parametrize("name", iis_contract_functions())
def test_contract_function_takes_one_mandatory_json_string(name):
    definition = command_calls(module_source()).defined[name.lower()]
    assert definition.parameters == ("Json",)
    assert definition.mandatory == ("Json",)
    assert definition.advanced


@pytest.mark.parametrize("name", iis_contract_functions())
def test_contract_function_reads_json_and_prints_through_write_call_result(name):
    body = IIS_BODIES[name]
    called = {call.name for call in command_calls(body).calls}
    assert "ConvertFrom-CallJson" in called
    assert "Write-CallResult" in called
    # Nothing else may print: no Write-Host / Write-Output / Out-* in a contract function.
    assert not called & {"Write-Host", "Write-Output", "Out-Host", "Out-Default", "Out-String"}


# --- Rules of design.md "The PowerShell module" ------------------------------------------------


def test_set_iis_config_commits_once_and_only_when_something_changed():
    body = code_without_strings_and_comments(IIS_BODIES["Set-IisConfig"])
    assert body.count(".CommitChanges()") == 1
    # ... and no other function of the module commits behind its back.
    others = [fn for fn, text in IIS_BODIES.items() if fn != "Set-IisConfig" and ".CommitChanges()" in code_without_strings_and_comments(text)]
    assert others == []
    assert "if ($edits.Count -eq 0)" in body  # issue 9: the controller sends only what differs


def test_iis_configuration_goes_through_server_manager_not_webadministration():
    reference_free = "\n".join(code_without_strings_and_comments(text) for text in IIS_TEXT.values())
    called = {call.name for text in IIS_TEXT.values() for call in command_calls(text).calls}
    assert not {name for name in called if name.endswith(("-WebConfiguration", "-WebConfigurationProperty", "-IISConfigSection"))}
    assert "Import-Module" not in called
    assert "GetApplicationHostConfiguration()" in reference_free


@pytest.mark.parametrize("file", IIS_FILES)
def test_functions_use_approved_verbs(file):
    verbs = {name.split("-", 1)[0] for name in function_bodies(IIS_TEXT[file])}
    assert verbs and verbs <= APPROVED_VERBS, sorted(verbs - APPROVED_VERBS)


@pytest.mark.parametrize("file", IIS_FILES)
def test_full_cmdlet_and_parameter_names_only(file, reference_data):
    cmdlets = load_reference(reference_data)
    problems = []
    for call in command_calls(IIS_TEXT[file]).calls:
        spec = cmdlets.lookup(call.name or "")
        if spec is None:
            continue
        if call.name != spec.name:
            problems.append(f"{call.line}: {call.name} is an alias or miscased; write {spec.name}")
        canonical = set(spec.names.values()) | set(cmdlets.common.values())
        for element in call.elements:
            if element.kind == "parameter" and element.text not in canonical:
                problems.append(f"{call.line}: {call.name} -{element.text}: use the full parameter name")
    assert problems == []


def test_no_iis_function_shadows_a_cmdlet(reference_data):
    cmdlets = load_reference(reference_data)
    assert sorted(fn for fn in IIS_BODIES if cmdlets.lookup(fn)) == []


@pytest.mark.parametrize("file", IIS_FILES)
def test_no_powershell_7_syntax_cmdlets_parameters_or_variables(file):
    # The PowerShell 7 rules of the 5.1 checker (support.ps51; test_ps51_project runs all rules).
    from support.ps51 import check_ps51

    found = [str(p) for p in check_ps51(IIS_TEXT[file], file) if p.rule.startswith("PS7-")]
    assert found == []


def test_no_secret_variable_reaches_an_error_message():
    # Import-IisCertificate's password and Set-IisConfig's secret values must never be
    # formatted into a thrown message or a warning.
    for fn, body in IIS_BODIES.items():
        for statement in re.findall(r"(?:throw|Write-Warning)[^\n]*", body):
            assert "$password" not in statement.lower() and "$secrets" not in statement.lower() or "Hide-SecretText" in statement, (fn, statement)
    # The PFX password is compared against .NET's message before that message is used.
    assert "$reason.Contains($Password)" in IIS_BODIES["Import-PfxCollection"]


def test_set_iis_config_masks_every_error_message():
    # Every failure of an edit or of the commit is rethrown through Hide-SecretText.
    body = IIS_BODIES["Set-IisConfig"]
    assert body.count("} catch {") == 2  # one for the edits, one for the commit
    assert "throw ('{0}: edit {1} ({2}) failed, nothing was changed: {3}'" in body
    assert "throw ('{0}: CommitChanges failed, nothing was changed: {1}'" in body and "$text" not in IIS_BODIES["ConvertFrom-ConfigValue"].split("catch")[-1]  # issue 9: values never in messages


def test_pfx_is_deleted_in_a_finally_block():
    body = IIS_BODIES["Import-IisCertificate"]
    finally_at = body.rfind("} finally {")
    assert finally_at > 0 and "[System.IO.File]::Delete($path)" in body[finally_at:]


def test_msi_hash_is_checked_before_msiexec_runs():
    body = IIS_BODIES["Install-MsiProduct"]
    assert 0 < body.index("Assert-FileSha256") < body.index("Invoke-HostProgram")
    assert "Get-TextFileTail -Path $log -Count 30 -Encoding Unicode" in body


def test_reboot_markers_are_the_documented_registry_keys():
    body = IIS_BODIES["Test-RebootPending"]
    for marker in (
        r"Component Based Servicing\RebootPending",
        r"WindowsUpdate\Auto Update\RebootRequired",
        "PendingFileRenameOperations",
    ):
        assert marker in body


def test_reported_sections_match_the_contract():
    contract = CONTRACT.read_text(encoding="utf-8")
    listed = re.search(r"Sections reported.*?\n\n", contract, re.DOTALL).group(0)
    documented = set(re.findall(r"`(system\.[A-Za-z./]+)`", listed))
    from pyinfra_iis.facts.iis_state import REPORTED_SECTIONS  # issue 9: parsed on the controller
    implemented = set(REPORTED_SECTIONS)
    assert documented and implemented == documented


def test_secret_digests_are_keyed_by_the_key_get_host_state_receives():
    # protocol.secret_digest: "hmac-sha256:" + HMAC-SHA256(key, UTF-8(value)); the module must
    # compute the same string, and only under the key the controller sent.
    from pyinfra_iis.protocol import SECRET_DIGEST_PREFIX

    common = function_bodies(read_remote_file("PyinfraIis/00-common.ps1"))
    digest = common["ConvertTo-SecretDigest"]
    assert "System.Security.Cryptography.HMACSHA256" in digest and "UTF8.GetBytes($Value)" in digest
    assert f"'{SECRET_DIGEST_PREFIX}'" in digest and "ToLowerInvariant()" in digest
    assert "FromBase64String" in common["ConvertFrom-DigestKey"] and "-lt 16" in common["ConvertFrom-DigestKey"]
    calls = [line.strip() for body in IIS_BODIES.values() for line in body.splitlines() if "ConvertTo-SecretDigest -" in line]
    assert len(calls) == 1 and all("-Key $DigestKey" in call for call in calls)
    assert "ConvertFrom-DigestKey -Text (Get-CallValue -Call $call -Name 'digest_key'" in IIS_BODIES["Get-HostState"]
    assert "-DigestKey $digestKey" in IIS_BODIES["Get-HostState"]
