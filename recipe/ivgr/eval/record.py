"""The per-item eval record (`EvalRecord`, one JSONL line of `<out>/<bench>/<mode>.jsonl`) and the JSONL
utilities. The runner builds one record per item and mode through the record's own methods; `to_dict` is
the line written (README, "Outputs", lists the fields). Readers (`report`, `gallery`, resume) read the
lines back as plain mappings, so files written by earlier versions stay readable.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from recipe.ivgr.eval.backends import GenerationResult
from recipe.ivgr.eval.items import GroundedBoxes, Prepared
from recipe.ivgr.eval.reference import ReferenceVerdict
from recipe.ivgr.eval.scoring import AnswerScore, box_metrics

logger = logging.getLogger(__name__)


@dataclass
class ToolFields:
    """Tool modes: the grounded pass the crops come from, and the crop plan (None when that pass failed)."""

    tool_crops: list[str]  # which crops the mode asks for: "each", "union"
    grounded_response: str | None = None
    grounded_finish_reason: str | None = None
    grounded_num_tokens: int | None = None
    grounded_error: str | None = None
    plan: dict[str, Any] | None = None  # crops.CropPlan.to_record(): crops (original pixels), crop_kinds, ...
    tool_fallback: str | None = None  # "no_boxes" | "no_usable_crop": the textual answer was kept


@dataclass
class EvalRecord:
    """One item in one mode: what was asked, what the model said, both protocols' verdicts, failures.

    Sizes are `[width, height]` in pixels (`image_size` original, `model_image_size` as shown to the
    model); `gt_boxes` and `boxes` are xyxy in ORIGINAL pixels, `boxes_model` as the model wrote them.
    `correct` is the `graded` verdict, `reference_correct` the `reference` one (None: no reference rule).
    """

    item_id: str
    benchmark: str | None
    mode: str
    subset: str | None = None
    category: str | None = None
    answer_type: str | None = None
    ground_truth: str | None = None
    answers: list[str] | None = None
    answer_text: str | None = None
    choices: list[str] | None = None
    image_size: list[int] | None = None
    model_image_size: list[int] | None = None
    gt_boxes: list[list[float]] = field(default_factory=list)
    prompt: list[dict] | None = None
    num_images: int = 0
    response: str | None = None
    finish_reason: str | None = None
    num_tokens: int = 0
    answer: str | None = None
    answer_source: str = "none"
    correct: bool = False
    rule: str | None = None
    decided_by: str | None = None
    reference_correct: bool | None = None
    reference_extracted: str | None = None
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    boxes: GroundedBoxes | None = None  # grounded and tool modes (unless the grounded pass failed)
    box_scores: dict[str, float] = field(default_factory=dict)  # iou, recall_iou, precision_iou (GT boxes)
    tool: ToolFields | None = None
    judge: str | None = None  # the judge's outcome name, when it was asked

    @classmethod
    def start(cls, item: Prepared, mode: str) -> EvalRecord:
        """The record of an item before generation: the item's facts, nothing answered."""
        row = item.row
        return cls(
            item_id=item.item_id, benchmark=row.get("benchmark"), mode=mode, subset=row.get("subset"),
            category=row.get("category"), answer_type=row.get("answer_type"), ground_truth=row.get("answer"),
            answers=row.get("answers"), answer_text=row.get("answer_text"),
            choices=list(row["choices"]) if row.get("choices") is not None else None,
            image_size=list(item.size) if item.size else None,
            model_image_size=list(item.model_size) if item.model_size else None,
            gt_boxes=[list(b) for b in row.get("gt_boxes") or []])

    def fail(self, reason: str) -> None:
        """Count a failure reason (`config.FAILURES`) once."""
        if reason not in self.failures:
            self.failures.append(reason)

    def set_generation(self, messages: list[dict] | None, num_images: int, result: GenerationResult) -> None:
        self.prompt, self.num_images = messages, num_images
        self.response, self.finish_reason, self.num_tokens = result.text, result.finish_reason, result.num_tokens
        if result.error:
            self.error = result.error
            self.fail("generation_error")
        if result.finish_reason == "length":
            self.fail("truncated_output")

    def set_score(self, score: AnswerScore) -> None:
        """The `graded` verdict."""
        self.answer, self.answer_source = score.answer, score.answer_source
        self.correct, self.rule, self.decided_by = bool(score.correct), score.rule, score.decided_by
        if score.answer_source == "fallback":
            self.fail("no_answer_tag")
        if score.answer is None and self.error is None:
            self.fail("unparsable_output")
        if score.undecided:
            self.fail("undecided")

    def set_reference(self, verdict: ReferenceVerdict | None) -> None:
        """The `reference` verdict; None = the benchmark has no reference rule."""
        self.reference_correct = None if verdict is None else bool(verdict.correct)
        self.reference_extracted = None if verdict is None else verdict.extracted

    def set_boxes(self, boxes: GroundedBoxes) -> None:
        """Boxes of the grounded response, and their IoU with the GT boxes when the item has some."""
        self.boxes = boxes
        if not boxes.model:
            self.fail("no_boxes")
        if boxes.invalid:
            self.fail("invalid_box")
        if boxes.outside:
            self.fail("box_outside_image")
        if self.gt_boxes:
            self.box_scores = box_metrics([tuple(b) for b in boxes.original], [tuple(b) for b in self.gt_boxes])

    def set_judge(self, outcome_name: str, value: bool | None) -> None:
        """The judge's verdict on an undecided answer (None: the judge failed)."""
        self.judge = outcome_name
        if value is None:
            self.fail("judge_failure")
            return
        self.correct, self.decided_by, self.rule = bool(value), "judge", "judge"
        if "undecided" in self.failures:
            self.failures.remove("undecided")

    def to_dict(self) -> dict[str, Any]:
        """The JSONL line: the fixed fields, then the box, IoU, tool and judge fields where they apply."""
        out = {name: getattr(self, name) for name in _FIXED}
        if self.tool is not None:
            out.update(grounded_response=self.tool.grounded_response,
                       grounded_finish_reason=self.tool.grounded_finish_reason,
                       grounded_num_tokens=self.tool.grounded_num_tokens, grounded_error=self.tool.grounded_error,
                       tool_crops=list(self.tool.tool_crops))
        if self.boxes is not None:
            out.update(boxes=self.boxes.original, boxes_model=self.boxes.model, invalid_boxes=self.boxes.invalid,
                       boxes_outside=self.boxes.outside)
        out.update(self.box_scores)
        if self.tool is not None and self.tool.plan is not None:
            out.update(self.tool.plan)  # its boxes_outside counts the crops' clipping
            out["tool_fallback"] = self.tool.tool_fallback
        if self.judge is not None:
            out["judge"] = self.judge
        return out


_FIXED = ("item_id", "benchmark", "subset", "category", "mode", "answer_type", "ground_truth", "answers",
          "answer_text", "choices", "image_size", "model_image_size", "gt_boxes", "prompt", "num_images", "response",
          "finish_reason", "num_tokens", "answer", "answer_source", "correct", "rule", "decided_by",
          "reference_correct", "reference_extracted", "failures", "error")


def append_jsonl(path: Path) -> IO[str]:
    """Open a JSONL for appending; a torn last line (killed run) is terminated first."""
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        if torn:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n")
    return open(path, "a", encoding="utf-8", errors="backslashreplace")


def json_line(record: EvalRecord) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


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
