"""Every remote primitive reads and prints the same JSON members in PowerShell and in its simulator
twin: the member names a function reads (``Get-CallValue -Name '<member>'``) and the members of the
object it prints (``Write-CallResult -InputObject ([ordered]@{ member = ... })``) must each be used by
the simulator module that implements it. A member renamed on one side only (``hash`` on the host,
``thumbprint`` in the simulator) fails here, although each side's own tests would pass.

It reads text, not behaviour: the per-area tests (``test_iis_primitives.py``,
``test_certacl_module.py``, ``test_remote_release.py``, ``test_transport_protocol2.py``) run the
simulator twins; this one only keeps the two vocabularies the same, for every primitive at once.
"""

from __future__ import annotations

import inspect
import re

import pytest

from pyinfra_iis.remote import module_source
from pyinfra_iis.sim.functions import get_function, registered

_FUNCTION = re.compile(r"^function (?P<name>[A-Z]\w+-\w+) \{(?P<body>.*?)^\}", re.S | re.M)
_READS = re.compile(r"Get-CallValue -Call \$\w+ -Name '(\w+)'")
_PRINTS = re.compile(r"Write-CallResult -InputObject \(\[ordered\]@\{(.*?)\}\)", re.S)
_MEMBER = re.compile(r"(?:^|[;{]\s*)(\w+) = ", re.M)


def powershell_functions() -> dict[str, str]:
    return {m.group("name").lower(): m.group("body") for m in _FUNCTION.finditer(module_source())}


PRIMITIVES = sorted(name for name in registered() if name.lower() in powershell_functions())


def test_every_simulator_function_is_a_primitive_of_the_module():
    assert len(PRIMITIVES) >= 20, PRIMITIVES
    assert set(PRIMITIVES) == {name for name in registered() if name != "Get-Thing"}, "a simulator twin without a PowerShell primitive"


@pytest.mark.parametrize("name", PRIMITIVES)
def test_powershell_and_simulator_use_the_same_members(name):
    body = powershell_functions()[name.lower()]
    reads = set(_READS.findall(body))
    prints = {member for block in _PRINTS.findall(body) for member in _MEMBER.findall(block)}
    twin = inspect.getsource(inspect.getmodule(get_function(name)))
    missing = sorted(member for member in reads | prints if f'"{member}"' not in twin and f"'{member}'" not in twin)
    assert missing == [], f"{name}: the simulator never uses {missing}"
