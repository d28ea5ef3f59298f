"""The fault matrix harness (issue 5, part 1): interrupt ``deploys/site.py`` at every remote step.

A *remote step* is one frame line a worker receives (the module, or one remote call
``Verb-Noun -Json '...'``): the unit :meth:`Faults.at_step <pyinfra_iis.sim.faults.Faults.at_step>`
counts. One uninterrupted run on a bare simulated host gives the number of steps ``N``, their
names and the reference :func:`snapshot`. Each :class:`Case` then arms a fault on its own bare
host, ``pyinfra inventories/sim.py deploys/site.py`` runs once (the fault fires) and once more
without faults, and the host's snapshot must equal the reference; every physicalPath the site
was ever given must have been a complete release at that moment.

Speed (2 cores, CI budget): cases run in batches, one simulated host per case, all hosts of a
batch in ONE pyinfra command line (pyinfra converges hosts in parallel), so a batch costs about
two runs, not two per case. Everything goes through the real ``pyinfra`` CLI (subprocess), the
hosts run in this process (:class:`pyinfra_iis.demo.Demo`).

The deploy and inventory are the project's own (``deploys/``, ``inventories/sim.py``), copied
with short health timings appended to the group data (as ``tests/test_e2e_release.py``), so the
harness needs no change when site.py gains steps: ``N`` and the step names are measured.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pyinfra_iis.demo import PROJECT, Demo

#: Appended to the copied group data: health timings for a loaded 2-core machine running a
#: dozen hosts' app starts at once. A healthy release passes as soon as it answers, so only a
#: failing one waits this long (none does here); the 2 min default would hide nothing either.
FAST_HEALTH = '\nrelease_app = {**release_app, "startup_time_limit": "30s", "health_deadline": "60s"}\n'
#: Seconds one pyinfra run of a batch may take.
RUN_TIMEOUT = 600
#: Upload temp files (``sim/functions/files.py``: ``.<name>.pyinfra-upload``).
UPLOAD_SUFFIX = ".pyinfra-upload"

APPHOST = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"

# Paths (relative to the drive folder C/, POSIX style) whose content legitimately differs between
# two identical runs: compared by presence only.
_PRESENCE_ONLY = (
    re.compile(r"^ProgramData/pyinfra-iis/logs/[^/]+\.log$"),  # msiexec verbose logs carry timestamps
)
# Paths not compared at all: the app's own output and caches (timestamps, process ids in names).
_IGNORED = (
    re.compile(r"(^|/)__pycache__(/|$)"),
    re.compile(r"^sites/[^/]+/logs(/|$)"),  # HttpPlatformHandler stdout logs: stdout_<time>_<pid>.log
    re.compile(r"^sites/[^/]+/iislogs(/|$)"),
)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?")


def prepare_root(dest: Path) -> Path:
    """Copy the project's ``inventories/`` and ``deploys/`` into ``dest`` with
    :data:`FAST_HEALTH` appended to the group data; returns ``dest``."""

    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(dest / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(FAST_HEALTH)
    return dest


# --- Snapshots --------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _random_names(state: dict[str, Any]) -> dict[str, str]:
    """Values that are random per host (key container names) → stable placeholders, so two
    hosts given the same inventory and files compare equal."""

    names: dict[str, str] = {}
    for index, cert in enumerate(sorted(state.get("certificates", {}).values(), key=lambda c: c.get("thumbprint", ""))):
        key = str(cert.get("key_file") or "").rsplit("\\", 1)[-1]
        if key:
            names[key] = f"<key {index}>"
    return names


def _replace(text: str, names: dict[str, str]) -> str:
    for value, placeholder in names.items():
        text = re.sub(re.escape(value), placeholder, text, flags=re.IGNORECASE)
    return _TIMESTAMP.sub("<time>", text)


def _release_state(text: str) -> dict[str, Any]:
    state = json.loads(text)
    return {"current": state.get("current"), "previous": state.get("previous"),
            "completed": sorted(state.get("completed", {})),
            "history": [(h.get("from"), h.get("to"), h.get("ok")) for h in state.get("history", [])]}


def file_tree(drive: Path) -> dict[str, str]:
    """``{relative POSIX path: content}`` of a simulated drive folder (``<state>/C``): the
    SHA-256 of each file, ``"present"`` for files compared by presence only, nothing for
    ignored paths (see :data:`_IGNORED`)."""

    tree: dict[str, str] = {}
    for path in sorted(drive.rglob("*")):
        relative = path.relative_to(drive).as_posix()
        if not path.is_file() or any(p.search(relative) for p in _IGNORED):
            continue
        tree[relative] = "present" if any(p.search(relative) for p in _PRESENCE_ONLY) else _sha256(path)
    return tree


def snapshot(server, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The normalised final state of a simulated host, for comparing two runs.

    Keeps: the host state document (features, products, certificates, ACLs, services, HTTP.sys,
    IIS runtime states, pythons, the physicalPath history without times), applicationHost.config,
    release-state.json (current, previous, completed versions, switch history without times) and
    every file under ``C:\\`` by SHA-256. Drops what legitimately differs between two identical
    runs: the host name, counters, recycle counts, the loopback ports serving bindings,
    timestamps, key container names (random per import; replaced by placeholders), msiexec log
    contents, app logs and caches. Each value of ``secrets`` is replaced by ``<secret i>`` (so a
    difference report never shows one).
    """

    host = server.host
    with host.lock:
        state = json.loads(json.dumps(host.state, default=str))
    names = _random_names(state)
    for key in ("counters", "hostname", "msi_exit_codes"):  # msi_exit_codes: fault injection
        state.pop(key, None)
    for binding in state.get("sim_apps", {}).get("bindings", {}).values():
        if isinstance(binding, dict):
            binding.pop("port", None)
    state.get("iis_runtime", {}).pop("recycles", None)
    drive = host.state_dir / "C"
    files = file_tree(drive)
    release_states = {}
    for relative in list(files):
        if relative.endswith("/release-state.json"):
            release_states[relative] = _release_state((drive / relative).read_text(encoding="utf-8"))
            files[relative] = "see release_states"
    config = host.path(APPHOST)
    result = {
        "host": state,
        "applicationHost.config": config.read_text(encoding="utf-8-sig") if config.is_file() else None,
        "files": files,
        "release_states": release_states,
    }
    text = json.dumps(result, sort_keys=True)
    for index, secret in enumerate(secrets):
        text = text.replace(json.dumps(secret)[1:-1], f"<secret {index}>")
        for escaped in {html.escape(secret, quote=True), secret.replace('"', "&quot;")}:
            text = text.replace(json.dumps(escaped)[1:-1], f"<secret {index}>")
    return json.loads(_replace(text, names))


def diff_snapshots(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Readable differences between two snapshots (``[]`` when equal): one line per differing
    leaf, e.g. ``files/sites/api/releases/1.0.0/web.config: 'ab..' != (absent)``."""

    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(set(expected) | set(actual), key=str):
            path = f"{where}/{key}" if where else str(key)
            if key not in actual:
                lines.append(f"{path}: {_short(expected[key])} != (absent)")
            elif key not in expected:
                lines.append(f"{path}: (absent) != {_short(actual[key])}")
            else:
                lines.extend(diff_snapshots(expected[key], actual[key], path))
        return lines
    if isinstance(expected, str) and isinstance(actual, str) and "\n" in expected + actual and expected != actual:
        import difflib

        changed = [line for line in difflib.unified_diff(expected.splitlines(), actual.splitlines(), lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        return [f"{where}: {line.strip()[:200]}" for line in changed[:20]]
    return [] if expected == actual else [f"{where}: {_short(expected)} != {_short(actual)}"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def switch_problems(server) -> list[str]:
    """Entries of the simulator's physicalPath history that pointed the site at a release
    folder which was not complete at that moment (``sim/functions/release.py`` records
    ``complete`` when it writes the path); ``[]`` when every switch was safe."""

    with server.host.lock:
        history = list(server.host.state.get("sim_releases", {}).get("physical_path_history", []))
    return [f"{entry.get('site')} -> {entry.get('physicalPath')} while incomplete"
            for entry in history if entry.get("release") and not entry.get("complete")]


def partial_uploads(server) -> list[str]:
    """Upload temp files (``.<name>.pyinfra-upload``) left on the host, as Windows paths."""

    drive = server.host.state_dir / "C"
    return sorted(server.host.windows_path(p) for p in drive.rglob(f"*{UPLOAD_SUFFIX}") if p.is_file())


# --- pyinfra output ----------------------------------------------------------------------------


def host_name(server) -> str:
    """The inventory name of a simulated host (``inventories/sim.py``)."""

    return f"@winrm/127.0.0.1:{server.port}"


def succeeded_hosts(output: str) -> set[str]:
    """Hosts that completed the run: those with a ``Success`` / ``No changes`` line under the
    LAST ``--> Starting operation`` of pyinfra's output (pyinfra drops a failed host from every
    later operation, and a host that failed to connect runs none)."""

    blocks = output.split("--> Starting operation:")
    if len(blocks) < 2:
        return set()
    last = blocks[-1].split("--> Results:")[0]
    return set(re.findall(r"\[(@winrm/[^\]]+)\] (?:Success|No changes)\s*$", last, re.MULTILINE))


def host_lines(output: str, name: str, limit: int = 6) -> list[str]:
    """The last ``limit`` output lines about host ``name`` (for failure reports)."""

    port = name.rsplit(":", 1)[-1]
    lines = [line.strip() for line in output.splitlines() if name in line or f"127.0.0.1:{port}:" in line]
    return lines[-limit:]


# --- Cases and batches -------------------------------------------------------------------------


@dataclass
class Case:
    """One interruption: ``arm(server)`` sets the fault on a fresh host before the first run.

    Attributes:
        label: e.g. ``"drop@12 Set-IisConfig"``.
        arm: called with the :class:`~pyinfra_iis.sim.SimServer` before the first run.
        step: the step it targets (1-based), or None.
        action: ``drop`` / ``drop_reply`` / ``kill_worker`` / ``restart`` / other.
        inspect_first: called with the server right after the faulted run; its result is
            kept in :attr:`Outcome.first_inspection` (e.g. which files exist at that moment).
    """

    label: str
    arm: Callable[[Any], None]
    step: int | None = None
    action: str = ""
    inspect_first: Callable[[Any], Any] | None = None


@dataclass
class Outcome:
    """What happened to one :class:`Case`.

    Attributes:
        first_ok: the faulted run completed on this host.
        fired: the armed step triggers fired during the faulted run.
        second_ok: the re-run without faults completed on this host.
        diffs: :func:`diff_snapshots` of the reference vs this host after the re-run.
        switch_problems: :func:`switch_problems` after both runs.
        partials: upload temp files left after the re-run.
        first_lines: pyinfra's last lines about this host in the faulted run.
        first_output: pyinfra's lines about this host in the faulted run when it failed there.
        first_inspection: what :attr:`Case.inspect_first` returned.
    """

    case: Case
    first_ok: bool
    fired: bool
    second_ok: bool
    diffs: list[str]
    switch_problems: list[str]
    partials: list[str]
    first_lines: list[str] = field(default_factory=list)
    first_output: str = ""
    first_inspection: Any = None

    @property
    def converged(self) -> bool:
        return self.second_ok and not self.diffs and not self.switch_problems and not self.partials


@dataclass
class Reference:
    """An uninterrupted run on a bare host: its snapshot, its step names (index 0 = step 1),
    every line its worker received (step names and ``"data"`` for upload data lines) and
    pyinfra's output."""

    snapshot: dict[str, Any]
    steps: list[str]
    lines: list[str]
    output: str

    def data_lines_before(self, step: str, occurrence: int = -1) -> tuple[int, int]:
        """``(first, count)``: the data line numbers (1-based, counted over the whole run) of
        the upload right before the ``occurrence``-th step named ``step`` (default the last),
        e.g. ``data_lines_before("Install-Release")`` for the release artifact."""

        index = [i for i, name in enumerate(self.lines) if name == step][occurrence]
        end = max(i for i in range(index) if self.lines[i] == "data")
        start = end
        while start > 0 and self.lines[start - 1] == "data":
            start -= 1
        before = sum(1 for name in self.lines[:start] if name == "data")
        return before + 1, end - start + 1


@dataclass
class _Batch(Demo):
    """A :class:`Demo` whose controller files (installers, PFX) live in ``shared``: every batch
    imports the same certificate, so snapshots of different batches compare equal."""

    shared: Path = Path()

    @property
    def files(self) -> Path:
        return self.shared


class Matrix:
    """Runs cases against bare simulated hosts through the pyinfra CLI.

    Args:
        workdir: a scratch folder (batches get sub-folders).
        root: the folder holding ``inventories/`` and ``deploys/`` (:func:`prepare_root`).
        version / artifact: the release shipped (``PYINFRA_IIS_RELEASE_VERSION`` / ``_ARTIFACT``).
        deploy: the deploy file, default ``deploys/site.py``.
    """

    def __init__(self, workdir: Path, root: Path, version: str, artifact: Path, deploy: str = "deploys/site.py"):
        self.workdir, self.root, self.version, self.artifact, self.deploy = workdir, root, version, artifact, deploy
        self._batches = 0
        self._secrets = Demo(workdir)  # generates the secrets once: every batch shares them and the files

    def _demo(self, hosts: int) -> Demo:
        self._batches += 1
        return _Batch(self.workdir / f"batch{self._batches:03d}", hosts=hosts, root=self.root, shared=self.workdir / "files",
                      password=self._secrets.password, pfx_password=self._secrets.pfx_password,
                      app_secret=self._secrets.app_secret)

    @property
    def secrets(self) -> list[str]:
        """The WinRM password, PFX password and app secret every batch uses."""

        return self._secrets.secrets()

    def run(self, demo: Demo, servers: Sequence | None = None, args: Sequence[str] = ()) -> str:
        """One ``pyinfra inventories/sim.py <deploy> -y`` against ``servers`` (default all);
        returns stdout + stderr, after checking that no secret appears in it.

        Raises:
            AssertionError: a secret appeared in the output.
        """

        result = demo.pyinfra(self.deploy, *args, version=self.version, artifact=self.artifact, servers=servers,
                              timeout=RUN_TIMEOUT)
        output = result.stdout + result.stderr
        leaked = [i for i, secret in enumerate(demo.secrets()) if secret in output]
        assert not leaked, f"secret #{leaked} appeared in pyinfra's output"
        return output

    def reference(self) -> Reference:
        """An uninterrupted run on a bare host (steps counted with ``Faults.step_log``)."""

        with self._demo(1) as demo:
            server = demo.servers[0]
            server.faults.step_log.clear()
            output = self.run(demo)
            assert host_name(server) in succeeded_hosts(output), output[-3000:]
            log = list(server.faults.step_log)
            counters = server.host.counters
            steps = [name for name in log if name != "data"]
            assert len(steps) == counters["worker_steps"], (len(steps), counters)
            return Reference(snapshot(server, self.secrets), steps, log, output)

    def run_cases(self, reference: Reference, cases: Sequence[Case], batch: int = 12) -> list[Outcome]:
        """Run ``cases`` in batches of ``batch`` hosts (each batch: one faulted pyinfra run of
        all its hosts, then one run without faults); returns one :class:`Outcome` per case,
        in order. About 1-2 s per case on 2 cores: each host starts the release's app once."""

        outcomes: list[Outcome] = []
        for start in range(0, len(cases), batch):
            outcomes.extend(self._batch(reference, cases[start:start + batch]))
        return outcomes

    def _batch(self, reference: Reference, cases: Sequence[Case]) -> list[Outcome]:
        with self._demo(len(cases)) as demo:
            for server, case in zip(demo.servers, cases):
                server.faults.clear()
                case.arm(server)
            first = self.run(demo)
            first_ok = succeeded_hosts(first)
            fired = {id(s): not s.faults.as_dict()["at_steps"] for s in demo.servers}
            inspected = {id(s): case.inspect_first(s) for s, case in zip(demo.servers, cases) if case.inspect_first}
            for server in demo.servers:
                server.faults.clear()
            second = self.run(demo)
            second_ok = succeeded_hosts(second)
            outcomes = []
            for server, case in zip(demo.servers, cases):
                name = host_name(server)
                outcomes.append(Outcome(
                    case=case, first_ok=name in first_ok, fired=fired[id(server)], second_ok=name in second_ok,
                    diffs=diff_snapshots(reference.snapshot, snapshot(server, self.secrets)),
                    switch_problems=switch_problems(server), partials=partial_uploads(server),
                    first_lines=host_lines(first, name),
                    first_output="" if name in first_ok else "\n".join(host_lines(first, name, limit=200)),
                    first_inspection=inspected.get(id(server))))
            return outcomes


def step_cases(steps: Sequence[str], actions: Iterable[str], only: Iterable[int] | None = None) -> list[Case]:
    """One :class:`Case` per (action, step): ``Faults.at_step(k, action)`` for every step ``k``
    of the reference (or only those in ``only``)."""

    wanted = set(only) if only is not None else None
    cases = []
    for action in actions:
        for k, name in enumerate(steps, start=1):
            if wanted is None or k in wanted:
                cases.append(Case(f"{action}@{k} {name}", _arm_step(k, action), k, action))
    return cases


def _arm_step(step: int, action: str) -> Callable[[Any], None]:
    def arm(server) -> None:
        server.faults.at_step(step, action)

    return arm


def report(outcomes: Sequence[Outcome]) -> str:
    """A table of outcomes: label, first run ok, fired, converged, first problem."""

    rows = []
    for outcome in outcomes:
        problem = (outcome.diffs or outcome.switch_problems or outcome.partials or [""])[0]
        if not outcome.second_ok:
            problem = "re-run failed: " + " | ".join(outcome.first_lines[-2:])
        first = "ok" if outcome.first_ok else "FAILED: " + (outcome.first_lines[-1] if outcome.first_lines else "?")
        rows.append(f"{outcome.case.label:<40} fired={outcome.fired!s:<5} first={first[:110]:<40} "
                    f"converged={outcome.converged!s:<5} {problem[:200]}")
    return "\n".join(rows)
