"""Box IoU rewards. All boxes are `[x1, y1, x2, y2]` in one shared frame (the model's frame).

Variants (`iou_variant`):
- `paper`: ½·(recall + precision); recall = mean over GT of the best IoU with any prediction,
  precision = mean over predictions of the best IoU with any GT (the official iVGR code,
  examples/reward_function/adagrounding_dual_group_training.py).
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


def _pair_iou(a: Box, b: Box) -> float:
    """IoU of two boxes with the float64 operations of `iou_matrix`, in the same order (same bits)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pairwise_sum(values: Sequence[float], lo: int, n: int) -> float:
    """numpy's pairwise summation of `values[lo:lo + n]` (numpy/_core/src/umath/loops_utils.h.src,
    `pairwise_sum`), so that a mean here has the same bits as `ndarray.mean()`."""
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += values[i]
        return total
    if n <= 128:
        r = [float(v) for v in values[lo:lo + 8]]
        i = 8
        while i < n - (n % 8):
            for j in range(8):
                r[j] += values[lo + i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for k in range(i, n):
            total += values[lo + k]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, lo, half) + _pairwise_sum(values, lo + half, n - half)


def _mean(values: Sequence[float]) -> float:
    return _pairwise_sum(values, 0, len(values)) / len(values)


def _paper_scores_py(valid: Sequence[Box], num_invalid: int, gt: Sequence[Box]) -> tuple[float, float, int]:
    """`box_scores` for the default variant and penalty (`paper` IoU, `precision` duplicates) in plain
    Python: a rollout has a handful of boxes, where numpy's per-call overhead is most of the cost
    (4-5x slower). Same operations in the same order as the numpy path, so the same floats."""
    pred = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in valid]
    truth = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in gt]
    rows, kept = [], []
    for box in pred:
        # a duplicate overlaps an earlier box by IoU > DUPLICATE_IOU: it scores 0 on the precision side
        if any(_pair_iou(earlier, box) > DUPLICATE_IOU for earlier in pred[: len(rows)]):
            rows.append([0.0] * len(truth))
        else:
            rows.append([_pair_iou(box, g) for g in truth])
            kept.append(box)
    num_dup = len(pred) - len(kept)
    recall = _mean([max(column) for column in zip(*rows)])
    precision = _mean([max(row) for row in rows])
    return len(kept) / (len(pred) + num_invalid), float(0.5 * (recall + precision)), num_dup


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
        if variant == "paper":
            return _paper_scores_py(valid, num_invalid, gt)
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
