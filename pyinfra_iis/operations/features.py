"""Windows features (roles and role services): ``Install-WindowsFeatureSet``."""

from __future__ import annotations

from typing import Sequence

from pyinfra import host
from pyinfra.api import operation

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.features import WindowsFeatures
from ..protocol import remote_call
from ._common import from_arguments, refuse_absent


def missing_features(wanted: list[str], installed: list[str]) -> list[str]:
    """Return the names of ``wanted`` not in ``installed`` (case-insensitive), in order."""

    have = {name.lower() for name in installed}
    return [name for name in wanted if name.lower() not in have]


@operation()
def windows_features(
    features: WindowsFeatures | dict | None = None,
    *,
    present: bool = True,
    names: Sequence[str] | None = None,
    windows_auth: bool | None = None,
    app_init: bool | None = None,
    extra: Sequence[str] | None = None,
):
    """
    Install Windows features (``Install-WindowsFeature``) that are not installed yet.

    + present: must be ``True`` (features are never removed; ``False`` is refused).
    + names: the base set; default the set of docs/field-facts.md, IIS ("Features for Python
      behind IIS"). Replace it only to trim the set; use ``extra`` to add.
    + windows_auth: add ``Web-Windows-Auth``; default false.
    + app_init: add ``Web-AppInit`` (sites' ``preloadEnabled`` needs it); default true.
    + extra: more feature names, e.g. ``["Web-CertProvider"]``.
    + features: instead of the keywords, a ``WindowsFeatures`` model or its dict (host data
      ``iis_features``). Giving both is an error. With neither: ``WindowsFeatures()``.

    Only the missing names are sent, in one call. A needed reboot is reported by the host
    (``restart_needed``), never done silently.

    **Example:**

    .. code:: python

        windows_features(name="IIS features", extra=["Web-CertProvider"])
    """

    refuse_absent(present, "windows_features")
    model = from_arguments(WindowsFeatures, features, "features", {
        "names": names, "windows_auth": windows_auth, "app_init": app_init, "extra": extra,
    })
    installed = host_state(host).get("features") or []
    missing = missing_features(model.all_names(), installed)
    if not missing:
        host.noop("all {0} Windows features are installed".format(len(model.all_names())))
        return
    log_changes(host, "Will install Windows features", [Change(f"feature {name}", "absent", "installed") for name in missing])
    yield remote_call("Install-WindowsFeatureSet", {"names": missing})
