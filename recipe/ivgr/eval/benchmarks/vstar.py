"""V* (craigwu/vstar_bench): fine-grained attribute and relative-position questions on high-resolution
images, with the target objects' boxes. Published numbers: VLMEvalKit `VStarBench` (multiple-choice exact
matching). Score: accuracy; grounding IoU against the GT boxes.

Formats: the benchmark folder (`direct_attributes/`, `relative_position/`: image + JSON with `question`,
`options` (correct first), `bbox` [x, y, w, h]) or its `test_questions.jsonl` (same items and ids, so the
same shuffle).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.reference import MCQ
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _mc_from_letter,
    _read_rows,
    _rel,
    _text,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def read_vstar(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    """V*: the benchmark folder (two subfolders of image + JSON pairs) or `test_questions.jsonl`."""
    for path in inputs:
        if path.is_dir():
            subdirs = [d for d in sorted(path.iterdir()) if d.is_dir()] or [path]
            annotations = [anno for sub in subdirs for anno in sorted(sub.glob("*.json"))]
            yield from _each(annotations, lambda anno: _vstar_from_json(anno, root))
        else:
            yield from _each(_read_rows(path), lambda row, path=path: _vstar_from_question_line(row, path, root))


def _vstar_image_beside(anno: Path) -> Path | None:
    for suffix in _IMAGE_SUFFIXES + tuple(s.upper() for s in _IMAGE_SUFFIXES):
        candidate = anno.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _vstar_boxes(anno: dict) -> list[Any]:
    boxes = anno.get("bbox") or []
    if boxes and not isinstance(boxes[0], (list, tuple)):
        boxes = [boxes]
    return list(boxes)


def _vstar_from_json(anno_path: Path, root: Path) -> RawItem:
    try:
        anno = json.loads(anno_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RowError("bad_json", f"{anno_path.name}: {err}") from None
    subset = anno_path.parent.name
    stem = f"{subset}/{anno_path.stem}"
    image = _vstar_image_beside(anno_path)
    options = [str(o).strip() for o in anno.get("options") or []]
    if len(options) < 2:
        raise RowError("no_options", stem)
    return RawItem(
        source_id=stem, question=_text(anno.get("question")),
        images=[_rel(image, root)] if image is not None else [_rel(anno_path.with_suffix(".jpg"), root)],
        options=options, correct=0,  # V* lists the correct option first
        subset=subset, category=subset, boxes=_vstar_boxes(anno), box_format="xywh",
        meta={"target_object": anno.get("target_object"), "source_file": anno_path.name},
    )


def _vstar_from_question_line(row: dict, path: Path, root: Path) -> RawItem:
    if "__error__" in row:
        raise RowError("bad_json", row["__error__"])
    image = _text(row.get("image"))
    question, options, instruction = split_embedded_options(_text(row.get("text") or row.get("question")))
    if not options:
        raise RowError("no_options", f"{path.name}: {image}")
    category = _text(row.get("category")) or (image.split("/")[0] if "/" in image else None)
    boxes: list[Any] = []
    anno_path = (path.parent / image).with_suffix(".json")
    meta: dict[str, Any] = {"question_id": row.get("question_id"), "instruction": instruction}
    if anno_path.exists():  # the folder layout puts the bbox annotations beside the images
        try:
            boxes = _vstar_boxes(json.loads(anno_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, OSError) as err:
            meta["box_error"] = str(err)[:200]
    image_rel = _rel(path.parent / image, root) if image else ""
    # the same id as the folder layout (subfolder/stem), so both formats give identical items and shuffles
    source_id = str(Path(image).with_suffix("")) if image else str(row.get("question_id"))
    return RawItem(
        source_id=source_id, question=question, images=[image_rel] if image_rel else [],
        options=options, correct=_mc_from_letter(options, row.get("label"), image),
        subset=category, category=category, boxes=boxes, box_format="xywh", meta=meta,
    )


SPEC = BenchmarkSpec("vstar", "V*", reader=read_vstar, has_boxes=True, reference=MCQ)
