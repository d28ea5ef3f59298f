"""Issue 10: an existing site changes only in what the inventory declares; unlisted bindings
are kept; IPv6 bindings and %SystemDrive% paths compare by meaning; a binding another site
on the host holds is refused before anything runs."""

from __future__ import annotations

import copy

import pytest
from pyinfra.api.exceptions import OperationError

from pyinfra_iis.models import InventoryError, load_host_config
from pyinfra_iis.operations.sites import site
from pyinfra_iis.operations.testing import empty_fact, run_operation
from pyinfra_iis.protocol import parse_remote_call

SITES = "system.applicationHost/sites"


def _element(attributes=None, children=None, items=None, tag=None):
    element = {"attributes": dict(attributes or {}), "children": dict(children or {}), "items": list(items or [])}
    if tag:
        element["tag"] = tag
    return element


def _site(name, site_id, path, pool, bindings, **attributes):
    vdir = _element({"path": "/", "physicalPath": path}, tag="virtualDirectory")
    app = _element({"path": "/", "applicationPool": pool}, items=[vdir], tag="application")
    binding_items = [_element({"protocol": p, "bindingInformation": b}, tag="binding") for p, b in bindings]
    return _element({"name": name, "id": str(site_id), **attributes}, {"bindings": _element(items=binding_items)}, [app], tag="site")


def brownfield_fact() -> dict:
    fact = empty_fact(["Web-Server"])
    fact["iis"]["sections"][SITES] = _element(items=[
        _site("Default Web Site", 1, r"%SystemDrive%\inetpub\wwwroot", "DefaultAppPool", [("http", "*:80:")], serverAutoStart="false"),
        _site("shop", 2, r"D:\sites\shop", "shop", [("http", "[2001:DB8:0:0::10]:80:shop.example.com"), ("http", "*:8080:shop.example.com")]),
    ])
    fact["iis"]["runtime"]["sites"] = {"Default Web Site": "Stopped", "shop": "Started"}
    return fact


def _edits(result):
    return [edit for command in result.commands for function, payload in [parse_remote_call(command)]
            if function == "Set-IisConfig" for edit in payload["edits"]]


DEFAULT_SITE = {"name": "Default Web Site", "physical_path": r"C:\inetpub\wwwroot", "app_pool": "DefaultAppPool",
                "bindings": [{"protocol": "http", "port": 80}]}
HOST_DATA = {"iis_sites": [{"name": "Default Web Site"}, {"name": "shop"}]}


def test_naming_an_existing_site_changes_nothing_undeclared():
    # serverAutoStart="false" and Stopped stay, anonymous authentication is not touched, the
    # expanded physicalPath is the same path.
    result = run_operation(site._inner, brownfield_fact(), site=DEFAULT_SITE, host_data=HOST_DATA)
    assert result.commands == []


def test_declared_state_and_preload_are_applied():
    result = run_operation(site._inner, brownfield_fact(), site={**DEFAULT_SITE, "state": "Started", "preload_enabled": False},
                           host_data=HOST_DATA)
    assert [e["attributes"] for e in _edits(result)] == [{"serverAutoStart": "true"}]  # preloadEnabled false already
    assert parse_remote_call(result.commands[-1]) == ("Set-IisRuntimeState", {"sites": {"Default Web Site": "Started"}})


def test_unlisted_bindings_are_kept_and_ipv6_compares_canonically():
    shop = {"name": "shop", "physical_path": r"d:\Sites\shop\\", "app_pool": "shop",
            "bindings": [{"protocol": "http", "ip": "2001:db8::10", "port": 80, "host_name": "shop.example.com"}]}
    result = run_operation(site._inner, brownfield_fact(), site=shop, host_data=HOST_DATA)
    assert result.commands == []  # *:8080: kept; [2001:DB8:0:0::10] is 2001:db8::10; the path differs only in case
    more = {**shop, "bindings": [*shop["bindings"], {"protocol": "http", "ip": "[2001:DB8::10]", "port": 81}]}
    (edit,) = _edits(run_operation(site._inner, brownfield_fact(), site=more, host_data=HOST_DATA))
    assert edit["action"] == "set" and edit["path"][-1]["key"] == {"protocol": "http", "bindingInformation": "[2001:db8::10]:81:"}


def test_system_drive_paths_are_accepted_and_compared_expanded():
    config = load_host_config("web01", {"iis_app_pools": [{"name": "DefaultAppPool"}], "iis_features": {"app_init": True},
                                        "iis_sites": [{**DEFAULT_SITE, "physical_path": r"%SystemDrive%\inetpub\wwwroot",
                                                       "log_directory": r"%SystemDrive%\inetpub\logs\LogFiles"}]})
    assert config.sites[0].physical_path == r"%SystemDrive%\inetpub\wwwroot"
    fact = brownfield_fact()
    fact["iis"]["sections"][SITES]["items"][0]["items"][0]["items"][0]["attributes"]["physicalPath"] = r"C:\inetpub\wwwroot"
    declared = {**DEFAULT_SITE, "physical_path": r"%SystemDrive%\inetpub\wwwroot", "log_directory": r"%SystemDrive%\inetpub\logs\LogFiles"}
    assert run_operation(site._inner, fact, site=declared, host_data=HOST_DATA).commands == []
    fact["iis"]["environment"]["SystemDrive"] = "D:"  # the same text means another folder on this host
    (edit,) = _edits(run_operation(site._inner, fact, site=declared, host_data=HOST_DATA))
    assert edit["attributes"] == {"physicalPath": r"%SystemDrive%\inetpub\wwwroot"}
    with pytest.raises(InventoryError, match="physical_path.*%TEMP%"):
        load_host_config("web01", {"iis_app_pools": [{"name": "p"}], "iis_sites": [{**DEFAULT_SITE, "app_pool": "p", "physical_path": r"%TEMP%\x"}]})


def test_a_binding_held_by_a_site_outside_the_inventory_is_refused_naming_both():
    new = {"name": "api", "physical_path": r"C:\sites\api", "app_pool": "api",
           "bindings": [{"protocol": "http", "ip": "2001:db8:0::10", "port": 80, "host_name": "SHOP.example.com"}]}
    with pytest.raises(OperationError) as info:
        run_operation(site._inner, brownfield_fact(), site=new, host_data={"iis_sites": [new]})
    message = str(info.value)
    assert "web01" in message and "'api'" in message and "'shop'" in message and "[2001:db8::10]:80:shop.example.com" in message
    # when the other site is in the inventory, the inventory check decides (not this one)
    assert run_operation(site._inner, brownfield_fact(), site=new, host_data={"iis_sites": [new, {"name": "shop"}]}).commands


def test_two_inventory_sites_with_one_binding_are_refused_by_validation():
    data = {"iis_app_pools": [{"name": "a"}], "iis_features": {"app_init": True}, "iis_sites": [
        {"name": "a", "physical_path": r"C:\a", "app_pool": "a", "bindings": [{"ip": "2001:db8::1", "port": 80}]},
        {"name": "b", "physical_path": r"C:\b", "app_pool": "a", "bindings": [{"ip": "[2001:DB8:0::1]", "port": 80}]},
    ]}
    with pytest.raises(InventoryError) as info:
        load_host_config("web01", data)
    text = str(info.value)
    assert "web01" in text and "iis_sites[1].bindings[0]" in text and "also used by site 'a'" in text


def test_the_simulator_refuses_to_start_a_site_whose_binding_differs_only_in_ipv6_spelling(tmp_path):
    from pyinfra_iis.iis.appconfig import AppHostConfig
    from pyinfra_iis.sim.iis.store import STARTED, binding_conflict

    config = AppHostConfig.from_text(
        '<configuration><configSections><sectionGroup name="system.applicationHost"><section name="sites" /></sectionGroup></configSections>'
        '<system.applicationHost><sites>'
        '<site name="a" id="1"><bindings><binding protocol="http" bindingInformation="[2001:DB8:0::1]:80:" /></bindings></site>'
        '<site name="b" id="2"><bindings><binding protocol="http" bindingInformation="[2001:db8::1]:80:" /></bindings></site>'
        '</sites></system.applicationHost></configuration>')
    assert binding_conflict(config, {"a": STARTED}, "b") == "a"


def test_the_site_that_serves_the_release_gets_what_a_release_needs():
    result = run_operation(site._inner, brownfield_fact(), site=DEFAULT_SITE, host_data=HOST_DATA, serves_release=True)
    edits = _edits(result)
    assert [(e["section"], e["location"], e["attributes"]) for e in edits] == [
        (SITES, None, {"serverAutoStart": "true"}),
        ("system.webServer/security/authentication/anonymousAuthentication", "Default Web Site", {"userName": ""}),
    ]
    assert parse_remote_call(result.commands[-1]) == ("Set-IisRuntimeState", {"sites": {"Default Web Site": "Started"}})


def test_moving_a_binding_from_a_site_that_keeps_it_is_refused_naming_both():
    from pyinfra_iis.iis.adopt import refuse_host_binding_conflicts

    data = {"iis_app_pools": [{"name": "shop"}], "iis_features": {"app_init": True}, "iis_sites": [
        {"name": "shop", "physical_path": r"D:\sites\shop", "app_pool": "shop", "bindings": [{"port": 8080, "host_name": "shop.example.com"}]},
        {"name": "api", "physical_path": r"C:\sites\api", "app_pool": "shop",
         "bindings": [{"ip": "2001:db8::10", "port": 80, "host_name": "shop.example.com"}]},
    ]}
    config = load_host_config("web01", data)
    with pytest.raises(OperationError) as info:
        refuse_host_binding_conflicts("web01", brownfield_fact()["iis"], config.sites)
    assert "web01" in str(info.value) and "'api'" in str(info.value) and "'shop'" in str(info.value)
    refuse_host_binding_conflicts("web01", brownfield_fact()["iis"], config.sites[:1])  # shop alone: no conflict
