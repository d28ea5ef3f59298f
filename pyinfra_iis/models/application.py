"""IIS applications and virtual directories under a site (``system.applicationHost/sites``:
``<site><application path="/api"><virtualDirectory path="/" .../></application></site>``).

The root application (``path="/"``) and its root virtual directory are the site's own
(:class:`~pyinfra_iis.models.site.Site`); these models are for the others. What a model leaves
at ``None`` is not written on an application or virtual directory that already exists (the
declared-only rule): IIS keeps what it has.
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .base import IisModel, iis_bool
from .types import PoolName, SiteName, WindowsPath, show

#: Characters refused in a virtual path: the ones Windows refuses in a folder name (an
#: application maps to a URL path, which IIS resolves against physical folders) and ``\``.
_FORBIDDEN = re.compile(r'[\\?*:<>|"%\x00-\x1f]')


def _virtual_path(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise PydanticCustomError("virtual_path", "{path} is not a virtual path: it starts with '/' (like '/api')", {"path": show(value)})
    if value == "/":
        raise PydanticCustomError("virtual_path", "'/' is the site's root application: set the site's physical_path and app_pool instead")
    parts = value[1:].split("/")
    if any(part in ("", ".", "..") for part in parts) or _FORBIDDEN.search(value):
        raise PydanticCustomError(
            "virtual_path", "{path} is not a virtual path: segments separated by single '/', no trailing '/', no '.'/'..', "
            "none of \\ ? * : < > | \" % or control characters", {"path": show(value)})
    return value


#: A URL path below a site or application: ``/api``, ``/api/v2``.
VirtualPath = Annotated[str, AfterValidator(_virtual_path)]


def _removal_only(model: IisModel, what: str, keys: set[str]) -> None:
    extra = sorted(model.model_fields_set - keys - {"present"})
    if extra:
        raise PydanticCustomError("removed", "{what} with present false is removed: give only {keys}, not {fields}",
                                  {"what": what, "keys": " and ".join(sorted(keys)), "fields": ", ".join(extra)})


class VirtualDirectory(IisModel):
    """One virtual directory of an application (other than its root, ``/``).

    Attributes:
        path: the virtual path below the application, e.g. ``/static``.
        physical_path: the folder it maps to. Required to create it; ``None`` leaves an existing
            one's folder as it is.
        present: ``False`` removes the virtual directory (never its folder). Default true.
    """

    path: VirtualPath
    physical_path: Optional[WindowsPath] = None
    present: bool = True

    @model_validator(mode="after")
    def _removal(self) -> "VirtualDirectory":
        if not self.present:
            _removal_only(self, "a virtual directory", {"path"})
        return self


def _unique_paths(directories: list[VirtualDirectory]) -> list[VirtualDirectory]:
    seen: set[str] = set()
    for directory in directories:
        if directory.path.lower() in seen:
            raise PydanticCustomError("virtual_directories", "virtual directory {path} is listed twice (IIS compares paths case-insensitively)", {"path": show(directory.path)})
        seen.add(directory.path.lower())
    return directories


class Application(IisModel):
    """One entry of host data ``iis_applications``: an IIS application under a site.

    Attributes:
        site: the site's name (in ``iis_sites``, or a site the host already has).
        path: the application's virtual path, e.g. ``/api`` (starts with ``/``; not ``/``).
        physical_path: the folder of its root virtual directory. Required to create the
            application; ``None`` leaves an existing one's folder as it is.
        app_pool: its application pool (``applicationPool``): a pool of ``iis_app_pools`` or
            one the host has. ``None``: an existing application keeps its pool; a new one gets
            IIS's ``applicationDefaults`` (``DefaultAppPool`` on a default install), as
            ``ServerManager.Sites[..].Applications.Add`` does.
        preload_enabled: ``preloadEnabled`` (needs Web-AppInit). ``None``: left as it is (IIS
            default false).
        virtual_directories: its other virtual directories (each ``path``, ``physical_path``,
            ``present``); directories the list does not name are left as they are.
        present: ``False`` removes the application with its virtual directories (an entry with
            only ``site``, ``path`` and ``present``); its files are never deleted. Default true.
    """

    site: SiteName
    path: VirtualPath
    physical_path: Optional[WindowsPath] = None
    app_pool: Optional[PoolName] = None
    preload_enabled: Optional[bool] = None
    virtual_directories: Annotated[list[VirtualDirectory], AfterValidator(_unique_paths)] = Field(default_factory=list)
    present: bool = True

    @model_validator(mode="after")
    def _removal(self) -> "Application":
        if not self.present:
            _removal_only(self, "an application", {"site", "path"})
        return self

    @property
    def label(self) -> str:
        """``"application api/v2"`` style name used in messages: ``site`` + ``path``."""

        return f"application {self.site}{self.path}"

    def config_attributes(self) -> dict[str, str]:
        """Return the declared ``{attribute: value text}`` of the ``<application>`` element
        (``applicationPool``, ``preloadEnabled``) as IIS writes them; undeclared ones are absent."""

        attributes: dict[str, str] = {}
        if self.app_pool is not None:
            attributes["applicationPool"] = self.app_pool
        if self.preload_enabled is not None:
            attributes["preloadEnabled"] = iis_bool(self.preload_enabled)
        return attributes
