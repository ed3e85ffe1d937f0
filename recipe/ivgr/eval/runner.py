"""The evaluation pipeline: eval Parquet rows -> prompts -> backend -> scores -> per-item JSONL.

Modes (`MODES`):
- `textual`: the textual-stream prompt (`data_prep.prompts.textual_messages`), the paper's default
  inference;
- `grounded`: the grounded-stream prompt (`data_prep.prompts.grounded_messages`); boxes are parsed,
  mapped to original pixels and scored against GT boxes (IoU) where the benchmark has them;
- `tool`, `tool-each`, `tool-union`: tool-assisted inference (the paper's tool-assisted table): the grounded pass,
  then crops of each predicted box and/or their union from the ORIGINAL image (`crops`), then a
  textual pass with the crops as extra images after the full image. `tool` = crops + union (the
  paper's best row), `tool-each` = "+ crops", `tool-union` = "+ union crop". An item without a
  usable crop keeps its textual answer (the textual pass is run for it if `textual` was not asked).

One grounded pass serves `grounded` and every tool variant; identical tool prompts (e.g. one box,
whose crop and union are the same region) are generated once. Items stream through in chunks
(`chunk_size`), so memory holds one chunk's images.

Images are resized ONCE here, to the model's frame (`reward_score.frames.resized_size` with the
run's pixel bounds), and handed to the backend already resized; the backend's processor then does
not resize again (the transformers backend checks it). Boxes are mapped back with the same bounds.

Nothing about one item can stop the run: unreadable images, generation errors, unparsable outputs,
boxes outside the image and empty crops are recorded per item (`failures`) and counted per
benchmark and mode in the summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from data_prep.prompts import CROP_NOTE
from data_prep.schema import resolve_image_root
from recipe.ivgr.eval.backends import Backend, GenerationRequest, GenerationResult
from recipe.ivgr.eval.crops import crop_images, default_min_side, plan_crops
from recipe.ivgr.eval.reference import ReferenceVerdict, reference_score
from recipe.ivgr.eval.scoring import (
    AnswerScore,
    box_metrics,
    in_judge_scope,
    judge_reference,
    score_answer,
)
from reward_score.families import DEFAULT_FAMILY

logger = logging.getLogger(__name__)

MODES = ("textual", "grounded", "tool", "tool-each", "tool-union")
TOOL_MODES = {"tool": ("each", "union"), "tool-each": ("each",), "tool-union": ("union",)}
# Item-level failure reasons (each counted at most once per item and mode).
FAILURES = (
    "missing_image",      # an image could not be read/decoded: no generation, scored wrong
    "generation_error",   # the backend failed for this prompt: scored wrong
    "truncated_output",   # generation hit max_new_tokens
    "no_answer_tag",      # no <answer>…</answer>; the answer was taken from the fallback
    "unparsable_output",  # no answer could be extracted at all: scored wrong
    "undecided",          # rules could not decide and no judge did: scored wrong
    "judge_failure",      # the judge was asked and failed (timeout, bad reply, ...)
    "no_boxes",           # grounded pass without any valid box
    "invalid_box",        # at least one <box> payload that is not a valid box
    "box_outside_image",  # at least one box reaching beyond the image (clipped for crops)
    "empty_crop",         # at least one box with no overlap with the image (no crop)
    "tool_fallback",      # tool mode kept the textual answer (no usable crop)
    "internal_error",     # a bug in this code for this item (logged with a traceback)
)


@dataclass
class EvalConfig:
    """Everything that decides what the model sees and how answers are scored."""

    modes: tuple[str, ...] = ("textual",)
    box_frame: str = DEFAULT_FAMILY
    min_pixels: int | None = None  # None: the frame's default (the paper's training bounds)
    max_pixels: int | None = None
    max_crops: int = 8
    crop_min_side: int | None = None  # None: one resize factor (28 / 32)
    crop_note: bool = True
    strict_answer: bool = False  # True: no fallback when <answer> is missing
    lenient: bool = True
    judge: dict | None = None  # JudgeConfig fields; None / no base_url: judge off
    judge_scope: str = "open"  # open | all | none
    chunk_size: int = 64
    limit: int | None = None
    image_root: str | None = None

    def __post_init__(self) -> None:
        from reward_score.frames import get_frame

        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(self.modes)}")
        get_frame(self.box_frame)
        if self.judge_scope not in ("open", "all", "none"):
            raise ValueError(f"judge_scope must be open|all|none, got {self.judge_scope!r}")
        if self.chunk_size < 1 or self.max_crops < 1:
            raise ValueError("chunk_size and max_crops must be >= 1")

    def fingerprint(self, bounds: tuple[int, int]) -> dict:
        """What must match for --resume to reuse earlier records."""
        from data_prep import prompts

        texts = json.dumps([prompts.SYSTEM_PROMPT, prompts.GROUNDED_INSTRUCTIONS, prompts.TEXTUAL_INSTRUCTION,
                            CROP_NOTE[1], CROP_NOTE[2]], sort_keys=True)
        return {"box_frame": self.box_frame, "pixel_bounds": list(bounds), "max_crops": self.max_crops,
                "crop_min_side": self.crop_min_side, "crop_note": self.crop_note,
                "strict_answer": self.strict_answer, "lenient": self.lenient, "judge_scope": self.judge_scope,
                "judge": bool(self.judge and self.judge.get("base_url")),
                "prompts_sha256": hashlib.sha256(texts.encode()).hexdigest()[:16]}


def resolve_bounds(cfg: EvalConfig, backend: Backend | None) -> tuple[int, int]:
    """Effective (min_pixels, max_pixels): the requested bounds (or the frame's defaults) narrowed to
    what the backend's processor allows, so its own resize cannot change our pre-resized images."""
    from reward_score.frames import get_frame

    spec = get_frame(cfg.box_frame)
    lo = int(cfg.min_pixels if cfg.min_pixels is not None else spec.default_min_pixels)
    hi = int(cfg.max_pixels if cfg.max_pixels is not None else spec.default_max_pixels)
    if backend is not None:
        plo, phi = backend.image_bounds()
        new_lo, new_hi = max(lo, plo) if plo else lo, min(hi, phi) if phi else hi
        if (new_lo, new_hi) != (lo, hi):
            logger.warning("pixel bounds [%d, %d] narrowed to the processor's [%d, %d]", lo, hi, new_lo, new_hi)
        lo, hi = new_lo, new_hi
    if lo > hi:
        raise ValueError(f"empty pixel range: min_pixels {lo} > max_pixels {hi}")
    return lo, hi


# ---------------------------------------------------------------------------------- prepared items
@dataclass
class Prepared:
    """One item ready for prompting: images decoded and resized to the model's frame."""

    row: dict
    images: list[Image.Image] = field(default_factory=list)  # resized, in order
    size: tuple[int, int] | None = None  # ORIGINAL (width, height) of the first image
    model_size: tuple[int, int] | None = None  # resized (width, height) of the first image
    failure: str | None = None  # "missing_image: <detail>"

    @property
    def item_id(self) -> str:
        return str(self.row["item_id"])


def _resize(image: Image.Image, frame: str, bounds: tuple[int, int]) -> Image.Image:
    from reward_score.frames import resized_size

    width, height = resized_size(image.width, image.height, frame, bounds[0], bounds[1])
    return image if (width, height) == image.size else image.resize((width, height))


def open_original(row: dict, index: int, image_root: Path | None) -> Image.Image:
    """Image `index` of an eval row, decoded to RGB at its original size (raises ImageError)."""
    from data_prep.images import ImageError, open_image

    images = row.get("images") or []
    if index >= len(images):
        raise ImageError("image_no_data", f"item has {len(images)} images")
    return open_image(dict(images[index]), image_root)


def prepare(row: dict, cfg: EvalConfig, bounds: tuple[int, int], image_root: Path | None) -> Prepared:
    item = Prepared(row)
    try:
        if not row.get("images"):
            raise ValueError("no image")
        for index in range(len(row["images"])):
            image = open_original(row, index, image_root)
            if index == 0:
                item.size = image.size
            item.images.append(_resize(image, cfg.box_frame, bounds))
        item.model_size = item.images[0].size
    except Exception as err:  # noqa: BLE001  (ImageError, PIL errors, aspect ratio > 200 ...)
        item.images = []
        item.failure = f"missing_image: {type(err).__name__}: {err}"[:300]
    return item


# ---------------------------------------------------------------------------------------- prompts
def _question(row: dict) -> tuple[str, list[str] | None]:
    choices = list(row["choices"]) if row.get("choices") is not None else None
    return str(row["question"]), choices


def _content_lists(messages: list[dict]) -> list[dict]:
    """String messages with <image> placeholders -> content lists with bare {"type": "image"} items."""
    from data_prep.prompts import IMAGE_PLACEHOLDER

    out = []
    for message in messages:
        content: list[dict] = []
        # k placeholders split the text into k+1 parts: an image item goes between consecutive parts
        for index, part in enumerate(str(message["content"]).split(IMAGE_PLACEHOLDER)):
            if index:
                content.append({"type": "image"})
            if part:
                content.append({"type": "text", "text": part})
        out.append({"role": message["role"], "content": content})
    return out


def prompt_messages(row: dict, stream: str, num_images: int, box_frame: str, num_crops: int = 0,
                    crop_note: bool = True) -> list[dict]:
    """Chat messages (string contents with <image> placeholders) of `data_prep.prompts.stream_messages`,
    the layout training uses; `num_crops` crops follow the images in tool mode."""
    from data_prep import prompts

    question, choices = _question(row)
    return prompts.stream_messages(stream, question, choices, num_images, box_frame, num_crops, crop_note)


def make_request(row: dict, messages: list[dict], images: list[Image.Image], pass_name: str) -> GenerationRequest:
    content = _content_lists(messages)
    n = sum(1 for m in content for c in m["content"] if c.get("type") == "image")
    if n != len(images):
        raise ValueError(f"{n} image placeholders for {len(images)} images")
    return GenerationRequest(messages=content, images=list(images), item_id=str(row["item_id"]), pass_name=pass_name)


# ------------------------------------------------------------------------------------------ records
def _result_dict(result: GenerationResult) -> dict:
    return {"response": result.text, "finish_reason": result.finish_reason, "num_tokens": result.num_tokens,
            "error": result.error}


def _from_cached(entry: dict) -> GenerationResult:
    return GenerationResult(text=entry.get("response") or "", finish_reason=entry.get("finish_reason"),
                            num_tokens=int(entry.get("num_tokens") or 0), error=entry.get("error"))


def _base_record(item: Prepared, mode: str) -> dict:
    row = item.row
    return {
        "item_id": item.item_id, "benchmark": row.get("benchmark"), "subset": row.get("subset"),
        "category": row.get("category"), "mode": mode, "answer_type": row.get("answer_type"),
        "ground_truth": row.get("answer"), "answers": row.get("answers"), "answer_text": row.get("answer_text"),
        "choices": list(row["choices"]) if row.get("choices") is not None else None,
        "image_size": list(item.size) if item.size else None,
        "model_image_size": list(item.model_size) if item.model_size else None,
        "gt_boxes": [list(b) for b in row.get("gt_boxes") or []],
        "prompt": None, "num_images": 0, "response": None, "finish_reason": None, "num_tokens": 0,
        "answer": None, "answer_source": "none", "correct": False, "rule": None, "decided_by": None,
        "reference_correct": None, "reference_extracted": None,
        "failures": [], "error": None,
    }


def _add(record: dict, reason: str) -> None:
    if reason not in record["failures"]:
        record["failures"].append(reason)


def _apply_generation(record: dict, messages: list[dict] | None, num_images: int, result: GenerationResult) -> None:
    record.update(prompt=messages, num_images=num_images, response=result.text, finish_reason=result.finish_reason,
                  num_tokens=result.num_tokens)
    if result.error:
        record["error"] = result.error
        _add(record, "generation_error")
    if result.finish_reason == "length":
        _add(record, "truncated_output")


def _apply_reference(record: dict, verdict: ReferenceVerdict | None) -> None:
    """The `reference` protocol's verdict beside the `graded` one (`correct`); None = the benchmark
    has no reference rule (`reference.REFERENCE_RULES`)."""
    if verdict is None:
        record.update(reference_correct=None, reference_extracted=None)
    else:
        record.update(reference_correct=bool(verdict.correct), reference_extracted=verdict.extracted)


def _apply_score(record: dict, score: AnswerScore) -> None:
    record.update(answer=score.answer, answer_source=score.answer_source, correct=bool(score.correct),
                  rule=score.rule, decided_by=score.decided_by)
    if score.answer_source == "fallback":
        _add(record, "no_answer_tag")
    if score.answer is None and record["error"] is None:
        _add(record, "unparsable_output")
    if score.undecided:
        _add(record, "undecided")


@dataclass
class GroundedBoxes:
    """Boxes of one grounded response: model frame, original pixels, parse problems."""

    model: list = field(default_factory=list)
    original: list = field(default_factory=list)
    invalid: int = 0
    outside: int = 0  # boxes reaching beyond the image by more than 1 original pixel


def grounded_boxes(response: str, item: Prepared, cfg: EvalConfig, bounds: tuple[int, int]) -> GroundedBoxes:
    from reward_score.frames import to_original_pixels
    from reward_score.parsing import parse_boxes

    parsed = parse_boxes(response or "")
    out = GroundedBoxes(model=[list(b) for b in parsed.valid], invalid=sum(parsed.invalid.values()))
    if parsed.valid and item.size is not None:
        original = to_original_pixels(parsed.valid, item.size, cfg.box_frame, bounds[0], bounds[1])
        out.original = [[round(v, 2) for v in b] for b in original]
        width, height = item.size
        out.outside = sum(1 for b in original if b[0] < -1 or b[1] < -1 or b[2] > width + 1 or b[3] > height + 1)
    return out


def _apply_boxes(record: dict, boxes: GroundedBoxes, item: Prepared) -> None:
    record.update(boxes=boxes.original, boxes_model=boxes.model, invalid_boxes=boxes.invalid,
                  boxes_outside=boxes.outside)
    if not boxes.model:
        _add(record, "no_boxes")
    if boxes.invalid:
        _add(record, "invalid_box")
    if boxes.outside:
        _add(record, "box_outside_image")
    gt = [tuple(b) for b in item.row.get("gt_boxes") or []]
    if gt:
        record.update(box_metrics([tuple(b) for b in boxes.original], gt))


# ------------------------------------------------------------------------------------------- runner
class BenchmarkRun:
    """Evaluates one eval file in the requested modes, appending records to `<out>/<label>/<mode>.jsonl`."""

    def __init__(self, label: str, path: str | os.PathLike, cfg: EvalConfig, backend: Callable[[], Backend],
                 bounds: tuple[int, int], out_dir: str | os.PathLike, *, resume: bool = False,
                 judge_client: Any = None, progress: bool = True):
        self.label = label
        self.path = Path(path)
        self.cfg = cfg
        self._backend_factory = backend
        self.bounds = bounds
        self.dir = Path(out_dir) / label
        self.resume = resume
        self.judge_client = judge_client
        self.progress = progress
        self.image_root = resolve_image_root(self.path, cfg.image_root)
        self.cache: dict[tuple[str, str], dict] = {}
        self.done: dict[str, set[str]] = {mode: set() for mode in cfg.modes}
        self.min_side = cfg.crop_min_side or default_min_side(cfg.box_frame)

    # -- resume ------------------------------------------------------------------------------
    def mode_path(self, mode: str) -> Path:
        return self.dir / f"{mode}.jsonl"

    def _load_existing(self) -> None:
        """With resume: items already recorded are skipped, and the responses of EVERY mode's records
        in this folder (same settings: run_eval checks run.json) fill the response cache, so a later
        `tool` run reuses the grounded and textual passes of an earlier one."""
        for mode in self.cfg.modes:
            if self.mode_path(mode).exists() and not self.resume:
                raise FileExistsError(f"{self.mode_path(mode)} exists: pass --resume to continue that run or "
                                      "--overwrite to replace it")
        if not self.resume:
            return
        for mode in MODES:
            path = self.mode_path(mode)
            if not path.exists():
                continue
            for record in read_records(path):
                if mode in self.done:
                    self.done[mode].add(record["item_id"])
                self._harvest(record)

    def _harvest(self, record: dict) -> None:
        """Put the responses an earlier record holds into the response cache (resume)."""
        item_id, mode = record["item_id"], record["mode"]
        if record.get("response") is None and record.get("error") is None:
            return
        entry = {k: record.get(k) for k in ("response", "finish_reason", "num_tokens", "error")}
        if mode in ("textual", "grounded"):
            self.cache[(item_id, mode)] = entry
        elif mode in TOOL_MODES:
            if record.get("grounded_response") is not None:
                self.cache[(item_id, "grounded")] = {"response": record["grounded_response"],
                                                    "finish_reason": record.get("grounded_finish_reason"),
                                                    "num_tokens": record.get("grounded_num_tokens") or 0,
                                                    "error": record.get("grounded_error")}
            if record.get("tool_fallback"):
                self.cache[(item_id, "textual")] = entry
            elif record.get("crops"):
                self.cache[(item_id, _tool_key(record["crops"]))] = entry

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        from recipe.ivgr.eval.benchmarks import eval_file_rows, iter_eval_rows

        self.dir.mkdir(parents=True, exist_ok=True)
        self._load_existing()
        total = eval_file_rows(self.path)
        if self.cfg.limit is not None:
            total = min(total, self.cfg.limit)
        written = dict.fromkeys(self.cfg.modes, 0)
        handles = {mode: _append(self.mode_path(mode)) for mode in self.cfg.modes}
        bar = _progress(total, f"{self.label}", self.progress)
        try:
            for chunk in _chunks(iter_eval_rows(self.path, batch_size=min(64, self.cfg.chunk_size),
                                                limit=self.cfg.limit), self.cfg.chunk_size):
                records = self._chunk(chunk)
                for mode, mode_records in records.items():
                    for record in mode_records:
                        handles[mode].write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
                    handles[mode].flush()
                    written[mode] += len(mode_records)
                bar.update(len(chunk))
        finally:
            bar.close()
            for handle in handles.values():
                handle.close()
        return written

    def _chunk(self, rows: list[dict]) -> dict[str, list[dict]]:
        todo = {mode: [r for r in rows if str(r["item_id"]) not in self.done[mode]] for mode in self.cfg.modes}
        needed = {str(r["item_id"]) for mode_rows in todo.values() for r in mode_rows}
        if not needed:
            return {}
        items = {str(r["item_id"]): prepare(r, self.cfg, self.bounds, self.image_root)
                 for r in rows if str(r["item_id"]) in needed}
        out: dict[str, list[dict]] = {mode: [] for mode in self.cfg.modes}
        tool_modes = [m for m in self.cfg.modes if m in TOOL_MODES]
        order = list(items)  # the file's order: requests go out in the same order on every run
        # 1) grounded pass (grounded mode and every tool variant)
        grounded_ids = {str(r["item_id"]) for m in ["grounded", *tool_modes] if m in todo for r in todo[m]}
        self._run_pass("grounded", [items[i] for i in order if i in grounded_ids])
        # 2) tool plans from the grounded responses; textual pass for textual mode + tool fallbacks
        plans: dict[tuple[str, str], Any] = {}
        fallback_ids: set[str] = set()
        for mode in tool_modes:
            for row in todo[mode]:
                item = items[str(row["item_id"])]
                try:
                    plan = self._plan(item, mode)
                except Exception:  # noqa: BLE001  (the record then reports internal_error)
                    logger.error("crop planning failed on %s (%s):\n%s", item.item_id, mode, traceback.format_exc())
                    plan = None
                plans[(item.item_id, mode)] = plan
                if plan is not None and not plan.regions:
                    fallback_ids.add(item.item_id)
        textual_ids = {str(r["item_id"]) for r in todo.get("textual", [])} | fallback_ids
        self._run_pass("textual", [items[i] for i in order if i in textual_ids])
        # 3) tool pass: one request per distinct crop set
        self._run_tool_pass(items, plans)
        # 4) records
        for mode in self.cfg.modes:
            for row in todo[mode]:
                item = items[str(row["item_id"])]
                try:
                    record = self._record(item, mode, plans.get((item.item_id, mode)))
                except Exception as err:  # noqa: BLE001  (never let one item stop the run)
                    logger.error("internal error on %s (%s):\n%s", item.item_id, mode, traceback.format_exc())
                    record = _base_record(item, mode)
                    record["error"] = f"{type(err).__name__}: {err}"[:500]
                    _add(record, "internal_error")
                out[mode].append(record)
        self._judge([r for records in out.values() for r in records], items)
        for mode, records in out.items():
            self.done[mode].update(r["item_id"] for r in records)
        return out

    # -- passes ------------------------------------------------------------------------------
    def _backend(self) -> Backend:
        return self._backend_factory()

    def _run_pass(self, stream: str, items: Sequence[Prepared]) -> None:
        keys, requests = [], []
        for item in items:
            key = (item.item_id, stream)
            if key in self.cache or item.failure:
                continue
            try:
                messages = prompt_messages(item.row, stream, len(item.images), self.cfg.box_frame)
                requests.append(make_request(item.row, messages, item.images, stream))
                keys.append(key)
            except Exception as err:  # noqa: BLE001
                self.cache[key] = {"response": "", "error": f"prompt: {err}"[:300]}
        if requests:
            for key, result in zip(keys, self._backend().generate(requests)):
                self.cache[key] = _result_dict(result)

    def _plan(self, item: Prepared, mode: str):
        if item.failure:
            return None
        grounded = self.cache.get((item.item_id, "grounded"))
        if grounded is None or grounded.get("error"):
            return None
        boxes = grounded_boxes(grounded.get("response") or "", item, self.cfg, self.bounds)
        return plan_crops([tuple(b) for b in boxes.model], item.size, self.cfg.box_frame, *self.bounds,
                          include=TOOL_MODES[mode], max_crops=self.cfg.max_crops, min_side=self.min_side)

    def _run_tool_pass(self, items: dict[str, Prepared], plans: dict) -> None:
        """One request per distinct crop set. Items are handled one at a time: the ORIGINAL image
        (100 MB decoded for an 8K picture) is opened, cropped for every tool variant, and released."""
        from reward_score.frames import resized_size

        by_item: dict[str, list] = {}
        for (item_id, _mode), plan in plans.items():
            if plan is not None and plan.regions:
                by_item.setdefault(item_id, []).append(plan)
        keys, requests = [], []
        for item_id, item_plans in by_item.items():
            item = items[item_id]
            todo = {}
            for plan in item_plans:
                key = (item_id, _tool_key(plan.regions))
                if key not in self.cache:
                    todo.setdefault(key, plan)
            if not todo:
                continue
            try:
                original = open_original(item.row, 0, self.image_root)
            except Exception as err:  # noqa: BLE001  (readable a moment ago; record, never crash)
                for key in todo:
                    self.cache[key] = {"response": "", "error": f"crops: {type(err).__name__}: {err}"[:300]}
                continue
            for key, plan in todo.items():
                try:
                    crops = crop_images(original, plan, self.min_side)
                    crops = [c.resize(resized_size(c.width, c.height, self.cfg.box_frame, *self.bounds))
                             for c in crops]
                    messages = prompt_messages(item.row, "textual", len(item.images), self.cfg.box_frame,
                                               num_crops=len(crops), crop_note=self.cfg.crop_note)
                    requests.append(make_request(item.row, messages, item.images + crops, "tool"))
                    keys.append(key)
                except Exception as err:  # noqa: BLE001
                    self.cache[key] = {"response": "", "error": f"crops: {type(err).__name__}: {err}"[:300]}
            del original
        if requests:
            for key, result in zip(keys, self._backend().generate(requests)):
                self.cache[key] = _result_dict(result)

    # -- records -----------------------------------------------------------------------------
    def _score(self, record: dict, item: Prepared) -> None:
        score = score_answer(item.row, record["response"], strict=self.cfg.strict_answer, lenient=self.cfg.lenient)
        _apply_score(record, score)
        _apply_reference(record, reference_score(item.row, score.answer, score.answer_source == "tag"))

    def _record(self, item: Prepared, mode: str, plan) -> dict:
        record = _base_record(item, mode)
        if item.failure:
            record["error"] = item.failure
            _add(record, "missing_image")
            record["decided_by"] = "empty"
            return record
        n = len(item.images)
        if mode == "textual":
            entry = self.cache[(item.item_id, "textual")]
            _apply_generation(record, prompt_messages(item.row, "textual", n, self.cfg.box_frame), n,
                              _from_cached(entry))
            self._score(record, item)
            return record
        grounded = self.cache[(item.item_id, "grounded")]
        boxes = grounded_boxes(grounded.get("response") or "", item, self.cfg, self.bounds)
        if mode == "grounded":
            _apply_generation(record, prompt_messages(item.row, "grounded", n, self.cfg.box_frame), n,
                              _from_cached(grounded))
            self._score(record, item)
            if not grounded.get("error"):
                _apply_boxes(record, boxes, item)
            return record
        # tool modes
        record.update(grounded_response=grounded.get("response"), grounded_finish_reason=grounded.get("finish_reason"),
                      grounded_num_tokens=grounded.get("num_tokens"), grounded_error=grounded.get("error"),
                      tool_crops=list(TOOL_MODES[mode]))
        if grounded.get("error"):
            record["error"] = grounded["error"]
            _add(record, "generation_error")
            record["decided_by"] = "empty"
            return record
        _apply_boxes(record, boxes, item)
        if plan is None:
            raise RuntimeError("crop planning failed (see the log)")
        record.update(plan.to_record())
        if plan.empty:
            _add(record, "empty_crop")
        if not plan.regions:
            record["tool_fallback"] = "no_boxes" if not boxes.model else "no_usable_crop"
            _add(record, "tool_fallback")
            entry = self.cache[(item.item_id, "textual")]
            _apply_generation(record, prompt_messages(item.row, "textual", n, self.cfg.box_frame), n,
                              _from_cached(entry))
        else:
            record["tool_fallback"] = None
            entry = self.cache[(item.item_id, _tool_key(plan.regions))]
            k = len(plan.regions)
            _apply_generation(record, prompt_messages(item.row, "textual", n, self.cfg.box_frame, num_crops=k,
                                                      crop_note=self.cfg.crop_note), n + k, _from_cached(entry))
        self._score(record, item)
        return record

    # -- judge -------------------------------------------------------------------------------
    def _judge(self, records: list[dict], items: dict[str, Prepared]) -> None:
        if self.judge_client is None:
            return
        pending = [r for r in records if r.get("decided_by") == "undecided"
                   and in_judge_scope(items[r["item_id"]].row, self.cfg.judge_scope)]
        if not pending:
            return
        from reward_score.judge import judge_answer

        async def ask_all():
            try:
                return await asyncio.gather(*(
                    judge_answer(self.judge_client, str(items[r["item_id"]].row.get("question") or ""),
                                 judge_reference(items[r["item_id"]].row), r["answer"] or "") for r in pending))
            finally:
                await self.judge_client.aclose()  # the session belongs to this event loop; the cache stays

        try:
            outcomes = asyncio.run(ask_all())
        except Exception as err:  # noqa: BLE001  (e.g. called inside a running event loop)
            logger.error("judge calls failed: %s", err)
            for record in pending:
                _add(record, "judge_failure")
            return
        for record, outcome in zip(pending, outcomes):
            record["judge"] = outcome.outcome
            if outcome.value is None:
                _add(record, "judge_failure")
                continue
            record.update(correct=bool(outcome.value), decided_by="judge", rule="judge")
            if "undecided" in record["failures"]:
                record["failures"].remove("undecided")


def _append(path: Path):
    """Open a JSONL for appending; a torn last line (killed run) is terminated first."""
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        if torn:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n")
    return open(path, "a", encoding="utf-8", errors="backslashreplace")


def _tool_key(regions: Iterable[Sequence[int]]) -> str:
    return "tool:" + json.dumps([list(map(int, r)) for r in regions], separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", mininterval=2.0)


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records of one per-item JSONL (a torn last line from a killed run is skipped)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("skipping a torn line in %s", path)
    return records


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["FAILURES", "MODES", "TOOL_MODES", "BenchmarkRun", "EvalConfig", "prompt_messages",
           "read_records", "resolve_bounds"]
