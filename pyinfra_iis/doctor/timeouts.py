"""Timeouts that line up, the event loop, unbuffered output and proxy headers.

Evidence: the served web.config (``<httpPlatform>``: requestTimeout, startupTimeLimit,
arguments, environmentVariables; rewrite rules in ARR mode), the server's ``proxy`` and
``rewrite/allowedServerVariables`` sections (``Get-HostState``) and the inventory's
``release_app.health_deadline``. The rules are those of
:class:`pyinfra_iis.models.release.ReleaseSettings` (docs/field-facts.md "Uvicorn / FastAPI
behind IIS"): uvicorn's ``--timeout-keep-alive`` (default 5 s) at least HttpPlatformHandler's
``requestTimeout`` (default 2 min, whole minutes only; 502.3 / WinError 64 otherwise), the health
deadline above ``startupTimeLimit``, ``--loop asyncio:SelectorEventLoop`` (the Proactor loop can
lose its listening socket after a reset and hang: cpython #93821), ``PYTHONUNBUFFERED`` (else the
stdout log stays empty).
"""

from __future__ import annotations

from .model import FAIL, OK, WARN, Check, Evidence
from .webconfig import argument_value, arr_mode, http_platform, rewrite_rules, timespan_seconds

#: uvicorn's own --timeout-keep-alive default (seconds).
UVICORN_KEEP_ALIVE_DEFAULT = 5.0
FIX = "release_app.{} (rendered into the release's web.config), then a new release"


def check_timeouts(evidence: Evidence) -> list[Check]:
    """``timeouts.request_timeout``, ``timeouts.keep_alive``, ``timeouts.graceful_shutdown``,
    ``timeouts.startup``, ``timeouts.arr_proxy``,
    ``runtime.event_loop``, ``runtime.unbuffered``."""

    if not evidence.target.site or evidence.config is None:
        return []
    if evidence.target.arr:  # ARR mode: no HttpPlatformHandler on the request path; ARR's timeout vs uvicorn's
        from .arr import proxy_timeout

        return [proxy_timeout(evidence)]
    platform = http_platform(evidence)
    checks = []
    if platform is not None:
        checks += _platform_checks(evidence, platform)
    checks.append(_arr_proxy(evidence))
    return checks


def _platform_checks(evidence: Evidence, platform: dict) -> list[Check]:
    checks = []
    request = platform["requestTimeout"]
    text = platform["requestTimeoutText"]
    if request is None or request % 60:
        checks.append(Check("timeouts.request_timeout", FAIL, f"requestTimeout={text}: HttpPlatformHandler takes whole minutes only",
                            FIX.format("request_timeout")))
    else:
        checks.append(Check("timeouts.request_timeout", OK, f"requestTimeout={text} ({request:g} s)"))
    arguments = platform["arguments"]
    value = argument_value(arguments, "--timeout-keep-alive")
    try:
        keep_alive = float(value) if value is not None else UVICORN_KEEP_ALIVE_DEFAULT
    except ValueError:
        keep_alive = UVICORN_KEEP_ALIVE_DEFAULT
    shown = f"--timeout-keep-alive {value}" if value is not None else f"no --timeout-keep-alive (uvicorn default {UVICORN_KEEP_ALIVE_DEFAULT:g} s)"
    if request is not None and keep_alive < request:
        checks.append(Check("timeouts.keep_alive", FAIL, f"{shown} < requestTimeout {request:g} s: uvicorn closes connections IIS "
                            "reuses (intermittent 502.3, WinError 64)", FIX.format("timeout_keep_alive")))
    else:
        checks.append(Check("timeouts.keep_alive", OK, f"{shown} >= requestTimeout {request or 0:g} s"))
    checks.append(_graceful(evidence, arguments))
    startup = platform["startupTimeLimit"]
    deadline = evidence.target.health_deadline
    if deadline is not None and startup is not None and deadline <= startup:
        checks.append(Check("timeouts.startup", FAIL, f"health deadline {deadline:g} s <= startupTimeLimit {startup:g} s: a slow but "
                            "healthy start fails the deploy", FIX.format("health_deadline")))
    else:
        checks.append(Check("timeouts.startup", OK, f"startupTimeLimit {startup:g} s, health deadline "
                            f"{'%g s' % deadline if deadline is not None else 'not set'}"))
    loop = argument_value(arguments, "--loop")
    if loop and "selector" in loop.casefold():
        checks.append(Check("runtime.event_loop", OK, f"--loop {loop}"))
    elif "uvicorn" in arguments.casefold():
        checks.append(Check("runtime.event_loop", FAIL, f"--loop {loop or '(auto: Proactor on Windows)'}: the Proactor loop can hang "
                            "after a connection reset (cpython #93821)", "arguments --loop asyncio:SelectorEventLoop (templates/web.config.j2)"))
    else:
        checks.append(Check("runtime.event_loop", WARN, "not a uvicorn command line: event loop not checked", ""))
    unbuffered = platform["environment"].get("PYTHONUNBUFFERED", "")
    words = arguments.split()
    if (unbuffered and unbuffered != "0") or "-u" in words:
        checks.append(Check("runtime.unbuffered", OK, f"PYTHONUNBUFFERED={unbuffered}" if unbuffered else "python -u"))
    else:
        checks.append(Check("runtime.unbuffered", FAIL, "neither PYTHONUNBUFFERED nor -u: Python buffers stdout, the log stays empty "
                            "until the buffer fills (or is lost on a crash)", "web.config <environmentVariable name=\"PYTHONUNBUFFERED\" value=\"1\"/>"))
    return checks


def _graceful(evidence: Evidence, arguments: str) -> Check:
    """uvicorn's ``--timeout-graceful-shutdown`` below the pool's ``processModel/@shutdownTimeLimit``
    (default 00:01:30): WAS kills the worker process, and HttpPlatformHandler's child with it, then."""

    element = evidence.pool_element(evidence.target.pool)
    model = element.find("processModel") if element is not None else None
    text = (model.get("shutdownTimeLimit") if model is not None else None) or "00:01:30"
    limit = timespan_seconds(text)
    value = argument_value(arguments, "--timeout-graceful-shutdown")
    try:
        graceful = float(value) if value is not None else None
    except ValueError:
        graceful = None
    if graceful is None:
        return Check("timeouts.graceful_shutdown", OK, f"no --timeout-graceful-shutdown (uvicorn waits for open requests); "
                     f"shutdownTimeLimit={text}")
    if limit is not None and graceful >= limit:
        return Check("timeouts.graceful_shutdown", FAIL, f"--timeout-graceful-shutdown {value} >= the pool's shutdownTimeLimit {text}: "
                     "WAS kills the process before requests finish", FIX.format("timeout_graceful_shutdown") +
                     f"; or iis_app_pools[name={evidence.target.pool}].extra_attributes processModel.shutdownTimeLimit")
    return Check("timeouts.graceful_shutdown", OK, f"--timeout-graceful-shutdown {value} < shutdownTimeLimit {text}")


def _server_section(evidence: Evidence, section: str) -> dict:
    return (((evidence.state.get("iis") or {}).get("sections") or {}).get(section)) or {}


def _arr_proxy(evidence: Evidence) -> Check:
    proxy = (_server_section(evidence, "system.webServer/proxy").get("attributes") or {})
    enabled = proxy.get("enabled", "false").lower() == "true"
    timeout = proxy.get("timeout", "00:02:00")
    if not arr_mode(evidence):
        return Check("timeouts.arr_proxy", OK, f"HttpPlatformHandler mode: ARR is not on the request path (proxy enabled={str(enabled).lower()}, "
                     f"timeout={timeout})")
    if not enabled:
        return Check("timeouts.arr_proxy", FAIL, "web.config rewrites to a backend URL but ARR's proxy is disabled (404 / 502)",
                     "iis_server.proxy.enabled: true")
    seconds = timespan_seconds(timeout)
    return Check("timeouts.arr_proxy", OK, f"ARR proxy enabled, timeout={timeout} ({seconds or 0:g} s)")


def check_proxy_headers(evidence: Evidence) -> list[Check]:
    """``proxy.headers``: in ARR mode every server variable a rule sets is allow-listed at server
    level, and X-Forwarded-Proto is set (ARR does not set it); in HttpPlatformHandler mode
    uvicorn trusts the forwarded headers from 127.0.0.1 only (not ``--forwarded-allow-ips *``)."""

    if not evidence.target.site or evidence.config is None:
        return []
    if evidence.target.arr:  # ARR mode: the rule is in applicationHost.config's location for the site
        from .arr import proxy_headers

        return proxy_headers(evidence)
    if not arr_mode(evidence):
        platform = http_platform(evidence) or {}
        allowed = argument_value(platform.get("arguments", ""), "--forwarded-allow-ips")
        if allowed is not None and allowed.strip() == "*":
            return [Check("proxy.headers", FAIL, "--forwarded-allow-ips *: uvicorn trusts X-Forwarded-For/-Proto from any client, "
                          "not only from IIS on 127.0.0.1", "--forwarded-allow-ips 127.0.0.1 (templates/web.config.j2)")]
        return [Check("proxy.headers", OK, "HttpPlatformHandler sets X-Forwarded-For and X-Forwarded-Proto itself (no rewrite rule); "
                      f"uvicorn trusts them from {allowed or '127.0.0.1 (its default)'}")]
    allowed = {str(item.get("attributes", {}).get("name", "")).upper()
               for item in _server_section(evidence, "system.webServer/rewrite/allowedServerVariables").get("items") or []
               if item.get("tag") == "add"}
    used = sorted({name.upper() for rule in rewrite_rules(evidence) for name in rule["server_variables"]})
    missing = [name for name in used if name not in allowed]
    if missing:
        return [Check("proxy.headers", FAIL, f"rules set {', '.join(missing)}, not allow-listed at server level: every request "
                      "answers 500.50", f"iis_server.allowed_server_variables: add {', '.join(missing)}")]
    if "HTTP_X_FORWARDED_PROTO" not in used:
        return [Check("proxy.headers", WARN, "ARR rule does not set HTTP_X_FORWARDED_PROTO: the app builds http:// redirects",
                      "a <set name=\"HTTP_X_FORWARDED_PROTO\" value=\"https\"/> in the rule")]
    return [Check("proxy.headers", OK, f"rules set {', '.join(used)}; all allow-listed")]
