"""SFT records: the Parquet that verl 0.9.1's `MultiTurnSFTDataset` trains on (cold start, distill).

One row per training conversation. Columns (`SFT_SCHEMA`):

- `sample_id` (string): unique per file, `<dataset>:<id>` (distilled rewrites add `#r<k>`).
- `data_source` (string): `<dataset>/<sub-source>`.
- `stream` (string): `grounded` (the response localizes objects with `<box>` tags), `textual` (the
  textual stream of a grounded sample) or `single` (a sample RL trains in one stream, without boxes:
  the RL dataset's `single` rows); the prompt is the RL stage's prompt for that stream.
- `question` (string), `answer` (string): the question without placeholders, the `<answer>` text.
- `box_frame` (string): `qwen2_5_vl` | `qwen3_vl`, the frame the grounded prompt asks for and the
  response's boxes are written in (see `reward_score.frames`).
- `image_size` (list<int32> `[width, height]`): ORIGINAL pixel size of the first image.
- `messages` (list<struct<role, content>>): verl's `data.messages_key`: system and user turn exactly
  as the RL stage builds them (`data_prep.prompts`, `<image>` placeholders), then the assistant turn
  `<think>…</think><answer>…</answer>` (the only turn with loss).
- `images` (list<struct<bytes, min_pixels, max_pixels>>): verl's `data.image_key`: embedded bytes
  (verl's SFT dataset cannot resolve paths) and the pixel bounds its `process_image` /
  `qwen_vl_utils.fetch_image` resizes with. They default to the RL stage's bounds
  for the box frame (`data.ivgr_min_pixels` / `data.ivgr_max_pixels` of its model group,
  recipe/ivgr/config/model/*.yaml), so the SFT model sees each image at the same size as in RL and
  the response's resized-pixel boxes (qwen2_5_vl) point at the same pixels.

Response boxes. A source writes boxes in its own frame (`source_box_format`: one of
`data_prep.boxes.BOX_FORMATS`, relative to the stored image, or `model`: already in `box_frame`).
`convert_response` maps every `<box>[x1,y1,x2,y2]</box>` to ORIGINAL pixels (validated and clipped
by `data_prep.boxes`), then into `box_frame` with `reward_score.frames.to_model_frame` at the stored
bounds, written as integers; anything unparsable rejects the sample (no silent box loss).

`SftWriter` is `data_prep.writer.RecordWriter` with this schema: same atomic output, rejects file
and summary (`streams` instead of `kinds`, plus `notes` for counted non-fatal events).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data_prep import prompts
from data_prep.boxes import BOX_FORMATS, BoxError, check_box, scale_boxes, to_pixels
from data_prep.images import MIN_SIDE, ImageError, ImageItem, upscale_to_min_side
from data_prep.schema import MESSAGE, SIZE, RecordError
from data_prep.writer import RecordWriter
from reward_score.families import DEFAULT_FAMILY
from reward_score.format import format_reward
from reward_score.frames import get_frame, resized_size, to_model_frame
from reward_score.parsing import parse_boxes, parse_response
from reward_score.streams import SFT_STREAMS

SFT_SCHEMA_VERSION = "1"
SOURCE_BOX_FORMATS = (*BOX_FORMATS, "model")
SFT_IMAGE = pa.struct([("bytes", pa.binary()), ("min_pixels", pa.int64()), ("max_pixels", pa.int64())])
SFT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        ("data_source", pa.string()),
        ("stream", pa.string()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("box_frame", pa.string()),
        ("image_size", SIZE),
        ("messages", pa.list_(MESSAGE)),
        ("images", pa.list_(SFT_IMAGE)),
    ],
    metadata={"ivgr.sft_schema_version": SFT_SCHEMA_VERSION},
)

# A box tag with a bracketed payload; the payload is parsed strictly (four numbers) below.
_BOX_TAG = re.compile(r"<\s*box\s*>\s*\[([^\[\]]{0,256})\]\s*<\s*/\s*box\s*>", re.IGNORECASE)
_BOX_OPEN = re.compile(r"<\s*box\s*>", re.IGNORECASE)


def has_box_tag(response: str) -> bool:
    """True when the response holds a `<box>` tag (what makes an unlabelled SFT sample grounded)."""
    return bool(_BOX_OPEN.search(response or ""))


def is_sft_file(path: Any) -> bool:
    """True when the Parquet at `path` is an SFT file (has the `messages` column), not a record file."""
    import pyarrow.parquet as pq

    try:
        return "messages" in pq.read_schema(path).names
    except (OSError, ValueError, pa.ArrowException):
        return False


def rl_pixel_bounds(box_frame: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) the RL dataset resizes every image of this box frame with:
    `data.ivgr_min_pixels` / `data.ivgr_max_pixels` of the model groups (`recipe/ivgr/config/model/*.yaml`)
    whose `ivgr.box_frame` is `box_frame`, read from there (the yaml owns them), so an SFT image is the size
    the RL stage later shows it at. Groups of one frame must agree (else ValueError: pass the bounds);
    a frame no group uses gets the family's defaults (`reward_score.frames`)."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    found = set()
    for entry in sorted((files("recipe.ivgr") / "config" / "model").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        group = OmegaConf.load(str(entry))
        if OmegaConf.select(group, "ivgr.box_frame") == box_frame:
            found.add((int(group.data.ivgr_min_pixels), int(group.data.ivgr_max_pixels)))
    if len(found) > 1:
        raise ValueError(f"the model groups of {box_frame} use different pixel bounds {sorted(found)}: "
                         "pass --min-pixels / --max-pixels")
    if found:
        return found.pop()
    spec = get_frame(box_frame)
    return spec.default_min_pixels, spec.default_max_pixels


def pixel_bounds(box_frame: str, min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """(min_pixels, max_pixels) stored on every image: the given ones, else the RL stage's
    (`rl_pixel_bounds`), for every box frame."""
    get_frame(box_frame)  # an unknown frame fails here
    default_lo, default_hi = rl_pixel_bounds(box_frame)
    lo = int(min_pixels) if min_pixels else default_lo
    hi = int(max_pixels) if max_pixels else default_hi
    if lo > hi:
        raise ValueError(f"min_pixels {lo} > max_pixels {hi}")
    return lo, hi


def _numbers(payload: str) -> list[float]:
    try:
        values = [float(part) for part in payload.split(",")]
    except ValueError:
        raise BoxError("box_malformed", payload[:80]) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BoxError("box_malformed", payload[:80])
    return values


def convert_response(response: str, source_box_format: str, image_size: Sequence[int], box_frame: str,
                     bounds: tuple[int, int], upscale: tuple[float, float] = (1.0, 1.0)) -> tuple[str, int]:
    """`response` with every `<box>` rewritten into `box_frame` (integers), and the number of boxes.

    `image_size` is the ORIGINAL (width, height) of the stored first image; `upscale` the (sx, sy) by
    which that image was upscaled (tiny images, `data_prep.images.upscale_to_min_side`); `bounds` the
    (min_pixels, max_pixels) the model sees it with. Raises BoxError on any unusable box.
    """
    if source_box_format not in SOURCE_BOX_FORMATS:
        raise BoxError("box_format_unknown", f"{source_box_format!r}; choose one of {SOURCE_BOX_FORMATS}")
    if len(_BOX_TAG.findall(response)) != len(_BOX_OPEN.findall(response)):
        raise BoxError("box_malformed", "a <box> tag without a [x1,y1,x2,y2] payload")
    width, height = int(image_size[0] * upscale[0] + 0.5), int(image_size[1] * upscale[1] + 0.5)
    if source_box_format == "model":
        spec = get_frame(box_frame)
        limit = (spec.grid, spec.grid) if spec.relative else resized_size(width, height, box_frame, *bounds)
    count = 0

    def rewrite(match: re.Match) -> str:
        nonlocal count
        values = _numbers(match.group(1))
        if source_box_format == "model":
            box = check_box(values, limit)
        else:
            pixels = check_box(to_pixels(values, source_box_format, image_size), image_size)
            pixels = scale_boxes([pixels], *upscale)[0]
            box = to_model_frame([pixels], (width, height), box_frame, *bounds)[0]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise BoxError("box_degenerate", f"{values} is {[x1, y1, x2, y2]} in {box_frame}")
        count += 1
        return f"<box>[{x1},{y1},{x2},{y2}]</box>"

    return _BOX_TAG.sub(rewrite, response), count


def check_response(response: str, stream: str) -> str:
    """The `<answer>` text of a valid SFT target; raises RecordError (`format_invalid`,
    `box_in_textual` (also for `single`), `no_box_in_grounded`) when `reward_score.format_reward` would
    give it 0."""
    parsed = parse_response(response)
    if not parsed.structure_ok or not (parsed.think or "").strip() or not (parsed.answer or "").strip():
        raise RecordError("format_invalid", response[:120])
    if stream != "grounded" and parsed.box_tags:
        raise RecordError("box_in_textual", f"{parsed.box_tags} <box> tags")
    if format_reward(parsed, stream, parse_boxes(response) if stream == "grounded" else None) != 1.0:
        raise RecordError("no_box_in_grounded", "no valid <box> inside <think>")
    return parsed.answer.strip()


@dataclass
class SftSample:
    """One SFT conversation before conversion: images loaded, response in the source's box format."""

    sample_id: str
    data_source: str
    question: str
    response: str
    images: list[ImageItem]
    image_sizes: list[tuple[int, int]]
    choices: list[str] | None = None
    stream: str | None = None  # None: grounded iff the response has <box> tags
    source_box_format: str = "xyxy"
    reference_answer: str | None = None  # when the source states the answer separately
    notes: list[str] = field(default_factory=list)


def to_sft_row(sample: SftSample, box_frame: str, bounds: tuple[int, int]) -> dict[str, Any]:
    """The SFT Parquet row of one sample; raises RecordError / BoxError with a reject reason."""
    from reward_score.answers import contains_answer, match_answer

    question = prompts.clean_question(sample.question, len(sample.images or []))
    if not question:
        raise RecordError("empty_question")
    if not sample.images:
        raise RecordError("no_image")
    response = str(sample.response or "").strip()
    if not response:
        raise RecordError("empty_response")
    stream = sample.stream or ("grounded" if has_box_tag(response) else "textual")
    if stream not in SFT_STREAMS:
        raise RecordError("bad_stream", repr(stream))
    items, upscale = [], (1.0, 1.0)
    for position, (item, size) in enumerate(zip(sample.images, sample.image_sizes)):
        if min(size) < MIN_SIDE:  # the Qwen processors refuse sides under 28 px
            data, _, sx, sy = upscale_to_min_side(item.data, size)
            item = ImageItem(data, item.path)
            if position == 0:
                upscale = (sx, sy)
        if not item.data:
            raise RecordError("image_no_data", "SFT images must be embedded")
        items.append(item)
    first = sample.image_sizes[0]
    response, boxes = convert_response(response, sample.source_box_format, first, box_frame, bounds, upscale)
    answer = check_response(response, stream)
    if sample.reference_answer is not None and str(sample.reference_answer).strip():
        reference = str(sample.reference_answer)
        verdict = match_answer(answer, reference, choices=sample.choices)
        # undecided by the rules (free text): the reference must appear in the answer (no judge here)
        if not (verdict.correct if verdict.decisive else contains_answer(answer, reference)):
            raise RecordError("answer_mismatch", f"response says {answer!r}, reference {sample.reference_answer!r}")
    choices = [str(c).strip() for c in sample.choices] if sample.choices else None
    n = len(items)
    prompt = prompts.stream_messages(stream, question, choices, n, box_frame)
    size = [int(round(first[0] * upscale[0])), int(round(first[1] * upscale[1]))]
    return {
        "sample_id": sample.sample_id, "data_source": sample.data_source, "stream": stream,
        "question": question, "answer": answer, "box_frame": box_frame, "image_size": size,
        "messages": [*prompt, {"role": "assistant", "content": response}],
        "images": [{"bytes": item.data, "min_pixels": bounds[0], "max_pixels": bounds[1]} for item in items],
        "_boxes": boxes,
    }


class SftWriter(RecordWriter):
    """`RecordWriter` for SFT rows: `add()` takes an `SftSample`; summary counts streams and notes."""

    schema = SFT_SCHEMA

    def __init__(self, out, *, box_frame: str = DEFAULT_FAMILY, bounds: tuple[int, int] | None = None,
                 row_group_rows: int = 256, **writer_options):
        super().__init__(out, row_group_rows=row_group_rows, **writer_options)
        self.box_frame = box_frame
        self.bounds = bounds or pixel_bounds(box_frame)
        self.notes: Counter = Counter()
        self.boxes = 0

    def add(self, sample: SftSample, row_id: str) -> bool:
        if sample.sample_id in self._seen:
            self.reject(row_id, "duplicate_id", sample.sample_id)
            return False
        try:
            row = to_sft_row(sample, self.box_frame, self.bounds)
        except (RecordError, BoxError, ImageError) as err:
            self.reject(row_id, err.reason, err.detail)
            return False
        self.add_row(row)
        self.notes.update(sample.notes)
        return True

    def add_row(self, row: dict[str, Any]) -> None:
        """Append an already converted row (`to_sft_row`)."""
        self.boxes += row.pop("_boxes", 0)
        self._seen.add(row["sample_id"])
        self._buffer.append(row)
        self._buffer_bytes += sum(len(image["bytes"] or b"") for image in row["images"])
        self.written += 1
        self.kinds[row["stream"]] += 1
        self.sources[row["data_source"]] += 1
        if len(self._buffer) >= self.row_group_rows or self._buffer_bytes >= self.row_group_bytes:
            self._flush()

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["streams"] = out.pop("kinds")
        out.update(notes=dict(sorted(self.notes.items())), boxes=self.boxes, box_frame=self.box_frame,
                   min_pixels=self.bounds[0], max_pixels=self.bounds[1])
        return out


# -- converter plumbing (data_prep.ivgr_sft35k, data_prep.generic_sft, recipe.ivgr.distill) -------------
def add_sft_options(parser, default_box_format: str) -> None:
    """Options every SFT converter adds to `data_prep.common.base_parser`."""
    parser.add_argument("--response-box-format", choices=SOURCE_BOX_FORMATS, default=default_box_format,
                        help="frame of the boxes in the source responses: pixels (xyxy/xywh) or 0-1 / 0-1000 "
                             "relative to the stored image, or `model` (already in --box-frame)")
    parser.add_argument("--min-pixels", type=int, default=None,
                        help="smallest image area the model sees (default: the RL model group's data.ivgr_min_pixels)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="largest image area the model sees (default: the RL model group's data.ivgr_max_pixels)")


def load_images(loader, raw_images: Sequence[Any] | None) -> tuple[list[ImageItem], list[tuple[int, int]]]:
    """Embedded images and their ORIGINAL sizes, through `data_prep.common.ImageLoader` (embed=True)."""
    loaded = [loader.load(raw) for raw in (raw_images or [])]
    if not loaded:
        raise RecordError("no_image")
    items = [item if item.data is not None else ImageItem(loader.read_bytes(item), item.path) for item, _ in loaded]
    return items, [size for _, size in loaded]


def writer_for(args) -> SftWriter:
    """The SftWriter of a converter run (`common.run(..., writer=writer_for(args))`)."""
    frame = args.box_frame or DEFAULT_FAMILY
    return SftWriter(args.out, box_frame=frame, row_group_rows=args.row_group_rows,
                     bounds=pixel_bounds(frame, args.min_pixels, args.max_pixels),
                     min_keep_ratio=getattr(args, "min_keep_ratio", 0.5))
