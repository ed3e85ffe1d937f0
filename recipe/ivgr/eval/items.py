"""One item on its way to the model: images decoded and resized to the model's frame (`Prepared`), the chat
prompt of a stream (the training layout, `data_prep.prompts`), the backend request, and the boxes of a
grounded response mapped back to original pixels.

Images are resized ONCE here, to the model's frame (`reward_score.frames.resized_size` with the run's
pixel bounds), and handed to the backend already resized; the backend's processor then does not resize
again (the transformers backend checks it). Boxes are mapped back with the same bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from recipe.ivgr.eval.backends import GenerationRequest
from recipe.ivgr.eval.config import EvalConfig


@dataclass
class Prepared:
    """One item ready for prompting: images decoded and resized to the model's frame."""

    row: dict
    images: list[Image.Image] = field(default_factory=list)  # resized, in order
    size: tuple[int, int] | None = None  # ORIGINAL (width, height) of the first image
    model_size: tuple[int, int] | None = None  # resized (width, height) of the first image
    failure: str | None = None  # "missing_image: <detail>"

    @property
    def item_id(self) -> str:
        return str(self.row["item_id"])


def _resize(image: Image.Image, frame: str, bounds: tuple[int, int]) -> Image.Image:
    from reward_score.frames import resized_size

    width, height = resized_size(image.width, image.height, frame, bounds[0], bounds[1])
    return image if (width, height) == image.size else image.resize((width, height))


def open_original(row: dict, index: int, image_root: Path | None) -> Image.Image:
    """Image `index` of an eval row, decoded to RGB at its original size (raises ImageError)."""
    from data_prep.images import ImageError, open_image

    images = row.get("images") or []
    if index >= len(images):
        raise ImageError("image_no_data", f"item has {len(images)} images")
    return open_image(dict(images[index]), image_root)


def prepare(row: dict, cfg: EvalConfig, bounds: tuple[int, int], image_root: Path | None) -> Prepared:
    item = Prepared(row)
    try:
        if not row.get("images"):
            raise ValueError("no image")
        for index in range(len(row["images"])):
            image = open_original(row, index, image_root)
            if index == 0:
                item.size = image.size
            item.images.append(_resize(image, cfg.box_frame, bounds))
        item.model_size = item.images[0].size
    except Exception as err:  # noqa: BLE001  (ImageError, PIL errors, aspect ratio > 200 ...)
        item.images = []
        item.failure = f"missing_image: {type(err).__name__}: {err}"[:300]
    return item


# ---------------------------------------------------------------------------------------- prompts
def _question(row: dict) -> tuple[str, list[str] | None]:
    choices = list(row["choices"]) if row.get("choices") is not None else None
    return str(row["question"]), choices


def _content_lists(messages: list[dict]) -> list[dict]:
    """String messages with <image> placeholders -> content lists with bare {"type": "image"} items."""
    from data_prep.prompts import IMAGE_PLACEHOLDER

    out = []
    for message in messages:
        content: list[dict] = []
        # k placeholders split the text into k+1 parts: an image item goes between consecutive parts
        for index, part in enumerate(str(message["content"]).split(IMAGE_PLACEHOLDER)):
            if index:
                content.append({"type": "image"})
            if part:
                content.append({"type": "text", "text": part})
        out.append({"role": message["role"], "content": content})
    return out


def prompt_messages(row: dict, stream: str, num_images: int, box_frame: str, num_crops: int = 0,
                    crop_note: bool = True) -> list[dict]:
    """Chat messages (string contents with <image> placeholders) of `data_prep.prompts.stream_messages`,
    the layout training uses; `num_crops` crops follow the images in tool mode."""
    from data_prep import prompts

    question, choices = _question(row)
    return prompts.stream_messages(stream, question, choices, num_images, box_frame, num_crops, crop_note)


def make_request(row: dict, messages: list[dict], images: list[Image.Image], pass_name: str) -> GenerationRequest:
    content = _content_lists(messages)
    n = sum(1 for m in content for c in m["content"] if c.get("type") == "image")
    if n != len(images):
        raise ValueError(f"{n} image placeholders for {len(images)} images")
    return GenerationRequest(messages=content, images=list(images), item_id=str(row["item_id"]), pass_name=pass_name)


@dataclass
class GroundedBoxes:
    """Boxes of one grounded response: model frame, original pixels, parse problems."""

    model: list = field(default_factory=list)
    original: list = field(default_factory=list)
    invalid: int = 0
    outside: int = 0  # boxes reaching beyond the image by more than 1 original pixel


def grounded_boxes(response: str, item: Prepared, cfg: EvalConfig, bounds: tuple[int, int]) -> GroundedBoxes:
    from reward_score.frames import to_original_pixels
    from reward_score.parsing import parse_boxes

    parsed = parse_boxes(response or "")
    out = GroundedBoxes(model=[list(b) for b in parsed.valid], invalid=sum(parsed.invalid.values()))
    if parsed.valid and item.size is not None:
        original = to_original_pixels(parsed.valid, item.size, cfg.box_frame, bounds[0], bounds[1])
        out.original = [[round(v, 2) for v in b] for b in original]
        width, height = item.size
        out.outside = sum(1 for b in original if b[0] < -1 or b[1] < -1 or b[2] > width + 1 or b[3] > height + 1)
    return out
