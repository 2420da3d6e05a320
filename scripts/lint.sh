#!/usr/bin/env bash
# Style and lints (CI runs this from scripts/test.sh): rustfmt with the committed rustfmt.toml,
# clippy with warnings as errors natively for the whole workspace (all targets: tests, benches,
# binaries), and for wasm32 with SIMD128 for the crates that run there (the engine, whose SIMD
# kernels only compile for that target, and the canister). Lint allowances are written in the
# code, next to what they allow, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== no import cycles between the engine's modules"
python3 scripts/module_cycles.py src

echo "== rustfmt"
cargo fmt --all --check

echo "== clippy, native (workspace, all targets)"
cargo clippy --workspace --all-targets -- -D warnings

echo "== clippy, wasm32-unknown-unknown + simd128 (engine, canister)"
# simd128 comes from .cargo/config.toml for this target (with the getrandom cfg); its own target
# directory keeps these flags from invalidating the other builds.
CARGO_TARGET_DIR=target/clippy-wasm32 cargo clippy -p walsh-engine -p walsh-canister --target wasm32-unknown-unknown -- -D warnings

echo "== clippy, wasm32-wasip1 + simd128 (the engine's unit tests, as scripts/test.sh runs them)"
CARGO_TARGET_DIR=target/wasip1-simd RUSTFLAGS="-C target-feature=+simd128" \
    cargo clippy -p walsh-engine --lib --tests --target wasm32-wasip1 -- -D warnings
