"""Security descriptors (SDDL) for folders the project creates on hosts.

Minimal version written by the release helper; the certacl helper owns this module (at merge,
theirs wins). ``protected_sddl`` builds a protected DACL (``D:P``: nothing inherited from the
parent, so ``BUILTIN\\Users`` create rights on ``C:\\`` do not reach release roots) whose entries
are inherited by subfolders and files (``OICI``).
Docs: https://learn.microsoft.com/windows/win32/secauthz/security-descriptor-string-format
"""

from __future__ import annotations

import hashlib
from typing import Iterable

#: Access masks as SDDL rights strings: full control, read & execute, modify.
_FULL, _READ_EXECUTE, _MODIFY = "FA", "0x1200a9", "0x1301bf"


def protected_sddl(full_control: Iterable[str] = ("S-1-5-18", "S-1-5-32-544"), read_execute: Iterable[str] = (),
                   modify: Iterable[str] = ()) -> str:
    """``O:BAD:P(A;OICI;FA;;;S-1-5-18)...``: owner Administrators, a protected DACL allowing each
    SID its rights, inherited by everything below."""

    aces = [f"(A;OICI;{mask};;;{sid})" for mask, sids in ((_FULL, full_control), (_READ_EXECUTE, read_execute), (_MODIFY, modify)) for sid in sids]
    return "O:BAD:P" + "".join(aces)


def app_pool_sid(name: str) -> str:
    """The virtual account SID of ``IIS AppPool\\<name>``: S-1-5-82 followed by the SHA-1 of the
    upper-cased UTF-16LE name as five little-endian 32-bit numbers (what ``sc showsid`` prints for
    service SIDs; IIS uses the same derivation for pool identities)."""

    digest = hashlib.sha1(name.upper().encode("utf-16-le")).digest()
    parts = [str(int.from_bytes(digest[i:i + 4], "little")) for i in range(0, 20, 4)]
    return "S-1-5-82-" + "-".join(parts)
