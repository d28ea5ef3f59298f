"""Issue 10: an existing application pool changes only in what the inventory declares (plus,
for the pool that serves the release, what a release needs); a new pool gets the Python
defaults and an explicit enable32BitAppOnWin64="false"."""

from __future__ import annotations

import copy

from pyinfra_iis.operations.app_pools import app_pool
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call

POOLS = "system.applicationHost/applicationPools"


def _element(attributes=None, children=None, items=None, tag=None):
    element = {"attributes": dict(attributes or {}), "children": dict(children or {}), "items": list(items or [])}
    if tag:
        element["tag"] = tag
    return element


def shared_hosting_fact() -> dict:
    """DefaultAppPool as a shared-hosting server has it: CLR v4.0, 32-bit defaults, OnDemand, a
    long queue, Stopped."""

    fact = empty_fact(["Web-Server"])
    defaults = _element({"managedRuntimeVersion": "v4.0", "enable32BitAppOnWin64": "true", "queueLength": "4000"},
                        {"processModel": _element({"identityType": "ApplicationPoolIdentity", "loadUserProfile": "false"})})
    default_pool = _element({"name": "DefaultAppPool", "autoStart": "false"}, tag="add")
    fact["iis"]["sections"][POOLS] = _element(children={"applicationPoolDefaults": defaults}, items=[default_pool])
    fact["iis"]["runtime"]["app_pools"] = {"DefaultAppPool": "Stopped"}
    return fact


def _edits(result):
    found = []
    for command in result.commands:
        function, payload = parse_remote_call(command)
        if function == "Set-IisConfig":
            found += payload["edits"]
    return found


def _attributes(result) -> dict[str, str]:
    flat = {}
    for edit in _edits(result):
        prefix = ".".join(step["child"] for step in edit["path"] if "child" in step)
        for name, value in edit["attributes"].items():
            flat[f"{prefix}.{name}" if prefix else name] = value
    return flat


def test_naming_an_existing_pool_changes_nothing():
    result = run_operation(app_pool._inner, shared_hosting_fact(), pool={"name": "DefaultAppPool"})
    assert result.commands == []  # no CLR, startMode, idle timeout, queue, profile or state change


def test_an_existing_pool_gets_only_the_declared_attributes():
    result = run_operation(app_pool._inner, shared_hosting_fact(), pool={"name": "defaultapppool", "queue_length": 5000,
                                                                        "rapid_fail_protection": {"max_failures": 9}})
    assert _attributes(result) == {"queueLength": "5000", "failure.rapidFailProtectionMaxCrashes": "9"}
    assert all("Set-IisRuntimeState" not in c for c in result.commands)  # state not declared: stays Stopped


def test_declared_state_is_applied_and_drift_of_a_declared_attribute_is_repaired():
    fact = shared_hosting_fact()
    pool = {"name": "DefaultAppPool", "idle_timeout": 0, "state": "Started"}
    first = run_operation(app_pool._inner, copy.deepcopy(fact), pool=pool)
    assert _attributes(first) == {"autoStart": "true", "processModel.idleTimeout": "00:00:00"}
    assert parse_remote_call(first.commands[-1]) == ("Set-IisRuntimeState", {"app_pools": {"DefaultAppPool": "Started"}})
    apply_to_fact(fact, first.commands)
    assert run_operation(app_pool._inner, copy.deepcopy(fact), pool=pool).commands == []
    fact["iis"]["sections"][POOLS]["items"][0]["children"]["processModel"]["attributes"]["idleTimeout"] = "00:20:00"
    assert _attributes(run_operation(app_pool._inner, fact, pool=pool)) == {"processModel.idleTimeout": "00:00:00"}


def test_the_release_pool_always_gets_what_a_release_needs_and_nothing_else():
    result = run_operation(app_pool._inner, shared_hosting_fact(), pool={"name": "DefaultAppPool"}, serves_release=True)
    assert _attributes(result) == {
        "managedRuntimeVersion": "", "enable32BitAppOnWin64": "false", "startMode": "AlwaysRunning", "autoStart": "true",
        "processModel.idleTimeout": "00:00:00", "processModel.loadUserProfile": "true",
    }  # queueLength (4000), periodic restart, rapid-fail protection: left as they are
    assert parse_remote_call(result.commands[-1])[0] == "Set-IisRuntimeState"


def test_a_new_pool_gets_the_python_defaults_and_64_bit_explicitly():
    result = run_operation(app_pool._inner, shared_hosting_fact(), pool={"name": "api"})
    attributes = _attributes(result)
    assert attributes["enable32BitAppOnWin64"] == "false"  # applicationPoolDefaults say true
    assert attributes["managedRuntimeVersion"] == ""  # applicationPoolDefaults say v4.0
    assert attributes["queueLength"] == "1000"  # applicationPoolDefaults say 4000
    assert attributes["startMode"] == "AlwaysRunning" and attributes["processModel.loadUserProfile"] == "true"
    bare = run_operation(app_pool._inner, empty_fact(["Web-Server"]), pool={"name": "api"})
    assert _attributes(bare)["enable32BitAppOnWin64"] == "false"  # explicit even where it is the default


def test_undeclared_environment_variables_and_schedule_of_an_existing_pool_are_kept():
    fact = shared_hosting_fact()
    item = fact["iis"]["sections"][POOLS]["items"][0]
    item["children"]["environmentVariables"] = _element(items=[_element({"name": "LEGACY", "value": "x"}, tag="add")])
    item["children"]["recycling"] = _element(children={"periodicRestart": _element(children={"schedule": _element(items=[_element({"value": "03:00:00"}, tag="add")])})})
    assert run_operation(app_pool._inner, fact, pool={"name": "DefaultAppPool"}).commands == []
    declared = run_operation(app_pool._inner, fact, pool={"name": "DefaultAppPool", "periodic_restart_schedule": []})
    assert [e["action"] for e in _edits(declared)] == ["remove"]  # a declared (empty) schedule is authoritative
