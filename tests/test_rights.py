"""Least privilege over time (issue 10) and removal of certificates, on a simulated host.

Each step reads the host with the simulator's ``Get-HostState`` (converted as the fact does),
runs the operation generator against it (``operations.testing.run_operation``) and executes the
yielded calls on the simulated host, so the record, the revocations and the removals are the
simulator twins' real behaviour.
"""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyinfra.api.exceptions import OperationError

from pyinfra_iis.models import InventoryError, load_host_config
from pyinfra_iis.operations.acl import acl
from pyinfra_iis.operations.certificates import certificate, private_key_access, removal_problems
from pyinfra_iis.operations.rights import GRANT_FOLDER, GRANT_RECORD, granted_rights, key_grant, path_grant
from pyinfra_iis.operations.testing import run_operation
from pyinfra_iis.protocol import parse_remote_call
from pyinfra_iis.sddl import app_pool_sid
from pyinfra_iis.sim.functions import call
from pyinfra_iis.sim.functions.acl import acl_store, set_owner
from pyinfra_iis.sim.functions.certificates import find_certificate
from support.sim_calls import iis_host, run

ROOT, OTHER = "C:\\sites\\api", "C:\\sites\\other"
PATHS = [ROOT, OTHER]
API, API2 = "IIS AppPool\\api", "IIS AppPool\\api2"
PASSWORD = "pfx-pass"


@pytest.fixture
def sim(tmp_path):
    host = iis_host(tmp_path / "web01", pools=["api", "api2"])
    for path in PATHS:
        run(host, "Initialize-Directory", {"path": path})
    return host


@pytest.fixture
def pfx(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.example.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "api.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"api", key, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode())))
    return path, cert.fingerprint(hashes.SHA1()).hex().upper()


def fact_of(sim) -> dict:
    return run(sim, "Get-HostState", {"acl_paths": PATHS, "cert_stores": ["My", "WebHosting"]})


def step(sim, op, *args, diff=False, execute=True, **kwargs):
    """Run an operation against the host's current state, then (``execute``) its calls on the host."""

    result = run_operation(op._inner, fact_of(sim), *args, diff=diff, **kwargs)
    if execute:
        for command in result.commands:
            function, payload = parse_remote_call(command)
            call(sim, function, payload, {})
    return result


def explicit(sim, path: str) -> dict[str, int]:
    """SID -> mask of the explicit Allow entries on ``path``."""

    with sim.lock:
        acl_entry = acl_store(sim).get(path.lower()) or {"entries": []}
        return {e["sid"]: e["mask"] for e in acl_entry["entries"] if e["type"] == "Allow"}


def recorded(sim) -> list[tuple[str, str, str]]:
    grants = json.loads(sim.path(GRANT_RECORD).read_text(encoding="utf-8"))["grants"]
    return [(g["kind"], g["target"], g["sid"]) for g in grants]


def logged(result) -> list[str]:
    return [line.strip() for line in result.logs]


def grant(sim, path, principal, rights="ReadAndExecute"):
    step(sim, acl, path=path, principal=principal, rights=rights)


def test_a_pool_change_revokes_what_was_granted_to_the_old_pool_and_keeps_hand_made_entries(sim):
    grant(sim, ROOT, API)
    first = step(sim, granted_rights, grants=[path_grant({"path": ROOT, "principal": API, "rights": "ReadAndExecute"})])
    assert [parse_remote_call(c)[0] for c in first.commands] == ["Initialize-Directory", "Write-TextFile"]
    assert recorded(sim) == [("path", ROOT, app_pool_sid("api"))]
    # The record's folder is administrators-only (protected: SYSTEM and Administrators).
    assert set(explicit(sim, GRANT_FOLDER)) == {"S-1-5-18", "S-1-5-32-544"} and acl_store(sim)[GRANT_FOLDER.lower()]["protected"]
    # An operator's own entries: another account on the root, the old pool where the project granted nothing.
    run(sim, "Grant-PathAccess", {"path": ROOT, "principal": "BUILTIN\\Users", "rights": "Read"})
    run(sim, "Grant-PathAccess", {"path": OTHER, "principal": API, "sid": app_pool_sid("api"), "rights": "Read"})

    grant(sim, ROOT, API2)
    wanted = [path_grant({"path": ROOT, "principal": API2, "rights": "ReadAndExecute"})]
    dry = step(sim, granted_rights, grants=wanted, diff=True, execute=False)
    assert f"{ROOT}: {API}: 'ReadAndExecute' -> (absent)" in logged(dry)
    assert f"record of granted rights: {ROOT}: {API2}: (absent) -> 'ReadAndExecute'" in logged(dry)
    assert app_pool_sid("api") in explicit(sim, ROOT)  # the dry run changed nothing
    result = step(sim, granted_rights, grants=wanted)
    assert [parse_remote_call(c)[0] for c in result.commands] == ["Revoke-PathAccess", "Initialize-Directory", "Write-TextFile"]
    assert app_pool_sid("api") not in explicit(sim, ROOT)
    assert app_pool_sid("api2") in explicit(sim, ROOT)
    assert "S-1-5-32-545" in explicit(sim, ROOT)  # BUILTIN\Users, by hand: kept
    assert app_pool_sid("api") in explicit(sim, OTHER)  # never granted by the project: kept
    assert recorded(sim) == [("path", ROOT, app_pool_sid("api2"))]
    assert step(sim, granted_rights, grants=wanted).commands == []  # then nothing to do


def test_without_a_record_nothing_is_revoked(sim):
    grant(sim, ROOT, API)  # granted by an older version, which kept no record
    grant(sim, ROOT, API2)
    result = step(sim, granted_rights, grants=[path_grant({"path": ROOT, "principal": API2, "rights": "ReadAndExecute"})])
    assert "Revoke-PathAccess" not in [parse_remote_call(c)[0] for c in result.commands]
    assert app_pool_sid("api") in explicit(sim, ROOT)
    assert recorded(sim) == [("path", ROOT, app_pool_sid("api2"))]


def test_an_entry_changed_by_hand_since_it_was_granted_is_left_with_a_warning(sim):
    grant(sim, ROOT, API)
    step(sim, granted_rights, grants=[path_grant({"path": ROOT, "principal": API, "rights": "ReadAndExecute"})])
    run(sim, "Grant-PathAccess", {"path": ROOT, "principal": API, "sid": app_pool_sid("api"), "rights": "Modify"})
    result = step(sim, granted_rights, grants=[])
    assert "Revoke-PathAccess" not in [parse_remote_call(c)[0] for c in result.commands]
    assert any("left as it is" in line and "changed by hand" in line for line in result.logs), result.logs
    assert app_pool_sid("api") in explicit(sim, ROOT)
    assert recorded(sim) == []  # forgotten: never revoked later either


def test_a_record_in_a_folder_another_account_owns_is_ignored_and_an_unreadable_one_revokes_nothing(sim):
    grant(sim, ROOT, API)
    step(sim, granted_rights, grants=[path_grant({"path": ROOT, "principal": API, "rights": "ReadAndExecute"})])
    assert fact_of(sim)["granted"] is not None
    set_owner(sim, GRANT_FOLDER, "web01\\mallory")
    assert fact_of(sim)["granted"] is None
    set_owner(sim, GRANT_FOLDER, "BUILTIN\\Administrators")
    sim.path(GRANT_RECORD).write_text("{not json", encoding="utf-8")
    fact = fact_of(sim)
    assert fact["granted"] is None and "unreadable" in fact["grant_record_error"]
    result = step(sim, granted_rights, grants=[])
    assert "Revoke-PathAccess" not in [parse_remote_call(c)[0] for c in result.commands]
    assert app_pool_sid("api") in explicit(sim, ROOT)


def cert_model(pfx, **extra):
    return {"name": "api", "pfx": str(pfx[0]), "password": PASSWORD, **extra}


def key_file(sim, thumbprint):
    return find_certificate(sim, "My", thumbprint)["key_file"]


def test_a_pool_change_moves_the_private_key_reader(sim, pfx):
    thumbprint = pfx[1]
    step(sim, certificate, certificate=cert_model(pfx))
    step(sim, private_key_access, certificate=cert_model(pfx), principals=[API])
    step(sim, granted_rights, grants=[key_grant(thumbprint, "My", API)])
    assert recorded(sim) == [("key", thumbprint, app_pool_sid("api"))]
    step(sim, private_key_access, certificate=cert_model(pfx), principals=[API2])
    result = step(sim, granted_rights, grants=[key_grant(thumbprint, "My", API2)], diff=True)
    assert f"certificate {thumbprint} private key: {API}: 'Read' -> (absent)" in logged(result)
    readers = explicit(sim, key_file(sim, thumbprint))
    assert app_pool_sid("api") not in readers and app_pool_sid("api2") in readers
    assert {"S-1-5-18", "S-1-5-32-544"} <= set(readers)  # the key's own entries stay
    assert recorded(sim) == [("key", thumbprint, app_pool_sid("api2"))]


def test_certificate_removal_dry_run_then_run_then_nothing(sim, pfx):
    thumbprint = pfx[1]
    step(sim, certificate, certificate=cert_model(pfx))
    key = key_file(sim, thumbprint)
    absent = {"name": "api", "thumbprint": thumbprint, "ensure": "absent"}
    dry = step(sim, certificate, certificate=absent, diff=True, execute=False)
    assert f"certificate api: '{thumbprint} in My' -> (absent)" in logged(dry)
    assert [parse_remote_call(c) for c in dry.commands] == [("Remove-IisCertificate", {"thumbprint": thumbprint, "store": "My"})]
    assert find_certificate(sim, "My", thumbprint) is not None  # the dry run removed nothing
    step(sim, certificate, certificate=absent)
    assert find_certificate(sim, "My", thumbprint) is None
    assert not sim.path(key).exists()  # the private key went with it
    assert step(sim, certificate, certificate=absent).commands == []
    # The keyword form, from the PFX instead of the thumbprint.
    assert step(sim, certificate, certificate_name="api", pfx=str(pfx[0]), password=PASSWORD, present=False).commands == []


def test_certificate_removal_is_refused_while_a_binding_uses_it(sim, pfx):
    thumbprint = pfx[1]
    step(sim, certificate, certificate=cert_model(pfx))
    fact = fact_of(sim)
    fact["iis"]["ssl_bindings"] = {"0.0.0.0:443": {"kind": "ipport", "hash": thumbprint, "store": "MY", "appid": ""}}
    absent = {"name": "api", "thumbprint": thumbprint, "ensure": "absent"}
    with pytest.raises(OperationError, match="0.0.0.0:443 still use it"):
        run_operation(certificate._inner, fact, certificate=absent)
    # Before anything runs: a declared https binding naming it is an inventory error...
    site = {"name": "api", "physical_path": ROOT, "app_pool": "api",
            "bindings": [{"protocol": "https", "port": 443, "certificate": "api"}]}
    with pytest.raises(InventoryError, match="is to be removed but this binding uses it"):
        load_host_config("web01", {"iis_app_pools": [{"name": "api"}], "iis_sites": [site], "iis_certificates": [absent]})
    # ...and so is an HTTP.sys binding the inventory does not move to another certificate.
    config = load_host_config("web01", {"iis_app_pools": [{"name": "api"}], "iis_certificates": [absent]})
    assert removal_problems(config, fact) == [(0, f"certificate api ({thumbprint}) is to be removed but HTTP.sys SSL binding(s) 0.0.0.0:443 use it")]
    moved = {**site, "bindings": [{"protocol": "https", "port": 443, "certificate": "AB" * 20}]}
    config = load_host_config("web01", {"iis_app_pools": [{"name": "api"}], "iis_sites": [moved], "iis_certificates": [absent]})
    assert removal_problems(config, fact) == []  # the site operation rebinds it first
    data = {"iis_app_pools": [{"name": "api"}], "iis_sites": [moved], "iis_certificates": [absent]}
    planned = run_operation(certificate._inner, fact, certificate=absent, host_data=data)  # plan time: the removal is planned
    assert [parse_remote_call(c)[0] for c in planned.commands] == ["Remove-IisCertificate"]


def test_an_acl_rule_to_remove_may_name_a_pool_the_inventory_no_longer_defines():
    rule = {"path": ROOT, "principal": "IIS AppPool\\gone", "rights": "Read"}
    with pytest.raises(InventoryError, match="not defined in iis_app_pools"):
        load_host_config("web01", {"iis_acls": [rule]})
    assert load_host_config("web01", {"iis_acls": [{**rule, "ensure": "absent"}]}).acls[0].ensure == "absent"


def test_a_certificate_to_remove_needs_its_thumbprint_or_pfx():
    with pytest.raises(InventoryError, match="thumbprint"):
        load_host_config("web01", {"iis_certificates": [{"name": "api", "ensure": "absent"}]})
    with pytest.raises(InventoryError, match="pfx and password are required"):
        load_host_config("web01", {"iis_certificates": [{"name": "api"}]})


def test_acl_absent_removes_only_the_principals_explicit_allow_entries_and_create_false_skips_a_missing_folder(sim):
    grant(sim, ROOT, API)
    run(sim, "Grant-PathAccess", {"path": ROOT, "principal": "BUILTIN\\Users", "rights": "Read"})
    step(sim, acl, path=ROOT, principal=API, rights="ReadAndExecute", present=False)
    assert app_pool_sid("api") not in explicit(sim, ROOT) and "S-1-5-32-545" in explicit(sim, ROOT)
    missing = "C:\\sites\\api\\releases"
    result = run_operation(acl._inner, run(sim, "Get-HostState", {"acl_paths": [missing]}),
                           rule={"path": missing, "principal": API, "rights": "ReadAndExecute"}, create=False)
    assert result.commands == [] and not sim.path(missing).exists()


def test_a_run_cut_between_the_revocation_and_the_record_is_finished_by_the_next_run(sim):
    grant(sim, ROOT, API)
    step(sim, granted_rights, grants=[path_grant({"path": ROOT, "principal": API, "rights": "ReadAndExecute"})])
    grant(sim, ROOT, API2)  # granted; the run stops before its record step
    wanted = [path_grant({"path": ROOT, "principal": API2, "rights": "ReadAndExecute"})]
    cut = step(sim, granted_rights, grants=wanted, execute=False)
    function, payload = parse_remote_call(cut.commands[0])
    assert function == "Revoke-PathAccess"
    call(sim, function, payload, {})  # the revocation ran, then the run failed: the record is the old one
    assert recorded(sim) == [("path", ROOT, app_pool_sid("api"))]
    rerun = step(sim, granted_rights, grants=wanted)
    assert [parse_remote_call(c)[0] for c in rerun.commands] == ["Initialize-Directory", "Write-TextFile"]  # nothing left to revoke
    assert recorded(sim) == [("path", ROOT, app_pool_sid("api2"))]
    assert app_pool_sid("api") not in explicit(sim, ROOT) and app_pool_sid("api2") in explicit(sim, ROOT)
