"""What ``Get-HostState`` must report for a host: paths and certificate stores of its model."""

from __future__ import annotations

from typing import Any


def paths_of_config(config: Any) -> list[str]:
    """Return every host path the operations check for an ``IisHostConfig``: ACL paths, site
    physical paths and log directories (their existence decides ``Initialize-Directory``)."""

    paths = [rule.path for rule in config.acls]
    for site in config.sites:
        paths.append(site.physical_path)
        if site.log_directory:
            paths.append(site.log_directory)
    return paths


def stores_of_config(config: Any) -> list[str]:
    """Return every certificate store an ``IisHostConfig`` imports into or binds from."""

    stores = [cert.store for cert in config.certificates]
    for site in config.sites:
        stores.extend(b.certificate_store for b in site.bindings if b.certificate_store)
    return stores
