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
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.sft import SftWriter
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES

DEFAULT_THRESHOLD = 0.4
DEFAULT_K = 5
REFERENCE_MIN_IOU = 0.3  # the archive's qualification rule (recipe.ivgr.stage.ConsistencySettings)
# a bracketed list of four numbers: a box the rewrite forgot to turn into words
_COORDINATES = re.compile(r"\[\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}\s*\]")
_FENCE = re.compile(r"^```[a-zA-Z]*\n(.*)\n```$", re.DOTALL)

_SYSTEM = ("You edit reasoning traces that will be used as training data. You change how things are said, "
           "never what is said.")
_USER = """A model answered a question about an image. Its reasoning trace below is correct, and it marks the \
image regions it talks about with <box>[x1,y1,x2,y2]</box> tags ({frame}).

Rewrite the trace so that it has no boxes and no coordinates at all:
- keep every statement about what is visible (objects, colours, counts, text, positions, sizes) and every \
reasoning step, in the same order;
- where a box located something, say where it is in words (for example "near the top left", "in the middle \
of the image"), judging from the coordinates;
- add nothing that the trace does not say, and do not change the conclusion;
- use your own wording.

Question: {question}

Reasoning trace:
{think}

Final answer: {answer}

Reply with exactly <think>the rewritten reasoning</think><answer>{answer}</answer> and nothing else."""



def rewrite_messages(question: str, think: str, answer: str, frame: str = DEFAULT_FAMILY,
                     model_size: Sequence[int] | None = None) -> list[dict]:
    """The judge request for one sample: system + user message (our wording; see module doc)."""
    from reward_score.families import get_family

    w, h = (model_size or (0, 0))[:2]
    words = get_family(frame).coordinate_words.format(w=w, h=h)
    user = _USER.format(frame=words, question=question.strip(), think=think.strip(), answer=answer.strip())
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def parse_rewrite(text: str) -> str | None:
    """A judge choice as a candidate response: stripped, one surrounding code fence removed; None when empty."""
    text = (text or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    return text or None


def check_rewrite(text: str, reference_answer: str, choices: Sequence[str] | None) -> tuple[str | None, str]:
    """(reason, detail) of a rejected rewrite, or (None, "") when it is a valid textual SFT target."""
    from data_prep.schema import RecordError
    from data_prep.sft import check_response
    from reward_score.answers import match_answer
    from reward_score.text import normalize_text

    try:
        answer = check_response(text, "textual")
    except RecordError as err:
        return err.reason, err.detail
    if _COORDINATES.search(text):
        return "coordinates_left", _COORDINATES.search(text).group(0)
    verdict = match_answer(answer, reference_answer, choices=choices)
    same = verdict.correct if verdict.decisive else normalize_text(answer) == normalize_text(reference_answer)
    if not same:
        return "answer_changed", f"{answer!r} vs reference {reference_answer!r}"
    return None, ""


# --------------------------------------------------------------------------- reading the run
@dataclass
class Candidate:
    """A selected sample: its reference reasoning and answer, and the textual accuracy that selected it."""

    sample_id: str
    think: str
    answer: str | None  # the reference rollout's <answer>, None when no dump has it
    textual_acc: float  # the highest per-step mean textual accuracy (<= threshold)
    source: str  # "archive", "dump", "none" (no reference) or "invalid" (no reference passes the checks)
    bounds: tuple[int, int] | None = None  # (min_pixels, max_pixels) the RL run showed the image with
    frame: str | None = None  # the RL run's box frame (its model family), from the dumps' extra_info
    # further references to try, in order, when this one fails `check_references`: (think, answer, source)
    alternatives: list[tuple[str, str | None, str]] = field(default_factory=list)
    problem: str = ""  # why no reference passed (source "invalid")


def latest_step(run: Path) -> int:
    tracker = run / "latest_checkpointed_iteration.txt"
    if not tracker.is_file():
        raise SystemExit(f"{tracker} not found: pass --step N (a global_step_N folder of the run)")
    return int(tracker.read_text().strip())


def load_archive(run: Path, step: int):
    """The RolloutArchive saved at `run/global_step_<step>/ivgr_stages.json`."""
    from recipe.ivgr.archive import RolloutArchive
    from recipe.ivgr.stage import ConsistencyStage, saved_state

    path = run / f"global_step_{step}" / "ivgr_stages.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: not an iVGR checkpoint folder (the archive is saved with every "
                         "checkpoint)")
    states = json.loads(path.read_text(encoding="utf-8"))
    state = saved_state(states, ConsistencyStage)
    archive = RolloutArchive()
    if state is None:
        raise SystemExit(f"{path} has no rollout archive (consistency stage state; stages: {sorted(states)})")
    archive.load_state_dict(state["archive"])
    return archive


def iter_dumps(folder: Path, max_step: int, notes: Counter) -> Iterable[dict]:
    """Rollout lines of `folder/step_M.jsonl`, M <= max_step, in step order; bad lines counted."""
    paths = []
    for path in glob.glob(str(folder / "step_*.jsonl")):
        match = re.fullmatch(r"step_(\d+)\.jsonl", os.path.basename(path))
        if match and int(match.group(1)) <= max_step:
            paths.append((int(match.group(1)), path))
    if not paths:
        raise SystemExit(f"no rollout dumps step_<M>.jsonl (M <= {max_step}) in {folder}: the run needs "
                         "ivgr.dump.every_k_steps > 0")
    for step, path in sorted(paths):
        notes["dump_files"] += 1
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict) or "sample_id" not in row or "stream" not in row:
                        raise ValueError("not a rollout line")
                except ValueError:
                    notes["dump_bad_lines"] += 1
                    continue
                row.setdefault("step", step)
                yield row


def _qualified_grounded(row: dict) -> bool:
    reward = row.get("reward") or {}
    return (reward.get("format", 0) >= 1 and reward.get("acc", 0) >= 1 and reward.get("box_valid", 0) >= 1
            and reward.get("iou", 0) >= REFERENCE_MIN_IOU)


def select_candidates(archive, rows: Iterable[dict], threshold: float, notes: Counter) -> list[Candidate]:
    """Samples whose textual accuracy stays <= threshold in every dumped step, with their references."""
    from reward_score.parsing import parse_response

    textual: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    grounded: dict[str, list[dict]] = defaultdict(list)
    bounds: dict[str, tuple[int, int]] = {}
    frames: dict[str, str] = {}
    for row in rows:
        sid = str(row["sample_id"])
        info = row.get("extra_info") or {}
        if sid not in bounds and info.get("min_pixels") and info.get("max_pixels"):
            bounds[sid] = (int(info["min_pixels"]), int(info["max_pixels"]))
        if sid not in frames and info.get("box_frame"):
            frames[sid] = str(info["box_frame"])
        if row["stream"] == "textual":
            textual[sid][int(row.get("step", 0))].append(float((row.get("reward") or {}).get("acc", 0.0)))
        elif row["stream"] == "grounded" and _qualified_grounded(row):
            grounded[sid].append(row)
    out = []
    for sid in sorted(textual):
        worst = max(sum(accs) / len(accs) for accs in textual[sid].values())
        if worst > threshold:
            continue
        notes["selected"] += 1
        reference = archive.get(sid)
        parsed_rows = [(r, parse_response(r.get("response", ""))) for r in grounded.get(sid, [])]
        references: list[tuple[str, str | None, str]] = []
        if reference is not None:
            answer = next((p.answer.strip() for r, p in parsed_rows
                           if p.answer and (p.think or "").strip() == reference.think.strip()), None)
            references.append((reference.think, answer, "archive"))
        ranked = sorted(parsed_rows, key=lambda rp: (rp[0]["reward"].get("iou", 0), -int(rp[0].get("step", 0))),
                        reverse=True)
        for _, parsed in ranked[:1]:  # the best qualifying dumped rollout: the fallback
            if (parsed.think or "").strip():
                references.append((parsed.think, (parsed.answer or "").strip() or None, "dump"))
        if references:
            (think, answer, source), *rest = references
            out.append(Candidate(sid, think, answer, worst, source, bounds.get(sid), frames.get(sid), rest))
        else:
            notes["no_reference"] += 1
            out.append(Candidate(sid, "", None, worst, "none"))
    return out


def reference_problem(think: str, answer: str, record: dict, bounds: tuple[int, int] | None,
                      frame: str = DEFAULT_FAMILY) -> str | None:
    """Why a reference may not be distilled (None when it may): the official SFT data tool keeps only
    references with format 1 and box validity 1 besides accuracy 1 and IoU >= 0.3, and the archive keeps
    correct, overlapping rollouts without checking either (`ivgr.consistency.reference_requires_format` is
    off by default). Scored by the RL reward itself (`reward_score.compute_score`, rules only) on the
    reference `<think>` with its answer, against the record's GT boxes at the run's pixel bounds."""
    from reward_score import compute_score

    response = f"<think>{think.strip()}</think><answer>{answer.strip()}</answer>"
    lo, hi = bounds or (None, None)
    extra = {"stream": "grounded", "gt_boxes": record.get("gt_boxes") or [], "image_size": record.get("image_size"),
             "box_frame": frame, "min_pixels": lo, "max_pixels": hi}
    try:
        result = compute_score("distill", response, answer, extra)
    except (ValueError, TypeError) as err:
        return f"not scorable: {type(err).__name__}: {err}"[:200]
    if result.get("format", 0) < 1:
        return "format 0 (a grounded answer needs <think> with a valid box, then <answer>)"
    if result.get("box_valid", 0) < 1:
        return f"box_valid {result.get('box_valid', 0):.2f} (invalid or duplicate boxes)"
    return None


def check_references(candidates: Sequence[Candidate], records: dict[str, dict], notes: Counter,
                     frame: str = DEFAULT_FAMILY) -> None:
    """Give every candidate the first of its references that passes `reference_problem`; a candidate with
    none gets source `invalid` (rejected `reference_invalid`, never sent to the judge)."""
    for candidate in candidates:
        record = records.get(candidate.sample_id)
        if candidate.source == "none" or record is None or record.get("image_error"):
            continue
        options = [(candidate.think, candidate.answer, candidate.source), *candidate.alternatives]
        problems = []
        for think, answer, source in options:
            problem = reference_problem(think, answer or record["answer"], record, candidate.bounds,
                                        candidate.frame or frame)
            if problem is None:
                candidate.think, candidate.answer, candidate.source = think, answer, source
                break
            notes[f"reference_rejected_{source}"] += 1
            problems.append(f"{source}: {problem}")
        else:
            candidate.source, candidate.think, candidate.problem = "invalid", "", "; ".join(problems)


def load_records(path: Path, wanted: set[str], image_root: Path) -> dict[str, dict]:
    """Record rows (data_prep.schema) of the wanted sample ids, images as embedded bytes."""
    import pyarrow.parquet as pq

    from data_prep.images import ImageError, safe_relative_path

    columns = ["sample_id", "question", "answer", "choices", "images", "image_size", "gt_boxes"]
    names = pq.read_schema(path).names
    columns += [c for c in ("question_textual",) if c in names]  # schema 1 files have none
    records = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=columns):
        for row in batch.to_pylist():
            if row["sample_id"] not in wanted:
                continue
            images = []
            try:
                for item in row["images"] or []:
                    if item.get("bytes"):
                        images.append(item["bytes"])
                    else:
                        _, full = safe_relative_path(item["path"], image_root)
                        images.append(full.read_bytes())
                row["image_bytes"] = images
            except (ImageError, OSError) as err:
                row["image_error"] = f"{type(err).__name__}: {err}"
            records[row["sample_id"]] = row
    return records


# --------------------------------------------------------------------------- judge
def read_journal(path: Path) -> dict[str, list[str]]:
    """sample_id -> raw judge choices, from a previous run's journal (torn last line ignored)."""
    done: dict[str, list[str]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                done[str(entry["sample_id"])] = [str(c) for c in entry["choices"]]
            except (ValueError, KeyError, TypeError):
                continue
    return done


async def ask_judge(candidates: Sequence[Candidate], records: dict[str, dict], client, k: int, concurrency: int,
                    journal: Path, quiet: bool, frame: str = DEFAULT_FAMILY) -> Counter:
    """Ask for k rewrites of every candidate (at most `concurrency` in flight); append answers to `journal`."""
    from reward_score.frames import get_frame, resized_size
    from reward_score.judge.client import SUCCESS_OUTCOMES

    failures: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(candidates), unit="sample", disable=quiet, desc="judge rewrites", mininterval=1.0)
    with open(journal, "a", encoding="utf-8") as handle:

        async def one(candidate: Candidate) -> None:
            record = records[candidate.sample_id]
            size = resized_size(*record["image_size"], frame, *(candidate.bounds or (None, None))) \
                if not get_frame(frame).relative else None
            answer = candidate.answer or record["answer"]
            messages = rewrite_messages(record["question"], candidate.think, answer, frame, size)
            async with gate:
                result = await client.complete(messages, parse_rewrite, n=k)
            if result.outcome in SUCCESS_OUTCOMES and result.value:
                # the client gives one parsed value for n == 1 and a list for n > 1
                choices = result.value if isinstance(result.value, list) else [result.value]
                handle.write(json.dumps({"sample_id": candidate.sample_id, "choices": choices},
                                        ensure_ascii=False) + "\n")
                handle.flush()
            else:
                failures[result.outcome] += 1
                record["judge_failure"] = result.outcome
            bar.update(1)

        try:
            await asyncio.gather(*(one(c) for c in candidates))
        finally:
            bar.close()
            await client.aclose()
    return failures


# --------------------------------------------------------------------------- main
def build_rows(candidates: Sequence[Candidate], records: dict[str, dict], done: dict[str, list[str]], writer,
               k: int) -> None:
    """Check every journaled rewrite and add the valid ones to `writer` (SftWriter); reject the rest."""
    from data_prep.images import ImageError, ImageItem, size_of_bytes
    from data_prep.schema import RecordError
    from data_prep.sft import SftSample

    for candidate in candidates:
        sid = candidate.sample_id
        record = records.get(sid)
        if candidate.source == "none":
            writer.reject(sid, "no_reference", "no archive entry and no qualifying grounded rollout")
            continue
        if candidate.source == "invalid":
            writer.reject(sid, "reference_invalid", candidate.problem)
            continue
        if record is None:
            writer.reject(sid, "sample_not_in_data", "sample_id not in --data")
            continue
        if record.get("image_error"):
            writer.reject(sid, "image_unreadable", record["image_error"])
            continue
        if sid not in done:
            writer.reject(sid, f"judge_{record.get('judge_failure', 'not_asked')}", "retried by the next run")
            continue
        reference_answer = candidate.answer or record["answer"]
        try:
            images = [ImageItem(data, None) for data in record["image_bytes"]]
            sizes = [size_of_bytes(data) for data in record["image_bytes"]]
        except ImageError as err:
            writer.reject(sid, err.reason, err.detail)
            continue
        seen: set[str] = set()
        for j, raw in enumerate(done[sid][:k]):
            row_id = f"{sid}#r{j}"
            text = parse_rewrite(raw) or ""
            if text in seen:
                writer.reject(row_id, "duplicate_rewrite", "")
                continue
            seen.add(text)
            reason, detail = check_rewrite(text, reference_answer, record.get("choices"))
            if reason is not None:
                writer.reject(row_id, reason, detail)
                continue
            # the RL textual stream's question (data_prep.schema: question_textual when the source has one)
            sample = SftSample(sample_id=f"distill:{row_id}", data_source=f"distill/{candidate.source}",
                               question=record.get("question_textual") or record["question"], response=text, images=images, image_sizes=sizes,
                               choices=record.get("choices"), stream="textual", source_box_format="model")
            try:
                writer.add(sample, row_id)
            except RecordError as err:  # pragma: no cover - add() records its own rejects
                writer.reject(row_id, err.reason, err.detail)


class DistillWriter(SftWriter):
    """`SftWriter` whose keep ratio counts samples, not rows: of the `samples` selected samples with a
    reference, the share that got at least one SFT row (with k rewrites, rejected duplicates of a kept
    rewrite are the filter working, not a loss)."""

    def __init__(self, out, *, samples: int, **options):
        super().__init__(out, **options)
        self.samples = samples
        self._kept_samples: set[str] = set()

    def add_row(self, row: dict[str, Any]) -> None:
        self._kept_samples.add(row["sample_id"].split("#r")[0])
        super().add_row(row)

    @property
    def samples_kept(self) -> int:
        return len(self._kept_samples)

    def kept_enough(self) -> bool:
        if self.min_keep_ratio is None:
            return True
        return self.samples_kept > 0 and self.samples_kept >= self.min_keep_ratio * self.samples


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


if __name__ == "__main__":
    sys.exit(main())
