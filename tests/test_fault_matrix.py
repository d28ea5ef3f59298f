"""The fault matrix (issue 5, part 1): every interruption of ``deploys/site.py`` recovers.

For a full ``pyinfra inventories/sim.py deploys/site.py`` (IIS and release 1.0.0) on bare
simulated hosts, the fault is injected at every remote step ``k`` (a step is one frame line a
worker receives: the module or one remote call; ``Faults.at_step``), then the deploy runs again
without faults. The final state must equal an uninterrupted run's (``fault_harness.snapshot``),
the site must never have pointed at an incomplete release (the simulator's physicalPath
history), and no upload temp file may be left. Where the connector survives the fault by itself
(rebuild + re-send once), the faulted run itself must succeed.

Faults: ``drop`` (the connection carrying step k is dropped before the worker sees it) and
``kill_worker`` (the worker dies instead of running step k) at every k; ``drop_reply`` (step k
runs, the Receive carrying its reply is dropped, so the step is re-sent after it ran) at every
step that changes the host; ``restart`` (the WinRM service restarts at step k: every shell is
lost) at the first step of each function. ``PYINFRA_IIS_FAULT_MATRIX=full`` runs all four at
every k. Also: msiexec failing with 1603, and the release artifact's upload cut midway (once:
recovered; twice: the run fails, nothing partial at the destination).

All runs go through the real pyinfra command line, many hosts per run (``fault_harness``).
Found and fixed with this matrix: a fault while the module loads (step 1) failed the host's
connect (``WorkerSession.start`` now retries once); ``Import-IisCertificate`` re-sent after a
lost reply failed because the PFX was already deleted (the operation now passes the
thumbprint and the function answers ``imported: false``).
"""

from __future__ import annotations

import base64
import json
import os

import pytest

from fault_harness import Case, Matrix, Reference, partial_uploads, prepare_root, report, step_cases
from pyinfra_iis.demo import build_artifact, write_pfx
from pyinfra_iis.sim import Faults, SimFunctionError, SimHost
from pyinfra_iis.sim.functions import call as sim_call
from pyinfra_iis.sim.functions.msi import set_next_exit_code
from pyinfra_iis.transport.errors import Recoverable
from pyinfra_iis.transport.settings import settings_from_host_data
from pyinfra_iis.transport.worker import WorkerSession

pytestmark = pytest.mark.e2e

VERSION = "1.0.0"
#: Hosts per pyinfra run: more share the CPU of 2 cores between app starts and health
#: checks (46 at once made health checks miss their 15 s deadline).
BATCH = 12
FULL = os.environ.get("PYINFRA_IIS_FAULT_MATRIX", "").lower() == "full"
ARTIFACT_PATH = "C:\\sites\\api\\artifacts\\api-1.0.0.zip"
READ_ONLY_VERBS = ("Get-", "Test-", "Read-")


# --- the matrix ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    artifact = build_artifact(VERSION, tmp_path_factory.mktemp("dist"))
    root = prepare_root(tmp_path_factory.mktemp("project") / "root")
    return Matrix(tmp_path_factory.mktemp("matrix"), root, VERSION, artifact)


@pytest.fixture(scope="module")
def reference(matrix) -> Reference:
    return matrix.reference()


def chosen_cases(reference: Reference) -> list[Case]:
    """The step cases of this run (see the module docstring)."""

    steps = reference.steps
    every = range(1, len(steps) + 1)
    changing = [k for k, name in enumerate(steps, 1) if not name.startswith(READ_ONLY_VERBS)]
    first_of_each = [steps.index(name) + 1 for name in dict.fromkeys(steps)]
    cases = step_cases(steps, ("drop", "kill_worker"))
    cases += step_cases(steps, ("drop_reply",), None if FULL else changing)
    cases += step_cases(steps, ("restart",), None if FULL else first_of_each)
    return cases


def upload_cut(reference: Reference, cuts: int) -> Case:
    """Drop the connection at the middle data line of the release artifact's upload, ``cuts``
    times (each attempt of the upload once)."""

    first, count = reference.data_lines_before("Install-Release")
    assert count >= 3, f"the artifact travels in {count} data lines: too few to cut one midway"
    middle = count // 2

    def arm(server) -> None:
        for attempt in range(cuts):
            # Attempt a's lines follow the cut line of attempt a-1 (the upload restarts from 0).
            server.faults.at_step(first + middle + attempt * (middle + 1), "drop", kind="data")

    def inspect(server) -> dict:
        releases = server.host.path("C:\\sites\\api\\releases")
        return {"destination": server.host.path(ARTIFACT_PATH).exists(), "partials": partial_uploads(server),
                "releases": sorted(p.name for p in releases.iterdir()) if releases.is_dir() else [],
                "switches": list(server.host.state.get("sim_releases", {}).get("physical_path_history", []))}

    return Case(f"upload cut x{cuts} at data line {middle + 1}/{count} of the artifact", arm, inspect_first=inspect)


def msi_failing(product: str = "UrlRewrite", code: int = 1603) -> Case:
    def arm(server) -> None:
        set_next_exit_code(server.host, product, code)

    return Case(f"msiexec {product} exits {code}", arm)


def no_fault() -> Case:
    return Case("no fault (control)", lambda server: None)


@pytest.fixture(scope="module")
def outcomes(matrix, reference) -> dict[str, object]:
    """Every case, in batches of :data:`BATCH` hosts; label → Outcome."""

    cases = [no_fault(), msi_failing(), upload_cut(reference, 1), upload_cut(reference, 2), *chosen_cases(reference)]
    results = matrix.run_cases(reference, cases, batch=BATCH)
    print(f"\n{len(reference.steps)} remote steps in an uninterrupted run; {len(cases)} cases\n" + report(results))
    return {outcome.case.label: outcome for outcome in results}


def _failures(outcomes, labels, first_must_succeed=True) -> list[str]:
    bad = []
    for label in labels:
        outcome = outcomes[label]
        if not outcome.fired:
            bad.append(f"{label}: the fault never fired")
        if first_must_succeed and not outcome.first_ok:
            bad.append(f"{label}: the faulted run failed: {' | '.join(outcome.first_lines[-3:])}")
        if not outcome.second_ok:
            bad.append(f"{label}: the re-run failed: {' | '.join(outcome.first_lines[-3:])}")
        bad += [f"{label}: {line}" for line in outcome.diffs[:5] + outcome.switch_problems + outcome.partials]
    return bad


def test_uninterrupted_run_counts_its_remote_steps(reference):
    steps = reference.steps
    # protocol 2: the first call goes with the hello; a bare host has no cached module, so the
    # module follows and the call is sent again; the module is sent once
    assert steps[1] == "module" and steps[2] == steps[0] and steps.count("module") == 1
    assert {"Install-MsiProduct", "Import-IisCertificate", "Install-Release", "Switch-Release"} <= set(steps)
    assert steps.index("Install-Release") < steps.index("Switch-Release")
    history = reference.snapshot["host"]["sim_releases"]["physical_path_history"]
    assert [(e["release"], e["complete"]) for e in history] == [(VERSION, True)]


def test_a_bare_host_without_faults_matches_the_reference(outcomes):
    # The control: two identical runs on two bare hosts compare equal (the snapshot keeps only
    # what must be equal), so a difference below is the fault's.
    control = outcomes["no fault (control)"]
    assert control.first_ok and control.converged, control.diffs


@pytest.mark.parametrize("action", ["drop", "kill_worker", "drop_reply", "restart"])
def test_every_step_interrupted_recovers_in_the_same_run_and_converges(outcomes, action):
    labels = [label for label, outcome in outcomes.items() if outcome.case.action == action]
    assert labels
    assert _failures(outcomes, labels) == []


def test_msiexec_failing_fails_the_run_with_code_and_log_tail_then_the_rerun_converges(outcomes):
    outcome = outcomes["msiexec UrlRewrite exits 1603"]
    assert not outcome.first_ok
    assert "msiexec exited with 1603 installing UrlRewrite" in outcome.first_output
    assert "Error 1603. A fatal error occurred during installation." in outcome.first_output  # the log's tail
    assert "MainEngineThread is returning 1603" in outcome.first_output
    assert _failures(outcomes, [outcome.case.label], first_must_succeed=False) == []


def test_an_upload_cut_once_is_restarted_in_the_same_run(outcomes):
    [label] = [label for label in outcomes if label.startswith("upload cut x1")]
    assert _failures(outcomes, [label]) == []
    assert outcomes[label].first_inspection["destination"]


def test_an_upload_cut_twice_fails_leaving_nothing_partial_at_the_destination_then_completes(outcomes):
    [label] = [label for label in outcomes if label.startswith("upload cut x2")]
    outcome = outcomes[label]
    assert not outcome.first_ok
    seen = outcome.first_inspection
    assert seen["destination"] is False  # never a partial artifact under its final name
    assert set(seen["partials"]) <= {"C:\\sites\\api\\artifacts\\.api-1.0.0.zip.pyinfra-upload"}  # at most the temp name
    assert seen["releases"] == [] and seen["switches"] == []  # nothing installed, nothing switched
    assert _failures(outcomes, [label], first_must_succeed=False) == []


# --- the bugs the matrix found, at their own level (fast) ----------------------------------------


def _session(sim) -> WorkerSession:
    settings = settings_from_host_data(f"@winrm/127.0.0.1:{sim.port}", {
        "winrm_user": "admin", "winrm_password": sim.password, "winrm_scheme": "http", "winrm_port": sim.port})
    return WorkerSession(lambda: settings.make_protocol("127.0.0.1"), endpoint=f"127.0.0.1:{sim.port}", busy_pause=0)


@pytest.mark.parametrize("action", ["drop", "kill_worker", "restart", "drop_reply"])
def test_a_fault_while_the_module_loads_is_survived(sim_server, action):
    # A script step waits for the worker's hello: line 1 is the module (not cached yet), line 2 the step.
    sim_server.faults.at_step(1, action)
    session = _session(sim_server)
    try:
        session.start()
        assert session.run("Write-Output 'ok'").stdout.strip() == "ok"
        if action in ("drop", "drop_reply"):
            # the shell and worker outlive the connection: reconnect and re-send the same id;
            # the worker answers a module it already loaded from its last reply (issue 15, item 3)
            assert (session.stats.reconnects, session.stats.rebuilds) == (1, 0)
            assert sim_server.host.counters["module_loads"] == 1
        else:
            assert session.stats.rebuilds == 1
    finally:
        session.close()


def test_a_fault_at_both_module_loads_still_fails_the_step(sim_server):
    sim_server.faults.at_step(1, "kill_worker")  # the first worker's module
    sim_server.faults.at_step(2, "kill_worker")  # the rebuilt worker's module
    session = _session(sim_server)
    session.start()
    with pytest.raises(Recoverable):
        session.run("Write-Output 'ok'")
    session.close()


def test_import_certificate_resent_after_a_lost_reply_answers_already_imported(tmp_path):
    host = SimHost(tmp_path / "host")
    password = "pfx-'pass"
    thumbprint = write_pfx(tmp_path / "api.pfx", password)
    pfx = base64.b64encode((tmp_path / "api.pfx").read_bytes()).decode("ascii")  # sent in the call, no file
    payload = {"pfx": pfx, "password": password, "store": "WebHosting", "exportable": False, "thumbprint": thumbprint}
    first = json.loads(sim_call(host, "Import-IisCertificate", payload, {}))
    assert first["imported"] is True
    again = json.loads(sim_call(host, "Import-IisCertificate", payload, {}))  # the re-sent step
    assert again == {**first, "imported": False}
    without = {k: v for k, v in payload.items() if k != "thumbprint"}
    with pytest.raises(SimFunctionError, match="thumbprint"):  # required: it keeps a re-sent import from persisting a second key
        sim_call(host, "Import-IisCertificate", without, {})


def test_at_step_counts_lines_of_its_kind_and_fires_once():
    faults = Faults()
    faults.at_step(2, "kill_worker")
    faults.at_step(1, "drop", kind="data")
    assert faults.on_line("frame", "module") is None
    assert faults.on_line("data", "data") == "drop"
    assert faults.on_line("frame", "Get-HostState") == "kill_worker"
    assert faults.on_line("frame", "Set-IisConfig") is None and faults.on_line("data", "data") is None
    assert list(faults.step_log) == ["module", "data", "Get-HostState", "Set-IisConfig", "data"]
    for bad in ({"step": 0, "action": "drop"}, {"step": 1, "action": "explode"}, {"step": 1, "action": "drop", "kind": "bytes"}):
        with pytest.raises(ValueError):
            faults.apply({"at_step": bad})
    faults.apply({"at_step": [{"step": 3, "action": "restart"}]})
    assert faults.as_dict()["at_steps"] == [{"kind": "frame", "left": 3, "action": "restart"}]
    faults.clear()
    assert faults.as_dict()["at_steps"] == []
