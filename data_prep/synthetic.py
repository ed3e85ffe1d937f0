"""Synthetic grounded VQA: rendered scenes of coloured shapes with exact boxes.

    python -m data_prep.synthetic --out DIR --num N --seed S [--high-res] [--val-every 10]

Writes `DIR/train.parquet` and `DIR/val.parquet` (plus their rejects/summary files) in the record
schema, images embedded as PNG. Every sample is grounded: its question can only be answered by
finding the referred shapes, and `gt_boxes` are those shapes' boxes in ORIGINAL pixels.

It also writes the cold-start SFT set of the same samples, `DIR/sft_train.parquet` and
`DIR/sft_val.parquet` (`data_prep.sft` schema; `--no-sft` skips them): per sample one grounded and one
textual chain of thought, with the same image, the RL stage's prompt of that stream and the box frame
(`--box-frame`). The grounded one names each referred shape with its box (the GT box, mapped into the
frame at the stored pixel bounds by `data_prep.sft`), the textual one says where it is in words; both
end with the answer. Pixel bounds: `--min-pixels` / `--max-pixels`, default the RL model group's
(`data_prep.sft.rl_pixel_bounds`). `scripts/sft_ivgr_*.sh` trains on them when no TRAIN_FILES is given.

Question families (answer type in brackets):
- colour of the only shape in one quarter of the image              (text)
- number of shapes of one colour                                     (number)
- is the <colour shape> left of / above the <colour shape>?          (yes_no)
- which shape is the <colour> object? options circle/square/triangle (choice, answer letter)

Default images are moderate (588-812 px a side, shapes 40-90 px). `--high-res` renders 2000-4000 px
canvases with 16-48 px targets, the V*/HR-Bench difficulty: after the processor's resize to about
1M pixels a target covers only a few image patches.

Deterministic: sample `i` depends only on (`--seed`, `i`, `--high-res`), never on `--num`;
sample `i` goes to val when `i % val_every == val_every - 1`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from data_prep.boxes import prepare_boxes
from data_prep.common import ignore_box_frame
from data_prep.images import ImageItem
from data_prep.schema import Sample
from data_prep.sft import SftSample, SftWriter, pixel_bounds
from data_prep.writer import RecordWriter
from reward_score.choices import LETTERS
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES

COLOURS = {
    "red": (215, 38, 45), "green": (40, 160, 70), "blue": (40, 80, 215),
    "yellow": (240, 200, 25), "purple": (135, 60, 175), "orange": (245, 135, 30),
}
SHAPES = ("circle", "square", "triangle")
QUARTERS = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1), "bottom-right": (1, 1)}


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the rendered image

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def _scene(rng: random.Random, high_res: bool) -> tuple[tuple[int, int], list[Shape]]:
    if high_res:
        size = (rng.randint(2000, 4000), rng.randint(2000, 4000))
        side_range = (16, 48)
    else:
        # 400-700 image tokens at Qwen2.5-VL's factor 28: like real training images, the image then
        # dominates the prompt and both streams share >= 90% of their tokens (data_prep.inspect)
        size = rng.choice([(672, 672), (784, 588), (588, 784), (812, 616)])
        side_range = (40, 90)
    kinds = rng.sample([(s, c) for s in SHAPES for c in COLOURS], rng.randint(3, 6))
    shapes: list[Shape] = []
    for shape, colour in kinds:
        for _ in range(200):  # rejection sampling for a free spot with a margin
            side = rng.randint(*side_range)
            x1, y1 = rng.randint(4, size[0] - side - 4), rng.randint(4, size[1] - side - 4)
            box = (x1, y1, x1 + side, y1 + side)
            margin = side // 2
            if all(box[0] > o.box[2] + margin or box[2] < o.box[0] - margin
                   or box[1] > o.box[3] + margin or box[3] < o.box[1] - margin for o in shapes):
                shapes.append(Shape(shape, colour, box))
                break
    return size, shapes


def _render(size: tuple[int, int], shapes: list[Shape], rng: random.Random, high_res: bool) -> bytes:
    grey = rng.randint(225, 245)
    image = Image.new("RGB", size, (grey, grey, grey - rng.randint(0, 12)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):  # faint distractor lines
        points = [(rng.randint(0, size[0]), rng.randint(0, size[1])) for _ in range(2)]
        draw.line(points, fill=(grey - 40,) * 3, width=rng.randint(1, 3))
    for s in shapes:
        x1, y1, x2, y2 = s.box
        fill = COLOURS[s.colour]
        if s.shape == "circle":
            draw.ellipse(s.box, fill=fill)
        elif s.shape == "square":
            draw.rectangle(s.box, fill=fill)
        else:
            draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1 if high_res else 6)
    return buffer.getvalue()


def _quarter_of(s: Shape, size: tuple[int, int]) -> tuple[int, int]:
    cx, cy = s.centre
    return int(cx >= size[0] / 2), int(cy >= size[1] / 2)


def _question(rng: random.Random, size: tuple[int, int], shapes: list[Shape]):
    """(question, answer, answer_type, choices, referred shapes) or None when the family does not fit."""
    family = rng.choice(("colour_at", "count", "relation", "shape_choice"))
    if family == "colour_at":
        by_quarter: dict[tuple[int, int], list[Shape]] = {}
        for s in shapes:
            by_quarter.setdefault(_quarter_of(s, size), []).append(s)
        lonely = [(q, objs[0]) for q, objs in sorted(by_quarter.items()) if len(objs) == 1]
        if not lonely:
            return None
        quarter, target = rng.choice(lonely)
        label = next(name for name, q in QUARTERS.items() if q == quarter)
        return (f"What is the colour of the only shape in the {label} quarter of the image?",
                target.colour, "text", None, [target])
    if family == "count":
        colour = rng.choice(sorted({s.colour for s in shapes}))
        targets = [s for s in shapes if s.colour == colour]
        return f"How many {colour} shapes are in the image?", str(len(targets)), "number", None, targets
    if family == "relation":
        a, b = rng.sample(shapes, 2)
        (ax, ay), (bx, by) = a.centre, b.centre
        if rng.random() < 0.5 and abs(ax - bx) > 10:
            return (f"Is the {a.name} to the left of the {b.name}?", "yes" if ax < bx else "no", "yes_no", None, [a, b])
        if abs(ay - by) > 10:
            return (f"Is the {a.name} above the {b.name}?", "yes" if ay < by else "no", "yes_no", None, [a, b])
        return None
    colours = [c for c in sorted({s.colour for s in shapes}) if sum(s.colour == c for s in shapes) == 1]
    if not colours:
        return None
    colour = rng.choice(colours)
    target = next(s for s in shapes if s.colour == colour)
    choices = list(SHAPES)
    rng.shuffle(choices)
    return (f"Which shape is the {target.colour} object?", LETTERS[choices.index(target.shape)], "choice",
            choices, [target])


def _make(seed: int, index: int, high_res: bool) -> tuple[Sample, list[Shape]]:
    rng = random.Random(f"ivgr-synthetic:{seed}:{index}:{int(high_res)}")
    while True:
        size, shapes = _scene(rng, high_res)
        if len(shapes) >= 2 and (question := _question(rng, size, shapes)) is not None:
            break
    text, answer, answer_type, choices, targets = question
    png = _render(size, shapes, rng, high_res)
    boxes = prepare_boxes([t.box for t in targets], "xyxy", size)
    tag = "shapes_hr" if high_res else "shapes"
    sample = Sample(sample_id=f"synthetic:{tag}:s{seed}:{index:07d}", data_source=f"synthetic/{tag}",
                    question=text, answer=answer, images=[ImageItem(png, None)], image_size=size,
                    gt_boxes=boxes, answer_type=answer_type, choices=choices)
    return sample, targets


def make_sample(seed: int, index: int, high_res: bool = False) -> Sample:
    """Synthetic sample `index` of the set with `seed` (pure function of its arguments)."""
    return _make(seed, index, high_res)[0]


def _where(shape: Shape, size: tuple[int, int]) -> str:
    """Where a shape is, in words (thirds of the image in each direction)."""
    cx, cy = shape.centre
    column = ("left", "centre", "right")[min(2, int(3 * cx / size[0]))]
    row = ("top", "middle", "bottom")[min(2, int(3 * cy / size[1]))]
    if (row, column) == ("middle", "centre"):
        return "in the centre of the image"
    if row == "middle":
        return f"in the middle of the {column} side"
    if column == "centre":
        return f"at the {row}, in the centre"
    return f"at the {row} {column}"


def _conclusion(sample: Sample) -> str:
    """The reasoning's last sentence, per question family (the answer follows in <answer>)."""
    if sample.answer_type == "number":
        return f"That makes {sample.answer} of them."
    if sample.answer_type == "yes_no":
        return f"Comparing their positions, the answer is {sample.answer}."
    if sample.answer_type == "choice":
        shape = sample.choices[LETTERS.index(sample.answer)]
        return f"It is a {shape}, which is option {sample.answer}."
    return f"Its colour is {sample.answer}."


def sft_samples(sample: Sample, targets: Sequence[Shape]) -> list[SftSample]:
    """The grounded and the textual CoT SFT sample of a synthetic sample (boxes in ORIGINAL pixels;
    `data_prep.sft` maps them into the box frame)."""
    size = sample.image_size
    grounded = " ".join(f"The {t.name} is at <box>[{t.box[0]},{t.box[1]},{t.box[2]},{t.box[3]}]</box>."
                        for t in targets)
    textual = " ".join(f"The {t.name} is {_where(t, size)}." for t in targets)
    out = []
    for stream, facts in (("grounded", grounded), ("textual", textual)):
        response = (f"<think>{facts} {_conclusion(sample)}</think>"
                    f"<answer>{sample.answer}</answer>")
        out.append(SftSample(sample_id=f"{sample.sample_id}:{stream}", data_source=sample.data_source,
                             question=sample.question, response=response, images=list(sample.images),
                             image_sizes=[tuple(size)], choices=sample.choices, stream=stream,
                             source_box_format="xyxy", reference_answer=sample.answer))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder (train.parquet, val.parquet)")
    parser.add_argument("--num", type=int, default=1000, help="samples in total (train + val)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--high-res", action="store_true", help="2000-4000 px images with tiny targets")
    parser.add_argument("--val-every", type=int, default=10, help="every K-th sample goes to val.parquet")
    parser.add_argument("--box-frame", choices=FAMILY_NAMES, default=None,
                        help="box frame of the SFT rows (default qwen2_5_vl); records hold no frame")
    parser.add_argument("--no-sft", dest="sft", action="store_false",
                        help="do not write sft_train.parquet / sft_val.parquet")
    parser.add_argument("--min-pixels", type=int, default=None,
                        help="pixel bounds stored on the SFT images (default: the RL model group's for --box-frame)")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    rows = 64 if args.high_res else 1000
    if not args.sft:
        ignore_box_frame(args)
    frame = args.box_frame or DEFAULT_FAMILY
    with contextlib.ExitStack() as stack:
        train = stack.enter_context(RecordWriter(args.out / "train.parquet", row_group_rows=rows))
        val = stack.enter_context(RecordWriter(args.out / "val.parquet", row_group_rows=rows))
        sft = {}
        if args.sft:
            bounds = pixel_bounds(frame, args.min_pixels, args.max_pixels)
            for split in ("train", "val"):
                sft[split] = stack.enter_context(SftWriter(args.out / f"sft_{split}.parquet", box_frame=frame,
                                                           bounds=bounds, row_group_rows=rows))
        for index in tqdm(range(args.num), unit="sample", disable=args.quiet):
            split = "val" if args.val_every > 0 and index % args.val_every == args.val_every - 1 else "train"
            sample, targets = _make(args.seed, index, args.high_res)
            (val if split == "val" else train).add(sample, f"synthetic:{index}")
            if split in sft:
                for sft_sample in sft_samples(sample, targets):
                    sft[split].add(sft_sample, f"synthetic:{index}:{sft_sample.stream}")
    line = f"[data_prep] {args.out}: train {train.written}, val {val.written}"
    if sft:
        line += f"; SFT rows: train {sft['train'].written}, val {sft['val'].written} (grounded + textual)"
        rejected = sum((w.reasons for w in sft.values()), Counter())
        if rejected:  # every synthetic response is valid by construction: a reject is a bug, say so
            print(f"{line}\n[data_prep] error: {sum(rejected.values())} synthetic SFT rows rejected "
                  f"({dict(rejected)}; see sft_*.rejects.jsonl)", file=sys.stderr)
            return 1
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
