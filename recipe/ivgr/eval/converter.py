"""Converting public benchmark files into the eval Parquet schema (`recipe.ivgr.eval.schema`).

    python -m recipe.ivgr.eval.benchmarks NAME --input PATH [PATH ...] --out data/eval/NAME.parquet \
        [--image-root DIR] [--seed 0 | --no-shuffle] [--no-embed-images] [--box-format xyxy] [--limit N]
    python -m recipe.ivgr.eval.benchmarks --list

The reader of each benchmark lives in its module (`recipe.ivgr.eval.benchmarks.<name>`); this module
turns the raw items into rows (images loaded, GT boxes to original xyxy pixels, options shuffled) and
writes them.

Multiple-choice options are shuffled by default (`--seed 0`) because some sources always list the
correct option first (V*: `options[0]`); peer evaluations that forgot to shuffle over-report
(DeepEyes PR #66). Answers are later compared by letter AND by option text.

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
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from recipe.ivgr.eval.benchmarks import BENCHMARKS, reader_for
from recipe.ivgr.eval.schema import EVAL_SCHEMA
from recipe.ivgr.eval.sources import B64, RawItem, RowError, SkipRow, _text
from reward_score.choices import LETTERS


def shuffle_order(n: int, seed: int | None, item_id: str) -> list[int]:
    """Permutation of range(n) for one item: depends only on (seed, item_id); identity when seed is None.

    Python's `random.Random(str)` hashes the string with SHA-512 (independent of PYTHONHASHSEED),
    so the order is the same on every machine and run.
    """
    order = list(range(n))
    if seed is not None and n > 1:
        random.Random(f"ivgr-eval:{seed}:{item_id}").shuffle(order)
    return order


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
            print(f"{name:20s} {spec.title:10s} metric={spec.metric.name:12s} boxes={'yes' if spec.has_boxes else 'no'}")
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
