"""What a CPU smoke run wrote (scripts/smoke_cpu.sh), read back for `recipe.cpu_backend.smoke_report`:
its console logs (run1.log / run2.log / sft.log) line by line into a `RunLog` (verl's console logger lines
`step:N - key:value - ...`, the hf_cpu rollout server's weight lines, the actor's weight lines of
`recipe.cpu_backend.weights.WeightChangeTracker`, the trainer's stage-restored line, the launch script's
command echo, tracebacks: during training errors, after verl's last trainer line teardown), and the
sample ids of its rollout dumps with the pair sampler's plan they are compared with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STEP_LINE = re.compile(r"(?:^|\s)step:(\d+) - (.*)$")
_NUMPY_SCALAR = re.compile(r"np\.\w+\(([^()]*)\)")  # np.float64(0.5), np.int64(3) -> the value inside
_NUMBER = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)")
_FLOAT = r"([-+]?(?:[\d.]+(?:e[-+]?\d+)?|nan|inf))"
_UPDATE = re.compile(r"weights update (\d+) \(step (\S+)\): (\d+) tensors, (\d+) not sent, "
                     rf"fingerprint {_FLOAT} -> {_FLOAT}")
_GENERATING = re.compile(rf"generating with weights version (\d+) \(step (\S+)\), fingerprint {_FLOAT}")
_ACTOR_DELTA = re.compile(rf"L2 change since the last update {_FLOAT}")
_COMMAND_OVERRIDE = re.compile(r"^\s+(data\.train_batch_size|data\.seed)=(\S+?)\s*\\?$")
_SENT = re.compile(rf"actor weights sent: update (\d+) \(step (\S+)\), fingerprint {_FLOAT} over (\d+) tensors")
_RESTORED = re.compile(r"stage state restored from .* at step (\d+): rollout archive of (\d+) references")


@dataclass
class RunLog:
    """One console log's evidence (fingerprints are `weight_fingerprint` values)."""

    settings: dict[str, str] = field(default_factory=dict)  # data.train_batch_size / data.seed the launch used
    steps: dict[int, dict[str, float]] = field(default_factory=dict)
    updates: list[tuple[int, float, float]] = field(default_factory=list)    # (version, before, after)
    generations: list[tuple[int, float]] = field(default_factory=list)        # (version, fingerprint)
    actor_deltas: list[float] = field(default_factory=list)
    sent: list[tuple[int, str, float]] = field(default_factory=list)          # (update, step, fingerprint)
    restored: list[tuple[int, int]] = field(default_factory=list)             # (step, archive size)
    errors: list[str] = field(default_factory=list)
    # tracebacks after the trainer's last line ("Final validation metrics", verl trainer_base.py ~525, printed
    # after the last step's checkpoint): process teardown, e.g. vLLM's engine core killed by Ray at exit
    # (AsyncLLM output_handler EngineDeadError); shown in the report, not a failed run
    teardown_errors: list[str] = field(default_factory=list)


def _value(text: str) -> float | None:
    match = _NUMBER.search(_NUMPY_SCALAR.sub(r"\1", text.strip()))
    return float(match.group(0)) if match else None


def parse_log(path: Path) -> RunLog:
    """The console log at `path` (an empty RunLog when the file is missing)."""
    out = RunLog()
    if not path.exists():
        return out
    finished = False
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = _ANSI.sub("", raw)
        if "Final validation metrics:" in line:
            finished = True
        if match := _STEP_LINE.search(line):
            metrics = {}
            for part in match.group(2).split(" - "):
                key, _, value = part.partition(":")
                number = _value(value)
                if key and number is not None:
                    metrics[key.strip()] = number
            out.steps[int(match.group(1))] = metrics
        elif match := _UPDATE.search(line):
            out.updates.append((int(match.group(1)), float(match.group(5)), float(match.group(6))))
        elif match := _GENERATING.search(line):
            out.generations.append((int(match.group(1)), float(match.group(3))))
        elif match := _SENT.search(line):
            out.sent.append((int(match.group(1)), match.group(2), float(match.group(3))))
        elif match := _ACTOR_DELTA.search(line):
            out.actor_deltas.append(float(match.group(1)))
        elif match := _RESTORED.search(line):
            out.restored.append((int(match.group(1)), int(match.group(2))))
        elif match := _COMMAND_OVERRIDE.match(line):
            out.settings[match.group(1)] = match.group(2)  # the launch script's command echo: last one wins
        elif any(text in line for text in ("weights update", "generating with weights", "L2 change since",
                                           "actor weights sent")):
            out.errors.append(f"unparsed weight line: {line.strip()[:200]}")
        elif "Traceback (most recent call last)" in line or "Error executing job" in line:
            (out.teardown_errors if finished else out.errors).append(line.strip())
    return out


def dumped_sample_ids(folder: Path, step: int) -> list[str]:
    """The distinct sample ids of `folder/step_<step>.jsonl` (a rollout dump), in order of appearance."""
    path = folder / f"step_{step}.jsonl"
    if not path.exists():
        return []
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line)["sample_id"]
        if sample not in ids:
            ids.append(sample)
    return ids


def planned_sample_ids(data_file: Path, batch_size: int, seed: int, steps: int) -> list[list[str]]:
    """Sample ids of the first `steps` batches as the recipe's pair sampler plans them (every stream
    enabled, the dataset's row layout `recipe.ivgr.sampler.row_layout`)."""
    import pyarrow.parquet as pq

    from recipe.ivgr.sampler import PairBatchSampler, row_layout
    from reward_score.streams import STREAMS

    table = pq.read_table(data_file, columns=["sample_id", "kind"]).to_pylist()
    items, units = row_layout([r["kind"] for r in table], STREAMS)
    rows = [table[sample]["sample_id"] for sample, _ in items]
    sampler = PairBatchSampler(units, batch_size=batch_size, seed=seed)
    epochs = -(-steps // max(1, len(sampler) // batch_size))
    order = [index for epoch in range(epochs) for index in sampler.plan(epoch)]
    batches = []
    for b in range(steps):
        ids = []
        for index in order[b * batch_size:(b + 1) * batch_size]:
            if rows[index] not in ids:
                ids.append(rows[index])
        batches.append(ids)
    return batches
