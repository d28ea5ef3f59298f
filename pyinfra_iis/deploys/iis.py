"""``Configure IIS``: the whole IIS part of a host, from its validated inventory model."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from ..facts.host_state import host_data_dict
from ..models import load_host_config
from ..operations import acl, app_pools, certificates, extensions, features, server, sites


@deploy("Configure IIS")
def configure_iis() -> None:
    """Converge the IIS part of the current host from its ``iis_*`` host data.

    Order: Windows features → MSI extensions (install order: HttpPlatformHandler, URL Rewrite,
    ARR) → server-level configuration → certificates → application pools → sites and bindings →
    file-system ACLs. The host data is validated first (``load_host_config``); a bad inventory
    raises ``InventoryError`` naming host, field and reason before anything runs.
    """

    config = load_host_config(host.name, host_data_dict(host))
    features.windows_features(name="Windows features", features=config.features)
    for extension in config.extensions:
        extensions.msi_extension(name=f"IIS extension {extension.product}", extension=extension)
    server.server_config(name="Server-level IIS configuration", server=config.server)
    pool_principals = [pool.principal for pool in config.app_pools]
    for cert in config.certificates:
        readers = pool_principals if cert.grant_private_key_to_pools else []
        certificates.certificate(name=f"Certificate {cert.name}", certificate=cert, key_readers=readers)
    for pool in config.app_pools:
        app_pools.app_pool(name=f"App pool {pool.name}", pool=pool)
    for site in config.sites:
        sites.site(name=f"Site {site.name}", site=site, certificates=config.certificates)
    for rule in config.acls:
        acl.acl(name=f"ACL {rule.path} {rule.principal}", rule=rule)
