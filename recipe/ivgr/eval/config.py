"""What decides a run: the modes, the per-item failure reasons, `EvalConfig` (what the model sees and how
answers are scored) and the effective pixel bounds."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from data_prep.prompts import CROP_NOTE
from recipe.ivgr.eval.backends import Backend
from reward_score.families import DEFAULT_FAMILY

logger = logging.getLogger(__name__)

MODES = ("textual", "grounded", "tool", "tool-each", "tool-union")
TOOL_MODES = {"tool": ("each", "union"), "tool-each": ("each",), "tool-union": ("union",)}
# Item-level failure reasons (each counted at most once per item and mode).
FAILURES = (
    "missing_image",      # an image could not be read/decoded: no generation, scored wrong
    "generation_error",   # the backend failed for this prompt: scored wrong
    "truncated_output",   # generation hit max_new_tokens
    "no_answer_tag",      # no <answer>…</answer>; the answer was taken from the fallback
    "unparsable_output",  # no answer could be extracted at all: scored wrong
    "undecided",          # rules could not decide and no judge did: scored wrong
    "judge_failure",      # the judge was asked and failed (timeout, bad reply, ...)
    "no_boxes",           # grounded pass without any valid box
    "invalid_box",        # at least one <box> payload that is not a valid box
    "box_outside_image",  # at least one box reaching beyond the image (clipped for crops)
    "empty_crop",         # at least one box with no overlap with the image (no crop)
    "tool_fallback",      # tool mode kept the textual answer (no usable crop)
    "internal_error",     # a bug in this code for this item (logged with a traceback)
)


@dataclass
class EvalConfig:
    """Everything that decides what the model sees and how answers are scored."""

    modes: tuple[str, ...] = ("textual",)
    box_frame: str = DEFAULT_FAMILY
    min_pixels: int | None = None  # None: the frame's default (the paper's training bounds)
    max_pixels: int | None = None
    max_crops: int = 8
    crop_min_side: int | None = None  # None: one resize factor (28 / 32)
    crop_note: bool = True
    strict_answer: bool = False  # True: no fallback when <answer> is missing
    lenient: bool = True
    judge: dict | None = None  # JudgeConfig fields; None / no base_url: judge off
    judge_scope: str = "open"  # open | all | none
    chunk_size: int = 64
    limit: int | None = None
    image_root: str | None = None

    def __post_init__(self) -> None:
        from reward_score.frames import get_frame

        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(self.modes)}")
        get_frame(self.box_frame)
        if self.judge_scope not in ("open", "all", "none"):
            raise ValueError(f"judge_scope must be open|all|none, got {self.judge_scope!r}")
        if self.chunk_size < 1 or self.max_crops < 1:
            raise ValueError("chunk_size and max_crops must be >= 1")

    def fingerprint(self, bounds: tuple[int, int]) -> dict:
        """What must match for --resume to reuse earlier records."""
        from data_prep import prompts

        texts = json.dumps([prompts.SYSTEM_PROMPT, prompts.GROUNDED_INSTRUCTIONS, prompts.TEXTUAL_INSTRUCTION,
                            CROP_NOTE[1], CROP_NOTE[2]], sort_keys=True)
        return {"box_frame": self.box_frame, "pixel_bounds": list(bounds), "max_crops": self.max_crops,
                "crop_min_side": self.crop_min_side, "crop_note": self.crop_note,
                "strict_answer": self.strict_answer, "lenient": self.lenient, "judge_scope": self.judge_scope,
                "judge": bool(self.judge and self.judge.get("base_url")),
                "prompts_sha256": hashlib.sha256(texts.encode()).hexdigest()[:16]}


def resolve_bounds(cfg: EvalConfig, backend: Backend | None) -> tuple[int, int]:
    """Effective (min_pixels, max_pixels): the requested bounds (or the frame's defaults) narrowed to
    what the backend's processor allows, so its own resize cannot change our pre-resized images."""
    from reward_score.frames import get_frame

    spec = get_frame(cfg.box_frame)
    lo = int(cfg.min_pixels if cfg.min_pixels is not None else spec.default_min_pixels)
    hi = int(cfg.max_pixels if cfg.max_pixels is not None else spec.default_max_pixels)
    if backend is not None:
        plo, phi = backend.image_bounds()
        new_lo, new_hi = max(lo, plo) if plo else lo, min(hi, phi) if phi else hi
        if (new_lo, new_hi) != (lo, hi):
            logger.warning("pixel bounds [%d, %d] narrowed to the processor's [%d, %d]", lo, hi, new_lo, new_hi)
        lo, hi = new_lo, new_hi
    if lo > hi:
        raise ValueError(f"empty pixel range: min_pixels {lo} > max_pixels {hi}")
    return lo, hi
