"""The simulated host's ACLs: Initialize-Directory, Grant/Revoke-PathAccess, inheritance, can_read.

The host reports SDDL (raw); ``acl()`` below converts it as the fact does (facts/acl_state.py).
"""

from __future__ import annotations

import pytest

from pyinfra_iis import sddl
from pyinfra_iis.facts.acl_state import convert_path
from pyinfra_iis.sim.functions import SimFunctionError
from pyinfra_iis.sim.functions.acl import can_read, format_rights, parse_rights, set_owner
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH
from support.sim_calls import iis_host, run

APP = "IIS APPPOOL\\api"
APP_SID = sddl.app_pool_sid("api")


@pytest.fixture
def host(tmp_path):
    return iis_host(tmp_path / "web01", pools=["api"])


def acl(host, path):
    return convert_path(run(host, "Get-HostState", {"acl_paths": [path]}, raw=True)["acls"][path])


def test_rights_print_like_dotnet():
    assert format_rights(parse_rights("ReadAndExecute") | parse_rights("Synchronize")) == "ReadAndExecute, Synchronize"
    assert format_rights(parse_rights("Modify, Synchronize")) == "Modify, Synchronize"
    assert format_rights(parse_rights("FullControl")) == "FullControl"
    assert format_rights(parse_rights("Read, Write")) == "Write, Read"
    with pytest.raises(SimFunctionError, match="unknown right 'Readd'"):
        parse_rights("Readd")


def test_initialize_directory(host):
    assert run(host, "Initialize-Directory", {"path": "C:\\sites\\api\\logs"}) == {"created": True}
    assert run(host, "Initialize-Directory", {"path": "C:\\sites\\api\\logs"}) == {"created": False}
    assert host.path("C:\\sites\\api\\logs").is_dir()
    assert acl(host, "C:\\missing") == {"exists": False}


def test_grant_and_revoke_with_inheritance(host):
    run(host, "Initialize-Directory", {"path": "C:\\sites\\api\\current"})
    host.path("C:\\sites\\api\\current\\app.py").write_text("print('hi')")

    grant = {"path": "C:\\sites\\api", "principal": APP, "rights": "ReadAndExecute",
             "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"}
    assert run(host, "Grant-PathAccess", grant) == {"changed": True}
    assert run(host, "Grant-PathAccess", grant) == {"changed": False}
    explicit = [e for e in acl(host, "C:\\sites\\api")["entries"] if not e["inherited"]]
    assert explicit == [{"principal": APP, "sid": APP_SID, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": False,
                         "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"}]
    child = acl(host, "C:\\sites\\api\\current")
    assert child["is_directory"] is True and child["inheritance_protected"] is False
    assert {"principal": APP, "sid": APP_SID, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": True,
            "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"} in child["entries"]
    file_entries = acl(host, "C:\\sites\\api\\current\\app.py")["entries"]
    assert {"principal": APP, "sid": APP_SID, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": True,
            "inheritance": "None", "propagation": "None"} in file_entries
    # Drive-root defaults are inherited too.
    assert any(e["principal"] == "BUILTIN\\Administrators" and e["rights"] == "FullControl" and e["inherited"] for e in file_entries)

    # Grant replaces the principal's explicit allow entry (SetAccessRule).
    assert run(host, "Grant-PathAccess", {**grant, "rights": "Modify"}) == {"changed": True}
    explicit = [e for e in acl(host, "C:\\sites\\api")["entries"] if not e["inherited"]]
    assert [e["rights"] for e in explicit] == ["Modify, Synchronize"]

    assert run(host, "Revoke-PathAccess", {"path": "C:\\sites\\api", "principal": APP}) == {"changed": True}
    assert run(host, "Revoke-PathAccess", {"path": "C:\\sites\\api", "principal": APP}) == {"changed": False}
    assert not any(e["principal"] == APP for e in acl(host, "C:\\sites\\api\\current")["entries"])
    # Revoking on the child does not touch inherited entries.
    run(host, "Grant-PathAccess", grant)
    assert run(host, "Revoke-PathAccess", {"path": "C:\\sites\\api\\current", "principal": APP}) == {"changed": False}
    assert any(e["principal"] == APP for e in acl(host, "C:\\sites\\api\\current")["entries"])


def test_grant_errors(host):
    with pytest.raises(SimFunctionError, match="does not exist"):
        run(host, "Grant-PathAccess", {"path": "C:\\nope", "principal": APP, "rights": "Read"})
    with pytest.raises(SimFunctionError, match="could not be translated"):
        run(host, "Grant-PathAccess", {"path": "C:\\inetpub", "principal": "IIS AppPool\\ghost", "rights": "Read"})


def test_can_read_follows_the_model(host):
    assert can_read(host, APP, "C:\\inetpub\\wwwroot\\iisstart.htm")  # IIS_IUSRS on wwwroot
    # applicationHost.config (pool environment variables live there) is admins-only.
    assert not can_read(host, APP, APPHOST_CONFIG_PATH)
    assert can_read(host, "NT AUTHORITY\\SYSTEM", APPHOST_CONFIG_PATH)
    run(host, "Initialize-Directory", {"path": "C:\\secrets"})
    host.path("C:\\secrets\\key.txt").write_text("x")
    assert can_read(host, APP, "C:\\secrets\\key.txt")  # BUILTIN\Users read C:\ and below by default
    assert not can_read(host, "IUSR", "C:\\secrets\\key.txt")
    assert not can_read(host, APP, "C:\\secrets\\missing.txt")


def test_raw_report_is_sddl_with_a_sid_map(host):
    run(host, "Initialize-Directory", {"path": "C:\\sites\\api"})
    run(host, "Grant-PathAccess", {"path": "C:\\sites\\api", "principal": APP, "rights": "ReadAndExecute"})
    raw = run(host, "Get-HostState", {"acl_paths": ["C:\\sites\\api"]}, raw=True)["acls"]["C:\\sites\\api"]
    assert set(raw) == {"exists", "is_directory", "is_reparse_point", "sddl", "sids"}
    # As GetSecurityDescriptorSddlForm(Access) writes it: C:\'s defaults inherited (ID), aliases for well-known SIDs.
    assert raw["sddl"].startswith(f"D:AI(A;OICI;0x1200a9;;;{APP_SID})(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)(A;OICIID;0x1200a9;;;BU)")
    assert "(A;CIID;LC;;;BU)" in raw["sddl"] and "(A;OICIIOID;GA;;;CO)" in raw["sddl"]
    assert raw["sids"][APP_SID] == APP and raw["sids"]["S-1-5-18"] == "NT AUTHORITY\\SYSTEM"


def test_a_rule_by_sid_is_written_before_the_pool_exists(tmp_path):
    """Issue 9 defect 7: the old contract resolved ``IIS AppPool\\<name>`` on the host, which fails
    until the pool exists. With the SID computed on the controller the rule is written at once."""

    host = iis_host(tmp_path / "web02")  # no pool "later" yet
    run(host, "Initialize-Directory", {"path": "C:\\sites\\later"})
    sid = sddl.app_pool_sid("later")
    grant = {"path": "C:\\sites\\later", "principal": "IIS AppPool\\later", "sid": sid, "rights": "ReadAndExecute"}
    assert run(host, "Grant-PathAccess", grant) == {"changed": True}
    assert run(host, "Grant-PathAccess", grant) == {"changed": False}
    [entry] = [e for e in acl(host, "C:\\sites\\later")["entries"] if not e["inherited"]]
    assert entry["sid"] == sid and entry["principal"] == sid  # not translatable until the pool exists
    run(host, "Set-IisConfig", {"edits": [{"section": "system.applicationHost/applicationPools",
                                           "path": [{"item": "add", "key": {"name": "later"}}], "action": "set", "attributes": {}}]})
    [entry] = [e for e in acl(host, "C:\\sites\\later")["entries"] if not e["inherited"]]
    assert entry["principal"] == "IIS APPPOOL\\later"
    assert can_read(host, "IIS APPPOOL\\later", "C:\\sites\\later")
    assert run(host, "Revoke-PathAccess", {"path": "C:\\sites\\later", "principal": "IIS AppPool\\later", "sid": sid}) == {"changed": True}


def test_initialize_directory_with_sddl_creates_a_protected_folder(host):
    """Security finding "Privilege escalation": folders the deploy account runs programs from are
    created with a protected ACL, so BUILTIN\\Users' create rights on C:\\ do not reach them."""

    path = "C:\\ProgramData\\pyinfra-iis\\msi"
    text = sddl.protected_sddl(read_execute=[APP_SID])
    assert run(host, "Initialize-Directory", {"path": path, "sddl": text}) == {"created": True}
    report = acl(host, path)
    assert report["inheritance_protected"] is True
    assert {(e["sid"], e["rights"]) for e in report["entries"]} == {
        ("S-1-5-18", "FullControl"), ("S-1-5-32-544", "FullControl"), (APP_SID, "ReadAndExecute, Synchronize")}
    assert not any(e["principal"] == "BUILTIN\\Users" for e in report["entries"])
    host.path(path + "\\x.msi").write_bytes(b"x")
    assert not can_read(host, "IUSR", path + "\\x.msi")
    assert run(host, "Initialize-Directory", {"path": path, "sddl": text}) == {"created": False}


def test_initialize_directory_refuses_a_folder_someone_else_created_or_a_junction(host, tmp_path):
    path = "C:\\ProgramData\\pyinfra-iis\\python"
    run(host, "Initialize-Directory", {"path": path})
    set_owner(host, path, "mallory")  # a user who created the folder before the deploy did
    host.state.setdefault("users", []).append("mallory")
    with pytest.raises(SimFunctionError, match="owned by .*not SYSTEM or Administrators"):
        run(host, "Initialize-Directory", {"path": path, "sddl": sddl.protected_sddl()})
    assert run(host, "Initialize-Directory", {"path": path}) == {"created": False}  # no sddl: no check
    target = tmp_path / "elsewhere"
    target.mkdir()
    host.path("C:\\ProgramData\\pyinfra-iis\\certs").symlink_to(target, target_is_directory=True)
    with pytest.raises(SimFunctionError, match="reparse point"):
        run(host, "Initialize-Directory", {"path": "C:\\ProgramData\\pyinfra-iis\\certs", "sddl": sddl.protected_sddl()})
    assert acl(host, "C:\\ProgramData\\pyinfra-iis\\certs")["is_reparse_point"] is True
