"""One report of every inventory problem of every host, before any host is touched.

docs/design.md "Layers" item 1: the inventory is validated as a whole;
the report names host, field path (``iis_sites[0].bindings[1].port``), reason and, where
useful, the fix. Raw input values are never printed (pydantic's ``input`` is dropped), so a
password typed into the wrong field cannot leak through a report.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from pydantic import BaseModel, ValidationError

from .host import COLLECT_ISSUES, HOST_DATA_KEYS, HostIssue, IisHostConfig, did_you_mean

__all__ = [
    "InventoryError",
    "InventoryReport",
    "Problem",
    "load_host_config",
    "validate_inventory",
    "validate_pyinfra_inventory",
]


@dataclass(frozen=True)
class Problem:
    """One problem: ``host``, ``field`` path, ``reason`` and an optional ``fix``."""

    host: str
    field: str
    reason: str
    fix: Optional[str] = None

    def __str__(self) -> str:
        text = f"{self.field}: {self.reason}" if self.field else self.reason
        return f"{text} (fix: {self.fix})" if self.fix else text


@dataclass
class InventoryReport:
    """The result of :func:`validate_inventory`.

    Attributes:
        hosts: every host name validated, in inventory order.
        problems: every problem found, grouped by host in inventory order.
        configs: the validated :class:`IisHostConfig` of each host without problems.
    """

    hosts: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    configs: dict[str, IisHostConfig] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no host has a problem."""

        return not self.problems

    def format(self) -> str:
        """Return one readable report (host, then ``field: reason (fix: ...)`` lines)."""

        if self.ok:
            return f"Inventory OK: {len(self.hosts)} host(s) validated."
        bad_hosts = [h for h in self.hosts if any(p.host == h for p in self.problems)]
        lines = [
            f"Inventory has {len(self.problems)} problem(s) on {len(bad_hosts)} of {len(self.hosts)} host(s); nothing was run.",
        ]
        for host in bad_hosts:
            lines.append("")
            lines.append(f"{host}:")
            lines.extend(f"  {p}" for p in self.problems if p.host == host)
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        """Raise :class:`InventoryError` when there is any problem."""

        if not self.ok:
            raise InventoryError(self)


class InventoryError(Exception):
    """The inventory is invalid; ``.report`` holds every problem, ``str()`` is the report."""

    def __init__(self, report: InventoryReport):
        super().__init__(report.format())
        self.report = report


def load_host_config(host_name: str, data: Mapping[str, Any], *, check_files: bool = False, base_dir: Optional[Path] = None) -> IisHostConfig:
    """Validate one host's data and return its :class:`IisHostConfig`.

    Args:
        host_name: the inventory name, used in the report.
        data: the host data (group data merged, as ``host.data.dict()``); only ``iis_*`` keys
            are read (:data:`~pyinfra_iis.models.host.HOST_DATA_KEYS`).
        check_files: also check that controller files (PFX, MSI) exist.
        base_dir: directory relative controller paths are resolved against (default: cwd).

    Raises:
        InventoryError: with every problem of this host.
    """

    report = validate_inventory([(host_name, data)], check_files=check_files, base_dir=base_dir)
    report.raise_for_problems()
    return report.configs[host_name]


def validate_inventory(hosts: Iterable[tuple[str, Mapping[str, Any]]], *, check_files: bool = True, base_dir: Optional[Path] = None) -> InventoryReport:
    """Validate every host and collect ALL problems of ALL hosts into one report.

    Args:
        hosts: ``(host name, host data mapping)`` pairs.
        check_files: check that controller files (PFX, MSI) exist (default true).
        base_dir: directory relative controller paths are resolved against (default: cwd).

    Returns:
        an :class:`InventoryReport`; it never raises for bad data (see ``raise_for_problems``).
    """

    report = InventoryReport()
    for host_name, data in hosts:
        report.hosts.append(host_name)
        problems, config = _validate_host(host_name, data, check_files=check_files, base_dir=base_dir)
        report.problems.extend(problems)
        if config is not None and not problems:
            report.configs[host_name] = config
    return report


def validate_pyinfra_inventory(inventory: Any, **kwargs: Any) -> InventoryReport:
    """Validate a pyinfra ``Inventory`` (every host's merged ``host.data``).

    Keyword arguments are those of :func:`validate_inventory`.
    """

    return validate_inventory(((host.name, host.data.dict()) for host in inventory), **kwargs)


# --- one host ---------------------------------------------------------------------------


def _validate_host(host: str, data: Mapping[str, Any], *, check_files: bool, base_dir: Optional[Path]) -> tuple[list[Problem], Optional[IisHostConfig]]:
    if not isinstance(data, Mapping):
        return [Problem(host, "", "host data is not a mapping")], None
    problems: list[Problem] = []
    wanted = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key.startswith("iis_"):
            continue
        if key in HOST_DATA_KEYS:
            wanted[key] = value
        else:
            guess = did_you_mean(key, list(HOST_DATA_KEYS))
            fix = f"did you mean {guess!r}?" if guess else f"known keys: {', '.join(HOST_DATA_KEYS)}"
            problems.append(Problem(host, key, "unknown iis_* host data key", fix))

    issues: list[HostIssue] = []
    config: Optional[IisHostConfig] = None
    try:
        config = IisHostConfig.model_validate(wanted, context={COLLECT_ISSUES: issues})
    except ValidationError as exc:
        problems.extend(_from_validation_error(host, exc))
    problems.extend(Problem(host, _FieldPath(i.loc).text, i.reason, i.fix) for i in issues)
    if config is not None and check_files:
        problems.extend(_missing_files(host, config, base_dir))
    return problems, config


def _missing_files(host: str, config: IisHostConfig, base_dir: Optional[Path]) -> list[Problem]:
    problems = []
    for loc, path in config.controller_files():
        resolved = path if path.is_absolute() or base_dir is None else base_dir / path
        if not resolved.is_file():
            problems.append(Problem(host, _FieldPath(loc).text, f"file {str(resolved)!r} does not exist on the controller", "check the path (relative paths are resolved from the directory pyinfra runs in)"))
    return problems


def _from_validation_error(host: str, exc: ValidationError) -> list[Problem]:
    problems = []
    # include_input=False: raw values (passwords typed anywhere) never reach the report.
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        path = _FieldPath(error["loc"])
        reason, fix = error["msg"], None
        if error["type"] == "extra_forbidden":
            reason = "unknown key"
            known = path.parent_fields()
            guess = did_you_mean(str(error["loc"][-1]), known) if known else None
            fix = f"did you mean {guess!r}?" if guess else (f"known keys: {', '.join(known)}" if known else None)
        elif error["type"] == "missing":
            reason = "required, but missing"
        problems.append(Problem(host, path.text, reason, fix))
    return problems


class _FieldPath:
    """Render a pydantic ``loc`` as ``iis_sites[0].bindings[1].port`` by walking the model
    types, so dict keys show as ``['KEY']`` and unknown keys can get a did-you-mean."""

    def __init__(self, loc: tuple[Any, ...]):
        self.loc = tuple(loc)
        self.text = ""
        self._parent: Any = None
        current: Any = IisHostConfig
        for index, part in enumerate(self.loc):
            if index == len(self.loc) - 1:
                self._parent = current
            current = self._step(current, part)

    def _step(self, current: Any, part: Any) -> Any:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if part == "[key]":
            self.text += " (key)"
            return None
        if isinstance(part, int):
            self.text += f"[{part}]"
            args = typing.get_args(current)
            return args[0] if args else None
        if origin is dict:
            self.text += f"[{part!r}]"
            args = typing.get_args(current)
            return args[1] if len(args) == 2 else None
        self.text += f".{part}" if self.text else str(part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            for name, info in current.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        return None

    def parent_fields(self) -> list[str]:
        """Field names (aliases where set) of the model holding the last ``loc`` element."""

        parent = _unwrap(self._parent)
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            return [info.alias or name for name, info in parent.model_fields.items()]
        return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional``/``Union`` down to the first structural member."""

    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            structural = [m for m in members if typing.get_origin(_strip(m)) in (list, tuple, dict) or (isinstance(_strip(m), type) and issubclass(_strip(m), BaseModel))]
            annotation = (structural or members or [None])[0]
            continue
        return annotation


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation
