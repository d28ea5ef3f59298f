"""The base class of every inventory model: strict about unknown keys, immutable."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError


class IisModel(BaseModel):
    """Base of the inventory models.

    ``extra="forbid"``: an unknown key is an error (the report adds a did-you-mean), so a typo
    never silently falls back to a default. ``frozen=True``: operations cannot change what the
    inventory asked for. ``populate_by_name``: a field with an alias is accepted by either name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=False)


def iis_bool(value: bool) -> str:
    """Return a bool as IIS writes it in applicationHost.config: ``"true"`` / ``"false"``."""

    return "true" if value else "false"


def present_as_ensure(data: Any) -> Any:
    """Accept pyinfra's ``present: false`` where a model spells removal ``ensure: absent``.

    Sites, pools, bindings and applications say ``present: false`` (pyinfra's spelling); ACL
    rules and certificates said ``ensure: absent`` first. Both spellings work on both, so an
    inventory can use one everywhere. Used as a ``model_validator(mode="before")``.

    Raises:
        PydanticCustomError: ``present`` is not a bool, or ``present`` and ``ensure`` disagree.
    """

    if not isinstance(data, dict) or "present" not in data:
        return data
    data = dict(data)
    present = data.pop("present")
    if not isinstance(present, bool):
        raise PydanticCustomError("present", "present is true or false, not {value!r}", {"value": present})
    ensure = "present" if present else "absent"
    if data.get("ensure", ensure) != ensure:
        raise PydanticCustomError("present", "present and ensure disagree; give one of them")
    data["ensure"] = ensure
    return data


class EnsureModel(IisModel):
    """Base of the models that spell removal ``ensure: absent`` (ACL rules, certificates): they
    also take ``present: false`` (:func:`present_as_ensure`)."""

    @model_validator(mode="before")
    @classmethod
    def _present_spelling(cls, data: Any) -> Any:
        return present_as_ensure(data)
