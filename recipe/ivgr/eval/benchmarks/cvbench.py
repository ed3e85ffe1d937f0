"""CV-Bench 2D and 3D (nyu-visionx/CV-Bench): counting and spatial relations (2D: ADE20K, COCO) and
depth and distance (3D: Omni3D). Published numbers: VLMEvalKit `CVBench` (multiple-choice exact
matching). Score: 2D = the mean of the ADE20K and COCO accuracies, 3D = accuracy. Both variants read the
same file and skip the other type's rows: they differ only in the type read and the aggregate.

Formats: Parquet/JSONL (`idx, type, task, image, question, choices, answer, source`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from recipe.ivgr.eval.reference import MCQ
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    SkipRow,
    _clean,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _rel,
    _text,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import ACCURACY, SUBSET_MEAN, BenchmarkSpec
from reward_score.choices import option_texts


def read_cvbench(inputs: Sequence[Path], root: Path, wanted: str) -> Iterator[RawItem | RowError | SkipRow]:
    for path in _files(inputs, ("*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _cvbench_item(*pair, path, root, wanted))


def _cvbench_item(number: int, row: dict, path: Path, root: Path, wanted: str) -> RawItem:
    kind = _text(row.get("type")).upper()
    if kind and kind != wanted:
        raise SkipRow(kind)
    choices = row.get("choices")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            choices = None
    options = option_texts(list(choices or []))
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}:{number}")
    qid = _text(row.get("idx") if row.get("idx") is not None else row.get("index")) or str(number)
    image = row.get("image")
    if image is None and row.get("filename"):
        image = _rel(path.parent / str(row["filename"]), root)
    question, _, instruction = split_embedded_options(_text(row.get("question")))
    return RawItem(
        source_id=qid, question=question, images=[image] if image is not None else [], options=options,
        correct=_mc_from_letter(options, row.get("answer"), qid), subset=_text(row.get("source")) or None,
        category=_text(row.get("task")) or None,
        meta={"idx": qid, "source_dataset": _clean(row.get("source_dataset")),
              "source_filename": _clean(row.get("source_filename")), "type": kind or None,
              "instruction": instruction, "source_file": path.name},
    )


CVBENCH2D = BenchmarkSpec("cvbench2d", "CV-2D", reader=partial(read_cvbench, wanted="2D"), metric=SUBSET_MEAN,
                          reference=MCQ)
CVBENCH3D = replace(CVBENCH2D, name="cvbench3d", title="CV-3D", reader=partial(read_cvbench, wanted="3D"),
                    metric=ACCURACY)
