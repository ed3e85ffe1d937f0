"""Benchmark converters: the public formats of the paper's benchmarks -> ONE eval Parquet schema.

    python -m recipe.ivgr.eval.benchmarks NAME --input PATH [PATH ...] --out data/eval/NAME.parquet \
        [--image-root DIR] [--seed 0 | --no-shuffle] [--no-embed-images] [--box-format xyxy] [--limit N]
    python -m recipe.ivgr.eval.benchmarks --list

Eval schema (`EVAL_SCHEMA`, one row per benchmark question)
----------------------------------------------------------
- `item_id` (string, unique in a file): `<benchmark>:<source id>`.
- `benchmark` (string): registry name (`BENCHMARKS`), e.g. `vstar`, `hrbench4k`.
- `subset` (string | null): the group the benchmark's official score averages over (V*:
  direct_attributes / relative_position; HR-Bench: FSP / FCP; POPE: random / popular /
  adversarial; CV-Bench: ADE20K / COCO / Omni3D; MME-RW-Lite: Perception / Reasoning; TreeBench:
  Perception / Reasoning).
- `category` (string | null): finer task label (reported per category).
- `question` (string): question text without options, media placeholders or the source's own
  answer-format instruction (our prompts add theirs; the dropped instruction is kept in `meta`).
- `choices` (list<string> | null): option texts in the order SHOWN to the model (after shuffling).
- `answer` (string): ground truth. Multiple choice: the letter of the correct option in the shown
  order; yes/no: `yes` / `no`; otherwise the source's answer.
- `answers` (list<string> | null): every acceptable answer when the source lists several (ChartQA
  labels, MMMU open questions), `answer` first; a match with any of them is correct.
- `answer_text` (string | null): the correct option's text (multiple choice).
- `answer_type` (string): one of `reward_score.answers.ANSWER_TYPES` (`choice`, `yes_no`, `number`,
  `math`, `text`).
- `source_answer` (string): the answer as the source wrote it (its letter before shuffling).
- `choice_order` (list<int32> | null): shown option i is source option `choice_order[i]`.
- `shuffle_seed` (int64 | null): seed of the option shuffle (null: source order kept). The
  permutation of an item depends only on (seed, item_id), so it is reproducible and does not
  change when other items are added or removed.
- `images` (list<struct<bytes, path>>): embedded bytes (win when set) or a path RELATIVE to the
  image root (`data_prep.images`).
- `image_size` (list<int32> | null): ORIGINAL `[width, height]` of the first image; null when the
  image could not be read at conversion time (the evaluation then counts `missing_image`).
- `gt_boxes` (list<list<float64>>): ground-truth boxes `[x1, y1, x2, y2]` in ORIGINAL pixels of
  the first image (V*, TreeBench); empty when the benchmark has none.
- `meta` (string): JSON object with source fields kept for audit (source index, file, cycle, ...).

Multiple-choice options are shuffled by default (`--seed 0`) because some sources always list the
correct option first (V*: `options[0]`); peer evaluations that forgot to shuffle over-report
(DeepEyes PR #66). Answers are later compared by letter AND by option text.

Input formats accepted per benchmark (`--input`; a file or a folder):

| name | public formats |
|---|---|
| `vstar` | the V* folder (`direct_attributes/`, `relative_position/`: image + JSON with `question`, `options` (correct first), `bbox` [x, y, w, h]) or its `test_questions.jsonl` |
| `hrbench4k`, `hrbench8k` | `hr_bench_{4k,8k}.tsv` (VLMEvalKit TSV: `index, question, A-D, answer, category, cycle_category, image` base64), or a Parquet/JSONL with those columns |
| `pope` | lmms-lab/POPE Parquet (`question_id, question, answer, category, image`), the original `coco_pope_{random,popular,adversarial}.json` lines (`question_id, image, text, label`; images under `--image-root`), or a VLMEvalKit TSV |
| `mme_realworld_lite` | the official JSON (`Question_id, Image, Text, Answer choices, Ground truth, Task, Subtask, Category`) or a VLMEvalKit TSV |
| `realworldqa` | xai-org/RealworldQA Parquet (`image, question, answer`; options embedded in the question) or a VLMEvalKit TSV |
| `cvbench2d`, `cvbench3d` | nyu-visionx/CV-Bench Parquet/JSONL (`idx, type, task, image, question, choices, answer, source`); rows of the other type are skipped |
| `treebench` | the TreeBench TSV (VLMEvalKit layout, `A-E`, `category`, boxes in `target_instances`/`bbox`) |

VLMEvalKit TSVs may store an image only once and refer to it from other rows by its `index`; the
reader resolves such references. Every dropped source row gets a reason in
`OUT.summary.json`; unreadable images and unusable GT boxes keep the row (the evaluation counts
the item as `missing_image` / without GT boxes), so the benchmark's denominator never shrinks.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from recipe.ivgr.eval.reasoning_benchmarks import READERS as REASONING_READERS
from recipe.ivgr.eval.sources import (  # noqa: F401  (RawItem ... are this module's public API too)
    B64,
    RawItem,
    RowError,
    SkipRow,
    _clean,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _text,
    _tsv_image,
    _tsv_options,
    read_vlmeval_tsv,
    split_embedded_options,
    strip_instruction,
)
from reward_score.choices import LETTERS, letter_of, option_texts

EVAL_SCHEMA_VERSION = "2"  # 2: answers
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
EVAL_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        ("benchmark", pa.string()),
        ("subset", pa.string()),
        ("category", pa.string()),
        ("question", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("answer_text", pa.string()),
        ("answer_type", pa.string()),
        ("source_answer", pa.string()),
        ("choice_order", pa.list_(pa.int32())),
        ("shuffle_seed", pa.int64()),
        ("images", pa.list_(_IMAGE)),
        ("image_size", pa.list_(pa.int32())),
        ("gt_boxes", pa.list_(pa.list_(pa.float64()))),
        ("meta", pa.string()),
    ],
    metadata={"ivgr.eval_schema_version": EVAL_SCHEMA_VERSION},
)
REQUIRED_COLUMNS = ("item_id", "benchmark", "question", "answer", "images")


# --------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BenchmarkSpec:
    """What a benchmark is and how its official score is computed.

    `metric`: `accuracy` (micro mean over items), `subset_mean` (mean of the per-subset accuracies,
    the official HR-Bench and CV-Bench-2D scores), `f1` (F1 of the "yes" class, VLMEvalKit's POPE
    "Overall"; accuracy is reported too) or `wemath` (We-Math's strict score over its multi-step
    problems; the loose score and the four-dimensional counts are reported too).
    """

    name: str
    title: str  # column name in the iVGR paper's result tables
    metric: str = "accuracy"
    answer_type: str = "choice"
    has_boxes: bool = False
    reader: str = ""  # name of the converter function below (or in reasoning_benchmarks)
    rule: str = ""  # "relaxed": ChartQA's relaxed accuracy instead of the generic answer rules


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "vstar": BenchmarkSpec("vstar", "V*", has_boxes=True, reader="vstar"),
    "hrbench4k": BenchmarkSpec("hrbench4k", "HR4K", metric="subset_mean", reader="hrbench"),
    "hrbench8k": BenchmarkSpec("hrbench8k", "HR8K", metric="subset_mean", reader="hrbench"),
    "mme_realworld_lite": BenchmarkSpec("mme_realworld_lite", "MME-RW-L", reader="mme_realworld"),
    "pope": BenchmarkSpec("pope", "POPE", metric="f1", answer_type="yes_no", reader="pope"),
    "realworldqa": BenchmarkSpec("realworldqa", "RWQA", reader="realworldqa"),
    "cvbench2d": BenchmarkSpec("cvbench2d", "CV-2D", metric="subset_mean", reader="cvbench"),
    "cvbench3d": BenchmarkSpec("cvbench3d", "CV-3D", reader="cvbench"),
    "treebench": BenchmarkSpec("treebench", "TreeBench", has_boxes=True, reader="treebench"),
    # the paper's chart and multidisciplinary table; readers in reasoning_benchmarks.py
    "chartqa": BenchmarkSpec("chartqa", "ChartQA", answer_type="text", reader="chartqa", rule="relaxed"),
    "ai2d": BenchmarkSpec("ai2d", "AI2D", reader="ai2d"),
    "wemath": BenchmarkSpec("wemath", "WeMath", metric="wemath", reader="wemath"),
    "mmstar": BenchmarkSpec("mmstar", "MMStar", reader="mmstar"),
    "mmmu": BenchmarkSpec("mmmu", "MMMU", reader="mmmu"),
    "mmk12": BenchmarkSpec("mmk12", "MMK12", answer_type="math", reader="mmk12"),
    # your own held-out split (data_prep.generic lines or a record Parquet); boxes when the data has them
    "generic": BenchmarkSpec("generic", "Own", answer_type="text", has_boxes=True, reader="generic"),
}
# Column order of the iVGR paper's main results table (fine-grained and general VQA) and of its
# tool-assisted inference table.
PAPER_MAIN = ("vstar", "hrbench4k", "hrbench8k", "mme_realworld_lite", "pope", "realworldqa", "cvbench2d", "cvbench3d")
PAPER_TOOL = ("vstar", "hrbench4k", "hrbench8k")
PAPER_REASONING = ("chartqa", "ai2d", "wemath", "mmstar", "mmmu", "mmk12")  # the second table of §2.6


def spec_of(name: str | None) -> BenchmarkSpec:
    """The registered spec, or a plain-accuracy spec for an unregistered benchmark name."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    return BenchmarkSpec(str(name or "custom"), str(name or "custom"), reader="")


# --------------------------------------------------------------------------- option order

def shuffle_order(n: int, seed: int | None, item_id: str) -> list[int]:
    """Permutation of range(n) for one item: depends only on (seed, item_id); identity when seed is None.

    Python's `random.Random(str)` hashes the string with SHA-512 (independent of PYTHONHASHSEED),
    so the order is the same on every machine and run.
    """
    order = list(range(n))
    if seed is not None and n > 1:
        random.Random(f"ivgr-eval:{seed}:{item_id}").shuffle(order)
    return order


# --- V* -----------------------------------------------------------------------------------------
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def read_vstar(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    """V*: the benchmark folder (two subfolders of image + JSON pairs) or `test_questions.jsonl`."""
    for path in inputs:
        if path.is_dir():
            subdirs = [d for d in sorted(path.iterdir()) if d.is_dir()] or [path]
            annotations = [anno for sub in subdirs for anno in sorted(sub.glob("*.json"))]
            yield from _each(annotations, lambda anno: _vstar_from_json(anno, root))
        else:
            yield from _each(_read_rows(path), lambda row, path=path: _vstar_from_question_line(row, path, root))


def _vstar_image_beside(anno: Path) -> Path | None:
    for suffix in _IMAGE_SUFFIXES + tuple(s.upper() for s in _IMAGE_SUFFIXES):
        candidate = anno.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise RowError("image_outside_root", f"{path} is not under --image-root {root}") from None


def _vstar_boxes(anno: dict) -> list[Any]:
    boxes = anno.get("bbox") or []
    if boxes and not isinstance(boxes[0], (list, tuple)):
        boxes = [boxes]
    return list(boxes)


def _vstar_from_json(anno_path: Path, root: Path) -> RawItem:
    try:
        anno = json.loads(anno_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RowError("bad_json", f"{anno_path.name}: {err}") from None
    subset = anno_path.parent.name
    stem = f"{subset}/{anno_path.stem}"
    image = _vstar_image_beside(anno_path)
    options = [str(o).strip() for o in anno.get("options") or []]
    if len(options) < 2:
        raise RowError("no_options", stem)
    return RawItem(
        source_id=stem, question=_text(anno.get("question")),
        images=[_rel(image, root)] if image is not None else [_rel(anno_path.with_suffix(".jpg"), root)],
        options=options, correct=0,  # V* lists the correct option first
        subset=subset, category=subset, boxes=_vstar_boxes(anno), box_format="xywh",
        meta={"target_object": anno.get("target_object"), "source_file": anno_path.name},
    )


def _vstar_from_question_line(row: dict, path: Path, root: Path) -> RawItem:
    if "__error__" in row:
        raise RowError("bad_json", row["__error__"])
    image = _text(row.get("image"))
    question, options, instruction = split_embedded_options(_text(row.get("text") or row.get("question")))
    if not options:
        raise RowError("no_options", f"{path.name}: {image}")
    category = _text(row.get("category")) or (image.split("/")[0] if "/" in image else None)
    boxes: list[Any] = []
    anno_path = (path.parent / image).with_suffix(".json")
    meta: dict[str, Any] = {"question_id": row.get("question_id"), "instruction": instruction}
    if anno_path.exists():  # the folder layout puts the bbox annotations beside the images
        try:
            boxes = _vstar_boxes(json.loads(anno_path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, OSError) as err:
            meta["box_error"] = str(err)[:200]
    image_rel = _rel(path.parent / image, root) if image else ""
    # the same id as the folder layout (subfolder/stem), so both formats give identical items and shuffles
    source_id = str(Path(image).with_suffix("")) if image else str(row.get("question_id"))
    return RawItem(
        source_id=source_id, question=question, images=[image_rel] if image_rel else [],
        options=options, correct=_mc_from_letter(options, row.get("label"), image),
        subset=category, category=category, boxes=boxes, box_format="xywh", meta=meta,
    )


# --- HR-Bench -------------------------------------------------------------------------------------
_HR_SUBSETS = {"single": "FSP", "single_instance": "FSP", "fsp": "FSP", "cross": "FCP", "cross_instance": "FCP",
               "fcp": "FCP"}


def read_hrbench(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.tsv", "*.parquet")):
        yield from _each(_read_rows(path), lambda row, path=path: _hrbench_item(row, path))


def _hrbench_item(row: dict, path: Path) -> RawItem:
    options = _tsv_options(row)
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}: index {row.get('index')}")
    category = _text(row.get("category"))
    return RawItem(
        source_id=_text(row.get("index")), question=_text(row.get("question")), images=_tsv_image(row),
        options=options, correct=_mc_from_letter(options, row.get("answer"), _text(row.get("index"))),
        subset=_HR_SUBSETS.get(category.lower(), category or None), category=category or None,
        meta={"index": _text(row.get("index")), "cycle_category": _text(row.get("cycle_category")) or None,
              "source_file": path.name},
    )


# --- POPE -----------------------------------------------------------------------------------------
_POPE_FILE = re.compile(r"pope_(random|popular|adversarial)", re.IGNORECASE)


def read_pope(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.json", "*.jsonl", "*.tsv")):
        file_category = _POPE_FILE.search(path.name)
        # the original POPE files are JSON lines named .json
        rows = _json_lines_or_list(path) if path.suffix.lower() == ".json" else _read_rows(path)
        yield from _each(enumerate(rows), lambda pair, path=path, fc=file_category: _pope_item(*pair, path, fc, root))


def _pope_item(number: int, row: dict, path: Path, file_category: re.Match | None, root: Path) -> RawItem:
    if "__error__" in row:
        raise RowError("bad_json", row["__error__"])
    question = _text(row.get("question") or row.get("text"))
    answer = _text(row.get("answer") if row.get("answer") is not None else row.get("label")).lower()
    if answer not in ("yes", "no"):
        raise RowError("bad_answer", f"{path.name}:{number}: {answer!r}")
    category = _text(row.get("category")) or (file_category.group(1).lower() if file_category else None)
    image = row.get("image")
    if isinstance(image, str) and path.suffix.lower() == ".tsv":
        images = _tsv_image(row)
    elif isinstance(image, str):
        images = [_rel(_under(root, image), root)]
    else:
        images = [image] if image is not None else []
    qid = _text(row.get("question_id") or row.get("id") or row.get("index")) or str(number)
    return RawItem(
        source_id=f"{category or 'all'}/{qid}", question=question, images=images, answer=answer,
        answer_type="yes_no", subset=category, category=category,
        meta={"question_id": qid, "image_source": _clean(row.get("image_source")), "source_file": path.name},
    )


def _under(root: Path, relative: str) -> Path:
    return root / relative


def _json_lines_or_list(path: Path) -> Iterator[dict]:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        yield from (row for row in json.loads(text) if isinstance(row, dict))
        return
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                yield {"__error__": f"{path.name}:{number}: {err}"}


# --- MME-RealWorld-Lite ---------------------------------------------------------------------------
def read_mme_realworld(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.json", "*.tsv", "*.parquet")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _mme_item(*pair, path, root))


def _mme_item(number: int, row: dict, path: Path, root: Path) -> RawItem:
    if "Answer choices" in row or "Ground truth" in row:  # official JSON
        options = option_texts(list(row.get("Answer choices") or []))
        question, _, instruction = split_embedded_options(_text(row.get("Text")))
        qid = _text(row.get("Question_id")) or str(number)
        image = _text(row.get("Image"))
        images = [_rel(_under(root, image), root)] if image else []
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


# --- RealWorldQA ----------------------------------------------------------------------------------
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


# --- CV-Bench -------------------------------------------------------------------------------------
def _read_cvbench(inputs: Sequence[Path], root: Path, wanted: str) -> Iterator[RawItem | RowError | SkipRow]:
    for path in _files(inputs, ("*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _cvbench_item(*pair, path, root, wanted))


def _cvbench_item(number: int, row: dict, path: Path, root: Path, wanted: str) -> RawItem:
    kind = _text(row.get("type")).upper()
    if kind and kind != wanted:
        raise SkipRow(kind)
    choices = row.get("choices")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            choices = None
    options = option_texts(list(choices or []))
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}:{number}")
    qid = _text(row.get("idx") if row.get("idx") is not None else row.get("index")) or str(number)
    image = row.get("image")
    if image is None and row.get("filename"):
        image = _rel(_under(path.parent, str(row["filename"])), root)
    question, _, instruction = split_embedded_options(_text(row.get("question")))
    return RawItem(
        source_id=qid, question=question, images=[image] if image is not None else [], options=options,
        correct=_mc_from_letter(options, row.get("answer"), qid), subset=_text(row.get("source")) or None,
        category=_text(row.get("task")) or None,
        meta={"idx": qid, "source_dataset": _clean(row.get("source_dataset")),
              "source_filename": _clean(row.get("source_filename")), "type": kind or None,
              "instruction": instruction, "source_file": path.name},
    )


def read_cvbench2d(inputs: Sequence[Path], root: Path) -> Iterator[RawItem]:
    return _read_cvbench(inputs, root, "2D")


def read_cvbench3d(inputs: Sequence[Path], root: Path) -> Iterator[RawItem]:
    return _read_cvbench(inputs, root, "3D")


# --- TreeBench ------------------------------------------------------------------------------------
_TREE_BOX_COLUMNS = ("target_instances", "bbox", "bboxes", "boxes", "gt_bbox")


def _tree_boxes(row: dict) -> list[Any]:
    for column in _TREE_BOX_COLUMNS:
        value = _clean(row.get(column))
        if value is None or value == "":
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                import ast

                try:
                    value = ast.literal_eval(value)
                except (ValueError, SyntaxError) as err:
                    raise RowError("box_malformed", f"{column}: {str(value)[:80]}") from err
        if isinstance(value, dict):
            value = [value]
        boxes = []
        for entry in value or []:
            if isinstance(entry, dict):
                entry = entry.get("bbox") or entry.get("box") or entry.get("bbox_2d")
            if entry is not None:
                boxes.append(entry)
        if boxes and not isinstance(boxes[0], (list, tuple)):
            boxes = [boxes]
        return boxes
    return []


def read_treebench(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.tsv", "*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _treebench_item(*pair, path))


def _treebench_item(number: int, row: dict, path: Path) -> RawItem:
    qid = _text(row.get("index")) or str(number)
    options = _tsv_options(row)
    if len(options) < 2:
        raise RowError("no_options", f"{path.name}: {qid}")
    category = _text(row.get("category")) or None
    question, _, instruction = split_embedded_options(_text(row.get("question")))
    try:
        boxes, box_error = _tree_boxes(row), None
    except RowError as err:
        boxes, box_error = [], err.detail
    return RawItem(
        source_id=qid, question=question, images=_tsv_image(row), options=options,
        correct=_mc_from_letter(options, row.get("answer"), qid),
        subset=category.split("/")[0] if category else None, category=category, boxes=boxes,
        meta={"index": qid, "instruction": instruction, "box_error": box_error, "source_file": path.name},
    )


# --- your own held-out split ----------------------------------------------------------------------
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


READERS: dict[str, Callable[[Sequence[Path], Path], Iterator[RawItem]]] = {
    "vstar": read_vstar, "hrbench": read_hrbench, "pope": read_pope, "mme_realworld": read_mme_realworld,
    "realworldqa": read_realworldqa, "treebench": read_treebench, "generic": read_generic,
}


def reader_for(name: str) -> Callable[[Sequence[Path], Path], Iterator[RawItem]]:
    if name == "cvbench2d":
        return read_cvbench2d
    if name == "cvbench3d":
        return read_cvbench3d
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    if spec.reader not in READERS:
        return REASONING_READERS[spec.reader]
    return READERS[spec.reader]


# ------------------------------------------------------------------------------- item -> row
@dataclass
class ConvertOptions:
    image_root: Path
    seed: int | None = 0  # None: keep the source's option order
    embed: bool = True
    box_format: str | None = None  # override the reader's box format


def _load_image(raw: Any, loader) -> tuple[dict, tuple[int, int] | None, str | None]:
    """(stored image struct, original size or None, failure reason or None)."""
    from data_prep.images import ImageError

    if isinstance(raw, B64):
        try:
            raw = base64.b64decode(str(raw), validate=False)
        except (binascii.Error, ValueError) as err:
            return {"bytes": None, "path": None}, None, f"image_corrupt: base64 {err}"
    try:
        item, size = loader.load(raw)
        return item.to_struct(), size, None
    except ImageError as err:
        if isinstance(raw, str):  # keep the reference: the image may be provided later
            return {"bytes": None, "path": raw}, None, f"{err.reason}: {err.detail}"[:300]
        if isinstance(raw, dict) and raw.get("path") and not raw.get("bytes"):
            return {"bytes": None, "path": str(raw["path"])}, None, f"{err.reason}: {err.detail}"[:300]
        data = raw.get("bytes") if isinstance(raw, dict) else raw
        return {"bytes": bytes(data) if data else None, "path": None}, None, f"{err.reason}: {err.detail}"[:300]


def to_row(benchmark: str, raw: RawItem, options: ConvertOptions, loader) -> tuple[dict, list[str]]:
    """The eval Parquet row for one raw item, plus the soft problems found (kept as reasons)."""
    from data_prep.boxes import BoxError, prepare_boxes
    from reward_score.answers import ANSWER_TYPES

    problems: list[str] = []
    item_id = f"{benchmark}:{raw.source_id}"
    question = raw.question.replace("<image>", "").strip()
    if not question:
        raise RowError("empty_question", item_id)
    images, size = [], None
    meta = {k: v for k, v in raw.meta.items() if v is not None}
    for position, ref in enumerate(raw.images):
        struct, item_size, failure = _load_image(ref, loader)
        images.append(struct)
        if position == 0:
            size = item_size
        if failure is not None:
            problems.append("missing_image")
            meta.setdefault("image_errors", []).append(failure)
    if not images:
        problems.append("missing_image")
        meta["image_errors"] = ["no image reference"]
    gt_boxes: list[list[float]] = []
    if raw.boxes:
        if size is None:
            problems.append("gt_boxes_without_image")
        else:
            try:
                gt_boxes = [[float(v) for v in b] for b in
                            prepare_boxes(raw.boxes, options.box_format or raw.box_format, size)]
            except BoxError as err:
                problems.append("gt_box_invalid")
                meta["box_error"] = f"{err.reason}: {err.detail}"[:300]
    choices = order = None
    answer_text = None
    seed = None
    if raw.options is not None:
        if raw.correct is None or not 0 <= raw.correct < len(raw.options):
            raise RowError("answer_not_in_options", item_id)
        if len(raw.options) > len(LETTERS):
            raise RowError("too_many_options", item_id)
        seed = options.seed
        order = shuffle_order(len(raw.options), seed, item_id)
        choices = [raw.options[i] for i in order]
        shown = order.index(raw.correct)
        answer, answer_text, answer_type = LETTERS[shown], raw.options[raw.correct], "choice"
        source_answer = LETTERS[raw.correct]
    else:
        answer = _text(raw.answer)
        if not answer:
            raise RowError("empty_answer", item_id)
        answer_type = raw.answer_type or "text"
        source_answer = answer
    if answer_type not in ANSWER_TYPES:
        raise RowError("bad_answer_type", f"{item_id}: {answer_type!r}")
    row = {
        "item_id": item_id, "benchmark": benchmark, "subset": raw.subset, "category": raw.category,
        "question": question, "choices": choices, "answer": answer, "answer_text": answer_text,
        "answers": ([answer] + [a for a in dict.fromkeys(map(str, raw.answers)) if a and a != answer]
                    if raw.options is None and raw.answers and len(set(raw.answers)) > 1 else None),
        "answer_type": answer_type, "source_answer": source_answer, "choice_order": order, "shuffle_seed": seed,
        "images": images, "image_size": [int(size[0]), int(size[1])] if size else None, "gt_boxes": gt_boxes,
        "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str),
    }
    return row, problems


# ------------------------------------------------------------------------------------- convert
def convert(benchmark: str, inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
            image_root: str | os.PathLike | None = None, seed: int | None = 0, embed: bool = True,
            box_format: str | None = None, limit: int | None = None, row_group_rows: int = 64,
            row_group_bytes: int = 64 << 20, progress: bool = False) -> dict:
    """Convert public benchmark files into `out` (eval schema); returns the summary (also written
    to `<out stem>.summary.json`). Written atomically: nothing appears unless the run completes.
    Row groups hold at most `row_group_rows` items or `row_group_bytes` of embedded images
    (8K-pixel benchmarks have 10-20 MB images), so memory stays bounded."""
    from tqdm import tqdm

    from data_prep.common import ImageLoader
    from data_prep.schema import image_root_metadata, resolve_image_root

    paths = [Path(p) for p in inputs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"input not found: {missing}")
    # the one image-root rule of every reader: --image-root, else the root stored in the file (a data_prep
    # record in path mode), else the input's folder
    root = (Path(image_root) if image_root is not None else paths[0] if paths[0].is_dir()
            else resolve_image_root(paths[0]) or paths[0].parent)
    loader = ImageLoader(root, embed=embed)
    options = ConvertOptions(image_root=root, seed=seed, embed=embed, box_format=box_format)
    reader = reader_for(benchmark)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    metadata = dict(EVAL_SCHEMA.metadata or {})
    metadata.update({b"ivgr.benchmark": benchmark.encode(), b"ivgr.shuffle_seed": str(seed).encode()})
    if not embed:  # path mode: the eval finds the images without --image-root (data_prep.schema.resolve_image_root)
        metadata.update(image_root_metadata(out, root))
    schema = EVAL_SCHEMA.with_metadata(metadata)
    counts: Counter = Counter()
    problems: Counter = Counter()
    reasons: Counter = Counter()
    subsets: Counter = Counter()
    rejects: list[dict] = []
    seen: set[str] = set()
    buffer: list[dict] = []
    buffer_bytes = 0
    from data_prep import streaming

    writer = streaming.writer(tmp, schema)
    files = [q for p in paths for q in ([p] if p.is_file() else sorted(p.iterdir()))]
    total = (sum(pq.ParquetFile(p).metadata.num_rows for p in files)
             if files and all(p.suffix == ".parquet" for p in files) else None)
    bar = tqdm(total=min(total, limit) if total is not None and limit is not None else total, unit="item",
               desc=benchmark, disable=not progress, mininterval=1.0)
    try:
        iterator = reader(paths, root)
        while limit is None or counts["written"] < limit:
            raw = next(iterator, None)
            if raw is None:
                break
            bar.update(1)
            if isinstance(raw, SkipRow):
                counts["skipped_other_split"] += 1
                continue
            counts["read"] += 1
            if isinstance(raw, RowError):  # the reader could not read this source row
                reasons[raw.reason] += 1
                rejects.append({"reason": raw.reason, "detail": raw.detail[:300]})
                continue
            try:
                row, soft = to_row(benchmark, raw, options, loader)
            except RowError as err:
                reasons[err.reason] += 1
                rejects.append({"reason": err.reason, "detail": err.detail[:300]})
                continue
            if row["item_id"] in seen:
                reasons["duplicate_id"] += 1
                rejects.append({"reason": "duplicate_id", "detail": row["item_id"]})
                continue
            seen.add(row["item_id"])
            problems.update(soft)
            subsets[row["subset"] or "-"] += 1
            buffer.append(row)
            buffer_bytes += sum(len(image.get("bytes") or b"") for image in row["images"])
            counts["written"] += 1
            if len(buffer) >= row_group_rows or buffer_bytes >= row_group_bytes:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                buffer, buffer_bytes = [], 0
        if buffer:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
        writer.close()
        summary = {
            "benchmark": benchmark, "output": out.name, "inputs": [str(p) for p in paths],
            "read": counts["read"], "written": counts["written"], "rejected": sum(reasons.values()),
            "skipped_other_split": counts["skipped_other_split"], "reasons": dict(sorted(reasons.items())),
            "kept_with_problems": dict(sorted(problems.items())), "subsets": dict(sorted(subsets.items())),
            "shuffle_seed": seed, "embedded_images": embed, "rejects": rejects[:50],
        }
        os.replace(tmp, out)
        bar.close()
    except BaseException:
        bar.close()
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    summary_path = out.with_name(out.name.removesuffix(".parquet") + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


# ---------------------------------------------------------------------------------- loading
def check_eval_file(path: str | os.PathLike) -> pq.ParquetFile:
    """Open an eval Parquet and check it has the eval schema's required columns."""
    parquet = pq.ParquetFile(path)
    names = set(parquet.schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: not an eval file (missing columns {missing}); convert it with "
                         f"`python -m recipe.ivgr.eval.benchmarks`")
    return parquet


def iter_eval_rows(path: str | os.PathLike, batch_size: int = 64, limit: int | None = None) -> Iterator[dict]:
    """Rows of an eval Parquet, streamed; missing optional columns default to None."""
    from data_prep import streaming

    parquet = check_eval_file(path)
    names = [f.name for f in EVAL_SCHEMA]
    count = 0
    for batch in streaming.open_parquet(path).iter_batches(
            batch_size=min(batch_size, streaming.batch_rows(parquet))):
        for row in batch.to_pylist():
            if limit is not None and count >= limit:
                return
            count += 1
            yield {name: row.get(name) for name in names} | {k: v for k, v in row.items() if k not in names}


def eval_file_rows(path: str | os.PathLike) -> int:
    return check_eval_file(path).metadata.num_rows


# ---------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.eval.benchmarks",
                                     description="Convert a public benchmark into the eval Parquet schema.")
    parser.add_argument("benchmark", nargs="?", choices=sorted(BENCHMARKS), help="benchmark name")
    parser.add_argument("--input", nargs="+", help="source file(s) or folder")
    parser.add_argument("--out", type=Path, help="output .parquet")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder image paths are relative to (default: the input folder / the file's folder); "
                             "with --no-embed-images it is stored in the output's metadata")
    parser.add_argument("--seed", type=int, default=0, help="option-shuffle seed (default 0)")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the source's option order")
    embed = parser.add_mutually_exclusive_group()
    embed.add_argument("--embed-images", dest="embed", action="store_true", default=True,
                       help="store image bytes in the Parquet (default)")
    embed.add_argument("--no-embed-images", dest="embed", action="store_false",
                       help="store image paths relative to --image-root")
    parser.add_argument("--box-format", choices=("xyxy", "xywh", "norm1", "norm1000"), default=None,
                        help="override the GT box format (V*: xywh, TreeBench: xyxy by default)")
    parser.add_argument("--limit", type=int, default=None, help="write at most N items")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.list or args.benchmark is None:
        for name, spec in BENCHMARKS.items():
            print(f"{name:20s} {spec.title:10s} metric={spec.metric:12s} boxes={'yes' if spec.has_boxes else 'no'}")
        return 0
    if not args.input or args.out is None:
        parser.error("--input and --out are required")
    summary = convert(args.benchmark, args.input, args.out, image_root=args.image_root,
                      seed=None if args.no_shuffle else args.seed, embed=args.embed,
                      box_format=args.box_format, limit=args.limit, progress=not args.quiet)
    print(f"[eval.benchmarks] {args.out}: read {summary['read']}, wrote {summary['written']}, rejected "
          f"{summary['rejected']} {summary['reasons']}, kept with problems {summary['kept_with_problems']}, "
          f"subsets {summary['subsets']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
