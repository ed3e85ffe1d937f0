"""`validate` and `inspect` for SFT Parquet files (`data_prep.sft`); reached through
`python -m data_prep.validate FILE` / `python -m data_prep.inspect FILE`, which hand a file with a
`messages` column over to `validate_sft` / `inspect_sft`.

validate: schema (`SFT_SCHEMA`), unique non-empty `sample_id`, known `stream`, messages
`system, user, assistant` with one `<image>` per image in the user turn, every image embedded with
positive `min_pixels <= max_pixels`, the assistant turn a valid target for its stream
(`data_prep.sft.check_response`: format, boxes in grounded / none in textual) whose `<answer>` is the
`answer` column, every box inside the model frame of the first image (resized pixels at the stored
bounds for qwen2_5_vl, 0-1000 for qwen3_vl), and (for the decoded sample of rows) the first image's
size equal to `image_size`.

inspect: rows per data source and stream, boxes per grounded response, response length (characters),
image tokens per image at the stored bounds, and the longest-side histogram of the first images.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from data_prep.prompts import count_placeholders
from data_prep.schema import RecordError
from data_prep.sft import SFT_SCHEMA, check_response
from reward_score.frames import get_frame, resized_size
from reward_score.parsing import parse_boxes
from reward_score.streams import SFT_STREAMS

_ROLES = ["system", "user", "assistant"]


def _frame_limit(row: dict) -> tuple[float, float] | None:
    frame = row["box_frame"]
    try:
        spec = get_frame(frame)
        if spec.relative:
            return spec.grid, spec.grid
        image = row["images"][0]
        return resized_size(*row["image_size"], frame, image["min_pixels"], image["max_pixels"])
    except (ValueError, TypeError, IndexError, KeyError):
        return None


def check_sft_row(row: dict, n: int, seen: set[str], report, decode: bool) -> None:
    """Every check of one SFT row, problems added to `report` (a `data_prep.validate.Report`)."""
    sid = row["sample_id"] or ""
    where = f"row {n} ({sid or '<no id>'})"
    if not sid:
        report.add("empty_sample_id", n, where)
    elif sid in seen:
        report.add("duplicate_sample_id", n, where)
    seen.add(sid)
    if row["stream"] not in SFT_STREAMS:
        report.add("bad_stream", n, f"{where}: {row['stream']!r}")
        return
    messages = row["messages"] or []
    if [m["role"] for m in messages] != _ROLES:
        report.add("bad_roles", n, f"{where}: {[m['role'] for m in messages]}")
        return
    images = row["images"] or []
    if not images:
        report.add("no_image", n, where)
    if count_placeholders(messages[:2]) != len(images) or count_placeholders(messages[2:]):
        report.add("placeholder_mismatch", n,
                   f"{where}: {count_placeholders(messages)} <image> for {len(images)} images")
    for position, image in enumerate(images):
        if not image["bytes"]:
            report.add("image_no_data", n, f"{where}: image {position} not embedded")
        lo, hi = image["min_pixels"], image["max_pixels"]
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi):
            report.add("bad_pixel_bounds", n, f"{where}: image {position} min/max pixels {lo}/{hi}")
    response = messages[2]["content"] or ""
    try:
        answer = check_response(response, row["stream"])
    except RecordError as err:
        report.add(err.reason, n, f"{where}: {err.detail}")
        return
    if answer != (row["answer"] or "").strip():
        report.add("answer_mismatch", n, f"{where}: <answer> {answer!r} vs answer column {row['answer']!r}")
    limit = _frame_limit(row)
    if limit is None:
        report.add("bad_frame_or_size", n, f"{where}: box_frame {row['box_frame']!r}, image_size {row['image_size']}")
    elif row["stream"] == "grounded":
        parsed = parse_boxes(response)
        if parsed.invalid:
            report.add("box_malformed", n, f"{where}: {dict(parsed.invalid)}")
        for box in parsed.valid:
            if box[0] < 0 or box[1] < 0 or box[2] > limit[0] or box[3] > limit[1]:
                report.add("box_outside_frame", n, f"{where}: {list(box)} outside {list(limit)} ({row['box_frame']})")
    if decode and images and images[0]["bytes"]:
        report.decoded += 1
        try:
            with Image.open(io.BytesIO(images[0]["bytes"])) as image:
                image.load()
                size = list(image.size)
        except (OSError, ValueError, SyntaxError) as err:
            report.add("image_corrupt", n, f"{where}: {type(err).__name__}: {err}"[:200])
            return
        if size != list(row["image_size"] or []):
            report.add("image_size_mismatch", n, f"{where}: file {size} vs image_size {row['image_size']}")


def validate_sft(path: Path, decode: str = "sample", sample_rows: int = 256):
    """Validate an SFT Parquet; returns a `data_prep.validate.Report`."""
    from data_prep.validate import Report

    report = Report()
    schema = pq.read_schema(path)
    for expected in SFT_SCHEMA:
        if expected.name not in schema.names:
            report.add("schema_missing_column", None, expected.name)
        elif not schema.field(expected.name).type.equals(expected.type):
            report.add("schema_type_mismatch", None, f"{expected.name}: {schema.field(expected.name).type} != "
                                                     f"{expected.type}")
    if not report.ok:
        return report
    parquet = pq.ParquetFile(path)
    stride = max(1, parquet.metadata.num_rows // sample_rows) if decode == "sample" else 1
    seen: set[str] = set()
    n = 0
    for batch in parquet.iter_batches(batch_size=32, columns=SFT_SCHEMA.names):
        for row in batch.to_pylist():
            check_sft_row(row, n, seen, report, decode == "all" or (decode == "sample" and n % stride == 0))
            n += 1
    report.rows = n
    return report


def inspect_sft(path: Path) -> dict[str, Any]:
    """Counts and distributions of an SFT Parquet (see the module docstring)."""
    from data_prep.inspect import _bucket, _quantiles

    sources, streams, buckets = Counter(), Counter(), Counter()
    boxes, chars, tokens = [], [], []
    rows = 0
    columns = ["data_source", "stream", "box_frame", "image_size", "messages", "images"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=32, columns=columns):
        for row in batch.to_pylist():
            rows += 1
            sources[row["data_source"]] += 1
            streams[row["stream"]] += 1
            response = row["messages"][-1]["content"] or ""
            chars.append(len(response))
            if row["stream"] == "grounded":
                boxes.append(len(parse_boxes(response).valid))
            if row["image_size"]:
                buckets[_bucket(max(row["image_size"]))] += 1
                image = (row["images"] or [{}])[0]
                spec = get_frame(row["box_frame"])
                with_bounds = resized_size(*row["image_size"], row["box_frame"], image.get("min_pixels"),
                                           image.get("max_pixels"))
                tokens.append(with_bounds[0] * with_bounds[1] // spec.resize_factor ** 2)
    return {"file": str(path), "kind": "sft", "rows": rows, "data_sources": dict(sorted(sources.items())),
            "streams": dict(sorted(streams.items())), "boxes_per_grounded_response": _quantiles(boxes),
            "response_chars": _quantiles(chars), "image_tokens_first_image": _quantiles(tokens),
            "longest_side": dict(sorted(buckets.items()))}


def print_inspect_sft(path: Path, as_json: bool) -> int:
    report = inspect_sft(path)
    if as_json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['file']}: {report['rows']} SFT rows")
    for key in ("data_sources", "streams", "longest_side"):
        print(f"  {key}: {report[key]}")
    for key in ("boxes_per_grounded_response", "response_chars", "image_tokens_first_image"):
        print(f"  {key}: {report[key]}")
    return 0
