"""Narrow facts: app pools, sites with their bindings, certificates, extensions, releases.

Each is a view of the one wide fact, :class:`~pyinfra_iis.facts.host_state.HostState`
(``Get-HostState``). Two ways to read one:

``AppPools.read(host)`` (in a deploy, an operation or a test)
    answers from :func:`~pyinfra_iis.facts.host_state.host_state`, the wide fact cached per
    host: any number of narrow facts, and every operation of the run, share ONE
    ``Get-HostState`` until a command changes the host.

``host.get_fact(AppPools)`` (pyinfra's API, also ``pyinfra HOST fact pyinfra_iis.facts.iis.AppPools``)
    works too: each narrow fact is a pyinfra ``ShortFactBase`` over :class:`WideHostState`.
    pyinfra 3 neither caches facts nor lets a fact skip its command (``get_fact`` →
    ``get_short_facts`` → ``_get_fact`` always runs the base fact's command through the
    connector), so each such call reads the host once; the read asks for everything the
    host's inventory mentions and its result is put into the same cache, so the operations
    that follow do not read again.

Values are plain data (dicts, lists, strings as IIS writes them); reading never changes the
host. The full shape of the wide fact is in ``docs/remote-functions.md`` ("Get-HostState").
"""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from pyinfra import context
from pyinfra.api import ShortFactBase

from ..iis import config, httpsys
from ..iis.defaults import APP_POOL, APP_POOLS, APPLICATION, BINDING, SITE, SITES, VIRTUAL_DIRECTORY
from .host_state import DEFAULT_CERT_STORES, HostState, fact_args, host_state, inventory_fact_arguments, store_host_state

T = TypeVar("T")


class WideHostState(HostState):
    """:class:`HostState` as read by ``host.get_fact`` of a narrow fact: asks for everything
    the host's inventory mentions (like :func:`host_state`) and leaves the result in the
    per-host cache :func:`host_state` reads, so later operations reuse it."""

    def command(self, acl_paths: Iterable[str] = (), cert_stores: Iterable[str] = (), release_roots: Iterable[str] = (),
                python_versions: Iterable[str] = ()):
        asked = fact_args(acl_paths, cert_stores, release_roots, python_versions)
        # pyinfra gives a fact's command no host; context.host is the host being read.
        self._host = context.host if context.ctx_host.isset() else None
        self._wanted = asked.union(inventory_fact_arguments(self._host)) if self._host is not None else asked.union(fact_args(cert_stores=DEFAULT_CERT_STORES))
        return super().command(**self._wanted.as_kwargs())

    def process(self, output: list[str]) -> dict:
        value = super().process(output)
        if getattr(self, "_host", None) is not None:
            store_host_state(self._host, self._wanted, value)
        return value


class IisFact(ShortFactBase[T]):
    """Base of the narrow facts: :meth:`select` picks the part of the wide fact."""

    fact = WideHostState

    @staticmethod
    def select(state: dict) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def process_data(self, data: dict) -> T:
        return self.select(data or {})

    @classmethod
    def read(cls, host: Any) -> T:
        """This fact of ``host`` from the cached wide fact (no round trip when it is cached)."""

        return cls.select(host_state(host))


def _effective(element: config.Element | None, dotted: str, table: dict, defaults_element: config.Element | None = None) -> str | None:
    spec = table.get(dotted)
    return config.effective(element, dotted, defaults_element=defaults_element, schema_default=spec.default if spec else None)


def _runtime(state: dict, kind: str, name: str) -> str | None:
    runtime = ((state.get("iis") or {}).get("runtime") or {}).get(kind) or {}
    return next((value for key, value in runtime.items() if key.lower() == name.lower()), None)


class AppPools(IisFact[dict]):
    """Application pools: ``{name: {...}}``, ``{}`` when IIS is not installed.

    Each pool: ``state`` (``Started``/``Stopped``/None when WAS does not report it),
    ``managed_runtime_version``, ``start_mode``, ``identity_type``, ``user`` (SpecificUser's
    account, else None), ``idle_timeout``, ``load_user_profile``, ``auto_start``,
    ``queue_length`` (effective values as IIS writes them: explicit, else
    ``applicationPoolDefaults``, else the schema default), and ``environment_variables``: the
    names only (the host reports values as digests).
    """

    ATTRIBUTES = {
        "managed_runtime_version": "managedRuntimeVersion", "start_mode": "startMode",
        "identity_type": "processModel.identityType", "user": "processModel.userName",
        "idle_timeout": "processModel.idleTimeout", "load_user_profile": "processModel.loadUserProfile",
        "auto_start": "autoStart", "queue_length": "queueLength",
    }

    @staticmethod
    def select(state: dict) -> dict:
        section = config.section(state.get("iis"), APP_POOLS)
        defaults = config.child(section, "applicationPoolDefaults")
        pools: dict[str, dict] = {}
        for item in config.items(section, "add"):
            name = config.get_attribute(item, "name") or ""
            entry: dict[str, Any] = {"state": _runtime(state, "app_pools", name)}
            for key, dotted in AppPools.ATTRIBUTES.items():
                entry[key] = _effective(item, dotted, APP_POOL, defaults)
            if entry["identity_type"] != "SpecificUser":
                entry["user"] = None
            variables = config.child(item, "environmentVariables")
            entry["environment_variables"] = [config.get_attribute(v, "name") for v in config.items(variables, "add")]
            pools[name] = entry
        return pools


def _split_binding_information(information: str) -> tuple[str, int | None, str]:
    rest, _, host_name = information.rpartition(":")
    ip, _, port = rest.rpartition(":")
    return ip.strip("[]"), int(port) if port.isdigit() else None, host_name


class Sites(IisFact[dict]):
    """Sites with their bindings: ``{name: {...}}``, ``{}`` when IIS is not installed.

    Each site: ``id``, ``state`` (runtime), ``auto_start``, ``app_pool``, ``physical_path``,
    ``preload_enabled`` (root application / virtual directory), ``log_directory``, and
    ``bindings``: ``[{"protocol", "binding_information", "ip", "port", "host_name",
    "ssl_flags", "certificate_hash", "certificate_store"}]``, the certificate being the one
    HTTP.sys holds for the binding's endpoint (None for http or when none is bound).
    """

    @staticmethod
    def select(state: dict) -> dict:
        iis = state.get("iis")
        section = config.section(iis, SITES)
        ssl = (iis or {}).get("ssl_bindings") or {}
        sites: dict[str, dict] = {}
        for item in config.items(section, "site"):
            name = config.get_attribute(item, "name") or ""
            app = config.find_item(item, "application", {"path": "/"})
            vdir = config.find_item(app, "virtualDirectory", {"path": "/"})
            site_id = config.get_attribute(item, "id")
            bindings = []
            for binding in config.items(config.child(item, "bindings"), "binding"):
                protocol = config.get_attribute(binding, "protocol") or ""
                information = config.get_attribute(binding, "bindingInformation") or ""
                flags = _effective(binding, "sslFlags", BINDING)
                ip, port, host_name = _split_binding_information(information)
                endpoint = httpsys.binding_endpoint(protocol, information, flags)
                bound = ssl.get(endpoint) if endpoint else None
                bindings.append({
                    "protocol": protocol, "binding_information": information, "ip": ip, "port": port, "host_name": host_name,
                    "ssl_flags": int(flags) if protocol == "https" and flags and flags.isdigit() else 0,
                    "certificate_hash": (bound or {}).get("hash"), "certificate_store": (bound or {}).get("store"),
                })
            sites[name] = {
                "id": int(site_id) if site_id and site_id.isdigit() else None,
                "state": _runtime(state, "sites", name),
                "auto_start": _effective(item, "serverAutoStart", SITE, config.child(section, "siteDefaults")),
                "app_pool": _effective(app, "applicationPool", APPLICATION, config.child(section, "applicationDefaults")),
                "physical_path": _effective(vdir, "physicalPath", VIRTUAL_DIRECTORY),
                "preload_enabled": _effective(app, "preloadEnabled", APPLICATION, config.child(section, "applicationDefaults")),
                "log_directory": _effective(item, "logFile.directory", SITE, config.child(section, "siteDefaults")),
                "bindings": bindings,
            }
        return sites


class Certificates(IisFact[list]):
    """Certificates in the reported ``Cert:\\\\LocalMachine`` stores (My and WebHosting, plus
    any store the inventory uses): ``[{"store", "thumbprint", "subject", "dns_names",
    "not_before", "not_after", "has_private_key", ...}]`` as parsed by
    :mod:`pyinfra_iis.facts.certificate_state`."""

    @staticmethod
    def select(state: dict) -> list:
        return [dict(entry) for entry in state.get("certificates") or []]


class Extensions(IisFact[dict]):
    """IIS extensions: ``{"HttpPlatformHandler" | "UrlRewrite" | "ARR": {"installed": bool,
    "version": str | None}}``."""

    @staticmethod
    def select(state: dict) -> dict:
        return {product: dict(entry or {}) for product, entry in (state.get("extensions") or {}).items()}


class Releases(IisFact[dict]):
    """Releases per release root of the inventory (``release_*`` host data, or the
    ``release_roots`` given to ``host.get_fact``): ``{root: {"current", "previous", "history",
    "versions": [{"version", "folder", "complete", "completed_at", ...}], "logs"}}``."""

    @staticmethod
    def select(state: dict) -> dict:
        return {root: dict(report or {}) for root, report in (state.get("releases") or {}).items()}


__all__ = ["AppPools", "Certificates", "Extensions", "IisFact", "Releases", "Sites", "WideHostState"]
