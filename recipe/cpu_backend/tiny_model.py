"""A tiny Qwen2.5-VL checkpoint folder, built offline, for CPU smoke runs of training and evaluation.

    python -m recipe.cpu_backend.tiny_model --out /tmp/tiny-qwen            # random weights
    python -m recipe.cpu_backend.tiny_model --out /tmp/tiny-qwen --warm-start data/smoke/train.parquet

The folder holds what verl and transformers load from a model path: `config.json`, safetensors
weights, the offline tokenizer (`data_prep.offline_processor`) with its chat template, and the PIL
image processor's `preprocessor_config.json`. On a machine without torchvision `AutoProcessor` can
read it only with the CPU backend's image-only video processor (`recipe.cpu_backend.patches`).

`--warm-start` fits the random model for a few hundred AdamW steps to well-formed responses of the
given records (grounded: the ground-truth boxes in the model frame inside `<think>`, then the answer;
textual: a box-free `<think>` and the answer), prompts built exactly as the recipe's dataset and
verl's agent loop build them. A random model would never be correct, so a smoke run would never see
a reference rollout, a consistency score or a non-zero advantage; the warm-started one does, and
GRPO still has variance to work with because rollouts are sampled at temperature 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Small pixel bounds keep the prompts short (4..16 image tokens at factor 28).
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16 * 28 * 28


# vLLM's CPU attention kernels take head sizes 32, 64, 80, 96, 112, 128, ... only
# (vllm/v1/attention/backends/cpu_attn.py `get_supported_head_sizes`): the text model's heads are 32 wide.
HEAD_DIM = 32


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's multimodal rotary split of `head_dim // 2` frequencies into (time, height, width),
    in the released models' 1 : 1.5 : 1.5 proportion ([16, 24, 24] at head_dim 128, [4, 6, 6] at 32)."""
    time = head_dim // 8
    space = (head_dim // 2 - time) // 2
    return [time, space, head_dim // 2 - time - space]


def build_model(tokenizer, hidden_size: int = 64, layers: int = 2, seed: int = 0):
    """A random `Qwen2_5_VLForConditionalGeneration` (~200K parameters at hidden 64) for `tokenizer`;
    attention heads `HEAD_DIM` wide (2 query heads, 1 KV head at hidden 64), so both rollouts
    (hf_cpu and vLLM on CPU) serve it."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if hidden_size < HEAD_DIM or hidden_size % HEAD_DIM:
        raise ValueError(f"hidden_size must be a multiple of {HEAD_DIM} (the head width vLLM on CPU supports)")
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    heads = hidden_size // HEAD_DIM
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         intermediate_size=2 * hidden_size, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": mrope_section(HEAD_DIM)},
                         tie_word_embeddings=True,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, num_heads=2, out_hidden_size=hidden_size, intermediate_size=64,
                           window_size=56, fullatt_block_indexes=[1], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def ideal_response(extra_info: dict, stream: str) -> str:
    """A well-formed, correct response for one dataset row (boxes in the model's frame)."""
    from reward_score.frames import to_model_frame

    answer = str(extra_info.get("answer") or "")
    if stream != "grounded":
        return f"<think>I look at the image and find the answer.</think><answer>{answer}</answer>"
    boxes = to_model_frame(extra_info["gt_boxes"], extra_info["image_size"], extra_info["box_frame"],
                           extra_info["min_pixels"], extra_info["max_pixels"])
    shown = " ".join(f"<box>[{', '.join(str(round(v)) for v in box)}]</box>" for box in boxes)
    return f"<think>The objects are at {shown}.</think><answer>{answer}</answer>"


def _dataset(data_file: str, processor):
    from omegaconf import OmegaConf

    from recipe.ivgr.dataset import DualStreamDataset

    config = OmegaConf.create({
        "prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096, "truncation": "error",
        "filter_overlong_prompts": False, "return_raw_chat": True, "ivgr_shuffle": False,
        "ivgr_min_pixels": MIN_PIXELS, "ivgr_max_pixels": MAX_PIXELS,
    })
    return DualStreamDataset(data_files=[data_file], tokenizer=processor.tokenizer, config=config,
                             processor=processor)


def _examples(dataset, processor) -> list[dict]:
    """Model inputs for every dataset row, tokenized as verl's single-turn agent loop does."""
    examples = []
    for i in range(len(dataset)):
        row = dataset[i]
        messages = list(row["raw_prompt"])
        images, _, _ = type(dataset)._process_multi_modal_info(messages, 14, dataset.config)
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=images, return_tensors="pt")
        stream = row["extra_info"]["stream"]
        response = processor.tokenizer(ideal_response(row["extra_info"], stream), add_special_tokens=False)["input_ids"]
        response = response + [processor.tokenizer.eos_token_id]
        # every processor output the actor's forward gets, mm_token_type_ids included (transformers >= 5.3
        # places Qwen-VL's M-RoPE image positions from it); response tokens are text (type 0)
        token_types = torch.cat([inputs["mm_token_type_ids"][0], torch.zeros(len(response), dtype=torch.long)])
        examples.append({"prompt": inputs["input_ids"][0], "response": torch.tensor(response),
                         "pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"],
                         "mm_token_type_ids": token_types})
    return examples


def warm_start(model, processor, data_file: str, steps: int = 300, lr: float = 3e-3) -> list[float]:
    """Fit `model` to `ideal_response` on every row of `data_file`; returns the loss per step."""
    examples = _examples(_dataset(data_file, processor), processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        example = examples[step % len(examples)]
        input_ids = torch.cat([example["prompt"], example["response"]])[None]
        labels = input_ids.clone()
        labels[0, : len(example["prompt"])] = -100
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels,
                    pixel_values=example["pixel_values"], image_grid_thw=example["image_grid_thw"],
                    mm_token_type_ids=example["mm_token_type_ids"][None])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
        if (step + 1) % 50 == 0:
            window = losses[-len(examples):]
            logger.info("warm start step %d/%d: mean loss over the last %d rows %.4f", step + 1, steps,
                        len(window), sum(window) / len(window))
    model.eval()
    return losses


def save_tiny_checkpoint(out: str | Path, warm_start_data: str | None = None, steps: int = 300,
                         hidden_size: int = 64, seed: int = 0) -> Path:
    """Write the tiny checkpoint folder (optionally warm-started on `warm_start_data`); returns it."""
    from data_prep.offline_processor import build_processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    model = build_model(processor.tokenizer, hidden_size=hidden_size, seed=seed)
    if warm_start_data:
        warm_start(model, processor, warm_start_data, steps=steps)
    model.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--warm-start", default=None, metavar="PARQUET",
                        help="fit the model to well-formed correct responses on these data_prep records")
    parser.add_argument("--steps", type=int, default=300, help="warm-start optimizer steps (one row each)")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[tiny_model] %(message)s")
    path = save_tiny_checkpoint(args.out, args.warm_start, args.steps, args.hidden_size, args.seed)
    print(f"tiny Qwen2.5-VL written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
