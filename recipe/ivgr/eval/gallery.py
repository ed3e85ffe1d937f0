"""The per-item records as an HTML gallery: `<out>/gallery/index.html`, one section per benchmark and mode.

Each item shows its first image (scaled to at most `THUMB` px) with the ground-truth boxes (green), the
model's predicted boxes (magenta) and, in tool modes, the crop regions (blue) drawn on it, all mapped
from ORIGINAL pixels; the crops themselves as cut from the original image; the question and options, the
ground truth, the extracted answer, both protocols' verdicts (`graded`: `correct`, decided by which rule;
`reference`: `reference_correct` and what the reference read), the failures and the full response.
Items on which the two protocols disagree come first, then the others in file order, up to `per_mode`.

    python -m recipe.ivgr.eval.gallery OUT_DIR [--per-mode 20] [--image-root DIR]   # re-render a finished run

Page layout and box drawing are `data_prep.reporting`'s (the data gallery of `data_prep.inspect`).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data_prep.reporting import GALLERY_PAGE, draw_boxes
from data_prep.schema import resolve_image_root
from recipe.ivgr.eval.config import MODES
from recipe.ivgr.eval.items import open_original
from recipe.ivgr.eval.record import read_records
from recipe.ivgr.eval.schema import iter_eval_rows

logger = logging.getLogger(__name__)

GALLERY_DIR = "gallery"
THUMB = 512  # longest side of a drawn image, pixels
CROP_THUMB = 160
GT_COLOUR, PRED_COLOUR, CROP_COLOUR = (0, 170, 0), (255, 0, 255), (0, 110, 255)


def pick(records: Sequence[Mapping[str, Any]], count: int) -> list[Mapping[str, Any]]:
    """Up to `count` records: those whose two verdicts disagree first, then the rest; file order kept within."""
    def disagree(r: Mapping[str, Any]) -> bool:
        return r.get("reference_correct") is not None and bool(r["reference_correct"]) != bool(r.get("correct"))

    first = [r for r in records if disagree(r)]
    rest = [r for r in records if not disagree(r)]
    return (first + rest)[:max(0, count)]


def _verdict(value: Any) -> str:
    return "–" if value is None else ("✓ right" if value else "✗ wrong")


def _file_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(parts))[:150] + ".png"


def _scaled(boxes: Any, scale: float) -> list[list[float]]:
    return [[float(v) * scale for v in box] for box in boxes or [] if len(box) == 4]


def _pictures(record: Mapping[str, Any], row: Mapping[str, Any] | None, root: Path | None, folder: Path,
              stem: str) -> str:
    """The drawn image and the crops of one record (HTML), written as PNGs into `folder`."""
    if row is None:
        return "<p class='bad'>item not found in the eval file</p>"
    try:
        original = open_original(dict(row), 0, root)
    except Exception as err:  # noqa: BLE001  (a missing image is shown, never fatal)
        return f"<p class='bad'>image not shown: {html.escape(f'{type(err).__name__}: {err}'[:200])}</p>"
    scale = min(1.0, THUMB / max(original.size))
    shown = original.resize((max(1, round(original.width * scale)), max(1, round(original.height * scale))))
    draw_boxes(shown, _scaled(record.get("gt_boxes"), scale), GT_COLOUR)
    draw_boxes(shown, _scaled(record.get("boxes"), scale), PRED_COLOUR)
    draw_boxes(shown, _scaled(record.get("crops"), scale), CROP_COLOUR)
    name = _file_name(stem)
    shown.save(folder / name)
    out = f"<img src='{html.escape(name)}' alt='{html.escape(str(record.get('item_id')))}'>"
    crops = []
    for number, region in enumerate(record.get("crops") or []):
        crop = original.crop(tuple(int(v) for v in region))
        crop.thumbnail((CROP_THUMB, CROP_THUMB))
        crop_name = _file_name(stem, f"crop{number}")
        crop.save(folder / crop_name)
        crops.append(f"<img class='crop' src='{html.escape(crop_name)}' title='crop {number}: {region}'>")
    if crops:
        out += "<div class='meta'>crops (" + html.escape(", ".join(record.get("crop_kinds") or [])) + ")</div>"
        out += "".join(crops)
    return out


def _text_block(record: Mapping[str, Any], row: Mapping[str, Any] | None) -> str:
    e = html.escape
    question = str((row or {}).get("question") or "")
    choices = record.get("choices")
    options = ("<br>".join(f"{chr(65 + i)}. {e(str(c))}" for i, c in enumerate(choices)) if choices else "")
    truth = str(record.get("ground_truth"))
    if record.get("answer_text"):
        truth += f". {record['answer_text']}"
    if record.get("answers") and len(record["answers"]) > 1:
        truth += f" (any of {record['answers']})"
    iou = "" if record.get("iou") is None else f" · IoU {100 * float(record['iou']):.1f}"
    reference = (f"{_verdict(record.get('reference_correct'))} (read {e(repr(record.get('reference_extracted')))})"
                 if record.get("reference_correct") is not None else "– (no reference rule)")
    details = [("response", record.get("response"))]
    if record.get("grounded_response") is not None:
        details.append(("grounded response (the crops come from its boxes)", record.get("grounded_response")))
    return (
        f"<div class='meta'>{e(str(record.get('item_id')))} · {e(str(record.get('subset') or '-'))} · "
        f"{e(str(record.get('answer_type')))}{iou} · failures: {e(', '.join(record.get('failures') or []) or 'none')}"
        f"</div><p><b>question</b>: {e(question)}</p>" + (f"<p>{options}</p>" if options else "")
        + f"<p><b>ground truth</b>: {e(truth)}</p>"
        f"<p><b>answer</b>: {e(repr(record.get('answer')))} <span class='meta'>({e(str(record.get('answer_source')))})"
        f"</span></p><p><b>graded</b>: {_verdict(record.get('correct'))} <span class='meta'>(decided by "
        f"{e(str(record.get('decided_by')))}, rule {e(str(record.get('rule')))})</span> · <b>reference</b>: {reference}"
        "</p>" + "".join(f"<details><summary>{e(title)}</summary><pre>{e(str(text or ''))}</pre></details>"
                         for title, text in details))


def write_gallery(out_dir: str | os.PathLike, benches: Mapping[str, str | os.PathLike], modes: Sequence[str], *,
                  image_root: str | None = None, per_mode: int = 20) -> Path:
    """Render up to `per_mode` records of every `<out>/<label>/<mode>.jsonl` (`benches`: label -> eval file)
    into `<out>/gallery/index.html`; returns its path."""
    out = Path(out_dir)
    folder = out / GALLERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    sections, shown = [], 0
    for label, eval_file in benches.items():
        root = resolve_image_root(Path(eval_file), image_root)
        by_mode = {mode: read_records(out / label / f"{mode}.jsonl") for mode in modes
                    if (out / label / f"{mode}.jsonl").exists()}
        chosen = {mode: pick(records, per_mode) for mode, records in by_mode.items()}
        wanted = {str(r.get("item_id")) for records in chosen.values() for r in records}
        # one pass over the eval file for every mode (8K benchmarks hold gigabytes of images)
        rows = {str(r["item_id"]): r for r in iter_eval_rows(eval_file) if str(r["item_id"]) in wanted} if wanted else {}
        for mode, records in by_mode.items():
            differ = sum(1 for r in records if r.get("reference_correct") is not None
                         and bool(r["reference_correct"]) != bool(r.get("correct")))
            blocks = []
            for number, record in enumerate(chosen[mode]):
                row = rows.get(str(record.get("item_id")))
                blocks.append(f"<div class='row'><div>{_pictures(record, row, root, folder, f'{label}_{mode}_{number}')}"
                              f"</div><div class='cols'>{_text_block(record, row)}</div></div>")
            shown += len(chosen[mode])
            sections.append(f"<h2 id='{html.escape(label)}-{html.escape(mode)}'>{html.escape(label)} · "
                            f"{html.escape(mode)}</h2><p class='meta'>{len(chosen[mode])} of {len(records)} items; "
                            f"{differ} on which graded and reference disagree (shown first)</p>" + "\n".join(blocks))
    summary = (f"{shown} items. Boxes in ORIGINAL pixels, drawn scaled: ground truth green, predicted magenta, "
               "crop regions blue; numbered in their order.")
    page = GALLERY_PAGE.format(title=f"eval gallery {html.escape(out.name)}", summary=summary,
                               rows="\n".join(sections))
    page = page.replace("</style>", ".crop { max-width: 160px; margin: 2px; border: 1px solid #06f; }\n</style>", 1)
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.eval.gallery",
                                     description="Render the per-item records of an eval run as an HTML gallery.")
    parser.add_argument("out", type=Path, help="the run's --out folder (with run.json)")
    parser.add_argument("--per-mode", type=int, default=20, help="items per benchmark and mode")
    parser.add_argument("--image-root", default=None, help="as given to the eval run, if any")
    args = parser.parse_args(argv)
    run = json.loads((args.out / "run.json").read_text(encoding="utf-8"))
    benches = {label: info["file"] for label, info in (run.get("benches") or {}).items()}
    index = write_gallery(args.out, benches, MODES, image_root=args.image_root or (run.get("config") or {}).get(
        "image_root"), per_mode=args.per_mode)
    print(f"gallery: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
