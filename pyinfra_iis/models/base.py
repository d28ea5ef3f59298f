"""The base class of every inventory model: strict about unknown keys, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
