"""Check a record Parquet before training on it.

    python -m data_prep.validate FILE.parquet [--image-root DIR] [--decode all|sample|none]

Checks the fact columns against `data_prep.schema.RECORD_SCHEMA` (files of an older schema version
hold them too; their other columns are not read), then every row: unique non-empty `sample_id`,
known `kind` and `answer_type`, non-empty question/answer free of media placeholders (the prompts
place one `<image>` per image when they are rendered), `answers` (when set) starting with `answer`,
images present with bytes or a safe relative path, `image_size`, boxes (four finite numbers, inside
the image, x1 < x2 and y1 < y2 with sides >= 1 px, ORIGINAL pixels), grounded <=> boxes. Every path-mode
image file must exist and be non-empty on every row (a `stat`, no decode). Images are decoded
for a sample of rows (`--decode sample`, about 256 rows spread over the file, the default), every
row (`all`) or none; a decoded first image must match `image_size`.

Exit status 0 when no problem was found, 1 otherwise (with a report of counts and examples); a
file without rows fails (`empty_file`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep import streaming
from data_prep.boxes import MIN_SIDE_PX
from data_prep.images import ImageError, check_geometry, open_image, safe_relative_path
from data_prep.reporting import Report
from data_prep.prompts import MEDIA_PLACEHOLDERS
from data_prep.schema import RECORD_COLUMNS, RECORD_SCHEMA, missing_columns, record_facts, resolve_image_root
from reward_score.answers import ANSWER_TYPES
from reward_score.streams import KINDS

_EPS = 1e-6


def check_schema(path: Path, report: Report) -> bool:
    """True when every fact column of RECORD_SCHEMA exists with the right type (columns added in
    schema 2 may be missing from older files: read as null)."""
    schema = pq.read_schema(path)
    ok = True
    missing = set(missing_columns(schema.names))
    for expected in RECORD_SCHEMA:
        if expected.name in missing:
            report.add("schema_missing_column", None, expected.name)
            ok = False
        elif expected.name not in schema.names:
            continue
        elif not schema.field(expected.name).type.equals(expected.type):
            report.add("schema_type_mismatch", None,
                       f"{expected.name}: {schema.field(expected.name).type} != {expected.type}")
            ok = False
    return ok


def _check_boxes(row: dict, where: str, n: int, report: Report) -> None:
    size = row["image_size"] or []
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        report.add("bad_image_size", n, f"{where}: {size}")
        return
    width, height = size
    try:  # the training dataset's own rule: it could never resize such an image for the model
        check_geometry(width, height, where)
    except ImageError as err:
        report.add(err.reason, n, err.detail)
    for box in row["gt_boxes"] or []:
        values = list(box or [])
        if len(values) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            report.add("box_malformed", n, f"{where}: {values}")
            continue
        x1, y1, x2, y2 = values
        if x2 < x1 or y2 < y1:
            report.add("box_inverted", n, f"{where}: {values}")
        elif x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
            report.add("box_degenerate", n, f"{where}: {values}")
        elif x1 < -_EPS or y1 < -_EPS or x2 > width + _EPS or y2 > height + _EPS:
            report.add("box_outside", n, f"{where}: {values} outside {width}x{height}")


def _check_placeholders(row: dict, where: str, n: int, report: Report) -> None:
    """Question texts must carry no media placeholder: the rendered prompt places one `<image>` per image."""
    for column in ("question", "question_textual"):
        if MEDIA_PLACEHOLDERS.search(row.get(column) or ""):
            report.add("placeholder_in_question", n, f"{where}: {column}")


def check_row(row: dict, n: int, seen: set[str], report: Report, root: Path | None, decode: bool) -> None:
    where = report.check_sample_id(row["sample_id"] or "", n, seen)
    if row["kind"] not in KINDS:
        report.add("bad_kind", n, f"{where}: {row['kind']!r}")
    for column in ("question", "answer"):
        if not (row[column] or "").strip():
            report.add(f"empty_{column}", n, where)
    if row["answer_type"] is not None and row["answer_type"] not in ANSWER_TYPES:
        report.add("bad_answer_type", n, f"{where}: {row['answer_type']!r}")
    boxes = row["gt_boxes"] or []
    if row["kind"] == "grounded" and not boxes:
        report.add("grounded_without_boxes", n, where)
    if row["kind"] == "single" and boxes:
        report.add("single_with_boxes", n, where)
    _check_boxes(row, where, n, report)
    _check_placeholders(row, where, n, report)
    answers = row.get("answers")
    if answers is not None and (len(answers) < 2 or answers[0] != row["answer"]):
        report.add("answers_mismatch", n, f"{where}: answers {answers!r} must list answer {row['answer']!r} first")
    images = row["images"] or []
    if not images:
        report.add("no_image", n, where)
    for position, item in enumerate(images):
        if not (item or {}).get("bytes") and not (item or {}).get("path"):
            report.add("image_no_data", n, f"{where}: image {position}")
            continue
        try:
            if not item.get("bytes"):
                _, full = safe_relative_path(item["path"], root)
                try:
                    if full.stat().st_size == 0:
                        raise ImageError("image_empty", str(full))
                except (FileNotFoundError, NotADirectoryError):
                    raise ImageError("image_missing", str(full)) from None
            if decode:
                image = open_image(item, root)
                if position == 0 and list(image.size) != list(row["image_size"] or []):
                    report.add("image_size_mismatch", n,
                               f"{where}: file {list(image.size)} vs image_size {row['image_size']}")
        except ImageError as err:
            report.add(err.reason, n, f"{where}: image {position}: {err.detail}")
        except (ValueError, OSError) as err:  # never a traceback for one bad row
            report.add("image_unreadable", n, f"{where}: image {position}: {type(err).__name__}: {err}"[:300])
    if decode:
        report.decoded += 1


def validate(path: str | Path, image_root: str | Path | None = None, decode: str = "sample",
             sample_rows: int = 256, progress: bool = False) -> Report:
    """Validate the file at `path`; path-mode images resolve against `image_root` (default: the root
    its metadata names, else its folder)."""
    path = Path(path)
    report = Report()
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as err:
        report.add("unreadable_file", None, f"{path}: {err}")
        return report
    if "messages" in parquet.schema_arrow.names:  # an SFT file (data_prep.sft): its own checks
        from data_prep.sft_tools import validate_sft

        return validate_sft(path, decode, sample_rows)
    if not check_schema(path, report):
        return report
    root = resolve_image_root(path, image_root)
    total = parquet.metadata.num_rows
    stride = max(1, total // sample_rows) if decode == "sample" else 1
    seen: set[str] = set()
    n = 0
    bar = tqdm(total=total, unit="row", desc="validate", disable=not progress, mininterval=1.0)
    present = [c for c in RECORD_COLUMNS if c in parquet.schema_arrow.names]
    for batch in streaming.iter_batches(path, present):
        bar.update(batch.num_rows)
        for row in batch.to_pylist():
            decode_row = decode == "all" or (decode == "sample" and n % stride == 0)
            check_row(record_facts(row), n, seen, report, root, decode_row)
            n += 1
    bar.close()
    report.rows = n
    if n == 0:
        report.add("empty_file", None, f"{path} has no rows")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.validate", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--image-root", type=Path, default=None,
                        help="root of path-mode images (default: the root stored in the file's metadata, "
                             "else its folder)")
    parser.add_argument("--decode", choices=("all", "sample", "none"), default="sample")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    report = validate(args.file, args.image_root, args.decode, progress=not args.quiet)
    print(report.render(args.file))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
