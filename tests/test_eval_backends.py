"""Backends: batching and failure isolation, the transformers backend on the tiny model, and the
vLLM backend's plumbing against a stand-in `vllm` module (the real engine needs a GPU)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from eval_helpers import MAX_PIXELS, MIN_PIXELS, ScriptedBackend, tiny_qwen
from PIL import Image

from recipe.ivgr.eval.backends import GenerationRequest, SamplingSettings, TransformersBackend, VLLMBackend
from recipe.ivgr.eval.items import _content_lists, prompt_messages

ROW = {"item_id": "b:1", "question": "What colour is the car?", "choices": ["red", "blue"]}


def request(item_id="b:1", size=(112, 84), n_images=1, pass_name="textual"):
    messages = prompt_messages(ROW, pass_name, n_images, "qwen2_5_vl")
    return GenerationRequest(messages=_content_lists(messages), images=[Image.new("RGB", size)] * n_images,
                             item_id=item_id, pass_name=pass_name)


def test_eval_package_imports_no_vllm():
    code = ("import sys, recipe.ivgr.eval.main, recipe.ivgr.eval.backends, recipe.ivgr.eval.runner; "
            "print('vllm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_a_failing_request_only_fails_itself():
    backend = ScriptedBackend(lambda r: f"<answer>{r.item_id}</answer>", batch_size=4,
                              fail_on=lambda r: r.item_id == "b:2")
    results = backend.generate([request(f"b:{i}") for i in range(6)])
    assert [r.error is not None for r in results] == [False, False, True, False, False, False]
    assert [r.text for r in results if not r.error] == [f"<answer>b:{i}</answer>" for i in (0, 1, 3, 4, 5)]
    assert backend.stats["requests"] == 6 and backend.stats["errors"] == 1


def test_transformers_backend_batches_and_checks_the_frame():
    model, processor = tiny_qwen()
    backend = TransformersBackend(model, processor, sampling=SamplingSettings(max_new_tokens=3), batch_size=3)
    assert backend.image_bounds() == (MIN_PIXELS, MAX_PIXELS)
    # three prompts of different lengths and image counts in one left-padded batch
    results = backend.generate([request("b:1"), request("b:2", size=(84, 56), n_images=2), request("b:3")])
    assert all(r.error is None and r.num_tokens <= 3 and r.finish_reason in ("stop", "length") for r in results)
    assert results[0].text == results[2].text  # identical prompts, greedy: identical outputs
    assert processor.tokenizer.padding_side == "right"  # restored
    # an image the processor would shrink again (above its max_pixels): refused, not silently mis-framed
    (big,) = backend.generate([request("b:4", size=(280, 280))])
    assert big.error and "resized the images again" in big.error
    info = backend.describe()
    assert info["backend"] == "transformers" and info["sampling"]["temperature"] == 0.0


class _FakeCompletion:
    def __init__(self, text):
        self.text, self.finish_reason, self.token_ids = text, "stop", [1, 2, 3]


class _FakeOutput:
    def __init__(self, text):
        self.outputs = [_FakeCompletion(text)]


def fake_vllm(monkeypatch):
    """A stand-in for the `vllm` module recording how the backend drives it."""
    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["engine"] = kwargs

        def generate(self, prompts, params, use_tqdm=True):
            calls.setdefault("batches", []).append((prompts, params))
            if any("BAD" in p["prompt"] for p in prompts):
                raise ValueError("prompt too long")
            return [_FakeOutput(f"answer {i}") for i, _ in enumerate(prompts)]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams, module.__version__ = LLM, SamplingParams, "0.0-fake"
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_vllm_backend_plumbing(monkeypatch):
    calls = fake_vllm(monkeypatch)
    _, processor = tiny_qwen()
    backend = VLLMBackend("/ckpt/ivgr-7b", processor=processor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                          max_images=11, tensor_parallel_size=2, batch_size=2,
                          sampling=SamplingSettings(max_new_tokens=64, seed=3))
    engine = calls["engine"]
    assert engine["model"] == "/ckpt/ivgr-7b" and engine["tensor_parallel_size"] == 2 and engine["seed"] == 3
    assert engine["limit_mm_per_prompt"] == {"image": 11}
    assert engine["mm_processor_kwargs"] == {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    assert backend.params.kwargs == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 3}  # greedy
    assert backend.image_bounds() == (MIN_PIXELS, MAX_PIXELS)
    requests = [request("b:1"), request("b:2", n_images=3), request("b:3")]
    bad = request("b:4")
    bad.messages[-1]["content"][-1]["text"] += " BAD"
    results = backend.generate([*requests, bad])
    assert [r.text for r in results[:3]] == ["answer 0", "answer 1", "answer 0"]
    assert results[3].error and "prompt too long" in results[3].error
    first_batch, params = calls["batches"][0]
    assert params is backend.params
    assert first_batch[0]["prompt"].count("<|image_pad|>") == 1 and first_batch[0]["prompt"].endswith(
        "<|im_start|>assistant\n")
    assert len(first_batch[1]["multi_modal_data"]["image"]) == 3
    info = backend.describe()
    assert info["vllm"] == "0.0-fake" and info["engine_args"]["seed"] == 3 and "model" not in info["engine_args"]


def test_vllm_backend_without_vllm_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails as on CPU machines
    with pytest.raises(RuntimeError, match="--backend transformers"):
        VLLMBackend("/ckpt")


# -- the box frame: from the model config (local or hub cache), the id, else refused; checked on the first batch
def test_box_frame_from_hub_id_local_folder_and_hub_cache(tmp_path, monkeypatch):
    import json

    import huggingface_hub

    from recipe.ivgr.eval.main import choose_box_frame, detect_box_frame

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    # the case: a hub id that is not a local folder and not in the cache
    frame, why = detect_box_frame("Qwen/Qwen3-VL-8B-Instruct")
    assert frame == "qwen3_vl" and "architecture name" in why
    assert detect_box_frame("Qwen/Qwen2.5-VL-7B-Instruct")[0] == "qwen2_5_vl"
    # the hub cache holds the config (layout written by huggingface_hub's downloads)
    snapshot = tmp_path / "hub" / "models--acme--vision-8b" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    (tmp_path / "hub" / "models--acme--vision-8b" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--vision-8b" / "refs" / "main").write_text("0123abcd")
    frame, why = detect_box_frame("acme/vision-8b")
    assert frame == "qwen3_vl" and "hub cache" in why
    # a local folder's config wins over a misleading name
    folder = tmp_path / "Qwen3-VL-finetune"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert detect_box_frame(str(folder))[0] == "qwen2_5_vl"
    # nothing to go on: grounded/tool modes are refused without --box-frame, textual runs
    assert detect_box_frame("acme/unknown-7b")[0] is None
    with pytest.raises(SystemExit, match="--box-frame"):
        choose_box_frame(None, "acme/unknown-7b", ["textual", "grounded"])
    assert choose_box_frame(None, "acme/unknown-7b", ["textual"])[0] == "qwen2_5_vl"
    assert choose_box_frame("qwen3_vl", "acme/unknown-7b", ["tool"]) == ("qwen3_vl", "--box-frame")


def test_vllm_backend_checks_the_frame_on_the_first_batch(monkeypatch):
    from recipe.ivgr.eval.backends import FrameMismatch

    fake_vllm(monkeypatch)
    _, processor = tiny_qwen()  # a Qwen2.5-VL processor: patch 14 x merge 2 = 28 px steps
    wrong = VLLMBackend("/ckpt/x", processor=processor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    wrong.box_frame = "qwen3_vl"
    with pytest.raises(FrameMismatch, match="steps of 28 px"):
        wrong.generate([request("b:1")])
    resized = VLLMBackend("/ckpt/x", processor=processor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    resized.box_frame = "qwen2_5_vl"
    with pytest.raises(FrameMismatch, match="resized the images again"):  # above the processor's max_pixels
        resized.generate([request("b:1", size=(280, 280))])
    ok = VLLMBackend("/ckpt/x", processor=processor, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    ok.box_frame = "qwen2_5_vl"
    assert [r.text for r in ok.generate([request("b:1"), request("b:2")])] == ["answer 0", "answer 1"]
    assert ok.describe()["frame_check"] == {"checked": True, "box_frame": "qwen2_5_vl", "resize_factor": 28,
                                            "images": 2}
