"""The preflight's checks of what this machine holds: the checkpoint folder and what a run resumes from,
the logger's credentials, the recipe's installation (Ray workers import it by name)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from pathlib import Path

from recipe.ivgr.preflight.config import REPO_ROOT, plain, select
from recipe.ivgr.preflight.report import Findings


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
    """wandb needs credentials in the Ray driver; returns the loggers for the summary."""
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
