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
    return [path for path in paths if "%" not in path]  # %SystemDrive%-style paths: IIS's own, not checked


def stores_of_config(config: Any) -> list[str]:
    """Return every certificate store an ``IisHostConfig`` imports into or binds from."""

    stores = [cert.store for cert in config.certificates]
    for site in config.sites:
        stores.extend(b.certificate_store for b in site.bindings if b.certificate_store)
    return stores


def release_arguments(host_data: dict) -> tuple[list[str], list[str], list[str]]:
    """Return ``(acl_paths, release_roots, python_versions)`` for the host's ``release_*`` data.

    ``acl_paths``: the release root, its logs folder, the base Python install, the
    ``releases`` and ``artifacts`` folders (their ACLs and existence decide the release ACL
    operations), for every app of the run (``release_app`` or ``release_apps``). Nothing when
    the host has none or its release data does not validate (the release deploy reports that).
    """

    if not any(key.startswith("release_") for key in host_data):
        return [], [], []
    try:
        from ..deploys.release import load_release_configs

        releases = load_release_configs(host_data)
    except Exception:  # noqa: BLE001 - reported by the release deploy
        return [], [], []
    if not releases:
        return [], [], []
    paths = [path for release in releases
             for path in (release.app.root, release.app.logs_dir, release.python.target_dir,
                          release.app.releases_dir, f"{release.app.root}\\artifacts")]  # operations/rights.release_folder_rules
    return paths, [release.app.root for release in releases], [release.app.python_version for release in releases]
