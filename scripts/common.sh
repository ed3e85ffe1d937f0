# shellcheck shell=bash
# Shared body of scripts/train_ivgr_*.sh (sourced, never run on its own). The calling script sets
# its defaults first (MODEL_PATH, sizes, BOX_FRAME, ...), then calls `ivgr_launch "$@"`.
#
#   bash scripts/train_ivgr_7b.sh [key=value ...]                # preflight, then train (resumes from CKPT_DIR)
#   bash scripts/train_ivgr_7b.sh --dry-run [key=value ...]      # preflight: no GPU, no Ray (python -m recipe.ivgr.preflight)
#   bash scripts/train_ivgr_7b.sh --print-overrides [key=value ...]  # the Hydra overrides, one per line; nothing else
#
# Every argument after the mode is a Hydra override appended after the script's own, so it wins.

IVGR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IVGR_CALLER_PWD=$PWD   # relative paths in the variables are relative to where the script was started
PYTHON=${PYTHON:-python3}

ivgr_log() { printf '[%s] %s\n' "${IVGR_SCRIPT:-ivgr}" "$*" >&2; }
ivgr_die() { ivgr_log "ERROR: $*"; exit 1; }

# A Hydra-quoted string: 'value' with \ and ' escaped (paths and names may hold spaces, = or commas).
ivgr_quote() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\\\'}"
}

# Absolute path (remote URLs such as hdfs://... untouched); the folder need not exist yet.
ivgr_abspath() {
    case "$1" in
        *://*) printf '%s' "$1" ;;
        /*) printf '%s' "$1" ;;
        "~"*) printf '%s' "${HOME}${1:1}" ;;
        *) printf '%s/%s' "$IVGR_CALLER_PWD" "$1" ;;
    esac
}

# Comma-separated files -> Hydra list of quoted absolute paths: ['/a.parquet','/b.parquet'].
ivgr_file_list() {
    local item out="" items=()
    IFS=, read -ra items <<<"$1"
    for item in "${items[@]}"; do
        [[ -z "$item" ]] && continue
        out+="${out:+,}$(ivgr_quote "$(ivgr_abspath "$item")")"
    done
    printf '[%s]' "$out"
}

# "console,wandb" or '["console","wandb"]' -> [console,wandb].
ivgr_logger_list() {
    local cleaned=${1//[\[\]\"\' ]/}
    printf '[%s]' "$cleaned"
}

# Marker file of a folder this recipe generated the synthetic set into (and may regenerate it in).
IVGR_SYNTHETIC_MARKER=.ivgr_synthetic_set

# Fill TRAIN_FILES / VAL_FILES; with no dataset given, the synthetic grounded set in DATA_DIR
# (prepared here unless present; pass prepare=0 to only compute the paths). The set is generated
# only into a folder that is missing, empty, or marked as the recipe's own ($IVGR_SYNTHETIC_MARKER):
# never over a user's files (e.g. their own train.parquet without a val.parquet).
ivgr_resolve_data() {
    local prepare=$1
    if [[ -z "$TRAIN_FILES" ]]; then
        if [[ -f "$DATA_DIR/train.parquet" && -f "$DATA_DIR/val.parquet" ]]; then
            [[ "$prepare" == 1 ]] && ivgr_log "synthetic set present in $DATA_DIR (not regenerated)"
        elif [[ "$prepare" == 1 ]]; then
            if [[ -d "$DATA_DIR" && -n "$(ls -A "$DATA_DIR")" && ! -f "$DATA_DIR/$IVGR_SYNTHETIC_MARKER" ]]; then
                ivgr_die "TRAIN_FILES is unset and DATA_DIR=$DATA_DIR holds files ($(ls -A "$DATA_DIR" | head -3 | tr '\n' ' ')...) but not a complete synthetic set (train.parquet + val.parquet) made by this recipe: nothing is written there. Set TRAIN_FILES (and VAL_FILES) to your data, or DATA_DIR to an empty folder for the synthetic set"
            fi
            ivgr_log "no TRAIN_FILES: preparing the synthetic grounded set in $DATA_DIR ($SYNTHETIC_NUM samples, frame $BOX_FRAME)"
            mkdir -p "$DATA_DIR" || ivgr_die "cannot create DATA_DIR=$DATA_DIR"
            touch "$DATA_DIR/$IVGR_SYNTHETIC_MARKER"
            "$PYTHON" -m data_prep.synthetic --out "$DATA_DIR" --num "$SYNTHETIC_NUM" --seed "$SYNTHETIC_SEED" \
                --box-frame "$BOX_FRAME" --quiet || ivgr_die "data_prep.synthetic failed"
        fi
        TRAIN_FILES=$DATA_DIR/train.parquet
        VAL_FILES=${VAL_FILES:-$DATA_DIR/val.parquet}
    fi
    # no validation set given: validate on (at most VAL_MAX_SAMPLES of) the train set, as the official code
    VAL_FILES=${VAL_FILES:-$TRAIN_FILES}
}

# The Hydra overrides for recipe.ivgr.main (array IVGR_OVERRIDES), from the variables.
ivgr_build_overrides() {
    local judge_url=null
    [[ -n "${JUDGE_BASE_URL:-}" ]] && judge_url=$(ivgr_quote "$JUDGE_BASE_URL")
    local model=$MODEL_PATH
    [[ -e "$(ivgr_abspath "$model")" ]] && model=$(ivgr_abspath "$model")
    IVGR_OVERRIDES=(
        "data.train_files=$(ivgr_file_list "$TRAIN_FILES")"
        "data.val_files=$(ivgr_file_list "$VAL_FILES")"
        "data.train_batch_size=$TRAIN_BATCH_SIZE"
        "data.max_prompt_length=$MAX_PROMPT_LENGTH"
        "data.max_response_length=$MAX_RESPONSE_LENGTH"
        "data.image_patch_size=$IMAGE_PATCH_SIZE"
        "data.val_max_samples=$VAL_MAX_SAMPLES"
        "actor_rollout_ref.model.path=$(ivgr_quote "$model")"
        "actor_rollout_ref.model.use_remove_padding=true"
        "actor_rollout_ref.model.enable_gradient_checkpointing=true"
        "actor_rollout_ref.model.use_fused_kernels=$FUSED_KERNELS"
        "actor_rollout_ref.actor.ppo_mini_batch_size=$PPO_MINI_BATCH_SIZE"
        "actor_rollout_ref.actor.use_dynamic_bsz=true"
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$MAX_TOKENS_PER_GPU"
        "actor_rollout_ref.actor.fsdp_config.param_offload=$ACTOR_OFFLOAD"
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload=$ACTOR_OFFLOAD"
        "actor_rollout_ref.ref.fsdp_config.param_offload=$REF_OFFLOAD"
        "actor_rollout_ref.rollout.name=vllm"
        "actor_rollout_ref.rollout.tensor_model_parallel_size=$TP"
        "actor_rollout_ref.rollout.gpu_memory_utilization=$GPU_MEMORY_UTILIZATION"
        "actor_rollout_ref.rollout.n=$ROLLOUT_N"
        "actor_rollout_ref.rollout.enable_chunked_prefill=false"
        "actor_rollout_ref.rollout.max_model_len=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))"
        "++actor_rollout_ref.rollout.limit_images=$LIMIT_IMAGES"
        "ivgr.box_frame=$BOX_FRAME"
        "ivgr.judge.base_url=$judge_url"
        "ivgr.judge.model=$(ivgr_quote "$JUDGE_MODEL")"
        "trainer.nnodes=$NNODES"
        "trainer.n_gpus_per_node=$GPUS_PER_NODE"
        "trainer.project_name=$(ivgr_quote "$PROJECT")"
        "trainer.experiment_name=$(ivgr_quote "$EXPERIMENT")"
        "trainer.logger=$(ivgr_logger_list "$LOGGER")"
        "trainer.default_local_dir=$(ivgr_quote "$CKPT_DIR")"
        "trainer.resume_mode=auto"
        "trainer.save_freq=$SAVE_FREQ"
        "trainer.test_freq=$TEST_FREQ"
        "trainer.total_training_steps=$TOTAL_STEPS"
        "trainer.max_actor_ckpt_to_keep=$MAX_CKPT_TO_KEEP"
    )
    if [[ -n "$IMAGE_ROOT" ]]; then
        IVGR_OVERRIDES+=("++data.image_root=$(ivgr_quote "$(ivgr_abspath "$IMAGE_ROOT")")")
    fi
    if [[ "$LOGGER" == *tensorboard* ]]; then
        # through the Ray job's runtime_env so the driver actor sees it on whichever node it lands
        IVGR_OVERRIDES+=("++ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR=$(ivgr_quote "$TENSORBOARD_DIR")")
    fi
    IVGR_OVERRIDES+=("${EXTRA_OVERRIDES[@]}")
}

# Multi-node: the Ray cluster must already be up (scripts/README.md, "Multi-node"), with enough GPUs.
ivgr_check_ray_cluster() {
    "$PYTHON" - "$NNODES" "$GPUS_PER_NODE" <<'PY' || ivgr_die "Ray cluster check failed (see above)"
import logging, sys
import ray
nnodes, per_node = int(sys.argv[1]), int(sys.argv[2])
try:
    ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
except Exception as err:  # ConnectionError when no cluster runs
    sys.exit(f"no running Ray cluster ({err}); start it first: `ray start --head` on node 0, "
             f"`ray start --address=<head>:6379` on the others (scripts/README.md, Multi-node)")
nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0]
gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
ray.shutdown()
if len(nodes) < nnodes or gpus < nnodes * per_node:
    sys.exit(f"the Ray cluster has {len(nodes)} GPU nodes / {gpus:g} GPUs; NNODES={nnodes} x "
             f"GPUS_PER_NODE={per_node} needs {nnodes * per_node}: start the missing workers")
print(f"Ray cluster: {len(nodes)} GPU nodes, {gpus:g} GPUs", file=sys.stderr)
PY
}

# This node's GPU stack (python -m recipe.ivgr.preflight --env): a half-installed node stops here,
# with the fix printed, before Ray starts.
ivgr_check_env() {
    [[ "${ENV_CHECK:-1}" == 1 ]] || return 0
    ivgr_log "environment check (ENV_CHECK=0 skips it)"
    "$PYTHON" -m recipe.ivgr.preflight --env --gpus "${GPUS_PER_NODE:-8}" \
        || ivgr_die "this node's GPU stack is incomplete (PROBLEM lines above): bash scripts/install_gpu.sh fixes it, or ENV_CHECK=0 to launch anyway"
}

ivgr_launch() {
    local mode=train
    case "${1:-}" in
        --dry-run) mode=dry-run; shift ;;
        --print-overrides) mode=print; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' >&2; exit 0 ;;
    esac
    [[ "$CKPT_DIR" == /* ]] || ivgr_die "CKPT_DIR must be an absolute path (got '$CKPT_DIR')"
    DATA_DIR=$(ivgr_abspath "$DATA_DIR")
    cd "$IVGR_ROOT" || exit 1
    if [[ "$mode" == print ]]; then
        ivgr_resolve_data 0
        ivgr_build_overrides
        printf '%s\n' "${IVGR_OVERRIDES[@]}" "$@"
        return 0
    fi
    ivgr_resolve_data 1
    ivgr_build_overrides
    if [[ "$mode" == dry-run ]]; then
        ivgr_log "preflight: $PYTHON -m recipe.ivgr.preflight (${#IVGR_OVERRIDES[@]} script overrides + $# extra)"
        exec "$PYTHON" -m recipe.ivgr.preflight "${IVGR_OVERRIDES[@]}" "$@"
    fi
    if [[ "$PREFLIGHT" == 1 ]]; then
        ivgr_log "preflight first (PREFLIGHT=0 skips it)"
        "$PYTHON" -m recipe.ivgr.preflight "${IVGR_OVERRIDES[@]}" "$@" \
            || ivgr_die "preflight found problems (PROBLEM lines above); fix them, or PREFLIGHT=0 to launch anyway"
    elif [[ -z "${JUDGE_BASE_URL:-}" ]]; then
        ivgr_log "WARNING: JUDGE_BASE_URL is not set: training without the judge (consistency reward 0); see scripts/serve_judge.sh"
    fi
    ivgr_check_env
    if (( NNODES > 1 )); then
        ivgr_check_ray_cluster
    fi
    mkdir -p "$CKPT_DIR"
    ivgr_log "checkpoints: $CKPT_DIR (re-running this command resumes from the latest one)"
    ivgr_log "command: $PYTHON -m recipe.ivgr.main \\"
    printf '    %s \\\n' "${IVGR_OVERRIDES[@]}" "$@" >&2
    exec "$PYTHON" -m recipe.ivgr.main "${IVGR_OVERRIDES[@]}" "$@"
}
