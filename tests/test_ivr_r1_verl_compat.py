"""verl 0.9.1's Qwen2.5-VL input embedding for a micro-batch without images (text-only padding rows) under
transformers 5: verl's own `_get_input_embeds` on the tiny Qwen2.5-VL, before and after
`recipe.ivr_r1.verl_compat.install()` (which `recipe.ivr_r1.losses` runs in every worker)."""

import pytest
import torch
from verl.models.transformers import qwen2_vl

from data_prep.offline_processor import build_tokenizer
from recipe.cpu_backend.tiny_model import build_model


def test_a_micro_batch_without_images_passes_through_the_vision_tower():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).model  # what verl's patched forward receives as `self`
    ids = torch.tensor([tokenizer.encode("a text-only padding row", add_special_tokens=False)])
    import recipe.ivr_r1.losses  # noqa: F401  (installs the fix, as in every Ray worker)

    fixed = qwen2_vl._get_input_embeds
    original = fixed.__wrapped__
    with pytest.raises(AttributeError, match="BaseModelOutputWithPooling"):  # verl 0.9.1 + transformers 5.9
        original(model, ids, None, None, None, None, None)
    embeds, _ = fixed(model, ids, None, None, None, None, None)
    assert torch.equal(embeds, model.get_input_embeddings()(ids))  # + 0.0 * the dummy image embedding
    embeds.sum().backward()  # the vision tower is in the graph, as verl intends (every rank uses it)
    assert all(p.grad is not None for p in model.visual.parameters() if p.requires_grad)
