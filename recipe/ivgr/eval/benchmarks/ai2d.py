"""AI2D (lmms-lab/ai2d): science diagrams, four options whose texts are often letters (diagram labels).
Published numbers: VLMEvalKit `AI2D_TEST` (multiple-choice exact matching; its letter wins over an option
text that is itself a letter). Score: accuracy.

Formats: its Parquet (`question, options` list, `answer` = option index) or VLMEvalKit's `AI2D_TEST.tsv`
(`A-D`, letter answer).
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
    _image_of,
    _list_of,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_options,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import letter_of


def read_ai2d(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.tsv", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _ai2d_item(*pair, path))


def _ai2d_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("index") if row.get("index") is not None else row.get("id")) or str(number)
    options = _tsv_options(row) or _list_of(row.get("options")) or []
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}:{qid}")
    answer = _text(row.get("answer"))
    if answer.isdigit() and letter_of(answer, upper_only=True) is None:  # lmms-lab/ai2d: the option's index
        correct = int(answer)
        if not 0 <= correct < len(options):
            raise RowError("answer_not_in_options", f"{qid}: index {answer} for {len(options)} options")
    else:
        correct = _mc_from_letter(options, answer, qid)
    question, _, instruction = split_embedded_options(_text(row.get("question")))
    return RawItem(source_id=qid, question=question, images=_image_of(row, path, "image"), options=options,
                   correct=correct, category=_text(row.get("category")) or None,
                   meta={"index": qid, "instruction": instruction, "source_file": path.name})


SPEC = BenchmarkSpec("ai2d", "AI2D", reader=read_ai2d, reference=MCQ)
