"""File-system ACL entries the pools need (venv, base Python, logs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_validator
from pydantic_core import PydanticCustomError

from .types import show
from .base import EnsureModel
from .types import Principal, WindowsPath

#: ``System.Security.AccessControl.FileSystemRights`` names (Microsoft .NET API reference).
FILE_SYSTEM_RIGHTS = (
    "ListDirectory", "ReadData", "WriteData", "CreateFiles", "CreateDirectories", "AppendData",
    "ReadExtendedAttributes", "WriteExtendedAttributes", "Traverse", "ExecuteFile",
    "DeleteSubdirectoriesAndFiles", "ReadAttributes", "WriteAttributes", "Write", "Delete",
    "ReadPermissions", "Read", "ReadAndExecute", "Modify", "ChangePermissions", "TakeOwnership",
    "Synchronize", "FullControl",
)
#: ``InheritanceFlags`` and ``PropagationFlags`` names.
INHERITANCE_FLAGS = ("None", "ContainerInherit", "ObjectInherit")
PROPAGATION_FLAGS = ("None", "NoPropagateInherit", "InheritOnly")


def _flag_list(allowed: tuple[str, ...], kind: str):
    lookup = {name.lower(): name for name in allowed}

    def parse(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise PydanticCustomError(kind, "expected names like {example}", {"example": ", ".join(allowed[:3])})
        names = []
        for item in items:
            name = lookup.get(str(item).strip().lower()) if isinstance(item, str) else None
            if name is None:
                raise PydanticCustomError(kind, "{item} is not one of {known}", {"item": show(item), "known": ", ".join(allowed)})
            if name not in names:
                names.append(name)
        if not names:
            raise PydanticCustomError(kind, "at least one name is needed")
        if "None" in names and len(names) > 1:
            raise PydanticCustomError(kind, "None cannot be combined with other flags")
        return tuple(sorted(names, key=allowed.index))

    return BeforeValidator(parse)


Rights = Annotated[tuple[str, ...], _flag_list(FILE_SYSTEM_RIGHTS, "rights")]
Inheritance = Annotated[tuple[str, ...], _flag_list(INHERITANCE_FLAGS, "inheritance")]
Propagation = Annotated[tuple[str, ...], _flag_list(PROPAGATION_FLAGS, "propagation")]


class AclRule(EnsureModel):
    """One entry of host data ``iis_acls``: an access rule on a folder or file.

    Attributes:
        path: the folder or file on the host.
        principal: who (validated :data:`~pyinfra_iis.models.types.Principal`).
        rights: FileSystemRights names, e.g. ``["ReadAndExecute"]`` or ``"Modify"``.
        type: ``Allow`` (default) or ``Deny``.
        inheritance: default ``ContainerInherit, ObjectInherit`` (the folder and everything
            below); ``None`` for a file.
        propagation: default ``None``.
        ensure: ``present`` (default) or ``absent`` (remove this explicit entry); ``present:
            false`` (the spelling of sites, pools and bindings) means the same.
    """

    path: WindowsPath
    principal: Principal
    rights: Rights
    type: Literal["Allow", "Deny"] = "Allow"
    inheritance: Inheritance = ("ContainerInherit", "ObjectInherit")
    propagation: Propagation = ("None",)
    ensure: Literal["present", "absent"] = "present"

    @model_validator(mode="after")
    def _propagation_needs_inheritance(self) -> "AclRule":
        if self.propagation != ("None",) and self.inheritance == ("None",):
            raise PydanticCustomError("propagation", "propagation flags only apply with inheritance; set inheritance or propagation None")
        return self

    @property
    def rights_text(self) -> str:
        """Rights as .NET writes a FileSystemRights value: ``"ReadAndExecute, Synchronize"`` style."""

        return ", ".join(self.rights)

    @property
    def inheritance_text(self) -> str:
        """InheritanceFlags text, e.g. ``"ContainerInherit, ObjectInherit"``."""

        return ", ".join(self.inheritance)

    @property
    def propagation_text(self) -> str:
        """PropagationFlags text, e.g. ``"None"``."""

        return ", ".join(self.propagation)
