"""Read a host for the doctor: one ``Get-HostState`` and one ``Get-DoctorState``, both read-only
(in ARR mode a third, ``Get-AppServiceState`` of the two slots' services).

``call(function, payload) -> dict`` runs one remote call and returns its JSON answer: from a
pyinfra ``FunctionCommand`` it is :func:`pyinfra_iis.operations._common.call_host`; in tests, the
simulator's function run in-process (:func:`pyinfra_iis.sim.doctor_faults.local_call`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ntpath
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from ..facts import acl_state
from ..facts.host_state import DEFAULT_CERT_STORES, convert_host_state
from ..iis.appconfig import AppHostConfig, ConfigError
from ..iis.httpsys import binding_endpoint
from ..protocol import Secret, digest_key_argument
from ..sddl import IIS_IUSRS, USERS
from .model import Evidence, Target, probe_value, split_binding

Call = Callable[[str, dict], dict]

#: Stores read: the two IIS binds from, and CA / Root to follow a chain.
CERT_STORES = (*DEFAULT_CERT_STORES, "CA", "Root")
#: Local groups whose members the doctor asks for (the pool token's group membership).
GROUPS = (IIS_IUSRS, USERS)
#: Bytes of the stdout log's end that are read (the host reads no more).
LOG_BYTES = 4096
#: WAS events: how far back (minutes) and how many at most.
EVENT_MINUTES = 60
EVENT_MAX = 50


def target_from_host_data(name: str, data: Mapping[str, Any]) -> Target:
    """What the inventory names for host ``name`` (``iis_*`` and ``release_*`` data).

    A host with several apps (``release_apps``) is checked for the one ``release_only`` names
    (``--data release_only=admin``), else for the first; the log tails are redacted of every
    app's secrets.

    Raises:
        pyinfra_iis.inventory_check.InventoryError: the data does not validate (the same report as
            the deploys give).
    """

    from ..deploys.release import load_release_configs
    from ..models import load_host_config

    target = Target(host=name)
    iis = load_host_config(name, dict(data)) if any(str(k).startswith("iis_") for k in data) else None
    if iis is not None:
        target.sites = [site.name for site in iis.sites]
        target.extensions = [ext.product for ext in getattr(iis, "extensions", [])]
        target.certificates = _binding_certificates(iis)
    releases = load_release_configs(dict(data), name, environ={}, rollback=True)
    release = releases[0] if releases else None
    if release is not None:
        settings = release.app
        target.site = release.site
        site = next((s for s in (iis.sites if iis is not None else []) if s.name.casefold() == release.site.casefold()), None)
        target.pool = release.app_pool or (site.app_pool if site is not None else None)
        target.root = settings.root
        target.health_path = settings.health_check_path
        target.health_deadline = float(settings.health_deadline.seconds)
        target.python_version = settings.python_version
        target.python_dir = release.python.target_dir
        every = load_release_configs({k: v for k, v in data.items() if k != "release_only"}, name, environ={}, rollback=True)
        target.secrets = tuple(value for one in every for value in one.app.app_secrets.values())  # SecretStr: masked in any repr
        target.mode, target.settings = settings.mode, settings
    return target


def _binding_certificates(iis: Any) -> dict[str, tuple[str, str]]:
    """Each https binding's inventory certificate: its name and the thumbprint of its PFX (read
    here; a PFX that cannot be opened is left out: the site deploy reports it)."""

    from ..operations.certificates import pfx_info

    result = {}
    for site in iis.sites:
        for binding in site.bindings:
            model = iis.certificate(binding.certificate) if binding.protocol == "https" and binding.certificate else None
            if model is None:
                continue
            try:
                thumbprint = pfx_info(model).thumbprint
            except Exception:  # noqa: BLE001 - missing file or wrong password: reported by deploys/site.py
                continue
            result[f"{site.name}|{binding.binding_information}".casefold()] = (model.name, thumbprint)
    return result


def host_state_payload(target: Target) -> dict[str, Any]:
    """The ``Get-HostState`` argument: certificate stores with CA and Root, the release root and
    the Python version of the target (ACLs are asked from ``Get-DoctorState``)."""

    payload: dict[str, Any] = {"digest_key": Secret(digest_key_argument()), "acl_paths": [], "cert_stores": list(CERT_STORES)}
    if target.root:
        payload["release_roots"] = [target.root]
    if target.python_version:
        payload["python_versions"] = [target.python_version]
    return payload


def _request(evidence: Evidence) -> dict[str, Any] | None:
    """The health request through the target site's binding: https first (with the host name and
    the HTTP.sys certificate's hash, so the handshake is accepted as in ``Switch-Release``)."""

    site = evidence.target.site
    bindings = evidence.bindings(site) if site else []
    ordered = sorted(bindings, key=lambda b: b.get("protocol", "") != "https")
    ssl = ((evidence.state.get("iis") or {}).get("ssl_bindings")) or {}
    for binding in ordered:
        protocol = binding.get("protocol", "").casefold()
        ip, port, host_name = split_binding(binding.get("bindingInformation", ""))
        if protocol not in ("http", "https") or not port.isdigit():
            continue
        address = "127.0.0.1" if ip in ("", "*", "0.0.0.0") else ip  # a binding to one address answers there only
        request = {"url": f"{protocol}://{address}:{port}{evidence.target.health_path}", "host": host_name or "localhost"}
        if protocol == "https":
            entry = ssl.get(binding_endpoint("https", binding.get("bindingInformation", ""), binding.get("sslFlags")) or "")
            if entry:
                request["certificate_hash"] = entry["hash"]
        return request
    return None


def doctor_payload(evidence: Evidence) -> dict[str, Any]:
    """The ``Get-DoctorState`` argument for what ``evidence`` (the host state) shows."""

    from .access import paths_of
    from .system import bound_ports

    paths = paths_of(evidence)
    acl_paths = [p for p in (paths["release"], paths["venv"], paths["web_config"], paths["python"], paths["logs"]) if p]
    if evidence.target.arr:  # ARR mode: the pool reads the empty wwwroot (and its web.config, if any)
        acl_paths.append(ntpath.dirname(paths["web_config"]))
    root = evidence.target.root or ""
    return {
        "acl_paths": acl_paths,
        "web_config": paths["web_config"] or "",
        "log_folder": paths["logs"] or "",
        "log_bytes": LOG_BYTES,
        "disk_path": root or "C:\\",
        "ports": bound_ports(evidence),
        "groups": list(GROUPS),
        "process_filter": root,
        "event_minutes": EVENT_MINUTES,
        "event_max": EVENT_MAX,
        "request": _request(evidence) if evidence.target.site else None,
    }


def _raw_certificates(raw: dict[str, Any]) -> dict[tuple[str, str], tuple[bytes, str | None]]:
    """(store, thumbprint) → (DER, the key file's SDDL): what the converted fact does not keep."""

    result = {}
    for entry in raw.get("certificates") or []:
        try:
            der = base64.b64decode(entry.get("der", ""), validate=True)
        except (binascii.Error, ValueError):
            continue
        result[(str(entry.get("store", "")).casefold(), hashlib.sha1(der).hexdigest().upper())] = (der, entry.get("key_sddl"))
    return result


def _now(text: Any) -> datetime:
    try:
        return datetime.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.now(timezone.utc)


def gather(call: Call, target: Target) -> Evidence:
    """Read the host (two read-only calls; a third, ``Get-AppServiceState``, in ARR mode) and return the :class:`Evidence` the checks take.

    Raises:
        whatever ``call`` raises (a failed call); ``FactProcessError`` for a host whose IIS uses
        shared configuration (as the deploys).
    """

    raw = call("Get-HostState", host_state_payload(target))
    config_text = (raw.get("iis") or {}).get("config")
    kept = _raw_certificates(raw)
    state = convert_host_state(raw)
    for cert in state.get("certificates") or []:
        cert["_der"], cert["key_sddl"] = kept.get((str(cert.get("store", "")).casefold(), cert.get("thumbprint", "")), (None, None))
    try:
        config = AppHostConfig.from_text(config_text) if config_text else None
    except ConfigError:
        config = None
    evidence = Evidence(target, state, config, {}, datetime.now(timezone.utc))
    answer = call("Get-DoctorState", doctor_payload(evidence))
    acls = {}
    for path, report in (answer.get("acls") or {}).items():
        _, error = probe_value(report)
        if error is not None:  # this path could not be read: path_check says so
            acls[path] = {"error": error}
            continue
        acls[path] = {**acl_state.convert_path(report), "sddl": report.get("sddl"), "sids": report.get("sids") or {}} \
            if report.get("exists") else {"exists": False}
    answer["acls"] = acls
    if target.arr:  # ARR mode: the slots' Windows services (95-services.ps1, read-only)
        from .arr import service_names

        try:
            answer["services"] = call("Get-AppServiceState", {"names": list(service_names(target).values())}).get("services") or {}
        except Exception as exc:  # noqa: BLE001 - as a part Get-DoctorState could not read: arr.service warns, the rest runs
            answer["services"] = {"error": str(exc) or type(exc).__name__}
    evidence.doctor = answer
    evidence.now = _now(answer.get("now"))
    return evidence
