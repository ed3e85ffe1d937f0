"""Your own held-out split: `data_prep.generic` lines or a record Parquet from a data_prep converter
(the CPU smoke's demo benchmark is `data_prep.synthetic`'s held-out `val.parquet` read this way). No
published numbers, so no reference rule. Score: accuracy; grounding IoU where the data has boxes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _read_rows,
    _text,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import LETTERS, letter_of


def read_generic(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    """Your own data: the JSONL / JSON-array lines of `data_prep.generic` (`id`, `image`|`images`, `question`,
    `answer` (a list = acceptable answers), `choices`, `answer_type`, `boxes`, `box_format`), or a record
    Parquet written by a data_prep converter (`sample_id`, `images`, `gt_boxes` in ORIGINAL xyxy pixels, ...).
    With `choices`, `answer` is the correct option's letter (A = the first) or its text."""
    for path in _files(inputs, ("*.jsonl", "*.json", "*.parquet")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _generic_item(*pair, path))


def _generic_item(number: int, row: dict, path: Path) -> RawItem:
    if "__error__" in row:
        raise RowError("bad_json", row["__error__"])
    source_id = _text(row.get("sample_id") or row.get("id")) or f"{path.name}:{number}"
    images = row.get("images") if row.get("images") is not None else row.get("image")
    images = list(images) if isinstance(images, list | tuple) else ([images] if images is not None else [])
    answers = row.get("answers") or row.get("answer")
    answers = [_text(a) for a in (answers if isinstance(answers, list | tuple) else [answers]) if _text(a)]
    if not answers:
        raise RowError("empty_answer", source_id)
    boxes = row.get("gt_boxes") if row.get("gt_boxes") is not None else row.get("boxes")
    box_format = "xyxy" if row.get("gt_boxes") is not None else (row.get("box_format") or "xyxy")
    common = {"source_id": source_id, "question": _text(row.get("question")), "images": images,
              "boxes": list(boxes or []), "box_format": box_format, "subset": _text(row.get("data_source")) or None,
              "meta": {"source_file": path.name, "row": number}}
    options = row.get("choices")
    if options:
        options = [_text(o) for o in options]
        letter = letter_of(answers[0], upper_only=True)
        if letter is not None and LETTERS.index(letter) < len(options):
            correct = LETTERS.index(letter)
        elif answers[0] in options:
            correct = options.index(answers[0])
        else:
            raise RowError("answer_not_in_options", f"{source_id}: {answers[0]!r} is neither a letter nor an option")
        return RawItem(options=options, correct=correct, **common)
    return RawItem(answer=answers[0], answers=answers if len(answers) > 1 else None,
                   answer_type=_text(row.get("answer_type")) or None, **common)


SPEC = BenchmarkSpec("generic", "Own", reader=read_generic, answer_type="text", has_boxes=True)
