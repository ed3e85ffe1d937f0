#!/usr/bin/env bash
# IVR-R1 on Qwen2.5-VL-7B, one node of 8x80 GB. Usage:
#   ATTRIBUTOR_BASE_URL=http://host:8001/v1 ATTRIBUTOR_MODEL=Qwen2.5-VL-72B-Instruct \
#   JUDGE_BASE_URL=http://host:8000/v1 bash scripts/train_ivr_r1_7b.sh [--dry-run | --print-overrides] [key=value ...]
# --dry-run runs the preflight (recipe.ivr_r1.preflight: config, data, sizes, attributor and judge
# endpoints, checkpoints; no Ray, no GPU). With no TRAIN_FILES the synthetic set is prepared once.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
PRINT=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
if [[ "${1:-}" == "--print-overrides" ]]; then PRINT=1; shift; fi
MODEL=${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-}                  # prepared dual-prompt Parquet (data_prep); empty = synthetic set
VAL_FILES=${VAL_FILES:-}
DATA_DIR=${DATA_DIR:-$PWD/data/synthetic}     # synthetic grounded set, prepared once when TRAIN_FILES is empty
SYNTHETIC_NUM=${SYNTHETIC_NUM:-2000}
SYNTHETIC_SEED=${SYNTHETIC_SEED:-0}
BOX_FRAME=${BOX_FRAME:-qwen2_5_vl}
CKPT_DIR=${CKPT_DIR:-$PWD/checkpoints/ivr_r1_7b}
PYTHON=${PYTHON:-python3}
if [[ -n "${WANDB_API_KEY:-}" ]]; then LOGGER=${LOGGER:-console,wandb}; else LOGGER=${LOGGER:-console,tensorboard}; fi

# shellcheck source=scripts/common.sh
source scripts/common.sh
# shellcheck disable=SC2034  # read by common.sh's log lines
IVGR_SCRIPT=train_ivr_r1_7b.sh
ivgr_resolve_data $((1 - PRINT))  # --print-overrides only computes the paths

ARGS=(
  actor_rollout_ref.model.path="$MODEL"
  data.train_files="$(ivgr_file_list "$TRAIN_FILES")"
  data.val_files="$(ivgr_file_list "$VAL_FILES")"
  actor_rollout_ref.model.use_remove_padding=true
  actor_rollout_ref.model.enable_gradient_checkpointing=true
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.tensor_model_parallel_size=2
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.enable_chunked_prefill=false
  +actor_rollout_ref.rollout.limit_images=1
  actor_rollout_ref.ref.fsdp_config.param_offload=true
  trainer.n_gpus_per_node=8
  trainer.nnodes=1
  trainer.logger="$(ivgr_logger_list "$LOGGER")"
  trainer.default_local_dir="$CKPT_DIR"
  trainer.save_freq=20
  trainer.test_freq=20
  ivr_r1.dump.every_k_steps=10
)

if [[ $PRINT == 1 ]]; then
  printf '%s\n' "${ARGS[@]}" "$@"
  exit 0
fi
if [[ $DRY_RUN == 1 ]]; then
  exec "$PYTHON" -m recipe.ivr_r1.preflight "${ARGS[@]}" "$@"
fi
ivgr_check_env
exec "$PYTHON" -m recipe.ivr_r1.main "${ARGS[@]}" "$@"
