"""Issue 10: server-level settings change only when ``iis_server`` declares them."""

from __future__ import annotations

import copy

from pyinfra_iis.models import load_host_config
from pyinfra_iis.operations.server import server_config
from pyinfra_iis.operations.testing import empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call

FILTERING = "system.webServer/security/requestFiltering"


def _fact_with_50mb() -> dict:
    fact = empty_fact(["Web-Server"])
    fact["iis"]["sections"][FILTERING] = {"attributes": {}, "items": [], "children": {
        "requestLimits": {"attributes": {"maxAllowedContentLength": "50000000"}, "children": {}, "items": []}}}
    return fact


def test_no_iis_server_key_changes_nothing_server_wide():
    config = load_host_config("web01", {"iis_app_pools": [{"name": "api"}]})
    assert config.server.config_attributes() == {}
    assert run_operation(server_config._inner, _fact_with_50mb(), server=config.server).commands == []
    assert run_operation(server_config._inner, _fact_with_50mb()).commands == []
    assert run_operation(server_config._inner, _fact_with_50mb(), server={"proxy": None}).commands == []


def test_a_declared_limit_is_set_and_its_drift_repaired():
    fact = _fact_with_50mb()
    assert run_operation(server_config._inner, copy.deepcopy(fact), server={"max_allowed_content_length": 50000000}).commands == []
    (function, payload), = [parse_remote_call(c) for c in run_operation(
        server_config._inner, fact, server={"max_allowed_content_length": 30000000}).commands]
    assert function == "Set-IisConfig"
    assert payload["edits"] == [{"section": FILTERING, "location": None, "path": [{"child": "requestLimits"}], "action": "set",
                                 "attributes": {"maxAllowedContentLength": "30000000"}}]
