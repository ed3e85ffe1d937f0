#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iVGR cold-start SFT for Qwen2.5-VL-7B on one node of 8x A100/H100 80 GB, on verl's own SFT trainer
# (FSDP). Produces the RL stage's MODEL_PATH ($CKPT_DIR/hf_final); pipeline: scripts/README.md, "Pipeline".
#
#   TRAIN_FILES=data/sft/ivgr_sft35k.parquet bash scripts/sft_ivgr_7b.sh [key=value ...]   # preflight, SFT, HF folder
#   TRAIN_FILES=... bash scripts/sft_ivgr_7b.sh --dry-run [key=value ...]      # preflight on any machine (no GPU)
#   TRAIN_FILES=... bash scripts/sft_ivgr_7b.sh --print-overrides [key=value ...]
#   bash scripts/sft_ivgr_7b.sh --dry-run      # no TRAIN_FILES: the synthetic set's SFT rows (data_prep.synthetic)
#
# This script names the base model, the data and the experiment; every hyperparameter is in
# recipe/ivgr/config/ivgr_sft.yaml. Variables (TRAIN_BATCH_SIZE, LR, ...) and extra key=value arguments
# override it: scripts/README.md, "Pipeline".
set -euo pipefail
IVGR_SCRIPT=sft_ivgr_7b.sh
RL_SCRIPT=train_ivgr_7b.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}  # model: the base model (HF id or local folder)
BOX_FRAME=${BOX_FRAME:-qwen2_5_vl}                     # data: TRAIN_FILES, prepared in this box frame
DATA_DIR=${DATA_DIR:-$ROOT/data/synthetic}   # data without TRAIN_FILES: the RL script's synthetic set, with its SFT rows
EXPERIMENT=${EXPERIMENT:-sft_qwen2_5_vl_7b}            # experiment: the run's name (logger, checkpoints/ivgr/<name>)

# shellcheck source=sft_common.sh
source "$ROOT/scripts/sft_common.sh"
sft_launch "$@"
