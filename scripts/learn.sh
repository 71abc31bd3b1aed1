#!/usr/bin/env bash
# The learning experiment as one command (`just learn`; issue 14): procedural bugs on an
# example repository, the held-out split, demonstrations from the training bugs only, a
# supervised warm start, held-out evaluations of the base and warm-started policies,
# self-play rounds with training from the warm start (split honoured, held-out
# evaluated every N rounds), a final evaluation, then the before/after table and the
# HTML report. Every step's output stays under one run directory; the first step that
# fails stops the pipeline, named. The table is built by scripts/learn_table.py.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/learn.sh [--quick] [--device auto|cpu|cuda[:N]] [--config FILE]
                        [--model GGUF] [--out DIR] [--json]

Runs the learning experiment: examples -> procedural bugs -> split -> demos (training
bugs only) -> SFT warm start -> held-out evaluation of the base and the warm start ->
self-play with training from the warm start -> final held-out evaluation -> the
before/after table and the HTML report.

  --quick          configs/learn-quick.toml: the smallest settings that run every step
  --device D       where the training steps run (passed to ssr selfplay; ssr sft trains
                   on the CPU); default: the config's (auto)
  --config FILE    the settings (default configs/learn.toml): a self-play settings file
                   followed by a [learn] table (the last table) for the pipeline
  --model GGUF     the base policy (default .models/SmolLM2-135M-Instruct.Q4_1.gguf)
  --out DIR        the run directory (default runs/learn-<time>); must not exist
  --json           print the summary as one JSON object on stdout
Progress goes to stderr. SSR_BIN names the ssr program (default target/release/ssr).
EOF
}

root="$(cd "$(dirname "$0")/.." && pwd)"
ssr="${SSR_BIN:-$root/target/release/ssr}"
config="" quick=0 device="" model="$root/.models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="" json=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --device) device="${2:?--device needs a value}"; shift ;;
    --config) config="${2:?--config needs a file}"; shift ;;
    --model) model="${2:?--model needs a file}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    --json) json=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "learn: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$config" ]]; then
  config="$root/configs/learn.toml"
  [[ $quick == 1 ]] && config="$root/configs/learn-quick.toml"
fi
[[ -x "$ssr" ]] || { echo "learn: no ssr program at $ssr (cargo build --release, or SSR_BIN)" >&2; exit 2; }
[[ -f "$config" ]] || { echo "learn: no config file $config" >&2; exit 2; }
[[ -f "$model" ]] || { echo "learn: no model $model (just setup fetches it)" >&2; exit 2; }
out="${out:-$root/runs/learn-$(date +%Y%m%d-%H%M%S)}"
[[ -e "$out" ]] && { echo "learn: $out exists; give a new --out" >&2; exit 2; }
mkdir -p "$out/logs" "$out/eval"
out="$(cd "$out" && pwd)"
started=$SECONDS

# The self-play part of the config (everything before `[learn]`) and the pipeline's
# settings, read with Python's TOML parser.
awk '/^\[learn\]/{exit} {print}' "$config" > "$out/selfplay.toml"
cp "$config" "$out/config.toml"
setting() {
  python3 -c 'import sys, tomllib; v = tomllib.load(open(sys.argv[1], "rb"))["learn"][sys.argv[2]]; print(str(v).lower() if isinstance(v, bool) else v)' \
    "$config" "$1" || { echo "learn: $config: [learn] lacks '$1'" >&2; exit 2; }
}
repo_name=$(setting repo); bugs_removal=$(setting bugs_removal); bugs_history=$(setting bugs_history)
inject_seed=$(setting inject_seed); fraction=$(setting heldout_fraction); split_seed=$(setting split_seed)
sft_steps=$(setting sft_steps); sft_lr=$(setting sft_lr); k=$(setting heldout_attempts)
inj_eps=$(setting heldout_injector_episodes); every=$(setting heldout_every)
eval_train=$(setting eval_train_bugs)

n_steps=11 i=0
[[ "$eval_train" == true ]] && n_steps=14
# Runs one step: stdout to logs/NAME.json, stderr to logs/NAME.log; a failure stops the
# pipeline with the step's name and the end of its log.
step() {
  local name="$1"; shift
  i=$((i + 1))
  echo "[learn $((SECONDS - started))s] step $i/$n_steps: $name" >&2
  if ! "$@" > "$out/logs/$name.json" 2> "$out/logs/$name.log"; then
    echo "learn: step '$name' failed; its log ($out/logs/$name.log) ends:" >&2
    tail -n 20 "$out/logs/$name.log" >&2
    exit 1
  fi
}
dev=(); [[ -n "$device" ]] && dev=(--device "$device")
repo="$out/examples/$repo_name"
common=(--config "$out/selfplay.toml" --model "$model")

step examples "$ssr" examples create --out "$out/examples" --json
[[ -d "$repo" ]] || { echo "learn: step 'examples' made no repository '$repo_name'" >&2; exit 1; }
# Procedural bugs, each strategy into its own store, then one store of both.
inject() {
  local strategy="$1" count="$2"
  mkdir -p "$out/bugs"
  [[ "$count" == 0 ]] && return 0
  "$ssr" inject --repo "$repo" --strategy "$strategy" --count "$count" --seed "$inject_seed" \
    --out "$out/bugs-$strategy" --json && cp -r "$out/bugs-$strategy"/. "$out/bugs/"
}
step inject-removal inject removal "$bugs_removal"
step inject-history inject history "$bugs_history"
step split "$ssr" split --repo "$repo" --out "$out/split.json" --seed "$split_seed" \
  --fraction "$fraction" --bugs "$out/bugs" --ids "$out/heldout-ids.txt" --json
# The training bugs: every stored bug the split does not hold out.
mkdir -p "$out/train-bugs"
for b in "$out/bugs"/*/; do
  id="$(basename "$b")"
  grep -qxF "$id" "$out/heldout-ids.txt" || cp -r "$b" "$out/train-bugs/$id"
done
n_held=$(grep -cv '^\s*\(#\|$\)' "$out/heldout-ids.txt" || true)
n_train=$(find "$out/train-bugs" -mindepth 1 -maxdepth 1 -type d | wc -l)
if [[ "$n_held" == 0 || "$n_train" == 0 ]]; then
  echo "learn: step 'split' left $n_held held-out and $n_train training bugs; both must be > 0 (more bugs, another split_seed or heldout_fraction)" >&2
  exit 1
fi
step demos "$ssr" demos --bugs "$out/bugs" --repo "$repo" --exclude "$out/heldout-ids.txt" \
  --out "$out/demos.jsonl" "${common[@]}" --json
step sft "$ssr" sft --demos "$out/demos.jsonl" --model "$model" --out "$out/warm" \
  --steps "$sft_steps" --lr "$sft_lr" --json

# One held-out (or training-bug) evaluation of a policy: eval/NAME.json.
evaluate() {
  local name="$1" bugs="$2"; shift 2
  local split=(--split "$out/split.json")
  [[ "$bugs" == "$out/train-bugs" ]] && split=()
  "$ssr" heldout --policy embedded --bugs "$bugs" "${split[@]}" --repo "$repo" \
    --attempts "$k" --injector-episodes "$inj_eps" "${common[@]}" "$@" --json \
    | tee "$out/eval/$name.json"
}
step eval-base evaluate base "$out/bugs"
step eval-warm evaluate warm "$out/bugs" --weights "$out/warm"
step selfplay "$ssr" selfplay --repo "$repo" --policy embedded "${common[@]}" --weights "$out/warm" \
  --train "${dev[@]}" --split "$out/split.json" --heldout-bugs "$out/bugs" \
  --heldout-every "$every" --heldout-attempts "$k" --out "$out/selfplay" --json
# The newest round checkpoint is the policy after RL (none: no step trained).
after="$(ls -d "$out/selfplay/checkpoints"/round-* 2>/dev/null | tail -n 1 || true)"
[[ -n "$after" ]] || { echo "learn: self-play wrote no checkpoint (see $out/logs/selfplay.log)" >&2; exit 1; }
step eval-rl evaluate rl "$out/bugs" --weights "$after"
if [[ "$eval_train" == true ]]; then
  step train-base evaluate train-base "$out/train-bugs"
  step train-warm evaluate train-warm "$out/train-bugs" --weights "$out/warm"
  step train-rl evaluate train-rl "$out/train-bugs" --weights "$after"
fi
step report "$ssr" report "$out/selfplay" --json

table=(python3 "$root/scripts/learn_table.py" "$out" --seconds "$((SECONDS - started))")
if [[ $json == 1 ]]; then "${table[@]}" --json; else "${table[@]}"; fi
"${table[@]}" --json > "$out/summary.json"
echo "[learn $((SECONDS - started))s] done: $out (report: $out/selfplay/report.html)" >&2
