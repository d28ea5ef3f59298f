"""The applicationHost.config document: parsed on the controller, kept and edited by the simulator.

IIS keeps its server configuration in one XML file,
``%windir%\\System32\\inetsrv\\config\\applicationHost.config``. ``Get-HostState`` reports its
text (secret values replaced by keyed digests on the host) and ``facts/iis_state.py`` turns it
into ELEMENTs with :func:`element_json`. The simulator keeps the same file under its state
directory and edits it the way ``Microsoft.Web.Administration`` does:

* a *section* is addressed by its path (``system.applicationHost/sites``), which maps to nested
  XML elements (``<configuration><system.applicationHost><sites>``), either at server level or
  inside ``<location path="...">``;
* a section can only be used when it is registered in ``<configSections>`` (IIS also needs the
  schema file; the simulator trusts the registration);
* edits of one call are applied to a copy and written in one go (temporary file, then
  ``os.replace``), so a call changes everything or nothing, like one ``CommitChanges()``.

The file is written pretty-printed with four-space indentation and CRLF line ends (as IIS
writes it), and untouched elements keep their order and attribute order, so a diff of two
versions shows only what an edit changed.

Known differences from IIS (a test double says so rather than guessing): attribute names and
values are not checked against the schema (IIS refuses unknown attributes and bad enum
values); ``password`` attributes are stored in clear text (IIS encrypts them with the
``AesProvider``); blank lines between sections are not kept.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..protocol import secret_digest
from . import httpsys

#: Windows path of the file (IIS 7 and later).
APPHOST_CONFIG_PATH = r"C:\Windows\System32\inetsrv\config\applicationHost.config"

#: Element names that are collection items (``addElement``/``removeElement``/``clearElement``
#: of every ``<collection>`` in Microsoft's IIS 10, URL Rewrite 2, ARR 3 and HttpPlatformHandler
#: 1.2 schema files, ``inetsrv\config\schema\*.xml``). No element name is used both as an item
#: and as a plain child element in those schemas, so the tag alone decides.
ITEM_TAGS = frozenset(
    {
        "add", "application", "binding", "clear", "clearSpns", "counter", "driveLocation",
        "environmentVariable", "equivalentHost", "error", "file", "filter", "filteringRule",
        "host", "key", "managementScope", "mimeMap", "preCondition", "property", "provider",
        "publicKey", "remove", "removeSpn", "rewriteMap", "rule", "scheme", "scope",
        "searchResult", "section", "server", "set", "sibling", "site", "spn", "tag", "tags",
        "virtualDirectory", "webFarm",
    }
)

#: Collections whose items' ``value`` attribute is a secret (application pool and
#: httpPlatform environment variables); every attribute named ``password`` is one too.
SECRET_VALUE_COLLECTIONS = frozenset({"environmentVariables"})

#: Binding attributes that are not stored in applicationHost.config: IIS's RSCA schema extension
#: (``inetsrv\config\schema\rscaext.xml``) backs them with HTTP.sys's SSL certificate bindings
#: (``netsh http show sslcert``), keyed by endpoint. They are runtime members: a generic attribute
#: write creates no SSL binding on Windows, so ``Set-IisConfig`` refuses them; the binding's RSCA
#: methods (``Set-IisSslBinding``) are the only way to fill the simulator's table
#: ``{endpoint: {"certificateHash", "certificateStoreName", "appid"}}``, endpoint ``"0.0.0.0:443"``
#: (ipport) or, with the SNI bit of sslFlags, ``"api.example.com:443"`` (hostnameport).
HTTP_SYS_BINDING_ATTRIBUTES = ("certificateHash", "certificateStoreName")

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
INDENT = "    "
NEWLINE = "\r\n"

# Microsoft.Web.Administration raises COMException HRESULT 0x80070490 ("Element not found")
# for a section path that is not registered. The simulator's message wording is its own.
UNKNOWN_SECTION_HRESULT = "0x80070490"


class ConfigError(Exception):
    """An edit or a read the configuration system refuses; nothing was changed."""


class SectionNotFoundError(ConfigError):
    """The section path is not registered in ``<configSections>``."""

    def __init__(self, section: str):
        super().__init__(
            f"Config section '{section}' does not exist (HRESULT {UNKNOWN_SECTION_HRESULT}, Element not found): "
            "its schema is not registered in applicationHost.config <configSections>; "
            "install the feature or product that provides it"
        )
        self.section = section


# --- parsing and writing ------------------------------------------------------------------


def parse_text(text: str) -> ET.Element:
    """Parse the file's text (comments kept) and return the ``<configuration>`` element.

    Raises:
        ConfigError: the text is not well-formed XML or the root is not ``<configuration>``.
    """

    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    try:
        root = ET.fromstring(text, parser=parser)
    except ET.ParseError as exc:
        raise ConfigError(f"Configuration file is not well-formed XML: {exc}") from None
    if root.tag != "configuration":
        raise ConfigError(f"Configuration file root element is <{root.tag}>, expected <configuration>")
    return root


def render(root: ET.Element) -> str:
    """Return the file text of ``root``: declaration, four-space indentation, CRLF line ends.

    Re-indenting is idempotent, so rendering an unchanged document gives the same bytes.
    """

    clone = copy.deepcopy(root)
    ET.indent(clone, space=INDENT)
    body = ET.tostring(clone, encoding="unicode", short_empty_elements=True)
    return XML_DECLARATION + NEWLINE + body.replace("\n", NEWLINE) + NEWLINE


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, line ends as given) to ``path`` through a temporary file and
    ``os.replace``, so a reader never sees half a file."""

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".applicationHost.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- the document -------------------------------------------------------------------------


def real_children(element: ET.Element) -> list[ET.Element]:
    """Return the child elements of ``element`` (comments left out)."""

    return [child for child in element if isinstance(child.tag, str)]


def first_child(element: ET.Element, tag: str) -> ET.Element | None:
    """Return the first child element named ``tag``, or ``None``."""

    for child in real_children(element):
        if child.tag == tag:
            return child
    return None


def _same_location(a: str, b: str) -> bool:
    # IIS compares location paths case-insensitively, ignoring surrounding slashes.
    return a.strip("/").casefold() == b.strip("/").casefold()


def _key_matches(element: ET.Element, key: Mapping[str, str]) -> bool:
    for name, value in key.items():
        actual = element.get(name)
        if actual is None or actual.casefold() != str(value).casefold():
            return False
    return True


def _describe_value(name: str, value: str | None, secret: bool) -> str:
    if value is None:
        return "null"
    if secret or name == "password":
        return '"*MASKED*"'
    return json.dumps(value)


class AppHostConfig:
    """An applicationHost.config document in memory.

    Args:
        root: the parsed ``<configuration>`` element (see :func:`parse_text`).
        sslcert: HTTP.sys SSL certificate bindings (see :data:`HTTP_SYS_BINDING_ATTRIBUTES`);
            edits change this mapping in place.
    """

    def __init__(self, root: ET.Element, sslcert: dict[str, dict[str, str]] | None = None):
        self.root = root
        self.sslcert = {} if sslcert is None else sslcert

    # -- loading and saving

    @classmethod
    def from_text(cls, text: str, sslcert: dict[str, dict[str, str]] | None = None) -> "AppHostConfig":
        """Parse file text. Raises :class:`ConfigError` when it is not a configuration file."""

        return cls(parse_text(text), sslcert)

    @classmethod
    def load(cls, path: Path, sslcert: dict[str, dict[str, str]] | None = None) -> "AppHostConfig":
        """Read the file at ``path`` (a local path). Raises ``FileNotFoundError``, :class:`ConfigError`."""

        return cls.from_text(Path(path).read_text(encoding="utf-8"), sslcert)

    def to_text(self) -> str:
        """Return the file text (see :func:`render`)."""

        return render(self.root)

    def save(self, path: Path) -> None:
        """Write the document to ``path`` atomically."""

        write_atomic(Path(path), self.to_text())

    def copy(self) -> "AppHostConfig":
        """Return an independent deep copy (edits are applied to a copy first)."""

        return AppHostConfig(copy.deepcopy(self.root), copy.deepcopy(self.sslcert))

    # -- section registrations

    def _config_sections(self) -> ET.Element:
        element = first_child(self.root, "configSections")
        if element is None:
            element = ET.Element("configSections")
            self.root.insert(0, element)
        return element

    def section_registration(self, section: str) -> ET.Element | None:
        """Return the ``<section>`` element registering ``section`` (e.g.
        ``"system.webServer/proxy"``), or ``None`` when it is not registered."""

        *groups, name = section.split("/")
        parent: ET.Element | None = self._config_sections()
        for group in groups:
            parent = next(
                (c for c in real_children(parent) if c.tag == "sectionGroup" and c.get("name") == group), None
            )
            if parent is None:
                return None
        return next((c for c in real_children(parent) if c.tag == "section" and c.get("name") == name), None)

    def is_registered(self, section: str) -> bool:
        """Whether ``section`` is registered in ``<configSections>``."""

        return self.section_registration(section) is not None

    def register_section(self, section: str, **attributes: str) -> bool:
        """Register ``section`` (creating its section groups), as an installer does.

        Args:
            section: section path, ``"system.webServer/httpPlatform"``.
            attributes: attributes of the ``<section>`` element after ``name``, e.g.
                ``overrideModeDefault="Allow"``, ``allowDefinition="AppHostOnly"``.

        Returns:
            ``True`` when it was added, ``False`` when it was already registered.
        """

        if self.is_registered(section):
            return False
        *groups, name = section.split("/")
        parent = self._config_sections()
        for group in groups:
            found = next(
                (c for c in real_children(parent) if c.tag == "sectionGroup" and c.get("name") == group), None
            )
            if found is None:
                found = ET.SubElement(parent, "sectionGroup", {"name": group})
            parent = found
        ET.SubElement(parent, "section", {"name": name, **attributes})
        return True

    # -- sections

    def _container(self, location: str | None, create: bool) -> ET.Element | None:
        if location is None:
            return self.root
        for child in real_children(self.root):
            if child.tag == "location" and _same_location(child.get("path", ""), location):
                return child
        if not create:
            return None
        return ET.SubElement(self.root, "location", {"path": location})

    def section_element(self, section: str, location: str | None = None, create: bool = False) -> ET.Element | None:
        """Return the element of ``section`` at server level or under ``<location path>``.

        Args:
            section: registered section path.
            location: ``None`` for server level, else the location path (``"api"``,
                ``"api/app"``; case-insensitive like IIS).
            create: create the location and the section's elements when missing.

        Returns:
            the element, or ``None`` when it is absent and ``create`` is false.

        Raises:
            SectionNotFoundError: the section is not registered.
            ConfigError: an ``AppHostOnly`` section under a location.
        """

        registration = self.section_registration(section)
        if registration is None:
            raise SectionNotFoundError(section)
        if location is not None and location.strip("/") and registration.get("allowDefinition") == "AppHostOnly":
            raise ConfigError(
                f"This configuration section cannot be used at this path: section '{section}' is "
                f"allowDefinition=AppHostOnly and cannot be set for location '{location}'"
            )
        element = self._container(location, create)
        if element is None:
            return None
        for tag in section.split("/"):
            child = first_child(element, tag)
            if child is None:
                if not create:
                    return None
                child = ET.SubElement(element, tag)
            element = child
        return element

    def locations(self) -> list[str]:
        """Return the ``path`` of every ``<location>`` element, in file order."""

        return [c.get("path", "") for c in real_children(self.root) if c.tag == "location"]

    def read_section(self, section: str, location: str | None = None, *, digest_key: bytes | None = None) -> dict[str, Any]:
        """Return the section as the contract's ELEMENT JSON (explicit attributes only).

        Secret values (items of ``environmentVariables``, ``password`` attributes) are replaced
        by :func:`pyinfra_iis.protocol.secret_digest` under ``digest_key`` (the key the caller
        of ``Get-HostState`` sent). A registered section absent from the file reads as an empty
        element.

        Raises:
            SectionNotFoundError: the section is not registered.
        """

        element = self.section_element(section, location)
        if element is None:
            return {"attributes": {}, "children": {}, "items": []}
        return element_json(element, digest_key)

    # -- edits

    def apply_edits(self, edits: Iterable[Mapping[str, Any]]) -> list[str]:
        """Apply Set-IisConfig edits to THIS document (use :meth:`copy` for all-or-nothing).

        Args:
            edits: the contract's EDIT objects (``section``, ``location``, ``path``, ``action``,
                ``attributes``); see ``docs/remote-functions.md``.

        Returns:
            one line per change, e.g. ``system.applicationHost/applicationPools/add[name=api]@startMode: "OnDemand" -> "AlwaysRunning"``
            (secret values shown as ``*MASKED*``); empty when nothing changed.

        Raises:
            ConfigError: an invalid edit or an unregistered section (the document may then be
                partly edited: callers discard the copy).
        """

        changed: list[str] = []
        for index, edit in enumerate(edits):
            try:
                changed.extend(self._apply_edit(edit))
            except SectionNotFoundError:
                raise
            except ConfigError as exc:
                raise ConfigError(f"edit {index + 1}: {exc}") from None
        return changed

    def _apply_edit(self, edit: Mapping[str, Any]) -> list[str]:
        section, location, path, action, attributes = _validate_edit(edit)
        label = section if location is None else f"location[{location}]/{section}"
        create = action == "set"
        element = self.section_element(section, location, create=create)
        created_items: list[str] = []
        for number, step in enumerate(path):
            is_last = number == len(path) - 1
            if element is None:
                return []  # remove of something under a missing element: nothing to do
            if "child" in step:
                label += f"/{step['child']}"
                child = first_child(element, step["child"])
                if child is None and create:
                    child = ET.SubElement(element, step["child"])
                element = child
                continue
            tag, key = step["item"], step["key"]
            label += f"/{tag}[" + ",".join(f"{k}={v}" for k, v in key.items()) + "]"
            item = next((c for c in real_children(element) if c.tag == tag and _key_matches(c, key)), None)
            if action == "remove" and is_last:
                if item is None:
                    return []
                element.remove(item)
                return [f"{label}: removed"]
            if item is None and create:
                item = self._new_item(element, tag, key, attributes if is_last else {})
                created_items.append(label)
            element = item
        if element is None:
            return []
        secret_item = bool(path) and "item" in path[-1] and len(path) >= 2 and path[-2].get("child") in SECRET_VALUE_COLLECTIONS
        changes = [f"{label}: added" for label in created_items]
        if element.tag == "binding" and section == "system.applicationHost/sites":
            refused = sorted(k for k in attributes if k in HTTP_SYS_BINDING_ATTRIBUTES)
            if refused:
                raise ConfigError(
                    f"{label}: {', '.join(refused)} are HTTP.sys SSL binding (RSCA runtime) members, not "
                    "configuration: a generic attribute write creates no SSL binding; use Set-IisSslBinding"
                )
        for name, value in attributes.items():
            old = element.get(name)
            if old == value:
                continue
            element.set(name, value)
            secret = secret_item and name == "value"
            changes.append(f"{label}@{name}: {_describe_value(name, old, secret)} -> {_describe_value(name, value, secret)}")
        return changes

    def _new_item(self, parent: ET.Element, tag: str, key: Mapping[str, str], attributes: Mapping[str, str]) -> ET.Element:
        item = ET.Element(tag, {k: str(v) for k, v in key.items()})
        if tag == "site" and "id" not in item.attrib and "id" not in attributes:
            # A new site gets a unique id (max + 1), as ServerManager.Sites.Add does.
            ids = [int(s.get("id")) for s in real_children(parent) if s.tag == "site" and (s.get("id") or "").isdigit()]
            item.set("id", str(max(ids, default=0) + 1))
        # Insert after the last item of the collection, before the defaults elements
        # (applicationPoolDefaults, siteDefaults, ...), which is where IIS writes new items.
        children = list(parent)
        position = 0
        for index, child in enumerate(children):
            if isinstance(child.tag, str) and child.tag in ITEM_TAGS:
                position = index + 1
        parent.insert(position, item)
        return item


def binding_endpoint(binding: ET.Element) -> str | None:
    """HTTP.sys endpoint of an https ``<binding>`` (:func:`pyinfra_iis.iis.httpsys.binding_endpoint`)."""

    return httpsys.binding_endpoint(binding.get("protocol", ""), binding.get("bindingInformation", ""), binding.get("sslFlags"))


def element_json(element: ET.Element, digest_key: bytes | None = None, secret_values: bool = False) -> dict[str, Any]:
    """Return the ELEMENT JSON of an XML element (see ``docs/remote-functions.md``).

    Args:
        element: a configuration element.
        digest_key: key of the secret digests (:func:`pyinfra_iis.protocol.secret_digest`);
            ``None`` keeps values as written (the controller parses text whose secret values
            the host already replaced by digests, :func:`protect_secrets`).
        secret_values: the element is an item of a secret-bearing collection, so its ``value``
            attribute is a secret.
    """

    attributes = {}
    for name, value in element.attrib.items():
        if digest_key is not None and is_secret_attribute(name, secret_values):
            value = secret_digest(value, digest_key)
        attributes[name] = value
    children: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    secret_children = element.tag in SECRET_VALUE_COLLECTIONS
    for child in real_children(element):
        if child.tag in ITEM_TAGS:
            items.append({"tag": child.tag, **element_json(child, digest_key, secret_values=secret_children)})
        else:
            children[child.tag] = element_json(child, digest_key)
    return {"attributes": attributes, "children": children, "items": items}


def is_secret_attribute(name: str, in_secret_collection: bool) -> bool:
    """Whether an attribute holds a secret: every ``password``, and ``value`` of an item of an
    ``environmentVariables`` collection (the contract's "Secret-bearing values")."""

    return name == "password" or (in_secret_collection and name == "value")


def protect_secrets(root: ET.Element, digest_key: bytes, decrypt: Any = None) -> ET.Element:
    """Return a copy of ``root`` whose secret values are keyed digests: what ``Get-HostState``
    does on the host before it sends the file's text (XPath ``//@password`` and
    ``//environmentVariables/*/@value``).

    Args:
        decrypt: ``decrypt(element, name, text) -> str`` for an encrypted ``[enc:...:enc]`` value
            (Windows decrypts a pool password through ``ApplicationPool.ProcessModel.Password``).
    """

    clone = copy.deepcopy(root)
    stack: list[tuple[ET.Element, bool]] = [(clone, False)]
    while stack:
        element, secret_values = stack.pop()
        for name, value in list(element.attrib.items()):
            if is_secret_attribute(name, secret_values):
                if decrypt is not None and value.startswith("[enc:"):
                    value = decrypt(element, name, value)
                element.set(name, secret_digest(value, digest_key))
        stack.extend((child, element.tag in SECRET_VALUE_COLLECTIONS) for child in real_children(element))
    return clone


def _element_under(config: "AppHostConfig", location: str, section: str) -> ET.Element | None:
    for child in real_children(config.root):
        if child.tag == "location" and child.get("path", "") == location:
            element: ET.Element | None = child
            for tag in section.split("/"):
                element = first_child(element, tag) if element is not None else None
            if element is not None:
                return element
    return None


def reported_configuration(config: "AppHostConfig", sections: Iterable[str]) -> dict[str, Any]:
    """Return ``{"sections": {SECTION: ELEMENT}, "locations": {PATH: {SECTION: ELEMENT}}}`` for
    the ``sections`` registered in ``config`` (server level: every registered one, absent ones
    empty; under each ``<location>``: those it writes), values as written in the text."""

    registered = [s for s in sections if config.is_registered(s)]
    result: dict[str, Any] = {"sections": {s: config.read_section(s) for s in registered}, "locations": {}}
    for path in config.locations():
        if not path.strip("/"):
            # <location path=""> is server level too (IIS's default file keeps modules and
            # handlers there): a section written only there is reported as the server's.
            for section in registered:
                element = _element_under(config, path, section)
                if element is not None and config.section_element(section) is None:
                    result["sections"][section] = element_json(element)
            continue
        found = {}
        for section in registered:
            try:
                element = config.section_element(section, path)
            except ConfigError:  # AppHostOnly sections cannot be under a location
                continue
            if element is not None:
                found[section] = element_json(element)
        if found:
            result["locations"].setdefault(path, {}).update(found)
    return result


def _validate_edit(edit: Mapping[str, Any]) -> tuple[str, str | None, list[dict[str, Any]], str, dict[str, str]]:
    if not isinstance(edit, Mapping):
        raise ConfigError("an edit must be an object")
    section = edit.get("section")
    if not isinstance(section, str) or not section or section.startswith("/") or section.endswith("/"):
        raise ConfigError(f"invalid section path: {section!r}")
    location = edit.get("location")
    if location is not None and not isinstance(location, str):
        raise ConfigError("location must be a string or null")
    action = edit.get("action", "set")
    if action not in ("set", "remove"):
        raise ConfigError(f"action must be 'set' or 'remove', not {action!r}")
    path = edit.get("path") or []
    if not isinstance(path, list):
        raise ConfigError("path must be a list of steps")
    for step in path:
        if not isinstance(step, Mapping) or len(step.keys() & {"child", "item"}) != 1:
            raise ConfigError(f"invalid path step {step!r}: expected {{'child': TAG}} or {{'item': TAG, 'key': {{...}}}}")
        tag = step.get("child") or step.get("item")
        if not isinstance(tag, str) or not tag or not tag.replace(".", "").replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"invalid element name in path step {step!r}")
        if "item" in step:
            key = step.get("key")
            if not isinstance(key, Mapping) or not key or not all(isinstance(v, str) for v in key.values()):
                raise ConfigError(f"item step {step!r} needs a non-empty key of string values")
    if action == "remove" and (not path or "item" not in path[-1]):
        raise ConfigError("remove needs a path whose last step is an item step")
    attributes = edit.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) and k for k in attributes):
        raise ConfigError("attributes must be an object of attribute names to string values")
    for name, value in attributes.items():
        if not isinstance(value, str):
            raise ConfigError(f"attribute {name!r}: values are strings as IIS writes them, got {type(value).__name__}")
    return section, location, [dict(s) for s in path], action, dict(attributes)


def edit_file(path: Path, edits: list[Mapping[str, Any]],
              sslcert: dict[str, dict[str, str]] | None = None) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Apply ``edits`` to the file at ``path`` all-or-nothing.

    The edits are applied to a copy; only when all succeed and something changed is the file
    rewritten (atomically). See :meth:`AppHostConfig.apply_edits` for the edits.

    Args:
        path: local path of the file.
        edits: the contract's EDIT objects.
        sslcert: the host's HTTP.sys certificate bindings (not changed: a changed copy is returned).

    Returns:
        ``(changed lines, HTTP.sys certificate bindings after the edits)``.

    Raises:
        ConfigError: any edit is invalid; the file is untouched.
    """

    config = AppHostConfig.load(path, sslcert)
    candidate = config.copy()
    changed = candidate.apply_edits(edits)
    if changed:
        candidate.save(path)
    return changed, candidate.sslcert
