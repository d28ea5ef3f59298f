"""ReleaseSettings: defaults from the field notes, timeout rules, settings vs secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pyinfra_iis.models.release import ReleaseSettings

SECRET = "hunter2-very-secret"


def make(**overrides) -> ReleaseSettings:
    return ReleaseSettings(**{"app_name": "api", "root": r"C:\sites\api", **overrides})


def error_text(**overrides) -> str:
    with pytest.raises(ValidationError) as info:
        make(**overrides)
    return str(info.value)


def test_defaults():
    model = make()
    assert (model.python_version, model.keep_releases, model.health_check_path) == ("3.12", 5, "/healthz")
    assert model.request_timeout.to_timespan() == "00:02:00"  # HttpPlatformHandler's default
    assert (model.startup_time_limit.seconds, model.startup_retry_count) == (60, 10)
    assert (model.timeout_keep_alive.seconds, model.timeout_graceful_shutdown.seconds, model.health_deadline.seconds) == (120, 30, 120)
    assert (model.releases_dir, model.logs_dir, model.release_dir("1.2.3")) == (r"C:\sites\api\releases", r"C:\sites\api\logs", r"C:\sites\api\releases\1.2.3")


def test_root_is_normalised_and_checked():
    assert make(root="c:/sites/api/").root == r"C:\sites\api"
    assert "drive root" in error_text(root="C:\\")
    assert "expanded by IIS" in error_text(root=r"C:\sites\%APP%")
    assert "not an absolute drive path" in error_text(root=r"sites\api")


@pytest.mark.parametrize("version", ["3.9", "3.15", 3.12])
def test_python_version_range(version):
    assert "python_version" in error_text(python_version=version)


def test_request_timeout_whole_minutes():
    assert make(request_timeout="00:05:00", timeout_keep_alive=300).request_timeout.seconds == 300
    assert "whole minutes" in error_text(request_timeout="00:02:30")
    assert "outside 60-2592000" in error_text(request_timeout=0)


def test_keep_alive_must_not_be_shorter_than_request_timeout():
    assert "set timeout_keep_alive >= request_timeout" in error_text(timeout_keep_alive=5)
    assert make(request_timeout="1m", timeout_keep_alive=60).timeout_keep_alive.seconds == 60


def test_graceful_shutdown_must_end_before_iis_kills_the_process():
    assert "shutdownTimeLimit 90 s" in error_text(timeout_graceful_shutdown=90)
    assert make(timeout_graceful_shutdown=100, pool_shutdown_time_limit=120).timeout_graceful_shutdown.seconds == 100


def test_health_deadline_must_exceed_startup_time_limit():
    assert "must exceed startup_time_limit" in error_text(health_deadline=60, startup_time_limit=60)
    assert "outside 1-3600" in error_text(startup_time_limit=3601)


def test_settings_and_secrets_names():
    assert "both as app setting and as app secret" in error_text(app_settings={"db_url": "x"}, app_secrets={"DB_URL": SECRET})
    assert "differ only in case" in error_text(app_settings={"Mode": "a", "MODE": "b"})
    assert "set by HttpPlatformHandler" in error_text(app_settings={"HTTP_PLATFORM_PORT": "1"})
    assert "env_var_name" in error_text(app_secrets={"BAD-NAME": SECRET})
    assert "control characters" in error_text(app_settings={"A": "line\nbreak"})


def test_secrets_never_shown():
    model = make(app_secrets={"DB_PASSWORD": SECRET})
    assert SECRET not in repr(model) and SECRET not in str(model.model_dump())
    assert model.app_secrets["DB_PASSWORD"].get_secret_value() == SECRET
    cases = [
        {"app_secrets": {"DB_PASSWORD": SECRET}, "app_settings": {"db_password": "x"}},  # model-level error
        {"app_secrets": {"PASSWORD": SECRET}, "timeout_keep_alive": 1},  # model-level error
        {"app_secrets": {"DB_PASSWORD": SECRET, "9": SECRET}},  # field-level error (key)
        {"app_secrets": {"A": 12}},  # field-level error (value)
    ]
    for overrides in cases:
        text = error_text(**overrides)
        assert SECRET not in text and "input_value" not in text


def test_unknown_keys_and_bounds():
    assert "extra_forbidden" in error_text(keep_release=3)
    assert "keep_releases" in error_text(keep_releases=1)
    assert "URL path" in error_text(health_check_path="healthz")
    assert "app_name" in error_text(app_name="my app")
