"""Validate IIS configuration XML against Microsoft's IIS schema files.

The schema files are those IIS keeps in ``%windir%\\System32\\inetsrv\\config\\schema\\``, copied
to ``tests/data/iis-schema/`` (``tests/data/README.md`` describes format, origin and
known gaps). :func:`load_schema` maps every section path to its schema node;
:func:`validate_config` walks an applicationHost.config or web.config text and returns every
problem as ``"<where>: <what>"``, where ``<where>`` reads like
``system.applicationHost/sites/site[name=api]/bindings/binding[protocol=https,...]@sslFlags``.

Decisions, each explicit:

* **Sections the schema does not define** are an error unless their path starts with an entry
  of :data:`UNVALIDATED_SECTIONS` (``configSections`` and the .NET sections IIS never reads).
  Where the schema does define a section under such a prefix (``system.web/*`` is in
  ASPNET_schema.xml), it is validated.
* **applicationHost-only sections** in a web.config (``kind="web"``) are an error:
  ``system.applicationHost/*``, ``system.webServer/globalModules`` and ARR's
  ``system.webServer/proxy`` (field notes, "ARR proxy ... applicationHost only").
* **bool** is ``true`` or ``false`` in lower case, as IIS writes it.
* **enum and flags** take names only. IIS writes names; whether its parser also accepts the
  numeric value is not documented in the schema files or the README, so generated configuration
  must not rely on it and a number is reported. Flags are a comma-separated list of ``<flag>``
  names (spaces around commas allowed); names are case-sensitive here, again as IIS writes them.
* **timeSpan** is ``[-][d.]hh:mm:ss[.fffffff]``; with ``timeSpanFormat="seconds"|"minutes"`` a
  whole number of those units is also accepted; ``Infinite`` when ``allowInfinite="true"``.
  ``timeSpanRange`` is ``min,max,granularity`` in seconds (granularity 60 = whole minutes, which
  is why HttpPlatformHandler's ``requestTimeout`` takes whole minutes only; field notes).
* **integerRange** is ``min,max`` inclusive, or ``min,max,exclude`` (the value must lie outside).
* **sslFlags of a site binding**: the 2015 IIS_schema.xml types it as a plain ``uint``, but
  IIS 10 1809+ reads it as bits 1 Sni, 2 CentralCertStore, 4 DisableHTTP2, 8
  DisableOCSPStapling, 16 DisableQUIC, 32 DisableTLS13, 64 DisableLegacyTLS (field notes,
  "sslFlags bits"; tests/data/README.md, known gaps). It is checked as a decimal ``uint`` whose set bits are
  all among those (:data:`BINDING_SSL_FLAG_BITS`); other bits are reported. (The unrelated
  ``system.webServer/security/access@sslFlags`` is a real ``flags`` attribute and is checked as such.)
* **Known schema gaps patched in** (tests/data/README.md): the ``<hsts>`` element of ``site`` and
  ``siteDefaults`` (IIS 10.0 v1709+) and URL Rewrite 2.1's ``useOriginalURLEncoding`` on
  ``system.webServer/rewrite/rules``.
* **Collection keys**: each ``isUniqueKey`` attribute is unique on its own (a site's ``name``
  and its ``id``); the ``isCombinedKey`` attributes are unique together (a binding's
  ``protocol`` + ``bindingInformation``). Values compare case-insensitively unless
  ``caseSensitive="true"``; ``<remove>`` forgets a key and ``<clear/>`` forgets all, so the
  ``<remove>`` before ``<add>`` idiom is accepted; ``allowDuplicates="true"`` skips the check.
* **Required attributes** are checked on collection items (``<add>`` and friends).
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from . import REFERENCE

__all__ = [
    "APPHOST_ONLY_SECTIONS",
    "BINDING_SSL_FLAG_BITS",
    "UNVALIDATED_SECTIONS",
    "AttributeSchema",
    "CollectionSchema",
    "ElementSchema",
    "load_schema",
    "schema_default",
    "validate_config",
]

#: Section path prefixes passed without validation when the schema does not define them, with why.
UNVALIDATED_SECTIONS: Mapping[str, str] = {
    "configSections": "section registration (applicationHost.config), not a section itself",
    "system.web": "ASP.NET sections are validated where ASPNET_schema.xml defines them; others are ASP.NET's own",
    "runtime": ".NET runtime settings, read by the CLR, not by IIS",
    "startup": ".NET startup settings, read by the CLR",
    "system.codedom": ".NET compiler settings",
    "system.serviceModel": "WCF settings",
    "system.diagnostics": ".NET tracing, read by the app",
}

#: Section path prefixes that IIS accepts only in applicationHost.config.
APPHOST_ONLY_SECTIONS = ("system.applicationHost/", "system.webServer/globalModules", "system.webServer/proxy")

#: Bits of a site binding's sslFlags known to IIS 10 1809+ (field notes, "sslFlags bits").
BINDING_SSL_FLAG_BITS: Mapping[int, str] = {
    1: "Sni",
    2: "CentralCertStore",
    4: "DisableHTTP2",
    8: "DisableOCSPStapling",
    16: "DisableQUIC",
    32: "DisableTLS13",
    64: "DisableLegacyTLS",
}

# Attributes every configuration element may carry (configuration locking, IIS config system).
_META_ATTRIBUTES = frozenset({"lockAttributes", "lockAllAttributesExcept", "lockElements", "lockAllElementsExcept", "lockItem", "configSource"})

_LOCATION_ATTRIBUTES = {"path": "string", "overrideMode": ("Allow", "Deny", "Inherit"), "allowOverride": "bool", "inheritInChildApplications": "bool"}

_TIMESPAN_RE = re.compile(r"^(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,7}))?$")

_INTEGER_LIMITS = {"uint": (0, 2**32 - 1), "int": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


# --- The schema model -------------------------------------------------------------------


@dataclass
class AttributeSchema:
    """One ``<attribute>`` of the schema (type one of string, bool, int, uint, int64, enum,
    flags, timeSpan); ``names`` holds the enum or flag names in order."""

    name: str
    type: str
    default: str | None = None
    required: bool = False
    unique_key: bool = False
    combined_key: bool = False
    case_sensitive: bool = False
    allow_infinite: bool = False
    timespan_format: str = "string"
    validation_type: str | None = None
    validation_parameter: str | None = None
    names: tuple[str, ...] = ()


@dataclass
class CollectionSchema:
    """A ``<collection>``: item tag names and the schema of an item (its attributes, elements,
    nested collection)."""

    add_names: tuple[str, ...]
    remove_name: str | None
    clear_name: str | None
    item: "ElementSchema"
    allow_duplicates: bool = False


@dataclass
class ElementSchema:
    """A section, an ``<element>`` or a collection item: attributes, child elements, collection."""

    attributes: dict[str, AttributeSchema] = field(default_factory=dict)
    elements: dict[str, "ElementSchema"] = field(default_factory=dict)
    collection: CollectionSchema | None = None
    allow_unrecognized: bool = False


def _truthy(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _attribute(node: ET.Element) -> AttributeSchema:
    lowered = {key.lower(): value for key, value in node.attrib.items()}  # one file spells "defaultvalue"
    return AttributeSchema(
        name=node.get("name", ""),
        type=node.get("type", "string"),
        default=lowered.get("defaultvalue"),
        required=_truthy(node.get("required")),
        unique_key=_truthy(node.get("isUniqueKey")),
        combined_key=_truthy(node.get("isCombinedKey")),
        case_sensitive=_truthy(node.get("caseSensitive")),
        allow_infinite=_truthy(node.get("allowInfinite")),
        timespan_format=node.get("timeSpanFormat", "string"),
        validation_type=node.get("validationType"),
        validation_parameter=node.get("validationParameter"),
        names=tuple(child.get("name", "") for child in node if child.tag in ("enum", "flag")),
    )


def _element(node: ET.Element) -> ElementSchema:
    schema = ElementSchema()
    for child in node:
        if child.tag == "attribute":
            schema.attributes[child.get("name", "")] = _attribute(child)
        elif child.tag == "element":
            schema.elements[child.get("name", "")] = _element(child)
        elif child.tag == "collection":
            item = _element(child)
            item.allow_unrecognized = _truthy(child.get("allowUnrecognizedAttributes"))
            schema.collection = CollectionSchema(
                add_names=tuple(name for name in (child.get("addElement") or "").split(";") if name),
                remove_name=child.get("removeElement") or None,
                clear_name=child.get("clearElement") or None,
                item=item,
                allow_duplicates=_truthy(child.get("allowDuplicates")),
            )
    return schema


def _patch_known_gaps(sections: dict[str, ElementSchema]) -> None:
    """Add what the 2015-era files lack (tests/data/README.md, "Known gaps")."""

    sites = sections.get("system.applicationHost/sites")
    if sites is not None and sites.collection is not None:
        hsts = ElementSchema(
            attributes={
                "enabled": AttributeSchema("enabled", "bool", "false"),
                "max-age": AttributeSchema("max-age", "uint", "0"),
                "includeSubDomains": AttributeSchema("includeSubDomains", "bool", "false"),
                "preload": AttributeSchema("preload", "bool", "false"),
                "redirectHttpToHttps": AttributeSchema("redirectHttpToHttps", "bool", "false"),
            }
        )
        sites.collection.item.elements.setdefault("hsts", hsts)
        if "siteDefaults" in sites.elements:
            sites.elements["siteDefaults"].elements.setdefault("hsts", hsts)
    rules = sections.get("system.webServer/rewrite/rules")
    if rules is not None:
        rules.attributes.setdefault("useOriginalURLEncoding", AttributeSchema("useOriginalURLEncoding", "bool", "true"))


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> dict[str, ElementSchema]:
    sections: dict[str, ElementSchema] = {}
    for path in sorted(Path(folder).glob("*.xml")):
        for node in ET.parse(path).getroot().iter("sectionSchema"):
            sections[node.get("name", "")] = _element(node)
    _patch_known_gaps(sections)
    return sections


def load_schema(folder: Path | str | None = None) -> dict[str, ElementSchema]:
    """Return section path -> :class:`ElementSchema` for every ``*.xml`` schema file (parsed once).

    Args:
        folder: the ``iis-schema`` folder, or the ``reference`` folder holding it; default
            ``tests/data/iis-schema``.

    Raises:
        FileNotFoundError: no such folder.
    """

    if folder is None:
        folder = REFERENCE
    path = Path(folder)
    if (path / "iis-schema").is_dir():
        path = path / "iis-schema"
    if not path.is_dir():
        raise FileNotFoundError(f"no IIS schema folder at {path}")
    return _load(str(path.resolve()))


# --- Defaults ---------------------------------------------------------------------------


def schema_default(section: str, element_path: str | Sequence[str], attribute: str, *, folder: Path | str | None = None) -> str | None:
    """Return the ``defaultValue`` the schema declares for an attribute (as a string).

    Args:
        section: section path, e.g. ``"system.applicationHost/applicationPools"``.
        element_path: tags from the section element down, ``/``-separated or a sequence; a
            collection item is named by its add tag. ``""`` for the section element itself.
            E.g. ``"add/processModel"`` (a pool's processModel), ``"site/bindings/binding"``,
            ``"applicationPoolDefaults/processModel"``.
        attribute: attribute name, e.g. ``"idleTimeout"``.
        folder: see :func:`load_schema`.

    Returns:
        the declared default, e.g. ``"00:20:00"``, or ``None`` when the attribute declares none
        (IIS then uses the type's empty value). Note the schema file's value may differ from
        Microsoft's prose reference (httpPlatform ``startupTimeLimit``: 120 here, 10 in the
        docs; field notes): this returns what the file says.

    Raises:
        KeyError: unknown section, element or attribute (the message says which).
    """

    sections = load_schema(folder)
    if section not in sections:
        raise KeyError(f"unknown section {section!r}")
    node = sections[section]
    steps = [step for step in (element_path.split("/") if isinstance(element_path, str) else element_path) if step]
    walked = section
    for step in steps:
        walked += "/" + step
        if step in node.elements:
            node = node.elements[step]
        elif node.collection is not None and step in node.collection.add_names:
            node = node.collection.item
        else:
            raise KeyError(f"no element {walked!r} in the schema")
    if attribute not in node.attributes:
        raise KeyError(f"no attribute {attribute!r} on {walked!r} in the schema")
    return node.attributes[attribute].default


# --- Validation -------------------------------------------------------------------------


def validate_config(xml_text: str, *, kind: str = "applicationHost", folder: Path | str | None = None) -> list[str]:
    """Validate an applicationHost.config (``kind="applicationHost"``) or web.config (``"web"``).

    Args:
        xml_text: the whole file; its root must be ``<configuration>``.
        kind: which file it is; in ``"web"`` applicationHost-only sections are errors.
        folder: see :func:`load_schema`.

    Returns:
        problems as ``"<where>: <what>"`` strings, in document order; empty when valid.

    Raises:
        ValueError: ``kind`` is not one of the two.
    """

    if kind not in ("applicationHost", "web"):
        raise ValueError(f"kind must be 'applicationHost' or 'web', not {kind!r}")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        return [f"XML: {exc}"]
    if root.tag != "configuration":
        return [f"{root.tag}: the root element must be <configuration>"]
    validator = _Validator(load_schema(folder), kind)
    validator.walk_scope(root, "")
    return validator.problems


class _Validator:
    def __init__(self, sections: dict[str, ElementSchema], kind: str):
        self.sections = sections
        self.kind = kind
        self.problems: list[str] = []
        self.prefixes = {name.rsplit("/", n)[0] for name in sections for n in range(1, name.count("/") + 1)}

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # <configuration> and <location>: section groups and sections.
    def walk_scope(self, node: ET.Element, location: str) -> None:
        for child in node:
            if not isinstance(child.tag, str):
                continue
            if child.tag == "location" and not location:
                self.walk_location(child)
            else:
                self.walk_group(child, child.tag, location)

    def walk_location(self, node: ET.Element) -> None:
        path = node.get("path")
        where = f"location[path={path}]"
        for name, value in node.attrib.items():
            expected = _LOCATION_ATTRIBUTES.get(name)
            if expected is None:
                self.problem(where, f"unknown attribute {name!r} on <location>")
            elif expected == "bool" and value not in ("true", "false"):
                self.problem(f"{where}@{name}", f"{value!r} is not true or false")
            elif isinstance(expected, tuple) and value not in expected:
                self.problem(f"{where}@{name}", f"{value!r} is not one of {', '.join(expected)}")
        self.walk_scope(node, where + "/")

    def walk_group(self, node: ET.Element, path: str, location: str) -> None:
        where = location + path
        if path in self.sections:
            if self.kind == "web" and path.startswith(APPHOST_ONLY_SECTIONS):
                self.problem(where, "section is allowed in applicationHost.config only")
            self.check_element(node, self.sections[path], where)
            return
        if path in self.prefixes:  # a section group: its children are groups or sections
            for name in node.attrib:
                self.problem(where, f"section group <{node.tag}> takes no attribute ({name!r})")
            for child in node:
                if isinstance(child.tag, str):
                    self.walk_group(child, f"{path}/{child.tag}", location)
            return
        for prefix in UNVALIDATED_SECTIONS:
            if path == prefix or path.startswith(prefix + "/"):
                if path == prefix:
                    for child in node:  # validate what the schema defines inside (system.web/*)
                        if isinstance(child.tag, str) and f"{path}/{child.tag}" in self.sections:
                            self.walk_group(child, f"{path}/{child.tag}", location)
                return
        self.problem(where, "unknown section: no schema file defines it (IIS answers 500.19)")

    # Elements inside a section.
    def check_element(self, node: ET.Element, schema: ElementSchema, where: str, *, item: bool = False) -> None:
        self.check_attributes(node, schema, where, item=item)
        collection = schema.collection
        seen: dict[tuple, dict[str, str]] = {}
        for child in node:
            if not isinstance(child.tag, str):
                continue
            tag = child.tag
            if tag in schema.elements:
                self.check_element(child, schema.elements[tag], f"{where}/{tag}")
            elif collection is not None and tag in collection.add_names:
                child_where = f"{where}/{tag}{_key_label(child, collection.item)}"
                self.check_element(child, collection.item, child_where, item=True)
                if not collection.allow_duplicates:
                    self.check_keys(child, collection.item, child_where, seen)
            elif collection is not None and tag == collection.remove_name:
                self.check_remove(child, collection.item, f"{where}/{tag}{_key_label(child, collection.item)}", seen)
            elif collection is not None and tag == collection.clear_name:
                if child.attrib or len(child):
                    self.problem(f"{where}/{tag}", f"<{tag}> takes no attributes or children")
                seen.clear()
            else:
                self.problem(f"{where}/{tag}", f"unknown child element <{tag}>; allowed: {', '.join(_allowed_children(schema)) or 'none'}")

    def check_attributes(self, node: ET.Element, schema: ElementSchema, where: str, *, item: bool) -> None:
        for name, value in node.attrib.items():
            if name in _META_ATTRIBUTES:
                continue
            attribute = schema.attributes.get(name)
            if attribute is None:
                if not schema.allow_unrecognized:
                    self.problem(f"{where}@{name}", f"unknown attribute; declared: {', '.join(schema.attributes) or 'none'}")
                continue
            message = check_value(attribute, value, where=where)
            if message:
                self.problem(f"{where}@{name}", message)
        if item:
            for attribute in schema.attributes.values():
                if attribute.required and attribute.name not in node.attrib:
                    self.problem(where, f"required attribute {attribute.name!r} is missing")

    def check_keys(self, node: ET.Element, schema: ElementSchema, where: str, seen: dict[tuple, dict[str, str]]) -> None:
        for key in _keys(node, schema):
            if key in seen:
                self.problem(where, f"duplicate collection key {_key_text(key)} (IIS: 'Cannot add duplicate collection entry')")
            seen[key] = dict(node.attrib)

    def check_remove(self, node: ET.Element, schema: ElementSchema, where: str, seen: dict[tuple, dict[str, str]]) -> None:
        key_names = {a.name for a in schema.attributes.values() if a.unique_key or a.combined_key}
        for name, value in node.attrib.items():
            if name in _META_ATTRIBUTES:
                continue
            if name not in key_names:
                self.problem(f"{where}@{name}", f"<{node.tag}> takes only key attributes ({', '.join(sorted(key_names)) or 'none'})")
                continue
            message = check_value(schema.attributes[name], value, where=where)
            if message:
                self.problem(f"{where}@{name}", message)
        for key in _keys(node, schema):
            seen.pop(key, None)


def _allowed_children(schema: ElementSchema) -> list[str]:
    names = list(schema.elements)
    if schema.collection is not None:
        names += list(schema.collection.add_names)
        names += [n for n in (schema.collection.remove_name, schema.collection.clear_name) if n]
    return names


def _normal(attribute: AttributeSchema, value: str) -> str:
    return value if attribute.case_sensitive else value.lower()


def _keys(node: ET.Element, schema: ElementSchema) -> list[tuple]:
    """The keys an item occupies: one per isUniqueKey attribute, one for the combined key."""

    keys = []
    for attribute in schema.attributes.values():
        if attribute.unique_key:
            keys.append(((attribute.name, _normal(attribute, node.get(attribute.name, attribute.default or ""))),))
    combined = [a for a in schema.attributes.values() if a.combined_key]
    if combined:
        keys.append(tuple((a.name, _normal(a, node.get(a.name, a.default or ""))) for a in combined))
    return keys


def _key_text(key: tuple) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in key)


def _key_label(node: ET.Element, schema: ElementSchema) -> str:
    names = [a.name for a in schema.attributes.values() if (a.unique_key or a.combined_key) and a.name in node.attrib]
    return "[" + ",".join(f"{name}={node.get(name)}" for name in names) + "]" if names else ""


# --- Values -----------------------------------------------------------------------------


def check_value(attribute: AttributeSchema, value: str, *, where: str = "") -> str | None:
    """Return why ``value`` does not fit ``attribute`` (its type, enum/flag names, validation),
    or ``None`` when it fits. ``where`` (the element path) is only used in messages."""

    if attribute.allow_infinite and value == "Infinite":
        return None
    kind = attribute.type
    if kind == "bool":
        return None if value in ("true", "false") else f"{value!r} is not a bool (true or false)"
    if kind in _INTEGER_LIMITS:
        return _check_integer(attribute, value, where)
    if kind == "enum":
        return None if value in attribute.names else f"{value!r} is not one of {', '.join(attribute.names)}"
    if kind == "flags":
        items = [item.strip() for item in value.split(",")]
        unknown = [item for item in items if item not in attribute.names]
        return f"{', '.join(repr(i) for i in unknown)} not among the flags {', '.join(attribute.names)}" if unknown else None
    if kind == "timeSpan":
        return _check_timespan(attribute, value)
    return _check_string(attribute, value)


def _check_integer(attribute: AttributeSchema, value: str, where: str) -> str | None:
    if not re.fullmatch(r"-?\d+", value):
        return f"{value!r} is not a whole number ({attribute.type})"
    number = int(value)
    low, high = _INTEGER_LIMITS[attribute.type]
    if not low <= number <= high:
        return f"{number} is outside the {attribute.type} range {low}..{high}"
    if attribute.validation_type == "integerRange" and attribute.validation_parameter:
        parts = attribute.validation_parameter.split(",")
        low, high = int(parts[0]), int(parts[1])
        exclude = len(parts) > 2 and parts[2].strip() == "exclude"
        inside = low <= number <= high
        if exclude and inside:
            return f"{number} must lie outside {low}..{high}"
        if not exclude and not inside:
            return f"{number} is outside the allowed range {low}..{high}"
    if attribute.name == "sslFlags":  # only a binding's sslFlags is typed uint (the 2015 file)
        unknown = number & ~sum(BINDING_SSL_FLAG_BITS)
        if unknown:
            return f"sslFlags {number} sets bits {unknown} that IIS 10 does not define (known: {', '.join(f'{b} {n}' for b, n in BINDING_SSL_FLAG_BITS.items())})"
    return None


def parse_timespan(value: str) -> float | None:
    """Return ``[-][d.]hh:mm:ss[.fffffff]`` as seconds, or ``None`` when it does not parse."""

    match = _TIMESPAN_RE.match(value)
    if not match or int(match["h"]) > 23 or int(match["m"]) > 59 or int(match["s"]) > 59:
        return None
    seconds = int(match["days"] or 0) * 86400 + int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"])
    seconds += int((match["f"] or "0").ljust(7, "0")) / 10**7
    return -seconds if match["sign"] else seconds


def _check_timespan(attribute: AttributeSchema, value: str) -> str | None:
    seconds = parse_timespan(value)
    if seconds is None and attribute.timespan_format in ("seconds", "minutes") and re.fullmatch(r"\d+", value):
        seconds = int(value) * (60 if attribute.timespan_format == "minutes" else 1)
    if seconds is None:
        return f"{value!r} is not a timeSpan ([-][d.]hh:mm:ss[.fffffff])"
    if attribute.validation_type == "timeSpanRange" and attribute.validation_parameter:
        low, high, *rest = (int(part) for part in attribute.validation_parameter.split(","))
        granularity = rest[0] if rest else 1
        if not low <= seconds <= high:
            return f"{value!r} ({seconds:g} s) is outside the allowed range {low}..{high} s"
        if granularity > 1 and seconds % granularity:
            return f"{value!r} is not a whole multiple of {granularity} s"
    return None


def _check_string(attribute: AttributeSchema, value: str) -> str | None:
    check = attribute.validation_type
    if check in ("nonEmptyString", "siteName", "applicationPoolName") and value == "":
        return "must not be empty"
    if check in ("requireTrimmedString", "siteName", "applicationPoolName") and value != value.strip():
        return f"{value!r} has leading or trailing whitespace"
    if check in ("applicationPath", "virtualDirectoryPath") and not value.startswith("/"):
        return f"{value!r} must start with '/'"
    return None


def sections_defined(folder: Path | str | None = None) -> Iterable[str]:
    """Return every section path the schema files define (sorted)."""

    return sorted(load_schema(folder))
