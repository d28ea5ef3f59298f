"""The example inventories never invent a secret: an unset secret variable stops pyinfra at
inventory load with a message naming the variable (no traceback, nothing contacted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


def debug_inventory(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("WINRM_PASSWORD", "API_PFX_PASSWORD", "API_SECRET_KEY")}
    return subprocess.run([sys.executable, "-m", "pyinfra", str(PROJECT / "inventories" / "prod.py"), "debug-inventory"],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env, missing", [
    ({}, "WINRM_PASSWORD"),
    ({"WINRM_PASSWORD": "w-Pass-1"}, "API_PFX_PASSWORD"),
    ({"WINRM_PASSWORD": "w-Pass-1", "API_PFX_PASSWORD": "p-Pass-2"}, "API_SECRET_KEY"),
])
def test_an_unset_secret_variable_stops_the_run_by_name(tmp_path, env, missing):
    result = debug_inventory(env, tmp_path)
    assert result.returncode != 0
    assert f"set the environment variable {missing}" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_debug_inventory_of_the_shipped_inventory_masks_every_secret(tmp_path, json_flag):
    # issue 12: the WinRM password, the PFX password and the app secret were printed as is.
    secrets = {"WINRM_PASSWORD": "w-Pass-1x", "API_PFX_PASSWORD": "p-Pass-2y", "API_SECRET_KEY": "s-Key-3z"}
    clean = {k: v for k, v in os.environ.items() if k not in secrets}
    result = subprocess.run([sys.executable, "-m", "pyinfra", str(PROJECT / "inventories" / "prod.py"), "debug-inventory",
                             *json_flag], cwd=tmp_path, env={**clean, **secrets}, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("*MASKED*") == 3 * 2, output  # three secrets on each of the two hosts
    for value in secrets.values():
        assert value not in output
