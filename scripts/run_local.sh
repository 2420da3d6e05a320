#!/usr/bin/env bash
# The main job: generate text with a Walsh model.
#   scripts/run_local.sh                      # the built-in demo model (random weights: gibberish)
#   scripts/run_local.sh --model M.walsh --tokenizer tokenizer.json|meta.pkl --prompt "ROMEO:" [--max-tokens N] [--temperature T] [--seed S] [--json]
# Today this runs the native engine. Running through the canister on the embedded IC host comes
# with the canister (see README, "Status").
set -euo pipefail
cd "$(dirname "$0")/.."

model="" tokenizer="" prompt="Once upon a time" max_tokens=60 temperature=0.8 seed=0 json=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --tokenizer) tokenizer="$2"; shift 2 ;;
        --prompt) prompt="$2"; shift 2 ;;
        --max-tokens) max_tokens="$2"; shift 2 ;;
        --temperature) temperature="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --json) json=(--json); shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cargo build --release -q -p host-compressor
walsh=target/release/walsh

if [[ -z "$model" ]]; then
    model=target/demo/demo.walsh
    tokenizer=target/demo/demo.tokenizer.json
    mkdir -p target/demo
    "$walsh" demo-model -o "$model" >&2
elif [[ -z "$tokenizer" ]]; then
    echo "--model needs --tokenizer (a tokenizer.json or the training run's meta.pkl)" >&2
    exit 2
fi

exec "$walsh" generate "$model" --tokenizer "$tokenizer" --prompt "$prompt" \
    --max-tokens "$max_tokens" --temperature "$temperature" --seed "$seed" "${json[@]}"
