#!/usr/bin/env python3
"""Benchmark for the connectors note: what a `kql` step costs in a pipeline.

The same `watchpost pipeline run` job, stdin -> grok(COMBINEDAPACHELOG) ->
NDJSON file sink, with and without a `kql` step after the grok (a `where`,
an `extend` of three columns and a `parse`), alternating runs on the same
input. A stdin-only pipeline ends with its input, so each run's wall time,
CPU time (user + system of the child) and peak RSS cover the whole job,
start-up included. The script checks the output row counts.

Usage: kql_step.py WATCHPOST_BINARY [LINES] [RUNS]
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROK = """
[[transform]]
type = "grok"
match = { message = "^%{COMBINEDAPACHELOG}$" }
"""

KQL = """
[[transform]]
type = "kql"
query = '''source
  | where response != "304"
  | extend Status = toint(response), Bytes = tolong(bytes), Bot = agent contains "bench/3"
  | parse request with "/app/" Page ".html?id=" Id:long'''
columns = { response = "string", bytes = "string", agent = "string", request = "string" }
"""


def line(i: int) -> str:
    return (
        f'10.{i % 200}.{(i // 200) % 250}.{i % 250} - user{i % 1000} [10/Oct/2000:13:55:36 -0700] '
        f'"GET /app/page{i % 5000}.html?id={i} HTTP/1.1" {[200, 304, 404, 500][i % 4]} {1000 + i % 90000} '
        f'"http://example.com/start.html" "Mozilla/5.0 (X11; Linux x86_64) bench/{i % 7}"'
    )


def config(work: Path, name: str, transforms: str) -> Path:
    path = work / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[[source]]\ntype = "stdin"\n{transforms}\n'
        f'[[sink]]\ntype = "file"\npath = "{work / (name + ".ndjson")}"\nlog_type = "Apache"\n'
    )
    return path


def run(binary: str, work: Path, name: str, conf: Path, input_path: Path) -> dict:
    out = work / f"{name}.ndjson"
    out.unlink(missing_ok=True)
    data = work / f"{name}-data"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    started = time.monotonic()
    with open(input_path, "rb") as stdin:
        proc = subprocess.Popen(
            [binary, "pipeline", "run", str(conf), "--data-dir", str(data)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # wait4 gives this child's own CPU time and peak RSS.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{name} failed with {proc.returncode}")
    rows = sum(1 for _ in open(out, "rb"))
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "rows": rows, "rss": usage.ru_maxrss / 1024}


def main() -> None:
    binary = sys.argv[1]
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 500_000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory(prefix="wp-kql-bench-") as tmp:
        work = Path(tmp)
        input_path = work / "access.log"
        with open(input_path, "w") as f:
            for i in range(lines):
                f.write(line(i) + "\n")
        jobs = {"grok": config(work, "grok", GROK), "grok+kql": config(work, "kql", GROK + KQL)}
        expected = {"grok": lines, "grok+kql": lines - sum(1 for i in range(lines) if i % 4 == 1)}
        results: dict[str, list[dict]] = {name: [] for name in jobs}
        for round_ in range(runs):
            for name, conf in jobs.items():
                result = run(binary, work, conf.stem, conf, input_path)
                if result["rows"] != expected[name]:
                    sys.exit(f"{name}: {result['rows']} rows, expected {expected[name]}")
                results[name].append(result)
                print(
                    f"run {round_ + 1} {name:9} wall {result['wall']:.2f} s  {lines / result['wall']:>9,.0f} ev/s  "
                    f"cpu {result['cpu']:.2f} s  {lines / result['cpu']:>9,.0f} ev/cpu-s  rows {result['rows']:,}  "
                    f"peak RSS {result['rss']:.0f} MiB",
                    flush=True,
                )
        print(f"\n{lines:,} lines, {runs} runs each, medians:")
        for name, items in results.items():
            wall = statistics.median(r["wall"] for r in items)
            cpu = statistics.median(r["cpu"] for r in items)
            rss = statistics.median(r["rss"] for r in items)
            print(f"{name:9} {lines / wall:>9,.0f} ev/s wall  {lines / cpu:>9,.0f} ev/cpu-s  peak RSS {rss:.0f} MiB")
        ratio = [k["cpu"] / g["cpu"] for g, k in zip(results["grok"], results["grok+kql"])]
        print(f"CPU of grok+kql over grok, per round: {', '.join(f'{r:.2f}' for r in ratio)}")


if __name__ == "__main__":
    main()
