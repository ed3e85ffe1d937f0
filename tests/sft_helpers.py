"""Helpers for the SFT tests (imported through tests/conftest.py's sys.path entry; not a test).

`fetch_image_available()` (a context manager): verl's SFT dataset resizes images through
`qwen_vl_utils.fetch_image`, which imports torchvision (absent on CPU boxes). Where it cannot be imported this installs a stand-in module
that does what its `fetch_image` does for an image item (RGB as `qwen_vl_utils.to_rgb`, smart_resize at
the item's `min_pixels`/`max_pixels` and factor `2 * image_patch_size`, resize); on a GPU node the real
one runs. Yields "real" or "stand-in"; the stand-in is removed on exit (other tests check that
qwen_vl_utils does not import here).
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator


@contextlib.contextmanager
def fetch_image_available() -> Iterator[str]:
    try:
        import qwen_vl_utils  # noqa: F401

        real = True
    except Exception:  # noqa: BLE001 - ImportError, or torchvision failing inside it
        real = False
    if real:
        yield "real"
        return
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from data_prep.images import to_rgb

    def fetch_image(ele: dict, image_patch_size: int = 14) -> Image.Image:
        image = to_rgb(ele["image"])
        factor = image_patch_size * 2
        height, width = smart_resize(image.height, image.width, factor=factor,
                                     min_pixels=ele.get("min_pixels", 4 * factor * factor),
                                     max_pixels=ele.get("max_pixels", 16384 * factor * factor))
        return image.resize((width, height), Image.Resampling.BICUBIC)

    module = types.ModuleType("qwen_vl_utils")
    module.fetch_image = fetch_image
    module.__stand_in__ = True
    sys.modules["qwen_vl_utils"] = module
    try:
        yield "stand-in"
    finally:
        sys.modules.pop("qwen_vl_utils", None)
