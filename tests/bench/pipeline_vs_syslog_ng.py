#!/usr/bin/env python3
"""Benchmark for the connectors note: the same job, file -> regex parse ->
output file, done by Watchpost's pipeline runner (the `pipeline_throughput`
example: file source with checkpoints, grok COMBINEDAPACHELOG on PCRE2,
batching, disk buffer, NDJSON file sink) and by syslog-ng (file source,
regexp-parser with an equivalent PCRE, file destination with format-json).

syslog-ng conflicts with the rsyslog package, so it is fetched with
`apt-get download` and unpacked with `dpkg -x` into its own folder:

    mkdir -p /tmp/sng && cd /tmp/sng
    apt-get download syslog-ng-core libivykis0 libnet1 libpcre3 libwrap0
    for f in *.deb; do dpkg -x $f root; done

Usage: pipeline_vs_syslog_ng.py EXAMPLE_BINARY SYSLOG_NG_ROOT [LINES]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import cpu_seconds, memory_mib

REGEX = (
    r'^(?<clientip>\S+) (?<ident>\S+) (?<auth>\S+) \[(?<timestamp>[^\]]+)\] '
    r'"(?:(?<verb>\w+) (?<request>\S+)(?: HTTP/(?<httpversion>[0-9.]+))?|(?<rawrequest>[^"]*))" '
    r'(?<response>\d+) (?:(?<bytes>\d+)|-) (?<referrer>"[^"]*") (?<agent>"[^"]*")$'
)


def line(i: int) -> str:
    return (
        f'10.{i % 200}.{(i // 200) % 250}.{i % 250} - user{i % 1000} [10/Oct/2000:13:55:36 -0700] '
        f'"GET /app/page{i % 5000}.html?id={i} HTTP/1.1" {[200, 304, 404, 500][i % 4]} {1000 + i % 90000} '
        f'"http://example.com/start.html" "Mozilla/5.0 (X11; Linux x86_64) bench/{i % 7}"'
    )


def run_syslog_ng(root: Path, lines: int) -> str:
    work = Path(tempfile.mkdtemp(prefix="sng-bench-"))
    source = work / "access.log"
    source.write_text("".join(line(i) + "\n" for i in range(lines)))
    out = work / "out.ndjson"
    conf = work / "syslog-ng.conf"
    conf.write_text(
        f"""@version: 3.38
options {{ keep-hostname(yes); log-fifo-size(100000); }};
source s_file {{ file("{source}" flags(no-parse) follow-freq(1) log-fetch-limit(10000) log-iw-size(100000)); }};
parser p_regex {{ regexp-parser(patterns("{REGEX.replace(chr(92), chr(92) * 2).replace('"', chr(92) + '"')}") prefix("")); }};
destination d_file {{ file("{out}" template("$(format-json clientip ident auth timestamp verb request httpversion rawrequest response bytes referrer agent)\\n")); }};
log {{ source(s_file); parser(p_regex); destination(d_file); }};
"""
    )
    env = dict(os.environ)
    libs = [root / "usr/lib/x86_64-linux-gnu", root / "usr/lib/syslog-ng", root / "lib/x86_64-linux-gnu"]
    env["LD_LIBRARY_PATH"] = ":".join(str(p) for p in libs)
    command = [
        str(root / "usr/sbin/syslog-ng"), "-F", "-f", str(conf), "--module-path", str(root / "usr/lib/syslog-ng/3.38"),
        "--persist-file", str(work / "persist"), "--pidfile", str(work / "pid"), "--control", str(work / "ctl"),
    ]
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "wb"))
    done = 0
    while done < lines:
        time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit(f"syslog-ng exited: {(work / 'stderr.log').read_text()}")
        if out.exists():
            with open(out, "rb") as f:
                done = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    wall = time.monotonic() - started
    cpu, rss = cpu_seconds(proc.pid), memory_mib(proc.pid)
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    return (
        f"syslog-ng lines={lines} wall_s={wall:.2f} events_per_s={lines / wall:.0f} cpu_s={cpu:.2f} "
        f"events_per_cpu_s={lines / cpu:.0f} peak_rss_mib={rss:.1f}"
    )


def main():
    example, root = sys.argv[1], Path(sys.argv[2])
    lines = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    result = subprocess.run([example, str(lines)], capture_output=True, text=True, check=True)
    print("watchpost " + result.stdout.strip())
    print(run_syslog_ng(root, lines))


if __name__ == "__main__":
    main()
