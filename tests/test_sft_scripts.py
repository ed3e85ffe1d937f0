"""scripts/sft_ivgr_*.sh: shell hygiene, `--dry-run` on CPU against verl's own SFT config
(`recipe.ivgr.sft_preflight`), failures caught before torchrun starts, and the final Hugging Face folder
link the RL scripts take as MODEL_PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SFT_SCRIPTS = ["sft_ivgr_7b.sh", "sft_ivgr_qwen3vl_8b.sh"]
FRAME = {"sft_ivgr_7b.sh": "qwen2_5_vl", "sft_ivgr_qwen3vl_8b.sh": "qwen3_vl"}
SHELLCHECK = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRAIN_FILES", "VAL_FILES"))}
    env["PYTHON"] = os.environ.get("PYTHON", sys.executable)
    env.update(extra)
    return env


def _bash(script: str, *args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> dict[str, Path]:
    """16 grounded + 8 textual SFT rows in each box frame, made by data_prep.generic_sft."""
    from data_prep import generic_sft

    base = tmp_path_factory.mktemp("sft_data")
    Image.new("RGB", (800, 600), "white").save(base / "a.png")
    lines = []
    for i in range(24):
        response = (f"<think>The cup <box>[{10 + i},20,{200 + i},300]</box> is red.</think><answer>red</answer>"
                    if i < 16 else "<think>The cup is red.</think><answer>red</answer>")
        lines.append(json.dumps({"id": i, "image": "a.png", "question": f"What colour is cup {i}?",
                                 "response": response}))
    (base / "sft.jsonl").write_text("\n".join(lines) + "\n")
    out = {}
    for frame in FRAME.values():
        out[frame] = base / f"{frame}.parquet"
        assert generic_sft.main(["--input", str(base / "sft.jsonl"), "--out", str(out[frame]), "--box-frame", frame,
                                 "--quiet"]) == 0
    out["base"] = base
    return out


def test_scripts_parse_and_pass_shellcheck():
    paths = [str(SCRIPTS / s) for s in [*SFT_SCRIPTS, "sft_common.sh"]]
    for path in paths:
        result = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    if SHELLCHECK is None:
        pytest.skip("shellcheck not installed")
    result = subprocess.run([SHELLCHECK, "-x", *paths], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SFT_SCRIPTS)
def test_dry_run_passes_on_cpu(script, sft_data, tmp_path):
    result = _bash(script, "--dry-run", env=_env(TRAIN_FILES=str(sft_data[FRAME[script]]), CKPT_DIR=str(tmp_path),
                                                 TRAIN_BATCH_SIZE="8"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PREFLIGHT OK" in result.stdout
    assert "24 {'grounded': 16, 'textual': 8}" in result.stdout
    # 24 rows over 8 ranks = 3 per rank, 1 per rank per step: 3 steps per epoch x 2 epochs
    assert "steps            6 (3 per epoch x 2 epochs)" in result.stdout
    assert f"RL MODEL_PATH    {tmp_path}/hf_final (-> global_step_6/huggingface" in result.stdout


def test_script_defaults_compose_and_validate_as_verl_builds_them(sft_data, tmp_path):
    """The defaults compose into the SFT config the launch runs (recipe/ivgr/config/ivgr_sft.yaml on verl's
    sft_trainer_engine.yaml) and build verl's dataclasses."""
    from verl.utils.config import omega_conf_to_dataclass

    from recipe.ivgr.sft_preflight import SFT_CONFIG_NAME, compose_config, sft_config_dir

    for script in SFT_SCRIPTS:
        result = _bash(script, "--print-overrides", env=_env(TRAIN_FILES=str(sft_data[FRAME[script]]),
                                                             CKPT_DIR=str(tmp_path)))
        assert result.returncode == 0, result.stderr
        config = compose_config(result.stdout.splitlines(), sft_config_dir(), SFT_CONFIG_NAME)
        optim = omega_conf_to_dataclass(config.optim)
        engine = omega_conf_to_dataclass(config.engine)
        checkpoint = omega_conf_to_dataclass(config.checkpoint)
        assert optim.lr == 1e-5 and optim.lr_scheduler_type == "cosine"
        assert engine.strategy == "fsdp" and "hf_model" in checkpoint.save_contents
        assert "hf_model" not in checkpoint.load_contents
        assert config.data.train_batch_size == 128 and config.trainer.n_gpus_per_node == 8
        assert config.data.max_token_len_per_gpu >= config.data.max_length
        assert config.data.train_files == [str(sft_data[FRAME[script]])]
        assert config.trainer.default_local_dir == str(tmp_path)


def test_problems_stop_the_launch_before_torchrun(sft_data, tmp_path):
    # Qwen3-VL script on data prepared in the Qwen2.5-VL frame; batch larger than the data
    result = _bash("sft_ivgr_qwen3vl_8b.sh", env=_env(TRAIN_FILES=str(sft_data["qwen2_5_vl"]), CKPT_DIR=str(tmp_path),
                                                       TRAIN_BATCH_SIZE="32"))
    assert result.returncode == 1
    assert "do not match the model family qwen3_vl" in result.stdout
    assert "make no full batch of 32" in result.stdout
    assert "preflight found problems" in result.stderr and "torch.distributed.run" not in result.stderr


@pytest.mark.parametrize("script", SFT_SCRIPTS)
def test_no_train_files_trains_on_the_synthetic_sets_sft_rows(script, tmp_path):
    """No TRAIN_FILES: the synthetic set (the RL script's default data) is prepared with its SFT rows in the
    script's box frame, and the preflight passes on them (verl's config, dataclasses, data checks)."""
    data = tmp_path / "data"
    result = _bash(script, "--dry-run", env=_env(CKPT_DIR=str(tmp_path / "ckpt"), DATA_DIR=str(data),
                                                 SYNTHETIC_NUM="40", TRAIN_BATCH_SIZE="8"), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PREFLIGHT OK" in result.stdout
    rows = pq.read_table(data / "sft_train.parquet", columns=["stream", "box_frame"]).to_pylist()
    assert len(rows) == 2 * 36 and {r["box_frame"] for r in rows} == {FRAME[script]}  # 36 train samples x 2 streams
    assert "72 {'grounded': 36, 'textual': 36}" in result.stdout
    again = _bash(script, "--print-overrides", env=_env(CKPT_DIR=str(tmp_path / "ckpt"), DATA_DIR=str(data)))
    assert f"data.train_files=['{data / 'sft_train.parquet'}']" in again.stdout.splitlines()


def test_zero_rows_are_refused_with_the_variable_to_change(tmp_path):
    import pyarrow as pa

    from data_prep.sft import SFT_SCHEMA

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=SFT_SCHEMA), empty)
    result = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES=str(empty), CKPT_DIR=str(tmp_path)))
    assert result.returncode == 1, result.stdout
    assert "PREFLIGHT OK" not in result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM") and "0 rows" in line]
    assert problems and "TRAIN_FILES" in problems[0]


def test_too_few_rows_for_one_batch_name_the_batch_variable(sft_data, tmp_path):
    result = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES=str(sft_data["qwen2_5_vl"]),
                                                           CKPT_DIR=str(tmp_path), TRAIN_BATCH_SIZE="64"))
    assert result.returncode == 1 and "make no full batch of 64" in result.stdout
    assert "TRAIN_BATCH_SIZE" in result.stdout


def test_missing_and_wrong_inputs(sft_data, tmp_path):
    from data_prep import synthetic

    relative = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES="x.parquet", CKPT_DIR="ckpt"))
    assert relative.returncode == 1 and "CKPT_DIR must be an absolute path" in relative.stderr
    assert synthetic.main(["--out", str(tmp_path / "rl"), "--num", "10", "--quiet"]) == 0
    files = f"{tmp_path / 'nope.parquet'},{tmp_path / 'rl' / 'train.parquet'}"
    result = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES=files, CKPT_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "nope.parquet does not exist" in result.stdout
    assert "train.parquet is not an SFT Parquet" in result.stdout


def test_local_model_folder_is_loaded_by_verl(sft_data, tmp_path):
    """BASE_MODEL as a local folder: verl's HFModelConfig loads it (config + tokenizer) in the dry-run, and the
    family comes from its config.json."""
    from eval_helpers import tiny_qwen

    model, processor = tiny_qwen()
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)
    ok = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES=str(sft_data["qwen2_5_vl"]), BASE_MODEL=str(folder),
                                                       CKPT_DIR=str(tmp_path / "ckpt"), TRAIN_BATCH_SIZE="8"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"model: {folder}" in ok.stdout
    wrong = _bash("sft_ivgr_7b.sh", "--dry-run", env=_env(TRAIN_FILES=str(sft_data["qwen3_vl"]), BASE_MODEL=str(folder),
                                                          CKPT_DIR=str(tmp_path / "ckpt"), TRAIN_BATCH_SIZE="8"))
    assert wrong.returncode == 1 and "do not match the model family qwen2_5_vl" in wrong.stdout


def test_finish_links_the_last_hf_folder(tmp_path):
    """After torchrun: hf_final points at the tracker's global_step_N/huggingface (what the RL script takes)."""
    step = tmp_path / "global_step_7" / "huggingface"
    step.mkdir(parents=True)
    (step / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (step / "model.safetensors").write_bytes(b"")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("7")
    command = (f"source {SCRIPTS / 'sft_common.sh'}; CKPT_DIR={tmp_path}; RL_SCRIPT=train_ivgr_7b.sh; "
               f"IVGR_SCRIPT=sft_ivgr_7b.sh; sft_finish")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(tmp_path / "hf_final") == str(step.resolve())
    assert f"MODEL_PATH={tmp_path}/hf_final bash scripts/train_ivgr_7b.sh" in result.stderr
