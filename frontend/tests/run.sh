#!/usr/bin/env bash
# The page in a real browser: frontend/tests/browser.test.js (node --test, playwright-core driving
# Debian's Chromium headless) against `ic-host serve` and its HTTP gateway.
#   frontend/tests/run.sh
# Installs the pinned npm packages (npm ci), builds what is missing (the page, ic-host and walsh in
# the dev profile, which is optimized here; the canister with the page inside), runs the tests.
# Screenshots: frontend/test-results/. Needs Node >= 20, npm and Chromium (apt-get install
# chromium); without them it prints SKIPPED and passes, unless CI is set.
# Overrides: IC_HOST_BIN, WALSH_BIN, WALSH_CANISTER_WASM, WALSH_TESTDATA, CHROMIUM_BIN;
# IC_HOST_VERBOSE=1 shows the server's output.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

skip() {
    if [[ -n "${CI:-}" ]]; then echo "error: $1" >&2; exit 1; fi
    echo "SKIPPED: the browser tests ($1)"
    exit 0
}
command -v node > /dev/null && command -v npm > /dev/null || skip "they need Node >= 20 and npm"
(( $(node -p 'process.versions.node.split(".")[0]') >= 20 )) || skip "they need Node >= 20"
chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
[[ -x "$chromium" ]] || skip "no Chromium at $chromium (apt-get install chromium)"

echo "== browser tests: npm packages (pinned in frontend/package-lock.json)"
if [[ ! frontend/node_modules/.package-lock.json -nt frontend/package-lock.json ]]; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
fi
[[ -f frontend/dist/index.html ]] || (cd frontend && npm run build)

target="${CARGO_TARGET_DIR:-$root/target}"
if [[ -z "${IC_HOST_BIN:-}" || -z "${WALSH_BIN:-}" ]]; then
    echo "== browser tests: building ic-host and walsh"
    cargo build -p ic-host --bin ic-host -p host-compressor --bin walsh
fi
export IC_HOST_BIN="${IC_HOST_BIN:-$target/debug/ic-host}"
export WALSH_BIN="${WALSH_BIN:-$target/debug/walsh}"
export WALSH_CANISTER_WASM="${WALSH_CANISTER_WASM:-$root/target/canister/walsh_canister.wasm}"
has_page() { [[ -f "$1" ]] && grep -qa '<title>Walsh — a language model' "$1"; }
if ! has_page "$WALSH_CANISTER_WASM"; then
    echo "== browser tests: building the canister with the page inside"
    bash scripts/build_canister.sh
    has_page "$WALSH_CANISTER_WASM" || { echo "error: $WALSH_CANISTER_WASM has no page inside (frontend/dist?)" >&2; exit 1; }
fi

echo "== browser tests against $IC_HOST_BIN, $WALSH_CANISTER_WASM"
cd frontend
CHROMIUM_BIN="$chromium" node --test --test-concurrency=1 tests/
