"""`validate` and `inspect` for SFT Parquet files (`data_prep.sft`); reached through
`python -m data_prep.validate FILE` / `python -m data_prep.inspect FILE`, which hand a file with a
`messages` column over to `validate_sft` / `inspect_sft`.

validate: schema (`SFT_SCHEMA`), unique non-empty `sample_id`, known `stream`, messages
`system, user, assistant` with one `<image>` per image in the user turn, every image embedded with
positive `min_pixels <= max_pixels`, the assistant turn a valid target for its stream
(`data_prep.sft.check_response`: format, boxes in grounded / none in textual) whose `<answer>` is the
`answer` column, every box inside the model frame of the first image (resized pixels at the stored
bounds for qwen2_5_vl, 0-1000 for qwen3_vl), and, for the decoded rows (`--decode sample`: about
256 spread over the file; `all`: every row), EVERY image decoded and the first one's size equal to
`image_size`.

inspect: rows per data source and stream, boxes per grounded response, response length (characters),
image tokens per image at the stored bounds, and the longest-side histogram of the first images;
`--render N DIR` draws the first N rows (`render_sft`: first image with the response's boxes, the
conversation).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from data_prep.images import ImageError
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


def _decode_images(row: dict, images: list[dict], n: int, where: str, report) -> None:
    """Decode EVERY embedded image of the row (verl's SFT dataset opens them all: one corrupt image
    anywhere stops the epoch); the first one's size must equal `image_size`."""
    report.decoded += 1
    for position, item in enumerate(images):
        if not item["bytes"]:
            continue  # reported as image_no_data
        try:
            with Image.open(io.BytesIO(item["bytes"])) as image:
                image.load()
                size = list(image.size)
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            report.add("image_corrupt", n, f"{where}: image {position}: {type(err).__name__}: {err}"[:200])
            continue
        if position == 0 and size != list(row["image_size"] or []):
            report.add("image_size_mismatch", n, f"{where}: file {size} vs image_size {row['image_size']}")


def check_sft_row(row: dict, n: int, seen: set[str], report, decode: bool) -> None:
    """Every check of one SFT row, problems added to `report` (a `data_prep.reporting.Report`)."""
    where = report.check_sample_id(row["sample_id"] or "", n, seen)
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
    if decode:
        _decode_images(row, images, n, where, report)
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


def validate_sft(path: Path, decode: str = "sample", sample_rows: int = 256):
    """Validate an SFT Parquet; returns a `data_prep.reporting.Report`."""
    from data_prep.reporting import Report

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
    if n == 0:
        report.add("empty_file", None, f"{path} has no rows")
    return report


def inspect_sft(path: Path) -> dict[str, Any]:
    """Counts and distributions of an SFT Parquet (see the module docstring)."""
    from data_prep.reporting import quantiles as _quantiles, size_bucket as _bucket

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


def render_sft(path: Path, count: int, out_dir: Path, bad=None) -> list[Path]:
    """Gallery of the first `count` SFT rows: per row a PNG of its first image with the boxes of the
    assistant response drawn (mapped from the row's box frame to ORIGINAL pixels with
    `reward_score.frames.to_original_pixels` at the stored bounds; magenta, numbered), and
    `out_dir/index.html` with the whole conversation. Returns the PNG paths; a row whose image cannot
    be decoded is listed with its error and counted in `bad` (`data_prep.reporting.BadRows`)."""
    import html
    import re

    from data_prep.images import open_image
    from data_prep.reporting import GALLERY_PAGE as _PAGE, BadRows, draw_boxes as _draw, prompt_html as _prompt_html
    from reward_score.frames import to_original_pixels

    out_dir.mkdir(parents=True, exist_ok=True)
    bad = bad if bad is not None else BadRows()
    written: list[Path] = []
    blocks: list[str] = []
    shown = 0
    columns = ["sample_id", "data_source", "stream", "answer", "box_frame", "image_size", "messages", "images"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=16, columns=columns):
        for row in batch.to_pylist():
            if shown >= count:
                break
            shown += 1
            sid = row["sample_id"] or f"row{shown}"
            response = (row["messages"] or [{}])[-1].get("content") or ""
            boxes = list(parse_boxes(response).valid) if row["stream"] == "grounded" else []
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", sid)[:120] + ".png"
            drawn = []
            try:
                image = (row["images"] or [{}])[0]
                picture = open_image({"bytes": image.get("bytes")}, None)
                if boxes:
                    drawn = to_original_pixels(boxes, list(picture.size), row["box_frame"], image.get("min_pixels"),
                                               image.get("max_pixels"))
                _draw(picture, drawn)
                picture.save(out_dir / name)
                written.append(out_dir / name)
                shown_image = f"<img src='{html.escape(name)}' alt='{html.escape(sid)}'>"
            except ImageError as err:
                bad.add(sid, err)
                shown_image = f"<p class='bad'>image not shown: {html.escape(err.reason)} {html.escape(err.detail)}</p>"
            except (ValueError, TypeError) as err:  # an unknown frame or unusable bounds: the image without boxes
                bad.add(sid, ImageError("bad_frame_or_size", f"{type(err).__name__}: {err}"))
                shown_image = f"<p class='bad'>boxes not drawn: {html.escape(str(err))}</p>"
            box_text = ", ".join(f"{i}: {[round(v) for v in box]}" for i, box in enumerate(drawn))
            blocks.append(
                f"<div class='row' id='{html.escape(sid)}'><div>{shown_image}</div><div class='cols'>"
                f"<div class='meta'>{html.escape(sid)} · {html.escape(str(row['data_source']))} · "
                f"{html.escape(str(row['stream']))} · frame {html.escape(str(row['box_frame']))} · "
                f"{len(row['images'] or [])} image(s) · size {row['image_size']} · {len(boxes)} box(es) in the "
                f"response{' (original pixels: ' + html.escape(box_text) + ')' if box_text else ''}</div>"
                f"<p><b>answer</b>: {html.escape(str(row['answer']))}</p>"
                f"<details open><summary>conversation</summary>{_prompt_html(row['messages'])}</details>"
                f"</div></div>")
        if shown >= count:
            break
    summary = (f"{shown} SFT rows of {html.escape(str(path))}; {len(written)} images drawn. Boxes: the assistant "
               f"response's, mapped to ORIGINAL pixels, magenta, numbered in order.")
    (out_dir / "index.html").write_text(_PAGE.format(title=f"inspect {html.escape(path.name)}", summary=summary,
                                                     rows="\n".join(blocks)), encoding="utf-8")
    return written


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
