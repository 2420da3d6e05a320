#!/usr/bin/env bash
# The instruction benchmark: the canister on the embedded IC host (IC cost table), serving the
# gpt2-bench model from ../shared/testdata. Builds the canister twice — with SIMD128 (the
# product) and without (the same kernels' plain-Rust twins compiled to scalar wasm) — and
# prints the figures of both, and their ratio, so the SIMD gain is measured in one run.
#   scripts/bench.sh [--json] [--model M.walsh --tokenizer tokenizer.json]
# Figures (per build): decode_instructions_per_token (greedy, context ~60),
# decode_instructions_per_token_ctx250 (context 247: the model's block is 256),
# prefill_instructions_per_token (64-token prompt), walsh_bytes, heap_bytes_after_load
# (wasm memory after activating the model, no tokenizer yet), heap_bytes_with_tokenizer,
# load_instructions (upload_finish: verify, parse, repack), post_upgrade_instructions (reload of
# model and tokenizer), query_max_tokens (one generate query, 4-token prompt),
# update_tokens_per_2b (tokens per 2 B instructions, one round).
set -euo pipefail
cd "$(dirname "$0")/.."

json=0
model=../shared/testdata/gpt2-bench/model.walsh
tokenizer=../shared/testdata/gpt2-bench/tokenizer.json
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) json=1; shift ;;
        --model) model="$2"; shift 2 ;;
        --tokenizer) tokenizer="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -f "$model" ]] || { echo "no model at $model (the benchmark uses ../shared/testdata/gpt2-bench)" >&2; exit 2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi
cargo build --release -q -p local-runner --bin walsh-bench >&2
bash scripts/build_canister.sh --no-post-process >&2
simd_wasm=target/wasm32-unknown-unknown/canister/walsh_canister.wasm
scalar_wasm=target/bench-scalar/wasm32-unknown-unknown/canister/walsh_canister.wasm
# The scalar build: same flags without +simd128, in its own target directory.
CARGO_TARGET_DIR=target/bench-scalar RUSTFLAGS='--cfg getrandom_backend="custom" -C llvm-args=-disable-lsr' \
    cargo build -q -p walsh-canister --lib --target wasm32-unknown-unknown --profile canister >&2

echo "measuring the SIMD build..." >&2
simd=$(target/release/walsh-bench --wasm "$simd_wasm" --model "$model" --tokenizer "$tokenizer")
echo "measuring the scalar build..." >&2
scalar=$(target/release/walsh-bench --wasm "$scalar_wasm" --model "$model" --tokenizer "$tokenizer")

python3 - "$json" "$simd" "$scalar" <<'PY'
import json, sys
as_json, simd, scalar = sys.argv[1] == "1", json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = dict(simd)
out["scalar"] = scalar
out["simd_gain_decode"] = round(scalar["decode_instructions_per_token"] / simd["decode_instructions_per_token"], 2)
out["simd_gain_prefill"] = round(scalar["prefill_instructions_per_token"] / simd["prefill_instructions_per_token"], 2)
if as_json:
    print(json.dumps(out))
else:
    rows = [
        ("decode, context %d (instr/token)" % simd["decode_context"], "decode_instructions_per_token", 30e6),
        ("decode, context %d (instr/token)" % simd["decode_context_long"], "decode_instructions_per_token_ctx250", 35e6),
        ("prefill, %d-token prompt (instr/token)" % simd["prefill_tokens"], "prefill_instructions_per_token", 15e6),
        ("model activation (instr)", "load_instructions", 2e9),
        ("post_upgrade reload (instr)", "post_upgrade_instructions", None),
        ("heap after load (bytes)", "heap_bytes_after_load", 1.3 * simd["walsh_bytes"]),
        ("heap with tokenizer (bytes)", "heap_bytes_with_tokenizer", None),
        ("tokens per generate query", "query_max_tokens", None),
        ("tokens per 2 B instructions", "update_tokens_per_2b", None),
    ]
    print("%-40s %16s %16s %12s" % ("", "SIMD", "scalar", "target"))
    for label, key, target in rows:
        t = "" if target is None else ("<= %.3g" % target)
        if key == "query_max_tokens":
            t = ">= 150"
        print("%-40s %16s %16s %12s" % (label, "{:,.0f}".format(simd[key]), "{:,.0f}".format(scalar[key]), t))
    print("walsh file: {:,} bytes; SIMD gain: decode x{}, prefill x{}".format(simd["walsh_bytes"], out["simd_gain_decode"], out["simd_gain_prefill"]))
PY
