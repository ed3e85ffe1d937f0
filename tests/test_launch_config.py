"""Every hyperparameter lives once, in yaml; a launch script names the model, the data and the experiment.

- Each RL launch script's overrides (`--print-overrides`, with no variable set) compose into the paper's
  RL setting. The expected values are the official iVGR code's (Visual-AI/iVGR,
  `examples/config_dual_group_training.yaml` and the 7B launch script `examples/train_iVGR_qwen2_5_VL.sh`,
  which the paper's reported runs used), not read from our yaml.
- With no variable set the scripts pass only the model group, the data, the run's name, folders,
  logger and judge endpoint: no hyperparameter. The shell files hold no hyperparameter value.
- Every documented variable still reaches its key (users' `TRAIN_BATCH_SIZE=...` keeps working).
- The main yaml and the model groups never set the same key (one owner), and the groups cover the same keys.
- The training launch hands the preflight exactly the overrides it hands `recipe.ivgr.main`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CONFIG = ROOT / "recipe" / "ivgr" / "config"
RL_SCRIPTS = {"train_ivgr_7b.sh": "qwen2_5_vl_7b", "train_ivgr_qwen3vl_8b.sh": "qwen3_vl_8b",
              "train_ivgr_32b_multinode.sh": "qwen3_vl_32b"}
SFT_SCRIPTS = ["sft_ivgr_7b.sh", "sft_ivgr_qwen3vl_8b.sh"]
LAUNCH_SHELL = [*RL_SCRIPTS, *SFT_SCRIPTS, "train_ivr_r1_7b.sh", "common.sh", "sft_common.sh"]

# The paper's RL setting, as the official code sets it (examples/config_dual_group_training.yaml, with
# examples/train_iVGR_qwen2_5_VL.sh's overrides: n=5, max_response_length=4096, max_steps=360).
PAPER = {
    "data.train_batch_size": 512,                          # data.rollout_batch_size
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,    # worker.actor.global_batch_size
    "actor_rollout_ref.rollout.n": 5,                      # launch script worker.rollout.n
    "data.max_prompt_length": 8192,                        # data.max_prompt_length
    "data.max_response_length": 4096,                      # launch script data.max_response_length
    "trainer.total_training_steps": 360,                   # launch script trainer.max_steps
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 0.99,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.02,
    "actor_rollout_ref.actor.optim.clip_grad": 1.0,        # worker.actor.max_grad_norm
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.28,
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",  # algorithm.kl_penalty
    "actor_rollout_ref.actor.kl_loss_coef": 0.01,          # algorithm.kl_coef
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
}
# the official 7B run: its model, rollout TP and image bounds (data.min_pixels / data.max_pixels)
PAPER_7B = {
    "actor_rollout_ref.model.path": "allencbzhang/iVGR-Qwen2.5-VL-7B-SFT",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
    "data.ivgr_min_pixels": 3136,
    "data.ivgr_max_pixels": 3211264,
}
# what a launch script may pass with no variable set: the model group, the data, the run's name,
# checkpoint folder and logger, the judge endpoint (pinned so that preflight and run see the same)
NAMING_KEYS = {"model", "data.train_files", "data.val_files", "trainer.experiment_name", "trainer.logger",
               "trainer.default_local_dir", "reward_score.judge.base_url"}
SFT_NAMING_KEYS = {"model.path", "data.train_files", "trainer.experiment_name", "trainer.logger",
                   "trainer.default_local_dir",
                   # no validation files: verl would validate on the last step (sft_trainer.py:417), so off
                   "trainer.test_freq"}


def _env(**extra: str) -> dict[str, str]:
    """The caller's PATH and PYTHON only: none of the variables a user might have set."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHON": os.environ.get("PYTHON", sys.executable)}
    env.update(extra)
    return env


def _overrides(script: str, env: dict[str, str], *args: str) -> list[str]:
    result = subprocess.run(["bash", str(SCRIPTS / script), "--print-overrides", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _leaves(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def _yaml_leaves(path: Path) -> dict[str, object]:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    raw.pop("defaults", None)
    raw.pop("hydra", None)
    return _leaves(raw)


def _env_table(array: str, source: str) -> dict[str, list[str]]:
    """VARIABLE -> keys, from the shell's own table (IVGR_ENV_KEYS / SFT_ENV_KEYS)."""
    command = f'source "{SCRIPTS / source}"; printf "%s\\n" "${{{array}[@]}}"'
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    table = {}
    for line in result.stdout.splitlines():
        variable, keys = line.split(" ", 1)
        table[variable] = keys.split(",")
    return table


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """Each RL script's config, composed from its own overrides with no variable set."""
    from recipe.ivgr.preflight.config import compose_config

    data = tmp_path_factory.mktemp("data")
    out = {}
    for script in RL_SCRIPTS:
        overrides = _overrides(script, _env(DATA_DIR=str(data)))
        out[script] = (overrides, compose_config(overrides))
    return out


@pytest.mark.filterwarnings("ignore:Disabled critic")
def test_each_launch_script_composes_the_papers_setting(composed):
    from recipe.ivgr.main import check_config

    for script, (_, config) in composed.items():
        check_config(config)
        got = {key: OmegaConf.select(config, key) for key in PAPER}
        assert got == PAPER, script
        # one prompt and its response fit in vLLM's context
        rollout = config.actor_rollout_ref.rollout
        assert rollout.max_model_len == PAPER["data.max_prompt_length"] + PAPER["data.max_response_length"]
        assert config.actor_rollout_ref.actor.ppo_max_token_len_per_gpu >= rollout.max_model_len
    config = composed["train_ivgr_7b.sh"][1]
    assert {key: OmegaConf.select(config, key) for key in PAPER_7B} == PAPER_7B


def test_model_groups_select_the_models_facts(composed):
    """Box frame and patch size as each model family's processor defines them (Qwen2.5-VL: 14 px patches,
    absolute pixels of the resized image; Qwen3-VL: 16 px patches, 0-1000 grid), and the checkpoint."""
    from reward_score.frames import get_frame

    expected = {"train_ivgr_7b.sh": ("qwen2_5_vl", 14, "allencbzhang/iVGR-Qwen2.5-VL-7B-SFT", 1),
                "train_ivgr_qwen3vl_8b.sh": ("qwen3_vl", 16, "allencbzhang/iVGR-Qwen3-VL-8B-SFT", 1),
                "train_ivgr_32b_multinode.sh": ("qwen3_vl", 16, "allencbzhang/iVGR-Qwen3-VL-32B-SFT", 2)}
    for script, (frame, patch, path, nnodes) in expected.items():
        config = composed[script][1]
        assert (config.ivgr.box_frame, config.data.image_patch_size) == (frame, patch), script
        assert config.data.ivgr_box_frame == frame and config.reward_score.default_box_frame == frame
        assert get_frame(frame).resize_factor == 2 * patch  # merge 2x2
        assert (config.actor_rollout_ref.model.path, config.trainer.nnodes) == (path, nnodes)


def test_model_groups_restate_the_registrys_facts_unchanged():
    """A model group names its family (`ivgr.box_frame`) and restates two of the registry's facts for verl
    and the reader: the patch size (verl's `data.image_patch_size`) and the default pixel bounds, the
    paper's 4..4,096 image tokens at the family's 2x2-merged patch (28 px: 3,136..3,211,264; 32 px:
    4,096..4,194,304). Each must be the registry's (`reward_score.families`), else the group overrides it."""
    from reward_score.families import get_family

    groups = sorted((CONFIG / "model").glob("*.yaml"))
    assert {g.stem for g in groups} >= set(RL_SCRIPTS.values())
    for group in groups:
        values = OmegaConf.load(group)
        family = get_family(values.ivgr.box_frame)
        assert values.data.image_patch_size == family.patch_size, group.name
        bounds = (values.data.ivgr_min_pixels, values.data.ivgr_max_pixels)
        assert bounds == (family.default_min_pixels, family.default_max_pixels), group.name
        assert bounds == (4 * (2 * family.patch_size) ** 2, 4096 * (2 * family.patch_size) ** 2), group.name


def test_the_preflight_reads_the_launch_scripts_table():
    """The preflight names the variable a user sets (`TRAIN_BATCH_SIZE=...`) from the shell's own table
    (scripts/common.sh `IVGR_ENV_KEYS`, read as text): the same pairs bash expands."""
    from recipe.ivgr.preflight.sizes import launch_variables

    table = _env_table("IVGR_ENV_KEYS", "common.sh")
    assert launch_variables() == {key: variable for variable, keys in table.items() for key in keys}
    assert launch_variables(ROOT / "missing.sh") == {}  # installed without the scripts: plain Hydra keys


def test_scripts_pass_no_hyperparameter(composed):
    for script, model in RL_SCRIPTS.items():
        overrides = composed[script][0]
        assert {_key(o) for o in overrides} <= NAMING_KEYS, script
        assert f"model={model}" in overrides
    for script in SFT_SCRIPTS:
        overrides = _overrides(script, _env(TRAIN_FILES="/data/sft.parquet", CKPT_DIR="/ckpt"))
        assert {_key(o) for o in overrides} <= SFT_NAMING_KEYS, script
        assert "trainer.test_freq=-1" in overrides  # the one value: no validation without validation files
    overrides = _overrides("train_ivr_r1_7b.sh", _env(DATA_DIR="/data"))
    assert {_key(o) for o in overrides} <= {"data.train_files", "data.val_files", "trainer.logger",
                                            "trainer.default_local_dir"}


def test_the_shell_holds_no_hyperparameter_value():
    """No `key=value` for a key the yaml owns, and none of the paper's numbers, in the launch shell files."""
    owned = {}
    for path in [CONFIG / "ivgr_trainer.yaml", CONFIG / "ivgr_sft.yaml",
                 ROOT / "recipe" / "ivr_r1" / "config" / "ivr_r1_trainer.yaml", *(CONFIG / "model").glob("*.yaml")]:
        owned.update(_yaml_leaves(path))
    # the two switches that translate a variable into a value (documented next to them)
    allowed = {"trainer.test_freq=-1", "checkpoint.save_contents=[model,optimizer,extra]"}
    for name in LAUNCH_SHELL:
        text = re.sub(r"<<'PY'[^\n]*\n.*?\nPY\n", "\n", (SCRIPTS / name).read_text(), flags=re.S)  # embedded Python
        code = "\n".join(line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
        for match in re.finditer(r"([A-Za-z_][\w.]*)=([^\s\"')]+)", code):
            if f"{match.group(1)}={match.group(2)}" in allowed or match.group(2).startswith("$"):
                continue  # a documented switch, or the user's variable passed on
            assert match.group(1) not in owned, f"{name}: {match.group(0)} restates a yaml value"
        for number in ("512", "8192", "4096", "24576", "16384", "360", "1e-6", "3211264"):
            assert not re.search(rf"(?<![\w.]){re.escape(number)}(?![\w.])", code), f"{name} states {number}"


def test_every_variable_reaches_its_key(tmp_path, composed):
    """Each variable of the scripts' table, set to a value other than the yaml's, arrives in the config."""
    from recipe.ivgr.preflight.config import compose_config

    table = _env_table("IVGR_ENV_KEYS", "common.sh")
    assert {"TRAIN_BATCH_SIZE", "PPO_MINI_BATCH_SIZE", "ROLLOUT_N", "MAX_PROMPT_LENGTH", "NNODES", "GPUS_PER_NODE",
            "TP", "MAX_TOKENS_PER_GPU", "ACTOR_OFFLOAD", "BOX_FRAME"} <= set(table)
    base = composed["train_ivgr_7b.sh"][1]
    env, expected = {}, {}
    for variable, keys in table.items():
        default = OmegaConf.select(base, keys[0])
        if isinstance(default, bool):
            value = not default
        elif isinstance(default, int):
            value = default + 2
        elif isinstance(default, float):
            value = round(default / 2, 4)
        elif keys[0] == "ivgr.box_frame":
            value = "qwen3_vl"
        else:
            raise AssertionError(f"{variable}: no test value for {keys[0]}={default!r}")
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
        expected.update({key: value for key in keys})
    config = compose_config(_overrides("train_ivgr_7b.sh", _env(DATA_DIR=str(tmp_path), **env)))
    assert {key: OmegaConf.select(config, key) for key in expected} == expected
    assert config.actor_rollout_ref.rollout.max_model_len == (expected["data.max_prompt_length"]
                                                             + expected["data.max_response_length"])
    # the named things: model path, judge, run name and folders
    config = compose_config(_overrides("train_ivgr_7b.sh", _env(
        DATA_DIR=str(tmp_path), MODEL_PATH="org/model", JUDGE_BASE_URL="http://10.0.0.5:8000/v1", JUDGE_MODEL="j",
        PROJECT="p", EXPERIMENT="e", TENSORBOARD_DIR="/tb")))
    assert (config.actor_rollout_ref.model.path, config.reward_score.judge.base_url, config.reward_score.judge.model) == \
        ("org/model", "http://10.0.0.5:8000/v1", "j")
    assert config.trainer.default_local_dir == str(ROOT / "checkpoints" / "p" / "e")
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR == "/tb"


def test_sft_variables_reach_their_keys(tmp_path):
    from recipe.ivgr.sft_preflight import SFT_CONFIG_NAME, compose_config, sft_config_dir

    table = _env_table("SFT_ENV_KEYS", "sft_common.sh")
    base = compose_config(_overrides("sft_ivgr_7b.sh", _env(TRAIN_FILES="/d.parquet", CKPT_DIR=str(tmp_path))),
                          sft_config_dir(), SFT_CONFIG_NAME)
    env, expected = {}, {}
    for variable, keys in table.items():
        default = OmegaConf.select(base, keys[0])
        value = (not default) if isinstance(default, bool) else default + 2 if isinstance(default, int) \
            else round(default / 2, 8) if isinstance(default, float) else "left" if keys[0] == "data.truncation" \
            else None
        assert value is not None, f"{variable}: no test value for {keys[0]}={default!r}"
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
        expected.update({key: value for key in keys})
    config = compose_config(_overrides("sft_ivgr_7b.sh", _env(TRAIN_FILES="/d.parquet", CKPT_DIR=str(tmp_path),
                                                              VAL_FILES="/v.parquet", TEST_FREQ="7", **env)),
                            sft_config_dir(), SFT_CONFIG_NAME)
    assert {key: OmegaConf.select(config, key) for key in expected} == expected
    assert config.trainer.test_freq == 7 and list(config.data.val_files) == ["/v.parquet"]
    assert config.data.max_token_len_per_gpu >= config.data.max_length


def test_one_owner_per_key_and_groups_cover_the_same_keys():
    main = _yaml_leaves(CONFIG / "ivgr_trainer.yaml")
    groups = {path.stem: _yaml_leaves(path) for path in (CONFIG / "model").glob("*.yaml")}
    assert set(groups) >= set(RL_SCRIPTS.values())
    for name, leaves in groups.items():
        assert set(leaves) & set(main) == set(), name  # a model group never restates the recipe
        assert set(leaves) == set(groups["qwen2_5_vl_7b"]), name  # switching model replaces every model fact
        assert (CONFIG / "model" / f"{name}.yaml").read_text().startswith("# @package _global_")


def test_a_model_argument_replaces_the_scripts_model(tmp_path):
    from recipe.ivgr.preflight.config import compose_config

    overrides = _overrides("train_ivgr_7b.sh", _env(DATA_DIR=str(tmp_path)), "model=qwen3_vl_32b")
    assert sum(o.startswith("model=") for o in overrides) == 1
    config = compose_config(overrides)
    assert (config.ivgr.box_frame, config.trainer.nnodes) == ("qwen3_vl", 2)
    result = subprocess.run(["bash", str(SCRIPTS / "train_ivgr_7b.sh"), "--print-overrides", "model=qwen9"],
                            env=_env(DATA_DIR=str(tmp_path)), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "no model group 'qwen9'" in result.stderr and "qwen3_vl_8b" in result.stderr


def test_the_resolver_is_registered_where_verl_resolves_the_config(tmp_path):
    """verl's TaskRunner resolves the whole config in its own process (verl/trainer/main_ppo.py:145); that
    process imports recipe.ivgr.main (the runner class) and nothing else of ours."""
    from recipe.ivgr.preflight.config import compose_config

    config = compose_config(_overrides("train_ivgr_7b.sh", _env(DATA_DIR=str(tmp_path))) +
                            ["data.max_prompt_length=1000"])
    path = tmp_path / "config.yaml"
    OmegaConf.save(config, path)  # unresolved, as the runner receives it
    code = ("import sys; from omegaconf import OmegaConf; import recipe.ivgr.main; "
            "c = OmegaConf.load(sys.argv[1]); OmegaConf.resolve(c); print(c.actor_rollout_ref.rollout.max_model_len)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "5096"


def test_the_launch_hands_the_preflight_what_it_hands_the_trainer(tmp_path):
    """Training mode: the preflight and `recipe.ivgr.main` get the same overrides. `recipe.ivgr.main` needs
    GPUs, so PYTHON is a wrapper that records that one call and runs every other with the real Python."""
    from data_prep.synthetic import main as synthetic

    assert synthetic(["--out", str(tmp_path / "data"), "--num", "40", "--seed", "0", "--quiet"]) == 0
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/usr/bin/env bash\nif [[ "$1 $2" == "-m recipe.ivgr.main" || "$1 $2" == '
                       f'"-m recipe.ivgr.preflight" ]]; then printf "%s\\n" "$@" > "{log}.$2"; fi\n'
                       f'[[ "$1 $2" == "-m recipe.ivgr.main" ]] && exit 0\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    result = subprocess.run(["bash", str(SCRIPTS / "train_ivgr_7b.sh"), "trainer.total_training_steps=2"],
                            env=_env(PYTHON=str(wrapper), DATA_DIR=str(tmp_path / "data"), ENV_CHECK="0",
                                     CKPT_DIR=str(tmp_path / "ckpt"), TRAIN_BATCH_SIZE="32", PPO_MINI_BATCH_SIZE="16"),
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PREFLIGHT OK" in result.stdout
    preflight = Path(f"{log}.recipe.ivgr.preflight").read_text().splitlines()[2:]
    trainer = Path(f"{log}.recipe.ivgr.main").read_text().splitlines()[2:]
    assert preflight == trainer and "trainer.total_training_steps=2" in trainer and "model=qwen2_5_vl_7b" in trainer
