"""Everything one host's inventory data asks for, with the checks that span several parts."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from .acl import AclRule
from .application import Application
from .app_pool import AppPool
from .types import show
from .base import IisModel
from .certificates import Certificate
from .extensions import MsiExtensionList
from .features import APP_INIT_FEATURE, WindowsFeatures
from .server import ServerConfig
from .site import Site
from .types import pool_of_principal

#: Host data keys read by :class:`IisHostConfig` and what each holds. Any other ``iis_*`` key is
#: an error (with a did-you-mean); keys without the ``iis_`` prefix belong to others
#: (``winrm_*`` to the connector, ``release_*`` to releases, ...).
HOST_DATA_KEYS: dict[str, str] = {
    "iis_features": "Windows features: {names?, windows_auth?, app_init?, extra?} (WindowsFeatures)",
    "iis_extensions": "MSI extensions: list of {product, source, sha256} (MsiExtension)",
    "iis_app_pools": "application pools: list of AppPool ({name, present: false} removes one)",
    "iis_sites": "sites with bindings: list of Site ({name, present: false} removes one; its files stay)",
    "iis_certificates": "PFX certificates to import: list of Certificate",
    "iis_acls": "file-system access rules: list of AclRule",
    "iis_server": "server-level settings: {proxy?, allowed_server_variables?, max_allowed_content_length?} (ServerConfig)",
    "iis_applications": "IIS applications and virtual directories under sites: list of Application",
}

#: Validation context key under which :class:`IisHostConfig` collects cross-check issues
#: instead of raising (used by :mod:`pyinfra_iis.models.report`).
COLLECT_ISSUES = "collect_cross_check_issues"


@dataclass(frozen=True)
class HostIssue:
    """A problem found by a cross-check: ``loc`` as pydantic writes it (data key first)."""

    loc: tuple[Any, ...]
    reason: str
    fix: Optional[str] = None


def did_you_mean(word: str, choices: list[str]) -> Optional[str]:
    """Return the closest of ``choices`` to ``word`` (case-insensitive), or ``None``."""

    lowered: dict[str, str] = {}
    for choice in choices:
        lowered.setdefault(choice.lower(), choice)
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


class IisHostConfig(IisModel):
    """What one host asks for, read from host data keys ``iis_*`` (:data:`HOST_DATA_KEYS`).

    Besides each part's own validation, :meth:`cross_check` checks what spans parts: pool and
    site names unique case-insensitively (as IIS compares them), site ids unique, every
    ``site.app_pool`` defined, binding certificates defined (or thumbprints), no binding
    (protocol, ip, port, host) used twice across sites and no ip:port used by both http and
    https, ``IIS AppPool\\X`` ACL principals naming defined pools, ``preload_enabled`` only with
    Web-AppInit, ARR settings only with the ARR extension, allowed server variables only with
    URL Rewrite.
    """

    features: WindowsFeatures = Field(default_factory=WindowsFeatures, alias="iis_features")
    extensions: MsiExtensionList = Field(default_factory=list, alias="iis_extensions")
    app_pools: list[AppPool] = Field(default_factory=list, alias="iis_app_pools")
    sites: list[Site] = Field(default_factory=list, alias="iis_sites")
    certificates: list[Certificate] = Field(default_factory=list, alias="iis_certificates")
    acls: list[AclRule] = Field(default_factory=list, alias="iis_acls")
    server: ServerConfig = Field(default_factory=ServerConfig, alias="iis_server")
    applications: list[Application] = Field(default_factory=list, alias="iis_applications")
    _removed_app_pools: list[AppPool] = PrivateAttr(default_factory=list)
    _removed_sites: list[Site] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> "IisHostConfig":
        issues = self.cross_check()
        collector = (info.context or {}).get(COLLECT_ISSUES) if info is not None else None
        if collector is not None:
            collector.extend(issues)
        elif issues:
            text = "; ".join(f"{_loc_text(i.loc)}: {i.reason}" for i in issues)
            raise PydanticCustomError("cross_check", "{issues}", {"issues": text})
        return self

    @model_validator(mode="after")
    def _set_removals_apart(self) -> "IisHostConfig":
        """After the checks (which report entries by their index in the host data): entries
        with ``present: false`` leave :attr:`app_pools` and :attr:`sites` for
        :attr:`removed_app_pools` and :attr:`removed_sites`, so whoever reads ``sites`` or
        ``app_pools`` sees only what must exist."""

        self._removed_app_pools = [p for p in self.app_pools if not p.present]
        self._removed_sites = [s for s in self.sites if not s.present]
        if self._removed_app_pools:
            object.__setattr__(self, "app_pools", [p for p in self.app_pools if p.present])
        if self._removed_sites:
            object.__setattr__(self, "sites", [s for s in self.sites if s.present])
        return self

    @property
    def removed_app_pools(self) -> list[AppPool]:
        """``iis_app_pools`` entries with ``present: false`` (pools to remove)."""

        return list(self._removed_app_pools)

    @property
    def removed_sites(self) -> list[Site]:
        """``iis_sites`` entries with ``present: false`` (sites to remove; their files stay)."""

        return list(self._removed_sites)

    # --- lookups -----------------------------------------------------------------------

    def pool(self, name: str) -> Optional[AppPool]:
        """Return the pool named ``name`` (case-insensitive), or ``None``."""

        return next((p for p in self.app_pools if p.name.lower() == name.lower() and p.present), None)

    def certificate(self, name: str) -> Optional[Certificate]:
        """Return the certificate entry named ``name`` (case-insensitive), or ``None``."""

        return next((c for c in self.certificates if c.name.lower() == name.lower()), None)

    def has_extension(self, product: str) -> bool:
        """Return whether ``iis_extensions`` lists ``product``."""

        return any(e.product == product for e in self.extensions)

    # --- cross checks ------------------------------------------------------------------

    def cross_check(self) -> list[HostIssue]:
        """Return every cross-part problem (empty when consistent)."""

        issues: list[HostIssue] = []
        issues += _duplicates([p.name for p in self.app_pools], "iis_app_pools", "name", "application pool")
        issues += _duplicates([s.name for s in self.sites], "iis_sites", "name", "site")
        issues += _duplicates([c.name for c in self.certificates], "iis_certificates", "name", "certificate")
        issues += _duplicates([str(s.id) if s.id is not None else None for s in self.sites], "iis_sites", "id", "site id")
        issues += self._check_sites()
        issues += self._check_bindings_across_sites()
        issues += self._check_acls()
        issues += self._check_server()
        issues += self._check_removals()
        issues += self._check_applications()
        return issues

    def _check_removals(self) -> list[HostIssue]:
        issues = []
        for i, pool in enumerate(self.app_pools):
            extra = sorted(pool.model_fields_set - {"name", "present"})
            if not pool.present and extra:
                issues.append(HostIssue(("iis_app_pools", i, "present"), f"pool {show(pool.name)} has present false (it is removed) but also sets {', '.join(extra)}", "give only name and present: false"))
        removed = {p.name.lower() for p in self.app_pools if not p.present}
        for i, site in enumerate(self.sites):
            if site.present and site.app_pool and site.app_pool.lower() in removed:
                issues.append(HostIssue(("iis_sites", i, "app_pool"), f"application pool {show(site.app_pool)} is removed (present false in iis_app_pools) but site {show(site.name)} uses it", "move the site to another pool, or keep the pool"))
        return issues

    def _check_applications(self) -> list[HostIssue]:
        issues = []
        removed_pools = {p.name.lower() for p in self.app_pools if not p.present}
        removed_sites = {s.name.lower() for s in self.sites if not s.present}
        seen: dict[tuple[str, str], int] = {}
        for i, app in enumerate(self.applications):
            key = (app.site.lower(), app.path.lower())
            if key in seen:
                issues.append(HostIssue(("iis_applications", i, "path"), f"{app.label} is listed twice (also iis_applications[{seen[key]}]; IIS compares paths case-insensitively)", "list each application once"))
            seen.setdefault(key, i)
            if app.site.lower() in removed_sites:
                issues.append(HostIssue(("iis_applications", i, "site"), f"site {show(app.site)} is removed (present false in iis_sites): its applications go with it", "drop this entry, or keep the site"))
            if app.app_pool and app.app_pool.lower() in removed_pools:
                issues.append(HostIssue(("iis_applications", i, "app_pool"), f"application pool {show(app.app_pool)} is removed (present false in iis_app_pools) but {app.label} uses it", "move the application to another pool, or keep the pool"))
            if app.preload_enabled and not self.features.has(APP_INIT_FEATURE):
                issues.append(HostIssue(("iis_applications", i, "preload_enabled"), "preloadEnabled needs the Web-AppInit feature, which iis_features does not install", "set iis_features.app_init true, or preload_enabled false"))
        return issues

    def _check_sites(self) -> list[HostIssue]:
        issues = []
        pool_names = [p.name for p in self.app_pools]
        for i, site in enumerate(self.sites):
            if not site.present:
                continue
            if site.app_pool and site.app_pool.lower() in {p.name.lower() for p in self.app_pools if not p.present}:
                pass  # reported by _check_removals
            elif self.pool(site.app_pool) is None:
                guess = did_you_mean(site.app_pool, pool_names)
                fix = f"did you mean {show(guess)}?" if guess else "add the pool to iis_app_pools"
                issues.append(HostIssue(("iis_sites", i, "app_pool"), f"application pool {show(site.app_pool)} is not defined in iis_app_pools", fix))
            if site.preload_enabled and not self.features.has(APP_INIT_FEATURE):
                issues.append(HostIssue(("iis_sites", i, "preload_enabled"), "preloadEnabled needs the Web-AppInit feature, which iis_features does not install", "set iis_features.app_init true, or preload_enabled false"))
            for j, binding in enumerate(site.bindings):
                issues += self._check_binding_certificate(("iis_sites", i, "bindings", j), binding)
        return issues

    def _check_binding_certificate(self, loc: tuple[Any, ...], binding: Any) -> list[HostIssue]:
        if binding.certificate is None or binding.certificate_thumbprint:
            return []
        entry = self.certificate(binding.certificate)
        if entry is None:
            guess = did_you_mean(binding.certificate, [c.name for c in self.certificates])
            fix = f"did you mean {show(guess)}?" if guess else "add it to iis_certificates or give a thumbprint (40 hex digits)"
            return [HostIssue(loc + ("certificate",), f"certificate {show(binding.certificate)} is neither an iis_certificates name nor a thumbprint", fix)]
        if not entry.present:
            return [HostIssue(loc + ("certificate",), f"certificate {show(entry.name)} is to be removed but this binding uses it", "bind another certificate, or keep the certificate")]
        if binding.certificate_store and binding.certificate_store != entry.store:
            return [HostIssue(loc + ("certificate_store",), f"certificate {show(entry.name)} is imported into {entry.store}, not {binding.certificate_store}", "drop certificate_store or make it match")]
        return []

    def _check_bindings_across_sites(self) -> list[HostIssue]:
        issues = []
        seen: dict[tuple, str] = {}
        protocols: dict[tuple[str, int], tuple[str, str]] = {}
        for i, site in enumerate(self.sites):
            for j, binding in enumerate(site.bindings):
                if not (site.present and binding.present):
                    continue
                loc = ("iis_sites", i, "bindings", j)
                if binding.key in seen and seen[binding.key] != site.name:
                    issues.append(HostIssue(loc, f"{binding.protocol} binding {binding.binding_information} is also used by site {show(seen[binding.key])}", "each binding belongs to one site"))
                seen.setdefault(binding.key, site.name)
                endpoint = (binding.ip, int(binding.port or 0))
                other = protocols.setdefault(endpoint, (binding.protocol, site.name))
                if other[0] != binding.protocol:
                    issues.append(HostIssue(loc, f"port {binding.port} on {binding.ip} is used for both http and https (site {show(other[1])}); HTTP.sys cannot serve both on one endpoint", "use another port"))
        return issues

    def _check_acls(self) -> list[HostIssue]:
        issues = []
        pool_names = [p.name for p in self.app_pools]
        for i, rule in enumerate(self.acls):
            if rule.ensure == "absent":
                continue  # removing a removed pool's entry is fine: the rule carries its SID
            pool = pool_of_principal(rule.principal)
            if pool is not None and self.pool(pool) is None:
                guess = did_you_mean(pool, pool_names)
                fix = f"did you mean 'IIS AppPool\\{guess}'?" if guess else "define the pool in iis_app_pools (the virtual account exists only for a defined pool)"
                issues.append(HostIssue(("iis_acls", i, "principal"), f"{show(rule.principal)} names pool {show(pool)}, which is not defined in iis_app_pools", fix))
        return issues

    def _check_server(self) -> list[HostIssue]:
        issues = []
        if self.server.proxy is not None and not self.has_extension("ARR"):
            issues.append(HostIssue(("iis_server", "proxy"), "proxy settings need Application Request Routing, which iis_extensions does not install", "add {'product': 'ARR', ...} (and UrlRewrite) to iis_extensions"))
        if self.server.allowed_server_variables and not self.has_extension("UrlRewrite"):
            issues.append(HostIssue(("iis_server", "allowed_server_variables"), "allowed server variables need URL Rewrite, which iis_extensions does not install", "add {'product': 'UrlRewrite', ...} to iis_extensions"))
        return issues

    def controller_files(self) -> list[tuple[tuple[Any, ...], Any]]:
        """Return ``(loc, pathlib.Path)`` of every controller file this host needs uploaded."""

        from pathlib import Path

        files: list[tuple[tuple[Any, ...], Any]] = []
        for i, ext in enumerate(self.extensions):
            if isinstance(ext.source, Path):
                files.append((("iis_extensions", i, "source"), ext.source))
        for i, cert in enumerate(self.certificates):
            if cert.pfx is not None:  # a certificate to remove may be named by thumbprint only
                files.append((("iis_certificates", i, "pfx"), cert.pfx))
        return files


def _duplicates(names: list[Optional[str]], key: str, field: str, what: str) -> list[HostIssue]:
    first: dict[str, int] = {}
    issues = []
    for i, name in enumerate(names):
        if name is None:
            continue
        folded = name.lower()
        if folded in first:
            issues.append(HostIssue((key, i, field), f"{what} {show(name)} is defined twice (also {key}[{first[folded]}]; IIS compares names case-insensitively)", "give each a distinct name"))
        else:
            first[folded] = i
    return issues


def _loc_text(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
