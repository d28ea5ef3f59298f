"""The files a user of the package reads or runs first, checked without building anything: the
README's table of ``winrm_*`` keys, the docs being self-contained, the overridable templates,
the Windows workflow, the console script, the demo's per-user workdir, the packaging metadata."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pyinfra_iis
from pyinfra_iis import cli, demo
from pyinfra_iis.transport.settings import PREFIX, WinrmSettings

PROJECT = Path(__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text(encoding="utf-8")
WORKFLOW = PROJECT / ".github" / "workflows" / "windows.yml"
#: The docs this project writes about itself (docs/remote-functions.md is the remote contract,
#: kept by the owners of each function).
OWN_DOCS = [PROJECT / "README.md", PROJECT / "docs" / "design.md", PROJECT / "docs" / "field-facts.md",
            PROJECT / "templates" / "README.md"]


def test_the_readme_lists_every_winrm_key_in_one_table():
    rows = [line for line in README.splitlines() if line.startswith("| `winrm_")]
    listed = {key for row in rows for key in re.findall(r"`(winrm_[a-z_]+)`", row.split("|")[1])}
    assert listed == {PREFIX + name for name in WinrmSettings.model_fields}
    assert "connectors/winrm.py` for the full list" not in README


@pytest.mark.parametrize("path", OWN_DOCS, ids=lambda p: str(p.relative_to(PROJECT)))
def test_the_docs_stand_alone(path):
    text = path.read_text(encoding="utf-8")
    outside = "/".join(("..", "shared"))  # the briefs beside the repository: the project must not need them
    assert outside not in text and "/work/" not in text
    assert not re.search(r"\bissues? #?[0-9]+\b", text, re.IGNORECASE), re.search(r"\bissues? #?[0-9]+\b", text, re.I)
    for target in re.findall(r"\]\(((?!https?:|#)[^)#]+)", text):  # relative links point at files that exist
        assert (path.parent / target).exists(), target


def test_the_docs_cite_their_sources():
    facts = (PROJECT / "docs" / "field-facts.md").read_text(encoding="utf-8")
    assert facts.count("https://learn.microsoft.com/") >= 10
    assert "https://github.com/" in facts
    design = (PROJECT / "docs" / "design.md").read_text(encoding="utf-8")
    for layer in ("Inventory", "Models", "Facts", "Operations", "Remote primitives", "Connector", "Simulator"):
        assert layer.lower() in design.lower(), layer


def test_the_top_level_template_is_the_packaged_default():
    """A clone renders the same web.config whichever copy the renderer picks."""

    top = (PROJECT / "templates" / "web.config.j2").read_bytes()
    assert top == (PROJECT / "pyinfra_iis" / "templates" / "web.config.j2").read_bytes()


def test_a_templates_folder_overrides_the_packaged_web_config(tmp_path, monkeypatch):
    from pyinfra_iis.models.release import ReleaseSettings
    from pyinfra_iis.release import webconfig

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "web.config.j2").write_text("<configuration><!-- mine {{ process_path }} --></configuration>\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYINFRA_IIS_TEMPLATES", raising=False)
    getattr(webconfig._environment, "cache_clear", lambda: None)()
    settings = ReleaseSettings(app_name="api", root=r"C:\sites\api")
    try:
        assert "<!-- mine C:\\sites\\api\\releases\\1.0.0\\venv" in webconfig.render_web_config(settings, r"C:\sites\api\releases\1.0.0")
    finally:
        getattr(webconfig._environment, "cache_clear", lambda: None)()


def test_the_windows_workflow_parses_and_does_the_whole_job():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers
    job = workflow["jobs"]["site"]
    assert job["runs-on"] == "windows-2022"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    for needed in ("New-SelfSignedCertificate", "-Transport HTTPS", "winrm_ca_trust_path", "Get-FileHash -Algorithm SHA256",
                   "Get-AuthenticodeSignature", "deploys/site.py", "/healthz", "https://api.example.com",
                   "deploys/release.py", "deploys/rollback.py", "python -m pyinfra_iis.release build", "@winrm/localhost"):
        assert needed in script, needed
    assert script.count("pyinfra inventories/ci_localhost.py deploys/site.py") == 2
    assert "] Success" in script  # the second run must change nothing
    pins = workflow["env"]
    for name in ("PYTHON_INSTALLER_SHA256", "REWRITE_MSI_SHA256", "ARR_MSI_SHA256"):
        assert re.fullmatch(r"[0-9A-F]{64}", pins[name]), name
    assert pins["HPH_MSI_SHA256"] == "${{ vars.HPH_MSI_SHA256 }}"
    for url in ("PYTHON_URL", "REWRITE_URL", "ARR_URL", "HPH_URL"):
        assert pins[url].startswith("https://"), url


def test_the_readme_says_the_workflow_cannot_run_here():
    assert ".github/workflows/windows.yml" in README
    assert "cannot run here" in README


def test_the_demo_workdir_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("PYINFRA_IIS_DEMO_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "alice"))
    alice = demo.default_workdir()
    monkeypatch.setenv("HOME", str(tmp_path / "bob"))
    bob = demo.default_workdir()
    assert alice != bob and alice.is_relative_to(tmp_path / "alice")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert demo.default_workdir() == tmp_path / "cache" / "pyinfra-iis" / "demo"
    monkeypatch.setenv("PYINFRA_IIS_DEMO_DIR", str(tmp_path / "here"))
    assert demo.default_workdir() == tmp_path / "here"
    assert "pyinfra-iis-demo" not in (PROJECT / "pyinfra_iis" / "demo.py").read_text(encoding="utf-8")


def test_the_demo_finds_the_checkout_or_the_wheels_copy(tmp_path):
    assert demo.PROJECT == PROJECT and demo.is_project(PROJECT)
    assert demo.project_for(tmp_path) == PROJECT  # a checkout runs in place
    bundle = tmp_path / "bundle"
    for name in ("inventories/sim.py", "deploys/site.py", "examples/app/main.py"):
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text("# stand-in\n")
    with pytest.raises(FileNotFoundError):
        demo.project_for(tmp_path, source=tmp_path / "nothing")
    original = demo.BUNDLE
    demo.BUNDLE = bundle
    try:
        copy = demo.project_for(tmp_path / "work", source=bundle)
    finally:
        demo.BUNDLE = original
    assert copy == tmp_path / "work" / "project" and (copy / "deploys" / "site.py").is_file()


def test_the_console_script(capsys, tmp_path):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pyinfra-iis {pyinfra_iis.__version__}"
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--help"])
    assert exit_.value.code == 0 and "--workdir" in capsys.readouterr().out

    written = cli.init(tmp_path / "mine")
    assert Path("deploys/site.py") in written and Path("templates/web.config.j2") in written
    assert (tmp_path / "mine" / "examples" / "app" / "requirements.txt").read_bytes() == \
        (PROJECT / "examples" / "app" / "requirements.txt").read_bytes()
    (tmp_path / "mine" / "deploys" / "site.py").write_text("# mine\n")
    assert cli.main(["init", str(tmp_path / "mine")]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (tmp_path / "mine" / "deploys" / "site.py").read_text() == "# mine\n"
    assert cli.main(["init", "--force", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "deploys" / "site.py").read_bytes() == (PROJECT / "deploys" / "site.py").read_bytes()


def test_the_package_metadata_is_ready_for_pypi():
    meta = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (PROJECT / "LICENSE").read_text(encoding="utf-8")
    assert "version" in project["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pyinfra_iis.__version__"}
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(project["urls"])
    assert project["scripts"] == {"pyinfra-iis": "pyinfra_iis.cli:main"}
    assert "Typing :: Typed" in project["classifiers"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only
    assert (PROJECT / "pyinfra_iis" / "py.typed").is_file()
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"]["pyinfra_iis"]
    # the demo's files reach the sdist and the wheel
    manifest = (PROJECT / "MANIFEST.in").read_text(encoding="utf-8")
    setup = (PROJECT / "setup.py").read_text(encoding="utf-8")
    for folder in ("inventories", "deploys", "templates", "examples/app"):
        assert f"graft {folder}" in manifest and f'"{folder}"' in setup, folder


def test_the_speedups_are_documented_as_opt_in_with_their_measured_gain():
    assert "PYINFRA_IIS_PYINFRA_SPEEDUPS=1" in README
    section = README[README.index("PYINFRA_IIS_PYINFRA_SPEEDUPS=1") - 1500:README.index("PYINFRA_IIS_PYINFRA_SPEEDUPS=1") + 1500]
    assert "5.2 s" in section and "3.0 s" in section and "benchmarks/README.md" in section
