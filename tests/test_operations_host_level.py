"""features, MSI extensions, ACLs and server-level configuration: exact commands, no-ops."""

from __future__ import annotations

import copy

import pytest
from pyinfra.api.exceptions import OperationValueError

from pyinfra_iis.operations.acl import acl, rights_mask, same_rights
from pyinfra_iis.operations.extensions import msi_extension
from pyinfra_iis.operations.features import windows_features
from pyinfra_iis.operations.server import server_config
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call

SHA = "ab" * 32


def test_features_only_missing_ones_in_one_call_then_nothing():
    fact = empty_fact(["Web-Server", "web-webserver"])
    result = run_operation(windows_features._inner, fact, features={"names": ["Web-Server", "Web-WebServer", "Web-WebSockets"], "app_init": False})
    assert result.commands == ["Install-WindowsFeatureSet -Json '{\"names\":[\"Web-WebSockets\"]}'"]
    apply_to_fact(fact, result.commands)
    assert run_operation(windows_features._inner, fact, features={"names": ["Web-Server", "Web-WebServer", "Web-WebSockets"], "app_init": False}).commands == []


def test_msi_uploaded_only_when_missing(tmp_path):
    msi = tmp_path / "rewrite_amd64_en-US.msi"
    msi.write_bytes(b"msi")
    ext = {"product": "UrlRewrite", "source": str(msi), "sha256": SHA}
    result = run_operation(msi_extension._inner, empty_fact(), extension=ext)
    assert result.commands == [
        f"upload {msi} -> C:\\ProgramData\\pyinfra-iis\\uploads\\rewrite_amd64_en-US.msi",
        "Install-MsiProduct -Json '{\"product\":\"UrlRewrite\",\"sha256\":\"" + SHA + "\",\"source\":\"C:\\\\ProgramData\\\\pyinfra-iis\\\\uploads\\\\rewrite_amd64_en-US.msi\"}'",
    ]
    installed = empty_fact()
    installed["extensions"]["UrlRewrite"] = {"installed": True, "version": "7.2.1993"}
    assert run_operation(msi_extension._inner, installed, extension=ext).commands == []
    with pytest.raises(OperationValueError, match="'extension'"):
        run_operation(msi_extension._inner, empty_fact(), extension={**ext, "source": str(tmp_path / "missing.msi")})


def test_rights_bitmask_table():
    assert same_rights("ReadAndExecute, Synchronize", ["ReadAndExecute"])
    assert same_rights("Modify, Synchronize", "Modify")
    assert not same_rights("FullControl", "ReadAndExecute")
    assert not same_rights("Read, Synchronize", "ReadAndExecute")
    assert rights_mask("268435456") == rights_mask("FullControl")  # GENERIC_ALL
    assert rights_mask("-1610612736") == rights_mask("ReadAndExecute") | rights_mask("Synchronize")  # GENERIC_READ|EXECUTE


RULE = {"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}


def test_acl_creates_folder_and_grants_then_nothing_then_corrects_drift():
    fact = empty_fact()
    fact["acls"]["C:\\sites\\api"] = {"exists": False}
    result = run_operation(acl._inner, copy.deepcopy(fact), rule=RULE)
    assert result.commands == [
        "Initialize-Directory -Json '{\"path\":\"C:\\\\sites\\\\api\"}'",
        "Grant-PathAccess -Json '{\"inheritance\":\"ContainerInherit, ObjectInherit\",\"path\":\"C:\\\\sites\\\\api\",\"principal\":\"IIS AppPool\\\\api\",\"propagation\":\"None\",\"rights\":\"ReadAndExecute\",\"sid\":\"S-1-5-82-2114819798-65729711-4112032740-3671739254-402567174\"}'",
    ]
    apply_to_fact(fact, result.commands)
    fact["acls"]["C:\\sites\\api"]["entries"].append({"principal": "IIS AppPool\\api", "type": "Allow", "rights": "FullControl", "inherited": True, "inheritance": "None", "propagation": "None"})
    assert run_operation(acl._inner, copy.deepcopy(fact), rule=RULE).commands == []
    fact["acls"]["C:\\sites\\api"]["entries"][0]["inheritance"] = "ContainerInherit"
    assert [parse_remote_call(c)[0] for c in run_operation(acl._inner, copy.deepcopy(fact), rule=RULE).commands] == ["Grant-PathAccess"]
    revoke = run_operation(acl._inner, copy.deepcopy(fact), rule={**RULE, "ensure": "absent"})
    assert revoke.commands == ["Revoke-PathAccess -Json '{\"path\":\"C:\\\\sites\\\\api\",\"principal\":\"IIS AppPool\\\\api\",\"sid\":\"S-1-5-82-2114819798-65729711-4112032740-3671739254-402567174\"}'"]
    apply_to_fact(fact, revoke.commands)
    assert run_operation(acl._inner, fact, rule={**RULE, "ensure": "absent"}).commands == []


def test_server_config_sets_only_differences_in_one_call():
    fact = empty_fact(["Web-Server"])
    fact["iis"]["sections"]["system.webServer/proxy"] = {"attributes": {"enabled": "true"}, "children": {}, "items": []}
    server = {"proxy": {}, "max_allowed_content_length": 50000000}
    result = run_operation(server_config._inner, copy.deepcopy(fact), server=server)
    (function, payload), = [parse_remote_call(c) for c in result.commands]
    assert function == "Set-IisConfig"
    assert payload["edits"] == [
        {"section": "system.webServer/security/requestFiltering", "location": None, "path": [{"child": "requestLimits"}], "action": "set", "attributes": {"maxAllowedContentLength": "50000000"}},
        {"section": "system.webServer/proxy", "location": None, "path": [], "action": "set", "attributes": {"preserveHostHeader": "true", "reverseRewriteHostInResponseHeaders": "false", "includePortInXForwardedFor": "false"}},
        {"section": "system.webServer/rewrite/allowedServerVariables", "location": None, "path": [{"item": "add", "key": {"name": "HTTP_X_FORWARDED_PROTO"}}], "action": "set", "attributes": {}},
    ]
    apply_to_fact(fact, result.commands)
    assert run_operation(server_config._inner, fact, server=server).commands == []
    assert run_operation(server_config._inner, empty_fact(["Web-Server"])).commands == []  # IIS defaults asked for
