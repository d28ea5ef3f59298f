"""The served web.config's ``<httpPlatform>`` and rewrite rules, as the doctor reads them
(the text comes from ``Get-DoctorState``; IIS's defaults from HttpPlatformHandler 1.2's
configuration reference, docs/field-facts.md)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..release.webconfig import platform_environment
from .model import Evidence
from .modules import parse_web_config

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d+)?$")


def timespan_seconds(text: str | None) -> float | None:
    """``[d.]hh:mm:ss`` → seconds, ``None`` when it is not one."""

    match = _TIMESPAN.match((text or "").strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def http_platform(evidence: Evidence) -> dict[str, Any] | None:
    """``{processPath, arguments, requestTimeout (s), startupTimeLimit (s), stdoutLogEnabled,
    environment}`` of the served web.config, with HttpPlatformHandler's defaults; ``None``
    without ``<httpPlatform>``."""

    root, _ = parse_web_config(evidence)
    element = root.find("system.webServer/httpPlatform") if root is not None else None
    if element is None:
        return None
    environment = {name.upper(): value for name, value in platform_environment(element).items()}
    try:
        startup = float(element.get("startupTimeLimit", "10"))
    except ValueError:
        startup = None
    return {"processPath": element.get("processPath", ""), "arguments": element.get("arguments", ""),
            "requestTimeout": timespan_seconds(element.get("requestTimeout", "00:02:00")),
            "requestTimeoutText": element.get("requestTimeout", "00:02:00 (default)"),
            "startupTimeLimit": startup, "stdoutLogEnabled": element.get("stdoutLogEnabled", "false").lower() == "true",
            "environment": environment}


def argument_value(arguments: str, name: str) -> str | None:
    """The value of ``--name value`` / ``--name=value`` in a command line (Windows quoting
    approximated with shlex in POSIX mode: enough for option values)."""

    try:
        words = shlex.split(arguments.replace("\\", "/"))
    except ValueError:
        words = arguments.split()
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def rewrite_rules(evidence: Evidence) -> list[dict[str, Any]]:
    """Rules of the served web.config: ``{name, action_type, url, server_variables}``."""

    root, _ = parse_web_config(evidence)
    rules = root.find("system.webServer/rewrite/rules") if root is not None else None
    result = []
    for rule in list(rules) if rules is not None else []:
        if rule.tag != "rule":
            continue
        action = rule.find("action")
        variables = rule.find("serverVariables")
        result.append({"name": rule.get("name", ""), "action_type": action.get("type", "") if action is not None else "",
                       "url": action.get("url", "") if action is not None else "",
                       "server_variables": [s.get("name", "") for s in (list(variables) if variables is not None else []) if s.tag == "set"]})
    return result


def arr_mode(evidence: Evidence) -> bool:
    """Whether the served web.config proxies with ARR (a Rewrite rule to ``http(s)://``)."""

    return any(r["action_type"].casefold() == "rewrite" and r["url"].casefold().startswith(("http://", "https://"))
               for r in rewrite_rules(evidence))
