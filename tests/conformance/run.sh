#!/usr/bin/env bash
# Runs the shared KQL conformance cases against a fresh `watchpost serve` and
# fails when fewer cases pass than the floor recorded here. Raise the floor
# whenever the engine passes more cases, so a regression fails CI.
set -euo pipefail

FLOOR=156
BIN="${WATCHPOST_BIN:?set WATCHPOST_BIN to the watchpost binary}"
CASES_DIR="${KQL_CONFORMANCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/kql-conformance}"
WORKSPACE=00000000-0000-0000-0000-000000000000
KEY=aw==

if [ ! -f "$CASES_DIR/run.py" ]; then
  echo "conformance: $CASES_DIR/run.py not found" >&2
  exit 1
fi

data_dir="$(mktemp -d)"
log="$data_dir/server.log"
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$data_dir/data" --workspace "$WORKSPACE=$KEY" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data_dir"' EXIT

url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's/^Watchpost is listening on \(http[^ ]*\).*/\1/p' "$log" | head -n1)"
  [ -n "$url" ] && break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "conformance: the server did not start" >&2
  cat "$log" >&2
  exit 1
fi

out="$data_dir/conformance.txt"
python3 "$CASES_DIR/run.py" --url "$url" --workspace "$WORKSPACE" --token "$KEY" | tee "$out" | grep -v '^FAIL' || true
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "conformance: the runner exited with $status" >&2
  exit 1
fi
passed="$(tail -n1 "$out" | sed -n 's/^\([0-9]*\) passed.*/\1/p')"
if [ -z "$passed" ] || [ "$passed" -lt "$FLOOR" ]; then
  grep '^FAIL' "$out" >&2 || true
  echo "conformance: ${passed:-no} cases passed, the floor is $FLOOR" >&2
  exit 1
fi
echo "conformance: $passed cases passed (floor $FLOOR)"
