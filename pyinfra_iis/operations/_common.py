"""Helpers shared by the operations: argument validation through the models, host state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError
from pyinfra import host, logger, state
from pyinfra.api.exceptions import OperationTypeError, OperationValueError

M = TypeVar("M", bound=BaseModel)


def describe_errors(error: ValidationError) -> str:
    """Return ``"field.sub: reason; ..."`` WITHOUT the offending input values (a value may be a
    secret)."""

    parts = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in item.get("loc", ())) or "(value)"
        parts.append(f"{location}: {item.get('msg')}")
    return "; ".join(parts)


def validated(model: type[M], value: Any, argument: str) -> M:
    """Return ``value`` as an instance of ``model`` (validating a mapping).

    Args:
        model: the pydantic model class (from :mod:`pyinfra_iis.models`).
        value: a model instance or a mapping of its fields.
        argument: the operation argument name, used in error messages.

    Raises:
        OperationTypeError: ``value`` is neither a ``model`` nor a mapping.
        OperationValueError: the mapping does not validate (message names the argument and the
            fields, never the values).
    """

    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise OperationTypeError(f"argument {argument!r} must be a {model.__name__} or a dict, not {type(value).__name__}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise OperationValueError(f"argument {argument!r} is invalid: {describe_errors(exc)}") from None


def iis_of(state: dict) -> dict | None:
    """Return the ``iis`` part of the fact (``None`` until Web-Server is installed)."""

    return state.get("iis")


def controller_file(source: Path, argument: str, label: str = "") -> Path:
    """Resolve a file on the controller (a relative path is taken from pyinfra's working
    directory, ``state.cwd``) that an operation uploads.

    Args:
        source: the path the inventory gave.
        argument: the operation argument it came from, used in the error message.
        label: what the file is (``"pfx"``, ``"source"``), put before the path in the message.

    Raises:
        OperationValueError: the file does not exist.
    """

    path = source if source.is_absolute() else Path(getattr(state, "cwd", None) or ".") / source
    if not path.is_file():
        what = f"{label} " if label else ""
        raise OperationValueError(f"argument {argument!r}: {what}{str(source)!r} is not a file on the controller")
    return path


def warn(messages: Iterable[str]) -> None:
    """Log each message as a warning for the current host."""

    for message in messages:
        host.log(message, logger.warning)
