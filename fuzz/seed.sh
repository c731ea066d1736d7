#!/usr/bin/env bash
# Fills corpus/parse and corpus/bind with seed inputs: every conformance
# query, every parser golden input and every query of tests/kql-corpus.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
cases="${KQL_CONFORMANCE_DIR:-$root/../shared/kql-conformance}/cases.jsonl"
for target in parse bind; do
  out="$here/corpus/$target"
  mkdir -p "$out"
  n=0
  for file in "$root"/crates/watchpost-kql-syntax/test_data/parser/*/*.kql "$root"/tests/kql-corpus/queries/*.kql; do
    [ -f "$file" ] || continue
    cp "$file" "$out/seed-$n.kql"; n=$((n + 1))
  done
  if [ -f "$cases" ]; then
    python3 - "$cases" "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[2])
for idx, line in enumerate(open(sys.argv[1])):
    line = line.strip()
    if line:
        (out / f"case-{idx}.kql").write_text(json.loads(line)["query"])
PY
  fi
done
echo "seeded $(ls "$here/corpus/parse" | wc -l) inputs per target"
