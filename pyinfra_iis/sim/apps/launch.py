"""Turn a site's web.config (on the simulated host) into a :class:`LaunchSpec` runnable here.

The release's ``venv\\Scripts\\python.exe`` is a placeholder on the simulated host;
the release's pip step (``Invoke-Program``) writes ``venv\\pyinfra-iis-sim-venv.json`` (:data:`SIM_VENV_MARKER`) naming the
local venv with the same pinned versions (:mod:`.venv`), and its interpreter runs instead.
"""

from __future__ import annotations

import json
import ntpath
from typing import TYPE_CHECKING

from ..host import SimPathError
from ..iis.appconfig import AppHostConfig
from .bindings import HttpError
from .httpplatform import (HttpPlatform, WebConfigError, expand_variables, map_argument, parse_web_config,
                           resolve_site_relative, split_windows_arguments)
from .process import LaunchSpec, base_environment
from .sites import SYSTEM_VARIABLES, SiteInfo, has_global_module, pool_environment
from .venv import venv_python

if TYPE_CHECKING:  # pragma: no cover
    from ..host import SimHost

#: Marker file in a release's ``venv`` folder on the simulated host.
SIM_VENV_MARKER = "pyinfra-iis-sim-venv.json"

#: HttpPlatformHandler's global module (sim/functions/msi.py installs it).
HPH_MODULE = "httpPlatformHandler"


def read_platform(host: "SimHost", site: SiteInfo) -> HttpPlatform | None:
    """The ``<httpPlatform>`` of the web.config at the site's physicalPath, or ``None`` when
    there is no web.config or it has no ``<httpPlatform>``.

    Raises:
        HttpError: 500.19 for an unreadable web.config.
    """

    if not site.physical_path:
        return None
    try:
        local = host.path(ntpath.join(site.physical_path, "web.config"))
    except SimPathError:
        return None
    if not local.is_file():
        return None
    try:
        return parse_web_config(local.read_text(encoding="utf-8-sig"))
    except (WebConfigError, UnicodeDecodeError) as exc:
        raise HttpError(500, "Internal Server Error", f"500.19: the configuration data for the page is invalid: {exc}") from None


def _local_python(host: "SimHost", process_path: str) -> str:
    windows = ntpath.normpath(process_path)
    folder, name = ntpath.split(windows)
    scripts, venv = ntpath.split(folder)[1], ntpath.split(folder)[0]
    if name.casefold() == "python.exe" and scripts.casefold() == "scripts":
        try:
            marker = host.path(ntpath.join(venv, SIM_VENV_MARKER))
        except SimPathError:
            marker = None
        if marker is not None and marker.is_file():
            local_venv = json.loads(marker.read_text(encoding="utf-8"))["local_venv"]
            return str(venv_python(local_venv))
    raise HttpError(502, "Bad Gateway",
                    f"502.3: the simulator cannot run {windows}: only a release venv's Scripts\\python.exe made by "
                    "the release's pip step (with its local stand-in venv) can run on the simulated host")


def build_spec(host: "SimHost", config: AppHostConfig, site: SiteInfo) -> LaunchSpec:
    """The launch specification of ``site``'s app (see :mod:`.process` for each rule).

    Raises:
        HttpError: 500.19 (no httpPlatformHandler module, bad web.config), 502.3 (an executable
            the simulator cannot run, a path it cannot map), 404 (no ``<httpPlatform>``).
    """

    platform = read_platform(host, site)
    if platform is None:
        raise HttpError(404, "Not Found", "no <httpPlatform> in web.config: the simulator serves HttpPlatformHandler apps only")
    if not has_global_module(config, HPH_MODULE):
        raise HttpError(500, "Internal Server Error",
                        "500.19: the requested page cannot be accessed because <httpPlatform> is an unknown section "
                        "(HttpPlatformHandler is not installed)")
    environment = {**base_environment(), **pool_environment(config, site.pool), **platform.environment}
    variables = {**SYSTEM_VARIABLES, **environment}
    process_path = resolve_site_relative(expand_variables(platform.process_path, variables), site.physical_path)

    def map_path(path: str) -> str:
        try:
            return str(host.path(path))
        except SimPathError as exc:
            raise HttpError(502, "Bad Gateway", f"502.3: {exc}") from None

    argv = [_local_python(host, process_path)]
    for argument in split_windows_arguments(platform.arguments):
        argv.append(map_argument(argument, map_path))
    log_base = windows_log = None
    if platform.stdout_log_enabled:
        windows_log = expand_variables(platform.stdout_log_file, variables)
        if not ntpath.isabs(windows_log):
            windows_log = ntpath.normpath(ntpath.join(site.physical_path, windows_log))
        log_base = host.path(windows_log) if not windows_log.startswith("\\\\") else None
    return LaunchSpec(site=site.name, argv=argv, cwd=map_path_dir(host, site.physical_path), environment=environment,
                      platform=platform, log_base=log_base, windows_log_base=windows_log)


def map_path_dir(host: "SimHost", windows: str):
    """Local folder of ``windows`` (must exist).

    Raises:
        HttpError: 500.19-like when the physicalPath does not exist (IIS: 500.19 / 0x80070003).
    """

    try:
        local = host.path(windows)
    except SimPathError as exc:
        raise HttpError(500, "Internal Server Error", f"500.19: {exc}") from None
    if not local.is_dir():
        raise HttpError(500, "Internal Server Error", f"500.19: physicalPath {windows} does not exist (0x80070003)")
    return local
