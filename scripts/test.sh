#!/usr/bin/env bash
# The test command (README and .ci/run call exactly this): creates the CPU test environment in
# .venv-test when missing or when its requirements changed, then runs pytest with any arguments.
# `bash scripts/test.sh --setup` only creates the environment (for the preflight, data_prep, eval).
# CPU stack: torch 2.13.0 (CPU wheel) + verl 0.9.1 + its runtime extras, transformers 5.9.0, no vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${IVGR_TEST_VENV:-.venv-test}
python=${PYTHON:-python3}
stamp="$venv/.installed-$(cat requirements-test.txt pyproject.toml | sha256sum | cut -c1-16)"

quiet_pip() {  # pip, minus this machine's noise about local index folders
    "$venv/bin/pip" install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

if [ ! -f "$stamp" ]; then
    echo "[test.sh] creating $venv (CPU torch + verl 0.9.1; about 2 minutes)" >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    quiet_pip torch==2.13.0          # own line first: takes the local CPU wheel, never CUDA builds
    quiet_pip -r requirements-test.txt
    quiet_pip --no-deps -e .
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi

if [[ "${1:-}" == --setup ]]; then  # the environment only: for the preflight, data_prep and eval commands
    echo "[test.sh] environment ready: use PYTHON=$venv/bin/python for scripts/*.sh, $venv/bin/python -m ... for modules" >&2
    exit 0
fi
exec "$venv/bin/python" -m pytest "$@"
