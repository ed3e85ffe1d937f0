# shellcheck shell=bash source-path=SCRIPTDIR
# Shared body of scripts/sft_ivgr_*.sh (sourced, never run on its own): cold-start SFT on verl 0.9.1's
# own SFT trainer (torchrun -m verl.trainer.sft_trainer, FSDP). The calling script sets its defaults
# first (the base model, the data's box frame, the experiment), then calls `sft_launch "$@"`; every
# hyperparameter is in recipe/ivgr/config/ivgr_sft.yaml (verl's sft_trainer_engine.yaml plus ours).
#
#   bash scripts/sft_ivgr_7b.sh [key=value ...]               # preflight, SFT (resumes from CKPT_DIR), HF folder
#   bash scripts/sft_ivgr_7b.sh --dry-run [key=value ...]     # preflight only: no GPU (python -m recipe.ivgr.sft_preflight)
#   bash scripts/sft_ivgr_7b.sh --print-overrides [key=value ...]   # the Hydra overrides, one per line
#
# Every argument after the mode is a Hydra override of recipe/ivgr/config/ivgr_sft.yaml, appended after
# the script's own, so it wins. The RL stage's MODEL_PATH is printed at the end:
# $CKPT_DIR/hf_final (a link to global_step_N/huggingface, a complete Hugging Face model folder).

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"   # ivgr_log / ivgr_die / ivgr_quote / ivgr_abspath / lists

# Environment variables users set -> Hydra keys of recipe/ivgr/config/ivgr_sft.yaml (set: `key=value`;
# unset: the yaml decides); documented in scripts/README.md, "Pipeline".
SFT_ENV_KEYS=(
    "TRAIN_BATCH_SIZE data.train_batch_size"
    "MICRO_BATCH_SIZE data.micro_batch_size_per_gpu"
    "MAX_LENGTH data.max_length"
    "TRUNCATION data.truncation"
    "MAX_TOKENS_PER_GPU data.max_token_len_per_gpu"
    "NUM_WORKERS data.num_workers"
    "EPOCHS trainer.total_epochs"
    "LR optim.lr"
    "WARMUP_RATIO optim.lr_warmup_steps_ratio"
    "WEIGHT_DECAY optim.weight_decay"
    "OFFLOAD engine.param_offload,engine.optimizer_offload"
    "SP engine.ulysses_sequence_parallel_size"
    "GPUS_PER_NODE trainer.n_gpus_per_node"
    "SAVE_FREQ trainer.save_freq"
    "MAX_CKPT_TO_KEEP trainer.max_ckpt_to_keep"
)
SFT_CONFIG_DIR=$IVGR_ROOT/recipe/ivgr/config
SFT_CONFIG_NAME=ivgr_sft

# The Hydra overrides for verl.trainer.sft_trainer (array SFT_OVERRIDES) on top of ivgr_sft.yaml: the base
# model, the data, the run's name, folder and logger, then the variables of SFT_ENV_KEYS that are set.
sft_build_overrides() {
    local model=$BASE_MODEL
    [[ -e "$(ivgr_abspath "$model")" ]] && model=$(ivgr_abspath "$model")
    SFT_OVERRIDES=(
        "model.path=$(ivgr_quote "$model")"
        "data.train_files=$(ivgr_file_list "$TRAIN_FILES")"
        "trainer.experiment_name=$(ivgr_quote "$EXPERIMENT")"
        "trainer.logger=$(ivgr_logger_list "$LOGGER")"
    )
    if [[ -n "$CKPT_DIR" ]]; then
        SFT_OVERRIDES+=("trainer.default_local_dir=$(ivgr_quote "$CKPT_DIR")")
    else
        # absolute (torchrun ranks share it), in this repository, named after the run as verl's default
        SFT_OVERRIDES+=("trainer.default_local_dir=$(ivgr_quote "$IVGR_ROOT/checkpoints/\${trainer.project_name}/\${trainer.experiment_name}")")
    fi
    if [[ -n "$VAL_FILES" ]]; then
        SFT_OVERRIDES+=("data.val_files=$(ivgr_file_list "$VAL_FILES")")
        [[ -n "${TEST_FREQ:-}" ]] && SFT_OVERRIDES+=("trainer.test_freq=$TEST_FREQ")
    else
        SFT_OVERRIDES+=("trainer.test_freq=-1")  # verl validates on the last step whenever test_freq > 0
    fi
    [[ -n "${PROJECT:-}" ]] && SFT_OVERRIDES+=("trainer.project_name=$(ivgr_quote "$PROJECT")")
    [[ "${SAVE_HF_MODEL:-1}" == 0 ]] && SFT_OVERRIDES+=("checkpoint.save_contents=[model,optimizer,extra]")
    local -a env_keys=("${IVGR_ENV_KEYS[@]}")
    IVGR_ENV_KEYS=("${SFT_ENV_KEYS[@]}")
    ivgr_env_overrides SFT_OVERRIDES
    IVGR_ENV_KEYS=("${env_keys[@]}")
}

# Fill TRAIN_FILES; with no dataset given, the synthetic set's SFT rows (DATA_DIR/sft_train.parquet: a grounded
# and a textual chain of thought per sample of the RL script's synthetic set, same images, prompts and frame),
# prepared here unless present (prepare=0: only the path). Written only into a missing, empty or recipe-made
# folder, the RL scripts' rule (scripts/common.sh).
sft_resolve_data() {
    local prepare=$1
    [[ -n "$TRAIN_FILES" ]] && return 0
    if [[ -f "$DATA_DIR/sft_train.parquet" ]]; then
        [[ "$prepare" == 1 ]] && ivgr_log "synthetic SFT set present in $DATA_DIR (not regenerated)"
    elif [[ "$prepare" == 1 ]]; then
        if [[ -d "$DATA_DIR" && -n "$(ivgr_some_files "$DATA_DIR")" && ! -f "$DATA_DIR/$IVGR_SYNTHETIC_MARKER" ]]; then
            ivgr_die "TRAIN_FILES is unset and DATA_DIR=$DATA_DIR holds files ($(ivgr_some_files "$DATA_DIR")...) but no sft_train.parquet of a synthetic set made by this recipe: nothing is written there. Set TRAIN_FILES to your SFT data (python -m data_prep.ivgr_sft35k / generic_sft, scripts/README.md), or DATA_DIR to an empty folder for the synthetic set"
        fi
        ivgr_log "no TRAIN_FILES: preparing the synthetic set with its SFT rows in $DATA_DIR ($SYNTHETIC_NUM samples, frame $BOX_FRAME); your own data: TRAIN_FILES=... (scripts/README.md)"
        mkdir -p "$DATA_DIR" || ivgr_die "cannot create DATA_DIR=$DATA_DIR"
        touch "$DATA_DIR/$IVGR_SYNTHETIC_MARKER"
        "$PYTHON" -m data_prep.synthetic --out "$DATA_DIR" --num "$SYNTHETIC_NUM" --seed "$SYNTHETIC_SEED" \
            --box-frame "$BOX_FRAME" --quiet || ivgr_die "data_prep.synthetic failed"
    fi
    TRAIN_FILES=$DATA_DIR/sft_train.parquet
}

# The composed config's value of a key (training mode only: composing imports verl, a few seconds).
sft_config_value() {  # sft_config_value KEY [overrides...]
    "$PYTHON" - "$SFT_CONFIG_DIR" "$SFT_CONFIG_NAME" "$@" <<'PY'
import sys
from pathlib import Path
from omegaconf import OmegaConf
from recipe.ivgr.preflight.config import compose_config
config = compose_config(sys.argv[4:], Path(sys.argv[1]), sys.argv[2])
print(OmegaConf.select(config, sys.argv[3]))
PY
}

# After training: the last global_step_N/huggingface folder (merged from the FSDP shards with verl's
# model merger when SAVE_HF_MODEL=0), linked as $CKPT_DIR/hf_final.
sft_finish() {
    local tracker="$CKPT_DIR/latest_checkpointed_iteration.txt" step folder
    [[ -f "$tracker" ]] || ivgr_die "no $tracker: verl saved no checkpoint"
    step=$(<"$tracker")
    folder="$CKPT_DIR/global_step_$step"
    if [[ ! -f "$folder/huggingface/model.safetensors" && ! -f "$folder/huggingface/model.safetensors.index.json" ]]; then
        ivgr_log "no Hugging Face weights in $folder/huggingface: merging the FSDP shards (python -m verl.model_merger)"
        "$PYTHON" -m verl.model_merger merge --backend fsdp --local_dir "$folder" --target_dir "$folder/huggingface" \
            || ivgr_die "verl.model_merger failed for $folder"
    fi
    [[ -f "$folder/huggingface/config.json" ]] || ivgr_die "$folder/huggingface has no config.json"
    ln -sfn "global_step_$step/huggingface" "$CKPT_DIR/hf_final"
    ivgr_log "SFT done: the cold-start model is $CKPT_DIR/hf_final (-> global_step_$step/huggingface)"
    ivgr_log "next: MODEL_PATH=$CKPT_DIR/hf_final bash scripts/${RL_SCRIPT} --dry-run"
}

sft_launch() {
    local mode=train gpus
    case "${1:-}" in
        --dry-run) mode=dry-run; shift ;;
        --print-overrides) mode=print; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' >&2; exit 0 ;;
    esac
    TRAIN_FILES=${TRAIN_FILES:-}
    VAL_FILES=${VAL_FILES:-}
    if [[ -n "${WANDB_API_KEY:-}" ]]; then LOGGER=${LOGGER:-console,wandb}; else LOGGER=${LOGGER:-console}; fi
    PREFLIGHT=${PREFLIGHT:-1}
    CKPT_DIR=${CKPT_DIR:-}   # empty = <repository>/checkpoints/<project_name>/<experiment_name>
    [[ -z "$CKPT_DIR" || "$CKPT_DIR" == /* ]] || ivgr_die "CKPT_DIR must be an absolute path (got '$CKPT_DIR')"
    SYNTHETIC_NUM=${SYNTHETIC_NUM:-2000}   # samples in the synthetic set (90% train, 2 SFT rows each)
    SYNTHETIC_SEED=${SYNTHETIC_SEED:-0}
    DATA_DIR=$(ivgr_abspath "$DATA_DIR")
    cd "$IVGR_ROOT" || exit 1
    if [[ "$mode" == print ]]; then sft_resolve_data 0; else sft_resolve_data 1; fi
    sft_build_overrides
    if [[ "$mode" == print ]]; then
        printf '%s\n' "${SFT_OVERRIDES[@]}" "$@"
        return 0
    fi
    if [[ "$mode" == dry-run ]]; then
        ivgr_log "preflight: $PYTHON -m recipe.ivgr.sft_preflight (${#SFT_OVERRIDES[@]} script overrides + $# extra)"
        exec "$PYTHON" -m recipe.ivgr.sft_preflight "${SFT_OVERRIDES[@]}" "$@"
    fi
    if [[ "$PREFLIGHT" == 1 ]]; then
        ivgr_log "preflight first (PREFLIGHT=0 skips it)"
        "$PYTHON" -m recipe.ivgr.sft_preflight "${SFT_OVERRIDES[@]}" "$@" \
            || ivgr_die "preflight found problems (PROBLEM lines above); fix them, or PREFLIGHT=0 to launch anyway"
    fi
    gpus=$(sft_config_value trainer.n_gpus_per_node "${SFT_OVERRIDES[@]}" "$@") || ivgr_die "the config does not compose (run --dry-run)"
    CKPT_DIR=$(sft_config_value trainer.default_local_dir "${SFT_OVERRIDES[@]}" "$@")
    mkdir -p "$CKPT_DIR"
    ivgr_log "checkpoints: $CKPT_DIR (re-running this command resumes from the latest one)"
    ivgr_log "command: $PYTHON -m torch.distributed.run --standalone --nproc_per_node=$gpus -m verl.trainer.sft_trainer \\"
    printf '    %s \\\n' "--config-path=$SFT_CONFIG_DIR" "--config-name=$SFT_CONFIG_NAME" "${SFT_OVERRIDES[@]}" "$@" >&2
    "$PYTHON" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$gpus" \
        -m verl.trainer.sft_trainer "--config-path=$SFT_CONFIG_DIR" "--config-name=$SFT_CONFIG_NAME" \
        "${SFT_OVERRIDES[@]}" "$@" || ivgr_die "verl.trainer.sft_trainer failed"
    sft_finish
}
