"""From a base model to an evaluated checkpoint on CPU (`bash scripts/smoke_cpu.sh pipeline`): verl's own
SFT trainer (torchrun, FSDP) on the synthetic set's SFT rows, the RL smoke's GRPO steps from its `hf_final`,
verl's model merger, `python -m recipe.ivgr.eval` on the demo benchmark.

Minutes on a 2-core machine; deselect locally with `-m "not smoke"` (CI runs it). The assertions read what
the stages wrote (`recipe.cpu_backend.smoke_report.check`, recipe `pipeline`): verl's SFT and RL console
metrics, the weight fingerprints of the base, SFT and exported folders against the rollout server's log
lines, and the evaluation's summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.cpu_backend.smoke_report import check, parse_log

ROOT = Path(__file__).resolve().parents[1]
SFT_STEPS = 4
pytestmark = [pytest.mark.smoke, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "pipeline"
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE_DIR": str(out), "SMOKE_SFT_STEPS": str(SFT_STEPS)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "smoke_cpu.sh"), "pipeline"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=2300)
    return out, result


def test_pipeline_passes_every_check(pipeline_run):
    out, result = pipeline_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    passed, failed = check(out, "pipeline", run_status=0, sft_steps=SFT_STEPS)
    assert failed == [] and len(passed) >= 10
    assert "SFT train/loss per step: 1:" in result.stdout and " 0 failed" in result.stdout


def test_sft_ran_real_optimizer_steps_and_rl_started_from_its_checkpoint(pipeline_run):
    out, _ = pipeline_run
    sft = parse_log(out / "sft.log")
    assert sorted(sft.steps) == list(range(1, SFT_STEPS + 1))
    assert all(m["train/loss"] > 0 and m.get("train/grad_norm", 0) > 0 for m in sft.steps.values())
    assert (out / "sft" / "hf_final" / "config.json").is_file()
    run1 = parse_log(out / "run1.log")
    assert sorted(run1.steps) == [1, 2]
    assert all(m["ivgr/grounded/rollouts"] > 0 and m["ivgr/textual/rollouts"] > 0 for m in run1.steps.values())


def test_the_export_was_evaluated_on_the_demo_benchmark(pipeline_run):
    out, _ = pipeline_run
    summary = json.loads((out / "eval" / "summary.json").read_text())
    (bench,) = summary["results"].values()
    assert set(bench) == {"textual", "grounded"}
    assert all(result["items"] == 8 for result in bench.values())
    assert bench["grounded"]["grounding"]["items_with_gt"] == 8
