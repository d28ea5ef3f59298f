"""Windows features (roles and role services): ``Install-WindowsFeatureSet``."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import operation

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.features import WindowsFeatures
from ..protocol import remote_call
from ._common import validated


def missing_features(wanted: list[str], installed: list[str]) -> list[str]:
    """Return the names of ``wanted`` not in ``installed`` (case-insensitive), in order."""

    have = {name.lower() for name in installed}
    return [name for name in wanted if name.lower() not in have]


@operation()
def windows_features(features: Any = None):
    """
    Install Windows features (``Install-WindowsFeature``) that are not installed yet.

    + features: a ``WindowsFeatures`` model or its dict (host data ``iis_features``); default
      ``WindowsFeatures()``: the set of docs/field-facts.md, IIS ("Features for Python behind IIS") plus
      Web-AppInit. Features are never removed.

    Only the missing names are sent, in one call. A needed reboot is reported by the host
    (``restart_needed``), never done silently.

    **Example:**

    .. code:: python

        windows_features(name="IIS features", features={"extra": ["Web-CertProvider"]})
    """

    model = validated(WindowsFeatures, features if features is not None else {}, "features")
    installed = host_state(host).get("features") or []
    missing = missing_features(model.all_names(), installed)
    if not missing:
        host.noop("all {0} Windows features are installed".format(len(model.all_names())))
        return
    log_changes(host, "Will install Windows features", [Change(f"feature {name}", "absent", "installed") for name in missing])
    yield remote_call("Install-WindowsFeatureSet", {"names": missing})
