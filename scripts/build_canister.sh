#!/usr/bin/env bash
# Builds the Walsh canister: target/wasm32-unknown-unknown/canister/walsh_canister.wasm (raw; under
# $CARGO_TARGET_DIR when set) and, unless --no-post-process, target/canister/walsh_canister.wasm with
# the candid:service metadata (ic-wasm) and wasm-opt -O3 applied when those tools are installed (npm:
# @icp-sdk/ic-wasm-linux-x64; apt: binaryen), and target/canister/walsh_canister.wasm.gz, the module
# to deploy (gzip -9n: reproducible, and under the 2 MiB ingress limit, so it installs in one message).
set -euo pipefail
cd "$(dirname "$0")/.."

post_process=1
[[ "${1:-}" == "--no-post-process" ]] && post_process=0

# The flags (SIMD128, the getrandom cfg, -disable-lsr) are the target's in .cargo/config.toml, as
# for test_support::canister_wasm(); RUSTFLAGS from the environment would replace them, so it is
# cleared.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo build -p walsh-canister --lib --target wasm32-unknown-unknown --profile canister
raw=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/canister/walsh_canister.wasm
echo "built $raw ($(stat -c %s "$raw") bytes)"
[[ $post_process == 1 ]] || exit 0

mkdir -p target/canister
out=target/canister/walsh_canister.wasm
cp "$raw" "$out"
if command -v wasm-opt > /dev/null; then
    wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-reference-types --enable-sign-ext \
        --enable-nontrapping-float-to-int --enable-multivalue --enable-mutable-globals "$out" -o "$out"
else
    echo "note: wasm-opt not found (apt-get install binaryen); skipping -O3"
fi
# The npm package ships the binary without putting it on PATH.
ic_wasm=$(command -v ic-wasm || true)
if [[ -z "$ic_wasm" ]] && command -v npm > /dev/null; then
    candidate="$(npm root -g 2> /dev/null)/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm"
    [[ -x "$candidate" ]] && ic_wasm="$candidate"
fi
if [[ -n "$ic_wasm" ]]; then
    "$ic_wasm" "$out" -o "$out" shrink
    "$ic_wasm" "$out" -o "$out" metadata candid:service -f canister/walsh.did -v public
else
    echo "note: ic-wasm not found (npm install -g @icp-sdk/ic-wasm-linux-x64); the module carries no candid:service metadata"
fi
echo "built $out ($(stat -c %s "$out") bytes)"
gzip -9n < "$out" > "$out.gz.tmp" && mv "$out.gz.tmp" "$out.gz"
echo "built $out.gz ($(stat -c %s "$out.gz") bytes)"
