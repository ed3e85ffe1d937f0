#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iVGR cold-start SFT for Qwen3-VL-8B on one node of 8x A100/H100 80 GB, on verl's own SFT trainer
# (FSDP). Produces the RL stage's MODEL_PATH ($CKPT_DIR/hf_final); pipeline: scripts/README.md, "Pipeline".
#
#   TRAIN_FILES=data/sft/ivgr_sft35k.parquet bash scripts/sft_ivgr_qwen3vl_8b.sh [key=value ...]   # preflight, SFT, HF folder
#   TRAIN_FILES=... bash scripts/sft_ivgr_qwen3vl_8b.sh --dry-run [key=value ...]      # preflight on any machine (no GPU)
#   TRAIN_FILES=... bash scripts/sft_ivgr_qwen3vl_8b.sh --print-overrides [key=value ...]
#
# Every variable below can be set in the environment; every extra argument is a Hydra override of
# verl's trainer/config/sft_trainer_engine.yaml and wins over the script's own. The paper does not give
# its SFT hyperparameters (method.md §2.2): the values below are our assumptions (scripts/README.md).
set -euo pipefail
IVGR_SCRIPT=sft_ivgr_qwen3vl_8b.sh
RL_SCRIPT=train_ivgr_qwen3vl_8b.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- model and data --------------------------------------------------------------------------
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen3-VL-8B-Instruct}  # the base model (HF id or local folder)
TRAIN_FILES=${TRAIN_FILES:-}          # comma-separated SFT Parquet (data_prep.ivgr_sft35k / generic_sft / recipe.ivgr.distill)
VAL_FILES=${VAL_FILES:-}              # optional; empty = no validation loss
BOX_FRAME=${BOX_FRAME:-qwen3_vl}      # 0-1000 relative boxes; prepare the data with --box-frame qwen3_vl

# ---- cluster ---------------------------------------------------------------------------------
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

# ---- sizes (sequences; iVGR-SFT-35K: ~35K rows -> ~273 steps per epoch at 128) ------------------
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-128}   # sequences per optimizer step (global)
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-1}     # unused with dynamic batching (token budget below)
MAX_LENGTH=${MAX_LENGTH:-8192}              # tokens per sequence: <= 4096 image tokens (32 px patches) + prompt + response
TRUNCATION=${TRUNCATION:-right}             # a longer row loses its response end (the preflight counts them)
MAX_TOKENS_PER_GPU=${MAX_TOKENS_PER_GPU:-16384}  # dynamic batch: tokens per micro-batch per GPU (>= MAX_LENGTH)
EPOCHS=${EPOCHS:-2}
LR=${LR:-1e-5}
WARMUP_RATIO=${WARMUP_RATIO:-0.05}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.01}
NUM_WORKERS=${NUM_WORKERS:-8}               # data loader workers per GPU (image decode + resize)

# ---- memory levers ---------------------------------------------------------------------------
OFFLOAD=${OFFLOAD:-false}             # FSDP param + optimizer offload to CPU (8B fits without)
SP=${SP:-1}                           # Ulysses sequence parallel size (2 halves activation memory per GPU)

# ---- bookkeeping -----------------------------------------------------------------------------
PROJECT=${PROJECT:-ivgr}
EXPERIMENT=${EXPERIMENT:-sft_qwen3_vl_8b}
CKPT_DIR=${CKPT_DIR:-$ROOT/checkpoints/$PROJECT/$EXPERIMENT}  # absolute; re-running resumes from here
if [[ -n "${WANDB_API_KEY:-}" ]]; then LOGGER=${LOGGER:-console,wandb}; else LOGGER=${LOGGER:-console}; fi
SAVE_FREQ=${SAVE_FREQ:-100}           # steps between checkpoints (the last step is always saved)
TEST_FREQ=${TEST_FREQ:-100}           # steps between validation losses (with VAL_FILES)
MAX_CKPT_TO_KEEP=${MAX_CKPT_TO_KEEP:-2}
SAVE_HF_MODEL=${SAVE_HF_MODEL:-1}     # 1: verl writes global_step_N/huggingface; 0: shards only, merged at the end

PREFLIGHT=${PREFLIGHT:-1}              # run the preflight (--dry-run) before training; 0 skips it

# shellcheck source=sft_common.sh
source "$ROOT/scripts/sft_common.sh"
sft_launch "$@"
