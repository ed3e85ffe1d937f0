"""The CPU smoke run end to end (`bash scripts/smoke_cpu.sh`): 3 real GRPO steps through verl's own
trainer on a tiny Qwen2.5-VL, a checkpoint at step 2 and a resumed step 3.

Minutes on a 2-core machine; deselect locally with `-m "not smoke"` (CI runs it). The assertions
read what the run wrote: verl's console metrics, the rollout server's and the actor's weight log lines,
the trainer's resume line and the rollout dumps (`recipe.cpu_backend.smoke_report.check`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.cpu_backend.smoke_report import check, parse_log

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.smoke, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "ivgr"
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE_DIR": str(out)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_cpu.sh")], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=1700)
    return out, result


def test_smoke_run_passes_every_check(smoke_run):
    out, result = smoke_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    passed, failed = check(out, "ivgr", batch_size=4, seed=0, run_status=0)
    assert failed == []
    assert "smoke checks:" in result.stdout and " 0 failed" in result.stdout


def test_every_step_has_both_streams_and_a_consistency_term(smoke_run):
    out, _ = smoke_run
    steps = {**parse_log(out / "run1.log").steps, **parse_log(out / "run2.log").steps}
    assert sorted(steps) == [1, 2, 3]
    for metrics in steps.values():
        assert metrics["ivgr/grounded/rollouts"] == 8 and metrics["ivgr/textual/rollouts"] == 8  # 2 samples x n 4
        assert "actor/pg_loss" in metrics
    assert any(m.get("ivgr/textual/consistency", 0) > 0 for m in steps.values())


def test_the_rollout_follows_the_actor_and_the_resume_restores_state(smoke_run):
    out, _ = smoke_run
    run1, run2 = parse_log(out / "run1.log"), parse_log(out / "run2.log")
    assert run1.actor_deltas and all(delta > 0 for delta in run1.actor_deltas + run2.actor_deltas)
    fingerprints = {version: after for version, _, after in run1.updates}
    assert any(version > 1 and fingerprints[version] == fingerprint for version, fingerprint in run1.generations)
    assert run2.restored and run2.restored[0][0] == 2 and run2.restored[0][1] >= 1
