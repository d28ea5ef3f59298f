"""Sites and bindings: ``Set-IisConfig`` (site, root application and virtual directory,
bindings one by one, anonymous authentication at the site's location), HTTP.sys SSL bindings
(``Set-IisSslBinding``), log directory, ``Set-IisRuntimeState``."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Sequence

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError

from ..facts.host_state import host_state
from ..iis import config, httpsys
from ..iis.adopt import anonymous_auth_wanted, binding_key, host_binding_conflicts, site_runtime_wanted, site_wanted_attributes
from ..iis.compare import differing
from ..iis.defaults import ANONYMOUS_AUTH, ANONYMOUS_AUTH_ATTRS, APPLICATION, BINDING, SITE, SITES, VIRTUAL_DIRECTORY
from ..iis.diff import Change, log_changes, once_per_run
from ..iis.edits import Edit, attribute_edits, child_step, item_step, remove_edit, set_edit
from ..iis.removal import binding_removals, site_item
from ..models.certificates import Certificate
from ..models.site import Binding, Site
from ..protocol import remote_call
from ._common import from_arguments, iis_of, validated, warn
from .app_pools import remote_call_runtime
from .certificates import CertificateInfo, check_for_binding, fact_certificate, info_of_fact_entry, pfx_info

ROOT_APP = item_step("application", path="/")
ROOT_VDIR = item_step("virtualDirectory", path="/")


def removed_bindings(model: Site, iis: dict | None) -> list[config.Element]:
    """The host's ``<binding>`` items of site ``model`` that this run removes: those named by a
    ``present: false`` entry, and, with ``exclusive_bindings``, those the list does not name
    (otherwise a binding the list does not name is kept)."""

    holder = config.child(site_item(iis, model.name), "bindings")
    return binding_removals(config.items(holder, "binding"), model.bindings, bool(model.exclusive_bindings))


def _split(attributes: dict[str, str]) -> tuple[dict, dict, dict]:
    site, app, vdir = {}, {}, {}
    for dotted, value in attributes.items():
        head, _, rest = dotted.partition(".")
        if head == "application" and rest:
            app[rest] = value
        elif head == "virtualDirectory" and rest:
            vdir[rest] = value
        else:
            site[dotted] = value
    return site, app, vdir


def site_edits(model: Site, iis: dict | None, serves_release: bool = False) -> tuple[list[Edit], list[Change]]:
    """Edits for the site element, its root application and root virtual directory: only the
    attributes whose effective value differs (item → siteDefaults / applicationDefaults /
    virtualDirectoryDefaults → schema default). On an existing site only the required and the
    declared attributes are compared (:func:`pyinfra_iis.iis.adopt.site_wanted_attributes`);
    paths IIS expands compare by their expanded value (the host's ``environment``)."""

    section = config.section(iis, SITES)
    site = config.find_item(section, "site", {"name": model.name})
    app = config.find_item(site, "application", {"path": "/"})
    vdir = config.find_item(app, "virtualDirectory", {"path": "/"})
    label = f"site {model.name}"
    wanted_site, wanted_app, wanted_vdir = _split(site_wanted_attributes(model, site is not None, serves_release))
    base = [item_step("site", name=model.name)]
    edits: list[Edit] = []
    diff: list[Change] = [Change(label, None, "created")] if site is None else []
    for element, wanted, table, defaults_tag, path, sub in (
        (site, wanted_site, SITE, "siteDefaults", base, label),
        (app, wanted_app, APPLICATION, "applicationDefaults", [*base, ROOT_APP], f"{label}: application /"),
        (vdir, wanted_vdir, VIRTUAL_DIRECTORY, "virtualDirectoryDefaults", [*base, ROOT_APP, ROOT_VDIR], f"{label}: virtualDirectory /"),
    ):
        changes, lines = differing(element, wanted, table, defaults_element=config.child(section, defaults_tag), label=sub,
                                   environment=config.environment(iis))
        edits += attribute_edits(SITES, path, changes)
        diff += lines
    if site is None and not any(edit["path"] == base for edit in edits):
        edits.insert(0, set_edit(SITES, base))
    return edits, diff


def binding_attributes(binding: Binding) -> dict[str, str]:
    """The non-key configuration attributes a binding must have: https → ``sslFlags``; http →
    none. The certificate is not configuration: it is HTTP.sys's SSL binding of the endpoint
    (:func:`ssl_binding_calls`)."""

    if binding.protocol != "https":
        return {}
    return {"sslFlags": str(binding.ssl_flags or 0)}


def _ssl_call(site: str, information: str, action: str, thumbprint: str | None = None, store: str | None = None) -> str:
    payload: dict[str, Any] = {"site": site, "binding_information": information, "action": action}
    if thumbprint:
        payload.update(thumbprint=thumbprint, store=store or "My")
    return remote_call("Set-IisSslBinding", payload)


def ssl_binding_calls(model: Site, iis: dict | None, certificates: dict[int, tuple[str | None, str | None]]) -> tuple[list[str], list[str], list[Change], list[Binding]]:
    """``Set-IisSslBinding`` calls that make HTTP.sys hold each https binding's certificate
   : ``add`` when the endpoint has no SSL binding, ``rebind`` when its
    certificate or store differs, nothing when it matches. An SSL binding of an https binding
    that is removed, or whose endpoint moves (sslFlags' SNI bit changes), is removed BEFORE the
    configuration edit (the RSCA method needs the committed binding), unless a binding of the
    model still uses that endpoint.

    Returns:
        ``(calls before Set-IisConfig, calls after it, diff, bindings whose certificate changes)``.
    """

    table = (iis or {}).get("ssl_bindings") or {}
    before: list[str] = []
    after: list[str] = []
    diff: list[Change] = []
    touched: list[Binding] = []
    wanted_endpoints = {}
    for index, binding in enumerate(model.bindings):
        endpoint = httpsys.binding_endpoint(binding.protocol, binding.binding_information, binding.ssl_flags)
        if endpoint is not None and binding.present:
            wanted_endpoints[endpoint] = (index, binding)
    site = config.find_item(config.section(iis, SITES), "site", {"name": model.name})
    removed = removed_bindings(model, iis)
    listed = {binding_key(b.protocol, b.binding_information) for b in model.present_bindings}
    for item in config.items(config.child(site, "bindings"), "binding"):
        information = config.get_attribute(item, "bindingInformation") or ""
        endpoint = httpsys.binding_endpoint(config.get_attribute(item, "protocol") or "", information, config.get_attribute(item, "sslFlags"))
        goes = any(item is gone for gone in removed) or binding_key(config.get_attribute(item, "protocol") or "", information) in listed
        if endpoint is not None and endpoint in table and endpoint not in wanted_endpoints and goes:
            before.append(_ssl_call(model.name, information, "remove"))
            diff.append(Change(f"site {model.name}: HTTP.sys SSL binding {endpoint}", table[endpoint]["hash"], None))
    for endpoint, (index, binding) in wanted_endpoints.items():
        thumbprint, store = certificates.get(index, (None, None))
        if not thumbprint:
            continue  # Central Certificate Store: HTTP.sys binds per port, not per certificate
        entry = table.get(endpoint)
        if entry is not None and entry["hash"].upper() == thumbprint.upper() and entry["store"].casefold() == (store or "My").casefold():
            continue
        after.append(_ssl_call(model.name, binding.binding_information, "add" if entry is None else "rebind", thumbprint, store))
        diff.append(Change(f"site {model.name}: HTTP.sys SSL binding {endpoint}", entry["hash"] if entry else None, thumbprint.upper()))
        touched.append(binding)
    return before, after, diff, touched


def binding_edits(model: Site, iis: dict | None) -> tuple[list[Edit], list[Change], list[Binding]]:
    """Edits for the site's bindings: add a missing one, set the differing attributes of an
    existing one, remove those :func:`removed_bindings` names; each binding alone, never a clear.
    Bindings the model does not list are kept unless ``exclusive_bindings``. A binding is found
    by its meaning (:func:`pyinfra_iis.iis.adopt.binding_key`: IPv6 in any spelling, ``*``), and
    an edit addresses it as the host wrote it.

    Returns:
        ``(edits, diff, bindings added or changed)``.
    """

    site = config.find_item(config.section(iis, SITES), "site", {"name": model.name})
    holder = config.child(site, "bindings")
    path = [item_step("site", name=model.name), child_step("bindings")]
    edits: list[Edit] = []
    diff: list[Change] = []
    touched: list[Binding] = []
    existing = {binding_key(config.get_attribute(item, "protocol") or "", config.get_attribute(item, "bindingInformation") or ""): item
                for item in reversed(config.items(holder, "binding"))}
    for binding in model.present_bindings:
        item = existing.get(binding_key(binding.protocol, binding.binding_information))
        key = {"protocol": binding.protocol, "bindingInformation": binding.binding_information}
        if item is not None:  # as the host wrote it
            key = {"protocol": config.get_attribute(item, "protocol") or binding.protocol,
                   "bindingInformation": config.get_attribute(item, "bindingInformation") or binding.binding_information}
        label = f"site {model.name}: binding {binding.protocol} {binding.binding_information}"
        changes, lines = differing(item, binding_attributes(binding), BINDING, label=label)
        if item is None:
            edits.append(set_edit(SITES, [*path, item_step("binding", **key)], changes))
            diff.append(Change(label, None, "added"))
            diff += lines
            touched.append(binding)
        elif changes:
            edits += attribute_edits(SITES, [*path, item_step("binding", **key)], changes)
            diff += lines
            touched.append(binding)
    for item in removed_bindings(model, iis):
        protocol = config.get_attribute(item, "protocol") or ""
        information = config.get_attribute(item, "bindingInformation") or ""
        edits.append(remove_edit(SITES, [*path, item_step("binding", protocol=protocol, bindingInformation=information)]))
        diff.append(Change(f"site {model.name}: binding {protocol} {information}", "present", None))
    return edits, diff, touched


def site_removal(model: Site, iis: dict | None) -> tuple[list[str], list[Change]]:
    """The calls (and diff lines) that remove site ``model.name`` when the host has it: the
    HTTP.sys certificate binding of each of its https bindings (``Set-IisSslBinding`` remove,
    while the binding still exists), then ONE ``Set-IisConfig`` removing the ``<site>`` with
    its bindings, applications and virtual directories. Files are never deleted. Nothing when
    the host has no such site."""

    site = site_item(iis, model.name)
    if site is None:
        return [], []
    name = config.get_attribute(site, "name") or model.name
    table = (iis or {}).get("ssl_bindings") or {}
    calls: list[str] = []
    diff = [Change(f"site {name}", "present", None)]
    for item in config.items(config.child(site, "bindings"), "binding"):
        protocol = config.get_attribute(item, "protocol") or ""
        information = config.get_attribute(item, "bindingInformation") or ""
        diff.append(Change(f"site {name}: binding {protocol} {information}", "present", None))
        endpoint = httpsys.binding_endpoint(protocol, information, config.get_attribute(item, "sslFlags"))
        if endpoint is not None and endpoint in table:
            calls.append(_ssl_call(name, information, "remove"))
            diff.append(Change(f"site {name}: HTTP.sys SSL binding {endpoint}", table[endpoint]["hash"], None))
    for app in config.items(site, "application"):
        path = config.get_attribute(app, "path") or "/"
        if path != "/":
            diff.append(Change(f"site {name}: application {path}", "present", None))
    calls.append(remote_call("Set-IisConfig", {"edits": [remove_edit(SITES, [item_step("site", name=name)])]}))
    return calls, diff


def anonymous_auth_edits(model: Site, iis: dict | None, serves_release: bool = False) -> tuple[list[Edit], list[Change]]:
    """``anonymousAuthentication`` at ``<location path="site">``: enabled, ``userName=""`` (the
    pool identity) when the model asks for it (docs/field-facts.md, IIS); on an existing site
    only when the inventory gives ``anonymous_auth_as_pool_identity``."""

    exists = config.find_item(config.section(iis, SITES), "site", {"name": model.name}) is not None
    if model.anonymous_user_name is None or not anonymous_auth_wanted(model, exists, serves_release):
        return [], []
    wanted = {"enabled": "true", "userName": model.anonymous_user_name}
    at_location = config.section(iis, ANONYMOUS_AUTH, location=model.name)
    server = config.section(iis, ANONYMOUS_AUTH)
    # Effective: the location's explicit value, else the server level's, else the schema's.
    changes, diff = differing(at_location, wanted, ANONYMOUS_AUTH_ATTRS, defaults_element=server, label=f"site {model.name}: anonymousAuthentication")
    return attribute_edits(ANONYMOUS_AUTH, [], changes, location=model.name), diff


def resolve_certificate(binding: Binding, certificates: Iterable[Certificate], fact: dict, what: str) -> tuple[str, str, CertificateInfo]:
    """Return ``(thumbprint, store, info)`` of an https binding's certificate.

    A name refers to an ``iis_certificates`` entry (its PFX on the controller gives the
    thumbprint, and the facts when it is not imported yet); a thumbprint must be in the store.

    Raises:
        OperationError: unknown name, or a thumbprint that is not in the store.
    """

    thumbprint = binding.certificate_thumbprint
    if thumbprint is None:
        entry = next((c for c in certificates if c.name.lower() == str(binding.certificate).lower()), None)
        if entry is None:
            raise OperationError(f"{what}: certificate {binding.certificate!r} is not in the certificates given to the operation")
        local = pfx_info(entry)
        store = binding.certificate_store or entry.store
        found = fact_certificate(fact, local.thumbprint, store)
        return local.thumbprint, store, info_of_fact_entry(found) if found else local
    store = binding.certificate_store or "My"
    found = fact_certificate(fact, thumbprint, store)
    if found is None:
        raise OperationError(f"{what}: certificate {thumbprint} is not in Cert:\\LocalMachine\\{store}")
    return thumbprint, store, info_of_fact_entry(found)


def _path_exists(fact: dict, path: str) -> bool | None:
    for name, entry in (fact.get("acls") or {}).items():
        if name.lower() == path.lower():
            return bool((entry or {}).get("exists"))
    return None


@operation()
def site(
    site: Site | dict | None = None,
    certificates: Iterable[Certificate | dict] = (),
    *,
    site_name: str | None = None,
    present: bool = True,
    physical_path: str | None = None,
    app_pool: str | None = None,
    bindings: Sequence[Binding | Mapping[str, Any]] | None = None,
    log_directory: str | None = None,
    preload_enabled: bool | None = None,
    anonymous_auth_as_pool_identity: bool | None = None,
    state: Literal["Started", "Stopped"] | None = None,
    site_id: int | None = None,
    exclusive_bindings: bool | None = None,
    serves_release: bool = False,
):
    """
    Create or update a site, its root application and virtual directory, its bindings, its
    anonymous authentication and log directory, then bring it to its runtime state.

    Give the site either as keyword arguments (pyinfra style) or as one model:

    + site_name: the site's name (required in the keyword form). Not ``name``: pyinfra takes
      ``name=`` for the operation's label before the operation sees it.
    + present: ``False`` removes the site (give only ``site_name``): its HTTP.sys certificate
      bindings, then the ``<site>`` element with its bindings, applications and virtual
      directories. The site's FILES ARE NEVER DELETED (its physical path, logs): nothing in
      pyinfra-iis deletes them; remove them yourself if you want them gone. Default true.
    + physical_path: root folder on the host (required), e.g. ``C:\\sites\\api\\current``.
    + app_pool: the root application's pool (required).
    + bindings: at least one; each a dict or ``Binding``: ``protocol`` (http/https), ``ip``
      (``*``), ``port`` (80/443), ``host_name`` (``""``), ``ssl_flags``, ``certificate`` (a
      name from ``certificates`` or a thumbprint in the store), ``certificate_store``,
      ``present`` (``False``: remove this binding when the site has it).
    + exclusive_bindings: ``True`` removes every binding of the site the list does not name
      (default false: unlisted bindings are kept).
    + log_directory: ``logFile/@directory``; default IIS's.
    + preload_enabled: default true; anonymous_auth_as_pool_identity: default true.
    + state: ``Started`` (default) or ``Stopped``.
    + site_id: the site id (the model's ``id``); default: the next free id.
    + site: instead of the keywords, a ``Site`` model or dict (host data ``iis_sites`` entry;
      the ``Configure IIS`` deploy uses this form). Giving both is an error.
    + certificates: the ``Certificate`` models (or dicts) binding ``certificate`` names refer
      to (host data ``iis_certificates``).
    + serves_release: the site serves the host's release (the ``Configure IIS`` deploy sets it
      for the site of the release's pool): an existing site then also gets ``serverAutoStart``,
      the runtime state and anonymous authentication as the pool identity; default false.

    Declared-only (issue 10; docs/design.md "Adopting a server"): a site the operation CREATES
    gets the defaults below; an existing site gets its pool and physical path and only the other
    keys given, keeps its runtime state unless ``state`` is given, and keeps the bindings the
    model does not list. Bindings match by meaning (IPv6 in any spelling); ``physical_path`` and
    ``log_directory`` may start with ``%SystemDrive%`` and compare by their expansion on the host.
    A binding another site on the host holds (a site not in the host's ``iis_sites``) raises
    ``OperationError`` naming both sites.

    Keyword values are validated by the ``Site`` model, with its defaults and messages.

    A binding is added, changed or removed alone; the others are never touched. Before an
    https binding is added or changed its certificate is checked: present (or imported in this
    run from a PFX of ``certificates``), with a private key, within its validity, covering the
    binding's host name (wildcards included); a certificate expiring within 30 days is warned
    about. All configuration edits go in ONE ``Set-IisConfig``; the certificate of each https
    binding is then put into HTTP.sys with ``Set-IisSslBinding`` when HTTP.sys lacks it or holds
    another one (nothing when it matches).

    **Example:**

    .. code:: python

        site(name="API site", site_name="api", physical_path=r"C:\\sites\\api\\current",
             app_pool="api", bindings=[{"protocol": "http", "port": 80}])
    """

    model = from_arguments(Site, site, "site", {
        "site_name": site_name, "physical_path": physical_path, "app_pool": app_pool, "bindings": bindings,
        "log_directory": log_directory, "preload_enabled": preload_enabled,
        "anonymous_auth_as_pool_identity": anonymous_auth_as_pool_identity, "state": state, "site_id": site_id,
        "exclusive_bindings": exclusive_bindings, "present": None if present is True else present,
    }, {"site_name": "name", "site_id": "id"})
    if not model.present:
        calls, diff = site_removal(model, iis_of(host_state(host)))
        if not calls:
            host.noop(f"site {model.name} is absent")
            return
        log_changes(host, f"Will remove site {model.name} (its files stay)", diff)
        yield from calls
        return
    cert_models = [validated(Certificate, c, "certificates") for c in certificates]
    fact = host_state(host)
    iis = iis_of(fact)
    managed = [entry.get("name", "") for entry in (host.data.get("iis_sites") or []) if isinstance(entry, dict)]
    conflicts = host_binding_conflicts(model, iis, managed)
    if conflicts:
        raise OperationError(f"{host.name}: " + "; ".join(conflicts))
    resolved: dict[int, tuple[str | None, str | None]] = {}
    infos: dict[int, CertificateInfo] = {}
    for index, binding in enumerate(model.bindings):
        if binding.protocol == "https" and binding.certificate:
            what = f"site {model.name} binding {binding.binding_information}"
            thumbprint, store, info = resolve_certificate(binding, cert_models, fact, what)
            resolved[index] = (thumbprint, store)
            infos[index] = info
    edits, diff = site_edits(model, iis, serves_release)
    more, lines, touched = binding_edits(model, iis)
    edits += more
    diff += lines
    ssl_before, ssl_after, lines, ssl_touched = ssl_binding_calls(model, iis, resolved)
    diff += lines
    touched += ssl_touched
    warnings: list[str] = []
    for index, binding in enumerate(model.bindings):
        if index in infos:
            what = f"site {model.name} binding {binding.binding_information}"
            try:
                warnings += check_for_binding(infos[index], binding.host_name, what)
            except OperationError as exc:
                if binding in touched:
                    raise
                warnings.append(f"{exc} (binding left as it is)")
    if warnings and once_per_run():
        warn(warnings)
    more, lines = anonymous_auth_edits(model, iis, serves_release)
    edits += more
    diff += lines
    commands = []
    if model.log_directory and "%" not in model.log_directory and _path_exists(fact, model.log_directory) is not True:
        diff.append(Change(f"site {model.name}: log directory {model.log_directory}", None, "created"))
        commands.append(remote_call("Initialize-Directory", {"path": model.log_directory}))
    commands += ssl_before
    if edits:
        commands.append(remote_call("Set-IisConfig", {"edits": edits}))
    commands += ssl_after
    runtime = ((iis or {}).get("runtime") or {}).get("sites") or {}
    current_state = next((value for name, value in runtime.items() if name.lower() == model.name.lower()), None)
    exists = config.find_item(config.section(iis, SITES), "site", {"name": model.name}) is not None
    if current_state != model.state and site_runtime_wanted(model, exists, serves_release):
        diff.append(Change(f"site {model.name}: state", current_state, model.state))
        commands.append(remote_call_runtime(sites={model.name: model.state}))
    if not commands:
        host.noop(f"site {model.name} is configured" + (f" and {model.state}" if current_state == model.state else ""))
        return
    log_changes(host, f"Will change site {model.name}", diff)
    yield from commands
