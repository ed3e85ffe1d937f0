"""Box IoU rewards. All boxes are `[x1, y1, x2, y2]` in one shared frame (the model's frame).

Variants (`iou_variant`):
- `paper`: ½·(recall + precision); recall = mean over GT of the best IoU with any prediction,
  precision = mean over predictions of the best IoU with any GT (iVGR, method.md §2.4).
- `hungarian`: one-to-one matching maximising total IoU (scipy), sum of matched IoU divided by
  max(#pred, #gt), so extra or missing boxes cost.
- `f1@0.5`: one-to-one matching, a match counts when IoU >= 0.5, F1 of matched counts.
Every variant returns a value in [0, 1] and 0 when either side is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reward_score.parsing import Box

IOU_VARIANTS = ("paper", "hungarian", "f1@0.5")
DUPLICATE_PENALTIES = ("precision", "paper", "none")
DUPLICATE_IOU = 0.9


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """Pairwise IoU, shape (len(a), len(b)); degenerate boxes give 0."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    aa = np.asarray(a, dtype=np.float64)[:, None, :]
    bb = np.asarray(b, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(aa[..., 2], bb[..., 2]) - np.maximum(aa[..., 0], bb[..., 0]), 0, None)
    ih = np.clip(np.minimum(aa[..., 3], bb[..., 3]) - np.maximum(aa[..., 1], bb[..., 1]), 0, None)
    inter = iw * ih
    area_a = (aa[..., 2] - aa[..., 0]) * (aa[..., 3] - aa[..., 1])
    area_b = (bb[..., 2] - bb[..., 0]) * (bb[..., 3] - bb[..., 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", over="ignore"):
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def duplicate_mask(pred: Sequence[Box], threshold: float = DUPLICATE_IOU) -> np.ndarray:
    """True for each box whose IoU with an EARLIER box exceeds `threshold` (first copy kept)."""
    if len(pred) < 2:
        return np.zeros(len(pred), dtype=bool)
    overlaps = np.triu(iou_matrix(pred, pred), k=1) > threshold
    return overlaps.any(axis=0)


def paper_duplicate_flag(pred: Sequence[Box], threshold: float = DUPLICATE_IOU) -> bool:
    """The official rule: some box in the first half of the list overlaps another box > threshold."""
    if len(pred) < 2:
        return False
    overlaps = iou_matrix(pred, pred) > threshold
    np.fill_diagonal(overlaps, False)
    return bool(overlaps[: len(pred) // 2].any())


def iou_reward(
    pred: Sequence[Box],
    gt: Sequence[Box],
    variant: str = "paper",
    zero_precision: np.ndarray | None = None,
    ious: np.ndarray | None = None,
) -> float:
    """IoU reward in [0, 1] of predictions `pred` against `gt` (same frame).

    `zero_precision` marks predictions that must count as misses (duplicates under the default
    penalty): they score 0 on the precision side and cannot be matched. `ious` is the precomputed
    `iou_matrix(pred, gt)`, when the caller has it.
    """
    if len(pred) == 0 or len(gt) == 0:
        return 0.0
    ious = iou_matrix(pred, gt) if ious is None else ious.copy()
    if zero_precision is not None and zero_precision.any():
        ious[zero_precision] = 0.0
    if variant == "paper":
        recall = ious.max(axis=0).mean()
        precision = ious.max(axis=1).mean()
        return float(0.5 * (recall + precision))
    if variant in ("hungarian", "f1@0.5"):
        from scipy.optimize import linear_sum_assignment  # imported on demand: scipy.optimize costs 0.3 s
    if variant == "hungarian":
        rows, cols = linear_sum_assignment(ious, maximize=True)
        return float(ious[rows, cols].sum() / max(len(pred), len(gt)))
    if variant == "f1@0.5":
        hits = (ious >= 0.5).astype(np.float64)
        rows, cols = linear_sum_assignment(hits, maximize=True)
        matched = hits[rows, cols].sum()
        return float(2.0 * matched / (len(pred) + len(gt)))
    raise ValueError(f"unknown iou_variant {variant!r}; choose one of {IOU_VARIANTS}")


def box_scores(
    valid: Sequence[Box],
    num_invalid: int,
    gt: Sequence[Box],
    *,
    variant: str = "paper",
    duplicate_penalty: str = "precision",
) -> tuple[float, float, int]:
    """(box_valid, iou, num_duplicates) for one grounded rollout.

    box_valid = valid non-duplicate boxes / all parsed boxes (0 when none parsed), as in the paper
    but with duplicates counted as invalid. Duplicate handling (`duplicate_penalty`):
    - `precision` (default): a box overlapping an earlier one by IoU > 0.9 is invalid for box_valid
      AND scores 0 on the IoU precision side, so repeating a good box lowers the reward.
    - `paper`: the official rule: box_valid = 0 if any box in the first half duplicates another;
      IoU is untouched (repeats of a good box inflate precision).
    - `none`: no duplicate handling.
    A sample without GT boxes gets box_valid = iou = 0 (paper).
    """
    if duplicate_penalty not in DUPLICATE_PENALTIES:
        raise ValueError(f"unknown duplicate_penalty {duplicate_penalty!r}; choose one of {DUPLICATE_PENALTIES}")
    total = len(valid) + num_invalid
    if total == 0 or len(gt) == 0:
        return 0.0, 0.0, 0
    if duplicate_penalty == "precision":
        if not valid:
            return 0.0, 0.0, 0
        # one IoU matrix for both questions (hot path: ~5,000 rollouts a step)
        both = iou_matrix(valid, [*valid, *gt])
        n = len(valid)
        dup = (np.triu(both[:, :n], k=1) > DUPLICATE_IOU).any(axis=0)
        num_dup = int(dup.sum())
        box_valid = (n - num_dup) / total
        return box_valid, iou_reward(valid, gt, variant, zero_precision=dup, ious=both[:, n:]), num_dup
    iou = iou_reward(valid, gt, variant)
    if duplicate_penalty == "paper" and paper_duplicate_flag(valid):
        return 0.0, iou, int(duplicate_mask(valid).sum())
    return len(valid) / total, iou, 0
