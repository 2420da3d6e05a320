#!/usr/bin/env bash
# The project's test command (README, CI): the engine and the canister must build for wasm32,
# then every test runs, the fuzz targets build, and the style and lints pass (scripts/lint.sh).
# Reference tests read ../shared/testdata; without ../shared they skip with a message, in CI they
# fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

echo "== the engine's unit tests on wasm32 (wasmtime via Python): with simd128, then without"
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi
if ! python3 -c "import wasmtime" 2> /dev/null; then
    echo "installing the wasmtime Python package (runs the wasm32 kernel tests)" >&2
    python3 -m pip install --quiet --user wasmtime || python3 -m pip install --quiet wasmtime
fi
# With simd128 the SIMD kernels are tested bit for bit against their twins; without it the twins
# themselves run on wasm32 (as the scalar canister build does). Each has its own target directory,
# so that switching RUSTFLAGS does not rebuild the other.
export CARGO_TARGET_WASM32_WASIP1_RUNNER="python3 $PWD/scripts/wasi_run.py"
CARGO_TARGET_DIR=target/wasip1-simd RUSTFLAGS="-C target-feature=+simd128" \
    cargo test -p walsh-engine --lib --target wasm32-wasip1
CARGO_TARGET_DIR=target/wasip1-scalar RUSTFLAGS="" \
    cargo test -p walsh-engine --lib --target wasm32-wasip1
unset CARGO_TARGET_WASM32_WASIP1_RUNNER

echo "== engine for wasm32-unknown-unknown (simd128 from .cargo/config.toml)"
cargo build -p walsh-engine --target wasm32-unknown-unknown --release

echo "== frontend: the page the canister embeds (frontend/dist)"
if command -v npm > /dev/null; then
    if [[ ! frontend/node_modules/.package-lock.json -nt frontend/package-lock.json ]]; then
        (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    fi
    (cd frontend && npm run build)
elif [[ -n "${CI:-}" ]]; then
    echo "error: npm is needed to build the page" >&2; exit 1
else
    echo "note: npm not found; the canister embeds a placeholder page"
fi

echo "== canister"
# With wasm-opt and ic-wasm installed (CI installs them) the tests run the deployable module
# (optimized, candid:service metadata); without them, the raw build.
bash scripts/build_canister.sh
if [[ -f target/canister/walsh_canister.wasm ]]; then
    export WALSH_CANISTER_WASM="$PWD/target/canister/walsh_canister.wasm"
else
    export WALSH_CANISTER_WASM="$PWD/target/wasm32-unknown-unknown/canister/walsh_canister.wasm"
fi
echo "testing $WALSH_CANISTER_WASM"

echo "== tests"
# host-compressor/tests/deploy.rs also runs icp-cli 1.5 (npm install -g @icp-sdk/icp-cli-linux-x64@1.5.0,
# as .ci/run does) and the gzipped module built above; without icp-cli it skips, except in CI.
cargo test --workspace

echo "== the local replica (ic-host serve) with the real clients: agent-js and icp-cli"
bash ic-host/tests/clients/run.sh

echo "== the page in a browser (Chromium) through ic-host serve's gateway"
bash frontend/tests/run.sh

echo "== fuzz targets build (stable, without the fuzzer's instrumentation: cargo +nightly fuzz adds that)"
cargo build --manifest-path fuzz/Cargo.toml --bins

echo "== style and lints"
bash scripts/lint.sh
