"""Preflight: prove a training config is sound on any machine, before spending GPU hours.

    python -m recipe.ivgr.preflight [--decode sample|all|none] [--sample-rows N] [--judge-timeout S] [key=value ...]
    bash scripts/train_ivgr_7b.sh --dry-run [key=value ...]     # same overrides as the real run

Needs no GPU and no Ray cluster. Composes the exact config `python -m recipe.ivgr.main` would run
with the same overrides (`recipe/ivgr/config/ivgr_trainer.yaml`), then checks, collecting every
problem instead of stopping at the first:

- config: Hydra composition, `recipe.ivgr.main.check_config` (verl's `validate_config` plus the
  recipe's invariants), the `reward_score` settings and its `judge`, `reward.reward_model` unused;
- data: every train/val Parquet exists and passes `data_prep.validate` (schema, every row, images
  and boxes decoded for a sample of rows); box frames and image patch size agree with the model;
  images per sample within `rollout.limit_images`; enough rows for one step;
- judge: `GET {reward_score.judge.base_url}/models` answers and lists `reward_score.judge.model` (or "not configured");
- sizes: batch sizes divisible by each other and by the data-parallel world, rollout TP divides the
  GPUs of a node, token budgets hold one full sequence, `rollout.n >= 2`;
- checkpoints: absolute `trainer.default_local_dir`; the checkpoint the run would resume from
  (`latest_checkpointed_iteration.txt` or `resume_from_path`) complete, files and archives
  (`recipe.ivgr.integrity.resume_target`, the trainer's own check).

Then prints a short table (GPUs, samples/rows/sequences per step, max tokens per sequence, estimated
tokens per step, checkpoint folder, logger). Exit status 0 when no problem was found, 1 otherwise
(one line per problem). Warnings (judge not configured, model to download, ...) never fail.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import logging
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "config"
CONFIG_NAME = "ivgr_trainer"
REPO_ROOT = Path(__file__).resolve().parents[2]
_CHARS_PER_TOKEN = 4  # text-token estimate (English prose; the image dominates grounded prompts anyway)
_TEMPLATE_TOKENS_PER_MESSAGE = 8  # <|im_start|>role\n ... <|im_end|>\n, vision markers


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)


@dataclass
class DataStats:
    """What one split's files hold, for the step estimates."""

    files: list[str] = field(default_factory=list)
    samples: int = 0
    kinds: Counter = field(default_factory=Counter)
    max_images: int = 0
    rows: int = 0  # dataset rows after stream expansion
    prompt_tokens_sum: float = 0.0  # over rows
    prompt_tokens_max: int = 0
    over_prompt_limit: int = 0  # rows whose estimated prompt exceeds data.max_prompt_length
    complete: bool = True  # every file could be read

    @property
    def mean_prompt_tokens(self) -> float:
        return self.prompt_tokens_sum / self.rows if self.rows else 0.0


# --------------------------------------------------------------------------- config helpers
def select(config, key: str, default: Any = None) -> Any:
    """`OmegaConf.select` that never raises (missing `???` or broken interpolations give `default`)."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(config, key, default=default, throw_on_missing=False)
    except Exception:  # noqa: BLE001  (interpolation errors are reported by check_config)
        return default
    return default if value is None else value


def plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def file_list(value: Any) -> list[str]:
    value = plain(value)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def compose_config(overrides: Sequence[str], config_dir: Path = CONFIG_DIR, config_name: str = CONFIG_NAME):
    """The config `python -m recipe.ivgr.main <overrides>` runs with (the `hydra` node excluded);
    another recipe passes its own config folder and name."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def run_check_config(config, findings: Findings, check_config=None) -> None:
    """The recipe's `check_config` (default `recipe.ivgr.main.check_config`): verl's validate_config plus
    the recipe's own invariants."""
    logging.disable(logging.WARNING)  # verl's import-time "no accelerator" chatter on CPU boxes
    try:
        if check_config is None:
            from recipe.ivgr.main import check_config
    finally:
        logging.disable(logging.NOTSET)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_config(config)
    except Exception as err:  # noqa: BLE001  (verl raises ValueError, AssertionError, omegaconf errors)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        findings.problem(f"config: check_config (verl validate_config + recipe rules) failed: {message}")
        return
    findings.note("config: verl validate_config and the recipe's checks passed")


def check_recipe_settings(config, findings: Findings) -> None:
    from reward_score.config import reward_config
    from reward_score.judge import JudgeConfig

    try:
        reward_config(plain(select(config, "reward_score", {})))
    except (ValueError, TypeError) as err:
        findings.problem(f"reward_score: {err}")
    try:
        from reward_score.judge.policy import split_judge_settings  # the step policy keys beside the client's

        JudgeConfig.from_mapping(split_judge_settings(plain(select(config, "reward_score.judge", {})))[0])
    except (ValueError, TypeError) as err:
        findings.problem(f"reward_score.judge: {err}")
    if select(config, "reward.reward_model.enable", False):
        findings.problem("reward.reward_model.enable=true: the iVGR recipe does not read verl's reward model; its "
                         "judge is reward_score.judge.base_url (an OpenAI-compatible server, scripts/serve_judge.sh). See "
                         "scripts/README.md 'Judge inside the Ray cluster?'")
    if select(config, "reward.custom_reward_function.path") is not None:
        findings.warn("reward.custom_reward_function.path is set but the recipe's IVGRRewardManager ignores it")


# --------------------------------------------------------------------------- data
def _streams(config) -> tuple[str, ...]:
    from reward_score.streams import STREAMS

    value = plain(select(config, "data.ivgr_streams"))
    if value is None:
        return STREAMS
    streams = [value] if isinstance(value, str) else list(value)
    return tuple(s for s in STREAMS if s in streams)


def _pixel_bounds(config, frame: str) -> tuple[int, int]:
    """Pixel bounds the dataset resizes within (its own config keys, then the processor kwargs)."""
    from reward_score.frames import get_frame

    spec = get_frame(frame)
    lo = int(select(config, "data.ivgr_min_pixels", spec.default_min_pixels))
    hi = int(select(config, "data.ivgr_max_pixels", spec.default_max_pixels))
    mm = plain(select(config, "data.mm_processor_kwargs", {})) or {}
    if mm.get("min_pixels"):
        lo = max(lo, int(mm["min_pixels"]))
    if mm.get("max_pixels"):
        hi = min(hi, int(mm["max_pixels"]))
    return lo, hi


def _text_tokens(messages) -> int:
    messages = list(messages or [])
    chars = sum(len(str(m.get("content") or "").replace("<image>", "")) for m in messages)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages)


def read_stats(path: str, config, stats: DataStats, findings: Findings, role: str) -> None:
    """Counts, images per sample and prompt-length estimates of one record Parquet (any schema
    version), the prompts rendered as the dataset renders them (`data_prep.prompts.record_messages`)."""
    import pyarrow.parquet as pq

    from data_prep import streaming
    from data_prep.prompts import record_messages
    from data_prep.schema import RECORD_COLUMNS, record_facts
    from reward_score.families import run_family
    from reward_score.frames import resized_size
    from reward_score.streams import KIND_STREAMS

    try:
        family = run_family(select(config, "data.ivgr_box_frame") or None,
                            int(select(config, "data.image_patch_size", 14)))
    except ValueError:  # check_frames reports it
        return
    lo, hi = _pixel_bounds(config, family.name)
    max_prompt = int(select(config, "data.max_prompt_length", 0) or 0)
    streams = _streams(config)
    over = 0
    try:
        names = pq.read_schema(path).names
        columns = [c for c in RECORD_COLUMNS if c in names]
        for batch in streaming.iter_batches(path, columns):
            for record in map(record_facts, batch.to_pylist()):
                kind = record["kind"]
                stats.samples += 1
                stats.kinds[kind] += 1
                images = len(record["images"] or [])
                stats.max_images = max(stats.max_images, images)
                image_tokens = 0
                size = record["image_size"] or []
                if len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
                    try:
                        width, height = resized_size(size[0], size[1], family.name, lo, hi)
                        image_tokens = images * (width * height) // family.resize_factor ** 2
                    except ValueError:
                        pass
                for stream in (s for s in KIND_STREAMS.get(kind, ()) if s in streams):
                    tokens = image_tokens + _text_tokens(record_messages(record, stream, family.name))
                    stats.rows += 1
                    stats.prompt_tokens_sum += tokens
                    stats.prompt_tokens_max = max(stats.prompt_tokens_max, tokens)
                    if max_prompt and tokens > max_prompt:
                        over += 1
    except Exception:  # noqa: BLE001  (validate() already reported why; here we only lose the stats)
        stats.complete = False
        return
    stats.over_prompt_limit += over
    if over:
        findings.warn(f"data ({role}): {path}: about {over} rows have an estimated prompt (image tokens "
                      f"at the configured pixel bounds + text) over data.max_prompt_length={max_prompt}; "
                      "filter_overlong_prompts drops them, truncation=error fails on them")


def _missing_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    from data_prep.schema import missing_columns

    return missing_columns(pq.read_schema(path).names)


def check_data(config, findings: Findings, decode: str, sample_rows: int) -> dict[str, DataStats]:
    from data_prep.schema import resolve_image_root
    from data_prep.sft import is_sft_file
    from data_prep.validate import validate

    out: dict[str, DataStats] = {}
    for role, key in (("train", "data.train_files"), ("val", "data.val_files")):
        files = file_list(select(config, key))
        stats = DataStats(files=files)
        if role == "val" and files and files == out["train"].files:
            findings.note("data (val): the train files (checked above), as the official iVGR code; "
                          "data.val_max_samples caps validation")
            continue
        out[role] = stats
        if not files:
            findings.problem(f"{key}: no file given")
            stats.complete = False
            continue
        root = resolve_image_root(files, select(config, "data.image_root") or None)
        if root is None and len(files) > 1:
            findings.warn(f"{key}: files in different folders and no data.image_root: images stored by path "
                          "cannot be resolved")
        for path in files:
            if "://" in path:
                findings.warn(f"{key}: {path} is remote; not checked here")
                stats.complete = False
                continue
            local = Path(os.path.expanduser(path))
            if not local.is_file():
                findings.problem(f"{key}: {path} does not exist" if not local.exists()
                                 else f"{key}: {path} is not a file")
                stats.complete = False
                continue
            if is_sft_file(local):  # validate() accepts it (as SFT data), but RL cannot train on it
                findings.problem(f"{key}: {path} is an SFT file (a `messages` column, data_prep.sft), not a record "
                                 "file: RL trains on the output of python -m data_prep.<converter>; SFT files go to "
                                 "scripts/sft_ivgr_7b.sh (its TRAIN_FILES)")
                stats.complete = False
                continue
            report = validate(local, image_root=root, decode=decode, sample_rows=sample_rows)
            if report.ok:
                findings.note(f"data ({role}): {path}: {report.rows} samples valid, images and boxes decoded "
                              f"for {report.decoded} rows")
            else:
                for code, count in sorted(report.counts.items(), key=lambda kv: (-kv[1], kv[0])):
                    if code == "schema_missing_column":
                        findings.problem(f"{key}: {path}: schema_missing_column x{count}: not a data_prep record "
                                         f"file, missing {', '.join(_missing_columns(local))} (convert it with "
                                         "python -m data_prep.<converter>)")
                        continue
                    examples = "; ".join(report.examples.get(code, [])[:5])
                    findings.problem(f"{key}: {path}: {code} x{count}" + (f" (e.g. {examples})" if examples else ""))
                if any(code.startswith("schema_") or code == "unreadable_file" for code in report.counts):
                    stats.complete = False
                    continue
            read_stats(str(local), config, stats, findings, role)
    return out


def check_frames(config, stats: dict[str, DataStats], findings: Findings) -> None:
    """The run's model family (`ivgr.box_frame`) vs the patch size, the model folder's family and the
    dataset's frame (all from `reward_score.families`); images per sample vs vLLM's limit."""
    from reward_score.families import DEFAULT_FAMILY, FAMILIES, FAMILY_NAMES, detect_family, patch_size_problem

    model_frame = select(config, "ivgr.box_frame", DEFAULT_FAMILY)
    patch = int(select(config, "data.image_patch_size", 14))
    if model_frame not in FAMILIES:
        findings.problem(f"ivgr.box_frame={model_frame!r}: choose one of {list(FAMILY_NAMES)}")
        return
    problem = patch_size_problem(model_frame, patch)
    if problem:
        findings.problem(f"ivgr.box_frame={model_frame}, data.image_patch_size={patch}: {problem} ("
                         + ", ".join(f"{f.title}: {f.patch_size}" for f in FAMILIES.values()) + ")")
    family, _ = detect_family(str(select(config, "actor_rollout_ref.model.path", "")))
    if family is not None:
        if patch != family.patch_size:
            findings.problem(f"data.image_patch_size={patch} but the model looks like {family.name} (patch "
                             f"{family.patch_size}): set data.image_patch_size={family.patch_size}")
        if model_frame != family.name:
            findings.problem(f"ivgr.box_frame={model_frame} but the model looks like {family.name}: set "
                             f"ivgr.box_frame={family.name}")
    override = select(config, "data.ivgr_box_frame")
    if override and override != model_frame:
        findings.problem(f"data.ivgr_box_frame={override} but ivgr.box_frame={model_frame}: the prompts would ask "
                         f"for {override} boxes from a {model_frame} model; leave data.ivgr_box_frame to the yaml "
                         "(it follows ivgr.box_frame)")
    limit = select(config, "actor_rollout_ref.rollout.limit_images")
    for role, st in stats.items():
        if limit is not None and st.max_images > int(limit):
            findings.problem(f"data ({role}): samples with {st.max_images} images but "
                             f"actor_rollout_ref.rollout.limit_images={limit} (vLLM refuses them)")


def check_model(config, findings: Findings) -> None:
    path = str(select(config, "actor_rollout_ref.model.path", ""))
    local = Path(os.path.expanduser(path))
    looks_local = path.startswith(("/", "./", "../", "~")) or local.exists()
    if looks_local:
        if not local.is_dir():
            findings.problem(f"actor_rollout_ref.model.path: {path} does not exist (a local folder) ")
        elif not (local / "config.json").is_file():
            findings.problem(f"actor_rollout_ref.model.path: {path} has no config.json (not a Hugging Face model folder)")
        else:
            findings.note(f"model: {path} (local)")
        return
    cached = None
    with contextlib.suppress(Exception):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
    if isinstance(cached, str):
        findings.note(f"model: {path} (Hugging Face id, in the local cache)")
    else:
        findings.warn(f"model: {path} is a Hugging Face id not in this machine's cache: every node downloads it on "
                      "first use (pre-download to a shared folder and set MODEL_PATH for multi-node runs)")


# --------------------------------------------------------------------------- judge
def check_judge(config, findings: Findings, timeout_s: float) -> str:
    """Probe the reward's judge (`reward_score.judge`); returns a one-line status for the summary."""
    if not select(config, "reward_score.judge.base_url"):
        if bool(select(config, "ivgr.consistency.enable", True)) or bool(select(config, "reward_score.judge_accuracy",
                                                                                 True)):
            findings.warn("judge: not configured (reward_score.judge.base_url / JUDGE_BASE_URL unset): the "
                          "consistency reward stays 0 and undecided answers score reward_score.undecided_fallback; "
                          "start one with scripts/serve_judge.sh")
        return "not configured"
    return check_endpoint(config, findings, timeout_s, "reward_score.judge", "judge")


def check_endpoint(config, findings: Findings, timeout_s: float, prefix: str, label: str) -> str:
    """Probe `GET {<prefix>.base_url}/models` of an OpenAI-compatible server: reachable, serves
    `<prefix>.model`, reachable from every node; returns a one-line status for the summary."""
    base_url = select(config, f"{prefix}.base_url")
    model = str(select(config, f"{prefix}.model", "judge"))
    if not base_url:
        return "not configured"
    base = str(base_url).strip().rstrip("/")
    nnodes = int(select(config, "trainer.nnodes", 1))
    host = urllib.parse.urlparse(base).hostname or ""
    if nnodes > 1 and host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        findings.problem(f"{prefix}.base_url={base} points at {host} but trainer.nnodes={nnodes}: workers on "
                         "the other nodes cannot reach it; use the server machine's address")
    url = f"{base}/models"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    key_env = str(select(config, f"{prefix}.api_key_env", "JUDGE_API_KEY"))
    if os.environ.get(key_env):
        request.add_header("Authorization", f"Bearer {os.environ[key_env]}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (user-configured URL)
            body = response.read()
    except urllib.error.HTTPError as err:
        findings.problem(f"{label}: GET {url} answered HTTP {err.code} ({err.reason})"
                         + (f"; set {key_env} if the server needs a key" if err.code in (401, 403) else ""))
        return "error"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        findings.problem(f"{label}: cannot reach {url}: {reason} (is the server running? scripts/serve_judge.sh)")
        return "unreachable"
    try:
        served = [str(entry.get("id")) for entry in json.loads(body).get("data", [])]
    except (ValueError, AttributeError, TypeError):
        findings.problem(f"{label}: GET {url} did not return an OpenAI model list (is {base} the /v1 root?)")
        return "error"
    if model not in served:
        findings.problem(f"{label}: {base} serves {served} but {prefix}.model={model!r}: set it to the "
                         "served name (vLLM --served-model-name)")
        return "wrong model"
    findings.note(f"{label}: {base} serves {model!r} (checked from this machine only)")
    return f"{model} at {base}"


# --------------------------------------------------------------------------- sizes
# The launch scripts' variables for the size keys a user changes most (scripts/train_ivgr_*.sh pass them
# as these Hydra keys; tests/test_first_day.py checks the pairs against --print-overrides).
LAUNCH_VARIABLES = {
    "data.train_batch_size": "TRAIN_BATCH_SIZE",
    "actor_rollout_ref.actor.ppo_mini_batch_size": "PPO_MINI_BATCH_SIZE",
    "actor_rollout_ref.rollout.n": "ROLLOUT_N",
}


def knob(key: str, value: Any) -> str:
    """`VARIABLE=value (hydra.key)` for a key the launch scripts expose as a variable, else `key=value`."""
    variable = LAUNCH_VARIABLES.get(key)
    return f"{variable}={value} ({key})" if variable else f"{key}={value}"


def setting(key: str, value: Any) -> str:
    """What a user types to set `key`: `VARIABLE=value` for a launch-script variable, else `key=value`."""
    return f"{LAUNCH_VARIABLES.get(key, key)}={value}"


def suggested_batch(rows: int) -> int:
    """A step size that fits `rows` train rows: the largest power of two <= rows (0 when rows < 2); powers of
    two keep both streams of a sample together and split evenly over 1, 2, 4 or 8 GPUs."""
    return 0 if rows < 2 else 1 << (rows.bit_length() - 1)


def check_step_target(config, train: DataStats | None, rows: int, findings: Findings) -> None:
    """The steps the run really makes: verl stops after trainer.total_epochs even before
    trainer.total_training_steps (IVGRTrainer raises the epochs; say so, with the numbers)."""
    from recipe.ivgr.sampler import epochs_for_steps

    total, epochs = select(config, "trainer.total_training_steps"), select(config, "trainer.total_epochs", 1)
    if train is None or not train.rows or not rows:
        return
    per_epoch = train.rows // rows
    if per_epoch == 0:  # check_sizes says so once, with the variables to change
        return
    if total is None:
        findings.note(f"steps: {per_epoch * int(epochs)} ({epochs} epochs of {per_epoch} steps)")
        return
    needed = epochs_for_steps(int(total), per_epoch)
    if needed > int(epochs):
        findings.warn(f"steps: trainer.total_training_steps={total} needs {needed} epochs of {per_epoch} steps, but "
                      f"trainer.total_epochs={epochs} would stop verl at step {per_epoch * int(epochs)} (before the "
                      f"final checkpoint and validation); the recipe's trainer raises total_epochs to {needed}")
    else:
        findings.note(f"steps: {total} ({total / per_epoch:.1f} epochs of {per_epoch} steps)")


def check_sizes(config, train: DataStats | None, findings: Findings) -> None:
    def integer(key: str, default: int = 0) -> int:
        try:
            return int(select(config, key, default))
        except (TypeError, ValueError):
            findings.problem(f"{key}: not an integer")
            return default

    nnodes, per_node = integer("trainer.nnodes", 1), integer("trainer.n_gpus_per_node", 8)
    gpus = nnodes * per_node
    rows = integer("data.train_batch_size")
    n = integer("actor_rollout_ref.rollout.n", 1)
    mini = integer("actor_rollout_ref.actor.ppo_mini_batch_size")
    check_step_target(config, train, rows, findings)
    sp = max(integer("actor_rollout_ref.actor.ulysses_sequence_parallel_size", 1),
             integer("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size", 1))
    tp = integer("actor_rollout_ref.rollout.tensor_model_parallel_size", 1)
    rollout_world = tp * integer("actor_rollout_ref.rollout.data_parallel_size", 1) \
        * integer("actor_rollout_ref.rollout.pipeline_model_parallel_size", 1)
    if gpus < 1 or rows < 1 or mini < 1 or n < 1 or sp < 1 or tp < 1:
        findings.problem(f"sizes must be positive: GPUs {gpus}, data.train_batch_size {rows}, "
                         f"ppo_mini_batch_size {mini}, rollout.n {n}, sequence parallel {sp}, rollout TP {tp}")
        return
    if n < 2:
        findings.problem(f"{knob('actor_rollout_ref.rollout.n', n)}: GRPO needs at least 2 rollouts per row "
                         "(a group of 1 has "
                         "advantage 0)")
    if gpus % sp:
        findings.problem(f"ulysses_sequence_parallel_size={sp} does not divide the {gpus} GPUs")
    dp = max(1, gpus // sp)
    pairs = train is not None and train.kinds.get("grounded", 0) > 0 \
        and {"grounded", "textual"} <= set(_streams(config)) and bool(select(config, "ivgr.pair_sampler", True))
    if rows % 2 and pairs:
        findings.problem(f"{knob('data.train_batch_size', rows)} is odd: a step must hold both rows "
                         "(grounded + textual) of "
                         "every grounded sample; use an even number of rows")
    if mini > rows:
        findings.problem(f"{knob('actor_rollout_ref.actor.ppo_mini_batch_size', mini)} is larger than "
                         f"{knob('data.train_batch_size', rows)}")
    elif rows % mini:
        findings.problem(f"{knob('data.train_batch_size', rows)} is not a multiple of "
                         f"{knob('actor_rollout_ref.actor.ppo_mini_batch_size', mini)}: the last update of every "
                         "step would be a padded partial "
                         "mini-batch")
    if (rows * n) % dp:
        findings.problem(f"{rows} rows x rollout.n {n} = {rows * n} sequences per step do not split evenly over "
                         f"{dp} data-parallel ranks ({gpus} GPUs / sequence parallel {sp}): verl would pad the step "
                         "with copies of real rows")
    if (mini * n) % dp:
        findings.problem(f"a mini-batch of {mini} rows x rollout.n {n} = {mini * n} sequences does not split evenly "
                         f"over {dp} data-parallel ranks ({gpus} GPUs / sequence parallel {sp})")
    if per_node % tp:
        findings.problem(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} does not divide "
                         f"trainer.n_gpus_per_node={per_node}: a vLLM replica must sit inside one node")
    elif gpus % rollout_world:
        findings.problem(f"rollout world size {rollout_world} (TP x DP x PP) does not divide the {gpus} GPUs")
    prompt = integer("data.max_prompt_length")
    response = integer("data.max_response_length")
    max_seq = prompt + response
    max_model_len = select(config, "actor_rollout_ref.rollout.max_model_len")
    if max_model_len is not None and int(max_model_len) < max_seq:
        findings.problem(f"actor_rollout_ref.rollout.max_model_len={max_model_len} < data.max_prompt_length + "
                         f"data.max_response_length = {max_seq}")
    budgets = []
    if select(config, "actor_rollout_ref.actor.use_dynamic_bsz", False):
        budgets.append(("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", sp))
    if select(config, "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz", False):
        budgets.append(("actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu", sp))
    if select(config, "actor_rollout_ref.ref.log_prob_use_dynamic_bsz", False):
        budgets.append(("actor_rollout_ref.ref.log_prob_max_token_len_per_gpu", sp))
    for key, factor in budgets:
        budget = integer(key)
        if budget * factor < max_seq:
            findings.problem(f"{key}={budget} (x sequence parallel {factor}) cannot hold one sequence of "
                             f"{max_seq} tokens (prompt {prompt} + response {response})")
    if train is not None and train.complete and train.rows:
        max_samples = integer("data.train_max_samples", -1)
        available = train.rows if max_samples < 0 or max_samples >= train.samples else \
            round(train.rows * max_samples / max(1, train.samples))
        if available < rows:
            batch = suggested_batch(available)
            fix = (f"set {setting('data.train_batch_size', batch)} "
                   f"{setting('actor_rollout_ref.actor.ppo_mini_batch_size', max(2, batch // 2))} (or smaller)"
                   if batch else "the data cannot fill even the smallest step (2 rows)")
            findings.problem(f"data: the train data has {available} rows ({train.samples} samples; a grounded sample "
                             f"is 2 rows) but one step needs {knob('data.train_batch_size', rows)} rows: {fix} "
                             "(README, \"Bring your own data\")")


# --------------------------------------------------------------------------- checkpoints / logger / install
def check_checkpoints(config, findings: Findings, verify: bool = True, skips_incomplete: bool = True) -> str:
    """Checkpoint folder and what the run resumes from. `verify`: check that checkpoint is complete (verl's
    PPO layout, `recipe.ivgr.integrity`; False for other layouts, e.g. verl's SFT trainer: only that it
    exists); `skips_incomplete`: the trainer skips an incomplete latest for the newest complete one, as
    `IVGRTrainer` does (else an incomplete latest is a problem: verl would fail to load it)."""
    folder = str(select(config, "trainer.default_local_dir", ""))
    mode = str(select(config, "trainer.resume_mode", "auto"))
    if not os.path.isabs(folder):
        findings.problem(f"trainer.default_local_dir={folder!r} is relative: it would resolve against the Ray "
                         "TaskRunner's working directory; give an absolute path (CKPT_DIR)")
        return f"{folder} (relative!)"
    status = f"resume: {mode}"
    from recipe.ivgr.integrity import TRACKER, resume_target

    resume = select(config, "trainer.resume_from_path")
    if mode == "resume_path" and resume and not Path(str(resume)).name.startswith("global_step_"):
        findings.problem(f"trainer.resume_from_path={resume} must be a global_step_N folder")
        return f"{folder} ({status})"
    if not verify:
        if mode == "auto" and (Path(folder) / TRACKER).is_file():
            step = (Path(folder) / TRACKER).read_text().strip()
            status += f", continues from global_step_{step}"
            findings.note(f"checkpoints: {folder} holds global_step_{step}: the run resumes from it")
        elif mode == "auto":
            status += ", none yet"
        elif mode == "resume_path" and not resume:
            findings.problem("trainer.resume_mode=resume_path needs trainer.resume_from_path=<...>/global_step_N")
        elif mode == "resume_path" and not Path(str(resume)).is_dir():
            findings.problem(f"trainer.resume_from_path={resume} does not exist")
        elif mode == "resume_path":
            status += f" from {resume}"
    else:
        try:
            from verl.trainer.ppo.utils import need_critic

            critic = bool(need_critic(config))
        except Exception:  # noqa: BLE001  (a config check_config already reported as broken)
            critic = False
        # the trainer asks the same function before it loads anything (IVGRTrainer._load_checkpoint)
        target = resume_target(mode, folder, str(resume) if resume else None, critic=critic)
        if target.error:
            findings.problem(f"checkpoints: {target.error}")
            status += ", refused"
        elif target.folder is not None and target.skipped is not None:
            message = (f"checkpoints: {TRACKER} names {target.skipped.name}, which is incomplete "
                       f"({'; '.join(target.problems[:3])})")
            if skips_incomplete:
                findings.warn(f"{message}: the run resumes from {target.folder.name}, the newest complete checkpoint")
            else:
                findings.problem(f"{message}: verl would fail to load it; point the tracker at "
                                 f"{target.folder.name}, the newest complete checkpoint, or move the folder away")
            status += f", continues from {target.folder.name} ({target.skipped.name} incomplete)"
        elif target.folder is not None:
            findings.note(f"checkpoints: {target.folder} is complete (actor shards, data.pt): the run resumes "
                          "from it")
            status += f", continues from {target.folder.name}" if mode == "auto" else f" from {target.folder}"
        elif mode == "auto":
            status += ", none yet"
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        findings.problem(f"trainer.default_local_dir={folder}: {probe} is not writable")
    return f"{folder} ({status})"


def check_logger(config, findings: Findings) -> str:
    loggers = plain(select(config, "trainer.logger", [])) or []
    loggers = [loggers] if isinstance(loggers, str) else list(loggers)
    if "wandb" in loggers and not os.environ.get("WANDB_API_KEY") \
            and os.environ.get("WANDB_MODE", "") not in ("offline", "disabled") and not _netrc_has("api.wandb.ai"):
        findings.warn("logger: wandb without WANDB_API_KEY (nor `wandb login`, nor WANDB_MODE=offline): wandb.init "
                      "fails in the Ray driver; LOGGER=console,tensorboard avoids it")
    return ", ".join(str(x) for x in loggers) or "none"


def _netrc_has(host: str) -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    with contextlib.suppress(OSError):
        return host in path.read_text()
    return False


def check_install(findings: Findings) -> None:
    """Ray workers import `recipe`, `reward_score` and `data_prep` by name: they must be installed."""
    try:
        importlib.metadata.distribution("ivgr-recipes")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if any(Path(p).resolve() == REPO_ROOT for p in paths):
        findings.warn("the recipe is importable through PYTHONPATH only: fine on one node, but every node of a "
                      "multi-node run needs it (pip install -e .)")
        return
    findings.problem(f"the recipe is not installed in this Python ({sys.executable}): run `pip install -e .` in "
                     f"{REPO_ROOT} (on every node); Ray workers load pkg://recipe.ivgr.* by import")


# --------------------------------------------------------------------------- summary
def _human(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def summary_rows(config, train: DataStats | None, judge: str, ckpt: str, logger_: str) -> list[tuple[str, str]]:
    def integer(key: str, default: int = 0) -> int:
        try:
            return int(select(config, key, default))
        except (TypeError, ValueError):
            return default

    nnodes, per_node = integer("trainer.nnodes", 1), integer("trainer.n_gpus_per_node", 8)
    gpus = nnodes * per_node
    tp = max(1, integer("actor_rollout_ref.rollout.tensor_model_parallel_size", 1))
    rows = integer("data.train_batch_size")
    n = integer("actor_rollout_ref.rollout.n", 1)
    mini = max(1, integer("actor_rollout_ref.actor.ppo_mini_batch_size", 1))
    prompt, response = integer("data.max_prompt_length"), integer("data.max_response_length")
    sequences = rows * n
    if train is not None and train.samples and train.rows:
        rows_per_sample = train.rows / train.samples
        from reward_score.streams import KINDS

        mix = ", ".join(f"{train.kinds[k]} {k}" for k in KINDS if train.kinds.get(k))
        samples = f"~{rows / rows_per_sample:.0f} (train data: {mix} samples, {rows_per_sample:.2f} rows/sample)"
        mean_prompt = train.mean_prompt_tokens
        tokens = f"~{_human(sequences * (mean_prompt + response))} (prompt ~{mean_prompt:.0f} est. + response " \
                 f"<= {response} per sequence; all at max length {_human(sequences * (prompt + response))})"
        steps_per_epoch = train.rows // rows if rows else 0
        epoch = f"{steps_per_epoch} step{'s' if steps_per_epoch != 1 else ''}/epoch ({train.rows} rows)"
    else:
        samples = "? (train data not readable)"
        tokens = f"<= {_human(sequences * (prompt + response))} (all at max length)"
        epoch = "?"
    total = select(config, "trainer.total_training_steps")
    return [
        ("GPUs", f"{gpus} ({nnodes} node{'s' if nnodes != 1 else ''} x {per_node}; rollout TP {tp} -> "
                 f"{max(1, gpus // tp)} vLLM replicas)"),
        ("samples/step", samples),
        ("rows/step", f"{rows} (data.train_batch_size)"),
        ("sequences/step", f"{sequences} (rollout.n {n}); {max(1, rows // mini)} updates of {mini * n}"),
        ("max tokens/sequence", f"{prompt + response} (prompt {prompt} + response {response})"),
        ("tokens/step (est.)", tokens),
        ("steps", f"{total if total is not None else 'by epochs'} total; {epoch}"),
        ("checkpoint folder", ckpt),
        ("logger", logger_),
        ("judge", judge),
    ]


def run(overrides: Sequence[str], decode: str = "sample", sample_rows: int = 64, judge_timeout: float = 5.0,
        out=None) -> int:
    """Run every check with these Hydra overrides; print the report to `out`; 0 = sound, 1 = problems."""
    out = out or sys.stdout
    findings = Findings()
    usable = []
    for item in overrides:
        if item.startswith("--"):
            findings.problem(f"unknown option {item!r}: pass Hydra overrides as key=value")
        elif item.startswith(("hydra.", "hydra/", "+hydra", "~hydra")):
            findings.note(f"ignored (Hydra runtime only): {item}")
        else:
            usable.append(item)
    try:
        config = compose_config(usable)
    except Exception as err:  # noqa: BLE001  (Hydra's ConfigCompositionException, override parse errors)
        findings.problem(f"config: Hydra cannot compose {CONFIG_NAME} with these overrides: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}")
        return _report(findings, [], out)
    check_install(findings)
    run_check_config(config, findings)
    check_recipe_settings(config, findings)
    check_model(config, findings)
    stats = check_data(config, findings, decode, sample_rows)
    check_frames(config, stats, findings)
    train = stats.get("train")
    check_sizes(config, train, findings)
    judge = check_judge(config, findings, judge_timeout)
    ckpt = check_checkpoints(config, findings)
    logger_ = check_logger(config, findings)
    return _report(findings, summary_rows(config, train, judge, ckpt, logger_), out)


def _report(findings: Findings, rows: list[tuple[str, str]], out, title: str = "iVGR preflight (no GPU, no Ray)",
            ok: str = "the config composes and validates; data, sizes and judge check out") -> int:
    """Print the findings and the summary rows; 0 when there is no problem, else 1."""
    print(title, file=out)
    for note in findings.notes:
        print(f"  ok    {note}", file=out)
    if rows:
        print("", file=out)
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}", file=out)
    if findings.warnings:
        print("", file=out)
        for message in findings.warnings:
            print(f"WARNING: {message}", file=out)
    print("", file=out)
    if findings.problems:
        print(f"PREFLIGHT FAILED: {len(findings.problems)} problem{'s' if len(findings.problems) != 1 else ''}",
              file=out)
        for message in findings.problems:
            print(f"PROBLEM: {message}", file=out)
        return 1
    extra = f" ({len(findings.warnings)} warning{'s' if len(findings.warnings) != 1 else ''} above)" \
        if findings.warnings else ""
    print(f"PREFLIGHT OK{extra}: {ok}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--env" in argv:  # the GPU node's installed stack instead of a config: recipe/ivgr/envcheck.py
        from recipe.ivgr.envcheck import main as env_main

        return env_main([a for a in argv if a != "--env"], prog="python -m recipe.ivgr.preflight --env")
    from recipe.ivgr.envcheck import interpreter_problem

    if (problem := interpreter_problem()) is not None:
        print(f"PROBLEM: {problem}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m recipe.ivgr.preflight",
                                     description="Check an iVGR training config without GPUs (see module doc).")
    parser.add_argument("--decode", choices=("sample", "all", "none"), default="sample",
                        help="decode images of a sample of rows (default), every row, or none")
    parser.add_argument("--sample-rows", type=int, default=64, help="rows whose images are decoded (--decode sample)")
    parser.add_argument("--judge-timeout", type=float, default=5.0, help="seconds for GET {base_url}/models")
    args, overrides = parser.parse_known_args(argv)
    return run(overrides, decode=args.decode, sample_rows=args.sample_rows, judge_timeout=args.judge_timeout)


if __name__ == "__main__":
    sys.exit(main())
