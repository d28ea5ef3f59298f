"""Inventory validation as a whole: every problem of every host in one report, named by host
and field path, with the reason; secrets never shown; cross-checks between parts."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pyinfra_iis.models import AppPool, Certificate, IisHostConfig, InventoryError, load_host_config, validate_inventory

SHA = "ab" * 32
POOL_SECRET = "pool-env-secret-7f3a"
PFX_SECRET = "pfx-password-secret-91c2"


def valid_host() -> dict:
    """A complete, valid host: HttpPlatformHandler, one pool, one site with http+https."""

    return {
        "winrm_user": "deploy",  # not ours: ignored
        "iis_extensions": [{"product": "HttpPlatformHandler", "source": "https://downloads.example.com/httpPlatformHandler_amd64.msi", "sha256": SHA}],
        "iis_app_pools": [{"name": "api", "environment_variables": {"SECRET_KEY": POOL_SECRET}}],
        "iis_sites": [
            {
                "name": "api",
                "physical_path": "C:\\inetpub\\api",
                "app_pool": "api",
                "bindings": [
                    {"protocol": "http", "host_name": "api.example.com"},
                    {"protocol": "https", "host_name": "api.example.com", "certificate": "api"},
                ],
            }
        ],
        "iis_certificates": [{"name": "api", "pfx": "certs/api.pfx", "password": PFX_SECRET}],
        "iis_acls": [{"path": "C:\\inetpub\\api", "principal": "IIS AppPool\\api", "rights": ["ReadAndExecute"]}],
    }


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']+)'\]")


def set_path(data: dict, path: str, value) -> None:
    """Set ``data`` at ``iis_sites[0].bindings[1].port``-style ``path`` (creating dicts)."""

    keys = [m.group(1) or (int(m.group(2)) if m.group(2) else m.group(3)) for m in _PART.finditer(path)]
    target = data
    for key in keys[:-1]:
        if isinstance(key, str) and key not in target:
            target[key] = {}
        target = target[key]
    target[keys[-1]] = value


def problems_of(data: dict):
    report = validate_inventory([("web-01", data)], check_files=False)
    return report.problems


def test_valid_host_has_no_problem_and_gives_a_config():
    report = validate_inventory([("web-01", valid_host())], check_files=False)
    assert report.ok, report.format()
    config = report.configs["web-01"]
    assert config.sites[0].bindings[1].ssl_flags == 1  # Sni by default with a host name
    assert config.pool("API") is config.app_pools[0]
    assert report.format() == "Inventory OK: 1 host(s) validated."


# (path, bad value, expected reported field, words of the reason)
INVALID = [
    ("iis_sites[0].bindings[0].port", 0, None, "greater than or equal to 1"),
    ("iis_sites[0].bindings[0].port", 70000, None, "less than or equal to 65535"),
    ("iis_sites[0].bindings[0].port", True, None, "boolean"),
    ("iis_sites[0].bindings[0].port", "eighty", None, "valid integer"),
    ("iis_sites[0].bindings[0].host_name", "-api.example.com", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].host_name", "api..example.com", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].host_name", "10.0.0.1", None, "IP address"),
    ("iis_sites[0].bindings[0].host_name", "api.example.com\nHost: evil", None, "control characters"),
    ("iis_sites[0].bindings[0].host_name", "my_api.example.com", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].host_name", "*", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].host_name", "a" * 64 + ".example.com", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].host_name", "api.example.com;calc", None, "RFC 1123"),
    ("iis_sites[0].bindings[0].ip", "localhost", None, "neither '*'"),
    ("iis_sites[0].bindings[0].protocol", "ftp", None, "'http' or 'https'"),
    ("iis_sites[0].bindings[1].ssl_flags", 128, None, "outside 0-127"),
    ("iis_sites[0].bindings[1].ssl_flags", ["Sni", "Http3"], None, "unknown sslFlags name"),
    ("iis_sites[0].bindings[1].ssl_flags", True, None, "not a boolean"),
    ("iis_sites[0].physical_path", "inetpub\\api", None, "not an absolute drive path"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\..\\Windows", None, "'..' segment"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\a<b", None, "Windows refuses"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\api\nRemove-Item C:\\", None, "control characters"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\con", None, "reserved device name"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\NUL.txt", None, "reserved device name"),
    ("iis_sites[0].physical_path", "C:\\inetpub\\api.", None, "ends with a dot"),
    ("iis_sites[0].physical_path", "C:\\" + "abcd\\" * 60 + "x", None, "MAX_PATH"),
    ("iis_sites[0].physical_path", 'C:\\inetpub\\a"b', None, "Windows refuses"),
    ("iis_sites[0].name", "api/v1", None, "refused by IIS"),
    ("iis_sites[0].name", "api'; Remove-Website x; '", None, "quotes, backtick"),
    ("iis_sites[0].name", " api", None, "whitespace"),
    ("iis_sites[0].name", "", None, "empty"),
    ("iis_app_pools[0].name", "api;rm", None, "refused by IIS"),
    ("iis_app_pools[0].name", "a'pi", None, "quotes, backtick"),
    ("iis_app_pools[0].name", "api`n", None, "quotes, backtick"),
    ("iis_app_pools[0].name", "$(Get-Process)", None, "quotes, backtick"),
    ("iis_app_pools[0].name", "a" * 65, None, "longer than 64"),
    ("iis_app_pools[0].idle_timeout", "5 minutes", None, "not a duration"),
    ("iis_app_pools[0].idle_timeout", "00:00:30", None, "whole minutes"),
    ("iis_app_pools[0].idle_timeout", "31d", None, "outside the allowed range"),
    ("iis_app_pools[0].idle_timeout", "00:61:00", None, "00-59"),
    ("iis_app_pools[0].idle_timeout", -5, None, "negative"),
    ("iis_app_pools[0].periodic_restart_schedule", ["03:00", "03:00:00"], None, "listed twice"),
    ("iis_app_pools[0].queue_length", 5, None, "greater than or equal to 10"),
    ("iis_app_pools[0].managed_runtime_version", "v5.0", None, "'v4.0'"),
    ("iis_app_pools[0].rapid_fail_protection", {"interval": "30s"}, "iis_app_pools[0].rapid_fail_protection.interval", "outside the allowed range"),
    ("iis_app_pools[0].environment_variables", {"1BAD": "x"}, "iis_app_pools[0].environment_variables['1BAD'] (key)", "portable environment variable name"),
    ("iis_app_pools[0].environment_variables", {"MY VAR": "x"}, "iis_app_pools[0].environment_variables['MY VAR'] (key)", "portable environment variable name"),
    ("iis_app_pools[0].extra_attributes", {"processModel.password": "x"}, "iis_app_pools[0].extra_attributes['processModel.password'] (key)", "dedicated field"),
    ("iis_app_pools[0].extra_attributes", {"cpu.limit; x": 1}, "iis_app_pools[0].extra_attributes['cpu.limit; x'] (key)", "attribute path"),
    ("iis_app_pools[0].extra_attributes", {"cpu.limit": [1]}, "iis_app_pools[0].extra_attributes['cpu.limit']", "whole number"),
    ("iis_app_pools[0].extra_attributes", {"cpu.action": "Throttle\nx"}, "iis_app_pools[0].extra_attributes['cpu.action']", "control characters"),
    ("iis_certificates[0].thumbprint", "12345", None, "40 hexadecimal"),
    ("iis_certificates[0].thumbprint", "G" * 40, None, "40 hexadecimal"),
    ("iis_certificates[0].store", "Root", None, "'My' or 'WebHosting'"),
    ("iis_acls[0].principal", "IIS AppPool\\a;b", None, "refused by IIS"),
    ("iis_acls[0].principal", 'CONTOSO\\us"er', None, "refuses"),
    ("iis_acls[0].principal", "svc-api@", None, "DNS domain"),
    ("iis_acls[0].principal", "AVERYLONGDOMAINNAME\\svc", None, "NetBIOS"),
    ("iis_acls[0].principal", "Everyone$(calc)", None, "refuses"),
    ("iis_acls[0].rights", ["Everything"], None, "not one of"),
    ("iis_acls[0].path", "C:\\inetpub\\api|calc", None, "Windows refuses"),
    ("iis_extensions[0].sha256", "abc", None, "64 hexadecimal"),
    ("iis_extensions[0].source", "http://downloads.example.com/x.msi", None, "plain http"),
    ("iis_extensions[0].product", "PHP", None, "'HttpPlatformHandler', 'UrlRewrite' or 'ARR'"),
    ("iis_features.extra", ["Web-Asp Net"], "iis_features.extra[0]", "Windows feature name"),
    ("iis_server.max_allowed_content_length", -1, None, "greater than or equal to 0"),
    ("iis_server.proxy", {"timeout": "0s"}, "iis_server.proxy.timeout", "outside the allowed range"),
    ("iis_server.proxy", {"x_forwarded_for_header_name": "X-Forwarded-For\r\nX-Evil: 1"}, "iis_server.proxy.x_forwarded_for_header_name", "HTTP header name"),
]


@pytest.mark.parametrize("path, value, field, reason", INVALID, ids=[f"{p}={v!r}"[:60] for p, v, _, _ in INVALID])
def test_invalid_value_is_refused_naming_field_and_reason(path, value, field, reason):
    data = valid_host()
    set_path(data, path, value)
    problems = problems_of(data)
    expected_field = field or path
    matching = [p for p in problems if p.field == expected_field]
    assert matching, f"no problem for {expected_field}; got {[str(p) for p in problems]}"
    assert any(reason in p.reason for p in matching), [p.reason for p in matching]
    assert all(p.host == "web-01" for p in problems)


def test_at_least_thirty_distinct_invalid_values():
    assert len({(p, repr(v)) for p, v, _, _ in INVALID}) >= 30


# --- rules inside one part -------------------------------------------------------------


@pytest.mark.parametrize(
    "binding, reason",
    [
        ({"protocol": "http", "certificate": "api"}, "http binding takes no certificate"),
        ({"protocol": "http", "ssl_flags": ["Sni"]}, "http binding takes no certificate"),
        ({"protocol": "https", "host_name": "x.example.com"}, "needs a certificate"),
        ({"protocol": "https", "certificate": "api", "ssl_flags": "Sni"}, "Sni needs a host_name"),
    ],
)
def test_binding_rules(binding, reason):
    data = valid_host()
    data["iis_sites"][0]["bindings"] = [binding]
    problems = problems_of(data)
    assert [p.field for p in problems] == ["iis_sites[0].bindings[0]"]
    assert reason in problems[0].reason


def test_central_cert_store_binding_needs_no_certificate():
    data = valid_host()
    data["iis_sites"][0]["bindings"] = [{"protocol": "https", "host_name": "api.example.com", "ssl_flags": ["Sni", "CentralCertStore"]}]
    assert problems_of(data) == []


def test_bindings_listed_twice_in_a_site_and_no_binding_at_all():
    data = valid_host()
    data["iis_sites"][0]["bindings"].append({"protocol": "http", "host_name": "API.example.com"})
    assert any("listed twice" in p.reason and p.field == "iis_sites[0].bindings" for p in problems_of(data))
    data["iis_sites"][0]["bindings"] = []
    assert any("at least one binding" in p.reason for p in problems_of(data))


def test_specific_user_needs_user_and_password_together():
    data = valid_host()
    data["iis_app_pools"][0].update(identity_type="SpecificUser", user="CONTOSO\\svc-api")
    assert any("needs both user and password" in p.reason for p in problems_of(data))
    data["iis_app_pools"][0].update(identity_type="ApplicationPoolIdentity", password="pw-x")
    assert any("only used with identity_type SpecificUser" in p.reason for p in problems_of(data))


def test_arr_needs_url_rewrite():
    data = valid_host()
    data["iis_extensions"].append({"product": "ARR", "source": "vendor/requestRouter_amd64.msi", "sha256": SHA})
    problems = problems_of(data)
    assert [(p.field, "ARR needs URL Rewrite" in p.reason) for p in problems] == [("iis_extensions", True)]


# --- cross-checks ----------------------------------------------------------------------


def test_cross_checks_report_every_inconsistency_with_a_fix():
    data = valid_host()
    data["iis_app_pools"].append({"name": "API"})
    data["iis_sites"][0]["app_pool"] = "apii"
    data["iis_sites"][0]["bindings"][1]["certificate"] = "ap1"
    data["iis_sites"][0]["preload_enabled"] = True
    data["iis_features"] = {"app_init": False}
    data["iis_acls"].append({"path": "C:\\logs", "principal": "IIS AppPool\\worker", "rights": "Modify"})
    data["iis_sites"].append({"name": "API", "physical_path": "C:\\other", "app_pool": "api", "bindings": [{"host_name": "api.example.com"}, {"protocol": "https", "port": 80, "certificate": "api"}]})
    data["iis_server"] = {"proxy": {}}
    problems = {p.field: p for p in problems_of(data)}
    assert "case-insensitively" in problems["iis_app_pools[1].name"].reason
    assert "case-insensitively" in problems["iis_sites[1].name"].reason
    assert problems["iis_sites[0].app_pool"].fix == "did you mean 'api'?"
    assert problems["iis_sites[0].bindings[1].certificate"].fix == "did you mean 'api'?"
    assert "Web-AppInit" in problems["iis_sites[0].preload_enabled"].reason
    assert "not defined in iis_app_pools" in problems["iis_acls[1].principal"].reason
    assert "also used by site 'api'" in problems["iis_sites[1].bindings[0]"].reason
    assert "both http and https" in problems["iis_sites[1].bindings[1]"].reason
    assert "Application Request Routing" in problems["iis_server.proxy"].reason
    assert "URL Rewrite" in problems["iis_server.allowed_server_variables"].reason


def test_model_built_directly_still_refuses_inconsistency():
    data = valid_host()
    data["iis_sites"][0]["app_pool"] = "missing"
    iis_only = {k: v for k, v in data.items() if k.startswith("iis_")}
    with pytest.raises(ValidationError, match="not defined in iis_app_pools"):
        IisHostConfig.model_validate(iis_only)
    with pytest.raises(ValidationError, match="winrm_user"):
        IisHostConfig.model_validate(data)  # built directly, non-iis keys are unknown keys


def test_unknown_keys_get_a_did_you_mean():
    data = valid_host()
    data["iis_site"] = []
    data["iis_app_pools"][0]["idle_timout"] = "0s"
    problems = {p.field: p for p in problems_of(data)}
    assert problems["iis_site"].reason == "unknown iis_* host data key"
    assert problems["iis_site"].fix == "did you mean 'iis_sites'?"
    assert problems["iis_app_pools[0].idle_timout"].fix == "did you mean 'idle_timeout'?"


# --- the report -------------------------------------------------------------------------


def test_one_report_lists_every_problem_of_every_host():
    good, bad1, bad2 = valid_host(), valid_host(), valid_host()
    bad1["iis_sites"][0]["bindings"][0]["port"] = 0
    bad1["iis_sites"][0]["physical_path"] = "relative\\path"
    bad2["iis_app_pools"][0]["name"] = "api|x"
    bad2["iis_certificates"][0]["thumbprint"] = "nothex"
    report = validate_inventory([("web-01", good), ("web-02", bad1), ("web-03", bad2)], check_files=False)
    assert not report.ok
    assert sorted((p.host, p.field) for p in report.problems) == [
        ("web-02", "iis_sites[0].bindings[0].port"),
        ("web-02", "iis_sites[0].physical_path"),
        ("web-03", "iis_app_pools[0].name"),
        ("web-03", "iis_certificates[0].thumbprint"),
    ]
    assert list(report.configs) == ["web-01"]
    text = report.format()
    assert text.startswith("Inventory has 4 problem(s) on 2 of 3 host(s); nothing was run.")
    assert "\nweb-02:\n  iis_sites[0]." in text and "\n  iis_sites[0].bindings[0].port: Input should be greater than or equal to 1\n" in text
    assert "web-01:" not in text
    with pytest.raises(InventoryError) as info:
        report.raise_for_problems()
    assert info.value.report is report and str(info.value) == text


def test_load_host_config_raises_with_the_report():
    data = valid_host()
    data["iis_sites"][0]["bindings"][0]["port"] = 99999
    with pytest.raises(InventoryError, match=r"web-01:\n  iis_sites\[0\]\.bindings\[0\]\.port"):
        load_host_config("web-01", data)
    assert load_host_config("web-01", valid_host()).sites[0].name == "api"


def test_controller_files_are_checked(tmp_path: Path):
    data = valid_host()
    report = validate_inventory([("web-01", data)], base_dir=tmp_path)
    assert [(p.field, "does not exist on the controller" in p.reason) for p in report.problems] == [("iis_certificates[0].pfx", True)]
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "api.pfx").write_bytes(b"pfx")
    assert validate_inventory([("web-01", data)], base_dir=tmp_path).ok


def test_validate_pyinfra_inventory():
    from pyinfra.api import Inventory

    from pyinfra_iis.models import validate_pyinfra_inventory

    bad = valid_host()
    bad["iis_sites"][0]["app_pool"] = "nope"
    inventory = Inventory(([("web-01", valid_host()), ("web-02", bad)], {}))
    report = validate_pyinfra_inventory(inventory, check_files=False)
    assert [(p.host, p.field) for p in report.problems] == [("web-02", "iis_sites[0].app_pool")]


# --- secrets ----------------------------------------------------------------------------


def test_secrets_are_masked_in_reprs_and_dumps():
    config = load_host_config("web-01", valid_host())
    for text in (repr(config), str(config), repr(config.app_pools[0]), repr(config.certificates[0]), config.model_dump_json()):
        assert POOL_SECRET not in text and PFX_SECRET not in text
    assert config.app_pools[0].environment_variables["SECRET_KEY"].get_secret_value() == POOL_SECRET
    pool = AppPool(name="api", identity_type="SpecificUser", user="CONTOSO\\svc", password="pool-pw-secret")
    assert "pool-pw-secret" not in repr(pool) and "pool-pw-secret" not in str(pool.config_attributes())
    assert pool.config_attributes()["processModel.userName"] == "CONTOSO\\svc"
    assert "x-secret" not in repr(Certificate(name="c", pfx="c.pfx", password="x-secret"))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["iis_app_pools"][0].update(pasword="leaked-secret-1"),  # misspelt key
        lambda d: d["iis_app_pools"][0].update(environment_variables={"TOKEN": 31337000}),  # wrong type
        lambda d: d["iis_app_pools"][0].update(environment_variables={"bad name": "leaked-secret-1"}),
        lambda d: d["iis_certificates"][0].update(password=["leaked-secret-1"]),
        lambda d: d["iis_app_pools"][0].update(identity_type="SpecificUser", user="CONTOSO\\svc", password={"v": "leaked-secret-1"}),
        lambda d: d.update(iis_secrets={"password": "leaked-secret-1"}),
    ],
)
def test_secrets_never_appear_in_reports(mutate):
    data = copy.deepcopy(valid_host())
    mutate(data)
    report = validate_inventory([("web-01", data)], check_files=False)
    assert not report.ok
    text = report.format()
    assert "leaked-secret-1" not in text and "31337000" not in text
    assert POOL_SECRET not in text and PFX_SECRET not in text
