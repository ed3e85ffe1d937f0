"""Ground-truth boxes: convert a source's box format to ORIGINAL pixels and validate them.

Output boxes are always `(x1, y1, x2, y2)` floats in ORIGINAL pixels of the image whose size is
`(width, height)`: x grows to the right, y downwards, origin at the top-left corner. Mapping into
a model's frame (resized pixels, 0-1000) is `reward_score.frames`' job at training time.

Input formats (the source or the user says which; nothing is guessed silently):
- `xyxy`     pixels, corners                     (iVGR / TreeVGR `target_instances[].bbox`)
- `xywh`     pixels, top-left corner + size      (COCO `bbox`)
- `norm1`    corners relative to the image, 0-1
- `norm1000` corners relative to the image, 0-1000 (Qwen2-VL / Qwen3-VL convention; /1000)

Tolerance: a coordinate may lie outside the image by up to `max(CLIP_TOLERANCE_PX,
CLIP_TOLERANCE_FRAC * side)` (annotation tools round outward); it is then clipped to the image.
Anything further out is rejected (`box_outside`), as is a box that is inverted (`box_inverted`),
thinner than `MIN_SIDE_PX` after clipping (`box_degenerate`), not four finite numbers
(`box_malformed`), labelled pixels but entirely within [0, 1] with fractional values
(`box_looks_normalized`), or labelled normalized but beyond its scale (`box_wrong_frame`); an
unknown format name is `box_format_unknown`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from data_prep.errors import ReasonError
from reward_score.parsing import Box

BOX_FORMATS = ("xyxy", "xywh", "norm1", "norm1000")
CLIP_TOLERANCE_PX = 2.0
CLIP_TOLERANCE_FRAC = 0.01
MIN_SIDE_PX = 1.0
_SCALE = {"norm1": 1.0, "norm1000": 1000.0}


class BoxError(ReasonError):
    """A box that cannot be used; `reason` is the short code written to the rejects file."""


def _numbers(raw: object) -> list[float]:
    try:
        values = [float(v) for v in raw]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise BoxError("box_malformed", repr(raw)[:80]) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BoxError("box_malformed", repr(raw)[:80])
    return values


def to_pixels(raw: Sequence[float], box_format: str, image_size: Sequence[int]) -> Box:
    """One box from `box_format` into ORIGINAL pixel corners (not yet validated or clipped)."""
    if box_format not in BOX_FORMATS:
        raise BoxError("box_format_unknown", f"{box_format!r}; choose one of {BOX_FORMATS}")
    a, b, c, d = _numbers(raw)
    width, height = float(image_size[0]), float(image_size[1])
    if box_format == "xywh":
        return (a, b, a + c, b + d)
    if box_format == "xyxy":
        return (a, b, c, d)
    scale = _SCALE[box_format]
    if min(a, b, c, d) < 0 or max(a, b, c, d) > scale * (1 + CLIP_TOLERANCE_FRAC):
        raise BoxError("box_wrong_frame", f"{[a, b, c, d]} is not on a 0-{scale:g} scale")
    return (a / scale * width, b / scale * height, c / scale * width, d / scale * height)


def check_box(box: Sequence[float], image_size: Sequence[int]) -> Box:
    """Validate a pixel box against the image and clip it within the tolerance."""
    x1, y1, x2, y2 = _numbers(box)
    width, height = float(image_size[0]), float(image_size[1])
    if x2 < x1 or y2 < y1:
        raise BoxError("box_inverted", f"{[x1, y1, x2, y2]}")
    tol_x = max(CLIP_TOLERANCE_PX, CLIP_TOLERANCE_FRAC * width)
    tol_y = max(CLIP_TOLERANCE_PX, CLIP_TOLERANCE_FRAC * height)
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        raise BoxError("box_outside", f"{[x1, y1, x2, y2]} outside {int(width)}x{int(height)}")
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < MIN_SIDE_PX - 1e-6 or y2 - y1 < MIN_SIDE_PX - 1e-6:  # float slack from unit conversion
        raise BoxError("box_degenerate", f"{[x1, y1, x2, y2]}")
    return (x1, y1, x2, y2)


def prepare_boxes(raw_boxes: Iterable[Sequence[float]] | None, box_format: str,
                  image_size: Sequence[int]) -> list[Box]:
    """All boxes of one sample in ORIGINAL pixels, validated; the first bad box raises BoxError.

    A sample is rejected as a whole rather than losing one of its boxes: a grounded answer whose
    referenced object is missing from the ground truth would teach the wrong IoU.
    """
    raw_list = [_numbers(raw) for raw in (raw_boxes or [])]
    if box_format in ("xyxy", "xywh") and raw_list and image_size[0] > 2 and image_size[1] > 2:
        flat = [v for box in raw_list for v in box]
        if all(0.0 <= v <= 1.0 for v in flat) and any(v != int(v) for v in flat):
            raise BoxError("box_looks_normalized", f"{raw_list[0]} labelled {box_format} pixels looks 0-1 relative")
    return [check_box(to_pixels(raw, box_format, image_size), image_size) for raw in raw_list]


def scale_boxes(boxes: Iterable[Sequence[float]], sx: float, sy: float) -> list[Box]:
    """Boxes multiplied per axis (used when an image is rescaled, e.g. tiny-image upscaling)."""
    return [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]
