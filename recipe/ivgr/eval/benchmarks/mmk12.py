"""MMK12 (FanqingM/MMK12 test): K-12 math, physics, chemistry and biology problems. Published numbers come
from MM-Eureka's own math_verify scorer, not reproduced here: no reference rule. Score: accuracy by
`reward_score.answers.match_answer` (numbers with tolerance, math expressions with math_verify).

Formats: Parquet/JSONL (`id, subject, question, answer, image`); a letter answer with options in the
question is multiple choice, anything else a math answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _image_of,
    _mc_from_letter,
    _read_rows,
    _text,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import letter_of


def read_mmk12(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.jsonl", "*.json")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _mmk12_item(*pair, path))


def _mmk12_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("id")) or str(number)
    answer = _text(row.get("answer") if row.get("answer") is not None else row.get("solution"))
    text = _text(row.get("question") or row.get("problem"))
    subject = _text(row.get("subject")) or None
    images = _image_of(row, path, "image", "images")
    if images and isinstance(images[0], list):
        images = list(images[0])
    meta = {"id": qid, "source_file": path.name}
    question, options, instruction = split_embedded_options(text)
    if options and letter_of(answer, upper_only=True) is not None:
        return RawItem(source_id=qid, question=question, images=images, options=options,
                       correct=_mc_from_letter(options, answer, qid), subset=subject, category="choice",
                       meta=meta | {"instruction": instruction})
    if not answer:
        raise RowError("empty_answer", qid)
    return RawItem(source_id=qid, question=text, images=images, answer=answer, answer_type="math",
                   subset=subject, category="open", meta=meta)


SPEC = BenchmarkSpec("mmk12", "MMK12", reader=read_mmk12, answer_type="math")
