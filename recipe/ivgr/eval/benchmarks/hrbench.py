"""HR-Bench 4K and 8K (DreamMr/HR-Bench): single-instance (FSP) and cross-instance (FCP) perception on
4K/8K images. Published numbers: VLMEvalKit `HRBenchDataset` (multiple-choice exact matching). Score: the
mean of the FSP and FCP accuracies. The 8K variant differs only in name, title and file.

Formats: `hr_bench_{4k,8k}.tsv` (VLMEvalKit TSV: `index, question, A-D, answer, category, cycle_category,
image` base64; image references by `index` resolved) or a Parquet/JSONL with those columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from recipe.ivgr.eval.reference import MCQ
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_image,
    _tsv_options,
)
from recipe.ivgr.eval.spec import SUBSET_MEAN, BenchmarkSpec

_HR_SUBSETS = {"single": "FSP", "single_instance": "FSP", "fsp": "FSP", "cross": "FCP", "cross_instance": "FCP",
               "fcp": "FCP"}


def read_hrbench(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.tsv", "*.parquet")):
        yield from _each(_read_rows(path), lambda row, path=path: _hrbench_item(row, path))


def _hrbench_item(row: dict, path: Path) -> RawItem:
    options = _tsv_options(row)
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}: index {row.get('index')}")
    category = _text(row.get("category"))
    return RawItem(
        source_id=_text(row.get("index")), question=_text(row.get("question")), images=_tsv_image(row),
        options=options, correct=_mc_from_letter(options, row.get("answer"), _text(row.get("index"))),
        subset=_HR_SUBSETS.get(category.lower(), category or None), category=category or None,
        meta={"index": _text(row.get("index")), "cycle_category": _text(row.get("cycle_category")) or None,
              "source_file": path.name},
    )


HRBENCH4K = BenchmarkSpec("hrbench4k", "HR4K", reader=read_hrbench, metric=SUBSET_MEAN, reference=MCQ)
HRBENCH8K = replace(HRBENCH4K, name="hrbench8k", title="HR8K")
