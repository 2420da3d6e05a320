#!/usr/bin/env bash
# The project's test command (README, CI): the engine and the canister must build for wasm32,
# then every test runs. Reference tests read ../shared/testdata; without ../shared they skip with
# a message, in CI they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

echo "== engine for wasm32-unknown-unknown"
cargo build -p walsh-engine --target wasm32-unknown-unknown --release

echo "== canister"
bash scripts/build_canister.sh --no-post-process
export WALSH_CANISTER_WASM="$PWD/target/wasm32-unknown-unknown/canister/walsh_canister.wasm"

echo "== tests"
cargo test --workspace
