"""``Install-Python`` on the simulated host behaves as the python.org bundle does (issue 15 items
12, 14, 23): 3010 is reported as ``restart_needed`` (``/norestart``), 1638 is named as a
downgrade, an upgrade lands in the folder already registered and is refused when that is not
``target_dir``; the fact is raw registry values."""

from __future__ import annotations

import hashlib
import re

import pytest

from pyinfra_iis.remote import read_remote_file
from pyinfra_iis.sim.functions import SimFunctionError
from pyinfra_iis.sim.functions.python import INSTALLER_ARGUMENTS, set_next_exit_code
from pyinfra_iis.sim.host import SimHost
from support.sim_calls import run

INSTALLER = b"python installer"


def install(host, version: str, target_dir: str = "C:\\Program Files\\Python312") -> dict:
    source = f"C:\\install\\python-{version}-amd64.exe"
    local = host.path(source)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(INSTALLER)
    return run(host, "Install-Python", {"version": version, "source": source, "sha256": hashlib.sha256(INSTALLER).hexdigest(),
                                        "target_dir": target_dir})


@pytest.fixture
def host(tmp_path):
    return SimHost(tmp_path / "web01")


def test_restart_needed_is_reported_not_acted_on(host):
    set_next_exit_code(host, 3010)
    assert install(host, "3.12.7") == {"installed": True, "version": "3.12.7", "path": "C:\\Program Files\\Python312\\python.exe",
                                       "restart_needed": True}


def test_a_downgrade_is_named(host):
    set_next_exit_code(host, 1638)
    with pytest.raises(SimFunctionError, match="1638: another version of this product is installed"):
        install(host, "3.12.5")


def test_an_upgrade_into_another_folder_is_refused(host):
    install(host, "3.12.5", "D:\\Python312")
    with pytest.raises(SimFunctionError, match="registered at D:\\\\Python312, not C:\\\\Program Files\\\\Python312"):
        install(host, "3.12.7")
    state = run(host, "Get-HostState", {"python_versions": ["3.12"]}, raw=True)["pythons"]["3.12"]
    assert state == {"version": "3.12.7", "install_path": "D:\\Python312\\", "executable_path": "D:\\Python312\\python.exe", "exists": True}


def test_the_module_and_the_simulator_pass_the_same_installer_options():
    body = read_remote_file("PyinfraIis/85-python.ps1")
    options = re.search(r"\$arguments = @\(([^)]*)\)", body).group(1)
    module = [o.strip().strip("'") for o in options.split(",")]
    assert module[:7] == INSTALLER_ARGUMENTS.split()[:7]  # /quiet /norestart InstallAllUsers=1 ... CompileAll=1
