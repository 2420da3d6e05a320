#!/usr/bin/env bash
# The instruction benchmark: the canister on the embedded IC host (IC cost table), serving the
# gpt2-bench model from ../shared/testdata. Builds the canister twice — with SIMD128 (the
# product) and without (the same kernels' plain-Rust twins compiled to scalar wasm) — and
# prints the figures of both, and their ratio, so the SIMD gain is measured in one run. Memory is
# charged as the IC does since mid-2026 (page charges); the SIMD build is also measured under the
# rules before (--accounting ic-2025), for comparison.
#   scripts/bench.sh [--json] [--model M.walsh --tokenizer tokenizer.json]
# Figures (per build): decode_instructions_per_token (greedy, context ~60),
# decode_instructions_per_token_ctx250 (context 247: the model's block is 256),
# prefill_instructions_per_token (64-token prompt), walsh_bytes, heap_bytes_after_load
# (wasm memory after activating the model, no tokenizer yet), heap_bytes_with_tokenizer,
# load_instructions (upload_finish: verify, parse, repack), post_upgrade_instructions (reload of
# model and tokenizer), query_max_tokens (one generate query, 4-token prompt),
# update_tokens_per_2b (tokens per 2 B instructions, one round: the page charges of a session call,
# then decoding), messages (upload_chunk, activation, generate_query, session_call: each one
# message's instructions, page_instructions, pages_accessed, pages_written). JSON: the SIMD build's
# figures, "scalar" and "ic_2025" (the SIMD build under the 2025 rules) beside them.
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
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -f "$model" ]] || { echo "no model at $model (the benchmark uses ../shared/testdata/gpt2-bench)" >&2; exit 2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p local-runner --bin walsh-bench >&2
bash scripts/build_canister.sh --no-post-process >&2
# Copies, so that another build into the same target directory cannot change them mid-run.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$target_dir/wasm32-unknown-unknown/canister/walsh_canister.wasm" "$work/simd.wasm"
cp "$target_dir/release/walsh-bench" "$work/walsh-bench"
# The scalar build: same flags without +simd128, in its own target directory.
CARGO_TARGET_DIR=$target_dir/bench-scalar RUSTFLAGS='--cfg getrandom_backend="custom" -C llvm-args=-disable-lsr' \
    cargo build -q -p walsh-canister --lib --target wasm32-unknown-unknown --profile canister >&2
cp "$target_dir/bench-scalar/wasm32-unknown-unknown/canister/walsh_canister.wasm" "$work/scalar.wasm"

echo "measuring the SIMD build..." >&2
simd=$("$work/walsh-bench" --wasm "$work/simd.wasm" --model "$model" --tokenizer "$tokenizer")
echo "measuring the SIMD build under the 2025 accounting..." >&2
simd_2025=$("$work/walsh-bench" --wasm "$work/simd.wasm" --model "$model" --tokenizer "$tokenizer" --accounting ic-2025)
echo "measuring the scalar build..." >&2
scalar=$("$work/walsh-bench" --wasm "$work/scalar.wasm" --model "$model" --tokenizer "$tokenizer")

python3 - "$json" "$simd" "$scalar" "$simd_2025" <<'PY'
import json, sys
as_json, simd, scalar, simd_2025 = sys.argv[1] == "1", json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
out = dict(simd)
out["scalar"] = scalar
out["ic_2025"] = simd_2025
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
    print("%-40s %16s %16s %16s %12s" % ("", "SIMD", "SIMD, ic-2025", "scalar", "target"))
    for label, key, target in rows:
        t = "" if target is None else ("<= %.3g" % target)
        if key == "query_max_tokens":
            t = ">= 150"
        cells = ["{:,.0f}".format(f[key]) for f in (simd, simd_2025, scalar)]
        print("%-40s %16s %16s %16s %12s" % (label, *cells, t))
    print()
    print("memory pages (2026 rules, SIMD build)    %16s %16s %10s %10s" % ("instructions", "page charges", "accessed", "written"))
    for name, m in simd["messages"].items():
        print("%-40s %16s %16s %10d %10d" % (name, "{:,}".format(m["instructions"]), "{:,}".format(m["page_instructions"]), m["pages_accessed"], m["pages_written"]))
    print("walsh file: {:,} bytes; SIMD gain: decode x{}, prefill x{}".format(simd["walsh_bytes"], out["simd_gain_decode"], out["simd_gain_prefill"]))
PY
