"""Pydantic models of what an inventory may ask for (docs/design.md "Layers" item 1).

Host data keys ``iis_features``, ``iis_extensions``, ``iis_app_pools``, ``iis_sites``,
``iis_certificates``, ``iis_acls`` and ``iis_server`` are validated into an
:class:`IisHostConfig` before any host is touched; :func:`validate_inventory` collects every
problem of every host into one :class:`InventoryReport`.
"""

from .acl import AclRule
from .application import Application, VirtualDirectory
from .app_pool import AppPool, RapidFailProtection
from .certificates import Certificate
from .extensions import MsiExtension, in_install_order
from .features import DEFAULT_FEATURES, WindowsFeatures
from .host import HOST_DATA_KEYS, IisHostConfig
from .report import InventoryError, InventoryReport, Problem, load_host_config, validate_inventory, validate_pyinfra_inventory
from .server import ProxySettings, ServerConfig
from .site import Binding, Site
from .types import (
    BindingIp,
    ControllerPath,
    Duration,
    EnvVarName,
    HostName,
    PoolName,
    Port,
    Principal,
    PythonVersion,
    ReleaseVersion,
    Sha256Hex,
    SiteName,
    SslFlags,
    Thumbprint,
    TimeOfDay,
    TimeSpanRange,
    WholeMinutes,
    WindowsPath,
    WindowsPathOrUnc,
    pool_of_principal,
    ssl_flag_names,
)

__all__ = [
    "AclRule", "AppPool", "Binding", "BindingIp", "Certificate", "ControllerPath", "DEFAULT_FEATURES", "Duration",
    "EnvVarName", "HOST_DATA_KEYS", "HostName", "IisHostConfig", "InventoryError", "InventoryReport", "MsiExtension",
    "PoolName", "Port", "Principal", "Problem", "ProxySettings", "PythonVersion", "RapidFailProtection", "ReleaseVersion",
    "ServerConfig", "Sha256Hex", "Site", "SiteName", "SslFlags", "Thumbprint", "TimeOfDay", "TimeSpanRange",
    "WholeMinutes", "WindowsFeatures", "WindowsPath", "WindowsPathOrUnc", "in_install_order", "load_host_config",
    "pool_of_principal", "ssl_flag_names", "validate_inventory", "validate_pyinfra_inventory",
]
__all__ += ["Application", "VirtualDirectory"]
