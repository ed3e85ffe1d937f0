"""Shared machinery of the converters: CLI options, streaming readers, image loading, the run loop.

A converter is a small module with a reader (yielding `(row_id, raw_row)` pairs, streamed from
Parquet row groups or JSONL lines) and a function turning one raw row into a `Sample` (or raising
an error with a `reason`). `run()` does the rest: `--limit`, tqdm progress, per-row error
capture into the rejects file, the atomic writer and the printed summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.boxes import BOX_FORMATS, BoxError, prepare_boxes, scale_boxes
from data_prep.images import (
    MIN_SIDE,
    ImageError,
    ImageItem,
    safe_relative_path,
    size_of_bytes,
    size_of_file,
    upscale_to_min_side,
)
from data_prep.prompts import BOX_FRAMES
from data_prep.schema import RecordError, Sample
from data_prep.writer import RecordWriter
from reward_score.answers import ANSWER_TYPES

ROW_ERRORS = (BoxError, ImageError, RecordError)


class BadRow:
    """A source row that could not even be parsed (e.g. invalid JSON); the run loop rejects it."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail


# -- command line -----------------------------------------------------------------------------
def base_parser(prog: str, description: str, *, default_embed: bool = False) -> argparse.ArgumentParser:
    """Options every converter shares."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--input", required=True, nargs="+", help="source file(s)")
    parser.add_argument("--out", required=True, type=Path, help="output .parquet (rejects/summary go next to it)")
    parser.add_argument("--limit", type=int, default=None, help="read at most this many source rows")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder that relative image paths are resolved against (default: the input's folder)")
    embed = parser.add_mutually_exclusive_group()
    embed.add_argument("--embed-images", dest="embed", action="store_true", default=default_embed,
                       help="store image bytes in the Parquet (needed by a plain verl run)")
    embed.add_argument("--no-embed-images", dest="embed", action="store_false",
                       help="store paths relative to the image root (small file; needs the recipe dataset)")
    parser.add_argument("--decode-images", action="store_true",
                        help="fully decode every image (catches truncated files; much slower)")
    parser.add_argument("--box-frame", choices=BOX_FRAMES, default="qwen2_5_vl",
                        help="model family whose box frame the grounded prompt describes")
    parser.add_argument("--row-group-rows", type=int, default=1000)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def add_box_format(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--box-format", choices=BOX_FORMATS, default=default,
                        help=f"format of the source's boxes (default {default}); see data_prep.boxes")


# -- readers ----------------------------------------------------------------------------------
def iter_parquet(paths: Sequence[str | Path], columns: Sequence[str] | None = None,
                 batch_size: int = 64) -> Iterator[tuple[str, dict]]:
    """Rows of Parquet files as dicts, streamed batch by batch; row id `<file name>:<row number>`."""
    for path in map(Path, paths):
        parquet = pq.ParquetFile(path)
        names = set(parquet.schema_arrow.names)
        wanted = [c for c in columns if c in names] if columns else None
        number = 0
        for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
            for row in batch.to_pylist():
                yield f"{path.name}:{number}", row
                number += 1


def iter_jsonl(paths: Sequence[str | Path]) -> Iterator[tuple[str, dict | BadRow]]:
    """Objects of JSONL files, line by line; row id `<file name>:<line number>` (1-based)."""
    for path in map(Path, paths):
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row_id = f"{path.name}:{number}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    yield row_id, BadRow("bad_json", str(err))
                    continue
                yield row_id, obj if isinstance(obj, dict) else BadRow("bad_json", "line is not a JSON object")


def parquet_rows(paths: Sequence[str | Path]) -> int:
    """Total row count from the Parquet footers (no data read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


# -- ids, answers -----------------------------------------------------------------------------
def content_id(*parts: Any) -> str:
    """Stable 16-hex-digit id from JSON-serializable parts (for sources without an id column)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha1(blob).hexdigest()[:16]


def image_identity(raw: Any) -> str:
    """What identifies an image inside a content id: its path, else a digest of its bytes."""
    if isinstance(raw, dict):
        if raw.get("path"):
            return str(raw["path"])
        raw = raw.get("bytes")
    if isinstance(raw, (bytes, bytearray)):
        return hashlib.sha1(raw).hexdigest()
    return str(raw)


_QUESTION_TYPES = {
    "multiple_choice": "choice", "multi_choice": "choice", "multiple-choice": "choice", "choice": "choice",
    "mc": "choice", "yes_no": "yes_no", "yes/no": "yes_no", "yesno": "yes_no", "binary": "yes_no",
    "number": "number", "numerical": "number", "numeric": "number", "counting": "number", "count": "number",
    "integer": "number", "float": "number", "math": "math", "free_form": "text", "free-form": "text",
    "open": "text", "open_ended": "text", "text": "text", "short_answer": "text",
}


def answer_type_of(declared: Any) -> str | None:
    """Our answer type for a source's declared question/answer type, or None when unknown."""
    if declared is None:
        return None
    text = str(declared).strip().lower()
    if text in ANSWER_TYPES:
        return text
    return _QUESTION_TYPES.get(text)


# -- images and samples -----------------------------------------------------------------------
class ImageLoader:
    """Turns a source's image reference into an `ImageItem` plus its ORIGINAL (width, height).

    Accepts a relative path string, raw bytes, or a dict with `bytes` and/or `path` (HF datasets
    / verl layout; bytes win). Paths are checked against `root` (see `images.safe_relative_path`).
    """

    def __init__(self, root: Path | None, *, embed: bool = False, decode: bool = False):
        self.root = root.resolve() if root is not None else Path(".").resolve()
        self.embed = embed
        self.decode = decode

    def load(self, raw: Any) -> tuple[ImageItem, tuple[int, int]]:
        path, data = None, None
        if isinstance(raw, dict):
            path, data = raw.get("path"), raw.get("bytes")
        elif isinstance(raw, (bytes, bytearray)):
            data = bytes(raw)
        elif isinstance(raw, str):
            path = raw
        elif raw is not None:
            raise ImageError("image_no_data", f"unsupported image reference {type(raw).__name__}")
        if data is not None:
            size = size_of_bytes(bytes(data), str(path or "<bytes>"), self.decode)
            return ImageItem(bytes(data), str(path) if path else None), size
        if not path:
            raise ImageError("image_no_data", "neither bytes nor path")
        rel, full = safe_relative_path(str(path), self.root)
        size = size_of_file(full, self.decode)
        return ImageItem(full.read_bytes() if self.embed else None, rel), size

    def read_bytes(self, item: ImageItem) -> bytes:
        if item.data is not None:
            return item.data
        _, full = safe_relative_path(str(item.path), self.root)
        return full.read_bytes()


def build_sample(loader: ImageLoader, *, sample_id: str, data_source: str, question: Any, answer: Any,
                 raw_images: Iterable[Any] | None, raw_boxes: Iterable[Sequence[float]] | None = None,
                 box_format: str = "xyxy", answer_type: str | None = None,
                 choices: Sequence[Any] | None = None,
                 expected_size: Sequence[Any] | None = None) -> Sample:
    """A validated `Sample`: images loaded (header only), boxes converted to ORIGINAL pixels of the
    first image and checked (against `expected_size` too when the source states one), tiny images
    (shorter side < 28 px) upscaled together with their boxes."""
    if question is None or not str(question).strip():
        raise RecordError("empty_question")
    if answer is None or not str(answer).strip():
        raise RecordError("empty_answer")
    loaded = [loader.load(raw) for raw in (raw_images or [])]
    if not loaded:
        raise RecordError("no_image")
    size = loaded[0][1]
    if expected_size and None not in expected_size and tuple(map(int, expected_size)) != size:
        raise RecordError("image_size_mismatch", f"source says {list(expected_size)}, file is {list(size)}")
    boxes = prepare_boxes(raw_boxes, box_format, size)
    items: list[ImageItem] = []
    for position, (item, item_size) in enumerate(loaded):
        if min(item_size) < MIN_SIDE:
            data, new_size, sx, sy = upscale_to_min_side(loader.read_bytes(item), item_size)
            item = ImageItem(data, item.path)
            if position == 0:
                size, boxes = new_size, scale_boxes(boxes, sx, sy)
        items.append(item)
    return Sample(sample_id=sample_id, data_source=data_source, question=str(question), answer=str(answer),
                  images=items, image_size=(int(size[0]), int(size[1])), gt_boxes=boxes,
                  answer_type=answer_type, choices=[str(c) for c in choices] if choices else None)


# -- the run loop -----------------------------------------------------------------------------
def run(rows: Iterable[tuple[str, Any]], make_sample: Callable[[dict, str], Sample],
        args: argparse.Namespace, total: int | None = None, writer: RecordWriter | None = None) -> dict[str, Any]:
    """Convert `rows` into `args.out`; every dropped row gets a reason. Returns the summary.

    `writer` replaces the default `RecordWriter` (the SFT converters pass a `data_prep.sft.SftWriter`)."""
    if args.limit is not None:
        rows = islice(rows, args.limit)
        total = min(total, args.limit) if total is not None else args.limit
    start = time.perf_counter()
    writer = writer or RecordWriter(args.out, box_frame=args.box_frame, row_group_rows=args.row_group_rows)
    with writer:
        for row_id, raw in tqdm(rows, total=total, unit="row", disable=args.quiet, mininterval=1.0):
            if isinstance(raw, BadRow):
                writer.reject(row_id, raw.reason, raw.detail)
                continue
            try:
                sample = make_sample(raw, row_id)
            except ROW_ERRORS as err:
                writer.reject(row_id, err.reason, err.detail)
                continue
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                writer.reject(row_id, "malformed_row", f"{type(err).__name__}: {err}")
                continue
            writer.add(sample, row_id)
    seconds = time.perf_counter() - start
    summary = writer.summary()
    rate = summary["read"] / seconds if seconds > 0 else float("inf")
    print(f"[data_prep] {args.out}: read {summary['read']}, wrote {summary['written']}, rejected "
          f"{summary['rejected']} {summary['reasons']} in {seconds:.2f} s ({rate:.0f} rows/s)", file=sys.stderr)
    return summary


def default_image_root(args: argparse.Namespace) -> Path:
    """`--image-root`, else the folder of the first input file."""
    return args.image_root if args.image_root is not None else Path(args.input[0]).resolve().parent
