"""TreeBench (HaochenWang/TreeBench): traceable evidence questions with target boxes. Published numbers:
VLMEvalKit `TreeBench.evaluate` (the regex extraction). Score: accuracy; mIoU = the grounding summary's
recall IoU.

Formats: the TSV (VLMEvalKit layout, `A-E`, `category`, boxes in `target_instances`/`bbox`; `--box-format`
when they are not xyxy pixels).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.reference import REGEX_TREEBENCH
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _clean,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_image,
    _tsv_options,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec

_TREE_BOX_COLUMNS = ("target_instances", "bbox", "bboxes", "boxes", "gt_bbox")


def _tree_boxes(row: dict) -> list[Any]:
    for column in _TREE_BOX_COLUMNS:
        value = _clean(row.get(column))
        if value is None or value == "":
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                try:
                    value = ast.literal_eval(value)
                except (ValueError, SyntaxError) as err:
                    raise RowError("box_malformed", f"{column}: {str(value)[:80]}") from err
        if isinstance(value, dict):
            value = [value]
        boxes = []
        for entry in value or []:
            if isinstance(entry, dict):
                entry = entry.get("bbox") or entry.get("box") or entry.get("bbox_2d")
            if entry is not None:
                boxes.append(entry)
        if boxes and not isinstance(boxes[0], (list, tuple)):
            boxes = [boxes]
        return boxes
    return []


def read_treebench(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.tsv", "*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _treebench_item(*pair, path))


def _treebench_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("index")) or str(number)
    options = _tsv_options(row)
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}: {qid}")
    category = _text(row.get("category")) or None
    question, _, instruction = split_embedded_options(_text(row.get("question")))
    try:
        boxes, box_error = _tree_boxes(row), None
    except RowError as err:
        boxes, box_error = [], err.detail
    return RawItem(
        source_id=qid, question=question, images=_tsv_image(row), options=options,
        correct=_mc_from_letter(options, row.get("answer"), qid),
        subset=category.split("/")[0] if category else None, category=category, boxes=boxes,
        meta={"index": qid, "instruction": instruction, "box_error": box_error, "source_file": path.name},
    )


SPEC = BenchmarkSpec("treebench", "TreeBench", reader=read_treebench, has_boxes=True, reference=REGEX_TREEBENCH)
