"""`python -m recipe.ivr_r1.preflight [key=value ...]` (`bash scripts/train_ivr_r1_7b.sh --dry-run`):
the iVGR preflight's checks on the IVR-R1 config, without Ray or GPUs.

Composes `config/ivr_r1_trainer.yaml` with the launch overrides, runs `recipe.ivr_r1.main.check_config`
(verl's validate_config plus the IVR-R1 rules), validates the data files, checks sizes, checkpoints and
logger like `recipe.ivgr.preflight`, and probes the attributor, the teacher (`rereason.teacher`, when
configured) and the judge (`reward_score.judge`, which serves both the reward and the screening verdict;
`GET /models`). Exit 1 with one line per problem.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from recipe.ivgr.preflight.config import compose_config, run_check_config, select
from recipe.ivgr.preflight.data import check_data
from recipe.ivgr.preflight.endpoints import check_endpoint
from recipe.ivgr.preflight.host import check_checkpoints, check_install, check_logger
from recipe.ivgr.preflight.model import check_frames, check_model
from recipe.ivgr.preflight.report import Findings, print_report
from recipe.ivgr.preflight.sizes import check_sizes, summary_rows

CONFIG_DIR = Path(__file__).resolve().parent / "config"
ENDPOINTS = (("ivr_r1.attributor.judge", "attributor"), ("reward_score.judge", "judge"), ("ivr_r1.rereason.teacher", "teacher"))


def run(overrides: Sequence[str], decode: str = "sample", sample_rows: int = 64, timeout_s: float = 5.0,
        out=None) -> int:
    """Every check with these Hydra overrides; the report goes to `out`; 0 = sound, 1 = problems."""
    from recipe.ivr_r1.main import check_config
    from recipe.ivr_r1.settings import owns_reward

    out = out or sys.stdout
    findings = Findings()
    try:
        config = compose_config(list(overrides), CONFIG_DIR, "ivr_r1_trainer")
    except Exception as err:  # noqa: BLE001  (Hydra composition and override parse errors)
        findings.problem(f"config: Hydra cannot compose ivr_r1_trainer with these overrides: {err}".splitlines()[0])
        return print_report(findings, [], out, "IVR-R1 preflight (no GPU, no Ray)")
    check_install(findings)
    run_check_config(config, findings, check_config)
    if not owns_reward(config):
        findings.warn("reward: not the recipe's IVGRRewardManager (or a reward model is on): the agent loop's "
                      "screening score is not handed to verl, so undecided answers are judged twice")
    check_model(config, findings)
    stats = check_data(config, findings, decode, sample_rows)
    check_frames(config, stats, findings)
    check_sizes(config, stats.get("train"), findings)
    status = {label: check_endpoint(config, findings, timeout_s, prefix, label) for prefix, label in ENDPOINTS}
    if status["attributor"] == "not configured" and select(config, "ivr_r1.attributor.kind") == "judge":
        findings.warn("attributor: ivr_r1.attributor.judge.base_url unset (check_config refuses it for kind=judge)")
    ckpt = check_checkpoints(config, findings, skips_incomplete=False)  # verl's own load
    logger_ = check_logger(config, findings)
    rows = summary_rows(config, stats.get("train"), status["judge"], ckpt, logger_)
    rows.append(("attributor", f"{select(config, 'ivr_r1.attributor.kind')}: {status['attributor']}"))
    continuation = select(config, "ivr_r1.rereason.continuation", "policy")
    rows.append(("continuation", f"teacher: {status['teacher']}" if continuation == "teacher" else str(continuation)))
    return print_report(findings, rows, out, "IVR-R1 preflight (no GPU, no Ray)")


def main(argv: Sequence[str] | None = None) -> int:
    from recipe.ivgr.envcheck import interpreter_problem

    if (problem := interpreter_problem()) is not None:
        print(f"PROBLEM: {problem}", file=sys.stderr)
        return 2
    return run(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
