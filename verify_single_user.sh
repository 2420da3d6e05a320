#!/usr/bin/env bash
# Smoke test against a dfx-deployed Walsh canister: one user, one prompt, generated through update
# sessions; prints the text and tokens per second.
#   ./verify_single_user.sh "Once upon a time" 50 [--canister walsh_backend] [--network local]
# (On a machine without dfx, scripts/run_local.sh does the same on the embedded IC host.)
set -euo pipefail
prompt="${1:-Once upon a time}"
tokens="${2:-50}"
shift $(( $# < 2 ? $# : 2 ))
canister=walsh_backend network=local
while [[ $# -gt 0 ]]; do
    case "$1" in
        --canister) canister="$2"; shift 2 ;;
        --network) network="$2"; shift 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
call() { dfx canister call --network "$network" "$canister" "$@" --output json; }
field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r=r.get("Ok", r); print(r[sys.argv[2]] if sys.argv[2] in r else sys.exit("error: " + json.dumps(r.get("Err", r))))' "$1" "$2"; }

escaped=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$prompt")
start=$(date +%s.%N)
reply=$(call session_start "(record { prompt = $escaped; max_tokens = $tokens : nat32; temperature = opt (0.8 : float32); top_k = null; top_p = null; seed = null })")
session=$(field "$reply" session)
generated=0
printf '%s' "$prompt"
while true; do
    printf '%s' "$(field "$reply" text)"
    generated=$((generated + $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(len(r.get("Ok", {}).get("ids", [])))' "$reply")))
    if [[ "$(field "$reply" stop)" != "[]" ]]; then break; fi
    reply=$(call session_continue "($session : nat64)")
done
end=$(date +%s.%N)
echo
python3 -c 'import sys; t=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f"{n} tokens in {t:.1f} s = {n/t:.2f} tokens/s")' "$start" "$end" "$generated"
