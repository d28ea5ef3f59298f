"""The host around IIS: a Windows Firewall rule per bound port, a pending reboot, disk space.

Evidence: ``Get-DoctorState``'s ``firewall``: the inbound rules of the ActiveStore (local and
Group Policy) whose port filter's protocol is TCP or Any (``Get-NetFirewallRule`` /
``Get-NetFirewallPortFilter``; a port list, a range ``8000-8100`` or ``Any`` is matched here),
each with its profile, and the active profile with each profile's on/off switch
(``Get-NetFirewallSetting`` / ``Get-NetFirewallProfile``): a rule counts only when its profile
is ``Any`` or one of the active ones, and with the firewall off for the active profile nothing
is filtered. And ``disk``
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


def _profiles(text: object) -> set[str]:
    """``"Domain, Public"`` → ``{"domain", "public"}`` (the profile flags as PowerShell prints them)."""

    return {p.strip().casefold() for p in str(text or "").split(",") if p.strip()}


def check_firewall(evidence: Evidence) -> list[Check]:
    """``firewall.<port>``: an enabled inbound Allow rule of an active profile for each bound TCP
    port, no such Block rule (ok when the active profile's firewall is off; warn when the host
    could not read the firewall)."""

    if evidence.config is None:
        return []
    firewall, error = evidence.part("firewall")
    if error is not None:
        return [Check(f"firewall.{port}", WARN, f"could not read the firewall rules: {error}",
                      "check with: Get-NetFirewallRule -PolicyStore ActiveStore -Direction Inbound") for port in bound_ports(evidence)]
    firewall = firewall if isinstance(firewall, dict) else {"rules": firewall or []}
    active = _profiles(firewall.get("active_profile")) & {"domain", "private", "public"}  # else unknown: no profile filter
    switches = {str(k).casefold(): bool(v) for k, v in (firewall.get("profiles") or {}).items()}
    if active and switches and not any(switches.get(p, True) for p in active):
        return [Check(f"firewall.{port}", OK, f"Windows Firewall is off for the active profile {firewall.get('active_profile')}: "
                      f"TCP {port} is not filtered") for port in bound_ports(evidence)]
    rules = [r for r in firewall.get("rules") or []
             if not active or "any" in _profiles(r.get("profile") or "Any") or _profiles(r.get("profile")) & active]
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
            other = [f"{r.get('name', '?')} ({r.get('profile')})" for r in firewall.get("rules") or [] if r not in rules
                     and _matches(r, port) and r.get("enabled") and str(r.get("action", "")).casefold() == "allow"]
            why = (f" (disabled: {', '.join(off)})" if off else "") + (
                f" (only for another profile than {firewall.get('active_profile')}: {', '.join(other)})" if other else "")
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
    disk, error = evidence.part("disk")
    if error is not None:
        checks.append(Check("host.disk", WARN, f"could not read the free space: {error}", "check with: Get-Volume"))
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
