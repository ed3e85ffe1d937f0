#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iVGR GRPO for Qwen3-VL-32B on NNODES nodes of GPUS_PER_NODE x 80 GB (default 2 x 8), paper batch sizes:
# boxes on Qwen3-VL's 0-1000 relative grid, image patch 16.
#
#   bash scripts/train_ivgr_32b_multinode.sh [key=value ...]                 # preflight, then train; re-run to resume
#   bash scripts/train_ivgr_32b_multinode.sh --dry-run [key=value ...]       # preflight on any machine (no GPU, no Ray)
#   bash scripts/train_ivgr_32b_multinode.sh --print-overrides [key=value ...]
#
# Start the Ray cluster first and run this on the head node (scripts/README.md, "Multi-node": `ray start --head`
# on node 0, `ray start --address=<head>:6379` on the others; same venv and `pip install -e .` on
# every node). Data files, IMAGE_ROOT, a local MODEL_PATH and CKPT_DIR must be at the same path on
# every node (shared filesystem), and JUDGE_BASE_URL reachable from every node.
#
# Every variable below can be set in the environment (NNODES=4 bash scripts/train_ivgr_32b_multinode.sh);
# every extra argument is a Hydra override of recipe/ivgr/config/ivgr_trainer.yaml and wins over the
# script's own (e.g. trainer.total_training_steps=20). Memory levers and the reasoning behind these
# defaults: scripts/README.md, "Launch".
set -euo pipefail
IVGR_SCRIPT=train_ivgr_32b_multinode.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- model and data --------------------------------------------------------------------------
MODEL_PATH=${MODEL_PATH:-allencbzhang/iVGR-Qwen3-VL-32B-SFT}  # cold-start SFT checkpoint (HF id or shared folder)
TRAIN_FILES=${TRAIN_FILES:-}          # comma-separated data_prep Parquet; empty = synthetic set in DATA_DIR
VAL_FILES=${VAL_FILES:-}              # empty = DATA_DIR/val.parquet (synthetic) or the train files
DATA_DIR=${DATA_DIR:-$ROOT/data/synthetic_qwen3_vl}   # synthetic grounded set, prepared once when TRAIN_FILES is empty
SYNTHETIC_NUM=${SYNTHETIC_NUM:-2000}  # samples in the synthetic set (90% train)
SYNTHETIC_SEED=${SYNTHETIC_SEED:-0}
IMAGE_ROOT=${IMAGE_ROOT:-}            # root of images stored by path (default: the data files' folder)
BOX_FRAME=${BOX_FRAME:-qwen3_vl}      # boxes on the 0-1000 relative grid (Qwen3-VL)
IMAGE_PATCH_SIZE=${IMAGE_PATCH_SIZE:-16}  # Qwen3-VL: 16 (x merge 2 = 32 px per image token)
LIMIT_IMAGES=${LIMIT_IMAGES:-1}       # images per prompt vLLM reserves memory for (iVGR data: 1)
VAL_MAX_SAMPLES=${VAL_MAX_SAMPLES:-512}

# ---- cluster ---------------------------------------------------------------------------------
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

# ---- sizes (rows = dataset rows: a grounded sample is 2 rows, a single sample 1) ----------------
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-512}    # rows per step (paper: 512)
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-128}  # rows per update: 4 updates of 128 x 5 = 640 sequences
ROLLOUT_N=${ROLLOUT_N:-5}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-8192}   # includes image tokens (<= 4096 per image by default)
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-4096}
TOTAL_STEPS=${TOTAL_STEPS:-360}

# ---- memory levers ---------------------------------------------------------------------------
TP=${TP:-4}                           # vLLM tensor parallel size per rollout replica (32B bf16: 16 GB/GPU at TP 4)
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.6}  # vLLM share of each GPU while rolling out
MAX_TOKENS_PER_GPU=${MAX_TOKENS_PER_GPU:-16384}  # dynamic batch: tokens per micro-batch per GPU (>= prompt+response)
ACTOR_OFFLOAD=${ACTOR_OFFLOAD:-true}   # FSDP param + optimizer offload of the actor to CPU
REF_OFFLOAD=${REF_OFFLOAD:-true}       # reference model params on CPU between uses
FUSED_KERNELS=${FUSED_KERNELS:-true}   # fused log-prob kernels: no full-vocab logits in memory

# ---- judge (scripts/serve_judge.sh prints these two) ---------------------------------------------
JUDGE_BASE_URL=${JUDGE_BASE_URL:-}     # e.g. http://10.0.0.5:8000/v1; empty = no judge (consistency 0)
JUDGE_MODEL=${JUDGE_MODEL:-judge}      # the judge's served model name

# ---- bookkeeping -----------------------------------------------------------------------------
PROJECT=${PROJECT:-ivgr}
EXPERIMENT=${EXPERIMENT:-ivgr_qwen3_vl_32b}
CKPT_DIR=${CKPT_DIR:-$ROOT/checkpoints/$PROJECT/$EXPERIMENT}  # absolute; re-running resumes from here
if [[ -n "${WANDB_API_KEY:-}" ]]; then LOGGER=${LOGGER:-console,wandb}; else LOGGER=${LOGGER:-console,tensorboard}; fi
TENSORBOARD_DIR=${TENSORBOARD_DIR:-$CKPT_DIR/tensorboard}
SAVE_FREQ=${SAVE_FREQ:-20}
TEST_FREQ=${TEST_FREQ:-20}
MAX_CKPT_TO_KEEP=${MAX_CKPT_TO_KEEP:-2}  # actor checkpoints kept (about 400 GB each with optimizer state)

PREFLIGHT=${PREFLIGHT:-1}              # run the preflight (--dry-run) before training; 0 skips it

EXTRA_OVERRIDES=()

# shellcheck source=common.sh
source "$ROOT/scripts/common.sh"
ivgr_launch "$@"
