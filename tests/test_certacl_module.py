"""The certificate and ACL parts of the PowerShell module (70-certificates.ps1, 80-acl.ps1):
static checks of the issue 9 fixes, and the JSON keys each function reads against what the
operations send (the simulator twin is exercised by test_sim_iis_certificates.py / _acl.py)."""

from __future__ import annotations

import re

import pytest

from pyinfra_iis.remote import read_remote_file
from test_remote_contract import code_without_strings_and_comments, function_bodies

FILES = ("PyinfraIis/70-certificates.ps1", "PyinfraIis/80-acl.ps1")
TEXT = {name: read_remote_file(name) for name in FILES}
BODIES = {fn: body for text in TEXT.values() for fn, body in function_bodies(text).items()}


def keys_read(function: str) -> set[str]:
    body = BODIES[function]
    if "Get-PathRuleTarget" in body:
        body += BODIES["Get-PathRuleTarget"]
    names = set(re.findall(r"Get-CallValue -Call \$call -Name '(\w+)'", body, re.IGNORECASE))
    if "-Name $field" in body:  # Grant-PathAccess reads its flag fields in a loop over $fields
        names |= set(re.findall(r"(\w+) = \[System\.Security\.AccessControl\.\w+\]", body))
    return names


def test_budget_and_every_function_cites_its_microsoft_page():
    for function, body in BODIES.items():
        uses_dotnet = re.search(r"\[System\.(IO|Security)\.[\w.]+\]::|New-Object|\.(Import|Add|Open|GetAccessRules|SetAccessRule)\(", body)
        if uses_dotnet:
            assert "# Docs: https://learn.microsoft.com/" in body, function
        assert len(body.splitlines()) <= 80, function


def test_certificates_are_reported_raw_and_nothing_is_parsed_on_the_host():
    body = BODIES["Get-CertificateState"]
    assert "ToBase64String($certificate.RawData)" in body and "Get-PathAclReport -Path $entry.key_path" in body
    for gone in ("Read-DerLength", "Get-CertificateDnsNames", "2.5.29.17", "NotAfter", "Subject"):
        assert gone not in TEXT["PyinfraIis/70-certificates.ps1"].split("function Import-PfxCollection")[0], gone


def test_pfx_is_imported_from_bytes_with_the_chain_into_ca_never_root():
    """Issue 9 defect 6 and finding "PFX on disk" (the old import read a file and kept only the leaf)."""

    body = BODIES["Import-IisCertificate"]
    code = code_without_strings_and_comments(body)
    assert "FromBase64String($text)" in body and "$collection.Import($Data, $Password, $Flags)" in BODIES["Import-PfxCollection"]
    assert "Open-MachineCertificateStore -Store 'CA' -Write" in body and "[void]$chainStore.Add($other)" in body
    assert "'Root'" not in body and "ReadAllBytes" not in code and "File]::Exists($path)" not in code
    assert "409600" in body  # 300 KB of PFX as base64: refused clearly above that
    assert "[System.Array]::Clear($data" in body


def test_rules_take_a_sid_and_protected_folders_check_owner_and_reparse_points():
    """Issue 9 defect 7 and finding "Privilege escalation"."""

    assert "'System.Security.Principal.SecurityIdentifier' -ArgumentList $text" in BODIES["Get-PathRuleTarget"]
    protected = BODIES["Initialize-ProtectedFolder"]
    assert re.search(r"param\(\[Parameter\(Mandatory = \$true\)\] \[string\] \$Path, \[string\] \$Function", protected)
    for needle in ("SetSecurityDescriptorSddlForm($Sddl)", "CreateDirectory($full, $security)", "'D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)'"):
        assert needle in protected, needle
    # Every existing ancestor and the folder itself are checked, the folder again right after the create
    # (another account may create it first), and missing parents do not get the folder's protected ACL.
    assert protected.count("Assert-TrustedFolder -Path") == 2 and "GetDirectoryName($full))" in protected
    trusted = BODIES["Assert-TrustedFolder"]
    for needle in ("ReparsePoint", "GetOwner(", "'S-1-5-18', 'S-1-5-32-544'"):
        assert needle in trusted, needle
    assert "Initialize-ProtectedFolder -Path $path -Function $function -Sddl $sddl" in BODIES["Initialize-Directory"]


@pytest.mark.parametrize("function, sent", [
    ("Import-IisCertificate", {"pfx", "password", "store", "exportable", "thumbprint"}),
    ("Grant-PathAccess", {"path", "principal", "sid", "rights", "inheritance", "propagation"}),
    ("Revoke-PathAccess", {"path", "principal", "sid"}),
    ("Initialize-Directory", {"path", "sddl"}),
])
def test_module_reads_the_keys_the_operations_send(function, sent):
    assert keys_read(function) == sent


def test_certificate_removal_deletes_capi_keys_through_the_csp_and_never_a_shared_key():
    """Review of Remove-IisCertificate: on .NET Framework GetRSAPrivateKey wraps a software CAPI key in RSACng
    (CryptAcquireCertificatePrivateKey "ncrypt only" up-converts it, dotnet/corefx#3502), so the CSP branch was dead
    and CAPI keys went through CngKey.Delete; and a key another certificate still used (renewal with the same key,
    a copy in WebHosting) was deleted with the removed certificate."""

    body = code_without_strings_and_comments(BODIES["Remove-IisCertificate"])
    assert body.index("$certificate.PrivateKey") < body.index("GetRSAPrivateKey")
    assert body.index("[void]$store.Remove($certificate)") < body.index("Test-SharedCertificateKey") < body.index("PersistKeyInCsp")
    assert "$key.Key.Delete()" in body
    # HasPrivateKey only says the certificate names a key: a key container already gone ("Keyset does not exist")
    # must not keep the certificate in the store.
    opened = body[body.index("GetRSAPrivateKey"):body.index("[void]$store.Remove")]
    assert "catch { $key = $null }" in opened
    shared = BODIES["Test-SharedCertificateKey"]
    assert "GetPublicKeyString() -ceq $PublicKey" in shared and "HasPrivateKey" in shared and "$other.Close()" in shared
