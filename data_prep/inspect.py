"""Look at a record Parquet: counts, box and image statistics, shared-prefix ratio, rendered boxes.

    python -m data_prep.inspect FILE.parquet [--image-root DIR] [--render N DIR] [--json]
                                [--max-pixels 1003520] [--prefix-samples 32] [--box-frame qwen2_5_vl|qwen3_vl]

Reports
- rows per data source and kind, answer types;
- boxes per grounded sample, box sides in ORIGINAL pixels, box area as a fraction of the image,
  and box sides in the model's frame (`--box-frame`, the model family: Qwen2.5-VL resized pixels at
  `--max-pixels` by default, via `reward_score.frames`): how small the targets are for the model;
- image size histogram (longest side) and image tokens per image at `--max-pixels`;
- the shared-prefix ratio of the two streams: for up to `--prefix-samples` grounded rows, both
  prompts (rendered for `--box-frame` exactly as training renders them, `data_prep.prompts`) are
  templated and tokenized by the offline Qwen-VL-style processor
  (`data_prep.offline_processor`, image tokens expanded), and the length of the common token prefix
  is divided by the grounded prompt's length. It says how much of a grounded prompt vLLM's prefix
  cache can reuse for the textual one (target >= 0.9 at 1280*28*28 max pixels).
`--render N DIR` writes a gallery of the first N rows: `DIR/index.html` with, per row, its first
image with the GT boxes drawn (a PNG beside it), the question(s), the answer(s) and the prompt of
every stream exactly as the `--box-frame` model sees it; for an SFT file (`data_prep.sft`), the
first image with the boxes of the response and the conversation.

A row whose image cannot be opened (missing, corrupt, outside the root) does not stop the
command: it is counted under `bad_rows` (reason and a few examples) and listed in the gallery.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep import streaming
from data_prep.images import ImageError, open_image
from data_prep.reporting import (
    GALLERY_PAGE,
    SIZE_BUCKETS,
    BadRows,
    draw_boxes,
    prompt_html,
    quantiles,
    size_bucket,
)
from data_prep.prompts import record_messages, to_content_lists
from data_prep.schema import RECORD_COLUMNS, record_facts, resolve_image_root
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES, get_family
from reward_score.frames import resized_size, to_model_frame
from reward_score.streams import KIND_STREAMS

DEFAULT_MAX_PIXELS = 1280 * 28 * 28
_STAT_COLUMNS = ("sample_id", "data_source", "kind", "answer_type", "image_size", "gt_boxes", "images")


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prompt_token_ids(processor: Any, messages: list[dict], images: list) -> list[int]:
    """Token ids of a templated prompt with image tokens expanded, as the rollout sees them."""
    text = processor.apply_chat_template(to_content_lists(messages, images), add_generation_prompt=True, tokenize=False)
    return list(processor(text=[text], images=images or None)["input_ids"][0])



def shared_prefix(path: Path, root: Path, max_pixels: int, samples: int,
                  bad: BadRows | None = None, family: str = DEFAULT_FAMILY) -> dict[str, Any] | None:
    """Shared-prefix statistics over the first `samples` grounded rows (None when there are none),
    both prompts rendered for `family` as training renders them; rows whose images fail to open are
    skipped and counted in `bad`."""
    from data_prep.offline_processor import build_processor

    processor = build_processor(max_pixels=max_pixels, patch_size=get_family(family).patch_size)
    ratios, common_total, grounded_total, lengths = [], 0, 0, []
    bad = bad if bad is not None else BadRows()
    for batch in streaming.iter_batches(path, _present(path, ("sample_id", "kind", "images", "question",
                                                              "question_textual", "choices"))):
        for row in map(record_facts, batch.to_pylist()):
            if row["kind"] != "grounded" or len(ratios) >= samples:
                continue
            try:
                images = [open_image(item, root) for item in row["images"]]
            except ImageError as err:
                bad.add(row["sample_id"], err)
                continue
            grounded = prompt_token_ids(processor, record_messages(row, "grounded", family), images)
            textual = prompt_token_ids(processor, record_messages(row, "textual", family), images)
            common = common_prefix(grounded, textual)
            ratios.append(common / len(grounded))
            common_total += common
            grounded_total += len(grounded)
            lengths.append(len(grounded))
        if len(ratios) >= samples:
            break
    if not ratios:
        return None
    return {"samples": len(ratios), "max_pixels": max_pixels, "mean_ratio": round(statistics.fmean(ratios), 4),
            "min_ratio": round(min(ratios), 4), "token_weighted_ratio": round(common_total / grounded_total, 4),
            "grounded_prompt_tokens": quantiles(lengths)}


def statistics_of(path: Path, max_pixels: int, progress: bool = True,
                  family: str = DEFAULT_FAMILY) -> dict[str, Any]:
    """Counts, box statistics and image-size histogram, streamed over the file (no image decoding);
    image tokens and box sides in the model frame are `family`'s."""
    factor = get_family(family).resize_factor
    sources, kinds, answer_types, buckets = Counter(), Counter(), Counter(), Counter()
    per_sample, sides, areas, model_sides, tokens = [], [], [], [], []
    rows = 0
    parquet = pq.ParquetFile(path)
    bar = tqdm(total=parquet.metadata.num_rows, unit="row", desc="inspect", disable=not progress, mininterval=1.0)
    columns = [c for c in _STAT_COLUMNS if c != "images"]
    for batch in streaming.iter_batches(path, columns):
        bar.update(batch.num_rows)
        for row in batch.to_pylist():
            rows += 1
            sources[f"{row['data_source']} [{row['kind']}]"] += 1
            kinds[row["kind"]] += 1
            answer_types[row["answer_type"] or "unknown"] += 1
            width, height = row["image_size"]
            buckets[size_bucket(max(width, height))] += 1
            new_w, new_h = resized_size(width, height, family, max_pixels=max_pixels)
            tokens.append(new_w * new_h // (factor * factor))
            boxes = row["gt_boxes"] or []
            if row["kind"] == "grounded":
                per_sample.append(len(boxes))
            model_boxes = to_model_frame(boxes, (width, height), family, max_pixels=max_pixels)
            for box, model_box in zip(boxes, model_boxes):
                sides.append(min(box[2] - box[0], box[3] - box[1]))
                areas.append((box[2] - box[0]) * (box[3] - box[1]) / (width * height))
                model_sides.append(min(model_box[2] - model_box[0], model_box[3] - model_box[1]))
    bar.close()
    return {
        "file": str(path), "model_family": family, "rows": rows, "kinds": dict(kinds),
        "data_sources": dict(sorted(sources.items())),
        "answer_types": dict(sorted(answer_types.items())),
        "boxes_per_grounded_sample": quantiles(per_sample),
        "box_short_side_px": quantiles(sides), "box_area_fraction": quantiles(areas),
        "box_short_side_model_px": quantiles(model_sides),
        "image_longest_side": {k: buckets[k] for k in [f"<{e}" for e in SIZE_BUCKETS] + [f">={SIZE_BUCKETS[-1]}"]},
        "image_tokens": quantiles(tokens),
    }


def _present(path: Path, columns: Sequence[str]) -> list[str]:
    """The `columns` the file has (files of older schema versions may lack some; read as null)."""
    names = pq.read_schema(path).names
    return [c for c in columns if c in names]


def format_boxes(boxes: Sequence[Sequence[float]] | None) -> str:
    """Boxes as `[x1, y1, x2, y2]` with at most 2 decimals (stored floats carry conversion noise such as
    556.0012800000001); empty string for none."""
    if not boxes:
        return ""
    def number(value: float) -> str:
        return f"{float(value):.2f}".rstrip("0").rstrip(".")

    return ", ".join("[" + ", ".join(number(v) for v in box) + "]" for box in boxes)


def render(path: Path, root: Path, count: int, out_dir: Path, bad: BadRows | None = None,
           family: str = DEFAULT_FAMILY) -> list[Path]:
    """Gallery of the first `count` rows: a PNG per row (first image, GT boxes in magenta) and
    `out_dir/index.html` with question(s), answer(s) and the prompts of every stream exactly as
    `family`'s model sees them. Returns the PNG paths; a row whose image fails to open is shown in
    the page with its error and counted in `bad`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bad = bad if bad is not None else BadRows()
    written: list[Path] = []
    blocks: list[str] = []
    shown = 0
    for batch in streaming.iter_batches(path, _present(path, RECORD_COLUMNS)):
        for row in map(record_facts, batch.to_pylist()):
            if shown >= count:
                break
            shown += 1
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", row["sample_id"])[:120] + ".png"
            try:
                image = open_image(row["images"][0], root)
                draw_boxes(image, row["gt_boxes"])
                image.save(out_dir / name)
                written.append(out_dir / name)
                picture = f"<img src='{html.escape(name)}' alt='{html.escape(row['sample_id'])}'>"
            except ImageError as err:
                bad.add(row["sample_id"], err)
                picture = f"<p class='bad'>image not shown: {html.escape(err.reason)} {html.escape(err.detail)}</p>"
            answers = row.get("answers") or [row["answer"]]
            textual_q = row.get("question_textual")
            blocks.append(
                f"<div class='row' id='{html.escape(row['sample_id'])}'><div>{picture}</div><div class='cols'>"
                f"<div class='meta'>{html.escape(row['sample_id'])} · {html.escape(str(row['data_source']))} · "
                f"{row['kind']} · {len(row['images'])} image(s) · size {row['image_size']} · "
                f"{len(row['gt_boxes'] or [])} GT box(es) {html.escape(format_boxes(row['gt_boxes']))}</div>"
                f"<p><b>question</b>: {html.escape(row['question'])}</p>"
                + (f"<p><b>textual question</b>: {html.escape(textual_q)}</p>" if textual_q else "")
                + f"<p><b>answer</b>: {html.escape(' | '.join(answers))} "
                f"<span class='meta'>({html.escape(row['answer_type'] or 'answer type not given')}"
                f"{', choices ' + html.escape(str(row['choices'])) if row.get('choices') else ''})</span></p>"
                + "".join(f"<details{' open' if i == 0 else ''}><summary>{stream} prompt ({family})</summary>"
                          f"{prompt_html(record_messages(row, stream, family))}</details>"
                          for i, stream in enumerate(KIND_STREAMS.get(row["kind"], ())))
                + "</div></div>")
        if shown >= count:
            break
    summary = (f"{shown} rows of {html.escape(str(path))}; {len(written)} images drawn, "
               f"{shown - len(written)} could not be opened. Boxes: ORIGINAL pixels, magenta, numbered.")
    (out_dir / "index.html").write_text(GALLERY_PAGE.format(title=f"inspect {html.escape(path.name)}", summary=summary,
                                                     rows="\n".join(blocks)), encoding="utf-8")
    return written


def _print_human(report: dict[str, Any]) -> None:
    print(f"inspect {report['file']}: {report['rows']} rows, kinds {report['kinds']}")
    print("rows per data source [kind]:")
    for name, count in report["data_sources"].items():
        print(f"  {name:<48} {count:>8}")
    print(f"answer types: {report['answer_types']}")
    for key in ("boxes_per_grounded_sample", "box_short_side_px", "box_area_fraction", "box_short_side_model_px",
                "image_tokens"):
        print(f"{key}: {report[key]}")
    print(f"image longest side (px): {report['image_longest_side']}")
    prefix = report.get("shared_prefix")
    if prefix:
        print(f"shared-prefix ratio (grounded vs textual, image tokens included, max_pixels={prefix['max_pixels']}, "
              f"{prefix['samples']} grounded rows): mean {prefix['mean_ratio']}, min {prefix['min_ratio']}, "
              f"token-weighted {prefix['token_weighted_ratio']}; "
              f"grounded prompt tokens {prefix['grounded_prompt_tokens']}")
    else:
        print("shared-prefix ratio: n/a (no grounded rows or --prefix-samples 0)")
    bad = report.get("bad_rows") or {}
    if bad.get("count"):
        print(f"bad rows (images that could not be opened): {bad['count']} {bad['reasons']}")
        for example in bad["examples"]:
            print(f"  e.g. {example}")
    if report.get("gallery"):
        print(f"gallery: {report['gallery']} ({len(report.get('rendered', []))} images)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.inspect", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--image-root", type=Path, default=None,
                        help="root of path-mode images (default: the root stored in the file's metadata, "
                             "else its folder)")
    parser.add_argument("--render", nargs=2, metavar=("N", "DIR"), default=None,
                        help="gallery of the first N rows in DIR/index.html (images with GT boxes, prompts)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--box-frame", choices=FAMILY_NAMES, default=DEFAULT_FAMILY,
                        help="model family whose prompts, image tokens and box frame are shown (what that model sees)")
    parser.add_argument("--prefix-samples", type=int, default=32, help="grounded rows used for the shared-prefix ratio")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if "messages" in pq.read_schema(args.file).names:  # an SFT file (data_prep.sft)
        from data_prep.sft_tools import print_inspect_sft, render_sft

        status = print_inspect_sft(args.file, args.json)
        if args.render:
            bad = BadRows()
            drawn = render_sft(args.file, int(args.render[0]), Path(args.render[1]), bad)
            print(f"gallery: {Path(args.render[1]) / 'index.html'} ({len(drawn)} images)"
                  + (f"; bad rows {bad.as_dict()}" if bad.counts else ""), file=sys.stderr if args.json else sys.stdout)
        return status
    root = resolve_image_root(args.file, args.image_root)
    report = statistics_of(args.file, args.max_pixels, progress=not args.quiet, family=args.box_frame)
    bad = BadRows()
    if args.prefix_samples > 0:
        report["shared_prefix"] = shared_prefix(args.file, root, args.max_pixels, args.prefix_samples, bad,
                                                family=args.box_frame)
    if args.render:
        out_dir = Path(args.render[1])
        report["rendered"] = [str(p) for p in render(args.file, root, int(args.render[0]), out_dir, bad,
                                                     family=args.box_frame)]
        report["gallery"] = str(out_dir / "index.html")
    report["bad_rows"] = bad.as_dict()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_human(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
