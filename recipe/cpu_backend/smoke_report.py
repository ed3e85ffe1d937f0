"""Read a CPU smoke run's logs and dumps (scripts/smoke_cpu.sh), print the per-step figures and check
that every seam of the training loop did its job. Exit status 0 only when every check passes.

    python -m recipe.cpu_backend.smoke_report --dir outputs/smoke_cpu/ivgr --recipe ivgr

Evidence, all from what the run itself wrote (never from this script's own computations of rewards):
- per-step metrics: verl's console logger lines (`step:N - key:value - ...`) in run1.log / run2.log;
- the policy the rollout served: with hf_cpu, the server's log lines (`weights update V ... fingerprint
  A -> B`, `generating with weights version V`); with vLLM, verl's own comparison of the rollout's
  log-probs with the actor's (`training/rollout_probs_diff_mean`, `training/rollout_actor_probs_pearson_corr`)
  and the weights version each trajectory was generated with (`training/off_policy/...staleness_worst`);
  for both, the actor side's lines (`actor weights sent: update N ... fingerprint F`, `L2 change since
  the last update`; recipe.cpu_backend.weights.WeightChangeTracker);
- the resume: the trainer's `stage state restored ... archive of N references` line, and the sample ids
  in `checkpoints/rollout_dumps/step_N.jsonl` compared with the recipe's pair sampler's plan for the
  same data, seed and batch size (a restart from the beginning would repeat step 1's samples).

`--recipe pipeline` (cold-start SFT -> RL -> eval) reads `sft.log` (verl's SFT trainer's console lines,
`train/loss` per step), the model folders (`model/` the base, `sft/hf_final` the SFT output, `export/`
the merged RL actor: their weight fingerprints, `recipe.cpu_backend.weights.weight_fingerprint`),
`run1.log` and the evaluation's `eval/summary.json` / `eval/run.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from recipe.cpu_backend.run_output import RunLog, dumped_sample_ids, parse_log, planned_sample_ids

# The vLLM rollout follows the actor: verl compares, token by token, the probability the rollout
# sampled each response token with (vLLM's processed log-prob) with the actor's (FSDP, recomputed
# before the update), as |p_rollout - p_actor| averaged over response tokens and as their Pearson
# correlation (verl/utils/debug/metrics.py `calculate_debug_metrics`). With the weights in sync only
# numerics differ (bf16 on both sides, vLLM's CPU kernels vs. sdpa): a few thousandths and 0.999+.
# vLLM starts on dummy (random) weights (rollout.load_format=dummy), so a sync that never happened, or
# left layers behind (a layer whose weight vLLM's CPU path dropped keeps its random or stale values),
# gives token probabilities unrelated to the actor's: mean differences of 0.1 and more, correlations
# far below 0.99. The bounds sit several times above the synced figures and far below those.
ROLLOUT_DIFF_MAX = 0.02
# The export against the checkpoint rounded to bfloat16: the same values, summed in float64 in another order
# (~1e-13 here); one RL step of the tiny model moves the fingerprint by ~1e-3.
EXPORT_TOLERANCE = 1e-9
ROLLOUT_PEARSON_MIN = 0.99

SHOWN = ("ivgr/grounded/score", "ivgr/grounded/acc", "ivgr/grounded/iou", "ivgr/textual/score", "critic/score/mean",
         "ivgr/textual/consistency", "ivgr/archive/size", "ivgr/archive/hit_rate", "ivgr/judge/calls",
         "ivgr/acc_judge/calls", "ivgr/acc_undecided_rate", "actor/pg_loss", "actor/grad_norm",
         "critic/advantages/max", "critic/advantages/min", "training/rollout_probs_diff_mean",
         "training/rollout_actor_probs_pearson_corr", "timing_s/step")
IVR_R1_SHOWN = ("ivr_r1/screened_share", "ivr_r1/status/rectified", "ivr_r1/rectify/success_rate",
                "ivr_r1/attribution/success_rate", "ivr_r1/teacher/usable", "ivr_r1/teacher/failed",
                "ivr_r1/groups/demonstrations", "ivr_r1/groups/collapsed", "ivr_r1/join/demonstrations",
                "ivr_r1/join/advantage_mean", "ivr_r1/join/loss_tokens", "ivr_r1/aux_nll/demonstrations",
                "ivr_r1/aux_nll_tokens", "ivr_r1/score/rectified_mean")


def _actor_changed(name: str, run: RunLog, expect) -> None:
    expect(bool(run.actor_deltas) and all(d > 0 for d in run.actor_deltas),
           f"{name}: the actor's weights changed at every update (L2 changes "
           f"{[f'{d:.2e}' for d in run.actor_deltas]})")


def _vllm_followed(name: str, run: RunLog, expect, logprobs: bool = True) -> None:
    """The vLLM rollout served the actor's weights at every step (see ROLLOUT_DIFF_MAX). `logprobs`:
    False for IVR-R1, whose rectified rows carry the teacher's tokens, not vLLM's samples (verl's
    comparison covers every row: 0.21-0.24 / Pearson 0.1 with half the rollouts rectified)."""
    expect(len(run.sent) >= 1, f"{name}: the actor sent its weights to vLLM {len(run.sent)} times")
    if logprobs:
        _logprobs_agree(name, run, expect, "vLLM")
    for step, m in sorted(run.steps.items()):
        stale = m.get("training/off_policy/trajectory_staleness_worst/max")
        expect(stale == 0, f"{name} step {step}: every trajectory generated with the weights synced for this "
                           f"step (worst staleness {stale})")
    _actor_changed(name, run, expect)


def _logprobs_agree(name: str, run: RunLog, expect, server: str) -> None:
    """verl's own rollout-vs-actor comparison of the sampled tokens' probabilities, at every step."""
    for step, m in sorted(run.steps.items()):
        diff, corr = m.get("training/rollout_probs_diff_mean"), m.get("training/rollout_actor_probs_pearson_corr")
        expect(diff is not None and corr is not None and diff < ROLLOUT_DIFF_MAX and corr > ROLLOUT_PEARSON_MIN,
               f"{name} step {step}: {server}'s token probabilities match the actor's (mean |diff| {diff} < "
               f"{ROLLOUT_DIFF_MAX}, Pearson {corr} > {ROLLOUT_PEARSON_MIN})")


def _weights_followed(name: str, run: RunLog, expect, logprobs: bool = True) -> None:
    """The hf_cpu server took every weight update, generated with it, and (`logprobs`; not for IVR-R1,
    see `_vllm_followed`) sampled from the actor's own distribution (its served log-probs in fp32
    against the actor's: 0.002-0.003 / Pearson 1.0 in the smoke)."""
    expect(len(run.updates) >= 1 and all(after != before for _, before, after in run.updates[1:]),
           f"{name}: the rollout server received {len(run.updates)} weight updates, each after the first changing it")
    served = dict(run.generations)
    after_update = {v: after for v, _, after in run.updates}
    expect(bool(served) and all(abs(served[v] - after_update.get(v, float("nan"))) < 1e-6 for v in served),
           f"{name}: the rollout generated with the weights of each update (versions {sorted(served)})")
    if logprobs:
        _logprobs_agree(name, run, expect, "hf_cpu")
    _actor_changed(name, run, expect)


def check(smoke_dir: Path, recipe: str, batch_size: int | None = None, seed: int | None = None,
          run_status: int = 0, rollout: str = "hf_cpu", sft_steps: int | None = None) -> tuple[list[str], list[str]]:
    """(passed, failed) check descriptions. `batch_size`/`seed` default to what the launch used
    (data.train_batch_size / data.seed in run 1's command echo; else 4 and 0, the smoke run's);
    `rollout`: the run's `actor_rollout_ref.rollout.name` (hf_cpu or vllm)."""
    if rollout not in ("hf_cpu", "vllm"):
        raise ValueError(f"rollout must be hf_cpu or vllm, not {rollout!r}")
    run1, run2 = parse_log(smoke_dir / "run1.log"), parse_log(smoke_dir / "run2.log")
    if batch_size is None:
        batch_size = int(run1.settings.get("data.train_batch_size", 4))
    if seed is None:
        given = run1.settings.get("data.seed", "null")
        seed = 0 if given in ("null", "None") else int(given)
    passed, failed = [], []

    def expect(ok: bool, text: str) -> None:
        (passed if ok else failed).append(text)

    if recipe == "pipeline":
        _check_pipeline(smoke_dir, run_status, sft_steps, expect)
        return passed, failed
    teardown = len(run1.teardown_errors) + len(run2.teardown_errors)
    expect(run_status == 0 and not run1.errors and not run2.errors,
           f"both training runs exited 0 without a traceback (status {run_status}"
           + (f"; {teardown} traceback(s) after the trainer's last line, at teardown)" if teardown else ")"))
    for name, run in (("run 1", run1), ("run 2", run2)):
        if rollout == "vllm":
            _vllm_followed(name, run, expect, logprobs=recipe != "ivr_r1")
        else:
            _weights_followed(name, run, expect, logprobs=recipe != "ivr_r1")
    if recipe == "ivr_r1":
        _check_ivr_r1(run1, run2, expect)
    else:
        _check_ivgr(smoke_dir, run1, run2, batch_size, seed, expect, rollout)
    return passed, failed


def _check_ivgr(smoke_dir: Path, run1: RunLog, run2: RunLog, batch_size: int, seed: int, expect,
                rollout: str = "hf_cpu") -> None:
    steps = {**run1.steps, **run2.steps}
    expect(sorted(run1.steps) == [1, 2] and sorted(run2.steps) == [3],
           f"run 1 logged steps 1-2 and run 2 step 3 (got {sorted(run1.steps)}, {sorted(run2.steps)})")
    for step in sorted(steps):
        m = steps[step]
        expect(m.get("ivgr/grounded/rollouts", 0) > 0 and m.get("ivgr/textual/rollouts", 0) > 0
               and "ivgr/grounded/score" in m and "ivgr/textual/score" in m,
               f"step {step}: grounded and textual rollouts scored")
    with_reference = [s for s in steps if steps[s].get("ivgr/archive/hit_rate", 0) > 0]
    expect(bool(with_reference), "some step has textual rows with a reference (archive hit rate > 0)")
    expect(any(steps[s].get("ivgr/textual/consistency", 0) > 0 for s in with_reference),
           "the consistency term is non-zero on a step with references")
    if rollout == "hf_cpu" and run1.updates and run2.updates:
        # server side: what run 2's server received first vs. what run 1's held last and its own start
        end_of_run1, resumed = run1.updates[-1][2], run2.updates[0][2]
        expect(abs(end_of_run1 - resumed) < 1e-5 and run2.updates[0][1] != resumed,
               f"run 2 resumed the actor's step-2 weights (fingerprint {resumed:.6f}; end of run 1 "
               f"{end_of_run1:.6f}; the model folder's {run2.updates[0][1]:.6f})")
    elif rollout == "vllm":
        # actor side: run 2's first sync sends run 1's last weights, not the model folder's (run 1's first)
        ok = len(run1.sent) >= 2 and bool(run2.sent)
        folder, end_of_run1, resumed = ((run1.sent[0][2], run1.sent[-1][2], run2.sent[0][2]) if ok
                                        else (float("nan"),) * 3)
        expect(ok and abs(end_of_run1 - resumed) < 1e-5 and abs(folder - resumed) > 1e-6,
               f"run 2 resumed the actor's step-2 weights (fingerprint sent first {resumed:.6f}; last sent by "
               f"run 1 {end_of_run1:.6f}; the model folder's {folder:.6f})")
    expect(bool(run2.restored) and run2.restored[0][0] == 2 and run2.restored[0][1] > 0,
           f"run 2 restored the step-2 archive (restored {run2.restored})")
    size_at_2 = steps.get(2, {}).get("ivgr/archive/size", 0)
    expect(steps.get(3, {}).get("ivgr/archive/size", 0) >= size_at_2 > 0,
           f"the archive carried over into step 3 (size {size_at_2} at step 2, "
           f"{steps.get(3, {}).get('ivgr/archive/size')} at step 3)")
    dumps = smoke_dir / "checkpoints" / "rollout_dumps"
    planned = planned_sample_ids(smoke_dir / "data" / "train.parquet", batch_size, seed, 3)
    for step in (1, 2, 3):
        got = dumped_sample_ids(dumps, step)
        expect(sorted(got) == sorted(planned[step - 1]),
               f"step {step} trained on the sampler's batch {step} ({got} vs planned {planned[step - 1]})")


def _metric(metrics: dict[str, float], suffix: str) -> float | None:
    """The value of the metric whose name ends with `suffix` (the actor prefixes its own)."""
    return next((v for k, v in metrics.items() if k.endswith(suffix)), None)


def _total(run: RunLog, suffix: str) -> float:
    return sum(_metric(m, suffix) or 0.0 for m in run.steps.values())


def _check_ivr_r1(join: RunLog, aux_nll: RunLog, expect) -> None:
    for name, run in (("join", join), ("aux_nll", aux_nll)):
        expect(sorted(run.steps) == [1, 2], f"{name}: steps 1-2 logged (got {sorted(run.steps)})")
        for step, m in sorted(run.steps.items()):
            expect("critic/score/mean" in m and _metric(m, "ivr_r1/screened_share") is not None
                   and _metric(m, "ivr_r1/groups/collapsed") is not None,
                   f"{name} step {step}: rewards (critic/score/mean), IVR-R1 screening and group metrics")
        calls, ok = _total(run, "ivr_r1/teacher/calls"), _total(run, "ivr_r1/teacher/usable")
        rectified = _total(run, "ivr_r1/status/rectified")
        expect(ok > 0 and rectified > 0,
               f"{name}: the teacher wrote continuations and rectified rollouts ({ok:g} of {calls:g} calls usable, "
               f"{rectified:g} rollouts rectified)")
    demos, in_groups = _total(join, "ivr_r1/join/demonstrations"), _total(join, "ivr_r1/groups/demonstrations")
    tokens = _total(join, "ivr_r1/join/loss_tokens")
    expect(demos > 0 and demos == in_groups and tokens > 0,
           f"join: demonstrations entered their GRPO groups as extra members with their own reward and a non-zero "
           f"advantage ({demos:g} demonstrations, {tokens:g} response tokens with a non-zero advantage)")
    total_demos = total_tokens = 0.0
    for step, m in sorted(aux_nll.steps.items()):
        demos, tokens = _metric(m, "ivr_r1/aux_nll/demonstrations"), _metric(m, "ivr_r1/aux_nll_tokens")
        expect(demos is not None and (not demos or (tokens or 0) > 0),
               f"aux_nll step {step}: {demos} demonstrations, {tokens} NLL tokens in the actor loss")
        total_demos += demos or 0
        total_tokens += tokens or 0
    expect(total_demos > 0 and total_tokens > 0,
           f"aux_nll: rectified demonstrations reached the actor's loss ({total_demos:g} demonstrations, "
           f"{total_tokens:g} NLL tokens)")


def folder_fingerprint(folder: Path) -> float | None:
    """The weight fingerprint of a Hugging Face model folder as the rollout server computes it when it
    loads one (float32 state dict); None when the folder cannot be loaded."""
    try:
        import torch
        from transformers import AutoModelForImageTextToText

        from recipe.cpu_backend.rollout import weight_fingerprint

        model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32)
    except Exception:  # noqa: BLE001 - missing or broken folder: the check says so
        return None
    return weight_fingerprint(model.state_dict().values())


def checkpoint_fingerprint(actor_dir: Path, like: Path, dtype: str | None = None) -> float | None:
    """The weight fingerprint of verl's FSDP actor checkpoint (`global_step_N/actor`, one rank's
    `model_world_size_1_rank_0.pt`) as `folder_fingerprint` computes it for a model folder: the saved
    float32 tensors loaded into the Hugging Face model of folder `like`. `dtype="bfloat16"` rounds every
    value to bfloat16 first, as verl's model merger does when it exports (`fsdp_model_merger.py`
    `.bfloat16()`). None when the checkpoint is missing or does not fit the model."""
    try:
        import torch
        from transformers import AutoModelForImageTextToText

        from recipe.cpu_backend.weights import weight_fingerprint

        shard = torch.load(actor_dir / "model_world_size_1_rank_0.pt", map_location="cpu", weights_only=False)
        state = {k: (v.to_local() if hasattr(v, "to_local") else v) for k, v in shard.items()}
        if dtype is not None:
            state = {k: v.to(getattr(torch, dtype)) for k, v in state.items()}
        model = AutoModelForImageTextToText.from_pretrained(str(like), dtype=torch.float32)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except Exception:  # noqa: BLE001 - missing or mismatched checkpoint: the check says so
        return None
    return weight_fingerprint(model.state_dict().values())


def _close(a: float | None, b: float | None) -> bool:
    """Equal fingerprints of the same float32 values, one side read from a log line (6 decimals)."""
    return a is not None and b is not None and abs(a - b) <= 1e-6


def eval_summary(smoke_dir: Path) -> dict:
    """`eval/summary.json` of the pipeline's evaluation ({} when missing)."""
    path = smoke_dir / "eval" / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _eval_results(summary: dict) -> dict[str, dict]:
    """mode -> result of the demo benchmark in an eval summary (recipe.ivgr.eval.report layout)."""
    results = summary.get("results") or {}
    bench = next(iter(results.values()), {}) if isinstance(results, dict) else {}
    return bench if isinstance(bench, dict) else {}


def _half_means(losses: list[float | None]) -> tuple[float, float] | None:
    """(mean of the first half, mean of the second half) of per-step losses; None under 2 finite steps."""
    half = len(losses) // 2
    if half == 0 or any(v is None or not math.isfinite(v) for v in losses):
        return None
    return sum(losses[:half]) / half, sum(losses[-half:]) / half


def sft_loss_fell(losses: list[float | None]) -> bool:
    """Whether SFT learned: the second half of the steps has a lower mean loss than the first. Each step's
    loss is of a different batch, so step-to-step figures go up and down; with a whole number of epochs per
    half (smoke_cpu.sh: 8 steps, 2 epochs of 16 rows) both halves average the same rows."""
    means = _half_means(losses)
    return means is not None and means[1] < means[0]


def _check_pipeline(smoke_dir: Path, run_status: int, sft_steps: int | None, expect) -> None:
    sft = parse_log(smoke_dir / "sft.log")
    run1 = parse_log(smoke_dir / "run1.log")
    expect(run_status == 0 and not sft.errors and not run1.errors,
           f"SFT, RL, export and eval exited 0 without a traceback (status {run_status})")
    losses = {step: m.get("train/loss") for step, m in sorted(sft.steps.items())}
    planned = sft_steps if sft_steps is not None else len(losses)
    expect(sorted(losses) == list(range(1, planned + 1)) and planned > 0
           and all(v is not None and v == v and abs(v) != float("inf") for v in losses.values()),
           f"verl's SFT trainer logged a finite train/loss at steps 1-{planned} (got steps {sorted(losses)})")
    expect(sft_loss_fell(list(losses.values())),
           f"the SFT loss fell: mean train/loss of the second half of the steps below the first half's "
           f"({_half_means(list(losses.values()))}; smoke_cpu.sh runs 2 epochs of the same rows)")
    base, sft_final = folder_fingerprint(smoke_dir / "model"), folder_fingerprint(smoke_dir / "sft" / "hf_final")
    expect(sft_final is not None and base is not None and not _close(base, sft_final),
           f"the SFT optimizer steps changed the weights: hf_final is a loadable Hugging Face folder "
           f"(fingerprint {sft_final}) unlike the base model ({base})")
    expect(sorted(run1.steps) == [1, 2], f"RL logged steps 1-2 (got {sorted(run1.steps)})")
    for step, m in sorted(run1.steps.items()):
        expect(m.get("ivgr/grounded/rollouts", 0) > 0 and m.get("ivgr/textual/rollouts", 0) > 0
               and "ivgr/grounded/score" in m and "ivgr/textual/score" in m and "actor/pg_loss" in m,
               f"RL step {step}: grounded and textual rollouts scored, actor updated")
    loaded = run1.updates[0][1] if run1.updates else None
    expect(_close(loaded, sft_final),
           f"RL started from the SFT checkpoint (rollout server loaded fingerprint {loaded}, hf_final {sft_final})")
    _weights_followed("RL", run1, expect)
    # The export is bfloat16 (verl's model merger casts), the actor float32: the rounding moves the fingerprint
    # by more than an RL step does, so each comparison is made in one dtype. The checkpoint in float32 against
    # the weights the rollout got after the last update, then the export against that checkpoint rounded to
    # bfloat16 the merger's way (equal to float64 summation error; another step's weights, or the SFT
    # model's, differ by orders of magnitude more: tests/test_smoke_pipeline.py).
    actor = _last_actor_checkpoint(smoke_dir)
    saved = checkpoint_fingerprint(actor, smoke_dir / "export") if actor else None
    last = run1.updates[-1][2] if run1.updates else None
    expect(_close(saved, last),
           f"the RL checkpoint ({actor.parent.name if actor else None}) holds the weights of the rollout's last "
           f"update (fingerprint {saved}; rollout {last})")
    exported = folder_fingerprint(smoke_dir / "export")
    rounded = checkpoint_fingerprint(actor, smoke_dir / "export", "bfloat16") if actor else None
    expect(exported is not None and rounded is not None and abs(exported - rounded) <= EXPORT_TOLERANCE,
           f"the export is that checkpoint in bfloat16 (fingerprint {exported}; the checkpoint rounded to "
           f"bfloat16 {rounded}; in float32 {saved})")
    summary = eval_summary(smoke_dir)
    results = _eval_results(summary)
    items = _demo_items(smoke_dir)
    for mode in ("textual", "grounded"):
        result = results.get(mode) or {}
        expect(items > 0 and result.get("items") == items
               and not (result.get("failures") or {}).get("internal_error"),
               f"eval {mode}: all {items} demo items scored, none an internal error (got {result.get('items')} items, "
               f"failures { {k: v for k, v in (result.get('failures') or {}).items() if v} })")
    run = smoke_dir / "eval" / "run.json"
    model = json.loads(run.read_text(encoding="utf-8")).get("model") if run.exists() else None
    expect(model is not None and Path(str(model)).resolve() == (smoke_dir / "export").resolve(),
           f"the evaluation loaded the exported RL checkpoint (run.json model {model})")


def _last_actor_checkpoint(smoke_dir: Path) -> Path | None:
    """`checkpoints/global_step_N/actor` of the step verl's tracker file names (None without one)."""
    tracker = smoke_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    if not tracker.exists():
        return None
    return smoke_dir / "checkpoints" / f"global_step_{tracker.read_text().strip()}" / "actor"


def _demo_items(smoke_dir: Path) -> int:
    """Items of the demo benchmark: the held-out samples the run wrote (`demo_data/val.parquet`)."""
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(smoke_dir / "demo_data" / "val.parquet").metadata.num_rows
    except Exception:  # noqa: BLE001
        return 0


def pipeline_report(smoke_dir: Path, seconds: float) -> str:
    sft = parse_log(smoke_dir / "sft.log")
    lines = [f"CPU smoke run (pipeline: SFT -> RL -> eval) in {seconds:.0f} s"]
    curve = ", ".join(f"{step}: {m['train/loss']:.4f}" for step, m in sorted(sft.steps.items()) if "train/loss" in m)
    lines.append(f"  SFT train/loss per step: {curve or 'none logged'}")
    grad = ", ".join(f"{step}: {m['train/grad_norm']:.3g}" for step, m in sorted(sft.steps.items())
                     if "train/grad_norm" in m)
    if grad:
        lines.append(f"  SFT grad_norm per step: {grad}")
    run1 = parse_log(smoke_dir / "run1.log")
    for step in sorted(run1.steps):
        figures = [f"{key.removeprefix('ivgr/')}={value:.3g}" for key in SHOWN
                   if (value := _metric(run1.steps[step], key)) is not None]
        lines.append(f"  RL step {step}: {', '.join(figures)}")
    for mode, result in _eval_results(eval_summary(smoke_dir)).items():
        if not isinstance(result, dict):
            continue
        shown = {k: result[k] for k in ("items", "correct", "accuracy") if k in result}
        grounding = result.get("grounding") or {}
        shown.update({f"grounding.{k}": v for k, v in grounding.items() if isinstance(v, (int, float))})
        failures = {k: v for k, v in (result.get("failures") or {}).items() if v}
        lines.append(f"  eval demo {mode}: {shown}" + (f", failures {failures}" if failures else ""))
    return "\n".join(lines)


def report(smoke_dir: Path, recipe: str, seconds: float, rollout: str = "hf_cpu") -> str:
    if recipe == "pipeline":
        return pipeline_report(smoke_dir, seconds)
    runs = {"run 1": parse_log(smoke_dir / "run1.log"), "run 2": parse_log(smoke_dir / "run2.log")}
    if recipe == "ivr_r1":
        runs = {"join": runs["run 1"], "aux_nll": runs["run 2"]}
    keys = SHOWN + (IVR_R1_SHOWN if recipe == "ivr_r1" else ())
    lines = [f"CPU smoke run ({recipe}, rollout {rollout}) in {seconds:.0f} s"]
    for name, run in runs.items():
        for step in sorted(run.steps):
            figures = []
            for key in keys:
                value = _metric(run.steps[step], key)
                if value is not None:
                    figures.append(f"{key.removeprefix('ivgr/').removeprefix('training/')}={value:.3g}")
            lines.append(f"  {name} step {step}: {', '.join(figures)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="report and check a CPU smoke run")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--recipe", default="ivgr", choices=["ivgr", "ivr_r1", "pipeline"])
    parser.add_argument("--rollout", default="hf_cpu", choices=["hf_cpu", "vllm"],
                        help="the run's actor_rollout_ref.rollout.name (what the checks read differs)")
    parser.add_argument("--sft-steps", type=int, default=None, help="pipeline: SFT steps the run asked for")
    parser.add_argument("--run-status", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="data.train_batch_size of the run in rows (default: read from the run's log)")
    parser.add_argument("--seed", type=int, default=None, help="data.seed of the run (default: from the log)")
    args = parser.parse_args(argv)
    print(report(args.dir, args.recipe, args.seconds, args.rollout))
    passed, failed = check(args.dir, args.recipe, args.batch_size, args.seed, args.run_status, args.rollout,
                           args.sft_steps)
    for text in passed:
        print(f"  ok    {text}")
    for text in failed:
        print(f"  FAIL  {text}")
    print(f"smoke checks: {len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
