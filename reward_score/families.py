"""Model families: the one registry of what differs between the Qwen-VL generations the recipes train.

A family fixes, for every part of the pipeline:

- its box frame (the family's name is the frame's name): how the model writes boxes, absolute
  pixels of the resized image (`qwen2_5_vl`) or a 0-1000 grid relative to the image (`qwen3_vl`);
  `reward_score.frames` does the maths;
- the vision tower's patch size and spatial merge size (resize factor = patch x merge: every side
  of an image the model sees is a multiple of it);
- the default pixel bounds an image is resized within (the paper's training setting: 4 to 4,096
  image tokens, i.e. 4..4096 x factor^2 pixels);
- the grounded instruction's frame-specific wording (`data_prep.prompts` puts it in the prompt) and
  the frame described to a text model (`recipe.ivgr.distill`'s rewrite request);
- how a checkpoint is recognised: its config.json `model_type`, or the architecture name in a
  folder name or hub id.

Sources for the numbers: Qwen2.5-VL's and Qwen3-VL's `preprocessor_config.json` on the Hugging Face
hub (`patch_size` 14 / 16, `merge_size` 2) and their grounding formats as documented in the
Qwen2.5-VL technical report (absolute coordinates) and the Qwen3-VL model card (relative 0-1000).
Qwen2-VL (0-1000 coordinates in its own `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` syntax) is not a
family here: detection reports it as unknown rather than guessing a frame.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FAMILY = "qwen2_5_vl"
_MIN_TOKENS, _MAX_TOKENS = 4, 4096  # the paper's image-token bounds at training time


@dataclass(frozen=True)
class ModelFamily:
    """One model family; `name` is also its box-frame name (see module doc)."""

    name: str
    title: str  # human name, e.g. "Qwen2.5-VL"
    patch_size: int  # vision patch side in pixels (the processor's `patch_size`, verl's data.image_patch_size)
    merge_size: int  # spatial merge (2x2 patches per image token)
    relative: bool  # True: boxes on a 0..grid scale relative to the image; False: resized absolute pixels
    box_wording: str  # how the grounded instruction says where box corners are
    coordinate_words: str  # the frame described to a text model ({w}x{h}: the resized size, absolute frames)
    model_types: tuple[str, ...]  # config.json `model_type` values (exact, or a prefix followed by "_")
    name_pattern: str  # regex (case-insensitive) for the architecture name in a folder name / hub id
    grid: float = 1000.0  # scale of relative boxes

    @property
    def resize_factor(self) -> int:
        """Pixels per image-token side: every resized side is a multiple of it (28 / 32)."""
        return self.patch_size * self.merge_size

    @property
    def default_min_pixels(self) -> int:
        return _MIN_TOKENS * self.resize_factor ** 2

    @property
    def default_max_pixels(self) -> int:
        return _MAX_TOKENS * self.resize_factor ** 2

    def matches_model_type(self, model_type: str) -> bool:
        return any(model_type == t or model_type.startswith(t + "_") for t in self.model_types)


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    ModelFamily("qwen2_5_vl", "Qwen2.5-VL", patch_size=14, merge_size=2, relative=False,
                box_wording="its top-left and bottom-right corners in pixels of the image as you see it.",
                coordinate_words="pixel coordinates of a {w}x{h} image, origin at the top left",
                model_types=("qwen2_5_vl",), name_pattern=r"qwen[-_ ]?2[._]5[-_. ]?vl"),
    ModelFamily("qwen3_vl", "Qwen3-VL", patch_size=16, merge_size=2, relative=True,
                box_wording="its top-left and bottom-right corners on a 0-1000 scale relative to the image.",
                coordinate_words="coordinates on a 0-1000 scale in both directions, origin at the top left",
                model_types=("qwen3_vl",), name_pattern=r"qwen[-_ ]?3[-_. ]?vl"),
)}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family (= box frame) called `name`; ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family / box frame {name!r}; choose one of {list(FAMILY_NAMES)}") from None


def family_for_patch_size(patch_size: int) -> ModelFamily:
    """The family whose vision patch is `patch_size` pixels (verl's `data.image_patch_size`)."""
    for family in FAMILIES.values():
        if family.patch_size == int(patch_size):
            return family
    raise ValueError(f"no model family with image_patch_size {patch_size}; known: "
                     f"{ {f.name: f.patch_size for f in FAMILIES.values()} }")


def family_for_model_type(model_type: str) -> ModelFamily | None:
    """The family of a config.json `model_type` (`qwen2_5_vl`, `qwen3_vl`, `qwen3_vl_moe`, ...), else None."""
    return next((f for f in FAMILIES.values() if f.matches_model_type(str(model_type or ""))), None)


def family_for_name(text: str) -> ModelFamily | None:
    """The family whose architecture name appears in `text` (a folder name or hub id), else None."""
    return next((f for f in FAMILIES.values() if re.search(f.name_pattern, str(text), re.IGNORECASE)), None)


def read_model_config(model: str) -> tuple[dict | None, str]:
    """(config.json of `model`, where it was read): a local folder, else the Hugging Face hub cache
    (no network: `huggingface_hub.try_to_load_from_cache`); (None, why) when neither has it."""
    local = Path(os.path.expanduser(model))
    candidates = [(local / "config.json", "local config.json")] if (local / "config.json").is_file() else []
    if not candidates and not local.exists():
        with contextlib.suppress(Exception):  # not a repo id, huggingface_hub missing, ...
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            if isinstance(cached, str):
                candidates.append((Path(cached), "hub cache config.json"))
    for path, source in candidates:
        with contextlib.suppress(OSError, ValueError):
            config = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(config, dict):
                return config, f"{source} ({path})"
    return None, "no config.json found (local folder or hub cache)"


def detect_family(model: str | os.PathLike | None) -> tuple[ModelFamily | None, str]:
    """(family, how it was decided) of a checkpoint folder or hub id.

    In order: the config's `model_type` (local folder, else the hub cache); else the architecture
    name in the path or id (`Qwen3-VL`, `Qwen2.5-VL`); else (None, why). A config whose model_type
    is known but not a family (e.g. `qwen2_vl`) gives None, not a guess from the name.
    """
    if not model:
        return None, "no model given"
    model = str(model)
    config, source = read_model_config(model)
    if config is not None:
        model_type = str(config.get("model_type") or "")
        family = family_for_model_type(model_type)
        if family is not None:
            return family, f"model_type {model_type!r} in {source}"
        return None, f"model_type {model_type!r} in {source} is not a known family {list(FAMILY_NAMES)}"
    family = family_for_name(model)
    if family is not None:
        return family, f"architecture name in {model!r} ({source})"
    return None, f"{source}; no {' / '.join(f.title for f in FAMILIES.values())} name in {model!r}"


def patch_size_problem(frame: str, patch_size: int) -> str | None:
    """Why a model whose vision patch is `patch_size` px cannot be trained on boxes in `frame`, or None.

    Absolute-pixel frames (`qwen2_5_vl`) are pixels after a resize by the family's factor, so the
    model's resize factor (its family's patch x merge) must be the same; relative frames hold for any
    known family's resize.
    """
    spec = get_family(frame)
    try:
        model = family_for_patch_size(patch_size)
    except ValueError as err:
        return str(err)
    if not spec.relative and spec.resize_factor != model.resize_factor:
        return (f"box frame {frame!r} is in pixels after a resize by {spec.resize_factor}, but image_patch_size "
                f"{patch_size} ({model.title}) resizes by {model.resize_factor}")
    return None


def run_family(box_frame: str | None, image_patch_size: int) -> ModelFamily:
    """The family a data reader renders prompts and maps boxes for: the configured `box_frame`
    (`data.ivgr_box_frame`, set from `ivgr.box_frame`), else the family of `image_patch_size`."""
    return get_family(box_frame) if box_frame else family_for_patch_size(image_patch_size)
