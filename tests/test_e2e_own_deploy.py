"""The README's "Writing your own deploy" example, run through the real ``pyinfra`` command
line against a simulated host: the flat operations converge, a second run changes nothing, and
the narrow fact plus four operations are served by the wide reads only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyinfra_iis.sim import SimServer

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "Sim-Pw'1$(x)"


def readme_deploy() -> str:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Writing your own deploy"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_deploy_has_at_most_ten_lines_of_code():
    lines = [line for line in readme_deploy().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 11 and "pool_name=" in readme_deploy() and ".read(host)" in readme_deploy()


def pyinfra(tmp: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pyinfra", *args, "inventory.py", "deploy.py"], cwd=tmp,
                            capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert PASSWORD not in output
    return output


def test_readme_deploy_converges_then_changes_nothing(tmp_path):
    with SimServer(tmp_path / "sim-state", user=USER, password=PASSWORD, port=0, allow_unencrypted=True) as sim:
        data = {"winrm_user": USER, "winrm_password": PASSWORD, "winrm_scheme": "http", "winrm_transport": "ntlm"}
        (tmp_path / "inventory.py").write_text(f"hosts = [('@winrm/127.0.0.1:{sim.port}', {data!r})]\n")
        (tmp_path / "deploy.py").write_text(readme_deploy())
        pyinfra(tmp_path, "-y")
        config = sim.host.path("C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config").read_text(encoding="utf-8-sig")
        assert 'name="api"' in config and "*:8080:" in config and 'physicalPath="C:\\sites\\api"' in config

        sim.host.reset_counters()
        again = pyinfra(tmp_path, "--dry")
        for label in ("IIS features", "API pool", "API site", "Pool reads the app"):
            assert re.search(rf"{label}\s+-\s+-", again), again
        # the fact, the features, the pool and the site share one read; acl asks for its path, which
        # no inventory data announced, so it adds one read covering both
        assert sim.host.counters.get("function_calls", 0) == 2, dict(sim.host.counters)

        sim.host.reset_counters()
        facts = subprocess.run([sys.executable, "-m", "pyinfra", "inventory.py", "fact", "pyinfra_iis.facts.iis.Sites"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert facts.returncode == 0, facts.stderr
        printed = facts.stdout + facts.stderr  # pyinfra prints fact data on stderr
        assert '"binding_information": "*:8080:"' in printed and '"app_pool": "api"' in printed, printed
        assert sim.host.counters.get("function_calls", 0) == 1
