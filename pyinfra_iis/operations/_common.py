"""Helpers shared by the operations: argument validation through the models, host state, host calls from a FunctionCommand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError
from pyinfra import host, logger, state
from pyinfra.api.exceptions import OperationError, OperationTypeError, OperationValueError

from ..protocol import remote_call

M = TypeVar("M", bound=BaseModel)


def describe_errors(error: ValidationError, renames: dict[str, str] | None = None) -> str:
    """Return ``"field.sub: reason; ..."`` WITHOUT the offending input values (a value may be a
    secret). ``renames`` maps a model field to the name the caller used for it (the keyword
    argument ``pool_name`` for the field ``name``)."""

    parts = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in item.get("loc", ())]
        if loc and renames:
            loc[0] = renames.get(loc[0], loc[0])
        location = ".".join(loc) or "(value)"
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


def from_arguments(model: type[M], value: Any, argument: str, keywords: dict[str, Any],
                   renames: dict[str, str] | None = None) -> M:
    """Return the model an operation works on: ``value`` (the model-or-dict argument) when
    given, else a model built from the operation's flat keyword arguments.

    The flat form goes through the same pydantic validation as host data, so defaults, checks
    and messages are the model's, written once. A keyword left at ``None`` is not passed, so the
    model's default applies (every model field whose default is not ``None`` is never ``None``).

    Args:
        model: the pydantic model class.
        value: the model-or-dict argument (``pool=``, ``site=``, ...), or ``None``.
        argument: that argument's name, for messages.
        keywords: ``{keyword argument: value}`` of the flat form.
        renames: ``{keyword argument: model field}`` where they differ (``pool_name`` -> ``name``:
            pyinfra keeps ``name=`` for the operation's label).

    Raises:
        OperationTypeError: both forms given.
        OperationValueError: the keywords do not validate (message names the keyword arguments,
            never the values).
    """

    renames = renames or {}
    given = {key: item for key, item in keywords.items() if item is not None}
    if value is not None:
        if given:
            raise OperationTypeError(f"give either argument {argument!r} (a {model.__name__} or dict) or keyword arguments "
                                     f"({', '.join(sorted(given))}), not both")
        return validated(model, value, argument)
    try:
        return model.model_validate({renames.get(key, key): item for key, item in given.items()})
    except ValidationError as exc:
        back = {field: key for key, field in renames.items()}
        raise OperationValueError(f"invalid keyword arguments: {describe_errors(exc, back)}") from None


def refuse_absent(present: bool, what: str) -> None:
    """Refuse ``present=False``: removing this kind of object is not implemented yet.

    Raises:
        OperationValueError: ``present`` is not ``True``.
    """

    if present is not True:
        raise OperationValueError(f"{what}: present={present!r} is not supported; this operation only creates and "
                                  "updates (removal is not implemented yet)")


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


# --- Host calls from a FunctionCommand (an operation that reacts to a call's answer) ----------


class ReleaseStepError(OperationError):
    """A host call made from a ``FunctionCommand`` failed (the message says which and why)."""


def call_host(host_: Any, function: str, payload: dict) -> dict:
    """Run one remote call from a ``FunctionCommand`` and return its JSON answer.

    Raises:
        ReleaseStepError: the call failed (its stderr in the message) or printed no JSON object.
    """

    ok, output = host_.run_shell_command(remote_call(function, payload), print_output=False)
    if not ok:
        raise ReleaseStepError(f"{function} failed: {output.stderr or output.stdout}")
    try:
        return json.loads(output.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ReleaseStepError(f"{function} printed no JSON answer: {output.stdout[-500:]!r}") from None


def host_step(function):
    """Wrap ``function(host, *args)`` as the callable of a ``FunctionCommand``: a
    :class:`ReleaseStepError` is logged as the host's error and fails the operation."""

    def run(state, host, *args, **kwargs):  # noqa: ARG001 - pyinfra passes state and host by name
        try:
            function(host, *args, **kwargs)
        except ReleaseStepError as exc:
            host.log(str(exc), logger.error)
            return False
        return True

    run.__name__ = function.__name__
    return run
