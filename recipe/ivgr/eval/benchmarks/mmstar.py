"""MMStar (Lin-Chen/MMStar): vision-indispensable multiple choice over six capabilities. Published numbers:
VLMEvalKit (multiple-choice exact matching). Score: accuracy.

Formats: its Parquet (options inline: `Options: A: .., B: ..`) or the VLMEvalKit TSV.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from recipe.ivgr.eval.reference import MCQ
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _image_of,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import LETTER, LETTERS

_INLINE_OPTIONS = re.compile(rf"\n?\s*Options?:\s*(?={LETTER}\s*[:.)])", re.IGNORECASE)
_INLINE_LETTER = re.compile(rf"(?:^|,\s*|\n\s*)({LETTER})\s*[:.)]\s*")


def split_inline_options(text: str) -> tuple[str, list[str] | None]:
    """MMStar's "question\\nOptions: A: x, B: y, C: z" -> (question, [x, y, z]); letters must run A, B, C..."""
    parts = _INLINE_OPTIONS.split(text, maxsplit=1)
    if len(parts) != 2:
        return text.strip(), None
    head, tail = parts
    options, expected, starts = [], 0, []
    for mark in _INLINE_LETTER.finditer(tail):
        if mark.group(1) == LETTERS[expected]:
            starts.append(mark)
            expected += 1
    if len(starts) < 2:
        return text.strip(), None
    for index, mark in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(tail)
        options.append(tail[mark.end():end].strip().rstrip(",").strip())
    return head.strip(), options


def read_mmstar(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.tsv", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _mmstar_item(*pair, path))


def _mmstar_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("index")) or str(number)
    options = _tsv_options(row)
    if options:
        question, _ = split_inline_options(_text(row.get("question")))
    else:
        question, options = split_inline_options(_text(row.get("question")))
    if not options or len(options) < 2:
        raise RowError("no_options", f"{path.name}:{qid}")
    return RawItem(source_id=qid, question=question, images=_image_of(row, path, "image"), options=options,
                   correct=_mc_from_letter(options, row.get("answer"), qid),
                   subset=_text(row.get("category")) or None, category=_text(row.get("l2_category")) or None,
                   meta={"index": qid, "source_file": path.name})


SPEC = BenchmarkSpec("mmstar", "MMStar", reader=read_mmstar, reference=MCQ)
