#!/usr/bin/env bash
# Uploads a model and its tokenizer to a deployed Walsh canister with dfx, resumably: run it again
# after an interruption and it continues from the offset the canister reports.
#   scripts/upload_model.sh MODEL.walsh TOKENIZER.json [--canister walsh_backend] [--network local|ic]
# A char-level meta.pkl is converted first: target/release/walsh tokenizer meta.pkl -o tokenizer.json
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $# -ge 2 ]] || { sed -n '2,6p' "$0"; exit 2; }
model="$1" tokenizer="$2"; shift 2
canister=walsh_backend network=local
while [[ $# -gt 0 ]]; do
    case "$1" in
        --canister) canister="$2"; shift 2 ;;
        --network) network="$2"; shift 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
chunk=1900000
call() { dfx canister call --network "$network" "$canister" "$@"; }

# Candid text of a blob from a file (hex escapes), written to stdout.
blob_of() { printf 'blob "'; od -An -v -tx1 "$1" | tr -d ' \n' | sed 's/../\\&/g'; printf '"'; }

upload() {
    local kind="$1" file="$2" size sha status received offset tmp
    size=$(stat -c %s "$file")
    sha=$(sha256sum "$file" | cut -d' ' -f1 | sed 's/../\\&/g')
    status=$(call upload_status "(variant { $kind })" --output json)
    received=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(int(s["received"]) if s["in_progress"] else -1)' "$status")
    if [[ "$received" -lt 0 ]]; then
        call upload_start "(variant { $kind })" > /dev/null
        received=0
    else
        echo "$kind: resuming at byte $received of $size"
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    offset=$received
    while [[ "$offset" -lt "$size" ]]; do
        dd if="$file" of="$tmp/chunk" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count="$chunk" status=none
        { printf '(variant { %s }, %d : nat64, ' "$kind" "$offset"; blob_of "$tmp/chunk"; printf ')'; } > "$tmp/arg"
        call upload_chunk --argument-file "$tmp/arg" > /dev/null
        offset=$((offset + $(stat -c %s "$tmp/chunk")))
        echo "$kind: $offset / $size bytes"
    done
    call upload_finish "(variant { $kind }, $size : nat64, blob \"$sha\")"
}

upload Model "$model"
upload Tokenizer "$tokenizer"
