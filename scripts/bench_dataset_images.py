"""Bytes of image data that travel with the trajectories of one sample per step, before and after
`DualStreamDataset` resizes images once to the processor bounds.

verl keeps the prompt's images (`raw_prompt`) with every trajectory in TransferQueue: 2 streams x
rollout.n copies per grounded sample and step. This builds a Parquet of V*-/HR-Bench-sized synthetic
pictures, loads it through the recipe's dataset (the paper's 3,136..3,211,264-pixel bounds), and
prints the pickled size of the image in `raw_prompt` (what Ray/TransferQueue serialize) against the
decoded original picture that was stored before.

    python scripts/bench_dataset_images.py [--n 5] [--max-pixels 3211264]
"""

from __future__ import annotations

import argparse
import io
import pickle
import tempfile
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image, ImageDraw

SIZES = [(2246, 1582), (3000, 2000), (3840, 2160), (4096, 2048)]  # V* ~3.5 MP .. HR-Bench 8 MP-class


def _png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (200, 210, 220))
    ImageDraw.Draw(image).rectangle([width // 3, height // 3, width // 3 + 60, height // 3 + 40], fill=(200, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="rollout.n (copies per stream)")
    parser.add_argument("--max-pixels", type=int, default=3211264)
    args = parser.parse_args()

    from data_prep.images import ImageItem, open_image
    from data_prep.offline_processor import build_processor
    from data_prep.schema import Sample
    from data_prep.writer import RecordWriter
    from recipe.ivgr.dataset import DualStreamDataset

    processor = build_processor(min_pixels=3136, max_pixels=args.max_pixels)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hr.parquet"
        with RecordWriter(path) as writer:
            for i, (w, h) in enumerate(SIZES):
                writer.add(Sample(sample_id=f"bench:{i}", data_source="bench/hr", question="What is red?",
                                  answer="a box", images=[ImageItem(_png(w, h), None)], image_size=[w, h],
                                  gt_boxes=[[w // 3, h // 3, w // 3 + 60, h // 3 + 40]]), f"row{i}")
        config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 100000,
                                   "filter_overlong_prompts": False, "ivgr_max_pixels": args.max_pixels,
                                   "ivgr_min_pixels": 3136})
        dataset = DualStreamDataset(data_files=[str(path)], tokenizer=processor.tokenizer, config=config,
                                    processor=processor)
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
        copies = 2 * args.n
        print(f"image bytes per grounded sample and step ({copies} trajectories: 2 streams x n={args.n}), "
              f"bounds 3,136..{args.max_pixels:,} px")
        print(f"{'original':>12} {'resized':>12} {'before MB':>10} {'after MB':>9} {'ratio':>6}")
        total_before = total_after = 0
        for k, record in enumerate(records):
            original = open_image(dict(record["images"][0]), None)
            before = len(pickle.dumps(original))
            item = dataset[2 * k]
            image = next(c["image"] for m in item["raw_prompt"] if isinstance(m["content"], list)
                         for c in m["content"] if c.get("type") == "image")
            after = len(pickle.dumps(image))
            total_before += before * copies
            total_after += after * copies
            print(f"{original.width}x{original.height:<6} {image.width}x{image.height:<6} "
                  f"{before * copies / 1e6:>10.1f} {after * copies / 1e6:>9.1f} {before / after:>6.2f}")
        print(f"{'mean':>25} {total_before / len(records) / 1e6:>10.1f} {total_after / len(records) / 1e6:>9.1f} "
              f"{total_before / total_after:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
