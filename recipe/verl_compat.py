"""verl 0.9.1 with transformers 5.x: the Qwen2-VL / Qwen2.5-VL forward of a micro-batch without images.

When a micro-batch holds no image (text-only rows, or only the text-only padding rows verl appends to
make a batch divisible, `construct_minimal_padding_template` in verl/trainer/ppo/padding_utils.py), verl
runs the vision tower on a dummy input so that every rank uses its parameters and adds
``0.0 * image_embeds.mean()`` (`_get_input_embeds`, verl/models/transformers/qwen2_vl.py:388-394). With
transformers >= 5 the tower returns a `BaseModelOutputWithPooling`, which verl unpacks everywhere else
(`verl.utils.transformers_compat.unpack_visual_output`) but not there, so the actor's forward raises
``AttributeError: 'BaseModelOutputWithPooling' object has no attribute 'mean'`` (verl's qwen3_vl.py
unpacks it). verl appends padding rows whenever a step's rows do not divide by its batch multiple
(`upsample_batch_to_divisible_size`, padding_utils.py: e.g. 6 or 12 GPUs, or IVR-R1's added demonstration
rows, which the IVR-R1 CPU smoke run met), and a micro-batch of padding rows alone has no image.

`install()` wraps verl's function: a call without pixel values gets a view of the model whose
``visual(...)`` returns the unpacked embeddings; every other call, and all of verl's code, is unchanged.
Importing this module installs it: both recipes' yaml name it (or `recipe.ivr_r1.losses`, which imports it)
in ``VERL_USE_EXTERNAL_MODULES`` for every Ray worker, which verl imports on ``import verl``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_MARK = "_recipe_unpacks_dummy_visual"


class _UnpackingView:
    """The model as verl's dummy path uses it, with ``visual`` returning a tensor."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def visual(self, *args, **kwargs):
        from verl.utils.transformers_compat import unpack_visual_output

        return unpack_visual_output(self._model.visual(*args, **kwargs))[0]


def install() -> None:
    """Wrap `verl.models.transformers.qwen2_vl._get_input_embeds` once per process."""
    from verl.models.transformers import qwen2_vl

    original = qwen2_vl._get_input_embeds
    if getattr(original, _MARK, False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def get_input_embeds(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("pixel_values") is None and bound.arguments.get("pixel_values_videos") is None:
            bound.arguments["model"] = _UnpackingView(bound.arguments["model"])
        return original(*bound.args, **bound.kwargs)

    setattr(get_input_embeds, _MARK, True)
    qwen2_vl._get_input_embeds = get_input_embeds


install()
