"""Integrity checks that stop a run from training on, or resuming from, something broken.

- `check_step_batch`: the step stage sees every real row of a step before the update; a batch with
  rows or rollouts missing (a reward or agent-loop worker died: verl's sync replay buffer keeps a
  failed group sampleable and pads the missing trajectories downstream, `trainer/ppo/v1/replay_buffer.py`
  ~113) or with one stream of a grounded pair missing is refused with the counts (`IncompleteStepError`).
- `verify_checkpoint`: the files a `global_step_N` folder must hold for verl to resume from it
  (`trainer/ppo/v1/trainer_base.py` `_load_checkpoint` ~850: `actor/`, optional critic, `data.pt`;
  `utils/checkpoint/fsdp_checkpoint_manager.py` `save_checkpoint` ~272: per rank
  `model_/optim_/extra_state_world_size_{W}_rank_{r}.pt`, `fsdp_config.json` with the world size,
  `huggingface/config.json`), each `.pt` a complete torch zip archive (a truncated file has no end
  of central directory: verl's load then fails with "checkpoint file is corrupted"), plus the
  recipe's `ivgr_stages.json` when present.
- `resume_target`: which folder `trainer.resume_mode` would load, verified; the trainer and the
  preflight both ask it.

Only the standard library: the preflight imports this without verl or torch.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"  # verl's name (utils/checkpoint/checkpoint_manager.py ~255)
STAGE_STATE = "ivgr_stages.json"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")
_SHARD = re.compile(r"^(model|optim|extra_state)_world_size_(\d+)_rank_(\d+)\.pt$")


# --------------------------------------------------------------------------- step batches
class IncompleteStepError(RuntimeError):
    """A step's batch is not what the step fetched: refused before any update."""


@dataclass
class StepCounts:
    """What one step's real rows hold against what it fetched (rows = prompts = GRPO groups)."""

    rows_expected: int
    rollouts_per_row: int
    rows: int = 0
    rollouts: int = 0
    short_rows: dict[str, int] = field(default_factory=dict)  # uid -> rollouts found (< n)
    long_rows: dict[str, int] = field(default_factory=dict)  # uid -> rollouts found (> n)
    lone_streams: dict[str, str] = field(default_factory=dict)  # sample_id -> the only stream present

    @property
    def complete(self) -> bool:
        return (self.rows == self.rows_expected and not self.short_rows and not self.long_rows
                and not self.lone_streams)

    def describe(self) -> str:
        expected = self.rows_expected * self.rollouts_per_row
        parts = [f"{self.rollouts} of {expected} rollouts ({self.rows} of {self.rows_expected} rows x "
                 f"rollout.n {self.rollouts_per_row})"]
        if self.short_rows:
            examples = ", ".join(f"{u}: {c}/{self.rollouts_per_row}" for u, c in list(self.short_rows.items())[:3])
            parts.append(f"{len(self.short_rows)} rows with missing rollouts (e.g. {examples})")
        if self.long_rows:
            examples = ", ".join(f"{u}: {c}" for u, c in list(self.long_rows.items())[:3])
            parts.append(f"{len(self.long_rows)} rows with more than rollout.n rollouts (e.g. {examples})")
        if self.lone_streams:
            examples = ", ".join(f"{s}: {stream} only" for s, stream in list(self.lone_streams.items())[:3])
            parts.append(f"{len(self.lone_streams)} grounded samples with one stream missing (e.g. {examples})")
        return "; ".join(parts)


def count_step(keys: Sequence[str], extra_infos: Sequence[dict], rows_expected: int, rollouts_per_row: int,
               paired: bool) -> StepCounts:
    """Counts of a step's real rows. `keys` are verl's trajectory keys `{uid}_{session}_{index}`
    (`trainer/ppo/v1/agent_loop_tq.py`); a uid is one dataset row, a session one rollout of it.
    `paired`: both streams are trained, so every grounded sample must bring both of its rows."""
    counts = StepCounts(rows_expected=int(rows_expected), rollouts_per_row=int(rollouts_per_row))
    sessions: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        uid, session = (str(key).split("_") + [""])[:2]
        sessions[uid].add(session)
    counts.rows = len(sessions)
    counts.rollouts = sum(len(s) for s in sessions.values())
    for uid, found in sessions.items():
        if len(found) < rollouts_per_row:
            counts.short_rows[uid] = len(found)
        elif len(found) > rollouts_per_row:
            counts.long_rows[uid] = len(found)
    if paired:
        streams: dict[str, set[str]] = defaultdict(set)
        for info in extra_infos:
            info = info or {}
            if info.get("kind") == "grounded" and info.get("stream") in ("grounded", "textual"):
                streams[str(info.get("sample_id"))].add(str(info["stream"]))
        counts.lone_streams = {sid: next(iter(s)) for sid, s in streams.items() if len(s) == 1}
    return counts


def check_step_batch(keys: Sequence[str], extra_infos: Sequence[dict], rows_expected: int, rollouts_per_row: int,
                     paired: bool, step: int) -> StepCounts:
    """`count_step`, raising `IncompleteStepError` (with the counts) unless the batch is complete."""
    counts = count_step(keys, extra_infos, rows_expected, rollouts_per_row, paired)
    if not counts.complete:
        raise IncompleteStepError(
            f"step {step} refused before the update: its batch is incomplete: {counts.describe()}. A reward or "
            "agent-loop worker most likely died (see the errors above); verl would pad the missing rollouts with "
            "copies and train on the rest (a group of one gets its raw score as advantage). Nothing of this step "
            "was trained: restart the run, it resumes from the last complete checkpoint.")
    return counts


# --------------------------------------------------------------------------- checkpoints
def _complete_torch_file(path: Path) -> str | None:
    """None when `path` is a complete torch.save zip archive, else why not."""
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path.name} missing"
    if size == 0:
        return f"{path.name} is empty"
    try:
        with zipfile.ZipFile(path) as archive:  # reads the central directory at the file's end
            if not archive.namelist():
                return f"{path.name} holds nothing"
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        return f"{path.name} is incomplete or not a torch checkpoint ({type(err).__name__})"
    return None


def _verify_fsdp_folder(folder: Path, role: str) -> list[str]:
    """Problems of one verl FSDP checkpoint folder (`actor/` or `critic/`)."""
    if not folder.is_dir():
        return [f"{role}/ missing"]
    problems = []
    config_path = folder / "fsdp_config.json"
    try:
        world = int(json.loads(config_path.read_text())["world_size"])
    except (OSError, ValueError, KeyError, TypeError):
        world = None
        problems.append(f"{role}/fsdp_config.json missing or unreadable (verl writes it after the shards)")
    shards: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for path in folder.iterdir():
        match = _SHARD.match(path.name)
        if match:
            shards[match.group(1)].add((int(match.group(2)), int(match.group(3))))
    if "model" not in shards:
        problems.append(f"{role}/: no model_world_size_*_rank_*.pt (model weights)")
    for kind, found in sorted(shards.items()):
        worlds = {w for w, _ in found}
        if world is not None and worlds != {world}:
            problems.append(f"{role}/: {kind} shards for world sizes {sorted(worlds)}, fsdp_config.json says {world}")
            continue
        size = world if world is not None else max(worlds)
        missing = [r for r in range(size) if (size, r) not in found]
        if missing:
            problems.append(f"{role}/: {kind} shards of ranks {missing[:8]} missing (world size {size})")
        for w, r in sorted(found):
            why = _complete_torch_file(folder / f"{kind}_world_size_{w}_rank_{r}.pt")
            if why:
                problems.append(f"{role}/{why}")
    if not (folder / "huggingface" / "config.json").is_file():
        problems.append(f"{role}/huggingface/config.json missing")
    return problems


def verify_checkpoint(folder: str | os.PathLike, critic: bool = False) -> list[str]:
    """Why verl could not resume from the `global_step_N` folder (empty list: complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} does not exist"]
    problems = _verify_fsdp_folder(folder / "actor", "actor")
    if critic:
        problems += _verify_fsdp_folder(folder / "critic", "critic")
    why = _complete_torch_file(folder / "data.pt")
    if why:
        problems.append(f"{why} (dataloader state)")
    stage = folder / STAGE_STATE
    if stage.exists():
        try:
            json.loads(stage.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"{STAGE_STATE} unreadable (rollout archive)")
    return problems


def step_folders(root: str | os.PathLike) -> dict[int, Path]:
    """{step: folder} of the `global_step_N` folders under `root`."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def read_tracker(root: str | os.PathLike) -> int | None | str:
    """The step verl's tracker file names; None when there is none; a string when it is unreadable."""
    path = Path(root) / TRACKER
    if not path.exists():
        return None
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return f"{TRACKER} is unreadable ({path.read_bytes()[:20]!r})"


def write_tracker(root: str | os.PathLike, step: int) -> None:
    """Point verl's tracker at `step`, atomically (write + rename)."""
    path = Path(root) / TRACKER
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(int(step)))
    os.replace(tmp, path)


@dataclass
class ResumeTarget:
    """What `trainer.resume_mode` will load: `folder` (None = train from scratch), the checkpoint the
    tracker named when it was skipped (`skipped`, with its `problems`), or `error` (refuse to start)."""

    folder: Path | None = None
    skipped: Path | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None


def resume_target(mode: str, root: str | os.PathLike, resume_path: str | None = None,
                  critic: bool = False) -> ResumeTarget:
    """The verified checkpoint a run with these settings resumes from.

    `resume_path`: the folder must be complete, else `error`. `auto`: the folder verl's tracker names;
    when it is incomplete (a crash inside the save window, a tracker without its folder) the newest
    complete `global_step_N` instead (`skipped` says which was passed over and why); `error` when the
    tracker exists but no complete checkpoint does (training from scratch there would overwrite them).
    """
    if mode == "disable":
        return ResumeTarget()
    if mode == "resume_path":
        if not resume_path:
            return ResumeTarget(error="trainer.resume_mode=resume_path needs trainer.resume_from_path")
        if not Path(resume_path).is_dir():
            return ResumeTarget(error=f"trainer.resume_from_path={resume_path} does not exist")
        problems = verify_checkpoint(resume_path, critic)
        if problems:
            return ResumeTarget(error=f"trainer.resume_from_path={resume_path} is not a complete checkpoint: "
                                      f"{'; '.join(problems[:4])}", problems=problems)
        return ResumeTarget(folder=Path(resume_path))
    tracked = read_tracker(root)
    folders = step_folders(root)
    if tracked is None:
        return ResumeTarget()
    named = folders.get(tracked) if isinstance(tracked, int) else None
    if isinstance(tracked, int) and named is None:
        problems = [f"global_step_{tracked} does not exist"]
    elif isinstance(tracked, str):
        problems = [tracked]
    else:
        problems = verify_checkpoint(named, critic)
        if not problems:
            return ResumeTarget(folder=named)
    skipped = named if named is not None else Path(root) / f"global_step_{tracked}"
    limit = tracked if isinstance(tracked, int) else None
    for step in sorted(folders, reverse=True):
        if limit is not None and step >= limit:
            continue
        if not verify_checkpoint(folders[step], critic):
            return ResumeTarget(folder=folders[step], skipped=skipped, problems=problems)
    return ResumeTarget(skipped=skipped, problems=problems, error=(
        f"{root}: {TRACKER} names {skipped.name}, which is incomplete ({'; '.join(problems[:3])}), and no "
        "complete checkpoint is left to resume from; starting from scratch there would overwrite it: move the "
        "folder away, or set trainer.resume_mode=disable / another CKPT_DIR"))
