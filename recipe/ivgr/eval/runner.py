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

Modules: `config` (modes, failure reasons, `EvalConfig`), `items` (images resized once to the model's
frame, prompts, requests, grounded boxes), `record` (`EvalRecord`, the JSONL line), `schema` (reading
the eval Parquet); this module is the loop.

Nothing about one item can stop the run: unreadable images, generation errors, unparsable outputs,
boxes outside the image and empty crops are recorded per item (`failures`) and counted per
benchmark and mode in the summary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from data_prep.schema import resolve_image_root
from recipe.ivgr.eval.backends import Backend, GenerationResult
from recipe.ivgr.eval.config import MODES, TOOL_MODES, EvalConfig
from recipe.ivgr.eval.crops import crop_images, default_min_side, plan_crops
from recipe.ivgr.eval.items import Prepared, grounded_boxes, make_request, open_original, prepare, prompt_messages
from recipe.ivgr.eval.record import EvalRecord, ToolFields, append_jsonl, json_line, read_records
from recipe.ivgr.eval.schema import eval_file_rows, iter_eval_rows
from recipe.ivgr.eval.scoring import in_judge_scope, judge_reference, reference_score, score_answer

logger = logging.getLogger(__name__)


def _result_dict(result: GenerationResult) -> dict:
    return {"response": result.text, "finish_reason": result.finish_reason, "num_tokens": result.num_tokens,
            "error": result.error}


def _from_cached(entry: dict) -> GenerationResult:
    return GenerationResult(text=entry.get("response") or "", finish_reason=entry.get("finish_reason"),
                            num_tokens=int(entry.get("num_tokens") or 0), error=entry.get("error"))


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
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load_existing()
        total = eval_file_rows(self.path)
        if self.cfg.limit is not None:
            total = min(total, self.cfg.limit)
        written = dict.fromkeys(self.cfg.modes, 0)
        handles = {mode: append_jsonl(self.mode_path(mode)) for mode in self.cfg.modes}
        bar = _progress(total, f"{self.label}", self.progress)
        try:
            for chunk in _chunks(iter_eval_rows(self.path, batch_size=min(64, self.cfg.chunk_size),
                                                limit=self.cfg.limit), self.cfg.chunk_size):
                records = self._chunk(chunk)
                for mode, mode_records in records.items():
                    for record in mode_records:
                        handles[mode].write(json_line(record))
                    handles[mode].flush()
                    written[mode] += len(mode_records)
                bar.update(len(chunk))
        finally:
            bar.close()
            for handle in handles.values():
                handle.close()
        return written

    def _chunk(self, rows: list[dict]) -> dict[str, list[EvalRecord]]:
        todo = {mode: [r for r in rows if str(r["item_id"]) not in self.done[mode]] for mode in self.cfg.modes}
        needed = {str(r["item_id"]) for mode_rows in todo.values() for r in mode_rows}
        if not needed:
            return {}
        items = {str(r["item_id"]): prepare(r, self.cfg, self.bounds, self.image_root)
                 for r in rows if str(r["item_id"]) in needed}
        out: dict[str, list[EvalRecord]] = {mode: [] for mode in self.cfg.modes}
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
                    record = EvalRecord.start(item, mode)
                    record.error = f"{type(err).__name__}: {err}"[:500]
                    record.fail("internal_error")
                out[mode].append(record)
        self._judge([r for records in out.values() for r in records], items)
        for mode, records in out.items():
            self.done[mode].update(r.item_id for r in records)
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
    def _score(self, record: EvalRecord, item: Prepared) -> None:
        """Both protocols' verdicts on the record's response."""
        score = score_answer(item.row, record.response, strict=self.cfg.strict_answer, lenient=self.cfg.lenient)
        record.set_score(score)
        record.set_reference(reference_score(item.row, score.answer, score.answer_source == "tag"))

    def _generated(self, record: EvalRecord, item: Prepared, stream: str, entry: dict, num_crops: int = 0) -> None:
        n = len(item.images)
        messages = prompt_messages(item.row, stream, n, self.cfg.box_frame, num_crops=num_crops,
                                   crop_note=self.cfg.crop_note)
        record.set_generation(messages, n + num_crops, _from_cached(entry))

    def _record(self, item: Prepared, mode: str, plan) -> EvalRecord:
        record = EvalRecord.start(item, mode)
        if item.failure:
            record.error = item.failure
            record.fail("missing_image")
            record.decided_by = "empty"
            return record
        if mode == "textual":
            self._generated(record, item, "textual", self.cache[(item.item_id, "textual")])
            self._score(record, item)
            return record
        grounded = self.cache[(item.item_id, "grounded")]
        boxes = grounded_boxes(grounded.get("response") or "", item, self.cfg, self.bounds)
        if mode == "grounded":
            self._generated(record, item, "grounded", grounded)
            self._score(record, item)
            if not grounded.get("error"):
                record.set_boxes(boxes)
            return record
        # tool modes
        record.tool = ToolFields(tool_crops=list(TOOL_MODES[mode]), grounded_response=grounded.get("response"),
                                 grounded_finish_reason=grounded.get("finish_reason"),
                                 grounded_num_tokens=grounded.get("num_tokens"), grounded_error=grounded.get("error"))
        if grounded.get("error"):
            record.error = grounded["error"]
            record.fail("generation_error")
            record.decided_by = "empty"
            return record
        record.set_boxes(boxes)
        if plan is None:
            raise RuntimeError("crop planning failed (see the log)")
        record.tool.plan = plan.to_record()
        if plan.empty:
            record.fail("empty_crop")
        if not plan.regions:
            record.tool.tool_fallback = "no_boxes" if not boxes.model else "no_usable_crop"
            record.fail("tool_fallback")
            self._generated(record, item, "textual", self.cache[(item.item_id, "textual")])
        else:
            self._generated(record, item, "textual", self.cache[(item.item_id, _tool_key(plan.regions))],
                            num_crops=len(plan.regions))
        self._score(record, item)
        return record

    # -- judge -------------------------------------------------------------------------------
    def _judge(self, records: list[EvalRecord], items: dict[str, Prepared]) -> None:
        if self.judge_client is None:
            return
        pending = [r for r in records if r.decided_by == "undecided"
                   and in_judge_scope(items[r.item_id].row, self.cfg.judge_scope)]
        if not pending:
            return
        from reward_score.judge import judge_answer

        async def ask_all():
            try:
                return await asyncio.gather(*(
                    judge_answer(self.judge_client, str(items[r.item_id].row.get("question") or ""),
                                 judge_reference(items[r.item_id].row), r.answer or "") for r in pending))
            finally:
                await self.judge_client.aclose()  # the session belongs to this event loop; the cache stays

        try:
            outcomes = asyncio.run(ask_all())
        except Exception as err:  # noqa: BLE001  (e.g. called inside a running event loop)
            logger.error("judge calls failed: %s", err)
            for record in pending:
                record.fail("judge_failure")
            return
        for record, outcome in zip(pending, outcomes):
            record.set_judge(outcome.outcome, outcome.value)


def _tool_key(regions: Iterable[Sequence[int]]) -> str:
    return "tool:" + json.dumps([list(map(int, r)) for r in regions], separators=(",", ":"))


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


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
