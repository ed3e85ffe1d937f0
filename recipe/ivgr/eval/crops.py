"""Tool-assisted inference crops (the iVGR paper's tool-assisted table): the model's own boxes, cut out of
the ORIGINAL image.

Procedure for one item:
1. the boxes the grounded pass wrote (model frame: resized pixels for Qwen2.5-VL, 0-1000 for
   Qwen3-VL) are mapped back to ORIGINAL pixels with `reward_score.frames.to_original_pixels`
   and the exact pixel bounds the image was shown with (the one place that owns box frames);
2. a box reaching beyond the image is clipped to it (`outside`); a box with no overlap at all
   gives no crop (`empty`);
3. each region is enlarged around its centre, inside the image, to at least `min_side` pixels a
   side and at most `max_aspect` aspect ratio: the processors reject (older versions) or
   degrade on crops smaller than one resize factor (28 px for Qwen2.5-VL, 32 for Qwen3-VL) and
   refuse aspect ratios over 200. When the image itself is smaller than `min_side`, the crop's
   pixels are upscaled instead (`crop_images`);
4. `each` gives one crop per box (the first `max_crops` boxes, in the order written), `union` one
   crop of the union of all usable boxes; identical regions are kept once (a single box and its
   union are the same crop).

No usable crop (no box, or only empty ones) means the caller keeps the textual answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from reward_score.families import DEFAULT_FAMILY
from reward_score.frames import get_frame, to_original_pixels
from reward_score.parsing import Box

CROP_KINDS = ("each", "union")
MAX_CROP_ASPECT = 100.0  # well inside the processors' 200
Region = tuple[int, int, int, int]  # integer [x1, y1, x2, y2) in ORIGINAL pixels


@dataclass
class CropPlan:
    """Regions to cut from the original image, with what happened to the boxes on the way."""

    boxes_original: list[Box] = field(default_factory=list)  # every valid box, mapped, unclipped
    regions: list[Region] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # "box" | "union", parallel to regions
    outside: int = 0  # boxes reaching beyond the image (clipped)
    empty: int = 0  # boxes with no overlap with the image (no crop)
    truncated: int = 0  # boxes beyond max_crops (no own crop; still in the union)
    enlarged: int = 0  # regions grown to min_side / max_aspect
    duplicates: int = 0  # regions identical to an earlier one (kept once)

    def to_record(self) -> dict:
        return {"crops": [list(r) for r in self.regions], "crop_kinds": list(self.kinds),
                "boxes_outside": self.outside, "empty_crops": self.empty, "crops_truncated": self.truncated,
                "crops_enlarged": self.enlarged}


def default_min_side(frame: str) -> int:
    """One resize factor of the model family: the smallest side a processor handles natively."""
    return get_frame(frame).resize_factor


def _clip(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _grow(lo: float, hi: float, target: float, limit: int) -> tuple[float, float]:
    """Widen [lo, hi) around its centre to `target`, shifted to stay inside [0, limit]."""
    if hi - lo >= target:
        return lo, hi
    target = min(float(target), float(limit))
    centre = (lo + hi) / 2
    lo, hi = centre - target / 2, centre + target / 2
    if lo < 0:
        lo, hi = 0.0, target
    if hi > limit:
        lo, hi = limit - target, float(limit)
    return max(0.0, lo), min(float(limit), hi)


def _region(box: tuple[float, float, float, float], width: int, height: int, min_side: int,
            max_aspect: float) -> tuple[Region, bool]:
    """Integer region covering `box` (floor/ceil), grown to min_side and max_aspect; (region, grown)."""
    x1, y1, x2, y2 = box
    grown = False
    w, h = x2 - x1, y2 - y1
    if w < min_side or h < min_side:
        x1, x2 = _grow(x1, x2, min_side, width)
        y1, y2 = _grow(y1, y2, min_side, height)
        grown = True
    w, h = x2 - x1, y2 - y1
    if w / h > max_aspect:
        y1, y2 = _grow(y1, y2, w / max_aspect, height)
        grown = True
    elif h / w > max_aspect:
        x1, x2 = _grow(x1, x2, h / max_aspect, width)
        grown = True
    x1, y1, x2, y2 = (_snap(v) for v in (x1, y1, x2, y2))
    region = (max(0, math.floor(x1)), max(0, math.floor(y1)), min(width, math.ceil(x2)), min(height, math.ceil(y2)))
    return region, grown


def _snap(value: float, tolerance: float = 0.1) -> float:
    """Round-trip noise of the frame mapping (79.98 for 80) must not widen a crop by a pixel."""
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < tolerance else value


def plan_crops(boxes_model: Sequence[Box], image_size: Sequence[int], frame: str = DEFAULT_FAMILY,
               min_pixels: int | None = None, max_pixels: int | None = None, *,
               include: Sequence[str] = CROP_KINDS, max_crops: int = 8, min_side: int | None = None,
               max_aspect: float = MAX_CROP_ASPECT, outside_tolerance: float = 1.0) -> CropPlan:
    """Crop regions for valid boxes written in the model frame of an image of ORIGINAL `image_size`.

    `min_pixels`/`max_pixels` must be the bounds the image was resized with for the model (they
    decide the Qwen2.5-VL frame). `include` picks `each` and/or `union` crops.
    """
    unknown = [k for k in include if k not in CROP_KINDS]
    if unknown or not include:
        raise ValueError(f"crop kinds must be a non-empty subset of {CROP_KINDS}, got {list(include)}")
    width, height = int(image_size[0]), int(image_size[1])
    min_side = default_min_side(frame) if min_side is None else int(min_side)
    plan = CropPlan()
    if not boxes_model:
        return plan
    plan.boxes_original = to_original_pixels(boxes_model, (width, height), frame, min_pixels, max_pixels)
    usable: list[tuple[float, float, float, float]] = []
    for box in plan.boxes_original:
        if (box[0] < -outside_tolerance or box[1] < -outside_tolerance
                or box[2] > width + outside_tolerance or box[3] > height + outside_tolerance):
            plan.outside += 1
        clipped = _clip(box, width, height)
        if clipped is None:
            plan.empty += 1
        else:
            usable.append(clipped)
    candidates: list[tuple[tuple[float, float, float, float], str]] = []
    if "each" in include:
        candidates += [(box, "box") for box in usable[:max_crops]]
        plan.truncated = max(0, len(usable) - max_crops)
    if "union" in include and usable:
        union = (min(b[0] for b in usable), min(b[1] for b in usable),
                 max(b[2] for b in usable), max(b[3] for b in usable))
        candidates.append((union, "union"))
    for box, kind in candidates:
        region, grown = _region(box, width, height, min_side, max_aspect)
        if region in plan.regions:
            plan.duplicates += 1
            continue
        plan.regions.append(region)
        plan.kinds.append(kind)
        plan.enlarged += int(grown)
    return plan


def crop_images(image: Image.Image, plan: CropPlan, min_side: int) -> list[Image.Image]:
    """The plan's regions cut from the ORIGINAL image (RGB); a crop whose shorter side is still
    below `min_side` (the image itself is that small) is upscaled, aspect ratio kept."""
    crops = []
    for region in plan.regions:
        crop = image.crop(region)
        if min(crop.size) < min_side:
            factor = min_side / min(crop.size)
            crop = crop.resize((max(min_side, math.ceil(crop.width * factor)),
                                max(min_side, math.ceil(crop.height * factor))), Image.Resampling.BICUBIC)
        crops.append(crop.convert("RGB"))
    return crops
