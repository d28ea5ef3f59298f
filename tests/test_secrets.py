"""Issue 5, part 3: secrets never leak, even with ``-vvv --debug`` (and ``--debug-all``).

``deploys/site.py`` (IIS + release 1.0.0) then ``deploys/release.py`` (2.0.0) run through the
real ``pyinfra`` command line, with the shipped ``inventories/sim.py`` and its group data,
against a simulated host started as ``python -m pyinfra_iis.sim serve`` in its own process
(stdout and stderr captured: the simulator's log). Three distinctive secrets are in play: the
WinRM password, the PFX password of the https binding's certificate and an app secret (the
application pool's environment variable). Each carries quote, ``$()``, ``&`` and ``<``
characters, so searches look for each one's random core (found whatever the escaping: XML,
JSON, repr).

Checked: none appears in pyinfra's output, in the simulator's log, in any file of the
simulated host the pool identity can read (``IIS AppPool\\api``, through the simulated ACLs),
or in any web.config. The whole state folder is searched too, and where a secret legitimately
lives is an explicit allow-list with its reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pyinfra_iis.demo import PROJECT, SIM_USER, Demo, build_artifact
from pyinfra_iis.inventory_check import MASK, SecretDataFilter, mask_secret_data
from pyinfra_iis.sim.functions.acl import can_read
from pyinfra_iis.sim.host import SimHost

pytestmark = pytest.mark.e2e

#: The random core of each secret (what the searches look for) and the full value used.
CORES = {"winrm password": "WinrmPw7c2f9eQx", "pfx password": "PfxPw4d81a3Zk", "app secret": "AppSecret9b3e57Rv"}
SECRETS = {"winrm password": CORES["winrm password"] + "'$(x)\"", "pfx password": CORES["pfx password"] + "'\"&<",
           "app secret": CORES["app secret"] + "'\"$(whoami)<&>"}
POOL_IDENTITY = "IIS AppPool\\api"
APPLICATION_HOST_CONFIG = "C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config"

#: Files of the simulated host allowed to hold a secret: {state-folder relative path: (secrets, reason)}.
ALLOWED = {
    "C/Windows/System32/inetsrv/config/applicationHost.config": (
        {"app secret"},
        "app secrets are the application pool's environmentVariables (design.md 'Releases'); the config folder "
        "is readable by Administrators and SYSTEM only (asserted below), unlike web.config",
    ),
}
#: Short health timings for the copied group data (a release starts in seconds here).
FAST_HEALTH = '\nrelease_app = {**release_app, "startup_time_limit": "5s", "health_deadline": "15s"}\n'


def found_in(data: bytes) -> set[str]:
    """Names of the secrets whose core is in ``data`` (UTF-8 or UTF-16-LE)."""

    return {name for name, core in CORES.items() if core.encode() in data or core.encode("utf-16-le") in data}


def start_sim(state_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """``python -m pyinfra_iis.sim serve`` on a free port; returns the process and its port."""

    process = subprocess.Popen([sys.executable, "-m", "pyinfra_iis.sim", "serve", "--port", "0", "--state-dir", str(state_dir),
                                "--user", SIM_USER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # one JSON line per host once listening
    if not line:
        process.kill()
        raise RuntimeError(f"simulator did not start: {process.stderr.read()}")
    return process, int(json.loads(line)["url"].split(":")[2].split("/")[0])


def stop_sim(process: subprocess.Popen) -> str:
    """SIGTERM (the simulator saves its host and stops its apps); returns everything it printed."""

    process.send_signal(signal.SIGINT if os.name == "nt" else signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return stdout + stderr


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Both deploys against one simulated host, which is then stopped: site.py with ``-vvv
    --debug``, release.py with ``-vvv --debug-all`` (every library's debug log too: urllib3,
    requests_ntlm, pyspnego, pywinrm)."""

    tmp = tmp_path_factory.mktemp("secrets")
    root = tmp / "project"
    for folder in ("inventories", "deploys"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "inventories" / "group_data" / "all.py", "a", encoding="utf-8") as handle:
        handle.write(FAST_HEALTH)
    demo = Demo(tmp / "work", hosts=1, root=root, password=SECRETS["winrm password"], pfx_password=SECRETS["pfx password"],
                app_secret=SECRETS["app secret"])
    from pyinfra_iis.demo import write_sim_files

    write_sim_files(demo.files, demo.pfx_password)
    dist = tmp / "dist"
    dist.mkdir()
    artifacts = {version: build_artifact(version, dist) for version in ("1.0.0", "2.0.0")}

    state_dir = demo.state_dir(0)
    sim_env = {**os.environ, "PYINFRA_IIS_SIM_PASSWORD": demo.password}
    process, port = start_sim(state_dir, sim_env)
    runs = {}
    try:
        servers = [SimpleNamespace(port=port)]
        for deploy, version, debug in (("deploys/site.py", "1.0.0", "--debug"), ("deploys/release.py", "2.0.0", "--debug-all")):
            runs[deploy] = demo.pyinfra(deploy, "-vvv", debug, version=version, artifact=artifacts[version], servers=servers, timeout=300)
    finally:
        sim_log = stop_sim(process)
    return SimpleNamespace(runs=runs, sim_log=sim_log, state_dir=state_dir, host=SimHost(state_dir))


def test_both_deploys_ran_and_the_secrets_reached_the_host(deployed):
    """Controls: the deploys succeeded, the secrets were really used (so their absence
    elsewhere means something) and the debug output did show the inventory data."""

    for deploy, result in deployed.runs.items():
        assert result.returncode == 0, f"{deploy}:\n{result.stdout}{result.stderr}"[-4000:]
    output = deployed.runs["deploys/site.py"].stdout + deployed.runs["deploys/site.py"].stderr
    assert "Adding data to group all" in output and f"'password': '{MASK}'" in output
    assert f"'API_SECRET_KEY': '{MASK}'" in output
    release = deployed.runs["deploys/release.py"]
    assert "urllib3" in release.stdout + release.stderr  # --debug-all did log the HTTP layer
    config = deployed.host.path(APPLICATION_HOST_CONFIG).read_bytes()
    assert found_in(config) == {"app secret"}
    assert json.loads(deployed.host.path("C:\\sites\\api\\release-state.json").read_text(encoding="utf-8"))["current"] == "2.0.0"
    assert deployed.host.state["counters"]["http_requests"] > 0


def test_pyinfra_output_with_debug_holds_no_secret(deployed):
    for deploy, result in deployed.runs.items():
        assert found_in((result.stdout + result.stderr).encode()) == set(), deploy


def test_verbose_fact_output_shows_keyed_digests_only(deployed):
    # -vvv prints Get-HostState's output: the app secret appears there as an HMAC under a key
    # that was sent masked, never as the unkeyed hash an attacker could test guesses against.
    output = "".join(result.stdout + result.stderr for result in deployed.runs.values())
    assert "hmac-sha256:" in output
    for value in SECRETS.values():
        for text in (value, value.split("'")[0]):
            assert hashlib.sha256(("pyinfra-iis\0" + text).encode()).hexdigest() not in output
            assert hashlib.sha256(text.encode()).hexdigest() not in output
    assert "Get-HostState -Json '{" in output and '"digest_key":*MASKED*' in output.replace(" ", "")


def test_the_simulator_log_holds_no_secret(deployed):
    assert found_in(deployed.sim_log.encode()) == set(), deployed.sim_log[-2000:]


def test_no_file_the_pool_identity_can_read_holds_a_secret(deployed):
    host = deployed.host
    readable = []
    for path in sorted((deployed.state_dir / "C").rglob("*")):
        if path.is_file() and can_read(host, POOL_IDENTITY, host.windows_path(path)):
            readable.append(path)
            assert found_in(path.read_bytes()) == set(), host.windows_path(path)
    names = {p.name for p in readable}
    assert {"web.config", "manifest.json", "main.py"} <= names  # the release the pool runs is readable
    assert len(readable) > 20


def test_no_web_config_holds_a_secret(deployed):
    configs = sorted(deployed.state_dir.rglob("web.config"))
    assert len(configs) >= 2  # releases 1.0.0 and 2.0.0
    for path in configs:
        text = path.read_text(encoding="utf-8-sig")
        assert found_in(text.encode()) == set(), path
        assert "API_SECRET_KEY" not in text


def test_secrets_live_only_in_allow_listed_files_the_pool_identity_cannot_read(deployed):
    host = deployed.host
    holders = {}
    for path in sorted(deployed.state_dir.rglob("*")):
        if path.is_file():
            found = found_in(path.read_bytes())
            if found:
                holders[path.relative_to(deployed.state_dir).as_posix()] = found
    for relative, found in holders.items():
        assert relative in ALLOWED, f"{relative} holds {sorted(found)}"
        assert found <= ALLOWED[relative][0], relative
    # Readers are accounts (a group is not a token): the pool, another pool (IIS_IUSRS, Users), IUSR.
    for principal in (POOL_IDENTITY, "IIS AppPool\\DefaultAppPool", "IUSR"):
        assert not can_read(host, principal, APPLICATION_HOST_CONFIG), principal
    assert can_read(host, "NT AUTHORITY\\SYSTEM", APPLICATION_HOST_CONFIG)


# --- the log filter itself (no simulator) ------------------------------------------------------


def test_mask_secret_data_masks_secret_keys_at_any_depth_and_keeps_the_rest():
    data = {"winrm_password": "w", "winrm_user": "admin", "_sudo_password": None,
            "iis_certificates": [{"name": "api", "password": "p", "pfx": "api.pfx"}],
            "iis_app_pools": [{"name": "api", "environment_variables": {"TOKEN": "t"}}],
            "release_app": {"app_settings": {"LOG_LEVEL": "info"}, "app_secrets": {"KEY": "k", "OTHER": ("a", "b")}}}
    assert mask_secret_data(data) == {
        "winrm_password": MASK, "winrm_user": "admin", "_sudo_password": None,
        "iis_certificates": [{"name": "api", "password": MASK, "pfx": "api.pfx"}],
        "iis_app_pools": [{"name": "api", "environment_variables": {"TOKEN": MASK}}],
        "release_app": {"app_settings": {"LOG_LEVEL": "info"}, "app_secrets": {"KEY": MASK, "OTHER": (MASK, MASK)}}}
    assert data["winrm_password"] == "w"  # a copy: the inventory keeps its values


def test_the_filter_masks_the_pyinfra_debug_record_of_group_data():
    record = logging.LogRecord("pyinfra", logging.DEBUG, __file__, 1, "Adding data to group %s: %r", ("all", {"winrm_password": "w-123"}), None)
    assert SecretDataFilter().filter(record) is True
    assert record.getMessage() == f"Adding data to group all: {{'winrm_password': '{MASK}'}}"
    assert any(isinstance(f, SecretDataFilter) for f in logging.getLogger("pyinfra").filters)


def test_the_script_block_log_holds_no_secret(deployed):
    """Issue 9, "Secrets in script text": a host with Script Block Logging on (event 4104)
    records every script block PowerShell compiles; the simulator keeps that record
    (``python -m pyinfra_iis.sim show``). Remote calls travel as data (a call frame's JSON is a
    parameter value), so no WinRM password, PFX password, app secret or digest key is in it."""

    result = subprocess.run([sys.executable, "-m", "pyinfra_iis.sim", "show", "--state-dir", str(deployed.state_dir)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    log = json.loads(result.stdout)["script_block_log"]
    assert log and log[0].startswith("$ModuleSha256 = ")  # the worker's -EncodedCommand text
    assert any("function Get-HostState" in text for text in log)  # the module, when loaded
    for text in log:
        assert found_in(text.encode("utf-8")) == set()
        # the module's own text names the member; a call's JSON would carry its value
        assert '"digest_key":' not in text and "Get-HostState -Json '" not in text


def test_a_plain_value_cannot_forge_the_secret_placeholder():
    """The placeholder a secret takes while the payload is serialised is random per call: a plain
    value written like the old fixed placeholder stays a plain value, and the secret stays masked."""

    from pyinfra_iis.protocol import Secret, parse_remote_call, remote_call

    forged = "\x00pyinfra-iis-secret-0\x00"
    command = remote_call("Set-IisConfig", {"a": forged, "b": Secret("real-secret-9f")})
    assert parse_remote_call(command.get_raw_value())[1] == {"a": forged, "b": "real-secret-9f"}
    masked = command.get_masked_value()
    assert "real-secret-9f" not in masked and masked.count("*MASKED*") == 1
    assert masked.index("pyinfra-iis-secret-0") < masked.index("*MASKED*")  # "a" shown as given, "b" masked
