"""Box frames: the one place that maps boxes between original pixels and a model's output frame.

Stored ground truth is always `[x1, y1, x2, y2]` in ORIGINAL image pixels plus the original
`(width, height)`. Models write boxes in their own frame:

- `qwen2_5_vl`: absolute pixels of the image AFTER smart-resize (both sides multiples of 28,
  area within [min_pixels, max_pixels]); the model never sees the original size.
- `qwen3_vl`: relative coordinates on a 0-1000 grid, independent of the resize (which uses
  factor 32 = patch 16 × merge 2 and only decides the number of image tokens).

The resize is the one the Qwen processors apply: `qwen_vl_utils.smart_resize` when importable
(GPU nodes, same function verl's dataset uses to pre-resize images), otherwise
`transformers`' PIL image processor module (importable without torchvision).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES, ModelFamily, get_family
from reward_score.parsing import Box


@lru_cache(maxsize=1)
def _resize_impl() -> tuple[Callable[..., tuple[int, int]], str]:
    """(smart_resize, where it came from), imported on first use (transformers takes seconds)."""
    try:  # GPU nodes: the exact function verl's `process_image` calls through fetch_image
        from qwen_vl_utils import smart_resize

        return smart_resize, "qwen_vl_utils"
    except Exception:  # noqa: BLE001  (qwen_vl_utils needs torchvision, absent on CPU boxes)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        return smart_resize, "transformers"


def resize_source() -> str:
    """Which library's smart_resize is in use: "qwen_vl_utils" or "transformers"."""
    return _resize_impl()[1]


def get_frame(name: str) -> ModelFamily:
    """The model family whose box frame is `name` (`reward_score.families`, the one registry: resize
    factor, relative or absolute boxes, grid, default pixel bounds); ValueError otherwise."""
    try:
        return get_family(name)
    except ValueError:
        raise ValueError(f"unknown box_frame {name!r}; choose one of {list(FAMILY_NAMES)}") from None


@lru_cache(maxsize=65536)
def resized_size(width: int, height: int, frame: str = DEFAULT_FAMILY,
                 min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of the image the model actually sees after smart-resize.

    The fixed point of smart-resize: for ordinary images one pass already is one, but when a side is
    clamped to the factor (very thin images under tight bounds) a second pass changes the size again
    (e.g. 32x580 within 3,136..12,544 px: 28x476, then 28x448). The recipe's dataset resizes to this
    size once, so every later resize (agent loop, processor, vLLM) is the identity and the boxes are
    mapped to exactly what the model sees.

    Raises ValueError for non-positive sizes or an aspect ratio above 200 (the processors refuse
    such images too; data preparation rejects them).
    """
    spec = get_frame(frame)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    smart_resize, _ = _resize_impl()
    lo = spec.default_min_pixels if min_pixels is None else int(min_pixels)
    hi = spec.default_max_pixels if max_pixels is None else int(max_pixels)
    size = (int(height), int(width))
    for _ in range(8):  # converges in one or two passes
        new = tuple(int(v) for v in smart_resize(size[0], size[1], factor=spec.resize_factor,
                                                 min_pixels=lo, max_pixels=hi))
        if new == size:
            break
        size = new
    return size[1], size[0]


def _scales(image_size: Sequence[int], frame: str, min_pixels: int | None,
            max_pixels: int | None) -> tuple[float, float]:
    """Multipliers (sx, sy) from original pixels to the model frame."""
    width, height = int(image_size[0]), int(image_size[1])
    spec = get_frame(frame)
    if spec.relative:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        return spec.grid / width, spec.grid / height
    new_w, new_h = resized_size(width, height, frame, min_pixels, max_pixels)
    return new_w / width, new_h / height


def to_model_frame(boxes: Sequence[Sequence[float]], image_size: Sequence[int], frame: str = DEFAULT_FAMILY,
                   min_pixels: int | None = None, max_pixels: int | None = None) -> list[Box]:
    """Map boxes from ORIGINAL pixels of an image of `image_size` = (width, height) into `frame`.

    qwen2_5_vl: resized absolute pixels (floats, not rounded); qwen3_vl: 0-1000 relative.
    """
    sx, sy = _scales(image_size, frame, min_pixels, max_pixels)
    return [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]


def to_original_pixels(boxes: Sequence[Sequence[float]], image_size: Sequence[int], frame: str = DEFAULT_FAMILY,
                       min_pixels: int | None = None, max_pixels: int | None = None) -> list[Box]:
    """Inverse of `to_model_frame`: boxes the model wrote, in ORIGINAL pixels (for crops and drawing)."""
    sx, sy = _scales(image_size, frame, min_pixels, max_pixels)
    return [(b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy) for b in boxes]
