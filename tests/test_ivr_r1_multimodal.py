"""The `ivr_r1_agent` loop on the multimodal path: the offline Qwen2.5-VL processor
(data_prep/offline_processor.py), the recipe's dataset class for image extraction (as in a run), real
images. Checks what reaches the policy server (prompt + kept prefix + cue re-sent with the image and
verl's `mm_processor_kwargs`; the self-attribution request with its image), and that the rectified
output stays aligned with its image features the way verl's AgentLoopWorker recomputes them."""

import asyncio
import os
from types import SimpleNamespace

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, DictConfigWrap, ToolListWrap, _agent_loop_registry
from verl.utils.import_utils import resolve_config_path
from verl.utils.tokenizer import build_multimodal_processor_inputs
from verl.workers.rollout.replica import TokenOutput

from data_prep.offline_processor import build_processor
from recipe.ivgr.dataset import DualStreamDataset
from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM
from recipe.ivr_r1.main import AGENT_LOOP_CONFIG

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivr_r1", "config")
CUE = " Look again. "
FLAWED = "<think>There is a cup.\n\nI see 2 cups.\n\nSo 2.</think><answer>2</answer>"
CORRECT = "<think>There is a cup.\n\nI see 3 cups.</think><answer>3</answer>"
CONTINUATION = "I see 3 cups.</think><answer>3</answer>"
MM_KWARGS = {"max_pixels": 1280 * 28 * 28}
IMAGES = [Image.new("RGB", (120, 90), (200, 10, 10)), Image.new("RGB", (90, 120), (10, 200, 10))]


@pytest.fixture(scope="module")
def processor():
    return build_processor()


def config(attributor_kind="policy", *overrides):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", "actor_rollout_ref.rollout.n=2",
            "actor_rollout_ref.rollout.response_length=200", f"ivr_r1.attributor.kind={attributor_kind}",
            f"ivr_r1.rereason.cue='{CUE}'", "ivr_r1.optimization.mode=replace",  # the rectified output itself
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}",
            *(f"++data.mm_processor_kwargs.{k}={v}" for k, v in MM_KWARGS.items()), *overrides])


class Server:
    """Policy server stand-in, keyed by the session tag in the prompt; records every request."""

    def __init__(self, tokenizer, attribution='{"step": 2, "reason": "there are three cups"}'):
        self.tok, self.attribution, self.calls = tokenizer, attribution, []

    async def generate(self, request_id, prompt_ids, sampling_params, image_data=None, **kwargs):
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        self.calls.append({"text": text, "prompt_ids": list(prompt_ids), "image_data": image_data, **kwargs})
        if ATTRIBUTOR_SYSTEM.split("\n")[0] in text:
            reply = f"<think>Step 2 counts two.</think><answer>{self.attribution}</answer>"
        elif text.endswith(CUE):
            reply = CONTINUATION
        else:
            reply = FLAWED if "(s0)" in text else CORRECT
        ids = self.tok.encode(reply + "<|im_end|>", add_special_tokens=False)
        return TokenOutput(token_ids=ids, log_probs=[-0.1] * len(ids), stop_reason="completed")


def build_loop(cfg, server, processor):
    for entry in OmegaConf.load(resolve_config_path(cfg.actor_rollout_ref.rollout.agent.agent_loop_config_path)):
        _agent_loop_registry[entry.name] = entry
    return hydra.utils.instantiate(
        config=_agent_loop_registry["ivr_r1_agent"], trainer_config=DictConfigWrap(config=cfg),
        server_manager=server, tokenizer=processor.tokenizer, processor=processor, hf_model_type="qwen2_5_vl",
        dataset_cls=DualStreamDataset, data_config=DictConfigWrap(cfg.data), tools=ToolListWrap([]))


def row(session, images):
    content = [{"type": "image", "image": img} for img in images]
    content.append({"type": "text", "text": f"How many cups are there? (s{session})"})
    return {"raw_prompt": [{"role": "user", "content": content}], "uid": "mm1", "session_id": session,
            "reward_model": {"ground_truth": "3"}, "data_source": "synthetic/single",
            "extra_info": {"question": "How many cups are there?", "answer_type": "number"}}


def run_group(cfg, processor, server, images):
    async def go():
        loops = [build_loop(cfg, server, processor) for _ in range(2)]
        return await asyncio.gather(*(loop.run({"temperature": 1.0}, **row(i, images)) for i, loop in enumerate(loops)))

    return asyncio.run(go())


def image_tokens(processor, ids):
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return sum(1 for t in ids if t == pad)


def expected_image_tokens(processor, images):
    """What the processor expands the images to (grid t*h*w / merge^2 per image)."""
    out = build_multimodal_processor_inputs(processor, text=["".join(
        "<|vision_start|><|image_pad|><|vision_end|>" for _ in images)], images=images)
    return int(out["image_grid_thw"].prod(dim=-1).sum()) // processor.image_processor.merge_size ** 2


@pytest.mark.parametrize("num_images", [1, 2])
def test_rereasoning_resends_prompt_prefix_cue_with_the_images(processor, num_images):
    images = IMAGES[:num_images]
    server = Server(processor.tokenizer)
    outputs = run_group(config("policy"), processor, server, images)
    info = outputs[0].extra_fields["ivr_r1"]
    assert info["screen"] == "selected" and info["status"] == "rectified" and info["steps"] == [2]
    tok = processor.tokenizer
    original = next(c for c in server.calls if "(s0)" in c["text"] and not c["text"].endswith(CUE)
                    and ATTRIBUTOR_SYSTEM.split("\n")[0] not in c["text"])
    attribution = next(c for c in server.calls if ATTRIBUTOR_SYSTEM.split("\n")[0] in c["text"])
    regeneration = next(c for c in server.calls if c["text"].endswith(CUE))
    sent_images = original["image_data"]
    assert len(sent_images) == num_images
    n_img = expected_image_tokens(processor, sent_images)
    assert image_tokens(processor, original["prompt_ids"]) == n_img > 0
    # verl's single-turn request carried data.mm_processor_kwargs; both recipe requests carry the same
    assert original["mm_processor_kwargs"] == MM_KWARGS
    for call in (attribution, regeneration):
        assert call["image_data"] == sent_images and call["mm_processor_kwargs"] == MM_KWARGS
    # self-attribution: the policy sees the image(s) in its own chat template, then the numbered steps
    assert image_tokens(processor, attribution["prompt_ids"]) == n_img
    assert "[2] I see 2 cups." in attribution["text"]
    # regeneration: exactly prompt + kept prefix + cue, image tokens only in the prompt
    out = outputs[0]
    prefix = tok.encode("<think>There is a cup.\n\n", add_special_tokens=False)
    assert regeneration["prompt_ids"] == out.prompt_ids + prefix + tok.encode(CUE, add_special_tokens=False)
    assert out.prompt_ids == original["prompt_ids"] and out.multi_modal_data["images"] == sent_images
    assert tok.decode(out.response_ids, skip_special_tokens=True) == "<think>There is a cup.\n\n" + CUE + CONTINUATION
    # alignment as the actor sees it: verl recomputes the image features from prompt+response ids
    input_ids = torch.tensor(out.prompt_ids + out.response_ids).unsqueeze(0)
    worker = SimpleNamespace(processor=processor, tokenizer=tok, _get_mm_processor_kwargs=lambda audios: {})
    mm = AgentLoopWorker._compute_multi_modal_inputs(worker, out, input_ids)
    grid = mm["image_grid_thw"]
    assert image_tokens(processor, input_ids[0].tolist()) == int(grid.prod(dim=-1).sum()) // 4 == n_img
    assert mm["pixel_values"].shape[0] == int(grid.prod(dim=-1).sum())


def test_self_attribution_prompt_too_long_is_its_own_outcome(processor):
    """A prompt that cannot fit rollout.prompt_length (even with shortened steps) is not sent and is
    counted as prompt_too_long; the image prompt itself still fits."""
    server = Server(processor.tokenizer)
    probe = run_group(config("policy"), processor, Server(processor.tokenizer), IMAGES[:1])
    assert probe[0].extra_fields["ivr_r1"]["status"] == "rectified"
    prompt_len = len(probe[0].prompt_ids)
    outputs = run_group(config("policy", f"actor_rollout_ref.rollout.prompt_length={prompt_len + 20}"), processor,
                        server, IMAGES[:1])
    info = outputs[0].extra_fields["ivr_r1"]
    assert (info["status"], info["attribution"]) == ("unattributed", ["prompt_too_long"])
    assert not any(ATTRIBUTOR_SYSTEM.split("\n")[0] in c["text"] for c in server.calls)
