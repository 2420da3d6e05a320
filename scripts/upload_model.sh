#!/usr/bin/env bash
# Uploads a model and its tokenizer to the deployed walsh canister: a thin wrapper over
# `walsh upload` (chunked, resumable: rerun it after an interruption; sha256-checked; a char
# meta.pkl is converted on the way), which it builds first (target/release/walsh).
#   scripts/upload_model.sh MODEL.walsh TOKENIZER [--canister NAME|ID] [--network local|ic|URL] [--identity NAME|PEM]
# The canister defaults to `backend` (icp.yaml), or `walsh_backend` (dfx.json) with WALSH_CLIENT=dfx.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,7p' "$0"; exit 2; }
model="$(realpath "$1")" tokenizer="$(realpath "$2")"; shift 2
cd "$(dirname "$0")/.."
walsh="${WALSH_BIN:-${CARGO_TARGET_DIR:-target}/release/walsh}"
[[ -n "${WALSH_BIN:-}" ]] || cargo build --quiet --release -p host-compressor --bin walsh
canister=()
[[ " $* " == *" --canister "* ]] || canister=(--canister "$([[ ${WALSH_CLIENT:-icp} == dfx ]] && echo walsh_backend || echo backend)")
exec "$walsh" upload "$model" --tokenizer "$tokenizer" "${canister[@]}" "$@"
