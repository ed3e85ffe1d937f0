"""MME-RealWorld-Lite (yifanzhang114/MME-RealWorld-Lite): high-resolution real-world perception and
reasoning, five options. Published numbers: VLMEvalKit `MMERealWorld.evaluate` (the regex extraction, not
`can_infer`). Score: accuracy.

Formats: the official JSON (`Question_id, Image, Text, Answer choices, Ground truth, Task, Subtask,
Category`; images by path under `--image-root`) or a VLMEvalKit TSV.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from recipe.ivgr.eval.reference import REGEX_MME_REALWORLD
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _rel,
    _text,
    _tsv_image,
    _tsv_options,
    split_embedded_options,
)
from recipe.ivgr.eval.spec import BenchmarkSpec
from reward_score.choices import option_texts


def read_mme_realworld(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.json", "*.tsv", "*.parquet")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _mme_item(*pair, path, root))


def _mme_item(number: int, row: dict, path: Path, root: Path) -> RawItem:
    if "Answer choices" in row or "Ground truth" in row:  # official JSON
        options = option_texts(list(row.get("Answer choices") or []))
        question, _, instruction = split_embedded_options(_text(row.get("Text")))
        qid = _text(row.get("Question_id")) or str(number)
        image = _text(row.get("Image"))
        images = [_rel(root / image, root)] if image else []
        task, subtask, category = (_text(row.get(k)) or None for k in ("Task", "Subtask", "Category"))
        source_answer = row.get("Ground truth")
    else:  # VLMEvalKit TSV
        options = _tsv_options(row)
        question, _, instruction = split_embedded_options(_text(row.get("question")))
        qid = _text(row.get("index")) or str(number)
        images = _tsv_image(row)
        task = _text(row.get("l2-category")) or None
        subtask = category = _text(row.get("category")) or None
        source_answer = row.get("answer")
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}: {qid}")
    return RawItem(
        source_id=qid, question=question, images=images, options=options,
        correct=_mc_from_letter(options, source_answer, qid), subset=task,
        category="/".join(x for x in (subtask, category) if x) if category != subtask else subtask,
        meta={"task": task, "subtask": subtask, "category": category, "instruction": instruction,
              "source_file": path.name},
    )


SPEC = BenchmarkSpec("mme_realworld_lite", "MME-RW-L", reader=read_mme_realworld, reference=REGEX_MME_REALWORLD)
