"""The CPU pipeline smoke run end to end (`bash scripts/smoke_cpu.sh pipeline`): verl's own SFT trainer on the
synthetic SFT rows from the warm-started tiny Qwen2.5-VL, GRPO steps through verl's trainer from its
`hf_final`, verl's model merger exporting the RL checkpoint and the recipe's eval on the demo benchmark.

Minutes on a 2-core machine; deselect locally with `-m "not smoke"` (CI runs it). The assertions read what
the run wrote (`recipe.cpu_backend.smoke_report.check`: verl's console metrics, the rollout server's weight
log lines, the checkpoints, the export, the eval's summary.json).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.cpu_backend.smoke_report import (EXPORT_TOLERANCE, check, checkpoint_fingerprint, eval_summary,
                                             folder_fingerprint, parse_log)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.smoke, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "pipeline"
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE_DIR": str(out)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_cpu.sh"), "pipeline"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=1700)
    return out, result


def test_pipeline_passes_every_check(pipeline_run):
    out, result = pipeline_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    passed, failed = check(out, "pipeline", run_status=0, sft_steps=8)
    assert failed == []
    assert "smoke checks:" in result.stdout and " 0 failed" in result.stdout


def test_sft_trained_and_rl_started_from_its_checkpoint(pipeline_run):
    out, _ = pipeline_run
    sft = parse_log(out / "sft.log")
    assert sorted(sft.steps) == list(range(1, 9))
    assert all(math.isfinite(m["train/loss"]) and m["train/lr"] > 0 for m in sft.steps.values())
    losses = [m["train/loss"] for _, m in sorted(sft.steps.items())]
    assert sum(losses[4:]) < sum(losses[:4])  # epoch 2 (the same 16 rows) below epoch 1
    rl = parse_log(out / "run1.log")
    assert sorted(rl.steps) == [1, 2]
    for metrics in rl.steps.values():
        assert metrics["ivgr/grounded/rollouts"] == 8 and metrics["ivgr/textual/rollouts"] == 8  # 2 samples x n 4
    # the rollout server's first weights are hf_final's, not the base model's
    assert abs(rl.updates[0][1] - folder_fingerprint(out / "sft" / "hf_final")) < 1e-6
    assert abs(rl.updates[0][1] - folder_fingerprint(out / "model")) > 1e-3


def test_the_export_check_tells_the_step_2_actor_from_other_weights(pipeline_run):
    """The export (bfloat16) matches the step-2 checkpoint rounded to bfloat16; the step-1 checkpoint (the
    run saves every step) and the SFT model fail the same comparison, and so does the step-2 checkpoint
    compared in float32 (why the check rounds first)."""
    out, _ = pipeline_run
    export, ckpt = out / "export", out / "checkpoints"
    exported = folder_fingerprint(export)
    step2 = checkpoint_fingerprint(ckpt / "global_step_2" / "actor", export, "bfloat16")
    step1 = checkpoint_fingerprint(ckpt / "global_step_1" / "actor", export, "bfloat16")
    assert None not in (exported, step2, step1)
    assert abs(exported - step2) <= EXPORT_TOLERANCE
    assert abs(exported - step1) > 1e3 * EXPORT_TOLERANCE
    assert abs(exported - folder_fingerprint(out / "sft" / "hf_final")) > 1e3 * EXPORT_TOLERANCE
    assert abs(exported - checkpoint_fingerprint(ckpt / "global_step_2" / "actor", export)) > 1e3 * EXPORT_TOLERANCE
    # the step-1 checkpoint is the weights the rollout got after step 1 (update 2), in float32
    rl = parse_log(out / "run1.log")
    assert abs(checkpoint_fingerprint(ckpt / "global_step_1" / "actor", export) - rl.updates[-2][2]) < 1e-6


def test_the_eval_scored_every_demo_item_in_both_modes(pipeline_run):
    out, _ = pipeline_run
    results = next(iter(eval_summary(out)["results"].values()))
    for mode in ("textual", "grounded"):
        assert results[mode]["items"] == 8
        assert not (results[mode].get("failures") or {}).get("internal_error")
