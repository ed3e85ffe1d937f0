"""The preflight's model checks: the model path (a local Hugging Face folder, or a hub id in this
machine's cache), and the model family (`reward_score.families`, the owner of patch size and box frame)
against `ivgr.box_frame`, `data.image_patch_size`, `data.ivgr_box_frame` and the data's images."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from recipe.ivgr.preflight.config import select
from recipe.ivgr.preflight.data import DataStats
from recipe.ivgr.preflight.report import Findings


def check_model(config, findings: Findings) -> None:
    """`actor_rollout_ref.model.path`: a local folder with config.json, or a hub id (cached: a note; else a warning)."""
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
