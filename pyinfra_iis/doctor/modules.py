"""Predict a 500.19 before a request is made: extensions installed, web.config sections known
and not locked at the site's level.

Evidence: applicationHost.config (``<configSections>``, ``<globalModules>``, ``<location>``
elements) and ``Get-DoctorState``'s ``schema`` (the section names each file of
``%windir%\\System32\\inetsrv\\config\\schema`` defines) and ``web_config`` (the text of the
web.config at the site's physicalPath).

IIS reads a web.config section only when ``<configSections>`` declares it (else 500.19 "missing
section declaration") and a schema file defines it, and only when the section is not locked for
that path: ``overrideModeDefault`` of its declaration, overridden by ``overrideMode`` (or the
older ``allowOverride``) of each ``<location>`` that holds it, from the server level
(``path=""``) down to the site
(https://learn.microsoft.com/iis/get-started/planning-for-security/how-to-use-locking-in-iis-configuration).
A section declared ``allowDefinition="AppHostOnly"`` cannot appear in web.config at all.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..iis.appconfig import real_children
from .model import FAIL, OK, WARN, Check, Evidence, probe_value

#: Extension → (global module, a section it adds, the inventory key that installs it).
EXTENSIONS = {
    "HttpPlatformHandler": ("httpPlatformHandler", "system.webServer/httpPlatform"),
    "UrlRewrite": ("RewriteModule", "system.webServer/rewrite/rules"),
    "ARR": ("ApplicationRequestRouting", "system.webServer/proxy"),
}
#: Bytes of web.config the host returns (``Get-DoctorState``): a larger file is not parsed (warn).
WEB_CONFIG_READ = 65536
#: Top-level web.config elements that are not IIS sections (.NET's machine.config declares them).
DOTNET_GROUPS = {"system.web", "appsettings", "connectionstrings", "system.codedom", "runtime", "startup", "system.net",
                 "system.servicemodel", "system.diagnostics", "configsections", "system.data", "system.transactions"}


def global_modules(evidence: Evidence) -> dict[str, str]:
    config = evidence.config
    element = config.section_element("system.webServer/globalModules") if config is not None else None
    return {m.get("name", "").casefold(): m.get("image", "") for m in (real_children(element) if element is not None else [])
            if m.tag == "add"}


def schema_sections(evidence: Evidence) -> dict[str, str]:
    """Section name (case-folded) → the schema file defining it."""

    result = {}
    schema, _ = evidence.part("schema")
    for file, sections in (schema or {}).items():
        sections, _ = probe_value(sections)  # a file the host could not read: unreadable_schema
        for section in sections or []:
            result.setdefault(str(section).casefold(), file)
    return result


def unreadable_schema(evidence: Evidence) -> list[str]:
    """``"<file>: <error>"`` for each schema file (or the folder) the host could not read."""

    schema, error = evidence.part("schema")
    if error is not None:
        return [f"inetsrv\\config\\schema: {error}"]
    return [f"{file}: {probe_value(sections)[1]}" for file, sections in (schema or {}).items() if probe_value(sections)[1] is not None]


def used_extensions(evidence: Evidence, web_config: ET.Element | None) -> list[str]:
    """Extensions the inventory installs, plus those the served web.config needs."""

    used = list(evidence.target.extensions)
    if web_config is not None:
        if web_config.find("system.webServer/httpPlatform") is not None and "HttpPlatformHandler" not in used:
            used.append("HttpPlatformHandler")
        if web_config.find("system.webServer/rewrite") is not None and "UrlRewrite" not in used:
            used.append("UrlRewrite")
    return [name for name in EXTENSIONS if name in used]


def parse_web_config(evidence: Evidence) -> tuple[ET.Element | None, str | None]:
    """``(root element, error)`` of the served web.config (``None, None`` when there is none)."""

    report, error = evidence.part("web_config")
    if error is not None:
        return None, f"could not read web.config: {error}"
    report = report or {}
    text = report.get("text")
    if not report.get("exists") or text is None:
        return None, None
    if isinstance(report.get("size"), int) and report["size"] > WEB_CONFIG_READ:
        return None, f"web.config is {report['size']} bytes, more than the {WEB_CONFIG_READ} read: not checked"
    try:
        return ET.fromstring(text.lstrip("\ufeff")), None
    except ET.ParseError as exc:
        return None, f"web.config is not well-formed XML ({exc}): IIS answers 500.19"


def check_extensions(evidence: Evidence) -> list[Check]:
    """``module.<Extension>``: global module registered, section declared, schema file present
    (``iis.installed`` fails instead when the host has no IIS)."""

    if evidence.config is None:
        return [Check("iis.installed", FAIL, "IIS (Web-Server) is not installed, or applicationHost.config is unreadable: "
                      "nothing else can be checked", "iis_features; run deploys/site.py")]
    root, _ = parse_web_config(evidence)
    modules = global_modules(evidence)
    schema = schema_sections(evidence)
    checks = []
    for name in used_extensions(evidence, root):
        module, section = EXTENSIONS[name]
        problems = []
        if module.casefold() not in modules:
            problems.append(f"global module {module} not registered in applicationHost.config")
        if not evidence.config.is_registered(section):
            problems.append(f"section {section} not declared in <configSections>")
        if section.casefold() not in schema:
            problems.append(f"no schema file in inetsrv\\config\\schema defines {section}")
        unread = unreadable_schema(evidence)
        if unread and problems == [f"no schema file in inetsrv\\config\\schema defines {section}"]:
            checks.append(Check(f"module.{name}", WARN, f"{problems[0]}, but the host could not read {'; '.join(unread)}",
                                "check the schema files: Get-ChildItem $env:windir\\System32\\inetsrv\\config\\schema"))
        elif problems:
            checks.append(Check(f"module.{name}", FAIL, "; ".join(problems) + " (requests answer 500.19 or 500.21)",
                                f"iis_extensions (product {name}): reinstall it (msiexec /i <msi> /qn /norestart), then iisreset"))
        else:
            image = modules[module.casefold()]
            checks.append(Check(f"module.{name}", OK, f"global module {module} ({image}), section {section}, schema {schema[section.casefold()]}"))
    return checks


def _registration(evidence: Evidence, path: str) -> tuple[str, ET.Element | None]:
    """``("section", element)``, ``("group", element)`` or ``("unknown", None)`` for a path."""

    element = evidence.config.section_registration(path)
    if element is not None:
        return "section", element
    parent = evidence.config.root.find("configSections")
    for part in path.split("/"):
        if parent is None:
            break
        parent = next((c for c in real_children(parent) if c.tag == "sectionGroup" and c.get("name") == part), None)
    return ("group", parent) if parent is not None else ("unknown", None)


def _sections_of(evidence: Evidence, element: ET.Element, prefix: str, found: list[tuple[str, str]]) -> None:
    for child in real_children(element):
        if not prefix and child.tag == "location":
            _sections_of(evidence, child, "", found)
            continue
        path = f"{prefix}/{child.tag}" if prefix else child.tag
        if not prefix and child.tag.casefold() in DOTNET_GROUPS:
            continue
        kind, _ = _registration(evidence, path)
        if kind == "group":
            _sections_of(evidence, child, path, found)
        else:
            found.append((path, kind))


def override_mode(evidence: Evidence, section: str, site: str) -> tuple[str, str]:
    """``(Allow|Deny, where it was decided)`` for ``section`` in a web.config of ``site``'s root."""

    registration = evidence.config.section_registration(section)
    mode = registration.get("overrideModeDefault", "Allow") if registration is not None else "Allow"
    where = "overrideModeDefault of its declaration"
    locations = [loc for loc in real_children(evidence.config.root) if loc.tag == "location"]
    for level in ("", site):
        for location in locations:
            if location.get("path", "").strip("/").casefold() != level.casefold():
                continue
            holder = location
            for tag in section.split("/"):
                holder = holder.find(tag) if holder is not None else None
            if holder is None:
                continue
            value = location.get("overrideMode")
            if value is None and location.get("allowOverride") is not None:
                value = "Allow" if location.get("allowOverride", "").lower() == "true" else "Deny"
            if value in ("Allow", "Deny"):
                mode, where = value, f'<location path="{location.get("path", "")}" overrideMode="{value}">'
    return mode, where


def check_web_config_sections(evidence: Evidence) -> list[Check]:
    """``webconfig.sections``: every section of the served web.config declared, defined by a schema
    file, not AppHostOnly and not locked at the site's level."""

    target = evidence.target
    if evidence.config is None or not target.site:
        return []
    path = evidence.physical_path()
    root, error = parse_web_config(evidence)
    fix = "the release's web.config (templates/web.config.j2) or iis_extensions / iis_server"
    if error:  # not well-formed: fail; not read (or too large to read whole): warn
        return [Check("webconfig.sections", FAIL if "not well-formed" in error else WARN, error, fix)]
    if root is None and target.arr:
        return [Check("webconfig.sections", OK, f"no web.config at {path}: ARR mode, the rule is in applicationHost.config "
                      f"(<location path=\"{target.site}\">)")]
    if root is None:
        return [Check("webconfig.sections", FAIL, f"no web.config at {path}: the site serves no release (HttpPlatformHandler is not configured)",
                      "deploy a release: pyinfra INVENTORY deploys/release.py --data release_version=X")]
    found: list[tuple[str, str]] = []
    _sections_of(evidence, root, "", found)
    schema = schema_sections(evidence)
    problems = []
    for section, kind in found:
        if kind == "unknown":
            problems.append(f"{section}: not declared in <configSections> (500.19 missing section declaration)")
            continue
        if section.casefold() not in schema:
            problems.append(f"{section}: no schema file defines it (500.19)")
        registration = evidence.config.section_registration(section)
        if registration.get("allowDefinition") == "AppHostOnly":
            problems.append(f"{section}: allowDefinition=AppHostOnly, cannot be set in web.config (500.19)")
            continue
        mode, where = override_mode(evidence, section, target.site)
        if mode == "Deny":
            problems.append(f"{section}: locked at site {target.site} by {where} (500.19 'locked at a parent level')")
    names = ", ".join(section for section, _ in found)
    unread = unreadable_schema(evidence)
    if problems and unread and all(p.endswith(": no schema file defines it (500.19)") for p in problems):
        return [Check("webconfig.sections", WARN, f"{path}\\web.config: " + "; ".join(problems) + f", but the host could not read "
                      f"{'; '.join(unread)}", "check the schema files: Get-ChildItem $env:windir\\System32\\inetsrv\\config\\schema")]
    if problems:
        return [Check("webconfig.sections", FAIL, f"{path}\\web.config: " + "; ".join(problems),
                      f"{fix}; unlock: appcmd unlock config \"{target.site}\" -section:<section> -commit:apphost",
                      symptom_of=("module.",))]
    return [Check("webconfig.sections", OK, f"{len(found)} sections known and unlocked at {target.site}: {names}")]
