#!/usr/bin/env bash
# The main job: the Walsh canister on the embedded IC host (no replica, no dfx). Builds the
# canister, installs it, uploads a model and its tokenizer through the upload API, generates
# through update sessions and prints the text.
#   scripts/run_local.sh                      # the built-in demo model (random weights: gibberish)
#   scripts/run_local.sh --model M.walsh --tokenizer tokenizer.json|meta.pkl --prompt "ROMEO:" \
#       [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--json]
# --json prints {"ids", "text", "calls": [{"method", "instructions"}], "decode_instructions_per_token"}.
set -euo pipefail
cd "$(dirname "$0")/.."

model="" tokenizer="" args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --tokenizer) tokenizer="$2"; shift 2 ;;
        --prompt|--max-tokens|--temperature|--top-k|--top-p|--seed) args+=("$1" "$2"); shift 2 ;;
        --json) args+=(--json); shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi
bash scripts/build_canister.sh --no-post-process >&2
cargo build --release -q -p host-compressor -p local-runner

if [[ -z "$model" ]]; then
    mkdir -p target/demo
    model=target/demo/demo.walsh
    tokenizer=target/demo/demo.tokenizer.json
    target/release/walsh demo-model -o "$model" >&2
elif [[ -z "$tokenizer" ]]; then
    echo "--model needs --tokenizer (a tokenizer.json or the training run's meta.pkl)" >&2
    exit 2
fi

exec target/release/walsh-local --wasm target/wasm32-unknown-unknown/canister/walsh_canister.wasm \
    --model "$model" --tokenizer "$tokenizer" "${args[@]}"
