"""Where the simulated host keeps its IIS: the applicationHost.config file and the runtime
state of application pools and sites (``host.state["iis_runtime"]``).

Runtime state (what ``Get-IISAppPool``/``Get-IISSite`` show as State) is kept apart from the
configuration, as on Windows: WAS starts a pool or site when its configuration is committed
(``autoStart``/``serverAutoStart`` default true) and a stopped one stays stopped until started.
A site whose binding is already used by a started site cannot start (IIS: "Cannot create a file
when that file already exists", 0x800700B7), so :func:`sync_runtime` leaves it Stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .appconfig import APPHOST_CONFIG_PATH, AppHostConfig, real_children

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

STARTED = "Started"
STOPPED = "Stopped"


def config_file(host: "SimHost") -> Path:
    """Local path of the host's applicationHost.config (it may not exist)."""

    return host.path(APPHOST_CONFIG_PATH)


def iis_installed(host: "SimHost") -> bool:
    """Whether the Web-Server role is installed and its configuration file exists."""

    return "Web-Server" in host.state.get("features", {}) and config_file(host).exists()


def sslcert_bindings(host: "SimHost") -> dict[str, dict[str, str]]:
    """Return (creating) the host's HTTP.sys SSL certificate bindings,
    ``host.state["http_sys"]["sslcert"]`` (see ``appconfig.HTTP_SYS_BINDING_ATTRIBUTES``)."""

    return host.state.setdefault("http_sys", {}).setdefault("sslcert", {})


def load_config(host: "SimHost") -> AppHostConfig | None:
    """Return the parsed applicationHost.config (with the host's HTTP.sys certificate
    bindings), or ``None`` before Web-Server is installed."""

    path = config_file(host)
    if not path.exists():
        return None
    return AppHostConfig.load(path, sslcert_bindings(host))


def runtime(host: "SimHost") -> dict[str, Any]:
    """Return (creating) ``host.state["iis_runtime"]``: ``{"app_pools": {name: state},
    "sites": {name: state}, "recycles": {pool: count}}``. Call under ``host.lock``."""

    data = host.state.setdefault("iis_runtime", {})
    data.setdefault("app_pools", {})
    data.setdefault("sites", {})
    data.setdefault("recycles", {})
    return data


def pool_names(config: AppHostConfig) -> list[str]:
    """Names of the application pools in the configuration, in file order."""

    pools = config.section_element("system.applicationHost/applicationPools")
    children = real_children(pools) if pools is not None else []
    return [p.get("name", "") for p in children if p.tag == "add"]


def site_elements(config: AppHostConfig) -> list[Any]:
    """The ``<site>`` elements of the configuration, in file order."""

    sites = config.section_element("system.applicationHost/sites")
    return [s for s in (real_children(sites) if sites is not None else []) if s.tag == "site"]


def site_bindings(site: Any) -> set[tuple[str, ...]]:
    """The bindings of a ``<site>`` element by meaning, as HTTP.sys compares them: protocol,
    canonical IP, port, host name (``pyinfra_iis.iis.adopt.binding_key``: ``[2001:DB8::1]`` and
    ``[2001:db8:0::1]`` are one address)."""

    from ...iis.adopt import binding_key

    result = set()
    for child in real_children(site):
        if child.tag == "bindings":
            for binding in real_children(child):
                if binding.tag == "binding":
                    result.add(binding_key(binding.get("protocol", ""), binding.get("bindingInformation", "")))
    return result


def find_key(mapping: dict[str, Any], name: str) -> str | None:
    """Return the key of ``mapping`` equal to ``name`` ignoring case (IIS names are
    case-insensitive), or ``None``."""

    folded = name.casefold()
    return next((key for key in mapping if key.casefold() == folded), None)


def binding_conflict(config: AppHostConfig, states: dict[str, str], site_name: str) -> str | None:
    """Return the name of a started site (other than ``site_name``) sharing a binding with
    ``site_name``, or ``None``."""

    sites = {s.get("name", ""): s for s in site_elements(config)}
    key = find_key(sites, site_name)
    if key is None:
        return None
    mine = site_bindings(sites[key])
    for other, element in sites.items():
        if other.casefold() == site_name.casefold() or states.get(other) != STARTED:
            continue
        if mine & site_bindings(element):
            return other
    return None


def sync_runtime(host: "SimHost", config: AppHostConfig) -> dict[str, list[str]]:
    """Bring the runtime state in line with the configuration after a commit.

    New pools start unless ``autoStart="false"``; new sites start unless
    ``serverAutoStart="false"`` or a started site already has one of their bindings. Deleted
    pools and sites are forgotten. Call under ``host.lock``.

    Returns:
        ``{"started_pools": [...], "removed_pools": [...]}`` (for the hook callers).
    """

    data = runtime(host)
    pools = data["app_pools"]
    started_pools = []
    pool_elements = config.section_element("system.applicationHost/applicationPools")
    configured_pools = {}
    for pool in real_children(pool_elements) if pool_elements is not None else []:
        if pool.tag == "add" and pool.get("name"):
            configured_pools[pool.get("name")] = pool
    for name, element in configured_pools.items():
        if find_key(pools, name) is None:
            state = STOPPED if element.get("autoStart", "true").lower() == "false" else STARTED
            pools[name] = state
            if state == STARTED:
                started_pools.append(name)
    removed_pools = [name for name in pools if find_key(configured_pools, name) is None]
    for name in removed_pools:
        del pools[name]
        data["recycles"].pop(name, None)

    sites = data["sites"]
    configured_sites = site_elements(config)
    names = [s.get("name", "") for s in configured_sites]
    for name in list(sites):
        if name not in names:
            del sites[name]
    for site in sorted(configured_sites, key=lambda s: int(s.get("id", "0")) if s.get("id", "").isdigit() else 0):
        name = site.get("name", "")
        if name in sites:
            continue
        if site.get("serverAutoStart", "true").lower() == "false":
            sites[name] = STOPPED
        else:
            sites[name] = STOPPED if binding_conflict(config, sites, name) else STARTED
    return {"started_pools": started_pools, "removed_pools": removed_pools}


#: The variables ``Get-HostState`` reports (``environment``), as a Windows Server 2022 host with
#: its system on C: has them; a test may set others in ``host.state["environment"]``.
DEFAULT_ENVIRONMENT = {
    "SystemDrive": "C:", "SystemRoot": "C:\\Windows", "windir": "C:\\Windows", "ProgramData": "C:\\ProgramData",
    "ProgramFiles": "C:\\Program Files", "ALLUSERSPROFILE": "C:\\ProgramData", "PUBLIC": "C:\\Users\\Public",
}


def host_environment(host: "SimHost") -> dict[str, str]:
    """The environment variables ``Get-HostState`` reports: :data:`DEFAULT_ENVIRONMENT`
    overlaid with ``host.state["environment"]``."""

    return {**DEFAULT_ENVIRONMENT, **(host.state.get("environment") or {})}

