"""Issue 9 (IIS half): the host primitives and their controller side.

* applicationHost.config is parsed on the controller (``facts/iis_state.py``) with the parser the
  simulator keeps the file with; shared configuration is refused, naming the host and the fix;
* HTTP.sys SSL bindings are reported apart from the configuration (``netsh http show sslcert``
  parsed by field order, so a translated netsh parses too), filled only by ``Set-IisSslBinding``
  (the binding's RSCA methods), and a config-only https binding is not served (defect 2);
* ``Start()`` right after a commit is polled while WAS answers 0x800710D8 (defect 5);
* a contract test per primitive: the PowerShell function and its simulator twin read the same
  JSON members and print the same ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyinfra.api.exceptions import FactProcessError

from pyinfra_iis.demo import write_pfx
from pyinfra_iis.facts.host_state import convert_host_state
from pyinfra_iis.facts.iis_state import SharedConfigurationError
from pyinfra_iis.iis import appconfig as shared_parser
from pyinfra_iis.iis.httpsys import parse_sslcert
from pyinfra_iis.remote import read_remote_file
from pyinfra_iis.sim.apps.bindings import Binding, BindingListener, http_sys_tls
from pyinfra_iis.sim.functions import SimFunctionError, call
from pyinfra_iis.sim.functions.runtime import set_start_not_ready
from pyinfra_iis.sim.host import SimHost
from pyinfra_iis.sim.iis import appconfig as sim_parser
from support.sim_calls import DIGEST_KEY, run

HOST = "api.example.com"
PFX_PASSWORD = "pfx-pass"
POOLS = "system.applicationHost/applicationPools"
SITES = "system.applicationHost/sites"
SITE = [{"item": "site", "key": {"name": "api"}}]
HTTPS = {"item": "binding", "key": {"protocol": "https", "bindingInformation": f"*:443:{HOST}"}}


@pytest.fixture
def iis(tmp_path):
    host = SimHost(tmp_path / "web01")
    run(host, "Install-WindowsFeatureSet", {"names": ["Web-Server"]})
    return host


def pfx_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        write_pfx(Path(folder) / "api.pfx", PFX_PASSWORD, names=(HOST,), days=30)
        return (Path(folder) / "api.pfx").read_bytes()


def import_certificate(host) -> str:
    import base64

    data = pfx_bytes()
    thumbprint = x509.load_der_x509_certificate(pkcs12.load_key_and_certificates(data, PFX_PASSWORD.encode())[1]
                                                .public_bytes(serialization.Encoding.DER)).fingerprint(hashes.SHA1()).hex().upper()
    return run(host, "Import-IisCertificate", {"pfx": base64.b64encode(data).decode(), "password": PFX_PASSWORD, "store": "My",
                                               "thumbprint": thumbprint})["thumbprint"]


def https_site(host) -> None:
    run(host, "Set-IisConfig", {"edits": [
        {"section": SITES, "path": [*SITE, {"child": "bindings"}, HTTPS], "action": "set", "attributes": {"sslFlags": "1"}}]})


# --- applicationHost.config parsed on the controller ----------------------------------------------


def test_one_parser_shared_by_the_controller_and_the_simulator():
    assert sim_parser.AppHostConfig is shared_parser.AppHostConfig
    assert sim_parser.element_json is shared_parser.element_json


def test_the_host_sends_raw_text_with_digests_and_the_controller_parses_it(iis):
    run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "path": [{"item": "add", "key": {"name": "api"}}, {"child": "environmentVariables"},
                                    {"item": "add", "key": {"name": "API_KEY"}}], "action": "set", "attributes": {"value": "s3cret"}},
        {"section": POOLS, "path": [{"item": "add", "key": {"name": "api"}}, {"child": "processModel"}], "action": "set",
         "attributes": {"identityType": "SpecificUser", "userName": "svc", "password": "p4ss"}}]})
    raw = json.loads(call(iis, "Get-HostState", {"digest_key": DIGEST_KEY}, {}))
    assert set(raw["iis"]) == {"config", "redirection", "runtime", "sslcert"}
    assert raw["iis"]["config"].lstrip().startswith("<?xml") and "s3cret" not in raw["iis"]["config"] and "p4ss" not in raw["iis"]["config"]
    fact = convert_host_state(raw)
    pool = fact["iis"]["sections"][POOLS]["items"][1]
    from pyinfra_iis.protocol import secret_digest

    assert pool["children"]["environmentVariables"]["items"][0]["attributes"]["value"] == secret_digest("s3cret")
    assert pool["children"]["processModel"]["attributes"]["password"] == secret_digest("p4ss")
    assert fact["iis"]["runtime"]["app_pools"]["api"] == "Started"
    assert fact["iis"]["ssl_bindings"] == {}


def test_shared_configuration_is_refused_naming_the_host_and_the_fix(iis):
    path = iis.path("C:\\Windows\\System32\\inetsrv\\config\\redirection.config")
    path.write_text('<configuration><configurationRedirection enabled="true" path="\\\\files\\iis" /></configuration>', encoding="utf-8")
    raw = json.loads(call(iis, "Get-HostState", {"digest_key": DIGEST_KEY}, {}))
    with pytest.raises(SharedConfigurationError, match=r"WEB01: IIS uses shared configuration .*\\\\files\\iis.*disable shared configuration") as error:
        convert_host_state(raw)
    assert isinstance(error.value, FactProcessError)
    path.write_text('<configuration><configurationRedirection enabled="false" /></configuration>', encoding="utf-8")
    assert convert_host_state(json.loads(call(iis, "Get-HostState", {"digest_key": DIGEST_KEY}, {})))["iis"]["sections"]


# --- HTTP.sys SSL bindings (defect 2) ---------------------------------------------------------------

GERMAN_NETSH = """
SSL-Zertifikatbindungen:
-------------------------

    IP:Port                      : 0.0.0.0:443
    Zertifikathash               : 0123456789abcdef0123456789abcdef01234567
    Anwendungs-ID                : {4dc3e181-e14b-4a21-b022-59fc669b0914}
    Zertifikatspeichername       : My
    Überprüfung der Clientzertifikatsperre : Enabled

    Hostname:Port                : API.example.com:443
    Zertifikathash               : 89abcdef0123456789abcdef0123456789abcdef
    Anwendungs-ID                : {4dc3e181-e14b-4a21-b022-59fc669b0914}
    Zertifikatspeichername       : WebHosting
    Clientzertifikat aushandeln  : Disabled
"""


def test_netsh_output_is_parsed_by_field_order_so_a_translated_windows_parses():
    assert parse_sslcert(GERMAN_NETSH) == {
        "0.0.0.0:443": {"kind": "ipport", "hash": "0123456789ABCDEF0123456789ABCDEF01234567", "store": "My",
                        "appid": "{4dc3e181-e14b-4a21-b022-59fc669b0914}"},
        "api.example.com:443": {"kind": "hostnameport", "hash": "89ABCDEF0123456789ABCDEF0123456789ABCDEF", "store": "WebHosting",
                                "appid": "{4dc3e181-e14b-4a21-b022-59fc669b0914}"},
    }
    assert parse_sslcert("\r\nSSL Certificate bindings:\r\n-------------------------\r\n\r\n") == {}


def test_http_sys_is_filled_only_by_the_rsca_primitive_and_reported_apart(iis):
    thumbprint = import_certificate(iis)
    https_site(iis)
    with pytest.raises(SimFunctionError, match="use Set-IisSslBinding"):
        run(iis, "Set-IisConfig", {"edits": [{"section": SITES, "path": [*SITE, {"child": "bindings"}, HTTPS], "action": "set",
                                              "attributes": {"certificateHash": thumbprint, "certificateStoreName": "My"}}]})
    assert run(iis, "Get-HostState", {})["iis"]["ssl_bindings"] == {}
    ssl_call = {"site": "api", "binding_information": f"*:443:{HOST}", "thumbprint": thumbprint, "store": "My"}
    with pytest.raises(SimFunctionError, match="0x80070002"):
        run(iis, "Set-IisSslBinding", {**ssl_call, "action": "rebind"})
    assert run(iis, "Set-IisSslBinding", {**ssl_call, "action": "add"}) == {"site": "api", "binding_information": f"*:443:{HOST}", "action": "add"}
    fact = run(iis, "Get-HostState", {})
    assert fact["iis"]["ssl_bindings"] == {f"{HOST}:443": {"kind": "hostnameport", "hash": thumbprint, "store": "My",
                                                         "appid": "{4dc3e181-e14b-4a21-b022-59fc669b0914}"}}
    binding = fact["iis"]["sections"][SITES]["items"][1]["children"]["bindings"]["items"][0]
    assert binding["attributes"] == {"protocol": "https", "bindingInformation": f"*:443:{HOST}", "sslFlags": "1"}
    with pytest.raises(SimFunctionError, match="0x800700B7"):
        run(iis, "Set-IisSslBinding", {**ssl_call, "action": "add", "thumbprint": "AB" * 20})
    with pytest.raises(SimFunctionError, match="not in Cert"):
        run(iis, "Set-IisSslBinding", {**ssl_call, "action": "rebind", "thumbprint": "AB" * 20})
    run(iis, "Set-IisSslBinding", {"site": "api", "binding_information": f"*:443:{HOST}", "action": "remove"})
    assert run(iis, "Get-HostState", {})["iis"]["ssl_bindings"] == {}
    with pytest.raises(SimFunctionError, match="commit it with Set-IisConfig first"):
        run(iis, "Set-IisSslBinding", {**ssl_call, "binding_information": "*:8443:", "action": "add"})


class _App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def _tls_get(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            return int(tls.recv(4096).split(b" ", 2)[1])


def test_a_config_only_https_binding_is_not_served_until_http_sys_holds_its_certificate(iis):
    thumbprint = import_certificate(iis)
    https_site(iis)
    app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    binding = Binding.parse("https", f"*:443:{HOST}")
    listener = BindingListener(binding, 0, lambda: (app.server_address[1], 5.0), http_sys_tls(iis, "api", binding))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _tls_get(listener.port)  # HTTP.sys has no SSL binding for the endpoint: the handshake is reset
        run(iis, "Set-IisSslBinding", {"site": "api", "binding_information": f"*:443:{HOST}", "action": "add",
                                       "thumbprint": thumbprint, "store": "My"})
        assert _tls_get(listener.port) == 200
        run(iis, "Set-IisSslBinding", {"site": "api", "binding_information": f"*:443:{HOST}", "action": "remove"})
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _tls_get(listener.port)
    finally:
        listener.close()
        app.shutdown()
        app.server_close()


# --- Start() right after a commit (defect 5) ---------------------------------------------------------


def test_start_is_polled_while_was_has_not_read_the_new_configuration(iis, monkeypatch):
    run(iis, "Set-IisConfig", {"edits": [
        {"section": POOLS, "path": [{"item": "add", "key": {"name": "api"}}], "action": "set", "attributes": {"autoStart": "false"}}]})
    set_start_not_ready(iis, "app pool", "api", 3)
    assert run(iis, "Set-IisRuntimeState", {"app_pools": {"api": "Started"}}) == {"changed": ["app pool api: Stopped -> Started"]}
    from pyinfra_iis.sim.functions import runtime

    monkeypatch.setattr(runtime, "START_WAIT_SECONDS", 0.2)
    run(iis, "Set-IisRuntimeState", {"app_pools": {"api": "Stopped"}})
    set_start_not_ready(iis, "app pool", "api", 1000)
    with pytest.raises(SimFunctionError, match="0x800710D8.*still not ready"):
        run(iis, "Set-IisRuntimeState", {"app_pools": {"api": "Started"}})
    body = read_remote_file("PyinfraIis/60-runtime.ps1")
    assert "0x800710D8" in body and "$script:StartWaitSeconds" in body and "Invoke-IisObjectAction -Object" in body
    assert "$Object.Stop()" in body  # Stop() is polled the same way (a pool committed in the same run)


# --- contract: the PowerShell function and the simulator twin read and print the same members ---------


def _ps_function(name: str) -> str:
    for file in ("20-hoststate", "30-features", "40-msi", "51-iisconfig-read", "52-iisconfig-edit", "60-runtime"):
        text = read_remote_file(f"PyinfraIis/{file}.ps1")
        match = re.search(r"^function " + re.escape(name) + r" \{.*?^\}", text, re.M | re.S)
        if match:
            return match.group(0)
    raise AssertionError(f"{name} is not defined by the IIS part of the module")


def _ps_inputs(body: str) -> set[str]:
    return set(re.findall(r"Get-CallValue -Call (?:\$call|\(ConvertFrom-CallJson[^)]*\)) -Name '(\w+)'", body))


def _ps_outputs(body: str) -> set[str]:
    results = re.findall(r"Write-CallResult -InputObject \(\[ordered\]@\{(.*?)\}\)\s*$", body, re.M)
    keys = set()
    for result in results:
        keys |= set(re.findall(r"(?:^|;)\s*(\w+)\s*=", result))
    return keys


def _ps_hashtable_keys(body: str, variable: str) -> set[str]:
    block = re.search(re.escape(variable) + r" = \[ordered\]@\{(.*?)\n    \}", body, re.S).group(1)
    return set(re.findall(r"^\s*(\w+) =", block, re.M))


def test_contract_get_host_state(iis):
    body = _ps_function("Get-HostState")
    assert _ps_inputs(body) == {"digest_key", "acl_paths", "cert_stores", "release_roots", "python_versions"}
    raw = json.loads(call(iis, "Get-HostState", {"digest_key": DIGEST_KEY}, {}))
    assert _ps_hashtable_keys(body, "$result") == set(raw)
    iis_part = re.search(r"return \[ordered\]@\{(.*?)\}", _ps_function("Get-IisHostState")).group(1)
    assert set(re.findall(r"(\w+) = ", iis_part)) == set(raw["iis"])
    assert set(raw["iis"]["runtime"]) == {"app_pools", "sites"} and "app_pools = " in _ps_function("Get-IisRuntimeState")
    extensions = _ps_function("Get-IisExtensionState")
    assert set(raw["extensions"]) == {"HttpPlatformHandler", "UrlRewrite", "ARR"} and all(p in extensions for p in raw["extensions"])


def test_contract_set_iis_config(iis):
    body = _ps_function("Set-IisConfig") + _ps_function("Invoke-IisConfigEdit")
    assert _ps_inputs(body) == {"edits"}
    assert set(re.findall(r"-Call \$(?:Edit|step) -Name '(\w+)'", body)) == {"section", "location", "path", "action", "attributes", "child", "item", "key"}
    assert _ps_outputs(body) == {"committed"} == set(run(iis, "Set-IisConfig", {"edits": []}))
    assert run(iis, "Set-IisConfig", {"edits": []}) == {"committed": False}


def test_contract_set_iis_ssl_binding(iis):
    body = _ps_function("Set-IisSslBinding")
    assert _ps_inputs(body) == {"site", "binding_information", "action", "thumbprint", "store"}
    thumbprint = import_certificate(iis)
    https_site(iis)
    result = run(iis, "Set-IisSslBinding", {"site": "api", "binding_information": f"*:443:{HOST}", "action": "add",
                                            "thumbprint": thumbprint, "store": "My"})
    assert _ps_outputs(body) == set(result) == {"site", "binding_information", "action"}
    for method in ("AddSslCertificate", "RebindSslCertificate", "RemoveSslCertificate", ".Methods[", ".CreateInstance()", ".Execute()"):
        assert method in body


def test_contract_runtime(iis):
    body = _ps_function("Set-IisRuntimeState")
    assert set(re.findall(r"@\('(\w+)', '[\w ]+'\)", body)) == {"app_pools", "sites"}
    assert _ps_outputs(body) == set(run(iis, "Set-IisRuntimeState", {"app_pools": {"DefaultAppPool": "Started"}})) == {"changed"}
    recycle = _ps_function("Restart-IisAppPool")
    assert _ps_inputs(recycle) == {"name"} and _ps_outputs(recycle) == set(run(iis, "Restart-IisAppPool", {"name": "DefaultAppPool"})) == {"recycled"}


def test_contract_features_and_msi(iis):
    body = _ps_function("Install-WindowsFeatureSet")
    assert _ps_inputs(body) == {"names"}
    assert _ps_outputs(body) == set(run(iis, "Install-WindowsFeatureSet", {"names": ["Web-WebSockets"]})) == {"installed", "restart_needed"}
    msi = _ps_function("Install-MsiProduct")
    assert _ps_inputs(msi) == {"product", "source", "sha256"}
    import hashlib

    local = iis.path("C:\\install\\hph.msi")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"hph msi")
    result = run(iis, "Install-MsiProduct", {"product": "HttpPlatformHandler", "source": "C:\\install\\hph.msi",
                                             "sha256": hashlib.sha256(b"hph msi").hexdigest()})
    assert _ps_outputs(msi) == set(result) == {"product", "exit_code", "restart_needed", "log", "changed", "attempts"}
    assert "-ne 1618" in msi and "Initialize-ProtectedFolder -Path $script:MsiFolder" in read_remote_file("PyinfraIis/40-msi.ps1")


IIS_PS_FILES = ("20-hoststate", "30-features", "40-msi", "50-iis", "51-iisconfig-read", "52-iisconfig-edit", "60-runtime")


def test_no_walk_over_mwa_attributes_or_child_elements_and_rsca_members_are_refused():
    # Defect 4: the host state walked every attribute and child (runtime members included), which
    # throws while WAS is stopped. Defect 2: certificateHash written as a plain attribute.
    for file in IIS_PS_FILES:
        code = "\n".join(line.split("#")[0] for line in read_remote_file(f"PyinfraIis/{file}.ps1").splitlines())
        assert not re.search(r"\.(ChildElements|Attributes)\b(?!\w)", code.replace(".AttributeSchemas", "")), file
    setter = _ps_function("Set-ConfigAttributes")
    assert "$script:RscaBindingAttributePattern" in setter and "use Set-IisSslBinding" in setter
    assert re.search(r"RscaBindingAttributePattern = '\^certificate\(Hash\|StoreName\)\$'", read_remote_file("PyinfraIis/52-iisconfig-edit.ps1"))




def test_a_section_written_under_location_path_empty_is_server_level():
    text = ('<?xml version="1.0" encoding="UTF-8"?><configuration><configSections><sectionGroup name="system.webServer">'
            '<sectionGroup name="security"><section name="requestFiltering" /></sectionGroup></sectionGroup></configSections>'
            '<location path="" overrideMode="Allow"><system.webServer><security><requestFiltering allowDoubleEscaping="true" />'
            '</security></system.webServer></location></configuration>')
    fact = convert_host_state({"computer_name": "WEB01", "extensions": {},
                               "iis": {"config": text, "redirection": None, "runtime": {}, "sslcert": ""}})
    assert fact["iis"]["sections"]["system.webServer/security/requestFiltering"]["attributes"] == {"allowDoubleEscaping": "true"}
    assert fact["iis"]["locations"] == {}


def test_a_re_sent_add_of_the_same_certificate_is_answered_without_error(iis):
    # A reply lost after the RSCA method ran: the controller re-sends the same add.
    thumbprint = import_certificate(iis)
    https_site(iis)
    payload = {"site": "api", "binding_information": f"*:443:{HOST}", "action": "add", "thumbprint": thumbprint, "store": "My"}
    assert run(iis, "Set-IisSslBinding", payload) == run(iis, "Set-IisSslBinding", payload)
    assert "$bound -eq $thumbprint" in _ps_function("Set-IisSslBinding")
