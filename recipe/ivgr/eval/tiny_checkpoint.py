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
    """(model, processor): the tiny random Qwen2.5-VL (`recipe.cpu_backend.tiny_model`, the one the CPU
    smoke run trains) and the offline processor with these pixel bounds."""
    from data_prep.offline_processor import build_processor
    from recipe.cpu_backend.tiny_model import build_model

    processor = build_processor(min_pixels=min_pixels, max_pixels=max_pixels)
    return build_model(processor.tokenizer, seed=seed), processor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.eval.tiny_checkpoint",
                                     description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write (config.json + weights)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from recipe.cpu_backend.tiny_model import save_tiny_checkpoint

    save_tiny_checkpoint(args.out, seed=args.seed)  # weights, config, tokenizer, image processor
    print(f"[eval] tiny Qwen2.5-VL (~200K parameters, random weights) written to {args.out}; evaluate it with "
          f"--backend transformers --offline-processor", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
