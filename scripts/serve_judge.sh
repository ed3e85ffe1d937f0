#!/usr/bin/env bash
# Start the iVGR judge: an OpenAI-compatible vLLM server, in the background, and wait until it serves.
#
#   bash scripts/serve_judge.sh [extra vllm serve flags ...]
#   CUDA_VISIBLE_DEVICES=4,5,6,7 TP=4 bash scripts/serve_judge.sh          # pick the judge's GPUs
#   JUDGE_MODEL_PATH=Qwen/Qwen2.5-7B-Instruct TP=1 bash scripts/serve_judge.sh   # a small judge
#
# Prints, once /health and /v1/models answer:
#   export JUDGE_BASE_URL=http://<this host>:<PORT>/v1
#   export JUDGE_MODEL=<SERVED_NAME>
# which the train scripts read. The server keeps running after this script exits (FOREGROUND=1
# waits on it instead); stop it with `kill $(cat <LOG_DIR>/judge_<PORT>.pid)`. Re-running with the
# same PORT while that judge is up only prints the exports again. Exit status 1 when vLLM dies or
# does not answer within WAIT_TIMEOUT seconds (the log's last lines are shown).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

JUDGE_MODEL_PATH=${JUDGE_MODEL_PATH:-Qwen/Qwen2.5-72B-Instruct}  # the paper's judge (HF id or folder)
SERVED_NAME=${SERVED_NAME:-judge}          # the name clients ask for (JUDGE_MODEL)
TP=${TP:-4}                                # tensor parallel GPUs (72B bf16: 4 x 80 GB)
DP=${DP:-1}                                # data-parallel replicas inside this server (TP x DP GPUs)
PORT=${PORT:-8000}
HOST=${HOST:-0.0.0.0}                      # bind address; 0.0.0.0 = reachable from the training nodes
ADVERTISE_HOST=${ADVERTISE_HOST:-}         # address printed in JUDGE_BASE_URL (default: this host's first IP)
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.90}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-16384}      # judge prompts hold two reasoning chains of up to 4096 tokens
MAX_NUM_SEQS=${MAX_NUM_SEQS:-256}          # concurrent requests per replica (the trainer sends up to 128 + reward workers)
WAIT_TIMEOUT=${WAIT_TIMEOUT:-1800}         # seconds to wait for the first answer (a 72B model loads in minutes)
LOG_DIR=${LOG_DIR:-$ROOT/outputs/judge}
VLLM_BIN=${VLLM_BIN:-vllm}
FOREGROUND=${FOREGROUND:-0}
JUDGE_API_KEY=${JUDGE_API_KEY:-}           # optional: the server then requires "Authorization: Bearer <key>"

log() { printf '[serve_judge] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -z "$ADVERTISE_HOST" ]]; then
    ADVERTISE_HOST=$(hostname -I 2>/dev/null | awk '{print $1}')
    ADVERTISE_HOST=${ADVERTISE_HOST:-$(hostname)}
fi
base_url="http://$ADVERTISE_HOST:$PORT/v1"
local_url="http://127.0.0.1:$PORT"
log_file="$LOG_DIR/judge_$PORT.log"
pid_file="$LOG_DIR/judge_$PORT.pid"

# GET url -> body on stdout; non-zero status when unreachable or not 2xx
http_get() {
    local auth=()
    [[ -n "$JUDGE_API_KEY" ]] && auth=(-H "Authorization: Bearer $JUDGE_API_KEY")
    curl -fsS --max-time 5 "${auth[@]}" "$1" 2>/dev/null
}

serves_name() {  # does /v1/models list SERVED_NAME?
    local body
    body=$(http_get "$local_url/v1/models") || return 1
    [[ "$body" == *"\"id\":\"$SERVED_NAME\""* || "$body" == *"\"id\": \"$SERVED_NAME\""* ]]
}

print_exports() {
    log "judge ready: $JUDGE_MODEL_PATH as '$SERVED_NAME' on port $PORT$1"
    echo "export JUDGE_BASE_URL=$base_url"
    echo "export JUDGE_MODEL=$SERVED_NAME"
    [[ -n "$JUDGE_API_KEY" ]] && log "clients also need JUDGE_API_KEY in their environment (every training node)"
    return 0
}

command -v curl >/dev/null || die "curl is needed to probe the server"
if http_get "$local_url/health" >/dev/null; then
    serves_name || die "port $PORT already answers but does not serve '$SERVED_NAME' (another server? set PORT)"
    print_exports " (already running)"
    exit 0
fi
command -v "$VLLM_BIN" >/dev/null || die "'$VLLM_BIN' not found: pip install -r requirements.txt (vLLM comes with verl[vllm])"

mkdir -p "$LOG_DIR"
args=(serve "$JUDGE_MODEL_PATH" --host "$HOST" --port "$PORT" --served-model-name "$SERVED_NAME"
      --tensor-parallel-size "$TP" --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION"
      --max-model-len "$MAX_MODEL_LEN" --max-num-seqs "$MAX_NUM_SEQS" --enable-prefix-caching)
(( DP > 1 )) && args+=(--data-parallel-size "$DP")
[[ -n "$JUDGE_API_KEY" ]] && args+=(--api-key "$JUDGE_API_KEY")
args+=("$@")

log "starting: $VLLM_BIN ${args[*]//$JUDGE_API_KEY/***}"
log "log: $log_file"
nohup "$VLLM_BIN" "${args[@]}" >"$log_file" 2>&1 &
pid=$!
echo "$pid" >"$pid_file"

start=$SECONDS
until http_get "$local_url/health" >/dev/null && serves_name; do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" && status=0 || status=$?
        tail -n 30 "$log_file" >&2 || true
        rm -f "$pid_file"
        die "vLLM exited (status $status) before serving; log: $log_file"
    fi
    if (( SECONDS - start > WAIT_TIMEOUT )); then
        tail -n 30 "$log_file" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$pid_file"
        die "no answer from $local_url/v1/models within ${WAIT_TIMEOUT}s; stopped pid $pid; log: $log_file"
    fi
    sleep 2
done

print_exports " after $((SECONDS - start)) s (pid $pid, log $log_file; stop: kill \$(cat $pid_file))"
if [[ "$FOREGROUND" == 1 ]]; then
    log "FOREGROUND=1: waiting on the server (Ctrl-C stops it)"
    trap 'kill "$pid" 2>/dev/null || true' INT TERM
    wait "$pid"
fi
