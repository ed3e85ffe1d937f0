# shellcheck shell=bash source-path=SCRIPTDIR
# Shared body of scripts/sft_ivgr_*.sh (sourced, never run on its own): cold-start SFT on verl 0.9.1's
# own SFT trainer (torchrun -m verl.trainer.sft_trainer, FSDP). The calling script sets its defaults
# first (BASE_MODEL, sizes, BOX_FRAME, ...), then calls `sft_launch "$@"`.
#
#   bash scripts/sft_ivgr_7b.sh [key=value ...]               # preflight, SFT (resumes from CKPT_DIR), HF folder
#   bash scripts/sft_ivgr_7b.sh --dry-run [key=value ...]     # preflight only: no GPU (python -m recipe.ivgr.sft_preflight)
#   bash scripts/sft_ivgr_7b.sh --print-overrides [key=value ...]   # the Hydra overrides, one per line
#
# Every argument after the mode is a Hydra override of verl's trainer/config/sft_trainer_engine.yaml,
# appended after the script's own, so it wins. The RL stage's MODEL_PATH is printed at the end:
# $CKPT_DIR/hf_final (a link to global_step_N/huggingface, a complete Hugging Face model folder).

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"   # ivgr_log / ivgr_die / ivgr_quote / ivgr_abspath / lists

# The Hydra overrides for verl.trainer.sft_trainer (array SFT_OVERRIDES), from the variables.
sft_build_overrides() {
    local model=$BASE_MODEL
    [[ -e "$(ivgr_abspath "$model")" ]] && model=$(ivgr_abspath "$model")
    local contents="[model,optimizer,extra]"
    [[ "$SAVE_HF_MODEL" == 1 ]] && contents="[model,optimizer,extra,hf_model]"
    local val=null val_freq=-1
    if [[ -n "$VAL_FILES" ]]; then val=$(ivgr_file_list "$VAL_FILES"); val_freq=$TEST_FREQ; fi
    SFT_OVERRIDES=(
        "data.train_files=$(ivgr_file_list "$TRAIN_FILES")"
        "data.val_files=$val"
        "data.messages_key=messages"
        "data.pad_mode=no_padding"
        "data.train_batch_size=$TRAIN_BATCH_SIZE"
        "data.micro_batch_size_per_gpu=$MICRO_BATCH_SIZE"
        "data.use_dynamic_bsz=true"
        "data.max_token_len_per_gpu=$MAX_TOKENS_PER_GPU"
        "data.max_length=$MAX_LENGTH"
        "data.truncation=$TRUNCATION"
        "data.num_workers=$NUM_WORKERS"
        "model.path=$(ivgr_quote "$model")"
        "model.use_remove_padding=true"
        "model.enable_gradient_checkpointing=true"
        "engine.param_offload=$OFFLOAD"
        "engine.optimizer_offload=$OFFLOAD"
        "engine.ulysses_sequence_parallel_size=$SP"
        "optim.lr=$LR"
        "optim.lr_warmup_steps_ratio=$WARMUP_RATIO"
        "optim.lr_scheduler_type=cosine"
        "optim.weight_decay=$WEIGHT_DECAY"
        "optim.clip_grad=1.0"
        "checkpoint.save_contents=$contents"
        "checkpoint.load_contents=[model,optimizer,extra]"
        "trainer.nnodes=1"
        "trainer.n_gpus_per_node=$GPUS_PER_NODE"
        "trainer.total_epochs=$EPOCHS"
        "trainer.save_freq=$SAVE_FREQ"
        "trainer.test_freq=$val_freq"
        "trainer.max_ckpt_to_keep=$MAX_CKPT_TO_KEEP"
        "trainer.resume_mode=auto"
        "trainer.default_local_dir=$(ivgr_quote "$CKPT_DIR")"
        "trainer.project_name=$(ivgr_quote "$PROJECT")"
        "trainer.experiment_name=$(ivgr_quote "$EXPERIMENT")"
        "trainer.logger=$(ivgr_logger_list "$LOGGER")"
    )
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
    local mode=train
    case "${1:-}" in
        --dry-run) mode=dry-run; shift ;;
        --print-overrides) mode=print; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | grep -v '^# shellcheck' >&2; exit 0 ;;
    esac
    [[ "$CKPT_DIR" == /* ]] || ivgr_die "CKPT_DIR must be an absolute path (got '$CKPT_DIR')"
    [[ -n "$TRAIN_FILES" ]] || ivgr_die "TRAIN_FILES is empty: prepare SFT data first, e.g. python -m data_prep.ivgr_sft35k \
--input ivgr_sft35k.json --image-root DIR --box-frame $BOX_FRAME --out data/sft/ivgr_sft35k.parquet (scripts/README.md)"
    cd "$IVGR_ROOT" || exit 1
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
    mkdir -p "$CKPT_DIR"
    ivgr_log "checkpoints: $CKPT_DIR (re-running this command resumes from the latest one)"
    ivgr_log "command: $PYTHON -m torch.distributed.run --standalone --nproc_per_node=$GPUS_PER_NODE -m verl.trainer.sft_trainer \\"
    printf '    %s \\\n' "${SFT_OVERRIDES[@]}" "$@" >&2
    "$PYTHON" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$GPUS_PER_NODE" \
        -m verl.trainer.sft_trainer "${SFT_OVERRIDES[@]}" "$@" || ivgr_die "verl.trainer.sft_trainer failed"
    sft_finish
}
