"""ChartQA (HuggingFaceM4/ChartQA test): questions on charts, human-written and augmented. Published
numbers: pix2struct's relaxed accuracy (VLMEvalKit `vlmeval/dataset/utils/vqa_eval.py` and lmms-eval
`tasks/chartqa/utils.py` vendor it). The same rule is the graded and the reference one. Score: relaxed
accuracy over all test items (per subset in the Subsets table).

Formats: its Parquet (`image, query, label` list, `human_or_machine` 0 human / 1 augmented),
lmms-lab/ChartQA (`question, answer, type` human_test/augmented_test), or a VLMEvalKit TSV.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.reference import ReferenceRule, ReferenceVerdict
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _image_of,
    _list_of,
    _read_rows,
    _text,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.answers import Verdict, acceptable_answers


def read_chartqa(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.tsv", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _chartqa_item(*pair, path))


def _chartqa_item(number: int, row: dict, path: Path) -> RawItem:
    labels = _list_of(row.get("label") if row.get("label") is not None else row.get("answer"))
    if not labels:
        raise RowError("empty_answer", f"{path.name}:{number}")
    split = _text(row.get("type") or row.get("split"))
    if row.get("human_or_machine") is not None:
        subset = "human" if int(row["human_or_machine"]) == 0 else "augmented"
    else:
        subset = "augmented" if "aug" in split.lower() else ("human" if split else None)
    qid = _text(row.get("index") if row.get("index") is not None else row.get("id")) or str(number)
    return RawItem(source_id=qid, question=_text(row.get("query") or row.get("question")),
                   images=_image_of(row, path, "image"), answer=labels[0], answers=labels, answer_type="text",
                   subset=subset, category=subset, meta={"index": qid, "source_file": path.name})


def _to_number(text: str) -> float | None:
    """A float, with a trailing % meaning hundredths (ChartQA's convention); None if not a number."""
    text = text.strip()
    scale = 1.0
    if text.endswith("%"):
        text, scale = text[:-1], 0.01
    try:
        value = float(text)
    except ValueError:
        return None
    return value * scale if math.isfinite(value) else None


def relaxed_correctness(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy (Methani et al. 2020; the rule of pix2struct's metrics, which
    VLMEvalKit and lmms-eval use): when both texts are numbers and the target is not 0, correct iff
    the relative error is at most `tolerance`; otherwise a case-insensitive exact match."""
    pred, gold = _to_number(prediction), _to_number(target)
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= tolerance
    return prediction.strip().lower() == target.strip().lower()


def graded_relaxed(answer: str, item: Mapping[str, Any]) -> Verdict:
    """The graded rule: relaxed accuracy, best over the acceptable answers."""
    golds = acceptable_answers(item.get("answer"), item.get("answers"))
    return Verdict(any(relaxed_correctness(answer, g) for g in golds), "relaxed_accuracy")


def vlmeval_relaxed(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """The reference rule (`vqa_eval.py` `relaxed_correctness`), best over the acceptable answers."""
    return ReferenceVerdict(graded_relaxed(answer, item).correct, None)


SPEC = BenchmarkSpec("chartqa", "ChartQA", reader=read_chartqa, answer_type="text", graded=graded_relaxed,
                     reference=ReferenceRule("VLMEvalKit vlmeval/dataset/utils/vqa_eval.py relaxed_correctness",
                                             vlmeval_relaxed))
