#!/usr/bin/env bash
# Run every alternative, op and client count once; one JSON object a line on stdout,
# run.py's notes (implementation, errors, rows lost, load average) on stderr.
#   benches/alternatives/matrix.sh [TOKENS] [SECONDS] > alt.jsonl 2> alt.notes
# ZOHO_SDK_PATH (a site-packages holding zohocrmsdk8-0) makes filestore use the SDK's
# own FileStore; without it the stdlib reimplementation runs.
set -euo pipefail
tokens=${1:-10000}
seconds=${2:-3}
here=$(dirname "$0")
for store in kaizen filestore; do
  for op in find_by_id find_by_user find_by_refresh save; do
    for clients in 1 16 64; do
      python3 "$here/run.py" --store "$store" --op "$op" --tokens "$tokens" \
        --seconds "$seconds" --clients "$clients" --json
    done
  done
done
