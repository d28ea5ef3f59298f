"""``Configure IIS``: the whole IIS part of a host, from its validated inventory model."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from pyinfra import host
from pyinfra.api import deploy

from ..facts.host_state import host_data_dict, host_state
from ..iis.adopt import refuse_host_binding_conflicts
from ..models import load_host_config
from ..operations import acl, app_pools, applications, certificates, extensions, features, rights, server, sites
from ..operations._common import iis_of


@deploy("Configure IIS")
def configure_iis(pool_environment: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  site_physical_paths: Optional[Mapping[str, str]] = None,
                  release_variables: Optional[Mapping[str, Iterable[str]]] = None,
                  pool_attributes: Optional[Mapping[str, Mapping[str, Any]]] = None) -> None:
    """Converge the IIS part of the current host from its ``iis_*`` host data.

    Args:
        pool_environment: ``{pool name: {VARIABLE: value}}`` added to the pools' environment
            variables (the release's app secrets, so the pool operation keeps them; default none).
        site_physical_paths: ``{site name: physicalPath}`` replacing the sites' physical paths
            (the release currently served, so a converge never moves traffic; default none).
        release_variables: ``{pool name: [VARIABLE, ...]}`` the pool operations leave alone (the
            release's app secrets, set only by its health-checked switch; default none).
        pool_attributes: ``{pool name: {attribute path: value}}`` added to the pools'
            ``extra_attributes`` where the inventory does not set them (the overlapped recycle and
            drain time a release switch needs: ``operations.release.release_pool_attributes``).

    Order: Windows features → MSI extensions (install order: HttpPlatformHandler, URL Rewrite,
    ARR) → server-level configuration → certificates → application pools → private-key access
    for the pools (after the pools exist, by SID) → sites and bindings → IIS applications →
    certificates to remove (after the sites moved their bindings off them; refused before
    anything runs while an HTTP.sys binding the inventory does not move uses one) → file-system
    ACLs → removals (``present: false``): applications, then sites, then pools → the record of
    granted rights (revoking those the inventory no longer names,
    :mod:`pyinfra_iis.operations.rights`). The host data is validated first
    (``load_host_config``); a bad inventory raises ``InventoryError`` naming host, field and
    reason before anything runs. A pool to remove that a site or application still uses after
    this run's changes raises ``PoolInUseError`` (host, pool, users) before anything runs too,
    and so does a site whose binding a site outside the inventory holds on the host
    (``OperationError`` naming both; :func:`pyinfra_iis.iis.adopt.refuse_host_binding_conflicts`).
    """

    config = load_host_config(host.name, host_data_dict(host))
    if any(not cert.present for cert in config.certificates):
        certificates.refuse_bound_removals(host, config)
    if config.removed_app_pools:
        app_pools.check_pool_removals(host.name, (host_state(host) or {}).get("iis"), config.removed_app_pools, sites=config.sites,
                                      removed_sites=config.removed_sites, applications=config.applications)
    if config.sites:  # a binding another site on the host holds, refused before anything runs
        refuse_host_binding_conflicts(host.name, iis_of(host_state(host)), config.sites)
    features.windows_features(name="Windows features", features=config.features)
    for extension in config.extensions:
        extensions.msi_extension(name=f"IIS extension {extension.product}", extension=extension)
    server.server_config(name="Server-level IIS configuration", server=config.server)
    for cert in config.certificates:
        if cert.present:
            certificates.certificate(name=f"Certificate {cert.name}", certificate=cert)
    extra_env = {name.lower(): dict(values) for name, values in (pool_environment or {}).items()}
    paths = {name.lower(): path for name, path in (site_physical_paths or {}).items()}
    kept = {name.lower(): list(names) for name, names in (release_variables or {}).items()}
    for pool in config.app_pools:
        if pool.name.lower() in extra_env:
            pool = pool.model_copy(update={"environment_variables": {**pool.environment_variables, **extra_env[pool.name.lower()]}})
        wanted = {name.lower(): dict(values) for name, values in (pool_attributes or {}).items()}.get(pool.name.lower())
        if wanted:
            pool = pool.model_copy(update={"extra_attributes": {**wanted, **pool.extra_attributes}})
        app_pools.app_pool(name=f"App pool {pool.name}", pool=pool, keep_variables=kept.get(pool.name.lower(), []),
                           serves_release=pool.name.lower() in kept)
    pool_principals = [pool.principal for pool in config.app_pools]
    for cert in config.certificates:
        if cert.present and cert.grant_private_key_to_pools and pool_principals:
            certificates.private_key_access(name=f"Certificate {cert.name}: private key for the pools", certificate=cert,
                                            principals=pool_principals)
    for site in config.sites:
        if site.name.lower() in paths:
            site = site.model_copy(update={"physical_path": paths[site.name.lower()]})
        sites.site(name=f"Site {site.name}", site=site, certificates=config.certificates,
                   serves_release=site.app_pool.lower() in kept)
    site_names, pool_names = [site.name for site in config.sites], [pool.name for pool in config.app_pools]
    for app in (a for a in config.applications if a.present):
        applications.application(name=f"Application {app.site}{app.path}", application=app, sites=site_names, pools=pool_names)
    for cert in config.certificates:
        if not cert.present:
            certificates.certificate(name=f"Remove certificate {cert.name}", certificate=cert)
    for rule in config.acls:
        acl.acl(name=f"ACL {rule.path} {rule.principal}", rule=rule)
    for app in (a for a in config.applications if not a.present):
        applications.application(name=f"Remove application {app.site}{app.path}", application=app)
    for removed in config.removed_sites:
        sites.site(name=f"Remove site {removed.name}", site=removed)
    for pool in config.removed_app_pools:
        app_pools.app_pool(name=f"Remove app pool {pool.name}", pool=pool, check_users=False)
    rights.granted_rights(name="Granted rights: revoke what the inventory no longer names")
