"""Run an operation generator against a given fact, pyinfra-style, without a host.

Used by the unit tests (``tests/test_operations_*.py``) and usable by anyone who wants to see
what an operation would yield for a given ``Get-HostState`` value::

    result = run_operation(app_pool._inner, fact, pool={"name": "api"})
    result.commands   # raw command strings (secrets in clear: never print them)
    result.masked     # what pyinfra shows (*MASKED*)

A real pyinfra ``State``/``Inventory``/``Host`` are built (host ``web01`` with ``host_data``), the
fact is put in the host's fact cache, and ``pyinfra.context`` is set while the generator runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from pyinfra import context
from pyinfra.api import Config, FileUploadCommand, Inventory, State, StringCommand

from ..facts.host_state import set_host_state


@dataclass
class OperationResult:
    """Commands an operation yielded and what it logged.

    Attributes:
        commands: raw command strings (uploads as ``"upload <src> -> <dest>"``).
        masked: the same as pyinfra prints them (secrets ``*MASKED*``).
        objects: the yielded command objects.
        logs: log lines (``noop:`` lines, ``--diff`` lines, warnings).
    """

    commands: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)
    objects: list[Any] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def make_host(host_data: dict | None = None, name: str = "web01", diff: bool = False) -> tuple[State, Any]:
    """Return ``(state, host)``: a pyinfra state with one host carrying ``host_data``."""

    inventory = Inventory(([(name, dict(host_data or {}))], {}))
    config = Config()
    config.DIFF = diff
    state = State(inventory, config)
    return state, inventory.get_host(name)


def run_operation(func: Callable, fact: dict | None, *args: Any, host_data: dict | None = None, diff: bool = False, host: Any = None, state: State | None = None, **kwargs: Any) -> OperationResult:
    """Run the generator ``func`` (an operation's ``_inner``) and collect what it yields.

    Args:
        func: the undecorated operation generator.
        fact: the ``Get-HostState`` value to serve (``None``: keep the host's cache as it is).
        host_data: the host's data (``iis_*`` keys) when a new host is made.
        diff: set ``config.DIFF`` (``--diff``).
        host, state: reuse a host made by :func:`make_host`.
    """

    if host is None:
        state, host = make_host(host_data, diff=diff)
    if fact is not None:
        set_host_state(host, fact, acl_paths=list((fact.get("acls") or {}).keys()), cert_stores=("My", "WebHosting", "CA"),
                       release_roots=list((fact.get("releases") or {}).keys()), python_versions=list((fact.get("pythons") or {}).keys()))
    result = OperationResult()
    handler = _Collect(result.logs)
    logger = logging.getLogger("pyinfra")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with context.ctx_state.use(state), context.ctx_host.use(host), context.ctx_config.use(state.config):
            for command in func(*args, **kwargs):
                result.objects.append(command)
                if isinstance(command, FileUploadCommand):
                    text = f"upload {command.src} -> {command.dest}"
                    result.commands.append(text)
                    result.masked.append(text)
                elif isinstance(command, StringCommand):
                    result.commands.append(command.get_raw_value())
                    result.masked.append(command.get_masked_value())
                else:
                    result.commands.append(str(command))
                    result.masked.append(str(command))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return result


# --- A minimal model of the host side, to check that a second run yields nothing ------------


def empty_fact(features: list[str] | None = None) -> dict:
    """A ``Get-HostState`` value of a fresh host (``iis`` present when Web-Server is listed)."""

    features = list(features or [])
    iis = {"sections": {}, "locations": {}, "runtime": {"app_pools": {}, "sites": {}}, "ssl_bindings": {},
           "environment": {"SystemDrive": "C:", "SystemRoot": "C:\\Windows", "windir": "C:\\Windows"}} if "Web-Server" in features else None
    return {"computer_name": "WEB01", "reboot_pending": False, "features": features,
            "extensions": {p: {"installed": False, "version": None} for p in ("HttpPlatformHandler", "UrlRewrite", "ARR")},
            "iis": iis, "certificates": [], "acls": {}}


def _new_element(tag: str | None = None, key: dict | None = None) -> dict:
    element: dict = {"attributes": dict(key or {}), "children": {}, "items": []}
    if tag is not None:
        element["tag"] = tag
    return element


def _apply_edit(iis: dict, edit: dict) -> None:
    from ..iis import config
    from ..protocol import secret_digest

    if edit.get("location"):
        sections = iis["locations"].setdefault(edit["location"], {})
    else:
        sections = iis["sections"]
    element = sections.setdefault(edit["section"], _new_element())
    parent, item = None, None
    for step in edit["path"]:
        if "child" in step:
            element = element["children"].setdefault(step["child"], _new_element())
        else:
            parent = element
            item = config.find_item(element, step["item"], step["key"])
            if item is None:
                if edit["action"] == "remove":
                    return
                item = _new_element(step["item"], step["key"])
                element["items"].append(item)
            element = item
    if edit["action"] == "remove":
        parent["items"].remove(item)
        return
    for name, value in edit["attributes"].items():
        secret = name == "password" or (name == "value" and "environmentVariables" in [s.get("child") for s in edit["path"]])
        element["attributes"][name] = secret_digest(value) if secret else value


def _apply_ssl_binding(iis: dict, payload: dict) -> None:
    from ..iis import config, httpsys

    site = config.find_item(config.section(iis, "system.applicationHost/sites"), "site", {"name": payload["site"]})
    item = config.find_item(config.child(site, "bindings"), "binding", {"protocol": "https", "bindingInformation": payload["binding_information"]})
    endpoint = httpsys.binding_endpoint("https", payload["binding_information"], config.get_attribute(item, "sslFlags"))
    table = iis.setdefault("ssl_bindings", {})
    if payload["action"] == "remove":
        table.pop(endpoint, None)
    else:
        table[endpoint] = {"kind": httpsys.endpoint_kind(endpoint), "hash": payload["thumbprint"].upper(),
                           "store": payload.get("store") or "My", "appid": httpsys.IIS_APPID}


def apply_to_fact(fact: dict, commands: list[str]) -> dict:
    """Apply raw remote calls to ``fact`` as the host would (the subset the unit tests need:
    features, MSI products, ``Set-IisConfig``, runtime state, directories, ACL grants/revokes,
    certificate key readers). Returns ``fact`` (changed in place)."""

    from ..protocol import parse_remote_call

    for command in commands:
        call = parse_remote_call(command)
        if call is None:
            continue
        function, payload = call
        if function == "Install-WindowsFeatureSet":
            fact["features"] = sorted(set(fact["features"]) | set(payload["names"]))
            if "Web-Server" in fact["features"] and fact.get("iis") is None:
                fact["iis"] = empty_fact(["Web-Server"])["iis"]
        elif function == "Install-MsiProduct":
            fact["extensions"][payload["product"]] = {"installed": True, "version": "1.0"}
        elif function == "Set-IisConfig":
            for edit in payload["edits"]:
                _apply_edit(fact["iis"], edit)
        elif function == "Set-IisSslBinding":
            _apply_ssl_binding(fact["iis"], payload)
        elif function == "Set-IisRuntimeState":
            for kind in ("app_pools", "sites"):
                fact["iis"]["runtime"][kind].update(payload.get(kind) or {})
        elif function == "Initialize-Directory":
            entry = fact["acls"].setdefault(payload["path"], {})
            entry.update({"exists": True, "is_directory": True, "inheritance_protected": bool(payload.get("sddl")), "entries": entry.get("entries") or []})
        elif function in ("Grant-PathAccess", "Revoke-PathAccess"):
            _apply_rule(fact, function, payload)
    return fact


def _apply_rule(fact: dict, function: str, payload: dict) -> None:
    """``Grant-PathAccess``/``Revoke-PathAccess`` on the fact: a path's ACL entries, or a
    certificate's key readers when the path is its ``key_path``."""

    from ..operations.acl import same_principal

    key = payload.get("sid") or payload["principal"]
    for cert in fact.get("certificates") or []:
        if cert.get("key_path") == payload["path"]:
            if function == "Grant-PathAccess":
                cert.setdefault("key_readers", []).append(payload["principal"])
                cert.setdefault("key_reader_sids", []).append(key)
            return
    entry = fact["acls"].setdefault(payload["path"], {"exists": True, "entries": []})
    entry["entries"] = [e for e in entry["entries"] if e["inherited"] or not same_principal(e, payload["principal"])]
    if function == "Grant-PathAccess":
        entry["entries"].append({"principal": payload["principal"], "sid": payload.get("sid"), "type": "Allow",
                                 "rights": payload["rights"] + ", Synchronize", "inherited": False,
                                 "inheritance": payload["inheritance"], "propagation": payload["propagation"]})
