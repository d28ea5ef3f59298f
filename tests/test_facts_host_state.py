"""Get-HostState: the command, the parse, one call per host until the cache is cleared."""

from __future__ import annotations

import base64

import pytest

from pyinfra_iis.facts.host_state import HostState, forget_host_state, host_state
from pyinfra_iis.operations.testing import make_host
from pyinfra_iis.protocol import parse_remote_call, process_digest_key

HOST_DATA = {
    "iis_app_pools": [{"name": "api"}],
    "iis_sites": [{"name": "api", "physical_path": "C:\\sites\\api\\current", "app_pool": "api",
                   "log_directory": "C:\\sites\\api\\logs", "bindings": [{"protocol": "http"}]}],
    "iis_acls": [{"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}],
}


def test_command_is_one_remote_call_with_the_paths_stores_and_the_masked_digest_key():
    command = HostState().command(acl_paths=["C:\\x"], cert_stores=["My"])
    name, payload = parse_remote_call(command.get_raw_value())
    key = base64.b64encode(process_digest_key()).decode("ascii")
    assert (name, payload) == ("Get-HostState", {"acl_paths": ["C:\\x"], "cert_stores": ["My"], "digest_key": key})
    assert len(process_digest_key()) == 32
    # pyinfra prints the masked form: the key that makes digests unguessable is not in it
    assert key not in command.get_masked_value() and "*MASKED*" in command.get_masked_value()
    assert HostState().process(['{"features": [],', '"iis": null}']) == {"features": [], "iis": None}
    with pytest.raises(ValueError):
        HostState().process(["[1, 2]"])


@pytest.fixture
def counted_host(monkeypatch):
    state, host = make_host(HOST_DATA)
    calls = []

    def get_fact(cls, **kwargs):
        assert cls is HostState
        calls.append(kwargs)
        return {"features": [], "iis": None, "acls": {}, "certificates": [], "n": len(calls)}

    monkeypatch.setattr(host, "get_fact", get_fact)
    return host, calls


def test_one_call_serves_every_operation_with_every_inventory_path(counted_host):
    host, calls = counted_host
    first = host_state(host)
    assert host_state(host) is first
    assert host_state(host, acl_paths=["c:\\SITES\\api"]) is first  # already asked for
    assert len(calls) == 1
    assert calls[0]["acl_paths"] == ["C:\\sites\\api", "C:\\sites\\api\\current", "C:\\sites\\api\\logs"]
    assert calls[0]["cert_stores"] == ["My", "WebHosting"]


def test_cache_cleared_or_refresh_or_new_path_reads_again(counted_host):
    host, calls = counted_host
    host_state(host)
    forget_host_state(host)
    assert host_state(host)["n"] == 2
    assert host_state(host, refresh=True)["n"] == 3
    assert host_state(host, acl_paths=["D:\\other"])["n"] == 4
    assert "D:\\other" in calls[-1]["acl_paths"] and "C:\\sites\\api" in calls[-1]["acl_paths"]
    assert host_state(host)["n"] == 4


def test_the_connector_fact_cache_is_used_when_there_is_one(counted_host):
    host, calls = counted_host
    host.connector.fact_cache = {}
    host_state(host)
    assert host.connector.fact_cache  # stored there
    host.connector.fact_cache.clear()  # what the connector does after a changing command
    host_state(host)
    assert len(calls) == 2
