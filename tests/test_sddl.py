"""pyinfra_iis.sddl: SDDL as Windows writes it, parsed on the controller; SIDs computed there.

Samples are real Windows output, cited where each comes from:

- ``TOOLS_SHARE``: Microsoft's "The Security Descriptor Definition Language of Love (Part 2)"
  (Ask the Directory Services Team, techcommunity.microsoft.com, 2008/2019): ``cacls /S`` of a
  folder on C:. Its inherited entries (``ID``) are C:\\'s defaults as Windows Server writes them
  (Administrators and SYSTEM full, CREATOR OWNER ``GA`` inherit-only, Users read & execute ``0x1200a9``,
  Users ``LC`` = AppendData and ``DC`` = CreateFiles on sub-folders), and it has an explicit DENY.
- ``TEXT_FILE``: "how to decipher sddl for useful stuff" (marcusoh.blogspot.com, 2005): a file in
  C:\\temp, explicit and inherited entries, owner BA.
- ``POOL_PIPE``: winPEAS output in a public TryHackMe "HackPark" write-up (Windows Server 2012 R2,
  IIS 8.5): a named pipe of application pool ``Blog``, protected DACL with the pool's
  ``S-1-5-82`` SID, owner the pool identity.
"""

from __future__ import annotations

import pytest

from pyinfra_iis import sddl
from pyinfra_iis.facts.acl_state import convert_path

TOOLS_SHARE = ("D:AI(D;OICI;FA;;;BG)(A;;FA;;;BA)(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)(A;OICIIOID;GA;;;CO)"
               "(A;OICIID;0x1200a9;;;BU)(A;CIID;LC;;;BU)(A;CIID;DC;;;BU)")
TEXT_FILE = "O:BAG:DUD:ARAI(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x1200a9;;;BU)(A;ID;FA;;;BA)(A;ID;FA;;;SY)(A;ID;0x1200a9;;;BU)"
BLOG_SID = "S-1-5-82-2734256158-3485737692-275298378-1529073857-2789248872"
POOL_PIPE = f"O:{BLOG_SID}G:{BLOG_SID}D:P(A;;0x12019f;;;BA)(A;;0x12019f;;;{BLOG_SID})"


def test_app_pool_sid_matches_published_sids():
    # DefaultAppPool's SID as Microsoft and every IIS host show it (icacls, whoami /user in a pool).
    assert sddl.app_pool_sid("DefaultAppPool") == "S-1-5-82-3006700770-424185619-1745488364-794895919-4004696415"
    assert sddl.app_pool_sid("Blog") == sddl.app_pool_sid("BLOG") == BLOG_SID  # the POOL_PIPE sample
    assert sddl.principal_sid("IIS AppPool\\DefaultAppPool") == sddl.app_pool_sid("DefaultAppPool")


def test_well_known_principals():
    assert sddl.principal_sid("SYSTEM") == sddl.principal_sid("NT AUTHORITY\\SYSTEM") == "S-1-5-18"
    assert sddl.principal_sid("Administrators") == "S-1-5-32-544"
    assert sddl.principal_sid("IIS_IUSRS") == sddl.principal_sid("BUILTIN\\IIS_IUSRS") == "S-1-5-32-568"
    assert sddl.principal_sid("IUSR") == "S-1-5-17"
    assert sddl.principal_sid("Users") == "S-1-5-32-545"
    assert sddl.principal_sid("CONTOSO\\svc-web") is None  # the host translates those


def test_default_c_drive_entries_with_deny_and_inherited():
    descriptor = sddl.parse_sddl(TOOLS_SHARE)
    assert not descriptor.protected and descriptor.owner is None
    entries = sddl.acl_entries(descriptor, {})
    assert entries[0] == {"principal": "S-1-5-32-546", "sid": "S-1-5-32-546", "type": "Deny", "rights": "FullControl",
                          "inherited": False, "inheritance": "ContainerInherit, ObjectInherit", "propagation": "None"}
    assert entries[1]["principal"] == "BUILTIN\\Administrators" and not entries[1]["inherited"]
    assert entries[1]["inheritance"] == "None"
    creator = entries[4]
    assert creator == {"principal": "CREATOR OWNER", "sid": "S-1-3-0", "type": "Allow", "rights": "268435456",
                       "inherited": True, "inheritance": "ContainerInherit, ObjectInherit", "propagation": "InheritOnly"}
    assert [e["rights"] for e in entries[5:]] == ["ReadAndExecute, Synchronize", "AppendData", "CreateFiles"]
    assert all(e["inherited"] and e["principal"] == "BUILTIN\\Users" for e in entries[5:])
    assert entries[6]["inheritance"] == "ContainerInherit"


def test_file_with_owner_and_auto_inherit_flags():
    descriptor = sddl.parse_sddl(TEXT_FILE)
    assert descriptor.owner == "S-1-5-32-544" and descriptor.dacl_flags == {"AR", "AI"} and not descriptor.protected
    assert [(a.sid, a.mask, a.inherited) for a in descriptor.dacl][:3] == [
        ("S-1-5-32-544", 0x1F01FF, False), ("S-1-5-18", 0x1F01FF, False), ("S-1-5-32-545", 0x1200A9, False)]
    assert [a.inherited for a in descriptor.dacl[3:]] == [True, True, True]


def test_pool_ace_protected_and_names_from_the_host_map():
    entries = convert_path({"exists": True, "is_directory": False, "is_reparse_point": False, "sddl": POOL_PIPE,
                            "sids": {BLOG_SID: "IIS APPPOOL\\Blog"}})
    assert entries["inheritance_protected"] is True
    assert entries["entries"][1] == {"principal": "IIS APPPOOL\\Blog", "sid": BLOG_SID, "type": "Allow",
                                     "rights": "Write, Read, Synchronize", "inherited": False,
                                     "inheritance": "None", "propagation": "None"}
    # Without a translation (pool deleted, or not created yet) the SID stands for the name.
    unnamed = convert_path({"exists": True, "sddl": POOL_PIPE, "sids": {}})
    assert unnamed["entries"][1]["principal"] == BLOG_SID


def test_rights_codes_and_hex():
    assert sddl.parse_rights("FA") == 0x1F01FF and sddl.parse_rights("FR") == 0x120089
    assert sddl.parse_rights("FX") == 0x1200A0 and sddl.parse_rights("FW") == 0x120116
    assert sddl.parse_rights("SDGXGWGR") == 0xE0010000
    assert sddl.format_rights(0xA0000000) == "-1610612736"  # GENERIC_READ|EXECUTE as .NET prints it
    assert sddl.render_rights(0x1F01FF) == "FA" and sddl.render_rights(0x1200A9) == "0x1200a9"
    assert sddl.render_rights(0x4) == "LC" and sddl.render_rights(0x10000000) == "GA"
    with pytest.raises(sddl.SddlError):
        sddl.parse_sddl("D:(A;;QQ;;;BA)")
    with pytest.raises(sddl.SddlError):
        sddl.parse_sddl("D:(A;;FA;;;BA")


def test_protected_sddl_round_trips():
    pool = sddl.app_pool_sid("api")
    text = sddl.protected_sddl(read_execute=[pool], modify=["S-1-5-32-545"])
    assert text == f"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;BU)(A;OICI;0x1200a9;;;{pool})"
    descriptor = sddl.parse_sddl(text)
    assert descriptor.protected
    assert [(a.sid, sddl.format_rights(a.mask)) for a in descriptor.dacl] == [
        ("S-1-5-18", "FullControl"), ("S-1-5-32-544", "FullControl"),
        ("S-1-5-32-545", "Modify, Synchronize"), (pool, "ReadAndExecute, Synchronize")]
    assert sddl.protected_sddl() == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
