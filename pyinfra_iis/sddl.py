"""Security descriptors in SDDL, on the controller: parse what Windows reports, write what it applies.

The host reports ACLs raw (``FileSystemSecurity.GetSecurityDescriptorSddlForm``) with a map
SID -> account name from its own translation; this module turns them into the entries the
operations read, and computes the SIDs the controller sends (so a rule for ``IIS AppPool\\api``
can be written before the pool exists).

Formats (Microsoft Learn):
- security descriptor string: https://learn.microsoft.com/windows/win32/secauthz/security-descriptor-string-format
- ACE strings (types, flags, rights codes): https://learn.microsoft.com/windows/win32/secauthz/ace-strings
- SID strings (``SY``, ``BA``, ...): https://learn.microsoft.com/windows/win32/secauthz/sid-strings
- well-known SIDs: https://learn.microsoft.com/windows/win32/secauthz/well-known-sids
- file rights: https://learn.microsoft.com/windows/win32/fileio/file-security-and-access-rights and
  https://learn.microsoft.com/dotnet/api/system.security.accesscontrol.filesystemrights

Names other helpers import: :func:`app_pool_sid`, :func:`protected_sddl`, :func:`parse_sddl`.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Iterable, Mapping

SYSTEM = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
USERS = "S-1-5-32-545"
IIS_IUSRS = "S-1-5-32-568"
IUSR = "S-1-5-17"
TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"

#: SDDL SID aliases (Sddl.h) that Windows writes for machine-independent well-known SIDs.
SID_ALIASES: dict[str, str] = {
    "SY": SYSTEM, "BA": ADMINISTRATORS, "BU": USERS, "BG": "S-1-5-32-546", "PU": "S-1-5-32-547",
    "AO": "S-1-5-32-548", "SO": "S-1-5-32-549", "PO": "S-1-5-32-550", "BO": "S-1-5-32-551",
    "RE": "S-1-5-32-552", "RU": "S-1-5-32-554", "RD": "S-1-5-32-555", "NO": "S-1-5-32-556",
    "MU": "S-1-5-32-558", "LU": "S-1-5-32-559", "IS": IIS_IUSRS, "CY": "S-1-5-32-569",
    "ER": "S-1-5-32-573", "RA": "S-1-5-32-575", "ES": "S-1-5-32-576", "HA": "S-1-5-32-578",
    "AA": "S-1-5-32-579", "RM": "S-1-5-32-580", "AU": "S-1-5-11", "WD": "S-1-1-0", "CO": "S-1-3-0",
    "CG": "S-1-3-1", "OW": "S-1-3-4", "NS": "S-1-5-20", "LS": "S-1-5-19", "AN": "S-1-5-7",
    "IU": "S-1-5-4", "NU": "S-1-5-2", "SU": "S-1-5-6", "PS": "S-1-5-10", "RC": "S-1-5-12",
    "WR": "S-1-5-33", "ED": "S-1-5-9", "AC": "S-1-15-2-1",
}
_ALIAS_OF = {sid: alias for alias, sid in SID_ALIASES.items()}
#: Aliases relative to a domain or to the machine's own SID (not computable here): kept as written.
RELATIVE_ALIASES = frozenset({"DA", "DU", "DG", "DC", "DD", "CA", "SA", "EA", "PA", "RS", "LA", "LG", "AP", "CN", "KA", "EK", "RO"})

#: Account names of well-known SIDs, as ``NTAccount`` translation prints them on an English host.
WELL_KNOWN_NAMES: dict[str, str] = {
    SYSTEM: "NT AUTHORITY\\SYSTEM", ADMINISTRATORS: "BUILTIN\\Administrators", USERS: "BUILTIN\\Users",
    IIS_IUSRS: "BUILTIN\\IIS_IUSRS", IUSR: "NT AUTHORITY\\IUSR", "S-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "S-1-1-0": "Everyone", "S-1-3-0": "CREATOR OWNER", "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE",
    "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE", TRUSTED_INSTALLER: "NT SERVICE\\TrustedInstaller",
}
_SID_OF_NAME = {name.casefold(): sid for sid, name in WELL_KNOWN_NAMES.items()}
_SID_OF_NAME.update({name.split("\\", 1)[1].casefold(): sid for sid, name in WELL_KNOWN_NAMES.items() if "\\" in name})

#: ACE rights codes (ACE strings page). Combined file codes are tried first when writing.
RIGHTS_CODES: dict[str, int] = {
    "FA": 0x1F01FF, "FR": 0x120089, "FW": 0x120116, "FX": 0x1200A0,
    "KA": 0xF003F, "KR": 0x20019, "KW": 0x20006, "KX": 0x20019,
    "GA": 0x10000000, "GX": 0x20000000, "GW": 0x40000000, "GR": 0x80000000,
    "SD": 0x10000, "RC": 0x20000, "WD": 0x40000, "WO": 0x80000,
    "CC": 0x1, "DC": 0x2, "LC": 0x4, "SW": 0x8, "RP": 0x10, "WP": 0x20, "DT": 0x40, "LO": 0x80, "CR": 0x100,
}
_FILE_COMBINED = ("FA", "FR", "FW", "FX")
_SINGLE = ("GA", "GX", "GW", "GR", "SD", "RC", "WD", "WO", "CC", "DC", "LC", "SW", "RP", "WP", "DT", "LO", "CR")

#: .NET ``FileSystemRights`` members (name, value), one name per value, as ``ToString()`` prints.
FILE_SYSTEM_RIGHTS: tuple[tuple[str, int], ...] = (
    ("ReadData", 0x1), ("CreateFiles", 0x2), ("AppendData", 0x4), ("ReadExtendedAttributes", 0x8),
    ("WriteExtendedAttributes", 0x10), ("ExecuteFile", 0x20), ("DeleteSubdirectoriesAndFiles", 0x40),
    ("ReadAttributes", 0x80), ("WriteAttributes", 0x100), ("Write", 0x116), ("Delete", 0x10000),
    ("ReadPermissions", 0x20000), ("Read", 0x20089), ("ReadAndExecute", 0x200A9), ("Modify", 0x301BF),
    ("ChangePermissions", 0x40000), ("TakeOwnership", 0x80000), ("Synchronize", 0x100000),
    ("FullControl", 0x1F01FF),
)
#: Every accepted name (aliases included) -> value.
RIGHTS_BY_NAME: dict[str, int] = {
    **{name.casefold(): value for name, value in FILE_SYSTEM_RIGHTS},
    "listdirectory": 0x1, "writedata": 0x2, "createdirectories": 0x4, "traverse": 0x20,
}
READ_AND_EXECUTE = 0x1200A9  # ReadAndExecute + Synchronize, as FileSystemAccessRule stores it
MODIFY = 0x1301BF            # Modify + Synchronize
FULL_CONTROL = 0x1F01FF

_ACE_FLAGS = {"CI": 0x2, "OI": 0x1, "NP": 0x4, "IO": 0x8, "ID": 0x10, "SA": 0x40, "FA": 0x80}
_ACE_TYPES = {"A": "Allow", "D": "Deny", "OA": "Allow", "OD": "Deny", "AU": "Audit", "AL": "Alarm",
              "OU": "Audit", "OL": "Alarm", "ML": "Label"}
_SID_RE = re.compile(r"S-1-\d+(-\d+)*$", re.IGNORECASE)


class SddlError(ValueError):
    """A security descriptor string that cannot be parsed."""


@dataclass(frozen=True)
class Ace:
    """One ACE: ``type`` (``Allow``/``Deny``/...), ``flags`` (set of codes such as ``OI``),
    ``mask`` (access mask, 32-bit), ``sid`` (``S-1-...``)."""

    type: str
    flags: frozenset[str]
    mask: int
    sid: str

    @property
    def inherited(self) -> bool:
        return "ID" in self.flags

    @property
    def inheritance(self) -> str:
        """InheritanceFlags text as .NET prints it (``"ContainerInherit, ObjectInherit"``)."""

        names = [n for code, n in (("CI", "ContainerInherit"), ("OI", "ObjectInherit")) if code in self.flags]
        return ", ".join(names) or "None"

    @property
    def propagation(self) -> str:
        """PropagationFlags text as .NET prints it (``"NoPropagateInherit, InheritOnly"``)."""

        names = [n for code, n in (("NP", "NoPropagateInherit"), ("IO", "InheritOnly")) if code in self.flags]
        return ", ".join(names) or "None"


@dataclass
class SecurityDescriptor:
    """The parts of a security descriptor string this project reads."""

    owner: str | None = None
    group: str | None = None
    dacl_flags: frozenset[str] = frozenset()
    dacl: list[Ace] = field(default_factory=list)
    has_dacl: bool = False

    @property
    def protected(self) -> bool:
        """``D:P``: the DACL does not inherit from the parent (``AreAccessRulesProtected``)."""

        return "P" in self.dacl_flags


def resolve_sid(text: str) -> str:
    """Return the ``S-1-...`` form of an SDDL SID string (alias or SID).

    Raises:
        SddlError: neither a known alias nor a SID.
    """

    text = text.strip()
    if text.upper() in SID_ALIASES:
        return SID_ALIASES[text.upper()]
    if text.upper() in RELATIVE_ALIASES:
        return text.upper()
    if _SID_RE.match(text):
        return "S" + text[1:]
    raise SddlError(f"unknown SID string {text!r}")


def parse_rights(text: str) -> int:
    """Return the access mask of an ACE's rights field (``0x1200a9``, ``FA``, ``SDGXGWGR``...)."""

    text = text.strip()
    if text.lower().startswith("0x"):
        return int(text, 16) & 0xFFFFFFFF
    if text.isdigit():
        return int(text) & 0xFFFFFFFF
    if len(text) % 2:
        raise SddlError(f"cannot read rights {text!r}")
    mask = 0
    for index in range(0, len(text), 2):
        code = text[index:index + 2].upper()
        if code not in RIGHTS_CODES:
            raise SddlError(f"unknown rights code {code!r} in {text!r}")
        mask |= RIGHTS_CODES[code]
    return mask


def _parse_ace(body: str) -> Ace:
    parts = body.split(";")
    if len(parts) < 6:
        raise SddlError(f"an ACE has six fields: ({body})")
    kind = _ACE_TYPES.get(parts[0].upper())
    if kind is None:
        raise SddlError(f"unknown ACE type {parts[0]!r}")
    flags_text = parts[1].upper()
    flags = {flags_text[i:i + 2] for i in range(0, len(flags_text), 2)}
    unknown = flags - set(_ACE_FLAGS)
    if unknown or len(flags_text) % 2:
        raise SddlError(f"unknown ACE flags {parts[1]!r}")
    return Ace(kind, frozenset(flags), parse_rights(parts[2]), resolve_sid(parts[5]))


def _sections(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    depth, start, name = 0, None, None
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and char in "OGDS" and text[index + 1:index + 2] == ":":
            if name is not None:
                found[name] = text[start:index]
            name, start = char, index + 2
    if depth != 0:
        raise SddlError("unbalanced parentheses")
    if name is not None:
        found[name] = text[start:]
    return found


def parse_sddl(text: str) -> SecurityDescriptor:
    """Parse a security descriptor string as Windows writes it.

    Raises:
        SddlError: the text is not a security descriptor string.
    """

    if not isinstance(text, str) or not text.strip():
        raise SddlError("empty security descriptor string")
    parts = _sections(text.strip())
    if not parts:
        raise SddlError(f"not a security descriptor string: {text[:60]!r}")
    result = SecurityDescriptor()
    if "O" in parts:
        result.owner = resolve_sid(parts["O"])
    if "G" in parts:
        result.group = resolve_sid(parts["G"])
    if "D" in parts:
        dacl = parts["D"]
        head, _, rest = dacl.partition("(")
        result.has_dacl = True
        result.dacl_flags = frozenset(re.findall(r"NO_ACCESS_CONTROL|AI|AR|P", head.upper()))
        body = "(" + rest if rest else ""
        for match in re.finditer(r"\(([^()]*)\)", body):
            result.dacl.append(_parse_ace(match.group(1)))
    return result


def format_rights(mask: int) -> str:
    """Return ``mask`` as .NET ``FileSystemRights.ToString()`` writes it: member names in
    ascending value order (largest members consumed first), or the signed number when bits
    remain that no member names (generic rights of inherit-only entries: ``268435456``)."""

    mask &= 0xFFFFFFFF
    rest, names = mask, []
    for name, value in sorted(FILE_SYSTEM_RIGHTS, key=lambda item: -item[1]):
        if rest & value == value:
            names.append((value, name))
            rest &= ~value
    if rest or not names:
        return str(mask - (1 << 32) if mask & 0x80000000 else mask)
    return ", ".join(name for _, name in sorted(names))


def rights_mask(rights: object) -> int:
    """Return the mask of .NET rights names (``"ReadAndExecute, Synchronize"``), a sequence of
    names, or a number (as .NET prints unnamed combinations, possibly negative).

    Raises:
        ValueError: an unknown name.
    """

    if isinstance(rights, int):
        return rights & 0xFFFFFFFF
    if isinstance(rights, str) and rights.strip().lstrip("-").isdigit():
        return int(rights.strip()) & 0xFFFFFFFF
    names = rights.split(",") if isinstance(rights, str) else list(rights)  # type: ignore[call-overload]
    value = 0
    for name in names:
        key = str(name).strip().casefold()
        if key not in RIGHTS_BY_NAME:
            raise ValueError(f"unknown FileSystemRights name {str(name).strip()!r}")
        value |= RIGHTS_BY_NAME[key]
    return value


def render_rights(mask: int) -> str:
    """Return ``mask`` as an ACE rights field the way Windows writes it: an exact file code
    (``FA``, ``FR``, ``FW``, ``FX``), else single-right codes when they cover every bit
    (``LC``, ``GA``, ``SDGXGWGR``), else hex (``0x1200a9``)."""

    mask &= 0xFFFFFFFF
    for code in _FILE_COMBINED:
        if RIGHTS_CODES[code] == mask:
            return code
    codes, rest = [], mask
    for code in _SINGLE:
        if rest & RIGHTS_CODES[code]:
            codes.append(code)
            rest &= ~RIGHTS_CODES[code]
    if mask and not rest:
        return "".join(codes)
    return hex(mask)


def render_sid(sid: str) -> str:
    """The SDDL SID string Windows writes: the alias when there is one."""

    return _ALIAS_OF.get(sid, sid)


def render_ace(kind: str, flags: Iterable[str], mask: int, sid: str) -> str:
    """One ACE string, e.g. ``(A;OICI;0x1200a9;;;BU)``; flags in Windows' order (OI CI NP IO ID)."""

    order = ("OI", "CI", "NP", "IO", "ID")
    flag_set = set(flags)
    text = "".join(code for code in order if code in flag_set)
    return f"({'A' if kind == 'Allow' else 'D'};{text};{render_rights(mask)};;;{render_sid(sid)})"


def protected_sddl(full_control: Iterable[str] = (SYSTEM, ADMINISTRATORS), read_execute: Iterable[str] = (),
                   modify: Iterable[str] = ()) -> str:
    """Return the DACL of a protected folder: no inheritance from the parent (``D:P``), each SID
    given its rights on the folder and everything below (``OICI``).

    Args:
        full_control: SIDs with FullControl (default SYSTEM and Administrators).
        read_execute: SIDs with Read & Execute (e.g. an application pool's SID).
        modify: SIDs with Modify.
    """

    aces = []
    for sids, mask in ((full_control, FULL_CONTROL), (modify, MODIFY), (read_execute, READ_AND_EXECUTE)):
        for sid in sids:
            aces.append(render_ace("Allow", ("OI", "CI"), mask, resolve_sid(sid)))
    return "D:P" + "".join(aces)


def app_pool_sid(name: str) -> str:
    """Return the SID of ``IIS AppPool\\<name>`` (a virtual account, S-1-5-82): the SHA-1 of the
    UTF-16LE of the lower-cased pool name read as five little-endian 32-bit sub-authorities.

    Checked against published SIDs: ``DefaultAppPool`` is
    S-1-5-82-3006700770-424185619-1745488364-794895919-4004696415 (tests). The same name in any
    case gives the same SID, as pool names are case-insensitive.
    """

    digest = hashlib.sha1(name.lower().encode("utf-16-le")).digest()
    return "S-1-5-82-" + "-".join(str(part) for part in struct.unpack("<5I", digest))


def principal_sid(principal: str) -> str | None:
    """Return the SID of a principal the controller can compute without the host: a SID string,
    ``IIS AppPool\\<name>``, or a well-known account (SYSTEM, Administrators, Users, IIS_IUSRS,
    IUSR, ...; with or without ``NT AUTHORITY\\``/``BUILTIN\\``). None for any other account
    (domain or local users: the host translates those)."""

    text = principal.strip()
    if _SID_RE.match(text):
        return "S" + text[1:]
    if text.casefold().startswith("iis apppool\\"):
        return app_pool_sid(text.split("\\", 1)[1])
    return _SID_OF_NAME.get(text.casefold())


def account_name(sid: str, names: Mapping[str, str] | None = None) -> str:
    """The account name of ``sid``: the host's translation (``names``), else the well-known
    name, else the SID itself (an account the host could not translate)."""

    if names and names.get(sid):
        return str(names[sid])
    return WELL_KNOWN_NAMES.get(sid, sid)


def acl_entries(descriptor: SecurityDescriptor, names: Mapping[str, str] | None = None) -> list[dict]:
    """Return the DACL's Allow/Deny ACEs as the fact's entries (``docs/remote-functions.md``):
    ``{"principal", "sid", "type", "rights", "inherited", "inheritance", "propagation"}``."""

    return [
        {"principal": account_name(ace.sid, names), "sid": ace.sid, "type": ace.type,
         "rights": format_rights(ace.mask), "inherited": ace.inherited,
         "inheritance": ace.inheritance, "propagation": ace.propagation}
        for ace in descriptor.dacl if ace.type in ("Allow", "Deny")
    ]
