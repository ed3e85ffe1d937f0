"""Weight-sync evidence for the CPU runs: a fingerprint of a model's tensors and a tracker of what the actor
sends the rollout at each sync (its log lines are what `recipe.cpu_backend.smoke_report` checks). A leaf
module: the patches (vLLM's adapter) and the hf_cpu rollout server both use it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


# An irrational step makes cos(i * step) a fixed, non-periodic probe vector (the plastic number's inverse).
_PROBE_STEP = 0.7548776662466927


def weight_fingerprint(tensors: Iterable) -> float:
    """A fixed linear projection of all weights, summed in float64: sum over tensors of
    <t.flatten(), cos(i * step)>. Any weight change moves it by about the change's L2 size (an update of
    L2 1e-3 moves it by ~1e-3), in either direction, so two different weight sets practically never share
    a fingerprint. The sum of tensor norms it replaces moved by ~1e-7 per optimizer step and could return
    to the base model's value after two steps (CI run of 2026-12-04: step-2 weights == base at 6 decimals)."""
    import torch

    total = 0.0
    for t in tensors:
        flat = t.detach().reshape(-1).to(torch.float64)
        probe = torch.cos(torch.arange(flat.numel(), dtype=torch.float64) * _PROBE_STEP)
        total += float(flat @ probe)
    return total


class WeightChangeTracker:
    """What the actor sends to the rollout at each weight sync (a copy of each tensor is kept: for the
    tiny models of CPU runs). Logs, for the smoke report, `<kind> actor weights sent: update N (step S),
    fingerprint F over K tensors` at every sync and `<kind> actor weights: L2 change since the last
    update X over K tensors` from the second on."""

    def __init__(self) -> None:
        self._previous: dict[str, "torch.Tensor"] = {}
        self._current: dict[str, "torch.Tensor"] = {}
        self.updates = 0

    def see(self, name: str, tensor) -> None:
        if hasattr(tensor, "to_local"):  # a DTensor shard: its local part (no collective)
            tensor = tensor.to_local()
        self._current[name] = tensor.detach().to("cpu", copy=True)

    def report(self, kind: str, global_steps: int | None = None) -> float | None:
        """Log this sync (fingerprint, and the L2 change since the last one); returns the change."""
        current, self._current = self._current, {}
        self.updates += 1
        logger.warning("%s actor weights sent: update %d (step %s), fingerprint %.6f over %d tensors", kind,
                       self.updates, global_steps, weight_fingerprint(current.values()), len(current))
        delta = None
        if self._previous:
            delta = sum((current[k].float() - self._previous[k].float()).norm().item()
                        for k in current if k in self._previous)
            logger.warning("%s actor weights: L2 change since the last update %.6e over %d tensors", kind, delta,
                           len(current))
        self._previous = current
        return delta
