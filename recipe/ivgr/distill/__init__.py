"""SFT data from an RL run: the "GRPO -> SFT -> GRPO" variant of the official code (Visual-AI/iVGR,
scripts/generate_sft_samples.py; the paper does not describe it).

    python -m recipe.ivgr.distill --run CKPT_DIR --data train.parquet --out data/sft/distill.parquet \
        [--step N] [--dumps DIR] [--threshold 0.4] [--k 5] [--judge-base-url URL] [--judge-model NAME] \
        [--concurrency 16] [--image-root R] [--min-keep-ratio 0.5] [--fresh]

Inputs, all written by the RL run (`recipe.ivgr.trainer`):
- the rollout archive, `CKPT_DIR/global_step_N/ivgr_stages.json` (N: `--step`, else the latest
  checkpoint): per sample, the best grounded `<think>` seen (acc 1, IoU >= 0.3, boxes in the model frame);
- the rollout dumps, `CKPT_DIR/rollout_dumps/step_M.jsonl` for M <= N (`ivgr.dump.every_k_steps`;
  `recipe.ivgr.dump`): every rollout's stream, response and reward components;
- the RL record Parquet the run trained on (`--data`): question, options, images.

The SFT images keep the pixel bounds the RL run showed them with (the dumps' `extra_info`), unless
`--min-pixels` / `--max-pixels` say otherwise.

Selection. A sample qualifies when, in every dumped step that rolled it out, the mean accuracy of its
textual-stream rollouts is at most `--threshold` (default 0.4: the textual stream "stays" weak there).
Its reference is the archive entry (else the best dumped grounded rollout with format 1, accuracy 1,
box_valid 1 and IoU >= 0.3); the reference answer is that rollout's `<answer>` when the dump has it,
else the record's answer. As the official SFT data tool, a reference also needs format 1 and box
validity 1: the archive stores correct, overlapping rollouts without checking either, so every
reference is re-scored by the RL reward (`reference_problem`; the next one is tried when it fails,
`reference_invalid` when none passes).

Rewrites. The judge (`reward_score.judge.JudgeClient`, OpenAI-compatible) gets `rewrite_messages` (our
prompt) once per sample with `n = --k` choices at `--temperature`: rewrite the reasoning without boxes
or coordinates, keeping every visual fact and step, same final answer. Each choice is checked:
`<think>…</think><answer>…</answer>` with `reward_score.format_reward(textual) == 1` (no `<box>`), no
bracketed coordinate list left (`coordinates_left`), the answer unchanged (`reward_score.match_answer`
against the reference answer, `answer_changed`), not a repeat of an earlier choice (`duplicate_rewrite`).
Passing choices become textual-stream SFT rows (`data_prep.sft`, the RL textual prompt built from the
record's textual question `question_textual` when it has one, images embedded), `sample_id`
`distill:<sample_id>#r<j>`. Path-mode images resolve by the one rule (`data_prep.schema.resolve_image_root`):
`--image-root`, else the root stored in `--data`, else its folder.

Output: `OUT.parquet` + `OUT.rejects.jsonl` + `OUT.summary.json` (atomic, as every data_prep writer), and
`OUT.journal.jsonl`: one line per sample the judge answered (its raw choices). A re-run reads the journal
and asks the judge only for the samples it lacks (resumable; `--fresh` starts over); judge failures
(`judge_timeout`, `judge_connection_error`, ...) are counted in the summary, rejected with that reason
and retried by the next run. Judge concurrency is bounded by `--concurrency` (in-flight requests).

Exit status 0 when the output was published and no sample waits for the judge; 1 when judge requests
failed (the rows that exist are published; re-run to resume) or when too little was kept: fewer than
`--min-keep-ratio` (0.5) of the selected samples with a reference got a row (k rewrites per sample, so
rejected duplicates of a kept rewrite do not count against it). Then nothing is published, the previous
output stays, and the counts go to `OUT.failed.summary.json` / `OUT.failed.rejects.jsonl`.

Modules: `references` (reading the run, selection, references), `rewrite` (the request and the checks of
a rewrite), `judge` (requests and journal), `rows` (records and SFT rows); this one holds the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from recipe.ivgr.distill.judge import ask_judge, read_journal
from recipe.ivgr.distill.references import check_references, iter_dumps, latest_step, load_archive, select_candidates
from recipe.ivgr.distill.rows import DistillWriter, build_rows, load_records
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES

DEFAULT_THRESHOLD = 0.4
DEFAULT_K = 5


def main(argv: Sequence[str] | None = None) -> int:
    from data_prep.schema import resolve_image_root
    from data_prep.sft import pixel_bounds
    from reward_score.judge.client import JudgeClient, JudgeConfig

    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.distill", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="the RL run's CKPT_DIR (trainer.default_local_dir)")
    parser.add_argument("--data", required=True, type=Path, help="the RL record Parquet the run trained on")
    parser.add_argument("--out", required=True, type=Path, help="output SFT .parquet")
    parser.add_argument("--step", type=int, default=None, help="archive of global_step_N (default: the latest)")
    parser.add_argument("--dumps", type=Path, default=None, help="rollout dump folder (default: RUN/rollout_dumps)")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="root of path images (default: the root stored in --data, else its folder)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="max textual accuracy (0.4)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="rewrites per sample (5)")
    parser.add_argument("--judge-base-url", default=os.environ.get("JUDGE_BASE_URL"))
    parser.add_argument("--judge-model", default=os.environ.get("JUDGE_MODEL", "judge"))
    parser.add_argument("--concurrency", type=int, default=16, help="judge requests in flight")
    parser.add_argument("--temperature", type=float, default=0.7, help="judge sampling temperature (> 0: k differ)")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per judge request")
    parser.add_argument("--box-frame", choices=FAMILY_NAMES, default=None,
                        help="frame of the SFT images' bounds (default: the RL run's, from its dumps)")
    parser.add_argument("--min-pixels", type=int, default=None, help="image bounds (default: the run's)")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--min-keep-ratio", type=float, default=0.5,
                        help="publish only when at least this share of the selected samples with a reference got "
                             "an SFT row (else the previous output stays and the exit status is 1)")
    parser.add_argument("--fresh", action="store_true", help="ignore the journal of a previous run")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.k < 1 or args.concurrency < 1:
        parser.error("--k and --concurrency must be >= 1")
    if not args.judge_base_url:
        parser.error("no judge: pass --judge-base-url (or export JUDGE_BASE_URL; scripts/serve_judge.sh prints it)")

    step = args.step if args.step is not None else latest_step(args.run)
    archive = load_archive(args.run, step)
    notes: Counter = Counter()
    rows = iter_dumps(args.dumps or args.run / "rollout_dumps", step, notes)
    candidates = select_candidates(archive, rows, args.threshold, notes)
    records = load_records(args.data, {c.sample_id for c in candidates}, resolve_image_root(args.data, args.image_root))
    run_frames = Counter(c.frame for c in candidates if c.frame).most_common(1)
    frame = args.box_frame or (run_frames[0][0] if run_frames else DEFAULT_FAMILY)  # default: the RL run's
    check_references(candidates, records, notes, frame)

    journal = args.out.with_name(args.out.name.removesuffix(".parquet") + ".journal.jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        journal.unlink(missing_ok=True)
    done = read_journal(journal)
    todo = [c for c in candidates if c.source not in ("none", "invalid") and c.sample_id in records
            and not records[c.sample_id].get("image_error") and c.sample_id not in done]
    notes["resumed"] = len([c for c in candidates if c.sample_id in done])
    client = JudgeClient(JudgeConfig(base_url=args.judge_base_url, model=args.judge_model,
                                     max_concurrency=args.concurrency, timeout_s=args.timeout,
                                     temperature=args.temperature, top_p=0.95, max_tokens=args.max_tokens))
    failures = asyncio.run(ask_judge(todo, records, client, args.k, args.concurrency, journal, args.quiet, frame))
    done = read_journal(journal)

    run_bounds = Counter(c.bounds for c in candidates if c.bounds).most_common(1)
    lo, hi = run_bounds[0][0] if run_bounds else (None, None)  # default: the bounds the RL run used
    with_reference = sum(c.source not in ("none", "invalid") for c in candidates)
    writer = DistillWriter(args.out, box_frame=frame, min_keep_ratio=args.min_keep_ratio, samples=with_reference,
                           bounds=pixel_bounds(frame, args.min_pixels or lo, args.max_pixels or hi))
    with writer:
        build_rows(candidates, records, done, writer, args.k)
        writer.notes.update(notes)
        writer.notes.update({f"judge_{outcome}": count for outcome, count in failures.items()})
        writer.notes["judge_requests"] = len(todo)
    summary = writer.summary()
    print(f"[distill] {args.out}: {notes['selected']} samples selected (textual acc <= {args.threshold}), "
          f"{len(todo)} judged now, {notes['resumed']} from the journal, {summary['written']} SFT rows, "
          f"{summary['rejected']} rejected {summary['reasons']}", file=sys.stderr)
    if not writer.committed:
        print(f"[distill] error: {writer.samples_kept} of {with_reference} samples with a reference got an SFT row, "
              f"less than --min-keep-ratio {args.min_keep_ratio}: {args.out} NOT replaced (previous output kept); "
              f"see {args.out.with_name(args.out.stem + '.failed.rejects.jsonl')}", file=sys.stderr)
        return 1
    return 1 if failures else 0

