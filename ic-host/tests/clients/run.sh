#!/usr/bin/env bash
# The local replica (`ic-host serve`) driven by the real IC clients: @icp-sdk/core 6.1.0,
# @dfinity/agent 3.4.3 (node --test) and icp-cli 1.5.0, all with their default verification.
#   ic-host/tests/clients/run.sh [TEST_FILE...]      (default: every *.test.js here)
# Builds what is missing (ic-host and walsh in the dev profile, which is optimized here; the test
# canister; the walsh canister with its candid:service metadata), installs the pinned npm packages
# (npm ci), runs the tests and stops every server they started, whatever happens. Exits non-zero on
# any failure. Needs Node >= 20 and npm; without them it prints SKIPPED and passes, unless CI is set.
# Overrides: IC_HOST_BIN, WALSH_BIN, WALSH_CANISTER_WASM, TEST_CANISTER_WASM, ICP_BIN;
# IC_HOST_VERBOSE=1 shows the servers' stderr, ICP_PROXY=1 records icp-cli's HTTP exchanges,
# KEEP_TMP=1 keeps the icp-cli project. Logs go to target/client-tests/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

if ! command -v node > /dev/null || ! command -v npm > /dev/null \
    || (( $(node -p 'process.versions.node.split(".")[0]') < 20 )); then
    if [[ -n "${CI:-}" ]]; then echo "error: the client tests need Node >= 20 and npm" >&2; exit 1; fi
    echo "SKIPPED: the client tests need Node >= 20 and npm"
    exit 0
fi

echo "== client tests: building ic-host, walsh and the canisters"
if [[ -z "${IC_HOST_BIN:-}" || -z "${WALSH_BIN:-}" ]]; then
    cargo build -p ic-host --bin ic-host -p host-compressor --bin walsh
fi
export IC_HOST_BIN="${IC_HOST_BIN:-$root/target/debug/ic-host}"
export WALSH_BIN="${WALSH_BIN:-$root/target/debug/walsh}"
if [[ -z "${TEST_CANISTER_WASM:-}" ]]; then
    cargo build --release --target wasm32-unknown-unknown \
        --manifest-path ic-host/test-canister/Cargo.toml --target-dir target/test-canister
    export TEST_CANISTER_WASM="$root/target/test-canister/wasm32-unknown-unknown/release/ic_host_test_canister.wasm"
fi
has_candid() { [[ -f "$1" ]] && grep -qa 'icp:public candid:service' "$1"; }
if [[ -z "${WALSH_CANISTER_WASM:-}" ]] || ! has_candid "$WALSH_CANISTER_WASM"; then
    export WALSH_CANISTER_WASM="$root/target/canister/walsh_canister.wasm"
    has_candid "$WALSH_CANISTER_WASM" || bash scripts/build_canister.sh
fi
# icp-cli types its calls with the module's candid:service metadata, which ic-wasm adds.
skip_icp=0
if ! has_candid "$WALSH_CANISTER_WASM"; then
    msg="$WALSH_CANISTER_WASM has no candid:service metadata: install ic-wasm (npm install -g @icp-sdk/ic-wasm-linux-x64@0.11.1)"
    if [[ -n "${CI:-}" ]]; then echo "error: $msg" >&2; exit 1; fi
    echo "SKIPPED: the icp-cli test ($msg)"
    skip_icp=1
fi

echo "== client tests: npm packages (pinned in package-lock.json)"
# npm ci unless node_modules was installed from this lock file since it last changed.
if [[ ! "$here/node_modules/.package-lock.json" -nt "$here/package-lock.json" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

logs="$root/target/client-tests"
mkdir -p "$logs"
export CLIENT_TEST_LOG_DIR="$logs"
export IC_HOST_PID_DIR
IC_HOST_PID_DIR="$(mktemp -d)"
node_pid=
cleanup() {
    local pid
    [[ -n "$node_pid" ]] && kill -TERM "$node_pid" 2> /dev/null || true
    for f in "$IC_HOST_PID_DIR"/*; do
        [[ -e "$f" ]] || continue
        pid="$(basename "$f")"
        if kill -0 "$pid" 2> /dev/null; then
            echo "stopping ic-host serve (pid $pid) left running" >&2
            kill -TERM "$pid" 2> /dev/null || true
            sleep 1
            if kill -0 "$pid" 2> /dev/null; then kill -KILL "$pid" 2> /dev/null || true; fi
        fi
    done
    rm -rf "$IC_HOST_PID_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $# -gt 0 ]]; then tests=("$@"); else tests=(core6.test.js agent3.test.js icp_cli.test.js); fi
if [[ $skip_icp == 1 ]]; then
    kept=(); for t in "${tests[@]}"; do [[ $t == icp_cli.test.js ]] || kept+=("$t"); done; tests=("${kept[@]}")
fi
echo "== client tests: ${tests[*]} against $IC_HOST_BIN"
cd "$here"
status=0
# In the background and waited for, so that a signal to this script runs the cleanup at once.
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$logs/node-test.tap" "${tests[@]}" \
    > >(tee "$logs/node-test.log") 2>&1 &
node_pid=$!
wait "$node_pid" || status=$?
node_pid=
[[ $status == 0 ]] || echo "client tests failed (exit $status); logs in $logs" >&2
exit "$status"
