"""Image handling for data preparation: safe paths, header-only size reads, tiny-image upscaling.

An image reaches the Parquet either embedded (`bytes`) or by a path RELATIVE to an image root
(`path`); see `data_prep.schema`. Paths that are absolute, URLs, or escape the root (`..`,
symlinks pointing outside) are refused. Sizes are read from the file header with PIL, without
decoding pixels, unless `decode=True` (catches truncated pixel data, about 100x slower).

Every failure is an `ImageError` whose `reason` is the code written to the rejects file:
`image_missing`, `image_empty` (zero bytes), `image_corrupt`, `image_too_large` (PIL's
decompression-bomb limit), `image_aspect_ratio` (> 200, which the Qwen processors refuse),
`image_path_absolute`, `image_path_url`, `image_path_escapes_root`, `image_no_data`.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

MIN_SIDE = 28  # Qwen2.5-VL resize factor: smaller sides are upscaled (with their boxes)
MAX_ASPECT_RATIO = 200
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class ImageError(ValueError):
    """An unusable image; `reason` is the short code written to the rejects file."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageItem:
    """One image of a record: embedded `data` (wins when present) and/or `path` relative to the root."""

    data: bytes | None = None
    path: str | None = None

    def to_struct(self) -> dict:
        return {"bytes": self.data, "path": self.path}


def safe_relative_path(path: str, root: Path | None) -> tuple[str, Path]:
    """(normalized relative path, resolved absolute file) for `path` under `root`.

    Refuses absolute paths, URLs and paths that leave the root, also through symlinks.
    """
    text = str(path).strip().replace("\\", "/")
    if not text:
        raise ImageError("image_no_data", "empty path")
    if _URL.match(text):
        raise ImageError("image_path_url", text[:120])
    if text.startswith("/") or re.match(r"^[a-zA-Z]:/", text):
        raise ImageError("image_path_absolute", text[:120])
    rel = os.path.normpath(text).replace("\\", "/")
    if rel == ".." or rel.startswith("../"):
        raise ImageError("image_path_escapes_root", text[:120])
    base = (root or Path(".")).resolve()
    full = (base / rel).resolve()
    if not full.is_relative_to(base):
        raise ImageError("image_path_escapes_root", f"{text[:120]} -> outside {base}")
    return str(PurePosixPath(rel)), full


def _open_size(fp, name: str, decode: bool) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as image:
                size = image.size
                if decode:
                    image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError("image_too_large", f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_corrupt", f"{name}: {type(err).__name__}: {err}"[:200]) from None
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ImageError("image_corrupt", f"{name}: size {width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError("image_aspect_ratio", f"{name}: {width}x{height}")
    return width, height


def size_of_bytes(data: bytes | None, name: str = "<bytes>", decode: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of an embedded image, read from its header."""
    if data is None:
        raise ImageError("image_no_data", name)
    if len(data) == 0:
        raise ImageError("image_empty", name)
    return _open_size(io.BytesIO(data), name, decode)


def size_of_file(path: Path, decode: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of an image file, read from its header."""
    try:
        if path.stat().st_size == 0:
            raise ImageError("image_empty", str(path))
    except FileNotFoundError:
        raise ImageError("image_missing", str(path)) from None
    except NotADirectoryError:
        raise ImageError("image_missing", str(path)) from None
    return _open_size(path, str(path), decode)


def upscale_to_min_side(data: bytes, size: tuple[int, int],
                        min_side: int = MIN_SIDE) -> tuple[bytes, tuple[int, int], float, float]:
    """Upscale an image whose shorter side is below `min_side` pixels (aspect kept, bicubic, PNG).

    Returns (png bytes, new (width, height), sx, sy); boxes must be multiplied by (sx, sy).
    """
    width, height = size
    factor = min_side / min(width, height)
    new_size = (max(min_side, math.ceil(width * factor)), max(min_side, math.ceil(height * factor)))
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB").resize(new_size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), new_size, new_size[0] / width, new_size[1] / height


def to_rgb(image: Image.Image) -> Image.Image:
    """As qwen_vl_utils.to_rgb: RGBA composited on a white background, everything else converted to
    RGB. Training, preparation and evaluation all decode through this, so they see the same pixels."""
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB")


def open_image(item: dict, root: Path | None) -> Image.Image:
    """Decode one stored image struct ({"bytes", "path"}) to an RGB PIL image (bytes win)."""
    if item.get("bytes"):
        source, name = io.BytesIO(item["bytes"]), "<bytes>"
    elif item.get("path"):
        _, source = safe_relative_path(item["path"], root)
        name = str(source)
        if not source.exists():
            raise ImageError("image_missing", name)
    else:
        raise ImageError("image_no_data", "neither bytes nor path")
    try:
        with Image.open(source) as image:
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_corrupt", f"{name}: {type(err).__name__}: {err}"[:200]) from None
