"""``Install-WindowsFeatureSet`` on the simulated host.

Installs the named features (with their parent features, like ``Install-WindowsFeature``) that
are not installed yet. Installing Web-Server also installs its default role services (what
``Install-WindowsFeature Web-Server`` and Server Manager's wizard select) and lays down IIS:
applicationHost.config (see ``sim/iis/fresh.py``), ``C:\\inetpub\\wwwroot\\iisstart.htm``,
``C:\\inetpub\\logs\\LogFiles``, the IIS ACLs, the W3SVC and WAS services, and the runtime state
of DefaultAppPool and Default Web Site (Started). Later role services add their global modules
(Web-WebSockets → WebSocketModule, Web-AppInit → ApplicationInitializationModule,
Web-Windows-Auth → WindowsAuthenticationModule, ...).

Whether Windows also adds Web-Server's default role services when Web-Server is pulled in only
as the parent of another role service is not verified: the simulator does. [I]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..iis import roles
from ..iis.appconfig import AppHostConfig
from ..iis.fresh import add_feature, fresh_config, iisstart_html
from ..iis.store import config_file, load_config, runtime, sync_runtime
from . import SimFunctionError, sim_function
from .acl import add_explicit_acls, iis_default_acls

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost


def _names(payload: dict[str, Any]) -> list[str]:
    names = payload.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SimFunctionError("'names' must be a list of feature names")
    resolved = []
    for name in names:
        feature = roles.lookup(name)
        if feature is None:
            raise SimFunctionError(
                f"ArgumentNotValid: The role, role service, or feature name is not valid: '{name}'. The name was not found."
            )
        resolved.append(feature.name)
    return resolved


def _to_install(installed: set[str], names: list[str]) -> list[str]:
    wanted: list[str] = []
    for name in names:
        for feature in roles.with_parents(name):
            if feature not in installed and feature not in wanted:
                wanted.append(feature)
    if "Web-Server" in wanted:
        for feature in roles.default_subfeatures("Web-Server"):
            if feature not in installed and feature not in wanted:
                wanted.append(feature)
    return sorted(wanted, key=roles.ORDER.__getitem__)


def _lay_down_iis(host: "SimHost", features: list[str]) -> AppHostConfig:
    config = fresh_config(features)
    config.save(config_file(host))
    wwwroot = host.path("C:\\inetpub\\wwwroot")
    wwwroot.mkdir(parents=True, exist_ok=True)
    (wwwroot / "iisstart.htm").write_text(iisstart_html(), encoding="utf-8", newline="")
    (wwwroot / "iisstart.png").write_bytes(b"\x89PNG\r\n\x1a\n(simulator stand-in for the IIS welcome image)")
    for folder in ("C:\\inetpub\\logs\\LogFiles", "C:\\inetpub\\temp", "C:\\inetpub\\custerr\\en-US",
                   "C:\\inetpub\\history"):
        host.path(folder).mkdir(parents=True, exist_ok=True)
    add_explicit_acls(host, iis_default_acls())
    services = host.state.setdefault("services", {})
    services["W3SVC"] = {"status": "Running", "start_type": "Automatic"}
    services["WAS"] = {"status": "Running", "start_type": "Manual"}
    return config


@sim_function("Install-WindowsFeatureSet")
def install_windows_feature_set(host: "SimHost", payload: dict[str, Any]) -> str:
    """``{"names": [...]}`` → ``{"installed": [...], "restart_needed": bool}``.

    ``installed`` lists every feature this call installed (parents and default role services
    included), in Get-WindowsFeature order. Errors: an unknown name (nothing is installed).
    """

    names = _names(payload)
    with host.lock:
        features = host.state.setdefault("features", {})
        new = _to_install(set(features), names)
        if not new:
            return json.dumps({"installed": [], "restart_needed": False})
        iis_new = [f for f in new if "Web-Server" in roles.with_parents(f)]
        if iis_new:
            config = load_config(host) if "Web-Server" in features else None
            if config is None:
                config = _lay_down_iis(host, [*features, *new])
            else:
                for feature in iis_new:
                    add_feature(config, feature)
                config.save(config_file(host))
            runtime(host)
            sync_runtime(host, config)
        for feature in new:
            features[feature] = {"display_name": roles.CATALOG[feature].display_name}
        restart = any(roles.CATALOG[f].restart_needed for f in new)
        if restart:
            host.state["reboot_pending"] = True
        host.save()
    return json.dumps({"installed": new, "restart_needed": restart})
