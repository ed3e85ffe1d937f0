"""MMMU (MMMU/MMMU validation): college-level multidisciplinary questions, multiple choice and open.
Published numbers: VLMEvalKit `MMMUDataset` (multiple-choice exact matching; open questions become the
two options `A = answer, B = "Other Answers"` by `MMMU_preproc`). Score: accuracy.

Formats: the Parquet shards, one folder per subject (`id, question, options` (a list literal), `answer,
image_1..image_7, question_type, subfield`); open answers may list several acceptable values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from recipe.ivgr.eval.reference import MCQ
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _clean,
    _each,
    _files,
    _list_of,
    _mc_from_letter,
    _read_rows,
    _text,
)
from recipe.ivgr.eval.spec import BenchmarkSpec

_MMMU_IMAGE = re.compile(r"image_(\d+)$")


def read_mmmu(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*/*.parquet", "*.jsonl", "*.tsv")):  # one folder per subject
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _mmmu_item(*pair, path))


def _mmmu_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("id")) or f"{path.stem}:{number}"
    images = [row[key] for key in sorted((k for k in row if _MMMU_IMAGE.match(k)),
                                         key=lambda k: int(_MMMU_IMAGE.match(k).group(1)))
              if _clean(row.get(key)) is not None]
    subject = qid.split("_")[1] if qid.count("_") >= 2 else None
    meta = {"id": qid, "subfield": _clean(row.get("subfield")), "source_file": path.name,
            "topic_difficulty": _clean(row.get("topic_difficulty"))}
    options = _list_of(row.get("options")) or []
    answers = _list_of(row.get("answer")) or []
    question = _text(row.get("question"))
    if _text(row.get("question_type")) != "open" and len(options) >= 2:
        return RawItem(source_id=qid, question=question, images=images, options=options,
                       correct=_mc_from_letter(options, answers[0] if answers else "", qid), subset=subject,
                       category="multiple-choice", meta=meta)
    if not answers:
        raise RowError("empty_answer", qid)
    from reward_score.answers import detect_answer_type

    return RawItem(source_id=qid, question=question, images=images, answer=answers[0], answers=answers,
                   answer_type=detect_answer_type(answers[0]), subset=subject, category="open", meta=meta)


SPEC = BenchmarkSpec("mmmu", "MMMU", reader=read_mmmu, reference=MCQ)
