"""``Get-HostState`` on the simulated host: the one wide fact (``docs/remote-functions.md``).

Extensions are detected like the real function does, from what is on the host (the global
module in applicationHost.config, as the docs/field-facts.md recommend), not from a product code; the
version comes from the product record the installer left (the registry ``Version`` value on
Windows).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from ...iis.appconfig import protect_secrets, real_children, render
from ...iis.httpsys import render_sslcert
from ..iis.store import STARTED, host_environment, load_config, pool_names, runtime, site_elements, sslcert_bindings
from . import SimFunctionError, sim_function
from .acl import describe_acl, describe_grant_record
from .certificates import STORES, describe_certificates
from .python import describe_pythons
from .release import describe_releases
from ...facts.iis_state import EXTENSION_MODULES  # the global module that shows an extension is installed

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: Shortest digest key accepted (the controller sends protocol.DIGEST_KEY_BYTES = 32).
MIN_DIGEST_KEY_BYTES = 16

#: Where IIS looks for shared configuration (https://learn.microsoft.com/iis/web-hosting/configuring-servers-in-the-windows-web-platform/shared-configuration_211).
REDIRECTION_CONFIG_PATH = r"C:\Windows\System32\inetsrv\config\redirection.config"



def _extensions(host: "SimHost", config) -> dict[str, Any]:
    modules = set()
    if config is not None:
        element = config.section_element("system.webServer/globalModules")
        modules = {m.get("name", "").casefold() for m in (real_children(element) if element is not None else [])}
    products = host.state.get("products", {})
    result = {}
    for product, module in EXTENSION_MODULES.items():
        installed = module.casefold() in modules
        version = products.get(product, {}).get("version") if installed else None
        result[product] = {"installed": installed, "version": version}
    return result


def _iis(host: "SimHost", config, digest_key: bytes) -> dict[str, Any] | None:
    # What the host sends (raw): the file's text with secret values as keyed digests (the
    # simulator keeps passwords in clear text, so there is nothing to decrypt), redirection.config
    # when it exists, runtime states, and HTTP.sys's SSL bindings as netsh prints them.
    if config is None or "Web-Server" not in host.state.get("features", {}):
        return None
    redirection = host.path(REDIRECTION_CONFIG_PATH)
    state = runtime(host)
    pools = {name: state["app_pools"].get(name, STARTED) for name in pool_names(config)}
    sites = {s.get("name", ""): state["sites"].get(s.get("name", ""), STARTED) for s in site_elements(config)}
    return {
        "config": render(protect_secrets(config.root, digest_key)),
        "redirection": redirection.read_text(encoding="utf-8") if redirection.is_file() else None,
        "runtime": {"app_pools": pools, "sites": sites},
        "sslcert": render_sslcert(sslcert_bindings(host)),
    }


def _string_list(payload: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = payload.get(key, default)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SimFunctionError(f"'{key}' must be a list of strings")
    return value


def _digest_key(payload: dict[str, Any]) -> bytes:
    value = payload.get("digest_key")
    try:
        key = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_DIGEST_KEY_BYTES:
        raise SimFunctionError(f"'digest_key' must be base64 of at least {MIN_DIGEST_KEY_BYTES} bytes")
    return key


@sim_function("Get-HostState")
def get_host_state(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"digest_key": "<base64>", "acl_paths": [...], "cert_stores": ["My", "WebHosting"],
    "release_roots": [...], "python_versions": ["3.12"]}`` → the host state JSON
    ("pythons"/"releases" for those asked).

    ``digest_key`` is required (at least ``MIN_DIGEST_KEY_BYTES`` bytes); ``cert_stores``
    defaults to My and WebHosting; ``acl_paths`` to none. Secrets never appear: environment
    variable values and passwords are digests under that key (``protocol.secret_digest``).
    """

    digest_key = _digest_key(payload)
    acl_paths = _string_list(payload, "acl_paths", [])
    cert_stores = _string_list(payload, "cert_stores", list(STORES))
    release_roots = _string_list(payload, "release_roots", [])
    python_versions = _string_list(payload, "python_versions", [])
    with host.lock:
        config = load_config(host)
        result = {
            "computer_name": host.hostname,
            "environment": host_environment(host),
            "reboot_pending": bool(host.state.get("reboot_pending", False)),
            "features": sorted(host.state.get("features", {})),
            "extensions": _extensions(host, config),
            "iis": _iis(host, config, digest_key),
            "certificates": describe_certificates(host, cert_stores),
            "acls": {path: describe_acl(host, path) for path in acl_paths},
            "pythons": describe_pythons(host, python_versions),
            "releases": describe_releases(host, release_roots, digest_key),
            "grant_record": describe_grant_record(host),
        }
    return json.dumps(result, separators=(",", ":"))
