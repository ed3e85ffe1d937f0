"""Image handling for data preparation: safe paths, header-only size reads, tiny-image upscaling.

An image reaches the Parquet either embedded (`bytes`) or by a path RELATIVE to an image root
(`path`); see `data_prep.schema`. Paths that are absolute, URLs, or escape the root (`..`,
symlinks pointing outside) are refused. Sizes are read from the file header with PIL, without
decoding pixels. Truncation is caught cheaply by default from the file's end: a JPEG must end
with its EOI marker, a PNG with its IEND chunk, a GIF with its trailer byte, a WebP must hold
the length its RIFF header states; other formats are decoded. `decode=True` decodes every image
fully (also catches corrupt pixel data in a complete file, about 100x slower).

Every failure is an `ImageError` whose `reason` is the code written to the rejects file:
`image_missing`, `image_empty` (zero bytes), `image_corrupt`, `image_truncated` (end marker
missing), `image_too_large` (PIL's
decompression-bomb limit), `image_aspect_ratio` (> 200, which the Qwen processors refuse),
`image_path_absolute`, `image_path_url`, `image_path_escapes_root`, `image_path_invalid` (a NUL
byte or another control character, which no file system path holds), `image_no_data`.
`check_geometry` is THE size rule: data preparation, `data_prep.validate` (on every row's stored
`image_size`) and the training dataset (on every decoded image) all call it.
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

from data_prep.errors import ReasonError

TAIL_BYTES = 1024  # how much of a file's end is read to find its end marker
MIN_SIDE = 28  # Qwen2.5-VL resize factor: smaller sides are upscaled (with their boxes)
MAX_ASPECT_RATIO = 200
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ImageError(ReasonError):
    """An unusable image; `reason` is the short code written to the rejects file."""


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
    if _CONTROL.search(text):  # os.path / pathlib raise a bare ValueError on a NUL byte
        raise ImageError("image_path_invalid", f"control character in {text[:120]!r}")
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


def is_complete(image_format: str | None, head: bytes, tail: bytes, length: int) -> bool | None:
    """Whether an encoded image of `length` bytes ends where its format says it must.

    `head` is the file's first 12 bytes, `tail` its last `TAIL_BYTES`. JPEG: the EOI marker
    FF D9 in the tail (entropy-coded data byte-stuffs FF, so EOI cannot appear inside it; bytes
    some writers append after EOI are allowed). PNG: the IEND chunk type in the tail. GIF: the
    trailer 0x3B after the last block. WebP: at least the 8 + RIFF size bytes the header states.
    None for other formats (the caller decodes them instead).
    """
    if image_format in ("JPEG", "MPO"):
        return b"\xff\xd9" in tail
    if image_format == "PNG":
        return b"IEND" in tail[-64:]
    if image_format == "GIF":
        return b"\x3b" in tail[-16:]
    if image_format == "WEBP" and head[:4] == b"RIFF":
        return length >= 8 + int.from_bytes(head[4:8], "little")
    return None


def _open_size(fp, name: str, decode: bool, head: bytes = b"", tail: bytes = b"",
               length: int = 0) -> tuple[int, int]:
    truncated = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as image:
                size = image.size
                complete = None if decode else is_complete(image.format, head, tail, length)
                if decode or complete is None:
                    image.load()
                truncated = complete is False
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError("image_too_large", f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        reason = "image_truncated" if "truncated" in str(err) else "image_corrupt"
        raise ImageError(reason, f"{name}: {type(err).__name__}: {err}"[:200]) from None
    if truncated:
        raise ImageError("image_truncated", f"{name}: no end marker in the last {TAIL_BYTES} bytes")
    return check_geometry(int(size[0]), int(size[1]), name)


def check_geometry(width: int, height: int, name: str = "<image>") -> tuple[int, int]:
    """(width, height) when an image of that size (pixels) can reach a Qwen-VL model, else ImageError:
    a side <= 0 (`image_corrupt`) or an aspect ratio over `MAX_ASPECT_RATIO` (`image_aspect_ratio`:
    smart-resize refuses it, so the dataset could never build its prompt)."""
    if width <= 0 or height <= 0:
        raise ImageError("image_corrupt", f"{name}: size {width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError("image_aspect_ratio", f"{name}: {width}x{height} (longer side over {MAX_ASPECT_RATIO}x "
                                               "the shorter)")
    return width, height


def size_of_bytes(data: bytes | None, name: str = "<bytes>", decode: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of an embedded image, read from its header."""
    if data is None:
        raise ImageError("image_no_data", name)
    if len(data) == 0:
        raise ImageError("image_empty", name)
    return _open_size(io.BytesIO(data), name, decode, data[:12], data[-TAIL_BYTES:], len(data))


def size_of_file(path: Path, decode: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of an image file, read from its header (plus its last bytes)."""
    try:
        handle = open(path, "rb")  # one open for the end marker and PIL's header read
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError("image_missing", str(path)) from None
    except IsADirectoryError:
        raise ImageError("image_missing", f"{path} is a folder") from None
    with handle:
        length = os.fstat(handle.fileno()).st_size
        if length == 0:
            raise ImageError("image_empty", str(path))
        handle.seek(max(0, length - TAIL_BYTES))
        tail = handle.read()
        handle.seek(0)
        head = handle.read(12)
        handle.seek(0)
        return _open_size(handle, str(path), decode, head, tail, length)


def upscale_to_min_side(data: bytes, size: tuple[int, int],
                        min_side: int = MIN_SIDE) -> tuple[bytes, tuple[int, int], float, float]:
    """Upscale an image whose shorter side is below `min_side` pixels (aspect kept, bicubic, PNG).

    Returns (png bytes, new (width, height), sx, sy); boxes must be multiplied by (sx, sy). Raises
    `ImageError("image_corrupt")` when the pixels cannot be decoded (a readable header does not mean
    a readable pixel stream: a reject, never a crash of the conversion).
    """
    width, height = size
    factor = min_side / min(width, height)
    new_size = (max(min_side, math.ceil(width * factor)), max(min_side, math.ceil(height * factor)))
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB").resize(new_size, Image.Resampling.BICUBIC)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_corrupt", f"upscaling a {width}x{height} image: {type(err).__name__}: {err}"[:200]) \
            from None
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
    """Decode one stored image struct ({"bytes", "path"}) to an RGB PIL image (bytes win); every
    failure, a size `check_geometry` refuses included, is an `ImageError`."""
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
            image = to_rgb(image)
    except FileNotFoundError:  # deleted between the check above and the open
        raise ImageError("image_missing", name) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError("image_corrupt", f"{name}: {type(err).__name__}: {err}"[:200]) from None
    check_geometry(image.width, image.height, name)
    return image
