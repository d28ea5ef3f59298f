"""Read what the app runner needs from the simulated host's applicationHost.config: each
site's pool, root physicalPath and bindings, the pools' environment variables, and whether
the httpPlatformHandler global module is installed."""

from __future__ import annotations

from dataclasses import dataclass
from ..iis.appconfig import AppHostConfig, binding_endpoint, first_child, real_children
from ..iis.store import site_elements
from .bindings import Binding
from .httpplatform import expand_variables

#: What ``%SystemDrive%``-style variables in physicalPath expand to on the simulated host.
SYSTEM_VARIABLES = {"SystemDrive": "C:", "SystemRoot": "C:\\Windows", "windir": "C:\\Windows"}

#: IIS's default pool for an application without ``applicationPool`` (applicationDefaults).
DEFAULT_POOL = "DefaultAppPool"


@dataclass(frozen=True)
class SiteBinding:
    """A binding with its certificate reference (https): ``certificate_hash`` upper-case or ``None``."""

    binding: Binding
    certificate_hash: str | None = None
    certificate_store: str = "My"


@dataclass(frozen=True)
class SiteInfo:
    """A site: ``name``, root application ``pool``, root ``physical_path`` (variables expanded;
    ``None`` when the root virtual directory is missing) and ``bindings``."""

    name: str
    pool: str
    physical_path: str | None
    bindings: tuple[SiteBinding, ...]


def _item(parent, tag: str, path: str):
    for child in real_children(parent) if parent is not None else []:
        if child.tag == tag and child.get("path") == path:
            return child
    return None


def _default_pool(config: AppHostConfig) -> str:
    sites = config.section_element("system.applicationHost/sites")
    defaults = first_child(sites, "applicationDefaults") if sites is not None else None
    return (defaults.get("applicationPool") if defaults is not None else None) or DEFAULT_POOL


def read_sites(config: AppHostConfig) -> list[SiteInfo]:
    """Every ``<site>`` of the configuration, in file order (malformed bindings are skipped:
    IIS would refuse to start such a site)."""

    default_pool = _default_pool(config)
    result = []
    for site in site_elements(config):
        application = _item(site, "application", "/")
        vdir = _item(application, "virtualDirectory", "/")
        pool = (application.get("applicationPool") if application is not None else None) or default_pool
        physical = vdir.get("physicalPath") if vdir is not None else None
        bindings = []
        holder = first_child(site, "bindings")
        for element in real_children(holder) if holder is not None else []:
            if element.tag != "binding":
                continue
            try:
                binding = Binding.parse(element.get("protocol", ""), element.get("bindingInformation", ""))
            except ValueError:
                continue
            if binding.protocol not in ("http", "https"):
                continue
            # The certificate of an https binding lives in HTTP.sys, keyed by endpoint (appconfig.py).
            sslcert = config.sslcert.get(binding_endpoint(element) or "", {})
            thumb = sslcert.get("certificateHash")
            bindings.append(SiteBinding(binding, thumb.upper() if thumb else None, sslcert.get("certificateStoreName") or "My"))
        result.append(SiteInfo(site.get("name", ""), pool,
                               expand_variables(physical, SYSTEM_VARIABLES) if physical else None, tuple(bindings)))
    return result


def pool_environment(config: AppHostConfig, pool: str) -> dict[str, str]:
    """The ``environmentVariables`` of application pool ``pool`` (name case-insensitive),
    values in clear text (they are secrets: never log them)."""

    pools = config.section_element("system.applicationHost/applicationPools")
    for element in real_children(pools) if pools is not None else []:
        if element.tag == "add" and element.get("name", "").casefold() == pool.casefold():
            variables = first_child(element, "environmentVariables")
            result: dict[str, str] = {}
            for item in real_children(variables) if variables is not None else []:
                if item.tag == "add" and item.get("name"):
                    result[item.get("name")] = item.get("value", "")
                elif item.tag == "remove" and item.get("name"):
                    result.pop(item.get("name"), None)
                elif item.tag == "clear":
                    result.clear()
            return result
    return {}


def has_global_module(config: AppHostConfig, name: str) -> bool:
    """Whether ``system.webServer/globalModules`` has the module ``name`` (case-insensitive)."""

    modules = config.section_element("system.webServer/globalModules")
    return any(m.get("name", "").casefold() == name.casefold() for m in (real_children(modules) if modules is not None else []))


def site_by_name(sites: list[SiteInfo], name: str) -> SiteInfo | None:
    """The site called ``name`` (case-insensitive), or ``None``."""

    return next((s for s in sites if s.name.casefold() == name.casefold()), None)



#: IIS_schema.xml defaults of what the worker-process rotation reads (seconds for times).
SHUTDOWN_TIME_LIMIT_DEFAULT = 90.0


@dataclass(frozen=True)
class PoolRotation:
    """How WAS replaces a pool's worker process (``applicationPools/add``; defaults from
    ``applicationPoolDefaults``, then IIS_schema.xml):

    * ``overlapped``: not ``recycling/@disallowOverlappingRotation`` (default false: overlapped);
    * ``shutdown_time_limit``: ``processModel/@shutdownTimeLimit`` in seconds (default 00:01:30),
      how long an old worker may drain its requests before WAS terminates it;
    * ``always_running``: ``startMode="AlwaysRunning"`` (default OnDemand).
    """

    overlapped: bool = True
    shutdown_time_limit: float = SHUTDOWN_TIME_LIMIT_DEFAULT
    always_running: bool = False


def _timespan(text: str | None, default: float) -> float:
    from .httpplatform import WebConfigError, timespan_seconds

    if not text:
        return default
    try:
        return timespan_seconds(text)
    except WebConfigError:
        return default


def pool_rotation(config: AppHostConfig, pool: str) -> PoolRotation:
    """The :class:`PoolRotation` of application pool ``pool`` (name case-insensitive)."""

    pools = config.section_element("system.applicationHost/applicationPools")
    values: dict[str, str] = {}
    for element in real_children(pools) if pools is not None else []:
        if element.tag == "applicationPoolDefaults" or (element.tag == "add" and element.get("name", "").casefold() == pool.casefold()):
            recycling, model = first_child(element, "recycling"), first_child(element, "processModel")
            for key, holder, attribute in (("overlap", recycling, "disallowOverlappingRotation"),
                                           ("limit", model, "shutdownTimeLimit"), ("mode", element, "startMode")):
                if holder is not None and holder.get(attribute) is not None:
                    values[key] = holder.get(attribute)
    return PoolRotation(overlapped=values.get("overlap", "false").lower() != "true",
                        shutdown_time_limit=_timespan(values.get("limit"), SHUTDOWN_TIME_LIMIT_DEFAULT),
                        always_running=values.get("mode", "OnDemand") == "AlwaysRunning")


def preload_enabled(config: AppHostConfig, site_name: str) -> bool:
    """The root application's ``preloadEnabled`` of site ``site_name`` (IIS default false;
    ``applicationDefaults`` considered)."""

    sites = config.section_element("system.applicationHost/sites")
    defaults = first_child(sites, "applicationDefaults") if sites is not None else None
    value = defaults.get("preloadEnabled") if defaults is not None else None
    for site in site_elements(config):
        if site.get("name", "").casefold() == site_name.casefold():
            application = _item(site, "application", "/")
            if application is not None and application.get("preloadEnabled") is not None:
                value = application.get("preloadEnabled")
    return (value or "false").lower() == "true"
