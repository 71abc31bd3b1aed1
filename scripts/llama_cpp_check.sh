#!/usr/bin/env bash
# `just llama-cpp-check`: `ssr selfplay --policy openai` against llama-cpp-python's
# OpenAI-compatible server (`python -m llama_cpp.server`), a server that refuses a
# `prompt` of token ids. Shows the policy detecting it once and sending text prompts,
# transcripts with `exact_tokens: false`, and no episode ending in a model failure.
# Outside `just test` and CI: pip builds llama.cpp from source (about 3.5 minutes on
# 2 cores). The venv is kept in target/llama-cpp-venv for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
model=${SSR_MODEL:-$root/.models/SmolLM2-135M-Instruct.Q4_1.gguf}
venv=$root/target/llama-cpp-venv
[ -f "$model" ] || { echo "no model at $model: run \`just setup\`" >&2; exit 1; }
if ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
    python3 -m venv "$venv"
    echo "installing llama-cpp-python[server] (builds llama.cpp from source, minutes)..."
    "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
fi
cargo build -q --bin ssr
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$port" \
    --n_ctx 8192 --model_alias smollm2 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.5
done
cat >"$work/config.toml" <<'TOML'
seed = 1
rounds = 1
injector_rollouts = 1
procedural_per_round = 1
attempts_per_bug = 2
max_higher_order_per_round = 0
max_concurrent_episodes = 2
temperature = 0.7
[injector_budgets]
max_turns = 2
max_new_tokens = 96
context_tokens = 8192
[solver_budgets]
max_turns = 2
max_new_tokens = 96
context_tokens = 8192
TOML
echo "== ssr selfplay --policy openai against llama_cpp.server on port $port"
set +e
"$root/target/debug/ssr" selfplay --policy openai --base-url "http://127.0.0.1:$port/v1" \
    --model-name smollm2 --model "$model" --config "$work/config.toml" --out "$work/run"
status=$?
set -e
echo "== exit status $status"
if ! kill -0 $server 2>/dev/null; then
    echo "== llama_cpp.server died during the run; the end of its log:"
    grep -v '^llama_\|^load\|^print_info' "$work/server.log" | tail -5
fi
echo "== episodes (end, reward, infra) and their transcripts' endpoint and exact_tokens"
python3 - "$work/run" <<'PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
scored_failure = inexact_missing = 0
for line in (run / "episodes.jsonl").read_text().splitlines():
    e = json.loads(line)
    t = json.loads((run / "transcripts" / f"{e['episode_id']}.json").read_text())
    print(f"{e['episode_id']:>14}  end={e['end']:<16} reward={e['reward']!s:<6} endpoint={t['endpoint']} exact_tokens={t['exact_tokens']} infra={e.get('infra')}")
    # A model failure must never be a reward; a finished episode must be text-prompted.
    scored_failure += e["end"] == "policy_error" and e["reward"] is not None
    inexact_missing += e["end"] != "policy_error" and (t["exact_tokens"] or t["endpoint"] != "completions-text")
print(f"model failures scored: {scored_failure}; finished episodes not on text prompts: {inexact_missing}")
sys.exit(1 if scored_failure or inexact_missing else 0)
PY
[ "$status" -eq 0 ]
echo "== llama-cpp-check passed"
