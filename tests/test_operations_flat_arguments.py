"""The pyinfra-style form of the operations: flat keyword arguments build the same model, yield
the same commands as the model/dict form the deploys use, and fail with the model's messages."""

from __future__ import annotations

import copy
import inspect

import pytest
from pydantic import SecretStr
from pyinfra.api.exceptions import OperationTypeError, OperationValueError

from pyinfra_iis.operations.acl import acl
from pyinfra_iis.operations.app_pools import app_pool
from pyinfra_iis.operations.certificates import certificate
from pyinfra_iis.operations.extensions import msi_extension
from pyinfra_iis.operations.features import windows_features
from pyinfra_iis.operations.sites import site
from pyinfra_iis.operations.testing import apply_to_fact, empty_fact, run_operation

from test_operations_sites_certificates import make_pfx

SHA = "a" * 64


def _both_forms(op, fact, model_kwargs: dict, flat_kwargs: dict):
    by_model = run_operation(op._inner, copy.deepcopy(fact), **model_kwargs)
    by_keywords = run_operation(op._inner, copy.deepcopy(fact), **flat_kwargs)
    return by_model, by_keywords


def test_app_pool_keywords_yield_the_commands_of_the_model_form_then_nothing():
    fact = empty_fact(["Web-Server"])
    env = {"API_KEY": "k'1"}
    by_model, by_keywords = _both_forms(
        app_pool, fact,
        {"pool": {"name": "api", "managed_runtime_version": "", "start_mode": "OnDemand", "idle_timeout": "20m", "environment_variables": env}},
        {"pool_name": "api", "managed_runtime_version": "", "start_mode": "OnDemand", "idle_timeout": "20m",
         "environment_variables": {"API_KEY": SecretStr("k'1")}},
    )
    assert by_keywords.commands == by_model.commands and len(by_keywords.commands) == 2
    assert "k'1" not in by_keywords.masked[0]
    apply_to_fact(fact, by_keywords.commands)
    again = run_operation(app_pool._inner, fact, pool_name="api", managed_runtime_version="", start_mode="OnDemand",
                          idle_timeout="20m", environment_variables=env)
    assert again.commands == []


def test_keyword_errors_are_the_models_naming_the_keywords_never_the_values():
    with pytest.raises(OperationValueError) as error:
        run_operation(app_pool._inner, empty_fact(["Web-Server"]), pool_name="a/b", start_mode="Sometimes", password="hunter2")
    text = str(error.value)
    assert text.startswith("invalid keyword arguments: ")
    assert "pool_name: " in text and "start_mode: Input should be 'AlwaysRunning' or 'OnDemand'" in text
    assert "hunter2" not in text and "Sometimes" not in text
    with pytest.raises(OperationValueError, match="pool_name: Field required"):
        run_operation(app_pool._inner, empty_fact(["Web-Server"]), start_mode="OnDemand")
    with pytest.raises(OperationValueError, match="site_id: "):
        run_operation(site._inner, empty_fact(["Web-Server"]), site_name="api", physical_path="C:\\sites\\api", app_pool="api",
                      bindings=[{"port": 80}], site_id=0)


def test_model_and_keywords_together_are_refused():
    with pytest.raises(OperationTypeError, match="give either argument 'pool'.*start_mode"):
        run_operation(app_pool._inner, empty_fact(["Web-Server"]), pool={"name": "api"}, start_mode="OnDemand")
    with pytest.raises(OperationTypeError, match="give either argument 'rule'"):
        run_operation(acl._inner, empty_fact(), rule={"path": "C:\\x", "principal": "IIS_IUSRS", "rights": "Read"}, path="C:\\y")


@pytest.mark.parametrize("op, kwargs", [
    (windows_features, {}),
    (msi_extension, {"product": "UrlRewrite", "source": "https://example.com/r.msi", "sha256": SHA}),
])
def test_present_false_is_refused_where_removal_is_not_implemented(op, kwargs):
    with pytest.raises(OperationValueError, match="present=False is not supported"):
        run_operation(op._inner, empty_fact(["Web-Server"]), present=False, **kwargs)


def test_site_keywords_yield_the_commands_of_the_model_form():
    fact = empty_fact(["Web-Server"])
    spec = {"physical_path": "C:\\sites\\api\\current", "app_pool": "api", "bindings": [{"protocol": "http", "port": 8080}],
            "preload_enabled": False}
    by_model, by_keywords = _both_forms(site, fact, {"site": {"name": "api", "id": 7, "state": "Stopped", **spec}},
                                        {"site_name": "api", "site_id": 7, **spec})
    # run_operation keeps ``state=`` for the pyinfra State: pass the operation's own ``state`` around it
    by_keywords = run_operation(lambda **kwargs: site._inner(state="Stopped", **kwargs), copy.deepcopy(fact), site_name="api", site_id=7, **spec)
    assert by_keywords.commands == by_model.commands and by_keywords.commands
    assert '"id":"7"' in by_keywords.commands[0] and '"Stopped"' in by_keywords.commands[-1]


def test_certificate_keywords_import_the_pfx(tmp_path):
    path = tmp_path / "api.pfx"
    thumbprint = make_pfx(path)
    by_model, by_keywords = _both_forms(
        certificate, empty_fact(),
        {"certificate": {"name": "api", "pfx": str(path), "password": "pfx-pass'1", "store": "WebHosting"}},
        {"certificate_name": "api", "pfx": path, "password": SecretStr("pfx-pass'1"), "store": "WebHosting", "thumbprint": thumbprint},
    )
    assert by_keywords.commands == by_model.commands and len(by_keywords.commands) == 1
    assert "pfx-pass" not in by_keywords.masked[0]


def test_features_and_extension_keywords():
    by_model, by_keywords = _both_forms(windows_features, empty_fact(), {"features": {"extra": ["Web-CertProvider"], "app_init": False}},
                                        {"extra": ["Web-CertProvider"], "app_init": False})
    assert by_keywords.commands == by_model.commands and "Web-CertProvider" in by_keywords.commands[0]
    assert "Web-AppInit" not in by_keywords.commands[0]
    default = run_operation(windows_features._inner, empty_fact()).commands
    assert default == run_operation(windows_features._inner, empty_fact(), features={}).commands and default
    spec = {"product": "UrlRewrite", "source": "https://example.com/rewrite.msi", "sha256": SHA}
    by_model, by_keywords = _both_forms(msi_extension, empty_fact(), {"extension": spec}, spec)
    assert by_keywords.commands == by_model.commands and "Install-MsiProduct" in by_keywords.commands[0]


def test_acl_keywords_grant_and_present_false_revokes():
    rule = {"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"}
    fact = empty_fact()
    fact["acls"][rule["path"]] = {"exists": False, "entries": []}
    by_model, by_keywords = _both_forms(acl, fact, {"rule": rule}, rule)
    assert by_keywords.commands == by_model.commands and len(by_keywords.commands) == 2
    apply_to_fact(fact, by_keywords.commands)
    assert run_operation(acl._inner, copy.deepcopy(fact), **rule).commands == []
    revoke = run_operation(acl._inner, copy.deepcopy(fact), present=False, **rule)
    assert revoke.commands == run_operation(acl._inner, copy.deepcopy(fact), rule={**rule, "ensure": "absent"}).commands
    assert revoke.commands[0].startswith("Revoke-PathAccess")
    with pytest.raises(OperationValueError, match="ensure='absent'"):
        run_operation(acl._inner, fact, rule=rule, present=False)


@pytest.mark.parametrize("op", [app_pool, site, certificate, windows_features, msi_extension, acl])
def test_every_parameter_is_typed_and_documented_and_name_is_left_to_pyinfra(op):
    parameters = inspect.signature(op._inner).parameters
    assert "name" not in parameters  # pyinfra pops name= (the operation's label) before the call
    doc = op._inner.__doc__ or ""
    for parameter in parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty, parameter.name
        assert f"+ {parameter.name}:" in doc or parameter.name in doc, parameter.name
    assert "**Example:**" in doc
