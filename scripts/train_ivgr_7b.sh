#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iVGR GRPO for Qwen2.5-VL-7B on one node of 8x A100/H100 80 GB, the paper's RL setting.
#
#   bash scripts/train_ivgr_7b.sh [key=value ...]                 # preflight, then train; re-run to resume
#   bash scripts/train_ivgr_7b.sh --dry-run [key=value ...]       # preflight on any machine (no GPU, no Ray)
#   bash scripts/train_ivgr_7b.sh --print-overrides [key=value ...]
#
# This script names the model, the data and the experiment; every hyperparameter is in
# recipe/ivgr/config/ivgr_trainer.yaml and model/qwen2_5_vl_7b.yaml. Variables (TRAIN_FILES, MODEL_PATH,
# TRAIN_BATCH_SIZE, JUDGE_BASE_URL, ...) and extra key=value arguments override them: scripts/README.md, "Launch".
set -euo pipefail
IVGR_SCRIPT=train_ivgr_7b.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

IVGR_MODEL=qwen2_5_vl_7b                      # model group: checkpoint, box frame, patch, TP, token budget
DATA_DIR=${DATA_DIR:-$ROOT/data/synthetic}    # data: TRAIN_FILES, else the synthetic grounded set made here
EXPERIMENT=${EXPERIMENT:-ivgr_qwen2_5_vl_7b}  # experiment: the run's name (logger, checkpoints/ivgr/<name>)

# shellcheck source=common.sh
source "$ROOT/scripts/common.sh"
ivgr_launch "$@"
