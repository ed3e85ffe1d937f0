"""Preflight: prove a training config is sound on any machine, before spending GPU hours.

    python -m recipe.ivgr.preflight [--decode sample|all|none] [--sample-rows N] [--judge-timeout S] [key=value ...]
    bash scripts/train_ivgr_7b.sh --dry-run [key=value ...]     # same overrides as the real run

Needs no GPU and no Ray cluster. Composes the exact config `python -m recipe.ivgr.main` would run
with the same overrides (`recipe/ivgr/config/ivgr_trainer.yaml`), then checks, collecting every
problem instead of stopping at the first:

- config: Hydra composition, `recipe.ivgr.main.check_config` (verl's `validate_config` plus the
  recipe's invariants), the `reward_score` settings and its `judge`, `reward.reward_model` unused;
- data: every train/val Parquet exists and passes `data_prep.validate` (schema, every row, images
  and boxes decoded for a sample of rows); box frames and image patch size agree with the model;
  images per sample within `rollout.limit_images`; enough rows for one step;
- judge: `GET {reward_score.judge.base_url}/models` answers and lists `reward_score.judge.model` (or "not configured");
- sizes: batch sizes divisible by each other and by the data-parallel world, rollout TP divides the
  GPUs of a node, token budgets hold one full sequence, `rollout.n >= 2`;
- checkpoints: absolute `trainer.default_local_dir`; the checkpoint the run would resume from
  (`latest_checkpointed_iteration.txt` or `resume_from_path`) complete, files and archives
  (`recipe.ivgr.integrity.resume_target`, the trainer's own check).

One module per job: `config` (composition and the recipe's own validation), `data`, `model`,
`endpoints`, `sizes`, `host` (checkpoints, logger, install), `report` (findings and the printout).

Then prints a short table (GPUs, samples/rows/sequences per step, max tokens per sequence, estimated
tokens per step, checkpoint folder, logger). Exit status 0 when no problem was found, 1 otherwise
(one line per problem). Warnings (judge not configured, model to download, ...) never fail.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recipe.ivgr.preflight.config import CONFIG_NAME, check_recipe_settings, compose_config, run_check_config
from recipe.ivgr.preflight.data import check_data
from recipe.ivgr.preflight.endpoints import check_judge
from recipe.ivgr.preflight.host import check_checkpoints, check_install, check_logger
from recipe.ivgr.preflight.model import check_frames, check_model
from recipe.ivgr.preflight.report import Findings, print_report
from recipe.ivgr.preflight.sizes import check_sizes, summary_rows


def run(overrides: Sequence[str], decode: str = "sample", sample_rows: int = 64, judge_timeout: float = 5.0,
        out=None) -> int:
    """Run every check with these Hydra overrides; print the report to `out`; 0 = sound, 1 = problems."""
    out = out or sys.stdout
    findings = Findings()
    usable = []
    for item in overrides:
        if item.startswith("--"):
            findings.problem(f"unknown option {item!r}: pass Hydra overrides as key=value")
        elif item.startswith(("hydra.", "hydra/", "+hydra", "~hydra")):
            findings.note(f"ignored (Hydra runtime only): {item}")
        else:
            usable.append(item)
    try:
        config = compose_config(usable)
    except Exception as err:  # noqa: BLE001  (Hydra's ConfigCompositionException, override parse errors)
        findings.problem(f"config: Hydra cannot compose {CONFIG_NAME} with these overrides: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}")
        return print_report(findings, [], out)
    check_install(findings)
    run_check_config(config, findings)
    check_recipe_settings(config, findings)
    check_model(config, findings)
    stats = check_data(config, findings, decode, sample_rows)
    check_frames(config, stats, findings)
    train = stats.get("train")
    check_sizes(config, train, findings)
    judge = check_judge(config, findings, judge_timeout)
    ckpt = check_checkpoints(config, findings)
    logger_ = check_logger(config, findings)
    return print_report(findings, summary_rows(config, train, judge, ckpt, logger_), out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--env" in argv:  # the GPU node's installed stack instead of a config: recipe/ivgr/envcheck.py
        from recipe.ivgr.envcheck import main as env_main

        return env_main([a for a in argv if a != "--env"], prog="python -m recipe.ivgr.preflight --env")
    from recipe.ivgr.envcheck import interpreter_problem

    if (problem := interpreter_problem()) is not None:
        print(f"PROBLEM: {problem}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.preflight",
                                     description="Check an iVGR training config without GPUs (see module doc).")
    parser.add_argument("--decode", choices=("sample", "all", "none"), default="sample",
                        help="decode images of a sample of rows (default), every row, or none")
    parser.add_argument("--sample-rows", type=int, default=64, help="rows whose images are decoded (--decode sample)")
    parser.add_argument("--judge-timeout", type=float, default=5.0, help="seconds for GET {base_url}/models")
    args, overrides = parser.parse_known_args(argv)
    return run(overrides, decode=args.decode, sample_rows=args.sample_rows, judge_timeout=args.judge_timeout)

