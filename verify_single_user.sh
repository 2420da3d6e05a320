#!/usr/bin/env bash
# Smoke test of the deployed walsh canister: one user, one prompt, generated through an update
# session. Prints the text, then the exact token count, tokens per second and instructions per
# token (as the canister measured them); exits non-zero if anything fails.
#   ./verify_single_user.sh ["PROMPT"] [N] [--canister NAME|ID] [--network local|ic|URL] [--temperature T] [--seed S]
# Client: icp-cli by default (canister `backend` of icp.yaml), or dfx with WALSH_CLIENT=dfx
# (canister `walsh_backend` of dfx.json). Run it in the project (or pass --canister ID --network URL).
set -euo pipefail
exec python3 "$(dirname "$0")/scripts/verify_single_user.py" "$@"
