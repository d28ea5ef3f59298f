"""Narrow facts (pyinfra_iis.facts.iis): views of the one wide Get-HostState read.

A simulated host (SimHost) is converged with the flat operations; a pyinfra host whose
connector runs remote calls on that SimHost counts the calls, so the tests can check that
several narrow facts cost one Get-HostState."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pyinfra import context
from pyinfra.api.command import StringCommand
from pyinfra.connectors.util import CommandOutput, OutputLine

from pyinfra_iis.facts.host_state import forget_host_state
from pyinfra_iis.facts.iis import AppPools, Certificates, Extensions, Releases, Sites
from pyinfra_iis.operations.app_pools import app_pool
from pyinfra_iis.operations.features import windows_features
from pyinfra_iis.operations.sites import site
from pyinfra_iis.operations.testing import make_host, run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.sim.functions import call
from pyinfra_iis.sim.host import SimHost


class SimConnector:
    """The part of a pyinfra connector facts and operations use, answered by a SimHost;
    counts the remote calls by function name."""

    def __init__(self, sim: SimHost):
        self.sim = sim
        self.calls: Counter[str] = Counter()

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        raw = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        function, payload = parse_remote_call(raw)
        self.calls[function] += 1
        return True, CommandOutput([OutputLine("stdout", call(self.sim, function, payload, {}))])


@pytest.fixture
def counted(tmp_path):
    state, host = make_host({})
    connector = SimConnector(SimHost(tmp_path / "web01"))
    host.connector = connector
    host.connected = True
    return state, host, connector


def converge(state, host, op, **kwargs):
    """Run an operation's generator on ``host`` and send what it yields to the SimHost."""

    forget_host_state(host)
    for command in run_operation(op._inner, None, host=host, state=state, **kwargs).objects:
        host.connector.run_shell_command(command)


def test_three_narrow_facts_cost_one_get_host_state(counted):
    state, host, connector = counted
    converge(state, host, windows_features, names=["Web-Server"], app_init=False)
    converge(state, host, app_pool, pool_name="api", start_mode="OnDemand", environment_variables={"API_KEY": "k"})
    converge(state, host, site, site_name="api", physical_path="C:\\sites\\api", app_pool="api", site_id=3,
             bindings=[{"protocol": "http", "port": 8080, "host_name": "api.example.com"}])
    forget_host_state(host)
    connector.calls.clear()

    pools = AppPools.read(host)
    sites = Sites.read(host)
    extensions = Extensions.read(host)
    assert Certificates.read(host) == [] and Releases.read(host) == {}
    assert connector.calls == Counter({"Get-HostState": 1})

    assert pools["api"]["start_mode"] == "OnDemand" and pools["api"]["state"] == "Started"
    assert pools["api"]["managed_runtime_version"] == "" and pools["api"]["identity_type"] == "ApplicationPoolIdentity"
    assert pools["api"]["environment_variables"] == ["API_KEY"] and pools["api"]["user"] is None
    assert sites["api"]["id"] == 3 and sites["api"]["app_pool"] == "api" and sites["api"]["physical_path"] == "C:\\sites\\api"
    assert sites["api"]["bindings"] == [{"protocol": "http", "binding_information": "*:8080:api.example.com", "ip": "*", "port": 8080,
                                         "host_name": "api.example.com", "ssl_flags": 0, "certificate_hash": None, "certificate_store": None}]
    assert set(extensions) == {"HttpPlatformHandler", "UrlRewrite", "ARR"} and not extensions["ARR"]["installed"]

    # the operations that follow reuse the same read
    assert run_operation(app_pool._inner, None, host=host, state=state, pool_name="api", start_mode="OnDemand",
                         environment_variables={"API_KEY": "k"}).commands == []
    assert connector.calls == Counter({"Get-HostState": 1})


def test_host_get_fact_reads_once_and_leaves_the_wide_fact_in_the_cache(counted):
    state, host, connector = counted
    converge(state, host, windows_features, names=["Web-Server"], app_init=False)
    converge(state, host, app_pool, pool_name="api")
    forget_host_state(host)
    connector.calls.clear()
    with context.ctx_state.use(state), context.ctx_host.use(host), context.ctx_config.use(state.config):
        pools = host.get_fact(AppPools)
    assert pools["api"]["start_mode"] == "AlwaysRunning"
    assert connector.calls == Counter({"Get-HostState": 1})
    assert "Default Web Site" in Sites.read(host) and AppPools.read(host) == pools
    assert connector.calls == Counter({"Get-HostState": 1})


def test_no_iis_gives_empty_views():
    state = {"features": [], "iis": None, "certificates": [], "acls": {}, "extensions": {}}
    assert AppPools.select(state) == {} and Sites.select(state) == {} and Extensions.select(state) == {}
    assert json.dumps(AppPools().process_data(state)) == "{}"
