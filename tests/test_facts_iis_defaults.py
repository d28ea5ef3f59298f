"""The schema defaults of pyinfra_iis.iis.defaults against Microsoft's schema files, and value
comparison / config navigation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pyinfra_iis.iis import config
from pyinfra_iis.iis.defaults import ALL_TABLES, APP_POOL, same_value, timespan_seconds


def _schema_attribute(root_dir, spec):
    tree = ET.parse(root_dir / "iis-schema" / spec.source)
    section = next(s for s in tree.getroot().iter("sectionSchema") if s.get("name") == spec.section)
    node = section
    for part in [p for p in spec.element.split("/") if p]:
        found = None
        for candidate in node:
            if candidate.tag == "element" and candidate.get("name") == part:
                found = candidate
            elif candidate.tag == "collection" and candidate.get("addElement") == part:
                found = candidate
            if found is not None:
                break
        assert found is not None, f"{spec.section}/{spec.element}: no {part}"
        node = found
    return next(a for a in node.findall("attribute") if a.get("name") == spec.name)


def test_every_managed_default_matches_the_schema(reference_data):
    checked = 0
    for table in ALL_TABLES.values():
        for dotted, spec in table.items():
            if spec.source is None:
                continue
            attribute = _schema_attribute(reference_data, spec)
            assert attribute.get("defaultValue") == spec.default, f"{spec.section} {dotted}"
            if spec.type != "hex":
                assert attribute.get("type") == spec.type, f"{spec.section} {dotted}"
            checked += 1
    assert checked >= 30


def test_time_spans_compare_by_duration():
    assert timespan_seconds("1.05:00:00") == timespan_seconds("29:00:00") == 29 * 3600
    assert same_value(APP_POOL["recycling.periodicRestart.time"], "29:00:00", "1.05:00:00")
    assert not same_value(APP_POOL["processModel.idleTimeout"], "00:20:00", "00:00:00")
    assert same_value(APP_POOL["autoStart"], "True", "true")
    assert same_value(APP_POOL["startMode"], "alwaysrunning", "AlwaysRunning")
    assert not same_value(APP_POOL["managedRuntimeVersion"], "v4.0", "")


def test_effective_value_inherits_from_the_collection_default_then_the_schema():
    section = {"attributes": {}, "children": {"applicationPoolDefaults": {"attributes": {"managedRuntimeVersion": "v4.0"}, "children": {"processModel": {"attributes": {"loadUserProfile": "true"}}}}},
               "items": [{"tag": "add", "attributes": {"name": "API"}, "children": {}, "items": []}]}
    item = config.find_item(section, "add", {"name": "api"})
    defaults = config.child(section, "applicationPoolDefaults")
    assert item is not None
    assert config.effective(item, "managedRuntimeVersion", defaults_element=defaults, schema_default="") == "v4.0"
    assert config.effective(item, "processModel.loadUserProfile", defaults_element=defaults, schema_default="false") == "true"
    assert config.effective(item, "startMode", defaults_element=defaults, schema_default="OnDemand") == "OnDemand"
    assert config.find_item(section, "add", {"name": "other"}) is None
