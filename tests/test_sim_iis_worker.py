"""The IIS functions through the real path: pywinrm Protocol → simulator → worker → module call."""

from __future__ import annotations

import json

from pyinfra_iis.facts.host_state import convert_host_state

from pyinfra_iis.protocol import Secret, remote_call, secret_digest
from pyinfra_iis.sim import SimServer
from support.sim_calls import DIGEST_KEY
from test_sim_worker import Worker


def test_install_configure_and_read_through_the_worker(sim_server: SimServer) -> None:
    worker = Worker(sim_server)
    try:
        assert worker.load_module().rc == 0
        assert json.loads(worker.call("Get-HostState", {"digest_key": DIGEST_KEY}).stdout)["iis"] is None
        installed = worker.call("Install-WindowsFeatureSet", {"names": ["Web-Server", "Web-WebSockets"]})
        assert installed.rc == 0 and "Web-WebSockets" in json.loads(installed.stdout)["installed"]
        secret = "pw-through-the-wire"
        edit = worker.step(remote_call("Set-IisConfig", {"edits": [
            {"section": "system.applicationHost/applicationPools", "location": None, "action": "set",
             "path": [{"item": "add", "key": {"name": "api"}}, {"child": "environmentVariables"},
                      {"item": "add", "key": {"name": "DB_PASSWORD"}}],
             "attributes": {"value": Secret(secret)}}]}).get_raw_value())
        assert edit.rc == 0 and secret not in edit.stdout
        state = worker.call("Get-HostState", {"digest_key": DIGEST_KEY, "acl_paths": ["C:\\inetpub\\wwwroot"]})
        assert state.rc == 0 and secret not in state.stdout
        data = convert_host_state(json.loads(state.stdout))
        pool = data["iis"]["sections"]["system.applicationHost/applicationPools"]["items"][1]
        assert pool["children"]["environmentVariables"]["items"][0]["attributes"]["value"] == secret_digest(secret)
        assert data["iis"]["runtime"]["app_pools"] == {"DefaultAppPool": "Started", "api": "Started"}
        wwwroot = data["acls"]["C:\\inetpub\\wwwroot"]  # the host reports SDDL; the fact parsed it
        assert any(e["principal"] == "BUILTIN\\IIS_IUSRS" for e in wwwroot["entries"])
        failed = worker.call("Set-IisConfig", {"edits": [{"section": "system.webServer/proxy", "path": [], "action": "set",
                                                          "attributes": {"enabled": "true"}}]})
        assert failed.rc == 1 and "system.webServer/proxy' does not exist" in failed.stderr
    finally:
        worker.close()
