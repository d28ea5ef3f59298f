"""IIS applications and virtual directories under a site (issue 10): create, declared-only
updates, removal of an application and of a virtual directory (dry run, run, no-op), the fact
reporting them, and validation. Against the simulator's applicationHost.config."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from pyinfra.api.exceptions import OperationValueError

from pyinfra_iis.iis import config
from pyinfra_iis.models import InventoryError, load_host_config
from pyinfra_iis.models.application import Application
from pyinfra_iis.operations.app_pools import app_pool
from pyinfra_iis.operations.applications import application
from pyinfra_iis.operations.sites import site
from support.sim_ops import SimOps, diff_lines, noop_lines

V2 = {"site": "api", "path": "/v2", "physical_path": "C:\\sites\\v2", "app_pool": "v2", "preload_enabled": True,
      "virtual_directories": [{"path": "/static", "physical_path": "C:\\static"}]}


@pytest.fixture
def sim(tmp_path):
    sim = SimOps(tmp_path / "web01")
    sim.apply(app_pool, pool={"name": "api"})
    sim.apply(app_pool, pool={"name": "v2"})
    sim.apply(site, site={"name": "api", "physical_path": "C:\\sites\\api", "app_pool": "api", "preload_enabled": False,
                          "bindings": [{"port": 8080}]})
    return sim


def app_element(text: str, path: str) -> ET.Element | None:
    site_element = next(s for s in ET.fromstring(text).find("system.applicationHost/sites").findall("site") if s.get("name") == "api")
    return next((a for a in site_element.findall("application") if a.get("path") == path), None)


def test_new_application_is_written_under_its_site_and_the_fact_reports_it(sim):
    created = sim.apply(application, application=V2)
    assert diff_lines(created)[:3] == ["site api: application /v2: (absent) -> 'created'",
                                       "site api: application /v2: applicationPool: 'DefaultAppPool' -> 'v2'",
                                       "site api: application /v2: preloadEnabled: 'false' -> 'true'"]
    element = app_element(sim.config_text(), "/v2")
    assert element.get("applicationPool") == "v2" and element.get("preloadEnabled") == "true"
    assert [(v.get("path"), v.get("physicalPath")) for v in element.findall("virtualDirectory")] == [("/", "C:\\sites\\v2"), ("/static", "C:\\static")]
    # Get-HostState (converted by facts/iis_state.py) reports it as the operations read it
    sites = config.section(sim.fact()["iis"], "system.applicationHost/sites")
    app = config.find_item(config.find_item(sites, "site", {"name": "api"}), "application", {"path": "/v2"})
    assert config.get_attribute(app, "applicationPool") == "v2"
    assert config.get_attribute(config.find_item(app, "virtualDirectory", {"path": "/static"}), "physicalPath") == "C:\\static"
    again = sim.plan(application, application=V2)
    assert again.commands == [] and noop_lines(again) == ["[web01] noop: application api/v2 is configured"]


def test_declared_only_an_existing_application_keeps_what_is_not_declared(sim):
    sim.apply(application, application=V2)
    assert sim.plan(application, application={"site": "api", "path": "/v2"}).commands == []
    moved = sim.plan(application, site_name="api", path="/v2", app_pool="api")
    assert diff_lines(moved) == ["site api: application /v2: applicationPool: 'v2' -> 'api'"]
    sim.apply(application, site_name="api", path="/v2", app_pool="api")
    element = app_element(sim.config_text(), "/v2")
    assert element.get("applicationPool") == "api" and element.get("preloadEnabled") == "true"  # preload untouched


def test_application_removal_dry_run_then_run_then_no_op(sim):
    sim.apply(application, application=V2)
    folder = sim.host.path("C:\\sites\\v2")
    folder.mkdir(parents=True)
    before = sim.config_text()
    removal = {"site": "api", "path": "/v2", "present": False}
    dry = sim.plan(application, application=removal)
    assert diff_lines(dry) == ["site api: application /v2: 'present' -> (absent)",
                               "site api: application /v2: virtualDirectory /static: 'present' -> (absent)"]
    assert "[web01] Will remove application api/v2 (its files stay)" in dry.logs
    assert sim.config_text() == before
    sim.apply(application, site_name="api", path="/v2", present=False)
    assert app_element(sim.config_text(), "/v2") is None and app_element(sim.config_text(), "/") is not None
    assert folder.is_dir()
    again = sim.plan(application, application=removal)
    assert again.commands == [] and noop_lines(again) == ["[web01] noop: application api/v2 is absent"]


def test_virtual_directory_removal_dry_run_then_run_then_no_op(sim):
    sim.apply(application, application=V2)
    before = sim.config_text()
    wanted = {"site": "api", "path": "/v2", "virtual_directories": [{"path": "/static", "present": False}]}
    dry = sim.plan(application, application=wanted)
    assert diff_lines(dry) == ["site api: application /v2: virtualDirectory /static: 'present' -> (absent)"]
    assert sim.config_text() == before
    sim.apply(application, application=wanted)
    assert [v.get("path") for v in app_element(sim.config_text(), "/v2").findall("virtualDirectory")] == ["/"]
    assert sim.plan(application, application=wanted).commands == []


def test_unknown_site_or_pool_and_a_new_application_without_folder_are_refused(sim):
    with pytest.raises(OperationValueError, match="web01: application shop/v2: site 'shop' is neither in iis_sites nor on the host"):
        sim.plan(application, application={**V2, "site": "shop"})
    assert sim.plan(application, application={**V2, "site": "shop"}, sites=["shop"]).commands  # created earlier in the run
    with pytest.raises(OperationValueError, match="application pool 'nope' is neither in iis_app_pools nor on the host"):
        sim.plan(application, application={**V2, "app_pool": "nope"})
    assert sim.plan(application, application={**V2, "app_pool": "nope"}, pools=["nope"]).commands
    with pytest.raises(OperationValueError, match="application api/v3 does not exist: physical_path is required to create it"):
        sim.plan(application, site_name="api", path="/v3")
    with pytest.raises(OperationValueError, match="virtualDirectory /img does not exist: physical_path is required"):
        sim.plan(application, application={**V2, "virtual_directories": [{"path": "/img"}]})


@pytest.mark.parametrize("path", ["api", "/", "/api/", "//api", "/a/../b", "/a\\b", "/a?b"])
def test_path_must_be_a_virtual_path(path):
    with pytest.raises(ValueError, match="virtual path|root application"):
        Application(site="api", path=path)


@pytest.mark.parametrize("data, message", [
    ({"iis_applications": [{"site": "api", "path": "/v2"}, {"site": "API", "path": "/V2", "present": False}]}, "listed twice"),
    ({"iis_app_pools": [{"name": "old", "present": False}], "iis_applications": [{"site": "api", "path": "/v2", "app_pool": "old"}]},
     "iis_applications[0].app_pool: application pool 'old' is removed"),
    ({"iis_sites": [{"name": "api", "present": False}], "iis_applications": [{"site": "api", "path": "/v2", "present": False}]},
     "iis_applications[0].site: site 'api' is removed"),
    ({"iis_features": {"app_init": False}, "iis_applications": [{"site": "api", "path": "/v2", "preload_enabled": True}]}, "Web-AppInit"),
    ({"iis_applications": [{"site": "api", "path": "/v2", "present": False, "physical_path": "C:\\x"}]}, "give only path and site, not physical_path"),
    ({"iis_applications": [{"site": "api", "path": "/v2", "virtual_directories": [{"path": "/s"}, {"path": "/S"}]}]}, "listed twice"),
])
def test_inventory_checks_applications(data, message):
    with pytest.raises(InventoryError, match=re.escape(message)):
        load_host_config("web01", data)


def test_configure_iis_creates_applications_after_sites_and_removes_apps_sites_pools_last(monkeypatch):
    from pyinfra import context

    from pyinfra_iis.deploys import iis
    from pyinfra_iis.operations import acl, app_pools, applications, certificates, extensions, features, rights, server, sites
    from pyinfra_iis.operations.testing import empty_fact, make_host

    calls: list[tuple[str, str]] = []
    for module, op in ((features, "windows_features"), (extensions, "msi_extension"), (server, "server_config"),
                       (certificates, "certificate"), (app_pools, "app_pool"), (sites, "site"), (acl, "acl"),
                       (applications, "application"), (rights, "granted_rights")):
        monkeypatch.setattr(module, op, lambda *a, _op=op, **kw: calls.append((_op, kw["name"])))
    data = {"iis_app_pools": [{"name": "api"}, {"name": "old", "present": False}],
            "iis_sites": [{"name": "legacy", "present": False},
                          {"name": "api", "physical_path": "C:\\s", "app_pool": "api", "preload_enabled": False, "bindings": [{"port": 80}]}],
            "iis_applications": [{"site": "api", "path": "/old", "present": False}, {"site": "api", "path": "/v2", "physical_path": "C:\\v2"}],
            "iis_acls": [{"path": "C:\\s", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}]}
    state, host = make_host(data)
    monkeypatch.setattr(iis, "host_state", lambda host: empty_fact(["Web-Server"]))
    with context.ctx_state.use(state), context.ctx_host.use(host):
        iis.configure_iis._inner()
    names = [name for _, name in calls]
    assert names[names.index("App pool api"):] == [
        "App pool api", "Site api", "Application api/v2", "ACL C:\\s IIS AppPool\\api",
        "Remove application api/old", "Remove site legacy", "Remove app pool old",
        "Granted rights: revoke what the inventory no longer names"]
