"""pyinfra_iis.pyinfra_speedups: each replacement gives what the installed pyinfra's own function
gives, they are opt-in ($PYINFRA_IIS_PYINFRA_SPEEDUPS=1; by default pyinfra runs unmodified),
install() refuses what it was not checked against, and a real pyinfra run orders its operations
the same with and without them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pyinfra
import pytest
from pyinfra.api import arguments, connectors, inventory, util

from pyinfra_iis import pyinfra_speedups as speedups
from pyinfra_iis.sim import SimServer

OPERATION = sys.modules["pyinfra.api.operation"]
ORIGINAL_ORDER = util.get_operation_order_from_stack
ORIGINAL_ARGUMENTS = arguments.all_global_arguments
ORIGINAL_CONNECTORS = connectors.get_all_connectors


@pytest.fixture(autouse=True)
def pyinfra_as_is(monkeypatch):
    """Each test starts and ends with pyinfra's own functions in place, opted in."""

    speedups.uninstall()
    monkeypatch.setenv(speedups.ENV_SWITCH, "1")
    yield
    speedups.uninstall()
    assert OPERATION.get_operation_order_from_stack is ORIGINAL_ORDER


def probe(state):
    # Both on one line: the frame of this function gives the same line number to each.
    return ORIGINAL_ORDER(state), speedups.operation_order_from_stack(state)


PROBE_LINE = probe.__code__.co_firstlineno + 2


DEPLOY = '''\
def nested(state):
    return helper(
        state,
    )


def helper(state):
    return probe(state)


results = [probe(state)]
for _ in range(2):
    results.append(nested(state))
results.append(
    probe(
        state
    )
)
'''


def run_deploy(filename: str, state) -> list[tuple[list[int], list[int]]]:
    """Exec ``DEPLOY`` as pyinfra execs a deploy file (compiled with its file name)."""

    namespace = {"probe": probe, "state": state}
    exec(compile(DEPLOY, filename, "exec"), namespace)
    return namespace["results"]


@pytest.mark.parametrize("is_cli", [True, False])
@pytest.mark.parametrize("deploy_is_current", [True, False, None])
def test_operation_order_is_pyinfras_from_a_deploy_file(monkeypatch, tmp_path, is_cli, deploy_is_current):
    monkeypatch.setattr(pyinfra, "is_cli", is_cli)
    filename = str(tmp_path / "site.py")
    current = {True: filename, False: str(tmp_path / "another.py"), None: None}[deploy_is_current]
    state = SimpleNamespace(current_deploy_filename=current, current_op_file_number=3)
    results = run_deploy(filename, state)
    assert len(results) == 4
    for theirs, ours in results:
        assert ours == theirs
    if deploy_is_current:
        # from the deploy file on: its line, then the helpers' lines (multi-line calls included)
        expected_head = [3] if is_cli else []
        assert results[0][1] == expected_head + [11, PROBE_LINE]
        assert results[1][1] == expected_head + [13, 2, 8, PROBE_LINE]
        assert results[3][1] == expected_head + [15, PROBE_LINE]
    elif deploy_is_current is False:
        # pyinfra's quirk, kept: no deploy-file frame, so only the file number
        assert results[0][1] == ([3] if is_cli else [])


def test_frames_inside_pyinfra_are_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(pyinfra, "is_cli", True)
    state = SimpleNamespace(current_deploy_filename=str(tmp_path / "site.py"), current_op_file_number=1)
    inside = compile("def call(probe, state):\n    return probe(state)\n", f"{util.PYINFRA_INSTALL_DIR}/fake_op.py", "exec")
    namespace: dict = {}
    exec(inside, namespace)
    deploy = compile("result = call(probe, state)\n", state.current_deploy_filename, "exec")
    scope = {"call": namespace["call"], "probe": probe, "state": state}
    exec(deploy, scope)
    theirs, ours = scope["result"]
    assert ours == theirs == [1, 1, PROBE_LINE]


def test_global_arguments_and_connectors_equal_pyinfras_and_are_fresh_copies():
    assert speedups.all_global_arguments() == ORIGINAL_ARGUMENTS()
    first = speedups.all_global_arguments()
    first.clear()
    assert speedups.all_global_arguments() == ORIGINAL_ARGUMENTS()

    ours, theirs = speedups.all_connectors(), ORIGINAL_CONNECTORS()
    assert ours == theirs and "winrm" in ours
    ours.pop("winrm")
    assert "winrm" in speedups.all_connectors()


def test_install_swaps_the_functions_in_and_uninstall_puts_pyinfras_back():
    assert speedups.install() is True
    assert OPERATION.get_operation_order_from_stack is speedups.operation_order_from_stack
    assert arguments.all_global_arguments is speedups.all_global_arguments
    assert connectors.get_all_connectors is inventory.get_all_connectors is speedups.all_connectors
    assert connectors.get_execution_connectors()["winrm"].__name__ == "WinrmConnector"
    assert speedups.install() is True  # once per process
    speedups.uninstall()
    assert OPERATION.get_operation_order_from_stack is ORIGINAL_ORDER
    assert arguments.all_global_arguments is ORIGINAL_ARGUMENTS
    assert connectors.get_all_connectors is inventory.get_all_connectors is ORIGINAL_CONNECTORS


@pytest.mark.parametrize("version", ["4.0.0", "3.9.2", "2.9", "dev"])
def test_install_refuses_pyinfra_versions_it_was_not_checked_against(monkeypatch, caplog, version):
    monkeypatch.setattr(pyinfra, "__version__", version)
    caplog.set_level("DEBUG", logger="pyinfra")
    assert speedups.install() is False
    assert OPERATION.get_operation_order_from_stack is ORIGINAL_ORDER
    assert "not installed" in caplog.text and repr(version)[1:-1] in caplog.text


@pytest.mark.parametrize("switch", [None, "", "0", "yes", "true", "2"])
def test_they_are_opt_in_pyinfra_runs_unmodified_unless_the_switch_is_1(monkeypatch, caplog, switch):
    caplog.set_level("DEBUG", logger="pyinfra")
    if switch is None:
        monkeypatch.delenv(speedups.ENV_SWITCH)
    else:
        monkeypatch.setenv(speedups.ENV_SWITCH, switch)
    assert speedups.install() is False
    assert OPERATION.get_operation_order_from_stack is ORIGINAL_ORDER
    assert arguments.all_global_arguments is ORIGINAL_ARGUMENTS
    assert connectors.get_all_connectors is inventory.get_all_connectors is ORIGINAL_CONNECTORS
    assert f"${speedups.ENV_SWITCH} is not 1 (they are opt-in)" in caplog.text
    monkeypatch.setenv(speedups.ENV_SWITCH, " 1 ")
    assert speedups.install() is True


def test_the_connector_leaves_pyinfra_unmodified_by_default(monkeypatch):
    from pyinfra_iis.connectors.winrm import WinrmConnector

    monkeypatch.delenv(speedups.ENV_SWITCH)
    list(WinrmConnector.make_names_data("web01.example.com"))
    assert OPERATION.get_operation_order_from_stack is ORIGINAL_ORDER
    monkeypatch.setenv(speedups.ENV_SWITCH, "1")
    list(WinrmConnector.make_names_data("web01.example.com"))
    assert OPERATION.get_operation_order_from_stack is speedups.operation_order_from_stack


def test_install_refuses_when_already_replaced(caplog):
    caplog.set_level("DEBUG", logger="pyinfra")

    def someone_elses(state):
        return []

    OPERATION.get_operation_order_from_stack = someone_elses
    try:
        assert speedups.install() is False
        assert OPERATION.get_operation_order_from_stack is someone_elses
    finally:
        OPERATION.get_operation_order_from_stack = ORIGINAL_ORDER
    assert "already replaced" in caplog.text


@pytest.mark.e2e
def test_a_pyinfra_run_orders_operations_the_same_with_and_without(tmp_path):
    """The op order and hash of every operation of ``deploys/site.py`` (pyinfra --debug prints
    them) are the same with pyinfra's functions and with the replacements."""

    from test_e2e_iis import PASSWORD, USER, write_inventory

    def plan(switch: str | None) -> tuple[list[str], str]:
        env = {key: value for key, value in os.environ.items() if key != speedups.ENV_SWITCH}
        if switch is not None:
            env[speedups.ENV_SWITCH] = switch
        result = subprocess.run([sys.executable, "-m", "pyinfra", "--dry", "--debug", "-y", "inventory.py", "deploy.py"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert PASSWORD not in output
        return re.findall(r"Adding operation, .*?opOrder=\([0-9, ]+\), opHash=\w+", output), output

    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as server:
        write_inventory(tmp_path, server.port)
        (theirs, their_output), (ours, our_output) = plan(None), plan("1")
    assert "pyinfra speedups installed" in our_output
    assert "pyinfra speedups not installed: $PYINFRA_IIS_PYINFRA_SPEEDUPS is not 1 (they are opt-in)" in their_output
    assert len(ours) >= 5
    assert ours == theirs
