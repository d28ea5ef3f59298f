"""Validated types: what they accept and normalise, and what they refuse (with the field and
the reason in the message)."""

from __future__ import annotations

import datetime

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from pyinfra_iis.models import (
    Binding,
    BindingIp,
    Duration,
    HostName,
    Principal,
    PythonVersion,
    ReleaseVersion,
    SslFlags,
    Thumbprint,
    TimeOfDay,
    WholeMinutes,
    WindowsPath,
    WindowsPathOrUnc,
    pool_of_principal,
    ssl_flag_names,
)


def adapt(tp, value):
    return TypeAdapter(tp).validate_python(value)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("c:/inetpub/api/", "C:\\inetpub\\api"),
        ("D:\\apps\\api\\releases\\1.2.0", "D:\\apps\\api\\releases\\1.2.0"),
        ("C:\\", "C:\\"),
        ("C:\\inetpub\\console", "C:\\inetpub\\console"),  # CON only as a whole stem
    ],
)
def test_windows_path_normalises(raw, expected):
    assert adapt(WindowsPath, raw) == expected


def test_unc_path_accepted_only_by_the_unc_variant():
    assert adapt(WindowsPathOrUnc, "\\\\files01\\installers\\rewrite_amd64_en-US.msi") == "\\\\files01\\installers\\rewrite_amd64_en-US.msi"
    with pytest.raises(ValidationError, match="absolute drive path"):
        adapt(WindowsPath, "\\\\files01\\installers\\x.msi")
    with pytest.raises(ValidationError, match="UNC file path"):
        adapt(WindowsPathOrUnc, "\\\\files01")


@pytest.mark.parametrize(
    "raw, expected",
    [("API.Example.COM", "api.example.com"), ("*.Example.com", "*.example.com"), ("", ""), ("xn--bcher-kva.example", "xn--bcher-kva.example")],
)
def test_host_name_normalises(raw, expected):
    assert adapt(HostName, raw) == expected


@pytest.mark.parametrize("raw, expected", [("*", "*"), ("10.0.0.5", "10.0.0.5"), ("[2001:DB8::1]", "2001:db8::1")])
def test_binding_ip(raw, expected):
    assert adapt(BindingIp, raw) == expected


def test_binding_information_as_iis_writes_it():
    assert Binding(protocol="http").binding_information == "*:80:"
    assert Binding(protocol="https", host_name="API.example.com", certificate="api").binding_information == "*:443:api.example.com"
    assert Binding(ip="2001:db8::1", port=8080).binding_information == "[2001:db8::1]:8080:"


def test_thumbprint_strips_copy_paste_noise():
    raw = "\u200e3b ca 8a 25 a0 71 30 0b d1 77 e4 c7 31 35 e5 4f a8 30 03 9a"
    assert adapt(Thumbprint, raw) == "3BCA8A25A071300BD177E4C73135E54FA830039A"
    assert adapt(Thumbprint, "3B:CA:8A:25:A0:71:30:0B:D1:77:E4:C7:31:35:E5:4F:A8:30:03:9A") == "3BCA8A25A071300BD177E4C73135E54FA830039A"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("iis apppool\\api", "IIS AppPool\\api"),
        ("iis_iusrs", "IIS_IUSRS"),
        ("iusr", "IUSR"),
        ("builtin\\Users", "BUILTIN\\Users"),
        ("nt authority\\NETWORK SERVICE", "NT AUTHORITY\\NETWORK SERVICE"),
        ("contoso\\svc-api", "CONTOSO\\svc-api"),
        ("svc-api@Contoso.COM", "svc-api@contoso.com"),
    ],
)
def test_principal_normalises_well_known_prefixes(raw, expected):
    assert adapt(Principal, raw) == expected


def test_pool_of_principal():
    assert pool_of_principal("IIS AppPool\\api") == "api"
    assert pool_of_principal("IIS_IUSRS") is None


@pytest.mark.parametrize(
    "raw, seconds, timespan",
    [
        (120, 120, "00:02:00"),
        ("00:02:00", 120, "00:02:00"),
        ("29:00:00", 104400, "1.05:00:00"),
        ("1.05:00:00", 104400, "1.05:00:00"),
        ("90s", 90, "00:01:30"),
        ("2m", 120, "00:02:00"),
        ("1h30m", 5400, "01:30:00"),
        ("1d", 86400, "1.00:00:00"),
        ("0", 0, "00:00:00"),
        (datetime.timedelta(minutes=5), 300, "00:05:00"),
    ],
)
def test_duration_parses_and_renders_iis_timespans(raw, seconds, timespan):
    duration = Duration.parse(raw)
    assert duration.seconds == seconds
    assert duration.to_timespan() == timespan


def test_whole_minutes_and_time_of_day():
    assert adapt(WholeMinutes, "2m").to_timespan() == "00:02:00"
    with pytest.raises(ValidationError, match="whole minutes"):
        adapt(WholeMinutes, "90s")
    assert adapt(TimeOfDay, "03:30").to_timespan() == "03:30:00"
    with pytest.raises(ValidationError, match="outside the allowed range"):
        adapt(TimeOfDay, "24:00:00")


@pytest.mark.parametrize(
    "raw, bits",
    [(0, 0), (127, 127), (["Sni"], 1), ("Sni, DisableHTTP2", 5), ({"sni", "centralcertstore"}, 3), (["DisableLegacyTLS", "DisableTLS13", "DisableQUIC", "DisableOCSPStapling"], 120)],
)
def test_ssl_flags_names_to_bits(raw, bits):
    assert adapt(SslFlags, raw) == bits


def test_ssl_flag_names_round_trip():
    assert ssl_flag_names(5) == ["Sni", "DisableHTTP2"]


class _Release(BaseModel):
    version: ReleaseVersion
    python: PythonVersion = "3.12"


def test_release_and_python_versions_accept_the_usual_forms():
    assert _Release(version="1.4.2", python="3.12.7").python == "3.12.7"
    assert _Release(version="2024.11.1+build.7", python="3.10").version == "2024.11.1+build.7"
    assert _Release(version="1.5.0rc1", python="3.14").version == "1.5.0rc1"


# --- refused values: field named, reason given ------------------------------------------


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("version", "1.0/../../Windows", "folder name"),
        ("version", "1.0 beta", "folder name"),
        ("version", "..", "folder name"),
        ("version", "1.0.", "folder name"),
        ("version", "1.0;rm", "folder name"),
        ("version", "banana", "PEP 440"),
        ("version", "$(whoami)", "folder name"),
        ("python", "3.9", "not supported"),
        ("python", "3.15", "not supported"),
        ("python", "2.7", "not a Python version"),
        ("python", 3.10, "float"),
        ("python", "3.12.x", "not a Python version"),
    ],
)
def test_versions_refused(field, value, reason):
    data = {"version": "1.0.0", "python": "3.12", field: value}
    with pytest.raises(ValidationError) as info:
        _Release(**data)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert reason in errors[0]["msg"]
