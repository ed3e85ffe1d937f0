"""Readers for the iVGR paper's chart and multidisciplinary results table: ChartQA, AI2D, WeMath,
MMStar, MMMU, MMK12, from their public release formats into `sources.RawItem`s.

| name | public format read (`--input`: files or a folder) |
|---|---|
| `chartqa` | HuggingFaceM4/ChartQA test Parquet (`image`, `query`, `label` list, `human_or_machine` 0/1), lmms-lab/ChartQA (`question`, `answer`, `type` human_test/augmented_test), or a VLMEvalKit TSV |
| `ai2d` | lmms-lab/ai2d Parquet (`question`, `options` list, `answer` = option index) or the VLMEvalKit `AI2D_TEST` TSV (`A-D`, letter answer) |
| `wemath` | We-Math testmini: `testmini.json` (`ID, split, knowledge concept, question, option "A. ..; B. ..", answer, key, image_path`; images under `--image-root`) or its Parquet (`image_path` embedded) |
| `mmstar` | Lin-Chen/MMStar Parquet (`index, question` with inline `Options: A: .., B: ..`, `answer, category, l2_category, image`) or the VLMEvalKit TSV |
| `mmmu` | MMMU/MMMU Parquet shards (`id, question, options` (a list literal), `answer, image_1..image_7, question_type, subfield`); the paper's number is the validation split |
| `mmk12` | FanqingM/MMK12 test Parquet/JSONL (`id, subject, question, answer, image`); a letter answer with options in the question is multiple choice, anything else is compared by the reward's math rules |

Scoring (report.py / scoring.py): ChartQA relaxed accuracy (pix2struct's rule: a number within 5 %
of a numeric label, else case-insensitive exact match), AI2D / MMStar / MMMU multiple choice by
option letter or text, MMMU open questions and MMK12 through `reward_score.answers.match_answer`,
WeMath's strict and loose scores over its multi-step problems.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _clean,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_image,
    _tsv_options,
    split_embedded_options,
)
from reward_score.choices import LETTER, LETTERS, letter_of


def _image_of(row: dict, path: Path, *keys: str) -> list[Any]:
    if path.suffix.lower() == ".tsv":
        return _tsv_image(row)
    for key in keys:
        value = _clean(row.get(key))
        if value is not None and value != "":
            return [value]
    return []


def _list_of(value: Any) -> list[str] | None:
    """A list column that may be stored as a Python / JSON list literal string."""
    value = _clean(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [text] if text else None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return [text]
    return [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else [str(value)]


# --- ChartQA -------------------------------------------------------------------------------------
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


# --- AI2D ----------------------------------------------------------------------------------------
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


# --- MMStar --------------------------------------------------------------------------------------
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


# --- MMMU ----------------------------------------------------------------------------------------
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


# --- WeMath --------------------------------------------------------------------------------------
_WEMATH_OPTION = re.compile(rf"(?:^|;\s*)({LETTER})\.\s*")


def wemath_options(text: str) -> list[str] | None:
    """We-Math's "A. 3 cm; B. 4 cm; C. 5 cm" -> ["3 cm", "4 cm", "5 cm"] (letters must run A, B, ...)."""
    marks = list(_WEMATH_OPTION.finditer(text or ""))
    if len(marks) < 2 or [m.group(1) for m in marks] != list(LETTERS[: len(marks)]):
        return None
    return [text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip().rstrip(";").strip()
            for i, m in enumerate(marks)]


def read_wemath(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.json", "*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _wemath_item(*pair, path))


def _wemath_item(number: int, row: dict, path: Path) -> RawItem:
    group = _text(row.get("ID"))
    key = _text(row.get("key"))
    if not group or not key:
        raise RowError("malformed_row", f"{path.name}:{number}: WeMath rows need ID and key")
    options = wemath_options(_text(row.get("option")))
    if not options:
        raise RowError("no_options", f"{group}@{key}")
    image = _clean(row.get("image_path"))
    if image is None:
        image = _clean(row.get("image"))
    steps = key.split("_")[0] if "_" in key else key  # 2steps, 3steps, or the one-step key
    return RawItem(source_id=f"{group}@{key}", question=_text(row.get("question")),
                   images=[image] if image is not None else [], options=options,
                   correct=_mc_from_letter(options, row.get("answer"), group), subset=steps, category=key,
                   meta={"ID": group, "key": key, "knowledge_concept": _clean(row.get("knowledge concept")),
                         "split": _clean(row.get("split")), "source_file": path.name})


# --- MMK12 ---------------------------------------------------------------------------------------
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


READERS = {"chartqa": read_chartqa, "ai2d": read_ai2d, "wemath": read_wemath, "mmstar": read_mmstar,
           "mmmu": read_mmmu, "mmk12": read_mmk12}
