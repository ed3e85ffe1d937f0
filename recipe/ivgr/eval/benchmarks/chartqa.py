"""ChartQA (HuggingFaceM4/ChartQA test): questions on charts, human-written and augmented. Published
numbers: pix2struct's relaxed accuracy (VLMEvalKit `vlmeval/dataset/utils/vqa_eval.py` and lmms-eval
`tasks/chartqa/utils.py` vendor it), the reference rule, applied to the answer as written. The graded rule
applies it as a careful grader does (`graded_relaxed`: on the stated value, years exact). Score: relaxed
accuracy over all test items (per subset in the Subsets table).

Formats: its Parquet (`image, query, label` list, `human_or_machine` 0 human / 1 augmented),
lmms-lab/ChartQA (`question, answer, type` human_test/augmented_test), or a VLMEvalKit TSV.
"""

from __future__ import annotations

import math
import re
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
from reward_score.answers import Verdict, acceptable_answers, contains_answer
from reward_score.numbers import quantity
from reward_score.text import final_statement


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


_YEAR = re.compile(r"(?:1[89]|20)\d\d")
_YEAR_QUESTION = re.compile(r"\b(?:years?|when)\b", re.IGNORECASE)


def _readings(answer: str) -> tuple[str, list[str]]:
    """(final statement, the texts relaxed accuracy is tried on): the answer, its final statement, and the
    one number that statement states ("The answer is 14." -> "14"; "14%" -> "14", ChartQA labels omit the sign)."""
    stated = final_statement(answer) or answer.strip()
    readings = [answer.strip(), stated]
    value = quantity(stated, strict=False)
    if value is not None:
        readings.append(format(float(value.value), "g"))
    return stated, list(dict.fromkeys(readings))


def graded_relaxed(answer: str, item: Mapping[str, Any]) -> Verdict:
    """The graded rule: relaxed accuracy as a careful grader applies it, best over the acceptable
    answers. Read on the answer's stated value (a sentence or a % sign around the number is no error);
    a year asked for ("Which year ...?") must be exact (5 % of 2019 is a century); a text label may be
    stated in a sentence ("In Asia." for "Asia", `reward_score.answers.contains_answer`)."""
    stated, readings = _readings(answer)
    year_question = bool(_YEAR_QUESTION.search(str(item.get("question") or "")))
    for gold in acceptable_answers(item.get("answer"), item.get("answers")):
        gold = gold.strip()
        if year_question and _YEAR.fullmatch(gold):
            if gold in (r.rstrip(".") for r in readings):
                return Verdict(True, "relaxed_accuracy_year")
            continue
        if any(relaxed_correctness(r, gold) for r in readings):
            return Verdict(True, "relaxed_accuracy")
        if _to_number(gold) is None and contains_answer(stated, gold):
            return Verdict(True, "relaxed_accuracy_text")
    return Verdict(False, "relaxed_accuracy")


def vlmeval_relaxed(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """The reference rule (`vqa_eval.py` `relaxed_correctness`) on the answer as written, best over the
    acceptable answers."""
    golds = acceptable_answers(item.get("answer"), item.get("answers"))
    return ReferenceVerdict(any(relaxed_correctness(answer, g) for g in golds), None)


SPEC = BenchmarkSpec("chartqa", "ChartQA", reader=read_chartqa, answer_type="text", graded=graded_relaxed,
                     reference=ReferenceRule("VLMEvalKit vlmeval/dataset/utils/vqa_eval.py relaxed_correctness",
                                             vlmeval_relaxed))
