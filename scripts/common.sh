# shellcheck shell=bash
# Shared body of the launch scripts (sourced, never run on its own). A launch script names the model
# (IVGR_MODEL: a config group of recipe/ivgr/config/model/), the data (DATA_DIR: the synthetic set used
# when TRAIN_FILES is empty) and the experiment (EXPERIMENT: the run's name), then calls `ivgr_launch "$@"`.
# Every hyperparameter lives in the yaml (recipe/ivgr/config/ivgr_trainer.yaml and the model group);
# this file holds no value of its own: a variable of IVGR_ENV_KEYS that the user sets becomes its Hydra
# override, an unset one leaves the yaml's value.
#
#   bash scripts/train_ivgr_7b.sh [key=value ...]                # preflight, then train (resumes from the checkpoints)
#   bash scripts/train_ivgr_7b.sh --dry-run [key=value ...]      # preflight: no GPU, no Ray (python -m recipe.ivgr.preflight)
#   bash scripts/train_ivgr_7b.sh --print-overrides [key=value ...]  # the Hydra overrides, one per line; nothing else
#
# Every argument after the mode is a Hydra override appended after the script's own, so it wins
# (`model=qwen3_vl_8b` selects another model group).

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

# Environment variables users set -> Hydra keys ("VARIABLE key[,key...]"). Set: `key=value` for each key;
# unset: the yaml decides. Paths, names and the judge are handled in ivgr_build_overrides (quoted, made
# absolute); the documentation of each is scripts/README.md, "Launch".
IVGR_ENV_KEYS=(
    "TRAIN_BATCH_SIZE data.train_batch_size"
    "PPO_MINI_BATCH_SIZE actor_rollout_ref.actor.ppo_mini_batch_size"
    "ROLLOUT_N actor_rollout_ref.rollout.n"
    "MAX_PROMPT_LENGTH data.max_prompt_length"
    "MAX_RESPONSE_LENGTH data.max_response_length"
    "TOTAL_STEPS trainer.total_training_steps"
    "VAL_MAX_SAMPLES data.val_max_samples"
    "BOX_FRAME ivgr.box_frame"
    "IMAGE_PATCH_SIZE data.image_patch_size"
    "LIMIT_IMAGES actor_rollout_ref.rollout.limit_images"
    "NNODES trainer.nnodes"
    "GPUS_PER_NODE trainer.n_gpus_per_node"
    "TP actor_rollout_ref.rollout.tensor_model_parallel_size"
    "GPU_MEMORY_UTILIZATION actor_rollout_ref.rollout.gpu_memory_utilization"
    "MAX_TOKENS_PER_GPU actor_rollout_ref.actor.ppo_max_token_len_per_gpu"
    "ACTOR_OFFLOAD actor_rollout_ref.actor.fsdp_config.param_offload,actor_rollout_ref.actor.fsdp_config.optimizer_offload"
    "REF_OFFLOAD actor_rollout_ref.ref.fsdp_config.param_offload"
    "FUSED_KERNELS actor_rollout_ref.model.use_fused_kernels"
    "SAVE_FREQ trainer.save_freq"
    "TEST_FREQ trainer.test_freq"
    "MAX_CKPT_TO_KEEP trainer.max_actor_ckpt_to_keep"
)

# Append `key=$VARIABLE` to the array named $1 for every variable of IVGR_ENV_KEYS that is set.
ivgr_env_overrides() {
    local -n _into=$1
    local entry variable key items=()
    for entry in "${IVGR_ENV_KEYS[@]}"; do
        variable=${entry%% *}
        [[ -n "${!variable:-}" ]] || continue
        IFS=, read -ra items <<<"${entry#* }"
        for key in "${items[@]}"; do
            _into+=("$key=${!variable}")
        done
    done
}

# A value of the model group's yaml file, read (not composed): the box frame of the synthetic set,
# prepared before any config is composed.
ivgr_model_value() {
    "$PYTHON" - "$IVGR_ROOT/recipe/ivgr/config/model/$IVGR_MODEL.yaml" "$1" <<'PY'
import sys
from omegaconf import OmegaConf
print(OmegaConf.select(OmegaConf.load(sys.argv[1]), sys.argv[2]))
PY
}

# The names of up to three entries of a folder (for messages).
ivgr_some_files() {
    local entry count=0
    for entry in "$1"/* "$1"/.[!.]*; do
        [[ -e "$entry" ]] || continue
        printf '%s ' "${entry##*/}"
        (( ++count < 3 )) || break
    done
}

# Fill TRAIN_FILES / VAL_FILES; with no dataset given, the synthetic grounded set in DATA_DIR
# (prepared here unless present; pass prepare=0 to only compute the paths). The set is generated
# only into a folder that is missing, empty, or marked as the recipe's own ($IVGR_SYNTHETIC_MARKER):
# never over a user's files (e.g. their own train.parquet without a val.parquet).
ivgr_resolve_data() {
    local prepare=$1 frame
    if [[ -z "$TRAIN_FILES" ]]; then
        if [[ -f "$DATA_DIR/train.parquet" && -f "$DATA_DIR/val.parquet" ]]; then
            [[ "$prepare" == 1 ]] && ivgr_log "synthetic set present in $DATA_DIR (not regenerated)"
        elif [[ "$prepare" == 1 ]]; then
            if [[ -d "$DATA_DIR" && -n "$(ls -A "$DATA_DIR")" && ! -f "$DATA_DIR/$IVGR_SYNTHETIC_MARKER" ]]; then
                ivgr_die "TRAIN_FILES is unset and DATA_DIR=$DATA_DIR holds files ($(ivgr_some_files "$DATA_DIR")...) but not a complete synthetic set (train.parquet + val.parquet) made by this recipe: nothing is written there. Set TRAIN_FILES (and VAL_FILES) to your data, or DATA_DIR to an empty folder for the synthetic set"
            fi
            frame=${BOX_FRAME:-$(ivgr_model_value ivgr.box_frame)} || ivgr_die "cannot read the model group $IVGR_MODEL"
            ivgr_log "no TRAIN_FILES: preparing the synthetic grounded set in $DATA_DIR ($SYNTHETIC_NUM samples, frame $frame)"
            mkdir -p "$DATA_DIR" || ivgr_die "cannot create DATA_DIR=$DATA_DIR"
            touch "$DATA_DIR/$IVGR_SYNTHETIC_MARKER"
            # --no-sft: the SFT rows cost a transformers import; scripts/sft_ivgr_*.sh adds them when it needs them
            "$PYTHON" -m data_prep.synthetic --out "$DATA_DIR" --num "$SYNTHETIC_NUM" --seed "$SYNTHETIC_SEED" \
                --box-frame "$frame" --no-sft --quiet || ivgr_die "data_prep.synthetic failed"
        fi
        TRAIN_FILES=$DATA_DIR/train.parquet
        VAL_FILES=${VAL_FILES:-$DATA_DIR/val.parquet}
    fi
    # no validation set given: validate on (at most data.val_max_samples of) the train set, as the official code
    VAL_FILES=${VAL_FILES:-$TRAIN_FILES}
}

# The Hydra overrides for recipe.ivgr.main (array IVGR_OVERRIDES): the model group, the data, the run's
# name, folders and logger, the judge, then the variables of IVGR_ENV_KEYS that are set.
ivgr_build_overrides() {
    local judge_url=null model
    [[ -n "${JUDGE_BASE_URL:-}" ]] && judge_url=$(ivgr_quote "$JUDGE_BASE_URL")
    IVGR_OVERRIDES=()
    [[ "$IVGR_MODEL_FROM_ARGS" == 1 ]] || IVGR_OVERRIDES+=("model=$IVGR_MODEL")
    IVGR_OVERRIDES+=(
        "data.train_files=$(ivgr_file_list "$TRAIN_FILES")"
        "data.val_files=$(ivgr_file_list "$VAL_FILES")"
        "trainer.experiment_name=$(ivgr_quote "$EXPERIMENT")"
        "trainer.logger=$(ivgr_logger_list "$LOGGER")"
        # pinned here (null = no judge): the preflight and every Ray process see the same endpoint
        "reward_score.judge.base_url=$judge_url"
    )
    if [[ -n "${MODEL_PATH:-}" ]]; then
        model=$MODEL_PATH
        [[ -e "$(ivgr_abspath "$model")" ]] && model=$(ivgr_abspath "$model")
        IVGR_OVERRIDES+=("actor_rollout_ref.model.path=$(ivgr_quote "$model")")
    fi
    [[ -n "${JUDGE_MODEL:-}" ]] && IVGR_OVERRIDES+=("reward_score.judge.model=$(ivgr_quote "$JUDGE_MODEL")")
    [[ -n "${PROJECT:-}" ]] && IVGR_OVERRIDES+=("trainer.project_name=$(ivgr_quote "$PROJECT")")
    if [[ -n "$CKPT_DIR" ]]; then
        IVGR_OVERRIDES+=("trainer.default_local_dir=$(ivgr_quote "$CKPT_DIR")")
    else
        # absolute (Ray workers run elsewhere), in this repository, named after the run as verl's default
        IVGR_OVERRIDES+=("trainer.default_local_dir=$(ivgr_quote "$IVGR_ROOT/checkpoints/\${trainer.project_name}/\${trainer.experiment_name}")")
    fi
    if [[ -n "$IMAGE_ROOT" ]]; then
        IVGR_OVERRIDES+=("++data.image_root=$(ivgr_quote "$(ivgr_abspath "$IMAGE_ROOT")")")
    fi
    if [[ -n "${TENSORBOARD_DIR:-}" ]]; then
        # through the Ray job's runtime_env so the trainer sees it on whichever node it lands
        # (unset: the trainer logs to <trainer.default_local_dir>/tensorboard)
        IVGR_OVERRIDES+=("++ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR=$(ivgr_quote "$(ivgr_abspath "$TENSORBOARD_DIR")")")
    fi
    ivgr_env_overrides IVGR_OVERRIDES
}

# The run's cluster shape from the composed config (model group, variables, arguments): prints
# "nnodes n_gpus_per_node". Training mode only (composing imports verl: a few seconds).
ivgr_cluster_shape() {  # ivgr_cluster_shape RECIPE(ivgr|ivr_r1) [overrides...]
    "$PYTHON" - "$@" <<'PY'
import sys
from recipe.ivgr.preflight.config import REPO_ROOT, compose_config
recipe, overrides = sys.argv[1], sys.argv[2:]
config = compose_config(overrides, REPO_ROOT / "recipe" / recipe / "config", f"{recipe}_trainer")
print(int(config.trainer.nnodes), int(config.trainer.n_gpus_per_node))
PY
}

# Multi-node: the Ray cluster must already be up (scripts/README.md, "Multi-node"), with enough GPUs.
ivgr_check_ray_cluster() {  # ivgr_check_ray_cluster NNODES GPUS_PER_NODE
    "$PYTHON" - "$1" "$2" <<'PY' || ivgr_die "Ray cluster check failed (see above)"
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
    sys.exit(f"the Ray cluster has {len(nodes)} GPU nodes / {gpus:g} GPUs; trainer.nnodes={nnodes} x "
             f"trainer.n_gpus_per_node={per_node} needs {nnodes * per_node}: start the missing workers")
print(f"Ray cluster: {len(nodes)} GPU nodes, {gpus:g} GPUs", file=sys.stderr)
PY
}

# This node's GPU stack (python -m recipe.ivgr.preflight --env): a half-installed node stops here,
# with the fix printed, before Ray starts.
ivgr_check_env() {  # ivgr_check_env GPUS_PER_NODE
    [[ "${ENV_CHECK:-1}" == 1 ]] || return 0
    ivgr_log "environment check (ENV_CHECK=0 skips it)"
    "$PYTHON" -m recipe.ivgr.preflight --env --gpus "$1" \
        || ivgr_die "this node's GPU stack is incomplete (PROBLEM lines above): bash scripts/install_gpu.sh fixes it, or ENV_CHECK=0 to launch anyway"
}

# The variables every launch script reads, with the defaults that are not hyperparameters: paths, the
# logger by the credentials present, the synthetic set's size, the checks to run.
ivgr_defaults() {
    TRAIN_FILES=${TRAIN_FILES:-}         # comma-separated data_prep Parquet; empty = synthetic set in DATA_DIR
    VAL_FILES=${VAL_FILES:-}             # empty = DATA_DIR/val.parquet (synthetic) or the train files
    SYNTHETIC_NUM=${SYNTHETIC_NUM:-2000} # samples in the synthetic set (90% train)
    SYNTHETIC_SEED=${SYNTHETIC_SEED:-0}
    IMAGE_ROOT=${IMAGE_ROOT:-}           # root of images stored by path (default: the data files' folder)
    CKPT_DIR=${CKPT_DIR:-}               # empty = <repository>/checkpoints/<project_name>/<experiment_name>
    if [[ -n "${WANDB_API_KEY:-}" ]]; then LOGGER=${LOGGER:-console,wandb}; else LOGGER=${LOGGER:-console,tensorboard}; fi
    PREFLIGHT=${PREFLIGHT:-1}            # run the preflight (--dry-run) before training; 0 skips it
}

ivgr_launch() {
    local mode=train arg shape nnodes per_node
    case "${1:-}" in
        --dry-run) mode=dry-run; shift ;;
        --print-overrides) mode=print; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' >&2; exit 0 ;;
    esac
    ivgr_defaults
    # `model=<group>` among the arguments replaces the script's model (and the frame of its synthetic set)
    IVGR_MODEL_FROM_ARGS=0
    for arg in "$@"; do
        if [[ "$arg" == model=* ]]; then IVGR_MODEL=${arg#model=}; IVGR_MODEL_FROM_ARGS=1; fi
    done
    [[ -f "$IVGR_ROOT/recipe/ivgr/config/model/$IVGR_MODEL.yaml" ]] || ivgr_die "no model group '$IVGR_MODEL': \
recipe/ivgr/config/model/ has $(for f in "$IVGR_ROOT"/recipe/ivgr/config/model/*.yaml; do f=${f##*/}; printf '%s ' "${f%.yaml}"; done)"
    [[ -z "$CKPT_DIR" || "$CKPT_DIR" == /* ]] || ivgr_die "CKPT_DIR must be an absolute path (got '$CKPT_DIR')"
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
    shape=$(ivgr_cluster_shape ivgr "${IVGR_OVERRIDES[@]}" "$@") || ivgr_die "the config does not compose (run --dry-run)"
    read -r nnodes per_node <<<"$shape"
    ivgr_check_env "$per_node"
    if (( nnodes > 1 )); then
        ivgr_check_ray_cluster "$nnodes" "$per_node"
    fi
    [[ -n "$CKPT_DIR" ]] && mkdir -p "$CKPT_DIR"
    ivgr_log "checkpoints: ${CKPT_DIR:-$IVGR_ROOT/checkpoints/<project_name>/$EXPERIMENT} (re-running this command resumes from the latest one)"
    ivgr_log "command: $PYTHON -m recipe.ivgr.main \\"
    printf '    %s \\\n' "${IVGR_OVERRIDES[@]}" "$@" >&2
    exec "$PYTHON" -m recipe.ivgr.main "${IVGR_OVERRIDES[@]}" "$@"
}

# IVR-R1 (scripts/train_ivr_r1_7b.sh): the data, the model path when given, the checkpoint folder and
# the logger; every hyperparameter is in recipe/ivr_r1/config/ivr_r1_trainer.yaml.
ivr_r1_launch() {
    local mode=train overrides=()
    case "${1:-}" in
        --dry-run) mode=dry-run; shift ;;
        --print-overrides) mode=print; shift ;;
    esac
    ivgr_defaults
    [[ "$CKPT_DIR" == /* ]] || ivgr_die "CKPT_DIR must be an absolute path (got '$CKPT_DIR')"
    DATA_DIR=$(ivgr_abspath "$DATA_DIR")
    cd "$IVGR_ROOT" || exit 1
    if [[ "$mode" == print ]]; then ivgr_resolve_data 0; else ivgr_resolve_data 1; fi  # print: only the paths
    overrides=(
        "data.train_files=$(ivgr_file_list "$TRAIN_FILES")"
        "data.val_files=$(ivgr_file_list "$VAL_FILES")"
        "trainer.logger=$(ivgr_logger_list "$LOGGER")"
        "trainer.default_local_dir=$(ivgr_quote "$CKPT_DIR")"
    )
    if [[ -n "$MODEL_PATH" ]]; then
        local model=$MODEL_PATH
        [[ -e "$(ivgr_abspath "$model")" ]] && model=$(ivgr_abspath "$model")
        overrides+=("actor_rollout_ref.model.path=$(ivgr_quote "$model")")
    fi
    case "$mode" in
        print) printf '%s\n' "${overrides[@]}" "$@"; return 0 ;;
        dry-run) exec "$PYTHON" -m recipe.ivr_r1.preflight "${overrides[@]}" "$@" ;;
    esac
    if [[ "${ENV_CHECK:-1}" == 1 ]]; then
        local shape nnodes per_node
        shape=$(ivgr_cluster_shape ivr_r1 "${overrides[@]}" "$@") || ivgr_die "the config does not compose (run --dry-run)"
        read -r nnodes per_node <<<"$shape"
        ivgr_check_env "$per_node"
    fi
    exec "$PYTHON" -m recipe.ivr_r1.main "${overrides[@]}" "$@"
}
