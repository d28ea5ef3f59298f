"""Server-level configuration: ARR proxy, URL Rewrite allowed server variables, request limits."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import operation

from ..facts.host_state import host_state
from ..iis import config
from ..iis.compare import differing
from ..iis.defaults import PROXY, PROXY_ATTRS, REQUEST_FILTERING, REQUEST_FILTERING_ATTRS, SERVER_VARIABLES
from ..iis.diff import Change, log_changes
from ..iis.edits import Edit, attribute_edits, item_step, set_edit
from ..models.server import ServerConfig
from ..protocol import remote_call
from ._common import iis_of, validated

_TABLES = {PROXY: PROXY_ATTRS, REQUEST_FILTERING: REQUEST_FILTERING_ATTRS}


def server_edits(model: ServerConfig, iis: dict | None) -> tuple[list[Edit], list[Change]]:
    """Edits for the server-level sections of ``model``: differing attributes of
    ``system.webServer/proxy`` and ``requestFiltering``, and each missing allowed server
    variable (added one by one; variables the model does not list are left alone, since
    rules outside this project may need them)."""

    edits: list[Edit] = []
    diff: list[Change] = []
    for section_path, wanted in model.config_attributes().items():
        element = config.section(iis, section_path)
        changes, lines = differing(element, wanted, _TABLES.get(section_path, {}), label=section_path)
        edits += attribute_edits(section_path, [], changes)
        diff += lines
    variables = config.section(iis, SERVER_VARIABLES)
    for name in model.allowed_server_variables or ():
        if config.find_item(variables, "add", {"name": name}) is None:
            edits.append(set_edit(SERVER_VARIABLES, [item_step("add", name=name)]))
            diff.append(Change(f"{SERVER_VARIABLES}: {name}", None, "allowed"))
    return edits, diff


@operation()
def server_config(server: Any = None):
    """
    Configure server-level IIS settings in ONE ``Set-IisConfig`` (only what differs).

    + server: a ``ServerConfig`` model or dict (host data ``iis_server``): ``proxy`` (ARR:
      enabled, timeout, preserveHostHeader...; ``None`` leaves ``system.webServer/proxy``
      alone), ``allowed_server_variables`` (default ``HTTP_X_FORWARDED_PROTO`` with a proxy;
      docs/field-facts.md: a rule setting it needs the allow-list), ``max_allowed_content_length``
      (bytes; IIS default 30,000,000). What is not given is left as the server has it: with
      no ``iis_server`` data nothing server-wide changes (issue 10).

    **Example:**

    .. code:: python

        server_config(name="ARR proxy", server={"proxy": {"timeout": "00:02:00"}})
    """

    model = validated(ServerConfig, server if server is not None else {}, "server")
    edits, diff = server_edits(model, iis_of(host_state(host)))
    if not edits:
        host.noop("server-level IIS configuration is as asked")
        return
    log_changes(host, "Will change server-level IIS configuration", diff)
    yield remote_call("Set-IisConfig", {"edits": edits})
