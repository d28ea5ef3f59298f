"""Windows features (roles and role services) an IIS host for Python needs."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from .types import show
from .base import IisModel

#: The default feature set: what a FastAPI app behind IIS uses (docs/field-facts.md, IIS:
#: "Features for Python behind IIS" [R]). Web-WebSockets because WebSockets through IIS need it
#: (docs/field-facts.md, URL Rewrite and ARR [R]); Web-Request-Monitor and Web-Http-Logging to see what
#: the server is doing; Web-Mgmt-Console and Web-Scripting-Tools so the WebAdministration /
#: IISAdministration PowerShell modules and IIS Manager exist on the host.
DEFAULT_FEATURES: tuple[str, ...] = (
    "Web-Server",
    "Web-WebServer",
    "Web-Common-Http",
    "Web-Static-Content",
    "Web-Http-Errors",
    "Web-Http-Logging",
    "Web-Request-Monitor",
    "Web-Filtering",
    "Web-WebSockets",
    "Web-Mgmt-Console",
    "Web-Scripting-Tools",
)

#: Windows Authentication (added when ``windows_auth`` is true).
WINDOWS_AUTH_FEATURE = "Web-Windows-Auth"
#: Application Initialization: needed by a site's ``preloadEnabled`` (docs/field-facts.md, IIS [V/I]).
APP_INIT_FEATURE = "Web-AppInit"


def _feature_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}", value):
        shown = show(value) if isinstance(value, str) else type(value).__name__
        raise PydanticCustomError("feature_name", "{name} is not a Windows feature name (letters, digits and hyphens, like Web-Asp-Net45)", {"name": shown})
    return value


#: A ``Get-WindowsFeature`` name such as ``Web-Server``.
FeatureName = Annotated[str, AfterValidator(_feature_name)]


class WindowsFeatures(IisModel):
    """Host data ``iis_features``: the Windows features to install.

    Attributes:
        names: the base set; default :data:`DEFAULT_FEATURES`. Replace it only to
            trim the set; use ``extra`` to add.
        windows_auth: add ``Web-Windows-Auth``. Default false.
        app_init: add ``Web-AppInit`` (Application Initialization), which ``preloadEnabled``
            needs. Default true because sites default to ``preload_enabled`` with pools
            ``AlwaysRunning`` (docs/field-facts.md, IIS: "startMode AlwaysRunning (+ site preloadEnabled,
            needs Web-AppInit)").
        extra: more feature names, e.g. ``["Web-CertProvider"]`` for the Central Certificate Store.
    """

    names: tuple[FeatureName, ...] = Field(default=DEFAULT_FEATURES, description="Base feature set.")
    windows_auth: bool = Field(default=False, description="Add Web-Windows-Auth.")
    app_init: bool = Field(default=True, description="Add Web-AppInit (needed by preloadEnabled).")
    extra: tuple[FeatureName, ...] = Field(default=(), description="Additional feature names.")

    def all_names(self) -> list[str]:
        """Return every feature to install, in order, without duplicates (case-insensitive)."""

        wanted = [*self.names]
        if self.windows_auth:
            wanted.append(WINDOWS_AUTH_FEATURE)
        if self.app_init:
            wanted.append(APP_INIT_FEATURE)
        wanted.extend(self.extra)
        seen: set[str] = set()
        result = []
        for name in wanted:
            if name.lower() not in seen:
                seen.add(name.lower())
                result.append(name)
        return result

    def has(self, name: str) -> bool:
        """Return whether feature ``name`` (case-insensitive) will be installed."""

        return name.lower() in {n.lower() for n in self.all_names()}
