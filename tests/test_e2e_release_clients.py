"""Issue 11 end to end in HttpPlatformHandler mode: two bare simulated hosts → 1.0.0 (deploys/site.py)
→ 2.0.0 → a 3.0.0 that fails at import → rollback (deploys/release.py, deploys/rollback.py through
the real pyinfra command line), with 8 clients calling /info through the https binding during
every release step. Not one request may fail. This is ``benchmarks/release.py``'s run, so it also
keeps the benchmark from rotting; its figures are printed, never asserted on time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
BENCHMARK = PROJECT / "benchmarks" / "release.py"

pytestmark = pytest.mark.e2e


def load_benchmark():
    spec = importlib.util.spec_from_file_location("release_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_bare_hosts_to_v1_v2_broken_v3_and_rollback_fail_no_client_request(tmp_path):
    bench = load_benchmark()
    artifacts = bench.build_artifacts(tmp_path / "dist")
    args = type("Args", (), {"hosts": 2, "clients": 8, "path": "/info"})()
    results = bench.httpplatform(args, tmp_path / "httpplatform", artifacts)
    print("\n".join(bench.report(results)))
    assert [(r.step, r.ok) for r in results] == [("v2", True), ("broken v3", False), ("rollback", True)]
    for r in results:
        assert r.whole["requests"] > 0 and r.whole["failed"] == 0, (r.step, r.whole["failures"])
    # every step's switches happened while the clients were calling (the figures are about them)
    assert all(r.switch.get("requests", 0) > 0 for r in results if r.step != "broken v3"), [asdict_step(r) for r in results]
    broken = results[1]
    assert broken.refused_after is not None and broken.refused_after < 2 * bench.STARTUP_TIME_LIMIT


def asdict_step(result) -> str:
    return json.dumps({"step": result.step, "switch": result.switch, "seconds": result.switch_seconds})


def test_the_report_names_missed_targets_without_failing():
    bench = load_benchmark()
    clean = bench.StepResult("httpplatform", "v2", True, 30.0, {"requests": 900, "failed": 0}, {"requests": 200, "failed": 0,
                             "p50_ms": 5.0, "p99_ms": 40.0}, [3.1, 2.9])
    broken = bench.StepResult("httpplatform", "broken v3", False, 20.0, {"requests": 500, "failed": 2, "failures": ["HTTP 502: 502.3"]},
                              {"requests": 40, "failed": 2}, [130.0], refused_after=130.0)
    lines = bench.report([clean, broken])
    assert "target: 0 failed requests: MISSED (2 failed)" in lines
    assert "  httpplatform broken v3: HTTP 502: 502.3" in lines
    assert "target: httpplatform broken release refused within 2 x startup_time_limit (120 s): MISSED (130.0 s)" in lines
    assert lines[1].startswith("httpplatform | v2 | 30.0 | 900 | 0 | 200 | 0 | 5.0 | 40.0 | 3.1,2.9 | -")
