"""SFT preflight: prove a cold-start SFT config is sound on any machine, before spending GPU hours.

    python -m recipe.ivgr.sft_preflight [--decode sample|all|none] [--sample-rows N] [key=value ...]
    bash scripts/sft_ivgr_7b.sh --dry-run [key=value ...]      # same overrides as the real run

Needs no GPU. Composes the exact config `torchrun -m verl.trainer.sft_trainer --config-path
recipe/ivgr/config --config-name ivgr_sft <overrides>` runs (the recipe's `ivgr_sft.yaml` on verl 0.9.1's
`trainer/config/sft_trainer_engine.yaml`), then checks, collecting every problem:

- config: Hydra composition; `engine`, `optim`, `checkpoint`, `profiler` built into verl's config
  dataclasses (their `__post_init__` validation), and `model` too when `model.path` is a local folder
  (that loads its config, tokenizer and processor; a hub id is only named);
- data: every train/val file exists, is an SFT Parquet (`data_prep.sft`) and passes
  `data_prep.sft_tools.validate_sft` (images decoded for a sample of rows); its box frame agrees with
  the model family; `data.messages_key` / `data.image_key` are the file's columns;
- lengths: per sampled row, image tokens exactly (`reward_score.frames` at the stored bounds) plus an
  estimate of the text tokens, against `data.max_length` (with `truncation=error` one longer row
  stops the run mid-epoch) and `data.max_token_len_per_gpu`;
- sizes: `data.train_batch_size` divisible by the data-parallel world and at most the train rows (the
  loader drops the last partial batch, so fewer rows mean zero steps);
- checkpoints: absolute `trainer.default_local_dir`, and `checkpoint.save_contents` holding `hf_model`
  so every `global_step_N/huggingface/` is a complete Hugging Face folder the RL scripts take as
  `MODEL_PATH` (without it verl writes sharded FSDP files only; `python -m verl.model_merger merge`
  rebuilds the folder, see scripts/README.md).

Prints a table (GPUs, rows, steps, token estimates, host memory of the datasets: verl's
`MultiTurnSFTDataset` reads every file whole with pandas in every rank, so embedded images cost
their size once per GPU; the final `MODEL_PATH`). Exit 0 when sound.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from recipe.ivgr.preflight.config import compose_config, file_list, plain, select
from recipe.ivgr.preflight.data import CHARS_PER_TOKEN
from recipe.ivgr.preflight.host import check_checkpoints
from recipe.ivgr.preflight.report import Findings, print_report

_TEMPLATE_TOKENS = 24  # chat-template tokens of three turns and the vision markers


# The SFT launch runs `verl.trainer.sft_trainer --config-path <SFT_CONFIG_DIR> --config-name <SFT_CONFIG_NAME>`
# (scripts/sft_common.sh): the recipe's ivgr_sft.yaml, which extends verl's sft_trainer_engine.yaml.
SFT_CONFIG_DIR = Path(__file__).resolve().parent / "config"
SFT_CONFIG_NAME = "ivgr_sft"


def sft_config_dir() -> Path:
    """The config folder the SFT launch composes from (the recipe's, searching verl's own after it)."""
    return SFT_CONFIG_DIR


def check_dataclasses(config, findings: Findings) -> None:
    """Build the sub-configs verl's SFTTrainer builds first (`SFTTrainer._build_config`)."""
    from verl.utils.config import omega_conf_to_dataclass

    for key in ("engine", "optim", "checkpoint", "profiler"):
        try:
            omega_conf_to_dataclass(config[key])
        except Exception as err:  # noqa: BLE001  (dataclass validation raises many types)
            findings.problem(f"{key}: verl rejects it: {type(err).__name__}: {str(err).strip()[:300]}")
    path = str(select(config, "model.path", ""))
    local = Path(os.path.expanduser(path))
    if local.is_dir():
        if not (local / "config.json").is_file():
            findings.problem(f"model.path: {path} has no config.json (not a Hugging Face model folder)")
            return
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = omega_conf_to_dataclass(config.model)
        except Exception as err:  # noqa: BLE001
            findings.problem(f"model: verl cannot load {path}: {type(err).__name__}: {str(err).strip()[:300]}")
            return
        if model.processor is not None:
            findings.note(f"model: {path} (local; config, tokenizer and processor load)")
        elif importlib.util.find_spec("torchvision") is None:
            findings.warn(f"model: {path}: no processor here (transformers' Qwen-VL video processors need torchvision, "
                          "absent on this machine); the GPU node must build one, the SFT dataset needs it for images")
        else:
            findings.problem(f"model: verl builds no processor for {path}: the SFT dataset needs one for images "
                             "(preprocessor_config.json / chat template missing?)")
    elif path.startswith(("/", "./", "../", "~")):
        findings.problem(f"model.path: {path} does not exist (a local folder)")
    else:
        findings.warn(f"model: {path} is a Hugging Face id: every node downloads it on first use (pre-download "
                      "and set BASE_MODEL to the folder to have it checked here)")


def _row_tokens(row: dict) -> int:
    from reward_score.frames import get_frame, resized_size

    spec = get_frame(row["box_frame"])
    image_tokens = 0
    for position, image in enumerate(row["images"] or []):
        size = row["image_size"] if position == 0 else None
        if size is None:  # later images: their own header
            from PIL import Image

            with Image.open(io.BytesIO(image["bytes"])) as handle:
                size = handle.size
        width, height = resized_size(*size, row["box_frame"], image["min_pixels"], image["max_pixels"])
        image_tokens += width * height // spec.resize_factor ** 2
    chars = sum(len(m["content"] or "") for m in row["messages"] or [])
    return image_tokens + math.ceil(chars / CHARS_PER_TOKEN) + _TEMPLATE_TOKENS


def check_data(config, findings: Findings, decode: str, sample_rows: int) -> dict[str, dict]:
    """Per split: rows, streams, frames, estimated token lengths of the sampled rows."""
    import pyarrow.parquet as pq

    from data_prep.sft import is_sft_file
    from data_prep.sft_tools import validate_sft

    messages_key = str(select(config, "data.messages_key", "messages"))
    image_key = str(select(config, "data.image_key", "images"))
    if (messages_key, image_key) != ("messages", "images"):
        findings.problem(f"data.messages_key={messages_key} / data.image_key={image_key}: data_prep.sft files "
                         "hold `messages` and `images`")
    stats: dict[str, dict] = {}
    for split, key in (("train", "data.train_files"), ("val", "data.val_files")):
        files = file_list(select(config, key))
        if split == "train" and not files:
            findings.problem("data.train_files is empty")
        info = {"rows": 0, "streams": Counter(), "frames": Counter(), "tokens": [], "bytes": 0}
        for name in files:
            path = Path(os.path.expanduser(name))
            if not path.is_file():
                findings.problem(f"{key}: {name} does not exist")
                continue
            if not is_sft_file(path):
                findings.problem(f"{key}: {name} is not an SFT Parquet (no `messages` column); make it with "
                                 "python -m data_prep.ivgr_sft35k / generic_sft / recipe.ivgr.distill")
                continue
            report = validate_sft(path, decode=decode, sample_rows=sample_rows)
            if not report.ok:
                worst = ", ".join(f"{code} x{count}" for code, count in report.counts.most_common(4))
                findings.problem(f"{key}: {name} fails data_prep.validate ({worst}); run python -m "
                                 f"data_prep.validate {name}")
            parquet = pq.ParquetFile(path)
            rows = parquet.metadata.num_rows
            stride = max(1, rows // max(1, sample_rows))
            number = 0
            for batch in parquet.iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    info["streams"][row["stream"]] += 1
                    info["frames"][row["box_frame"]] += 1
                    if number % stride == 0:
                        with contextlib.suppress(Exception):
                            info["tokens"].append(_row_tokens(row))
                    number += 1
            info["rows"] += rows
            info["bytes"] += path.stat().st_size
            findings.note(f"{key}: {name}: {rows} rows {dict(info['streams'])}, {report.decoded} decoded")
        if split == "train" and files and info["rows"] == 0:
            findings.problem("data.train_files hold 0 rows: nothing to train on. Set TRAIN_FILES (scripts/sft_ivgr_*.sh; "
                             "data.train_files=... for the module) to an SFT Parquet with rows, or leave TRAIN_FILES "
                             "empty for the synthetic SFT set; the converter's NAME.summary.json says why rows were "
                             "rejected")
        stats[split] = info
    return stats


def check_frames_and_lengths(config, stats: dict[str, dict], findings: Findings) -> None:
    from reward_score.families import FAMILY_NAMES, detect_family  # reward_score needs numpy: import late

    detected, why = detect_family(str(select(config, "model.path", "")))
    family = detected.name if detected else None
    frames = sum((s["frames"] for s in stats.values()), Counter())
    if family and frames and set(frames) != {family}:
        findings.problem(f"the data's box frames {dict(frames)} do not match the model family {family}: prepare "
                         f"the SFT data with --box-frame {family}")
    elif not family:
        findings.warn(f"model family unknown (none of {list(FAMILY_NAMES)}: {why}): box frame not checked")
    max_length = int(select(config, "data.max_length", 1024))
    truncation = str(select(config, "data.truncation", "error"))
    tokens = [t for s in stats.values() for t in s["tokens"]]
    over = sum(t > max_length for t in tokens)
    if over and truncation == "error":
        findings.problem(f"{over} of {len(tokens)} sampled rows are estimated longer than data.max_length="
                         f"{max_length} tokens (longest ~{max(tokens)}); with data.truncation=error the first "
                         "one stops the run: raise MAX_LENGTH, or set truncation=right")
    elif over:
        findings.warn(f"{over} of {len(tokens)} sampled rows are estimated longer than data.max_length={max_length}"
                      f" tokens: their responses get cut (truncation={truncation}), losing </answer>")
    if bool(select(config, "data.use_dynamic_bsz", True)):
        budget = int(select(config, "data.max_token_len_per_gpu", 0))
        if budget < max_length:
            findings.problem(f"data.max_token_len_per_gpu={budget} is below data.max_length={max_length}: a long row "
                             "cannot fit one micro-batch")


def check_sizes(config, train_rows: int, findings: Findings) -> dict[str, int]:
    nnodes, per_node = int(select(config, "trainer.nnodes", 1)), int(select(config, "trainer.n_gpus_per_node", 1))
    gpus = nnodes * per_node
    sp = int(select(config, "engine.ulysses_sequence_parallel_size", 1) or 1)
    batch = int(select(config, "data.train_batch_size", 0))
    if gpus < 1 or batch < 1 or sp < 1 or gpus % sp:
        findings.problem(f"sizes: {gpus} GPUs, sequence parallel {sp}, data.train_batch_size {batch}")
        return {"gpus": gpus, "dp": 1, "steps": 0}
    dp = gpus // sp
    if batch % dp:
        findings.problem(f"data.train_batch_size={batch} is not a multiple of the {dp} data-parallel ranks: verl "
                         "splits the global batch evenly per rank")
    per_rank_rows = train_rows // dp
    steps_per_epoch = per_rank_rows // max(1, batch // dp)
    if train_rows and steps_per_epoch < 1:
        findings.problem(f"{train_rows} train rows make no full batch of {batch} (the loader drops partial "
                         f"batches): zero training steps; lower TRAIN_BATCH_SIZE (data.train_batch_size) to at "
                         f"most {max(dp, train_rows // dp * dp)} or add rows")
    epochs = int(select(config, "trainer.total_epochs", 1))
    total = select(config, "trainer.total_training_steps")
    steps = int(total) if total else steps_per_epoch * epochs
    return {"gpus": gpus, "dp": dp, "steps": steps, "steps_per_epoch": steps_per_epoch}


def check_hf_output(config, steps: int, findings: Findings) -> str:
    contents = [str(c) for c in plain(select(config, "checkpoint.save_contents", [])) or []]
    folder = str(select(config, "trainer.default_local_dir", ""))
    final = f"{folder}/hf_final (-> global_step_{steps}/huggingface, linked by the script at the end)"
    if "hf_model" not in contents:
        findings.warn("checkpoint.save_contents has no hf_model: verl writes sharded FSDP files only; rebuild a "
                      f"Hugging Face folder with `python -m verl.model_merger merge --backend fsdp --local_dir "
                      f"{folder}/global_step_{steps} --target_dir <out>` before RL")
        return f"(after verl.model_merger) from {folder}/global_step_{steps}"
    if int(select(config, "trainer.save_freq", -1) or -1) <= 0:
        findings.note("trainer.save_freq <= 0: only the last step is saved (it always is)")
    return final


def run(overrides: Sequence[str], decode: str = "sample", sample_rows: int = 64, out=None) -> int:
    """Every check with these overrides of the SFT config (ivgr_sft.yaml); report to `out`; 0 = sound."""
    out = out or sys.stdout
    findings = Findings()
    usable = [o for o in overrides if not o.startswith(("hydra.", "+hydra"))]
    for item in usable:
        if item.startswith("--"):
            findings.problem(f"unknown option {item!r}: pass Hydra overrides as key=value")
    usable = [o for o in usable if not o.startswith("--")]
    try:
        config = compose_config(usable, sft_config_dir(), SFT_CONFIG_NAME)
    except Exception as err:  # noqa: BLE001
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        findings.problem(f"config: Hydra cannot compose {SFT_CONFIG_NAME} (verl's sft_trainer_engine + the recipe's) "
                         f"with these overrides: {text}")
        return report(findings, [], out)
    check_dataclasses(config, findings)
    stats = check_data(config, findings, decode, sample_rows)
    check_frames_and_lengths(config, stats, findings)
    train_rows = stats.get("train", {}).get("rows", 0)
    sizes = check_sizes(config, train_rows, findings)
    ckpt = check_checkpoints(config, findings, verify=False)  # verl's SFT layout: no actor/ folder
    final = check_hf_output(config, sizes["steps"], findings)
    tokens = stats.get("train", {}).get("tokens") or [0]
    per_node = int(select(config, "trainer.n_gpus_per_node", 1))
    ram = per_node * sum(s.get("bytes", 0) for s in stats.values())
    batch = int(select(config, "data.train_batch_size", 0))
    rows = [
        ("GPUs", f"{sizes['gpus']} (data parallel {sizes['dp']})"),
        ("train rows", f"{train_rows} {dict(stats.get('train', {}).get('streams', {}))}"),
        ("batch", f"{batch} sequences per step, {batch // max(1, sizes['dp'])} per rank"),
        ("steps", f"{sizes['steps']} ({sizes.get('steps_per_epoch', 0)} per epoch x "
                  f"{select(config, 'trainer.total_epochs', 1)} epochs)"),
        ("tokens/sequence", f"~{sum(tokens) / len(tokens):.0f} mean, ~{max(tokens)} max (estimated, sampled rows); "
                            f"max_length {select(config, 'data.max_length')}"),
        ("tokens/step", f"~{batch * sum(tokens) / len(tokens) / 1e6:.2f} M"),
        ("lr", f"{select(config, 'optim.lr')} ({select(config, 'optim.lr_scheduler_type')}, warmup "
               f"{select(config, 'optim.lr_warmup_steps_ratio')})"),
        ("host memory", f"~{_gib(ram)} GiB per node for the datasets (verl's SFT dataset reads each file whole into "
                        f"every rank: {per_node} ranks x {_gib(ram / max(1, per_node))} GiB)"),
        ("checkpoints", ckpt),
        ("RL MODEL_PATH", final),
    ]
    return report(findings, rows, out)


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f}"


def report(findings: Findings, rows: list[tuple[str, str]], out) -> int:
    return print_report(findings, rows, out, "iVGR SFT preflight (no GPU)",
                   "the SFT config composes and validates; data, lengths and sizes check out")


def main(argv: Sequence[str] | None = None) -> int:
    from recipe.ivgr.envcheck import interpreter_problem

    if (problem := interpreter_problem()) is not None:
        print(f"PROBLEM: {problem}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.sft_preflight",
                                     description="Check a cold-start SFT config without GPUs (see module doc).")
    parser.add_argument("--decode", choices=("sample", "all", "none"), default="sample")
    parser.add_argument("--sample-rows", type=int, default=64)
    args, overrides = parser.parse_known_args(argv)
    return run(overrides, decode=args.decode, sample_rows=args.sample_rows)


if __name__ == "__main__":
    sys.exit(main())
