"""The preflight's size arithmetic: one step's sizes read once from the config (`StepSizes`), checked
against each other, the GPUs and the data (`check_sizes`), and summarised for the report (`summary_rows`).
Sizes are counts (GPUs, rows, sequences) and token lengths."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipe.ivgr.preflight.config import REPO_ROOT, select
from recipe.ivgr.preflight.data import DataStats, enabled_streams
from recipe.ivgr.preflight.report import Findings

# The launch scripts' table of the variables a user sets (its owner; scripts/README.md, "Launch").
LAUNCH_TABLE = REPO_ROOT / "scripts" / "common.sh"
_TABLE_BLOCK = re.compile(r"^IVGR_ENV_KEYS=\(\n(.*?)^\)", re.DOTALL | re.MULTILINE)
_TABLE_ENTRY = re.compile(r'^\s*"([A-Z][A-Z0-9_]*) ([^"\s]+)"\s*$')


@functools.cache
def launch_variables(table: Path = LAUNCH_TABLE) -> dict[str, str]:
    """Hydra key -> the launch scripts' variable that sets it, read from `IVGR_ENV_KEYS` in
    scripts/common.sh (entries "VARIABLE key[,key...]"). Empty where the scripts are absent (an install
    without the repository): the messages then name the Hydra keys."""
    try:
        block = _TABLE_BLOCK.search(table.read_text(encoding="utf-8"))
    except OSError:
        return {}
    variables: dict[str, str] = {}
    for line in block.group(1).splitlines() if block else ():
        if entry := _TABLE_ENTRY.match(line):
            variables.update((key, entry.group(1)) for key in entry.group(2).split(","))
    return variables


def knob(key: str, value: Any) -> str:
    """`VARIABLE=value (hydra.key)` for a key the launch scripts expose as a variable, else `key=value`."""
    variable = launch_variables().get(key)
    return f"{variable}={value} ({key})" if variable else f"{key}={value}"


def setting(key: str, value: Any) -> str:
    """What a user types to set `key`: `VARIABLE=value` for a launch-script variable, else `key=value`."""
    return f"{launch_variables().get(key, key)}={value}"


def suggested_batch(rows: int) -> int:
    """A step size that fits `rows` train rows: the largest power of two <= rows (0 when rows < 2); powers of
    two keep both streams of a sample together and split evenly over 1, 2, 4 or 8 GPUs."""
    return 0 if rows < 2 else 1 << (rows.bit_length() - 1)


def _integer(config, key: str, default: int, findings: Findings | None) -> int:
    try:
        return int(select(config, key, default))
    except (TypeError, ValueError):
        if findings is not None:
            findings.problem(f"{key}: not an integer")
        return default


@dataclass(frozen=True)
class StepSizes:
    """One training step's sizes as the config sets them (counts; `prompt`/`response` in tokens)."""

    nnodes: int
    per_node: int  # GPUs per node
    rows: int  # data.train_batch_size (a grounded sample is 2 rows)
    n: int  # rollouts per row
    mini: int  # ppo_mini_batch_size, rows
    sp: int  # Ulysses sequence parallel
    tp: int  # rollout tensor parallel
    rollout_world: int  # rollout TP x DP x PP, GPUs
    prompt: int
    response: int

    @classmethod
    def read(cls, config, findings: Findings | None = None) -> StepSizes:
        """The sizes; a value that is not an integer takes its default (a problem when `findings` is given)."""
        def integer(key: str, default: int = 0) -> int:
            return _integer(config, key, default, findings)

        tp = integer("actor_rollout_ref.rollout.tensor_model_parallel_size", 1)
        return cls(nnodes=integer("trainer.nnodes", 1), per_node=integer("trainer.n_gpus_per_node", 8),
                   rows=integer("data.train_batch_size"), n=integer("actor_rollout_ref.rollout.n", 1),
                   mini=integer("actor_rollout_ref.actor.ppo_mini_batch_size"),
                   sp=max(integer("actor_rollout_ref.actor.ulysses_sequence_parallel_size", 1),
                          integer("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size", 1)),
                   tp=tp, rollout_world=tp * integer("actor_rollout_ref.rollout.data_parallel_size", 1)
                   * integer("actor_rollout_ref.rollout.pipeline_model_parallel_size", 1),
                   prompt=integer("data.max_prompt_length"), response=integer("data.max_response_length"))

    @property
    def gpus(self) -> int:
        return self.nnodes * self.per_node

    @property
    def sequences(self) -> int:
        return self.rows * self.n

    @property
    def max_seq(self) -> int:
        return self.prompt + self.response

    def steps_per_epoch(self, train: DataStats) -> int:
        return train.rows // self.rows if self.rows else 0


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
    """Batch sizes divisible by each other and by the data-parallel world, rollout TP inside a node,
    token budgets that hold one full sequence, `rollout.n >= 2`, enough train rows for one step."""
    size = StepSizes.read(config, findings)
    gpus, rows, n, mini, sp, tp = size.gpus, size.rows, size.n, size.mini, size.sp, size.tp
    check_step_target(config, train, rows, findings)
    if gpus < 1 or rows < 1 or mini < 1 or n < 1 or sp < 1 or tp < 1:
        findings.problem(f"sizes must be positive: GPUs {gpus}, data.train_batch_size {rows}, "
                         f"ppo_mini_batch_size {mini}, rollout.n {n}, sequence parallel {sp}, rollout TP {tp}")
        return
    if n < 2:
        findings.problem(f"{knob('actor_rollout_ref.rollout.n', n)}: GRPO needs at least 2 rollouts per row "
                         "(a group of 1 has advantage 0)")
    if gpus % sp:
        findings.problem(f"ulysses_sequence_parallel_size={sp} does not divide the {gpus} GPUs")
    dp = max(1, gpus // sp)
    pairs = train is not None and train.kinds.get("grounded", 0) > 0 \
        and {"grounded", "textual"} <= set(enabled_streams(config)) and bool(select(config, "ivgr.pair_sampler", True))
    if rows % 2 and pairs:
        findings.problem(f"{knob('data.train_batch_size', rows)} is odd: a step must hold both rows "
                         "(grounded + textual) of every grounded sample; use an even number of rows")
    if mini > rows:
        findings.problem(f"{knob('actor_rollout_ref.actor.ppo_mini_batch_size', mini)} is larger than "
                         f"{knob('data.train_batch_size', rows)}")
    elif rows % mini:
        findings.problem(f"{knob('data.train_batch_size', rows)} is not a multiple of "
                         f"{knob('actor_rollout_ref.actor.ppo_mini_batch_size', mini)}: the last update of every "
                         "step would be a padded partial mini-batch")
    if (rows * n) % dp:
        findings.problem(f"{rows} rows x rollout.n {n} = {rows * n} sequences per step do not split evenly over "
                         f"{dp} data-parallel ranks ({gpus} GPUs / sequence parallel {sp}): verl would pad the step "
                         "with copies of real rows")
    if (mini * n) % dp:
        findings.problem(f"a mini-batch of {mini} rows x rollout.n {n} = {mini * n} sequences does not split evenly "
                         f"over {dp} data-parallel ranks ({gpus} GPUs / sequence parallel {sp})")
    if size.per_node % tp:
        findings.problem(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} does not divide "
                         f"trainer.n_gpus_per_node={size.per_node}: a vLLM replica must sit inside one node")
    elif gpus % size.rollout_world:
        findings.problem(f"rollout world size {size.rollout_world} (TP x DP x PP) does not divide the {gpus} GPUs")
    prompt, response, max_seq = size.prompt, size.response, size.max_seq
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
        budget = _integer(config, key, 0, findings)
        if budget * factor < max_seq:
            findings.problem(f"{key}={budget} (x sequence parallel {factor}) cannot hold one sequence of "
                             f"{max_seq} tokens (prompt {prompt} + response {response})")
    if train is not None and train.complete and train.rows:
        max_samples = _integer(config, "data.train_max_samples", -1, findings)
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


def _human(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def summary_rows(config, train: DataStats | None, judge: str, ckpt: str, logger_: str) -> list[tuple[str, str]]:
    """The report's table: GPUs, samples/rows/sequences per step, token lengths and estimates, steps,
    checkpoint folder, logger and judge (the last three as the checks described them)."""
    from reward_score.streams import KINDS

    size = StepSizes.read(config)
    gpus, rows, n, prompt, response = size.gpus, size.rows, size.n, size.prompt, size.response
    tp, mini = max(1, size.tp), max(1, size.mini)
    sequences = size.sequences
    if train is not None and train.samples and train.rows:
        rows_per_sample = train.rows / train.samples
        mix = ", ".join(f"{train.kinds[k]} {k}" for k in KINDS if train.kinds.get(k))
        samples = f"~{rows / rows_per_sample:.0f} (train data: {mix} samples, {rows_per_sample:.2f} rows/sample)"
        mean_prompt = train.mean_prompt_tokens
        tokens = f"~{_human(sequences * (mean_prompt + response))} (prompt ~{mean_prompt:.0f} est. + response " \
                 f"<= {response} per sequence; all at max length {_human(sequences * (prompt + response))})"
        steps_per_epoch = size.steps_per_epoch(train)
        epoch = f"{steps_per_epoch} step{'s' if steps_per_epoch != 1 else ''}/epoch ({train.rows} rows)"
    else:
        samples = "? (train data not readable)"
        tokens = f"<= {_human(sequences * (prompt + response))} (all at max length)"
        epoch = "?"
    total = select(config, "trainer.total_training_steps")
    return [
        ("GPUs", f"{gpus} ({size.nnodes} node{'s' if size.nnodes != 1 else ''} x {size.per_node}; rollout TP {tp} -> "
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
