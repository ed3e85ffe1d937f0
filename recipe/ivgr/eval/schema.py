"""The eval Parquet schema (one row per benchmark question) and its read side.

Written by `recipe.ivgr.eval.converter` (public formats -> this schema), read by the runner.

Columns (`EVAL_SCHEMA`)
-----------------------
- `item_id` (string, unique in a file): `<benchmark>:<source id>`.
- `benchmark` (string): registry name (`recipe.ivgr.eval.benchmarks.BENCHMARKS`), e.g. `vstar`, `hrbench4k`.
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
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.schema import IMAGE  # the Arrow image struct datasets' Image feature reads

EVAL_SCHEMA_VERSION = "2"  # 2: answers
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
        ("images", pa.list_(IMAGE)),
        ("image_size", pa.list_(pa.int32())),
        ("gt_boxes", pa.list_(pa.list_(pa.float64()))),
        ("meta", pa.string()),
    ],
    metadata={"ivgr.eval_schema_version": EVAL_SCHEMA_VERSION},
)
REQUIRED_COLUMNS = ("item_id", "benchmark", "question", "answer", "images")


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
    """Number of items in an eval Parquet (from its footer)."""
    return check_eval_file(path).metadata.num_rows
