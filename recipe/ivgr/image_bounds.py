"""The pixel bounds each training image is resized within, and the torchvision-free resize of verl's
image items: one rule for the dataset (`recipe.ivgr.dataset`) and the preflight (`recipe.ivgr.preflight`).

What the model sees must be what the reward assumes: the dataset resizes every image once within these
bounds and writes them into the row's `extra_info`, from which the reward maps the ground-truth boxes
(`reward_score.frames`; recipe/ivgr/README.md, `data.ivgr_min_pixels`).

Per image, the requested bound is the first one set among: a `min_pixels`/`max_pixels` key of the
stored image struct, `data.ivgr_min_pixels`/`data.ivgr_max_pixels`, and the family default
(`reward_score.families`). It is then narrowed to every bound the processor applies later
(`processor_bound_limits`): effective `min = max(mins)`, `max = min(maxes)`, so that a later
smart-resize by the processor or vLLM is the identity (a size that is a multiple of the factor and within
bounds is a fixed point). All bounds are pixel areas (width x height) of the resized image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

# qwen_vl_utils.fetch_image defaults (in image tokens) for items that carry no bounds
FETCH_MIN_TOKENS, FETCH_MAX_TOKENS = 4, 16384

# (min_pixels or None, max_pixels or None, where the limit comes from)
BoundLimit = tuple[int | None, int | None, str]


def processor_bound_limits(mm_processor_kwargs: Mapping[str, Any] | None, processor: Any = None) -> list[BoundLimit]:
    """The pixel bounds applied after the dataset's resize: `data.mm_processor_kwargs` (passed to the
    training processor and to vLLM) and the processor's image processor (`size.shortest_edge/longest_edge`,
    else its `min_pixels`/`max_pixels`; transformers' Qwen-VL processors name pixel areas so)."""
    limits: list[BoundLimit] = []
    mm = mm_processor_kwargs or {}
    if mm.get("min_pixels") or mm.get("max_pixels"):
        limits.append((mm.get("min_pixels"), mm.get("max_pixels"), "data.mm_processor_kwargs"))
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        size = getattr(image_processor, "size", None)
        get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        lo = get("shortest_edge") if size is not None else None
        hi = get("longest_edge") if size is not None else None
        lo = lo or getattr(image_processor, "min_pixels", None)
        hi = hi or getattr(image_processor, "max_pixels", None)
        if lo or hi:
            limits.append((lo, hi, f"processor {type(image_processor).__name__}"))
    return limits


def effective_bounds(frame: str, configured: tuple[int | None, int | None], limits: list[BoundLimit],
                     image: Mapping[str, Any] | None = None,
                     on_narrow: Callable[[tuple[int, int], tuple[int, int], str], None] | None = None) -> tuple[int, int]:
    """Effective (min_pixels, max_pixels) of one image in box frame `frame` (module doc): the image
    struct's own bounds, else `configured` (`data.ivgr_min_pixels`, `data.ivgr_max_pixels`), else the
    frame's default, narrowed by every limit; `on_narrow(before, after, where)` hears of each limit that
    changes the range. Raises ValueError for an unknown frame or an empty range."""
    from reward_score.frames import get_frame

    spec = get_frame(frame)
    image = image if isinstance(image, Mapping) else {}
    requested = []
    for key, own, default in (("min_pixels", configured[0], spec.default_min_pixels),
                              ("max_pixels", configured[1], spec.default_max_pixels)):
        value = image.get(key)
        requested.append(int(value if value is not None else own if own is not None else default))
    lo, hi = requested
    for limit_lo, limit_hi, where in limits:
        new_lo = max(lo, int(limit_lo)) if limit_lo else lo
        new_hi = min(hi, int(limit_hi)) if limit_hi else hi
        if (new_lo, new_hi) != (lo, hi) and on_narrow is not None:
            on_narrow((lo, hi), (new_lo, new_hi), where)
        lo, hi = new_lo, new_hi
    if lo > hi:
        raise ValueError(f"empty pixel range: min_pixels {lo} > max_pixels {hi} "
                         f"(data.ivgr_min/max_pixels, data.mm_processor_kwargs and the processor disagree)")
    return lo, hi


def fetch_image(item: dict, image_patch_size: int):
    """One image content item (a PIL image, or a local path under "image" / "image_url") as a PIL RGB
    image resized the way qwen_vl_utils.fetch_image does it, without torchvision: within the item's
    `min_pixels`/`max_pixels` (qwen_vl_utils' defaults otherwise), with `reward_score.frames`."""
    from PIL import Image

    from data_prep.images import to_rgb
    from reward_score.families import family_for_patch_size
    from reward_score.frames import resized_size

    if "resized_height" in item or "resized_width" in item:
        raise ValueError("DualStreamDataset images take min_pixels/max_pixels, not resized_height/resized_width")
    image = item.get("image", item.get("image_url"))
    if isinstance(image, str | os.PathLike):
        text = os.fspath(image)
        if "://" in text and not text.startswith("file://"):
            raise ValueError(f"remote images are not supported here: {text[:80]}")
        image = Image.open(text.removeprefix("file://"))
    if not isinstance(image, Image.Image):
        raise TypeError(f"image item must hold a PIL image or a local path, got {type(image).__name__}")
    image = to_rgb(image)
    family = family_for_patch_size(image_patch_size)
    factor = family.resize_factor
    min_pixels = item.get("min_pixels") or FETCH_MIN_TOKENS * factor * factor
    max_pixels = item.get("max_pixels") or FETCH_MAX_TOKENS * factor * factor
    width, height = resized_size(image.width, image.height, family.name, int(min_pixels), int(max_pixels))
    return image.resize((width, height))
