"""The weight fingerprint the smoke report uses to tell which weights the rollout served and whether a
resumed run started from the checkpoint: two weight sets that differ must get different fingerprints,
including when every tensor keeps its norm (a CI run once saw step-2 weights fingerprinted as the base
model's, and the resume check failed on a correct resume)."""

from __future__ import annotations

import torch

from recipe.cpu_backend.weights import weight_fingerprint


def _weights(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(64, 32, generator=g) * 0.02, torch.randn(32, generator=g) * 0.02]


def test_same_weights_same_fingerprint_in_any_tensor_order():
    a = _weights()
    assert weight_fingerprint(a) == weight_fingerprint([t.clone() for t in a])
    assert abs(weight_fingerprint(a) - weight_fingerprint(list(reversed(a)))) < 1e-12


def test_a_change_that_keeps_every_norm_still_changes_the_fingerprint():
    a = _weights()
    swapped = [a[0].flip(0), a[1]]  # rows reordered: the same norm, different weights
    assert torch.isclose(swapped[0].norm(), a[0].norm())
    assert abs(weight_fingerprint(swapped) - weight_fingerprint(a)) > 1e-4


def test_an_optimizer_sized_step_moves_it_beyond_the_logged_precision():
    a = _weights()
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        delta = [torch.randn(t.shape, generator=g) for t in a]
        scale = 1e-3 / sum(float(d.norm()) ** 2 for d in delta) ** 0.5  # an update of L2 size 1e-3
        moved = weight_fingerprint([t + d * scale for t, d in zip(a, delta)])
        assert abs(moved - weight_fingerprint(a)) > 1e-6  # the log prints 6 decimals


def test_it_reads_the_values_not_the_dtype():
    a = [t.to(torch.bfloat16) for t in _weights()]
    assert weight_fingerprint(a) == weight_fingerprint([t.float() for t in a])
