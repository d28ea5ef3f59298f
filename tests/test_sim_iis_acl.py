"""The simulated host's ACLs: Initialize-Directory, Grant/Revoke-PathAccess, inheritance, can_read."""

from __future__ import annotations

import pytest

from pyinfra_iis.sim.functions import SimFunctionError
from pyinfra_iis.sim.functions.acl import can_read, format_rights, parse_rights
from pyinfra_iis.sim.iis.appconfig import APPHOST_CONFIG_PATH
from support.sim_calls import iis_host, run

APP = "IIS APPPOOL\\api"


@pytest.fixture
def host(tmp_path):
    return iis_host(tmp_path / "web01", pools=["api"])


def acl(host, path):
    return run(host, "Get-HostState", {"acl_paths": [path]})["acls"][path]


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
    assert explicit == [{"principal": APP, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": False,
                         "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"}]
    child = acl(host, "C:\\sites\\api\\current")
    assert child["is_directory"] is True and child["inheritance_protected"] is False
    assert {"principal": APP, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": True,
            "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"} in child["entries"]
    file_entries = acl(host, "C:\\sites\\api\\current\\app.py")["entries"]
    assert {"principal": APP, "type": "Allow", "rights": "ReadAndExecute, Synchronize", "inherited": True,
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
