"""Every key the recipe yaml and the launch scripts set must be one that something reads.

verl 0.9.1 accepts keys that nothing reads any more (`actor.grad_clip`, whose engine reads
`optim.clip_grad`; `actor.freeze_vision_tower`): a setting there composes, validates and does
nothing. The consumer of a key is found in the code that would read it: verl's package outside its
config definitions (`verl/trainer/config/`, `verl/workers/config/`, where a field is declared, not
used) for verl keys, and the recipe's own packages for `ivgr.*`, `ivr_r1.*`, `reward_score.*` and the dataset's
`data.ivgr_*` keys.
A key counts as read when its name appears as an attribute, a subscript or a `.get("name")`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
import verl
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
VERL = Path(verl.__file__).parent
DECLARATIONS = (VERL / "trainer" / "config", VERL / "workers" / "config")
RECIPE_PACKAGES = [ROOT / "recipe", ROOT / "reward_score", ROOT / "data_prep"]
# passed through wholesale, not read key by key (Ray's runtime env; Hydra's own section)
OPAQUE_PREFIXES = ("ray_kwargs.ray_init.runtime_env.env_vars.", "hydra.")


@lru_cache(maxsize=None)
def _sources(roots: tuple[Path, ...], excluded: tuple[Path, ...] = ()) -> str:
    texts = []
    for root in roots:
        for path in root.rglob("*.py"):
            if not any(path.is_relative_to(e) for e in excluded):
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def _is_read(name: str, source: str) -> bool:
    quoted = rf"""["']{re.escape(name)}["']"""
    pattern = rf"""\.{re.escape(name)}\b|\[\s*{quoted}\s*\]|get\(\s*{quoted}|getattr\([^,()]+,\s*{quoted}"""
    return re.search(pattern, source) is not None


def _consumer(key: str) -> tuple[str, str]:
    """(who reads it, their source) for a dotted key."""
    leaf = key.rsplit(".", 1)[-1]
    if key.startswith(("ivgr.", "ivr_r1.", "reward_score.")) or leaf.startswith("ivgr_") or key == "data.image_root":
        return "the recipe", _sources(tuple(RECIPE_PACKAGES))
    return "verl 0.9.1", _sources((VERL,), DECLARATIONS)


def _leaves(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            out += _leaves(v, f"{prefix}{k}.")
        return out or [prefix.rstrip(".")]
    return [prefix.rstrip(".")]


def _yaml_keys(path: Path) -> list[str]:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    raw.pop("defaults", None)
    raw.pop("hydra", None)
    return _leaves(raw)


def _script_keys(script: str, tmp_path: Path) -> list[str]:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CKPT_DIR": str(tmp_path / "ckpt"),
           "DATA_DIR": str(tmp_path / "data"), "TRAIN_FILES": str(tmp_path / "train.parquet")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / script), "--print-overrides"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    keys = [line.split("=", 1)[0].lstrip("+~") for line in result.stdout.splitlines() if "=" in line]
    # `model=<name>` selects a config group (recipe/ivgr/config/model/): a choice, not a key
    return [key for key in keys if not (ROOT / "recipe" / "ivgr" / "config" / key).is_dir()]


def _unread(keys: list[str]) -> list[str]:
    missing = []
    for key in keys:
        if key.startswith(OPAQUE_PREFIXES):
            continue
        who, source = _consumer(key)
        if not _is_read(key.rsplit(".", 1)[-1], source):
            missing.append(f"{key} (nothing in {who} reads '{key.rsplit('.', 1)[-1]}')")
    return missing


RECIPE_YAMLS = ["recipe/ivgr/config/ivgr_trainer.yaml", "recipe/ivr_r1/config/ivr_r1_trainer.yaml",
                "recipe/ivgr/config/ivgr_sft.yaml",
                *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipe/ivgr/config/model").glob("*.yaml"))]


def test_the_model_groups_are_checked():
    assert {Path(p).stem for p in RECIPE_YAMLS if "/model/" in p} >= {"qwen2_5_vl_7b", "qwen3_vl_8b", "qwen3_vl_32b"}


@pytest.mark.parametrize("yaml_path", RECIPE_YAMLS)
def test_every_recipe_yaml_key_is_read(yaml_path):
    assert _unread(_yaml_keys(ROOT / yaml_path)) == []


@pytest.mark.parametrize("script", ["train_ivgr_7b.sh", "train_ivgr_qwen3vl_8b.sh", "train_ivgr_32b_multinode.sh",
                                    "train_ivr_r1_7b.sh", "sft_ivgr_7b.sh", "sft_ivgr_qwen3vl_8b.sh"])
def test_every_launch_script_key_is_read(script, tmp_path):
    assert _unread(_script_keys(script, tmp_path)) == []


def test_the_check_catches_keys_verl_no_longer_reads():
    # two keys verl 0.9.1 declares but never reads (the engine clips with optim.clip_grad,
    # verl/workers/engine/fsdp/transformer_impl.py:806; freeze_vision_tower: verl/workers/config/actor.py:161
    # only); a check that passes them would prove nothing
    assert len(_unread(["actor_rollout_ref.actor.grad_clip", "actor_rollout_ref.actor.freeze_vision_tower"])) == 2
    assert _unread(["actor_rollout_ref.actor.optim.clip_grad", "actor_rollout_ref.rollout.gpu_memory_utilization"]) == []
