"""The ARR mode's part of the release deploy (``release_app.mode = "arr"``; docs/hosting-modes.md).

:func:`arr_release` replaces the HttpPlatformHandler switch of ``deploys/release.py``: the
service account's access (Read & Execute on the releases and the base Python), then
:func:`~pyinfra_iis.operations.arr.arr_release_switched`. :func:`check_server_proxy` refuses
host data whose ``iis_server.proxy`` would undo what the ARR mode needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pyinfra import host

from ..models import InventoryError, InventoryReport, Problem
from ..operations import acl, arr
from ..release import services

if TYPE_CHECKING:  # pragma: no cover
    from .release import ReleaseTarget


def check_server_proxy(data: Mapping[str, Any], settings: Any, host_name: str) -> None:
    """Refuse host data the ARR mode of ``settings`` cannot run with: no URL Rewrite or ARR in
    ``iis_extensions``, or ``iis_server.proxy`` settings that contradict it (the site deploy
    would write them back after every release: a tug of war over the timeout).

    Raises:
        InventoryError: URL Rewrite or ARR is missing from ``iis_extensions``;
            ``iis_server.proxy.timeout`` differs from ``release_app.arr.proxy_timeout``,
            or ``preserve_host_header`` is false, or ``reverse_rewrite_host_in_response_headers`` true.
    """

    if getattr(settings, "mode", None) != "arr" or settings.arr is None:
        return
    products = {str(e.get("product")) for e in data.get("iis_extensions") or [] if isinstance(e, Mapping)}
    missing = [p for p in ("UrlRewrite", "ARR") if p not in products]
    if missing:
        raise InventoryError(InventoryReport(hosts=[host_name], problems=[Problem(
            host_name, "release_app.mode", f"mode 'arr' needs {' and '.join(missing)}, which iis_extensions does not install",
            "add {'product': 'UrlRewrite', ...} and {'product': 'ARR', ...} (pinned by sha256) to iis_extensions")]))
    server = data.get("iis_server") or {}
    proxy = server.get("proxy") if isinstance(server, Mapping) else None
    if not proxy:
        return
    from ..models.server import ProxySettings

    model = ProxySettings.model_validate(proxy)
    problems = []
    if model.timeout.seconds != settings.arr.proxy_timeout.seconds:
        problems.append(Problem(host_name, "iis_server.proxy.timeout", f"{model.timeout} differs from release_app.arr.proxy_timeout "
                                f"{settings.arr.proxy_timeout}", "give both the same value (or drop iis_server.proxy: the ARR mode sets it)"))
    if not model.preserve_host_header:
        problems.append(Problem(host_name, "iis_server.proxy.preserve_host_header", "the ARR mode needs Host preserved", "set it to true"))
    if model.reverse_rewrite_host_in_response_headers:
        problems.append(Problem(host_name, "iis_server.proxy.reverse_rewrite_host_in_response_headers",
                                "the ARR mode keeps response headers as the app wrote them", "set it to false"))
    if problems:
        raise InventoryError(InventoryReport(hosts=[host_name], problems=problems))


def entry_point_of(artifact: Optional[Path]) -> Optional[str]:
    """The artifact manifest's entry point, or ``None`` (no artifact on the controller)."""

    from ..operations.release import read_manifest

    if artifact is None or not Path(artifact).is_file():
        return None
    return read_manifest(Path(artifact)).entry_point


def service_acl_rules(target: "ReleaseTarget") -> list[dict[str, Any]]:
    """The service account's Read & Execute on the base Python and on ``<root>\\releases``
    (a protected folder: the releases inherit from it)."""

    account = services.SERVICE_ACCOUNT
    return [{"path": target.release.python.target_dir, "principal": account, "rights": "ReadAndExecute"},
            {"path": target.settings.releases_dir, "principal": account, "rights": "ReadAndExecute"}]


def arr_release(target: "ReleaseTarget", version: Optional[str] = None, rollback: bool = False) -> None:
    """The ARR steps of a release (or, with ``rollback``, of a rollback) of the current host.

    A rollback (:func:`~pyinfra_iis.operations.arr.arr_rolled_back`) with a ``version``
    (``--data release_version=1.0.0``) switches to that installed release; without one to the
    release state's ``previous``, or, when the last switch was a rollback, stays where it went
    (``rolled_back_from``): a retry is a no-op either way. Without a ``version`` (and no
    rollback), changed ``app_settings``/``app_secrets`` make a config revision
    (:func:`~pyinfra_iis.operations.arr.arr_config_revised`).
    """

    settings = target.settings
    for rule in service_acl_rules(target):
        acl.acl(name=f"ACL {rule['path']} {rule['principal']}", rule=rule)
    entry_point = entry_point_of(target.release.artifact_path())
    if rollback:  # named or not: idempotent, like the HttpPlatformHandler mode's rollback
        arr.arr_rolled_back(name=f"Roll back {target.site.name}{f' to {version}' if version else ''} (ARR)", settings=settings,
                            site=target.site, app_pool=target.app_pool, entry_point=entry_point, version=version)
        return
    if version is None:  # today's app_settings/app_secrets for the served release: a config revision if they changed
        arr.arr_config_revised(name=f"Config of {settings.app_name} (ARR)", settings=settings, site=target.site,
                               app_pool=target.app_pool, entry_point=entry_point)
        return
    arr.arr_release_switched(name=f"Switch {target.site.name} to {version} (ARR)", settings=settings, version=version,
                             site=target.site, app_pool=target.app_pool, entry_point=entry_point)
