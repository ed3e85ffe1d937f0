"""Prompt templates (our own wording), owned here and nowhere else.

Layout of every prompt, as chat messages with verl's `<image>` placeholders:

    system: SYSTEM_PROMPT                                  (identical for every stream)
    user:   <image>…<image>{question}[\\n{options}]\\n\\n{stream instruction}

Image(s) and question come first and the stream instruction last, so the grounded and the
textual prompt of one sample share one long token prefix (system turn, all image tokens, the
question, and the instructions' common opening sentence): vLLM's prefix cache then computes the
image tokens once per sample, not once per stream. `data_prep.inspect` measures the ratio.

Box wording depends on the model family's output frame (`reward_score.families`, the frame maths
in `reward_score.frames`): `qwen2_5_vl` writes absolute pixels of the image as the model sees it
(after resizing); `qwen3_vl` writes coordinates relative to the image on a 0-1000 grid.

Prompts are rendered when data is read, never stored with a record: `record_messages` turns a
record's facts (`data_prep.schema`) and the model family into one stream's messages for the recipe
dataset, `data_prep.inspect` and IVR-R1 (which trains through that dataset); the SFT converters,
`recipe.ivgr.distill` and the eval call `stream_messages` with the same layout. A frame change is a
different `family` argument, never an edit of stored text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reward_score.choices import render_options
from reward_score.families import DEFAULT_FAMILY, FAMILIES, FAMILY_NAMES

IMAGE_PLACEHOLDER = "<image>"
# verl splits prompt strings on these; a stray one in source text breaks its placeholder count.
MEDIA_PLACEHOLDERS = re.compile(r"<image>|<video>|<audio>")

SYSTEM_PROMPT = "You are a careful visual assistant. Look closely at the image before you answer."

# The opening sentence every stream shares: the streams diverge only after it.
_SHARED_OPENING = ("Think step by step inside <think> </think>, then write only the final answer "
                   "inside <answer> </answer>.")

# The grounded instruction: the shared opening, then the box syntax, then the family's own words for
# where the corners are (`reward_score.families.ModelFamily.box_wording`).
_GROUNDED_BOXES = " While thinking, localize every object you mention as <box>[x1,y1,x2,y2]</box>: "
GROUNDED_INSTRUCTIONS: dict[str, str] = {name: _SHARED_OPENING + _GROUNDED_BOXES + family.box_wording
                                         for name, family in FAMILIES.items()}
TEXTUAL_INSTRUCTION = _SHARED_OPENING + " Describe what you see in words only, without boxes or coordinates."
SINGLE_INSTRUCTION = _SHARED_OPENING + " Keep the final answer short: a letter, a number, a word or an expression."

# Tool-assisted inference (recipe.ivgr.eval): said right after the images when crops of the model's own
# boxes follow the full picture.
CROP_NOTE = {1: "The first image is the full picture; the next image is a zoomed-in crop of a region of it.",
             2: "The first image is the full picture; the next {n} images are zoomed-in crops of regions of it."}

Message = dict[str, str]


def clean_question(text: str, num_images: int = 1) -> str:
    """Source question as the record stores it, whitespace trimmed.

    A multi-image question that places each of its `num_images` images itself (exactly one `<image>` per
    image, e.g. "<image> Compare it with <image>: which is brighter?") keeps its placeholders where they
    are, so the words keep referring to the right picture; otherwise every media placeholder is removed
    and the prompt puts the images first (`_messages`)."""
    media = MEDIA_PLACEHOLDERS.findall(text)
    after_text = IMAGE_PLACEHOLDER in re.sub(r"^(?:\s*<image>)+", "", text)  # not merely all images up front
    if num_images >= 2 and media == [IMAGE_PLACEHOLDER] * num_images and after_text:
        return text.strip()
    return re.sub(rf"[ \t]*(?:{MEDIA_PLACEHOLDERS.pattern})[ \t]*", " ", text).strip()


def places_images(question: str, num_images: int) -> bool:
    """True when `question` carries its own placeholder for each of its `num_images` images (kept by
    `clean_question` only when one of them stands after the question's first words)."""
    return num_images >= 2 and question.count(IMAGE_PLACEHOLDER) == num_images


def question_block(question: str, choices: Sequence[str] | None = None) -> str:
    """The question, followed by lettered options ("A. text" lines, `reward_score.choices`) when the
    source gives them separately."""
    if not choices:
        return question
    return f"{question}\nOptions:\n{render_options(choices)}"


def _messages(question: str, choices: Sequence[str] | None, num_images: int, instruction: str) -> list[Message]:
    leading = 0 if places_images(question, num_images) else num_images
    user = IMAGE_PLACEHOLDER * leading + question_block(question, choices) + "\n\n" + instruction
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def grounded_messages(question: str, choices: Sequence[str] | None, num_images: int,
                      box_frame: str = DEFAULT_FAMILY) -> list[Message]:
    """Grounded-stream prompt: reasoning must localize objects with boxes in `box_frame`."""
    if box_frame not in GROUNDED_INSTRUCTIONS:
        raise ValueError(f"unknown box_frame {box_frame!r}; choose one of {FAMILY_NAMES}")
    return _messages(question, choices, num_images, GROUNDED_INSTRUCTIONS[box_frame])


def textual_messages(question: str, choices: Sequence[str] | None, num_images: int) -> list[Message]:
    """Textual-stream prompt: same structure, plain-text reasoning, no boxes."""
    return _messages(question, choices, num_images, TEXTUAL_INSTRUCTION)


def single_messages(question: str, choices: Sequence[str] | None, num_images: int) -> list[Message]:
    """Prompt of a single-stream sample (general reasoning without boxes)."""
    return _messages(question, choices, num_images, SINGLE_INSTRUCTION)


def stream_messages(stream: str, question: str, choices: Sequence[str] | None, num_images: int, family: str,
                    num_crops: int = 0, crop_note: bool = True) -> list[Message]:
    """The chat messages of `stream` (`reward_score.streams.STREAMS`) for model `family` (its box frame).

    `num_crops` > 0 (tool-assisted inference, textual stream only): that many crop images follow the
    `num_images` full images, and with `crop_note` one sentence after the images says what they are.
    Raises ValueError for an unknown stream or family.
    """
    if stream == "grounded":
        if num_crops:
            raise ValueError("crops follow the textual stream only")
        return grounded_messages(question, choices, num_images, family)
    if stream == "single":
        return single_messages(question, choices, num_images)
    if stream != "textual":
        raise ValueError(f"unknown stream {stream!r}")
    if num_crops:  # the full images first, then the crops: a question's own placeholders would misplace them
        question = clean_question(question)
    messages = textual_messages(question, choices, num_images + num_crops)
    if num_crops and crop_note:
        placeholders = IMAGE_PLACEHOLDER * (num_images + num_crops)
        user = messages[-1]["content"]
        messages[-1] = {"role": "user", "content": placeholders + crop_note_text(num_crops) + "\n"
                        + user[len(placeholders):]}
    return messages


def stream_question(record: Mapping[str, Any], stream: str) -> str:
    """The question `stream` asks: the grounded stream's `question`, else `question_textual` when set."""
    return str(record["question"] if stream == "grounded" else (record.get("question_textual") or record["question"]))


def record_messages(record: Mapping[str, Any], stream: str, family: str) -> list[Message]:
    """What the model sees for one stream of a record (`data_prep.schema` facts, any schema version):
    the recipe dataset, `data_prep.inspect` and the SFT converters all render prompts here."""
    choices = list(record["choices"]) if record.get("choices") is not None else None
    return stream_messages(stream, stream_question(record, stream), choices, len(record.get("images") or []), family)


def crop_note_text(num_crops: int) -> str:
    """The tool-mode sentence for `num_crops` crops following the full image."""
    return CROP_NOTE[1 if num_crops == 1 else 2].format(n=num_crops)


def count_placeholders(messages: Sequence[Message]) -> int:
    """Number of `<image>` placeholders over all messages."""
    return sum(str(m.get("content") or "").count(IMAGE_PLACEHOLDER) for m in messages)


def to_content_lists(messages: Sequence[Message], images: Sequence[object]) -> list[dict]:
    """Messages whose `<image>` placeholders are replaced by `{"type": "image", "image": img}` items,
    in order (the structure verl's `RLHFDataset._build_messages` gives the processor)."""
    out, used = [], 0
    for message in messages:
        content: list[dict] = []
        for part in re.split(f"({IMAGE_PLACEHOLDER})", str(message["content"])):
            if part == IMAGE_PLACEHOLDER:
                content.append({"type": "image", "image": images[used]})
                used += 1
            elif part:
                content.append({"type": "text", "text": part})
        out.append({"role": message["role"], "content": content})
    if used != len(images):
        raise ValueError(f"{used} <image> placeholders for {len(images)} images")
    return out
