"""verl 0.9.1's Qwen2.5-VL input embedding for a micro-batch without images (text-only padding rows) under
transformers 5: verl's own `_get_input_embeds` on the tiny Qwen2.5-VL, before and after importing
`recipe.verl_compat`, and the worker modules of both recipes' composed configs installing it."""

import pytest
import torch
from verl.models.transformers import qwen2_vl

from data_prep.offline_processor import build_tokenizer
from recipe.cpu_backend.tiny_model import build_model


def test_a_micro_batch_without_images_passes_through_the_vision_tower():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer).model  # what verl's patched forward receives as `self`
    ids = torch.tensor([tokenizer.encode("a text-only padding row", add_special_tokens=False)])
    import recipe.verl_compat  # noqa: F401  (installs the fix, as in every Ray worker)

    fixed = qwen2_vl._get_input_embeds
    original = fixed.__wrapped__
    with pytest.raises(AttributeError, match="BaseModelOutputWithPooling"):  # verl 0.9.1 + transformers 5.9
        original(model, ids, None, None, None, None, None)
    embeds, _ = fixed(model, ids, None, None, None, None, None)
    assert torch.equal(embeds, model.get_input_embeddings()(ids))  # + 0.0 * the dummy image embedding
    embeds.sum().backward()  # the vision tower is in the graph, as verl intends (every rank uses it)
    assert all(p.grad is not None for p in model.visual.parameters() if p.requires_grad)


@pytest.mark.parametrize("config_dir, config_name", [("recipe/ivgr/config", "ivgr_trainer"),
                                                     ("recipe/ivr_r1/config", "ivr_r1_trainer")])
def test_every_ray_worker_of_either_recipe_installs_the_fix(config_dir, config_name):
    """What verl's workers import: the composed config's runtime_env VERL_USE_EXTERNAL_MODULES, imported
    in a fresh interpreter the way verl/__init__.py does (importlib.import_module of each name)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from recipe.ivgr.preflight import compose_config

    root = Path(__file__).resolve().parents[1]
    cfg = compose_config([], config_dir=root / config_dir, config_name=config_name)
    modules = cfg.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES
    code = ("import os, verl\nfrom verl.models.transformers import qwen2_vl\n"
            "print(getattr(qwen2_vl._get_input_embeds, '_recipe_unpacks_dummy_visual', False))")
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM",)}
    env["VERL_USE_EXTERNAL_MODULES"] = modules
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.vllm
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("config_dir, config_name", [("recipe/ivgr/config", "ivgr_trainer"),
                                                     ("recipe/ivr_r1/config", "ivr_r1_trainer")])
def test_importing_verls_vllm_server_keeps_the_recipes_info_lines(config_dir, config_name, vllm_python):
    """vLLM's API server imports model_hosting_container_standards, which sets the root logger to
    SAGEMAKER_CONTAINER_LOG_LEVEL (default ERROR) on import. A Ray worker with the recipe's runtime_env
    imports verl's vLLM server module and must still emit INFO lines."""
    import os
    import subprocess
    from pathlib import Path

    from recipe.ivgr.preflight import compose_config

    root = Path(__file__).resolve().parents[1]
    env_vars = compose_config([], config_dir=root / config_dir, config_name=config_name).ray_kwargs.ray_init.runtime_env.env_vars
    env = {k: v for k, v in os.environ.items() if k not in ("SAGEMAKER_CONTAINER_LOG_LEVEL", "LOG_LEVEL")}
    env.update({k: str(v) for k, v in env_vars.items()})
    env["VERL_PLATFORM"] = "cpu"  # vLLM's Qwen2-VL import needs the CPU backend's torchvision stand-in here
    env["VERL_USE_EXTERNAL_MODULES"] = f"{env['VERL_USE_EXTERNAL_MODULES']},recipe.cpu_backend"
    code = ("import logging\nlogging.basicConfig(level=logging.INFO)\n"
            "import verl.workers.rollout.vllm_rollout.vllm_async_server\n"
            "import model_hosting_container_standards  # noqa: F401 (the importer in question)\n"
            "print(logging.getLogger('recipe.ivgr.trainer').isEnabledFor(logging.INFO))")
    out = subprocess.run([str(vllm_python), "-c", code], env=env, cwd=root, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
