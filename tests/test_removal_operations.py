"""Removal on request (issue 10): ``present: false`` for sites, application pools and bindings,
``exclusive_bindings``, and the pool-in-use refusal. Each kind: the dry run shows exactly what
goes and changes nothing, the run removes it, a second run is a no-op. Operations run against
the simulator's applicationHost.config (tests/support/sim_ops.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from pyinfra.api.exceptions import OperationValueError

from pyinfra_iis.iis.removal import binding_removals, pool_users
from pyinfra_iis.models import load_host_config
from pyinfra_iis.models.site import Binding
from pyinfra_iis.operations.app_pools import PoolInUseError, app_pool, check_pool_removals
from pyinfra_iis.operations.applications import application
from pyinfra_iis.operations.sites import site
from support.sim_ops import SimOps, diff_lines, noop_lines

API = {"name": "api", "physical_path": "C:\\sites\\api", "app_pool": "api", "preload_enabled": False,
       "bindings": [{"port": 8080}, {"port": 8081}]}
LEGACY = {"name": "legacy", "physical_path": "C:\\sites\\legacy", "app_pool": "old", "preload_enabled": False,
          "bindings": [{"port": 9090}, {"port": 9091, "host_name": "legacy.example.com"}]}
V2 = {"site": "api", "path": "/v2", "physical_path": "C:\\sites\\v2", "app_pool": "old"}


@pytest.fixture
def sim(tmp_path):
    sim = SimOps(tmp_path / "web01")
    sim.apply(app_pool, pool={"name": "api"})
    sim.apply(app_pool, pool={"name": "old"})
    sim.apply(site, site=API)
    sim.apply(site, site=LEGACY)
    sim.apply(application, application=V2)
    return sim


def sites_in(text: str) -> list[str]:
    return [s.get("name") for s in ET.fromstring(text).find("system.applicationHost/sites").findall("site")]


def pools_in(text: str) -> list[str]:
    return [p.get("name") for p in ET.fromstring(text).find("system.applicationHost/applicationPools").findall("add")]


def bindings_in(text: str, site_name: str) -> list[str]:
    site_element = next(s for s in ET.fromstring(text).find("system.applicationHost/sites").findall("site") if s.get("name") == site_name)
    return [b.get("bindingInformation") for b in site_element.find("bindings").findall("binding")]


def test_site_removal_dry_run_then_run_then_no_op_and_its_files_stay(sim):
    folder = sim.host.path("C:\\sites\\legacy")
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("kept")
    before = sim.config_text()
    dry = sim.plan(site, site={"name": "legacy", "present": False})
    assert diff_lines(dry) == ["site legacy: 'present' -> (absent)",
                               "site legacy: binding http *:9090:: 'present' -> (absent)",
                               "site legacy: binding http *:9091:legacy.example.com: 'present' -> (absent)"]
    assert "[web01] Will remove site legacy (its files stay)" in dry.logs
    assert sim.config_text() == before  # planning changed nothing

    sim.apply(site, site_name="legacy", present=False)  # the flat keyword form
    after = sim.config_text()
    assert "legacy" not in sites_in(after) and "api" in sites_in(after)
    assert "legacy" not in sim.fact()["iis"]["runtime"]["sites"]
    assert (folder / "index.html").read_text() == "kept"  # a site's files are never deleted

    again = sim.plan(site, site={"name": "legacy", "present": False})
    assert again.commands == [] and noop_lines(again) == ["[web01] noop: site legacy is absent"]


def test_site_removal_takes_only_a_name():
    with pytest.raises(OperationValueError, match="give only name, not physical_path"):
        sim_free_site(present=False, physical_path="C:\\x")


def sim_free_site(**kwargs):
    from pyinfra_iis.operations.testing import empty_fact, run_operation

    return run_operation(site._inner, empty_fact(["Web-Server"]), site_name="legacy", **kwargs)


def test_a_pool_in_use_is_refused_naming_host_pool_and_users_and_nothing_changes(sim):
    before = sim.config_text()
    with pytest.raises(PoolInUseError) as error:
        sim.plan(app_pool, pool={"name": "old", "present": False})
    assert str(error.value).startswith("web01: application pool 'old' is not removed: it is still used by application api/v2, site legacy;")
    assert sim.config_text() == before


def test_pool_removal_after_its_users_are_gone_dry_run_then_run_then_no_op(sim):
    sim.apply(site, site={"name": "legacy", "present": False})
    sim.apply(application, application={"site": "api", "path": "/v2", "present": False})
    before = sim.config_text()
    dry = sim.plan(app_pool, pool_name="old", present=False)
    assert diff_lines(dry) == ["app pool old: 'present' -> (absent)"]
    assert len(dry.commands) == 1 and sim.config_text() == before

    sim.apply(app_pool, pool_name="old", present=False)
    assert pools_in(sim.config_text()).count("old") == 0 and "api" in pools_in(sim.config_text())
    assert "old" not in sim.fact()["iis"]["runtime"]["app_pools"]

    again = sim.plan(app_pool, pool={"name": "old", "present": False})
    assert again.commands == [] and noop_lines(again) == ["[web01] noop: app pool old is absent"]


def test_binding_removal_by_entry_dry_run_then_run_then_no_op(sim):
    wanted = {**API, "bindings": [{"port": 8080}, {"port": 8081, "present": False}]}
    before = sim.config_text()
    dry = sim.plan(site, site=wanted)
    assert diff_lines(dry) == ["site api: binding http *:8081:: 'present' -> (absent)"]
    assert sim.config_text() == before

    sim.apply(site, site=wanted)
    assert bindings_in(sim.config_text(), "api") == ["*:8080:"]

    again = sim.plan(site, site=wanted)
    assert again.commands == [] and noop_lines(again)


def test_exclusive_bindings_removes_unlisted_ones_and_otherwise_they_are_kept(sim, monkeypatch):
    """Unlisted bindings are kept; ``exclusive_bindings`` removes them and a ``present: false``
    entry removes its binding."""

    only_8080 = {**API, "bindings": [{"port": 8080}]}
    assert sim.plan(site, site=only_8080).commands == []  # 8081 is unlisted: kept
    exclusive = {**only_8080, "exclusive_bindings": True}
    dry = sim.plan(site, site=exclusive)
    assert diff_lines(dry) == ["site api: binding http *:8081:: 'present' -> (absent)"]
    sim.apply(site, site=exclusive)
    assert bindings_in(sim.config_text(), "api") == ["*:8080:"]
    assert sim.plan(site, site=exclusive).commands == []


def test_binding_removals_is_one_function_for_both_defaults():
    host = [{"tag": "binding", "attributes": {"protocol": "http", "bindingInformation": info}, "children": {}, "items": []}
            for info in ("*:80:", "*:81:", "*:82:")]
    declared = [Binding(port=80), Binding(port=81, present=False)]
    infos = lambda items: [i["attributes"]["bindingInformation"] for i in items]  # noqa: E731
    assert infos(binding_removals(host, declared, exclusive=False)) == ["*:81:"]
    assert infos(binding_removals(host, declared, exclusive=True)) == ["*:81:", "*:82:"]


def test_https_binding_removal_takes_its_http_sys_certificate_binding_first():
    from pyinfra_iis.operations.testing import empty_fact, run_operation
    from pyinfra_iis.protocol import parse_remote_call

    fact = empty_fact(["Web-Server"])
    fact["iis"]["sections"]["system.applicationHost/sites"] = {"attributes": {}, "children": {}, "items": [
        {"tag": "site", "attributes": {"name": "shop", "id": "3"}, "children": {"bindings": {"attributes": {}, "children": {}, "items": [
            {"tag": "binding", "attributes": {"protocol": "https", "bindingInformation": "*:443:", "sslFlags": "0"}, "children": {}, "items": []}]}},
         "items": []}]}
    fact["iis"]["ssl_bindings"] = {"0.0.0.0:443": {"kind": "ipport", "hash": "AB" * 20, "store": "My", "appid": "x"}}
    result = run_operation(site._inner, fact, site={"name": "shop", "present": False}, diff=True)
    assert [parse_remote_call(c)[0] for c in result.commands] == ["Set-IisSslBinding", "Set-IisConfig"]
    assert parse_remote_call(result.commands[0])[1] == {"site": "shop", "binding_information": "*:443:", "action": "remove"}
    assert f"site shop: HTTP.sys SSL binding 0.0.0.0:443: '{'AB' * 20}' -> (absent)" in diff_lines(result)


def test_binding_removal_entry_takes_no_certificate():
    assert Binding(protocol="https", present=False).port == 443
    with pytest.raises(ValueError, match="present false is removed"):
        Binding(protocol="https", present=False, certificate="api")


def test_pool_users_count_this_runs_changes(sim):
    iis = sim.fact()["iis"]
    assert pool_users(iis, "old") == ["application api/v2", "site legacy"]
    config = load_host_config("web01", {
        "iis_app_pools": [{"name": "api"}, {"name": "new"}, {"name": "old", "present": False}],
        "iis_sites": [{**LEGACY, "app_pool": "new"}],
        "iis_applications": [{"site": "api", "path": "/v2", "app_pool": "new"}],
    })
    # the run moves the site and the application to "new": the removal goes ahead
    check_pool_removals("web01", iis, config.removed_app_pools, sites=config.sites, removed_sites=config.removed_sites,
                        applications=config.applications)
    half = load_host_config("web01", {"iis_app_pools": [{"name": "api"}, {"name": "old", "present": False}],
                                      "iis_sites": [{"name": "legacy", "present": False}]})
    with pytest.raises(PoolInUseError, match="'old' is not removed: it is still used by application api/v2;"):
        check_pool_removals("web01", iis, half.removed_app_pools, sites=half.sites, removed_sites=half.removed_sites,
                            applications=half.applications)


@pytest.mark.parametrize("data, message", [
    ({"iis_app_pools": [{"name": "old", "present": False, "queue_length": 10}]}, "present false (it is removed) but also sets queue_length"),
    ({"iis_app_pools": [{"name": "old", "present": False}], "iis_sites": [{**LEGACY, "preload_enabled": False}]},
     "iis_sites[0].app_pool: application pool 'old' is removed"),
    ({"iis_sites": [{"name": "legacy", "present": False, "bindings": [{"port": 80}]}]}, "give only name, not bindings"),
    ({"iis_app_pools": [{"name": "old"}, {"name": "OLD", "present": False}]}, "defined twice"),
])
def test_inventory_refuses_unclear_removals_before_anything_runs(data, message):
    from pyinfra_iis.models import InventoryError

    with pytest.raises(InventoryError, match=re.escape(message)):
        load_host_config("web01", data)


def test_removed_entries_leave_sites_and_app_pools():
    config = load_host_config("web01", {"iis_app_pools": [{"name": "api"}, {"name": "old", "present": False}],
                                        "iis_sites": [{"name": "legacy", "present": False}, {**API}]})
    assert [p.name for p in config.app_pools] == ["api"] and [p.name for p in config.removed_app_pools] == ["old"]
    assert [s.name for s in config.sites] == ["api"] and [s.name for s in config.removed_sites] == ["legacy"]


def test_a_kept_unlisted_https_binding_keeps_its_http_sys_certificate(monkeypatch):
    from pyinfra_iis.operations.testing import empty_fact, run_operation
    from pyinfra_iis.protocol import parse_remote_call

    fact = empty_fact(["Web-Server"])
    binding = {"tag": "binding", "attributes": {"protocol": "https", "bindingInformation": "*:443:", "sslFlags": "0"}, "children": {}, "items": []}
    fact["iis"]["sections"]["system.applicationHost/sites"] = {"attributes": {}, "children": {}, "items": [
        {"tag": "site", "attributes": {"name": "shop", "id": "3"}, "children": {"bindings": {"attributes": {}, "children": {}, "items": [binding]}},
         "items": []}]}
    fact["iis"]["ssl_bindings"] = {"0.0.0.0:443": {"kind": "ipport", "hash": "AB" * 20, "store": "My", "appid": "x"}}
    shop = {"name": "shop", "physical_path": "C:\\shop", "app_pool": "shop", "preload_enabled": False, "bindings": [{"port": 80}]}
    kept = run_operation(site._inner, fact, site=shop)
    assert "Set-IisSslBinding" not in [parse_remote_call(c)[0] for c in kept.commands]
    gone = run_operation(site._inner, fact, site={**shop, "exclusive_bindings": True})
    assert [parse_remote_call(c)[0] for c in gone.commands][0] == "Set-IisSslBinding"
