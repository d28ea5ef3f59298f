"""One spelling of removal for every kind: ``present: false`` works on ACL rules and
certificates as it does on sites, pools and bindings; their older ``ensure: absent`` still works."""

from __future__ import annotations

import pytest

from pyinfra_iis.models import load_host_config
from pyinfra_iis.models.report import InventoryError

RULE = {"path": "C:\\sites\\api", "principal": "IIS AppPool\\api", "rights": "Read"}
CERT = {"name": "old", "thumbprint": "AB" * 20}


def test_present_false_removes_an_acl_rule_and_a_certificate_like_ensure_absent():
    by_present = load_host_config("web01", {"iis_acls": [{**RULE, "present": False}], "iis_certificates": [{**CERT, "present": False}]})
    by_ensure = load_host_config("web01", {"iis_acls": [{**RULE, "ensure": "absent"}], "iis_certificates": [{**CERT, "ensure": "absent"}]})
    assert by_present.acls == by_ensure.acls and by_present.acls[0].ensure == "absent"
    assert by_present.certificates == by_ensure.certificates and not by_present.certificates[0].present


def test_present_true_keeps_the_default():
    config = load_host_config("web01", {"iis_app_pools": [{"name": "api"}], "iis_acls": [{**RULE, "present": True}]})
    assert config.acls[0].ensure == "present"


@pytest.mark.parametrize("entry, message", [
    ({**RULE, "present": False, "ensure": "present"}, "present and ensure disagree"),
    ({**RULE, "present": "no"}, "present is true or false"),
])
def test_contradictory_or_non_bool_present_is_refused_naming_host_and_entry(entry, message):
    with pytest.raises(InventoryError) as error:
        load_host_config("web01", {"iis_acls": [entry]})
    text = str(error.value)
    assert "web01" in text and "iis_acls" in text and message in text
