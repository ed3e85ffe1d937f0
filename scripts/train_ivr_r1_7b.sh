#!/usr/bin/env bash
# IVR-R1 on Qwen2.5-VL-7B, one node of 8x80 GB. Usage:
#   ATTRIBUTOR_BASE_URL=http://host:8001/v1 ATTRIBUTOR_MODEL=Qwen2.5-VL-72B-Instruct \
#   JUDGE_BASE_URL=http://host:8000/v1 bash scripts/train_ivr_r1_7b.sh [--dry-run] [key=value ...]
# --dry-run composes the config with these overrides and runs verl's validate_config (no Ray, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
MODEL=${MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/ivgr}
CKPT_DIR=${CKPT_DIR:-$PWD/checkpoints/ivr_r1_7b}
PYTHON=${PYTHON:-python}

ARGS=(
  actor_rollout_ref.model.path="$MODEL"
  data.train_files="$DATA_DIR/train.parquet"
  data.val_files="$DATA_DIR/val.parquet"
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
  trainer.logger=[console,wandb]
  trainer.default_local_dir="$CKPT_DIR"
  trainer.save_freq=20
  trainer.test_freq=20
  ivr_r1.dump.every_k_steps=10
)

if [[ $DRY_RUN == 1 ]]; then
  exec "$PYTHON" -m recipe.ivr_r1.preflight "${ARGS[@]}" "$@"
fi
exec "$PYTHON" -m recipe.ivr_r1.main "${ARGS[@]}" "$@"
