"""Reading the RL run for the distillation: the rollout archive of a checkpoint, the rollout dumps, the
samples whose textual stream stays weak (`select_candidates`) and their references, each re-scored by the
RL reward before it is used (`check_references`)."""

from __future__ import annotations

import glob
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reward_score.families import DEFAULT_FAMILY

REFERENCE_MIN_IOU = 0.3  # the archive's qualification rule (recipe.ivgr.stage.ConsistencySettings)


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
