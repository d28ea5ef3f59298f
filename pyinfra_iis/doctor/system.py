"""The host around IIS: a Windows Firewall rule per bound port, a pending reboot, disk space.

Evidence: ``Get-DoctorState``'s ``firewall`` (inbound rules whose TCP port filter names one of
the bound ports or Any: ``Get-NetFirewallRule`` / ``Get-NetFirewallPortFilter``) and ``disk``
(free and total bytes of the release root's drive), ``Get-HostState``'s ``reboot_pending``
(Component Based Servicing, Windows Update, pending file renames).
"""

from __future__ import annotations

from .model import FAIL, OK, WARN, Check, Evidence, split_binding

GIB = 1024 ** 3
#: Below this much free space on the release root's drive: fail (a release and its venv need room).
DISK_FAIL_BYTES = 1 * GIB
#: Below this (or 10 % of the drive): warn.
DISK_WARN_BYTES = 5 * GIB


def bound_ports(evidence: Evidence) -> list[int]:
    ports = set()
    for site in evidence.site_names():
        for binding in evidence.bindings(site):
            _, port, _ = split_binding(binding.get("bindingInformation", ""))
            if binding.get("protocol", "").casefold() in ("http", "https") and port.isdigit():
                ports.add(int(port))
    return sorted(ports)


def _matches(rule: dict, port: int) -> bool:
    protocol = str(rule.get("protocol", "Any")).upper()
    ports = [str(p) for p in rule.get("local_ports") or []]
    in_range = any(p.casefold() == "any" or p == str(port) or ("-" in p and p.split("-")[0].isdigit() and p.split("-")[1].isdigit()
                   and int(p.split("-")[0]) <= port <= int(p.split("-")[1])) for p in ports)
    return protocol in ("TCP", "6", "ANY") and in_range and str(rule.get("direction", "")).casefold() == "inbound"


def check_firewall(evidence: Evidence) -> list[Check]:
    """``firewall.<port>``: an enabled inbound Allow rule for each bound TCP port, no enabled Block rule."""

    if evidence.config is None:
        return []
    rules = evidence.doctor.get("firewall") or []
    checks = []
    for port in bound_ports(evidence):
        matching = [r for r in rules if _matches(r, port) and r.get("enabled")]
        blocks = [r for r in matching if str(r.get("action", "")).casefold() == "block"]
        allows = [r for r in matching if str(r.get("action", "")).casefold() == "allow"]
        fix = f"New-NetFirewallRule -DisplayName 'IIS TCP {port}' -Direction Inbound -Protocol TCP -LocalPort {port} -Action Allow"
        if blocks:
            checks.append(Check(f"firewall.{port}", FAIL, f"inbound TCP {port} blocked by {', '.join(r.get('name', '?') for r in blocks)}",
                                f"Disable-NetFirewallRule -DisplayName '{blocks[0].get('name')}'"))
        elif not allows:
            off = [r.get("name", "?") for r in rules if _matches(r, port) and not r.get("enabled")]
            why = f" (disabled: {', '.join(off)})" if off else ""
            checks.append(Check(f"firewall.{port}", FAIL, f"no enabled inbound Allow rule for TCP {port}{why}: clients cannot connect",
                                f"Enable-NetFirewallRule -DisplayName '{off[0]}'" if off else fix))
        else:
            checks.append(Check(f"firewall.{port}", OK, f"allowed by {', '.join(r.get('name', '?') for r in allows)}"))
    return checks


def check_host(evidence: Evidence) -> list[Check]:
    """``host.reboot_pending`` and ``host.disk``."""

    checks = []
    if evidence.state.get("reboot_pending"):
        checks.append(Check("host.reboot_pending", WARN, "a reboot is pending (an installer or update asked for one): modules it "
                            "installed may not be loaded yet", "Restart-Computer at a quiet time"))
    else:
        checks.append(Check("host.reboot_pending", OK, "no reboot pending"))
    disk = evidence.doctor.get("disk")
    if disk and disk.get("free_bytes") is not None:
        free, total = int(disk["free_bytes"]), int(disk.get("total_bytes") or 0)
        text = f"{disk.get('drive')} {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB"
        fix = "free space on the drive, or release_app.keep_releases lower"
        if free < DISK_FAIL_BYTES:
            checks.append(Check("host.disk", FAIL, text + ": too little for a release and its venv", fix))
        elif free < DISK_WARN_BYTES or (total and free < total / 10):
            checks.append(Check("host.disk", WARN, text, fix))
        else:
            checks.append(Check("host.disk", OK, text))
    return checks
