#!/usr/bin/env bash
# GPU node install (CUDA 13 driver, 8x A100/H100): verl 0.9.1's stack with pip, in the one order
# that works, then the environment check. Versions come from constraints-gpu.txt.
#
#   bash scripts/install_gpu.sh                  # install into $PYTHON (default python3; use a venv)
#   bash scripts/install_gpu.sh --print          # the commands it would run now, nothing installed
#   bash scripts/install_gpu.sh --deps-only      # steps 1-3 (the Dockerfile's cached layer)
#   bash scripts/install_gpu.sh --allow-no-gpu   # check passes without a visible GPU (image builds)
#
# 1. torch / torchvision / torchaudio, the CUDA build, from the PyTorch index (skipped when present)
# 2. flash-attn without build isolation (its build imports torch): the prebuilt wheel for this
#    torch / CUDA / Python if one is published, else a source build (skipped when present)
# 3. requirements.txt (verl[vllm,fsdp], vllm, transformers, ...; pip keeps what already matches)
# 4. pip install -e . (the recipe: Ray workers import it by name)
# 5. python -m recipe.ivgr.preflight --env (imports every package, versions next to the pins)
#
# Re-running installs only what is missing or at another version. Variables:
#   PYTHON                 interpreter to install into (default python3)
#   TORCH_INDEX_URL        default: the `# torch-index:` line of constraints-gpu.txt
#   FLASH_ATTN_WHEEL       a flash-attn wheel (URL or file) to use instead of the published one
#   FLASH_ATTN_WHEEL_BASE  where prebuilt wheels are published (default: mjun0812's releases, the
#                          wheel verl's own uv install uses)
#   FLASH_ATTN_SOURCE=1    skip the prebuilt wheel, build from source
#   FLASH_ATTN_REINSTALL=1 reinstall flash-attn even when its version matches (built for another torch)
#   MAX_JOBS               parallel compile jobs of a source build (default: free RAM / 6 GB, <= cores)
#   FLASH_ATTN_CUDA_ARCHS  GPU architectures of a source build (default "80;90": A100, H100)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
PINS=constraints-gpu.txt
FLASH_ATTN_WHEEL_BASE=${FLASH_ATTN_WHEEL_BASE:-https://github.com/mjun0812/flash-attention-prebuild-wheels/releases/download/v0.9.4}

PRINT=0 DEPS_ONLY=0 CHECK_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --print) PRINT=1 ;;
        --deps-only) DEPS_ONLY=1 ;;
        --allow-no-gpu) CHECK_ARGS+=(--allow-no-gpu) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 0 ;;
        *) echo "[install_gpu] unknown option: $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[install_gpu] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Run a command, or only print it with --print.
run() {
    if [[ "$PRINT" == 1 ]]; then printf '%s\n' "$*"; return 0; fi
    log "+ $*"
    "$@"
}
pip_install() { run "$PYTHON" -m pip install --disable-pip-version-check "$@"; }
# The pins and the installed versions, through the check module (standard library only).
pin() { "$PYTHON" -m recipe.ivgr.envcheck --pin "$1"; }
installed() { "$PYTHON" -m recipe.ivgr.envcheck --installed "$1"; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no Python '$PYTHON' (set PYTHON=/path/to/venv/bin/python)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (python3 -m venv .venv && PYTHON=.venv/bin/python)"
TORCH=$(pin torch) CUDA_TAG=$(pin torch-cuda) FLASH_ATTN=$(pin flash-attn)
TORCH_INDEX_URL=${TORCH_INDEX_URL:-$(pin torch-index)}

# ---- 1. torch, the CUDA build ----------------------------------------------------------------
torch_specs=() torch_changed=0
for dist in torch torchvision torchaudio; do
    torch_specs+=("$dist==$(pin "$dist")+$CUDA_TAG")
done
if torch_now=$("$PYTHON" -m recipe.ivgr.envcheck --torch-ready); then
    log "1/5 $torch_now present (skipped)"
else
    log "1/5 torch: $torch_now -> ${torch_specs[*]} from $TORCH_INDEX_URL"
    pip_install "${torch_specs[@]}" --index-url "$TORCH_INDEX_URL"
    torch_changed=1
fi

# ---- 2. flash-attn, without build isolation ----------------------------------------------------
flash_now=$(installed flash-attn)
if [[ "${flash_now%%+*}" == "$FLASH_ATTN" && "$torch_changed" == 0 && "${FLASH_ATTN_REINSTALL:-0}" != 1 ]]; then
    log "2/5 flash-attn $flash_now present (skipped)"
else
    reinstall=()
    [[ -n "$flash_now" ]] && reinstall=(--force-reinstall --no-deps)  # torch changed under it, or asked for
    # flash_attn-2.8.3+cu130torch2.11-cp312-cp312-linux_x86_64.whl: this torch minor, CUDA tag, Python and platform
    py_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    platform=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
    wheel=${FLASH_ATTN_WHEEL:-$FLASH_ATTN_WHEEL_BASE/flash_attn-$FLASH_ATTN+${CUDA_TAG}torch${TORCH%.*}-$py_tag-$py_tag-$platform.whl}
    log "2/5 flash-attn ${flash_now:-none} -> $FLASH_ATTN: prebuilt wheel $wheel"
    if [[ "${FLASH_ATTN_SOURCE:-0}" != 1 ]] \
            && pip_install --no-build-isolation "${reinstall[@]}" -c "$PINS" "$wheel"; then
        :
    else
        # Source build: needs nvcc of CUDA 13; about 20-30 min on a 32-core box (verl's install docs), 3-5 min
        # on 64 cores (flash-attn's README), hours without ninja; each compile job takes several GB of RAM,
        # so MAX_JOBS follows free memory.
        [[ "${FLASH_ATTN_SOURCE:-0}" == 1 ]] || log "no prebuilt wheel could be installed: building flash-attn $FLASH_ATTN from source"
        nvcc=$(command -v nvcc || true)
        [[ -z "$nvcc" && -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]] && nvcc=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
        [[ -n "$nvcc" || "$PRINT" == 1 ]] || die "a flash-attn source build needs nvcc of the CUDA $CUDA_TAG toolkit (CUDA_HOME, PATH), \
and none was found: install the CUDA 13 toolkit (or use the Dockerfile's nvidia/cuda devel base), or give a wheel: FLASH_ATTN_WHEEL=<url or file>"
        cores=$(nproc 2>/dev/null || echo 4)
        free_gb=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 24)
        n_jobs=$(( free_gb / 6 )); (( n_jobs > cores )) && n_jobs=$cores; (( n_jobs < 1 )) && n_jobs=1
        export MAX_JOBS=${MAX_JOBS:-$n_jobs} FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS:-80;90} FLASH_ATTENTION_FORCE_BUILD=TRUE
        log "source build: MAX_JOBS=$MAX_JOBS (free RAM ${free_gb} GB, $cores cores), FLASH_ATTN_CUDA_ARCHS=$FLASH_ATTN_CUDA_ARCHS"
        pip_install -c "$PINS" ninja packaging psutil wheel setuptools
        pip_install --no-build-isolation --no-binary flash-attn "${reinstall[@]}" -c "$PINS" "flash-attn==$FLASH_ATTN"
    fi
fi

# ---- 3. the rest of the stack -------------------------------------------------------------------
log "3/5 requirements.txt (constraints-gpu.txt pins; what already matches is kept)"
pip_install -r requirements.txt
if [[ "$DEPS_ONLY" == 1 ]]; then
    log "--deps-only: stopping before the recipe install and the check"
    exit 0
fi

# ---- 4. the recipe ------------------------------------------------------------------------------
log "4/5 the recipe, editable (pip install -e .)"
pip_install -c "$PINS" -e .

# ---- 5. the check -------------------------------------------------------------------------------
log "5/5 environment check"
if [[ "$PRINT" == 1 ]]; then
    printf '%s\n' "$PYTHON -m recipe.ivgr.preflight --env ${CHECK_ARGS[*]}"
    exit 0
fi
"$PYTHON" -m recipe.ivgr.preflight --env "${CHECK_ARGS[@]}" \
    || die "the install finished but the check found problems (PROBLEM lines above)"
log "done: bash scripts/train_ivgr_7b.sh --dry-run, then bash scripts/train_ivgr_7b.sh"
