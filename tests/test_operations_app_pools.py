"""app_pool: exact commands from a fact, secrets masked, nothing on a converged host."""

from __future__ import annotations

import copy
import json

import pytest
from pyinfra.api.exceptions import OperationTypeError, OperationValueError

from pyinfra_iis.operations.app_pools import app_pool
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call, secret_digest

POOL = {"name": "api", "environment_variables": {"API_KEY": "s3cr3t-'$(x)"}}


def _fresh():
    return empty_fact(["Web-Server"])


def test_new_pool_one_set_call_then_runtime_state_and_secret_masked():
    result = run_operation(app_pool._inner, _fresh(), pool=POOL)
    assert len(result.commands) == 2
    function, payload = parse_remote_call(result.commands[0])
    assert function == "Set-IisConfig"
    assert [(e["path"], e["attributes"]) for e in payload["edits"]] == [
        ([{"item": "add", "key": {"name": "api"}}], {"enable32BitAppOnWin64": "false", "startMode": "AlwaysRunning"}),
        ([{"item": "add", "key": {"name": "api"}}, {"child": "processModel"}], {"idleTimeout": "00:00:00", "loadUserProfile": "true"}),
        ([{"item": "add", "key": {"name": "api"}}, {"child": "recycling"}, {"child": "periodicRestart"}], {"time": "00:00:00"}),
        ([{"item": "add", "key": {"name": "api"}}, {"child": "environmentVariables"}, {"item": "add", "key": {"name": "API_KEY"}}], {"value": "s3cr3t-'$(x)"}),
    ]
    assert "s3cr3t" not in result.masked[0] and '"value":*MASKED*' in result.masked[0]
    assert result.commands[1] == "Set-IisRuntimeState -Json '{\"app_pools\":{\"api\":\"Started\"}}'"


def test_second_run_on_the_converged_host_yields_nothing():
    fact = _fresh()
    apply_to_fact(fact, run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL).commands)
    result = run_operation(app_pool._inner, fact, pool=POOL)
    assert result.commands == []
    assert any("noop: app pool api is configured" in line for line in result.logs)


def test_only_the_drifted_attribute_and_changed_secret_are_sent():
    fact = _fresh()
    apply_to_fact(fact, run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL).commands)
    pool = fact["iis"]["sections"]["system.applicationHost/applicationPools"]["items"][0]
    pool["attributes"]["startMode"] = "OnDemand"
    # startMode is not declared: it is repaired because the pool serves the release (issue 10)
    result = run_operation(app_pool._inner, fact, pool={**POOL, "environment_variables": {"API_KEY": "new"}}, diff=True, serves_release=True)
    (function, payload), = [parse_remote_call(c) for c in result.commands]
    assert [e["attributes"] for e in payload["edits"]] == [{"startMode": "AlwaysRunning"}, {"value": "new"}]
    assert "    app pool api: startMode: 'OnDemand' -> 'AlwaysRunning'" in result.logs
    assert "    app pool api: environmentVariables[API_KEY]: *MASKED* -> *MASKED*" in result.logs
    assert not any("new" in line.split("->")[-1] and "MASKED" not in line for line in result.logs if "API_KEY" in line)


def test_extra_environment_variable_is_removed_alone_and_defaults_are_inherited():
    fact = _fresh()
    fact["iis"]["sections"]["system.applicationHost/applicationPools"] = {
        "attributes": {}, "items": [],
        "children": {"applicationPoolDefaults": {"attributes": {"startMode": "AlwaysRunning"}, "children": {"processModel": {"attributes": {"idleTimeout": "00:00:00", "loadUserProfile": "true"}, "children": {}, "items": []}}, "items": []}},
    }
    apply_to_fact(fact, run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL).commands)
    edits = fact["iis"]["sections"]["system.applicationHost/applicationPools"]["items"][0]
    assert "startMode" not in edits["attributes"]  # inherited from applicationPoolDefaults
    env = edits["children"]["environmentVariables"]
    env["items"].append({"tag": "add", "attributes": {"name": "OLD", "value": secret_digest("x")}, "children": {}, "items": []})
    result = run_operation(app_pool._inner, fact, pool=POOL)
    (_, payload), = [parse_remote_call(c) for c in result.commands]
    assert payload["edits"] == [{"action": "remove", "attributes": {}, "location": None, "section": "system.applicationHost/applicationPools",
                                 "path": [{"item": "add", "key": {"name": "api"}}, {"child": "environmentVariables"}, {"item": "add", "key": {"name": "OLD"}}]}]


def test_specific_user_password_is_a_secret_compared_by_digest():
    pool = {"name": "svc", "identity_type": "SpecificUser", "user": "CORP\\svc-api", "password": "pa'ss"}
    fact = _fresh()
    result = run_operation(app_pool._inner, copy.deepcopy(fact), pool=pool)
    assert "pa'ss" not in result.masked[0]
    assert json.dumps("pa''ss")[1:-1] in result.commands[0]  # raw, quote doubled for PowerShell
    apply_to_fact(fact, result.commands)
    assert run_operation(app_pool._inner, fact, pool=pool).commands == []


def test_bad_arguments_name_the_argument_without_the_secret():
    with pytest.raises(OperationValueError, match="'pool'.*identity") as info:
        run_operation(app_pool._inner, _fresh(), pool={"name": "api", "password": "hunter2"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(OperationTypeError, match="'pool'"):
        run_operation(app_pool._inner, _fresh(), pool="api")


def test_release_managed_variables_are_neither_set_nor_removed_by_the_pool():
    """Issue 15 item 21: the release's app secrets change only with its health-checked switch, so the
    pool operation of a site converge leaves them alone (a changed one is not set, an unlisted one is
    not removed): no recycle of the live release without a health check."""

    fact = _fresh()
    apply_to_fact(fact, run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL).commands)
    env = fact["iis"]["sections"]["system.applicationHost/applicationPools"]["items"][0]["children"]["environmentVariables"]
    env["items"].append({"tag": "add", "attributes": {"name": "API_SECRET_KEY", "value": secret_digest("old")}, "children": {}, "items": []})
    assert run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL, keep_variables=["api_secret_key"]).commands == []
    changed = {**POOL, "environment_variables": {**POOL["environment_variables"], "API_SECRET_KEY": "new"}}
    assert run_operation(app_pool._inner, copy.deepcopy(fact), pool=changed, keep_variables=["API_SECRET_KEY"]).commands == []
    (_, payload), = [parse_remote_call(c) for c in run_operation(app_pool._inner, copy.deepcopy(fact), pool=POOL).commands]
    assert payload["edits"][0]["action"] == "remove"  # without keep_variables an unlisted variable goes
