"""RealWorldQA (xai-org/RealworldQA): real-world spatial questions, mostly multiple choice. Published
numbers: VLMEvalKit (multiple-choice exact matching). Score: accuracy.

Formats: its Parquet (`image, question, answer`; options embedded in the question are split off, open
questions stay open) or a VLMEvalKit TSV.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import letter_of


def read_realworldqa(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.tsv", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _rwqa_item(*pair, path))


def _rwqa_item(number: int, row: dict, path: Path) -> RawItem:
    from reward_score.answers import detect_answer_type

    qid = _text(row.get("index") if row.get("index") is not None else row.get("id")) or str(number)
    options = _tsv_options(row)
    if options:
        question, _, instruction = split_embedded_options(_text(row.get("question")))
    else:
        question, options, instruction = split_embedded_options(_text(row.get("question")))
    image = row.get("image")
    images = _tsv_image(row) if path.suffix.lower() == ".tsv" else ([image] if image is not None else [])
    answer = _text(row.get("answer"))
    meta = {"index": qid, "instruction": instruction, "source_file": path.name}
    if options and letter_of(answer, upper_only=True) is not None:
        return RawItem(source_id=qid, question=question, images=images, options=options,
                       correct=_mc_from_letter(options, answer, qid), category="choice", meta=meta)
    kind = detect_answer_type(answer)
    return RawItem(source_id=qid, question=question, images=images, answer=answer,
                   answer_type="text" if kind == "choice" else kind, category="open", meta=meta)


SPEC = BenchmarkSpec("realworldqa", "RWQA", reader=read_realworldqa, reference=MCQ)
