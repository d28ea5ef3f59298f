"""What a doctor check is and what it reads.

A check is a pure function ``check(evidence) -> list[Check]``: no host access, no clock (the
evidence carries ``now``), so tests run every check on evidence read from a simulated host, or
built by hand. :class:`Evidence` holds the host's answers to ONE ``Get-HostState`` (converted as
the operations read it, plus the raw applicationHost.config parsed here) and ONE
``Get-DoctorState`` (``docs/remote-functions.md``, "Doctor"), and :class:`Target`, what the
inventory says should be there (site, pool, release root, health deadline...).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

from ..iis.appconfig import AppHostConfig

OK, WARN, FAIL = "ok", "warn", "fail"
STATUSES = (OK, WARN, FAIL)


def split_binding(information: str) -> tuple[str, str, str]:
    """``bindingInformation`` → ``(ip, port, host name)``: ``"*:443:api.example.com"`` →
    ``("*", "443", "api.example.com")``; an IPv6 address keeps its brackets (``[::1]``)."""

    rest, _, host = information.rpartition(":")
    ip, _, port = rest.rpartition(":")
    return ip, port, host


@dataclass
class Check:
    """One row of the doctor's table.

    Attributes:
        check: the check's id, ``group.name`` (``access.logs``, ``https.expiry[*:443:api.example.com]``).
        status: ``ok``, ``warn`` or ``fail``.
        evidence: what was read on the host that decided the status (one line, no secret).
        fix: the inventory key or the command that fixes it (empty when ok).
        symptom_of: ids (or id prefixes ending in ``.``) of checks whose failure explains this
            one's: when one of them failed, this check is reported as ``warn`` ("follows from ...")
            so that only root causes fail.
    """

    check: str
    status: str
    evidence: str
    fix: str = ""
    symptom_of: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "evidence": self.evidence, "fix": self.fix}


@dataclass
class Target:
    """What the inventory names on one host (every field optional but ``host``).

    Attributes:
        host: the inventory name of the host.
        sites: site names to examine (``iis_sites``); empty: every site of the host.
        site: the site serving the release (``release_site``).
        pool: the application pool of that site (``release_app_pool`` or the site's).
        root: the release root (``release_app.root``).
        health_path: ``release_app.health_check_path``.
        health_deadline: seconds (``release_app.health_deadline``).
        python_version: ``x.y`` (``release_app.python_version``).
        python_dir: the base Python's folder the inventory installs (``release_python.target_dir``).
        extensions: the IIS extensions the inventory installs (``iis_extensions`` products).
        certificates: ``"<site>|<bindingInformation>"`` (case-folded) → ``(certificate name,
            thumbprint)`` of each https binding's ``iis_certificates`` PFX, read on the controller.
        secrets: the release's ``release_app.app_secrets`` values (:class:`pyinfra_iis.protocol.Secret`,
            never in ``repr``): every check's evidence and fix is redacted of them
            (:func:`redact`), since the stdout log or a response body may print one.
        mode: the release's hosting mode (``release_app.mode``): ``httpplatform`` (default) or
            ``arr`` (docs/hosting-modes.md; the ARR checks are in :mod:`pyinfra_iis.doctor.arr`).
        settings: the release's :class:`~pyinfra_iis.models.release.ReleaseSettings` (ARR mode:
            its ``arr`` ports and timeouts; never in ``repr``, it holds the secrets).
    """

    host: str
    sites: list[str] = field(default_factory=list)
    site: str | None = None
    pool: str | None = None
    root: str | None = None
    health_path: str = "/healthz"
    health_deadline: float | None = None
    python_version: str | None = None
    python_dir: str | None = None
    extensions: list[str] = field(default_factory=list)
    certificates: dict[str, tuple[str, str]] = field(default_factory=dict)
    secrets: tuple[Any, ...] = field(default=(), repr=False)
    mode: str = "httpplatform"
    settings: Any = field(default=None, repr=False)

    @property
    def logs_dir(self) -> str | None:
        return f"{self.root}\\logs" if self.root else None

    @property
    def arr(self) -> bool:
        """Whether the inventory runs this release in ARR mode (``release_app.mode: arr``)."""

        return self.mode == "arr" and self.settings is not None and getattr(self.settings, "arr", None) is not None


@dataclass
class Evidence:
    """Everything the checks read (see the module docstring).

    Attributes:
        target: what the inventory names.
        state: the converted ``Get-HostState`` fact.
        config: applicationHost.config parsed (``None`` without IIS).
        doctor: the ``Get-DoctorState`` answer (its ``acls`` converted like the fact's).
        now: the host's clock (``Get-DoctorState``'s ``now``), UTC.
    """

    target: Target
    state: dict[str, Any]
    config: AppHostConfig | None
    doctor: dict[str, Any]
    now: datetime

    # --- helpers the checks share -----------------------------------------------------

    def part(self, name: str) -> tuple[Any, str | None]:
        """``(value, None)`` of the ``Get-DoctorState`` part ``name``, or ``(None, error)`` when
        the host could not read that part (the module's ``Invoke-DoctorProbe`` answered
        ``{"error": "..."}``): the check then says so instead of deciding on nothing."""

        return probe_value(self.doctor.get(name))

    def site_element(self, name: str | None) -> ET.Element | None:
        if self.config is None or not name:
            return None
        sites = self.config.section_element("system.applicationHost/sites")
        for site in list(sites) if sites is not None else []:
            if site.tag == "site" and site.get("name", "").casefold() == name.casefold():
                return site
        return None

    def pool_element(self, name: str | None) -> ET.Element | None:
        if self.config is None or not name:
            return None
        pools = self.config.section_element("system.applicationHost/applicationPools")
        for pool in list(pools) if pools is not None else []:
            if pool.tag == "add" and pool.get("name", "").casefold() == name.casefold():
                return pool
        return None

    def physical_path(self, site: str | None = None) -> str | None:
        """The root application's root virtual directory's physicalPath of ``site``."""

        element = self.site_element(site or self.target.site)
        if element is None:
            return None
        for app in element.findall("application"):
            if app.get("path", "/") == "/":
                for vdir in app.findall("virtualDirectory"):
                    if vdir.get("path", "/") == "/":
                        return vdir.get("physicalPath")
        return None

    def site_pool(self, site: str | None) -> str | None:
        element = self.site_element(site)
        if element is None:
            return None
        for app in element.findall("application"):
            if app.get("path", "/") == "/":
                if app.get("applicationPool"):
                    return app.get("applicationPool")
        defaults = self.config.section_element("system.applicationHost/sites") if self.config is not None else None
        default = defaults.find("applicationDefaults") if defaults is not None else None
        return default.get("applicationPool", "DefaultAppPool") if default is not None else "DefaultAppPool"

    def bindings(self, site: str) -> list[dict[str, str]]:
        element = self.site_element(site)
        found = element.find("bindings") if element is not None else None
        return [dict(b.attrib) for b in (list(found) if found is not None else []) if b.tag == "binding"]

    def site_names(self) -> list[str]:
        if self.config is None:
            return []
        sites = self.config.section_element("system.applicationHost/sites")
        present = [s.get("name", "") for s in (list(sites) if sites is not None else []) if s.tag == "site"]
        wanted = {name.casefold() for name in self.target.sites}
        return [name for name in present if not wanted or name.casefold() in wanted]

    def acl(self, path: str | None) -> dict[str, Any] | None:
        """The converted ACL report of ``path`` (from ``Get-DoctorState``), or ``None``."""

        if not path:
            return None
        acls = self.doctor.get("acls") or {}
        for key, value in acls.items():
            if key.casefold() == path.casefold():
                return value
        return None


CheckFunction = Callable[[Evidence], Iterable[Check]]

#: What a secret value is replaced with in the doctor's output.
REDACTED = "********"


def probe_value(value: Any) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, error)`` for a part the host failed to read (``{"error"}``)."""

    if isinstance(value, dict) and set(value) == {"error"}:
        return None, str(value["error"] or "unknown error")
    return value, None


def redact(text: str, secrets: Iterable[Any]) -> str:
    """``text`` with every secret value (``Secret``, ``SecretStr`` or ``str``; the longest first,
    so a secret containing another goes whole) replaced by :data:`REDACTED`."""

    values = [s.get_secret_value() if hasattr(s, "get_secret_value") else str(s) for s in secrets]
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
