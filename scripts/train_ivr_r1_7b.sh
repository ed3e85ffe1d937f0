#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# IVR-R1 on Qwen2.5-VL-7B, one node of 8x80 GB. Usage:
#   ATTRIBUTOR_BASE_URL=http://host:8001/v1 ATTRIBUTOR_MODEL=Qwen2.5-VL-72B-Instruct \
#   JUDGE_BASE_URL=http://host:8000/v1 bash scripts/train_ivr_r1_7b.sh [--dry-run | --print-overrides] [key=value ...]
# --dry-run runs the preflight (recipe.ivr_r1.preflight: config, data, sizes, attributor and judge
# endpoints, checkpoints; no Ray, no GPU). With no TRAIN_FILES the synthetic set is prepared once.
# This script names the model, the data and the checkpoint folder; every hyperparameter is in
# recipe/ivr_r1/config/ivr_r1_trainer.yaml (extra key=value arguments override it).
set -euo pipefail
IVGR_SCRIPT=train_ivr_r1_7b.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

IVGR_MODEL=qwen2_5_vl_7b                          # model family of the synthetic set (its box frame)
MODEL_PATH=${MODEL_PATH:-${MODEL:-}}              # empty = the yaml's Qwen/Qwen2.5-VL-7B-Instruct (MODEL: older name)
DATA_DIR=${DATA_DIR:-$ROOT/data/synthetic}        # data: TRAIN_FILES, else the synthetic grounded set made here
CKPT_DIR=${CKPT_DIR:-$ROOT/checkpoints/ivr_r1_7b} # experiment: its checkpoint folder (re-running resumes)

# shellcheck source=common.sh
source "$ROOT/scripts/common.sh"
ivr_r1_launch "$@"
