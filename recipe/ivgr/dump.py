"""Rollout dumps: what the model wrote, how it was scored, and which reference it was compared with.

`write_step_dump` (called by the trainer every `ivgr.dump.every_k_steps`) writes
`<dir>/step_<N>.jsonl`, one line per rollout: stream, sample_id, question, response, every reward
component (`score` is the reward the actor trained on, the `rm_scores` sum: the consistency term of a
textual rollout included, `consistency` its judge score), the bonus the step stages added and the
reference used (think text, IoU, step it came from).

    python -m recipe.ivgr.dump DUMP.jsonl --data train.parquet [--image-root R] --out DIR [--limit 50]

renders grounded rollouts as PNGs with predicted (red) and ground-truth (green) boxes drawn on the
original image (predicted boxes mapped back from the model frame), plus an `index.html` to browse them.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from collections.abc import Sequence

from recipe.ivgr.archive import RolloutArchive
from recipe.ivgr.stage import RolloutRecord

_INFO_KEYS = ("gt_boxes", "image_size", "box_frame", "min_pixels", "max_pixels", "answer_type")


def _plain(value):
    """JSON-safe copy of numpy arrays / nested lists from the dataset's extra_info."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_step_dump(folder: str, step: int, records: Sequence[RolloutRecord], responses: Sequence[str],
                    bonus: Sequence[float], archive: RolloutArchive | None) -> str:
    """Write `folder/step_<step>.jsonl`; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{step}.jsonl")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for record, response, extra in zip(records, responses, bonus):
            reference = archive.get(record.sample_id) if archive is not None and record.stream == "textual" else None
            row = {
                "step": step, "sample_id": record.sample_id, "stream": record.stream, "question": record.question,
                "response": response, "reward": record.reward.as_dict(), "consistency_bonus": extra,
                "reference": None if reference is None else
                {"think": reference.think, "iou": reference.iou, "acc": reference.acc, "step": reference.step},
                "extra_info": {k: _plain(record.extra_info.get(k)) for k in _INFO_KEYS if k in record.extra_info},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)
    return path


def render(dump_path: str, data_path: str, out_dir: str, image_root: str | None = None, limit: int = 50) -> int:
    """Draw predicted and GT boxes of grounded rollouts; returns the number of images written."""
    import pyarrow.parquet as pq
    from PIL import ImageDraw

    from data_prep.images import ImageError, open_image
    from data_prep.schema import resolve_image_root
    from reward_score.families import DEFAULT_FAMILY
    from reward_score.frames import to_original_pixels
    from reward_score.parsing import parse_boxes
    from reward_score.result import RewardScore

    rows = [json.loads(line) for line in open(dump_path, encoding="utf-8")]
    rows = [r for r in rows if r["stream"] == "grounded"][:limit]
    wanted = {r["sample_id"] for r in rows}
    images: dict[str, dict] = {}
    for batch in pq.ParquetFile(data_path).iter_batches(columns=["sample_id", "images"]):
        for sample_id, imgs in zip(batch.column("sample_id").to_pylist(), batch.column("images").to_pylist()):
            if sample_id in wanted and imgs:
                images[sample_id] = imgs[0]
    os.makedirs(out_dir, exist_ok=True)
    root = resolve_image_root(data_path, image_root)
    cards, written, skipped = [], 0, 0
    for i, row in enumerate(rows):
        item = images.get(row["sample_id"])
        if item is None:
            continue
        try:
            image = open_image(item, root)
        except ImageError as err:  # a missing or broken image skips its card, never the page
            skipped += 1
            print(f"[dump] {row['sample_id']}: image not drawn: {err}", file=sys.stderr)
            continue
        info = row["extra_info"]
        frame = info.get("box_frame") or DEFAULT_FAMILY
        pred = to_original_pixels(parse_boxes(row["response"]).valid, image.size, frame, info.get("min_pixels"),
                                  info.get("max_pixels"))
        draw = ImageDraw.Draw(image)
        width = max(2, image.width // 300)
        for box in info.get("gt_boxes") or []:
            draw.rectangle(box, outline=(0, 200, 0), width=width)
        for box in pred:
            draw.rectangle(box, outline=(230, 0, 0), width=width)
        name = f"{i:04d}.png"
        image.save(os.path.join(out_dir, name))
        written += 1
        reward = RewardScore.from_extra_info(row["reward"])
        cards.append(
            f"<div class=c><img src='{name}'><p><b>{html.escape(row['sample_id'])}</b> "
            f"iou {reward.iou:.2f} acc {reward.acc:.0f} format {reward.format:.0f}</p>"
            f"<p>{html.escape(row['question'])}</p><pre>{html.escape(row['response'])}</pre></div>")
    with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
        f.write("<html><head><meta charset=utf-8><style>.c{display:inline-block;width:480px;vertical-align:top;"
                "margin:8px}img{max-width:480px}pre{white-space:pre-wrap;font-size:11px}</style></head><body>"
                "<p>green: ground truth, red: predicted</p>" + "".join(cards) + "</body></html>")
    if skipped:
        print(f"[dump] {skipped} rollouts not drawn (image could not be opened)", file=sys.stderr)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Render an iVGR rollout dump with boxes drawn.")
    parser.add_argument("dump", help="step_<N>.jsonl written during training")
    parser.add_argument("--data", required=True, help="the training Parquet the dump's samples come from")
    parser.add_argument("--image-root", default=None, help="root of images stored by relative path (default: the "
                                                           "root stored in --data, else its folder)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    count = render(args.dump, args.data, args.out, args.image_root, args.limit)
    print(f"wrote {count} images and {os.path.join(args.out, 'index.html')}")


if __name__ == "__main__":
    main()
