#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# iVGR GRPO for Qwen3-VL-32B on 2 nodes of 8x A100/H100 80 GB, the paper's RL setting: boxes on
# Qwen3-VL's 0-1000 relative grid, image patch 16.
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
# This script names the model, the data and the experiment; every hyperparameter is in
# recipe/ivgr/config/ivgr_trainer.yaml and model/qwen3_vl_32b.yaml. Variables (NNODES, TRAIN_FILES,
# MODEL_PATH, JUDGE_BASE_URL, ...) and extra key=value arguments override them: scripts/README.md, "Launch".
set -euo pipefail
IVGR_SCRIPT=train_ivgr_32b_multinode.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

IVGR_MODEL=qwen3_vl_32b                                # model group: checkpoint, box frame, patch, TP, nodes, offload
DATA_DIR=${DATA_DIR:-$ROOT/data/synthetic_qwen3_vl}    # data: TRAIN_FILES, else the synthetic grounded set made here
EXPERIMENT=${EXPERIMENT:-ivgr_qwen3_vl_32b}            # experiment: the run's name (logger, checkpoints/ivgr/<name>)

# shellcheck source=common.sh
source "$ROOT/scripts/common.sh"
ivgr_launch "$@"
