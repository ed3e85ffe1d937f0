"""A tiny random Qwen2.5-VL checkpoint for a CPU smoke run of the evaluation (no download).

    python -m recipe.ivgr.eval.tiny_checkpoint OUT_DIR
    python -m recipe.ivgr.eval --model OUT_DIR --backend transformers --offline-processor \
        --bench vstar --mode textual grounded --max-new-tokens 8 --limit 4 --min-pixels 3136 --max-pixels 9408

About 200K parameters (2 text layers of width 64, a 2-block vision tower, patch 14 x merge 2, the
Qwen2.5-VL frame), random weights, vocabulary of `data_prep.offline_processor`'s tokenizer (pass
`--offline-processor` to the eval: a real Qwen-VL processor cannot be loaded on CPU machines
without torchvision). Its answers are noise: the run checks the plumbing, not the scores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_tiny_qwen(min_pixels: int = 4 * 28 * 28, max_pixels: int = 12 * 28 * 28, seed: int = 0) -> tuple[Any, Any]:
    """(model, processor): the tiny random Qwen2.5-VL and the offline processor with these pixel bounds."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from data_prep.offline_processor import build_processor

    processor = build_processor(min_pixels=min_pixels, max_pixels=max_pixels)
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(name) for name in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_end|>", "<|endoftext|>")}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, num_heads=2, out_hidden_size=64, intermediate_size=64,
                           window_size=56, fullatt_block_indexes=[1], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval(), processor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.eval.tiny_checkpoint",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (config.json + weights)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, _ = build_tiny_qwen(seed=args.seed)
    model.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"[eval] tiny Qwen2.5-VL ({params:,} parameters, random weights) written to {args.out}; evaluate it with "
          f"--backend transformers --offline-processor", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
