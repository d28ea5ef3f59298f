"""Application pools (``system.applicationHost/applicationPools``) with Python-friendly defaults.

Attribute names, ranges and IIS defaults are those of ``IIS_schema.xml`` (section
``system.applicationHost/applicationPools``); the tests compare :data:`IIS_DEFAULTS` and the
ranges below with the schema file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from .types import show
from .base import IisModel, iis_bool
from .types import Duration, EnvVarName, PoolName, Principal, TimeOfDay, TimeSpanRange, _refuse_bool

#: What IIS itself uses when an attribute is absent (``defaultValue`` in IIS_schema.xml), as the
#: text IIS writes. Our defaults differ where noted on the fields.
IIS_DEFAULTS: dict[str, str] = {
    "autoStart": "true",
    "managedRuntimeVersion": "",
    "queueLength": "1000",
    "startMode": "OnDemand",
    "processModel.identityType": "ApplicationPoolIdentity",
    "processModel.idleTimeout": "00:20:00",
    "processModel.loadUserProfile": "false",
    "recycling.periodicRestart.time": "1.05:00:00",
    "failure.rapidFailProtection": "true",
    "failure.rapidFailProtectionInterval": "00:05:00",
    "failure.rapidFailProtectionMaxCrashes": "5",
}

#: ``timeSpanRange`` parameters (min, max, granularity; seconds) from the schema.
IDLE_TIMEOUT_RANGE = TimeSpanRange(0, 2592000, 60)
PERIODIC_RESTART_RANGE = TimeSpanRange(0, 25920000, 60)
RAPID_FAIL_INTERVAL_RANGE = TimeSpanRange(60, 8640000, 60)
#: ``integerRange`` of ``queueLength`` and ``failure/@rapidFailProtectionMaxCrashes``.
QUEUE_LENGTH_RANGE = (10, 65535)
MAX_CRASHES_RANGE = (1, 2147483647)

IdentityType = Literal["ApplicationPoolIdentity", "LocalSystem", "LocalService", "NetworkService", "SpecificUser"]

#: Attributes the model manages itself; ``extra_attributes`` may not set them.
MANAGED_ATTRIBUTES = frozenset(IIS_DEFAULTS) | {"name", "processModel.userName", "processModel.password"}


class RapidFailProtection(IisModel):
    """``failure`` element: rapid-fail protection stops the pool (503) after ``max_failures``
    worker-process crashes within ``interval``. Defaults are IIS's (schema: true, 5, 00:05:00):
    a crash of the Python process is handled by HttpPlatformHandler, not counted here.
    """

    enabled: bool = Field(default=True, description="failure/@rapidFailProtection (IIS default true).")
    max_failures: Annotated[int, BeforeValidator(_refuse_bool), Field(ge=MAX_CRASHES_RANGE[0], le=MAX_CRASHES_RANGE[1])] = Field(
        default=5, description="failure/@rapidFailProtectionMaxCrashes (IIS default 5, range 1-2147483647)."
    )
    interval: Annotated[Duration, RAPID_FAIL_INTERVAL_RANGE] = Field(
        default=Duration(300), description="failure/@rapidFailProtectionInterval (IIS default 00:05:00, whole minutes, 1 min-100 days)."
    )


def _attribute_path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*){0,3}", value):
        raise PydanticCustomError("attribute_path", "{key} is not an attribute path like 'processModel.maxProcesses'", {"key": show(value)})
    if value in MANAGED_ATTRIBUTES or value.lower().endswith("password"):
        raise PydanticCustomError("attribute_path", "{key} is managed by a dedicated field of the model (or is a secret); set that field instead", {"key": value})
    return value


def _attribute_value(value: Any) -> Union[bool, int, str]:
    if isinstance(value, str) and any(ord(c) < 32 for c in value):
        raise PydanticCustomError("attribute_value", "attribute values cannot contain control characters")
    if not isinstance(value, (bool, int, str)):
        raise PydanticCustomError("attribute_value", "an attribute value is text, a whole number or true/false, not {kind}", {"kind": type(value).__name__})
    return value


#: Path of an attribute under the pool's ``<add>`` element: ``element.attribute``.
AttributePath = Annotated[str, AfterValidator(_attribute_path)]
AttributeValue = Annotated[Union[bool, int, str], PlainValidator(_attribute_value)]


def _unique_schedule(times: tuple[Duration, ...]) -> tuple[Duration, ...]:
    if len(set(times)) != len(times):
        raise PydanticCustomError("schedule", "a time of day is listed twice (schedule values are a unique key)")
    return tuple(sorted(times))


def _env_values(env: dict[str, SecretStr]) -> dict[str, SecretStr]:
    names = [name.upper() for name in env]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PydanticCustomError("environment", "environment variable {names} given twice (Windows names are case-insensitive)", {"names": ", ".join(duplicates)})
    empty = sorted(name for name, value in env.items() if not value.get_secret_value())
    if empty:
        raise PydanticCustomError("environment", "environment variable {names} has an empty value (IIS requires a non-empty value)", {"names": ", ".join(empty)})
    return env


class AppPool(IisModel):
    """One entry of host data ``iis_app_pools``: an application pool for a Python app.

    The defaults are right for a Python process behind HttpPlatformHandler (docs/field-facts.md, IIS:
    "App pool for a Python backend" [V/I]); each field names the IIS default it replaces.
    """

    name: PoolName = Field(description="Pool name (unique per host, case-insensitive).")
    managed_runtime_version: Literal["", "v4.0", "v2.0"] = Field(
        default="", description='managedRuntimeVersion: "" is "No Managed Code" (IIS default ""); Python needs no CLR.'
    )
    identity_type: IdentityType = Field(
        default="ApplicationPoolIdentity", description="processModel/@identityType (IIS default ApplicationPoolIdentity: a virtual account IIS AppPool\\<name>)."
    )
    user: Principal | None = Field(default=None, description="processModel/@userName; only with identity_type SpecificUser.")
    password: SecretStr | None = Field(default=None, description="processModel/@password; only with SpecificUser; sent as a secret, never in config_attributes().")
    start_mode: Literal["AlwaysRunning", "OnDemand"] = Field(
        default="AlwaysRunning", description="startMode (IIS default OnDemand): AlwaysRunning starts the worker with WAS, so the first request does not pay the Python start-up."
    )
    idle_timeout: Annotated[Duration, IDLE_TIMEOUT_RANGE] = Field(
        default=Duration(0), description="processModel/@idleTimeout (IIS default 00:20:00); 0 never shuts an idle pool down (which would kill uvicorn)."
    )
    load_user_profile: bool = Field(
        default=True,
        description="processModel/@loadUserProfile (schema default false; the applicationPoolDefaults IIS ships set true [R]): gives the pool its own %TEMP%, which pip and tempfile use.",
    )
    periodic_restart_time: Annotated[Duration, PERIODIC_RESTART_RANGE] = Field(
        default=Duration(0),
        description=(
            "recycling/periodicRestart/@time (IIS default 1.05:00:00 = 29 h). Ours is 0 (off): a recycle restarts the Python process "
            "(a cold start) and, with overlapped rotation, briefly runs two app processes (docs/field-facts.md, IIS [V/I]); the 29 h period "
            "drifts into peak hours. Use periodic_restart_schedule for an off-peak restart."
        ),
    )
    periodic_restart_schedule: Annotated[tuple[TimeOfDay, ...], AfterValidator(_unique_schedule)] = Field(
        default=(), description="recycling/periodicRestart/schedule: times of day ('03:30'), whole minutes."
    )
    rapid_fail_protection: RapidFailProtection = Field(default_factory=RapidFailProtection, description="failure/@rapidFailProtection* (IIS defaults).")
    queue_length: Annotated[int, BeforeValidator(_refuse_bool), Field(ge=QUEUE_LENGTH_RANGE[0], le=QUEUE_LENGTH_RANGE[1])] = Field(
        default=1000, description="queueLength: HTTP.sys queue of the pool (IIS default 1000, range 10-65535)."
    )
    environment_variables: Annotated[dict[EnvVarName, SecretStr], AfterValidator(_env_values)] = Field(
        default_factory=dict,
        description="environmentVariables of the pool (IIS 10+): secrets for the app; they live in applicationHost.config, readable by administrators only (docs/design.md 'Releases').",
    )
    state: Literal["Started", "Stopped"] = Field(default="Started", description="Runtime state; also sets autoStart.")
    extra_attributes: dict[AttributePath, AttributeValue] = Field(
        default_factory=dict, description="Any other schema attribute, 'element.attribute' -> value, e.g. {'processModel.maxProcesses': 1, 'cpu.limit': 50000}."
    )
    present: bool = Field(
        default=True, description="False removes the pool (an entry with only name and present); refused while a site or application uses it."
    )

    @model_validator(mode="after")
    def _identity(self) -> "AppPool":
        if self.identity_type == "SpecificUser":
            if self.user is None or self.password is None:
                raise PydanticCustomError("identity", "identity_type SpecificUser needs both user and password (password as a secret)")
        elif self.user is not None or self.password is not None:
            raise PydanticCustomError("identity", "user and password are only used with identity_type SpecificUser (got {identity})", {"identity": self.identity_type})
        return self

    @property
    def principal(self) -> str:
        """The account the worker runs as, for ACLs: ``IIS AppPool\\<name>`` or the built-in/user account."""

        return {
            "ApplicationPoolIdentity": f"IIS AppPool\\{self.name}",
            "LocalSystem": "NT AUTHORITY\\SYSTEM",
            "LocalService": "NT AUTHORITY\\LOCAL SERVICE",
            "NetworkService": "NT AUTHORITY\\NETWORK SERVICE",
        }.get(self.identity_type) or str(self.user)

    def config_attributes(self) -> dict[str, str]:
        """Return ``{attribute path: value text}`` under the pool's ``<add>`` element.

        Paths are relative to ``applicationPools/add[@name]`` (``"queueLength"``,
        ``"processModel.idleTimeout"``, ...) and values are the strings IIS writes in
        applicationHost.config (``"true"``, ``"00:00:00"``, ``"1.05:00:00"``). The password and
        environment variables are not included: they are secrets, handled separately;
        the recycling schedule is a collection (:attr:`schedule_values`).
        """

        attributes = {
            "autoStart": iis_bool(self.state == "Started"),
            "managedRuntimeVersion": self.managed_runtime_version,
            "queueLength": str(self.queue_length),
            "startMode": self.start_mode,
            "processModel.identityType": self.identity_type,
            "processModel.idleTimeout": self.idle_timeout.to_timespan(),
            "processModel.loadUserProfile": iis_bool(self.load_user_profile),
            "recycling.periodicRestart.time": self.periodic_restart_time.to_timespan(),
            "failure.rapidFailProtection": iis_bool(self.rapid_fail_protection.enabled),
            "failure.rapidFailProtectionInterval": self.rapid_fail_protection.interval.to_timespan(),
            "failure.rapidFailProtectionMaxCrashes": str(self.rapid_fail_protection.max_failures),
        }
        if self.identity_type == "SpecificUser":
            attributes["processModel.userName"] = str(self.user)
        for path, value in sorted(self.extra_attributes.items()):
            attributes[path] = iis_bool(value) if isinstance(value, bool) else str(value)
        return attributes

    @property
    def schedule_values(self) -> list[str]:
        """The ``recycling/periodicRestart/schedule`` entries as TimeSpan text, sorted."""

        return [t.to_timespan() for t in self.periodic_restart_schedule]

    # --- declared-only changes (issue 10) ---------------------------------------------------

    def declared_attributes(self) -> dict[str, str]:
        """Return the part of :meth:`config_attributes` the inventory set itself.

        A field counts as declared when its key was given (pydantic ``model_fields_set``; for
        ``rapid_fail_protection`` each of its own keys). These are the only attributes the
        project changes on a pool that already exists and serves no release.
        """

        every = self.config_attributes()
        declared: dict[str, str] = {}
        for field in self.model_fields_set:
            for path in FIELD_ATTRIBUTES.get(field, ()):
                if path in every:
                    declared[path] = every[path]
        if "rapid_fail_protection" in self.model_fields_set:
            for field in self.rapid_fail_protection.model_fields_set:
                path = RAPID_FAIL_ATTRIBUTES[field]
                declared[path] = every[path]
        for path in self.extra_attributes:
            declared[path] = every[path]
        return declared

    def wanted_attributes(self, *, exists: bool, serves_release: bool = False) -> dict[str, str]:
        """Return ``{attribute path: value text}`` the pool must have.

        Args:
            exists: whether the pool is already in applicationHost.config.
            serves_release: whether the pool runs the release of the host's ``release_*`` data.

        A pool the project creates gets every attribute of :meth:`config_attributes` (the
        Python defaults) and ``enable32BitAppOnWin64="false"`` explicitly
        (:data:`CREATE_ATTRIBUTES`). An existing pool gets the declared attributes only, plus,
        when it serves a release, :data:`RELEASE_ATTRIBUTES` with the model's values (declared or
        default). A declared value always wins.
        """

        every = self.config_attributes()
        if not exists:
            return {**CREATE_ATTRIBUTES, **every}
        wanted: dict[str, str] = {}
        if serves_release:
            for path, _reason in RELEASE_ATTRIBUTES.items():
                if path in every:
                    wanted[path] = every[path]
                elif path in CREATE_ATTRIBUTES:
                    wanted[path] = CREATE_ATTRIBUTES[path]
            if "processModel.userName" in every:
                wanted["processModel.userName"] = every["processModel.userName"]
        wanted.update(self.declared_attributes())
        return wanted

    def declares(self, field: str) -> bool:
        """Whether the inventory set ``field`` itself (not left to its default)."""

        return field in self.model_fields_set


#: Attribute paths each field of :class:`AppPool` writes (:meth:`AppPool.config_attributes`).
FIELD_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "state": ("autoStart",),
    "managed_runtime_version": ("managedRuntimeVersion",),
    "queue_length": ("queueLength",),
    "start_mode": ("startMode",),
    "identity_type": ("processModel.identityType", "processModel.userName"),
    "user": ("processModel.userName",),
    "idle_timeout": ("processModel.idleTimeout",),
    "load_user_profile": ("processModel.loadUserProfile",),
    "periodic_restart_time": ("recycling.periodicRestart.time",),
}

#: ``rapid_fail_protection`` keys → attribute paths.
RAPID_FAIL_ATTRIBUTES: dict[str, str] = {
    "enabled": "failure.rapidFailProtection",
    "max_failures": "failure.rapidFailProtectionMaxCrashes",
    "interval": "failure.rapidFailProtectionInterval",
}

#: Written explicitly on every pool the project creates: ``applicationPoolDefaults`` may say
#: ``true`` (shared-hosting servers often do, for old 32-bit ASP/ISAPI code), and a Python pool
#: must not run as a 32-bit (WOW64) worker: the HttpPlatformHandler and URL Rewrite modules
#: installed by the x64 MSIs are registered for 64-bit workers only
#: (``preCondition="bitness64"``), so a 32-bit pool answers 503 / 500.0.
CREATE_ATTRIBUTES: dict[str, str] = {"enable32BitAppOnWin64": "false"}

#: Attributes a pool that SERVES A RELEASE always gets (the model's value, declared or default),
#: also when the pool already existed; each with the reason the release flow needs it
#: (docs/design.md, "Adopting a server").
RELEASE_ATTRIBUTES: dict[str, str] = {
    "managedRuntimeVersion": "No Managed Code: the app is a Python process behind HttpPlatformHandler; loading the CLR only costs memory and start-up time",
    "enable32BitAppOnWin64": "false: HttpPlatformHandler (x64 MSI) loads in 64-bit workers only; a 32-bit pool fails every request",
    "startMode": "AlwaysRunning: WAS starts the worker (and, with preload, the Python process) at once, so the release's health check and the first request do not pay the Python start-up",
    "processModel.idleTimeout": "0: an idle shutdown kills the Python process; the next request waits for a cold start",
    "processModel.loadUserProfile": "true: the pool's own %TEMP% (pip, tempfile); without it the app writes to C:\\Windows\\Temp and may be refused",
    "processModel.identityType": "the release's file ACLs and private-key rights are granted to the principal of the inventory's identity (IIS AppPool\\<pool> by default)",
    "autoStart": "true (state Started): the release is served after a reboot or IIS reset",
}

