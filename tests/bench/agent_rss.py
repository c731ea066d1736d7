#!/usr/bin/env python3
"""Benchmark for the connectors note: `watchpost agent`'s memory under
sustained syslog load. A real server and the agent run from the same
binary; one TCP connection sends RFC 5424 messages (octet counting) as
fast as the agent takes them for DURATION seconds, while the agent's RSS is
sampled twice a second. At the end it waits until every sent message is a
`Syslog` row, then prints the send rate, the RSS over time (to show it stays
flat), the peak, and the agent's CPU time.

Usage: agent_rss.py WATCHPOST_BINARY [DURATION_SECONDS]
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from procstat import cpu_seconds, memory_mib

WORKSPACE = "b0b0b0b0-0000-4000-8000-00000000a9e7"
KEY = base64.b64encode(b"watchpost-agent-benchmark-key!!!").decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def query_count(url: str, kql: str) -> int:
    request = urllib.request.Request(
        f"{url}/v1/workspaces/{WORKSPACE}/query",
        data=json.dumps({"query": f"{kql} | count"}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["tables"][0]["rows"][0][0]
    except urllib.error.HTTPError:
        return 0  # the table does not exist yet


def main():
    binary = sys.argv[1]
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    work = Path(tempfile.mkdtemp(prefix="agent-rss-"))
    env = dict(os.environ, WATCHPOST_LOG="warn")
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(work / "server"), "--workspace",
         f"{WORKSPACE}={KEY}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    url = None
    for text in server.stdout:
        if text.startswith("Watchpost is listening on "):
            url = text.split("on ", 1)[1].strip()
            break
    port = free_port()
    agent = subprocess.Popen(
        [binary, "agent", "--endpoint", url, "--workspace-id", WORKSPACE, "--workspace-key", KEY,
         "--syslog-listen", f"127.0.0.1:{port}", "--data-dir", str(work / "agent"), "--heartbeat-interval-secs", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        samples = []
        stop = threading.Event()

        def sample():
            started = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - started, memory_mib(agent.pid, "VmRSS:")))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        sent = 0
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as connection:
            while time.monotonic() - started < duration:
                chunk = bytearray()
                for _ in range(500):
                    message = (
                        f"<134>1 2026-11-30T10:00:00.000Z web{sent % 50} nginx {sent % 30000} access - "
                        f"GET /app/page{sent % 5000}.html?id={sent} 200 {1000 + sent % 90000} seq={sent}"
                    ).encode()
                    chunk += str(len(message)).encode() + b" " + message
                    sent += 1
                connection.sendall(chunk)
        send_wall = time.monotonic() - started
        deadline = time.monotonic() + 300
        delivered = 0
        while time.monotonic() < deadline:
            delivered = query_count(url, "Syslog | where ProcessName == 'nginx'")
            if delivered >= sent:
                break
            time.sleep(1)
        drain_wall = time.monotonic() - started
        stop.set()
        sampler.join()
        peak = memory_mib(agent.pid)
        cpu = cpu_seconds(agent.pid)
        quarter = [samples[int(len(samples) * q) - 1][1] for q in (0.25, 0.5, 0.75, 1.0)]
        print(
            f"agent sent={sent} delivered={delivered} send_s={send_wall:.1f} sent_per_s={sent / send_wall:.0f} "
            f"all_rows_queryable_s={drain_wall:.1f} delivered_per_s={delivered / drain_wall:.0f} "
            f"agent_cpu_s={cpu:.1f} events_per_agent_cpu_s={delivered / cpu:.0f}"
        )
        print(
            "agent rss_mib at 25/50/75/100% of the run: " + " / ".join(f"{value:.1f}" for value in quarter)
            + f"; peak (VmHWM) {peak:.1f}"
        )
        if delivered != sent:
            raise SystemExit(f"only {delivered} of {sent} messages arrived")
    finally:
        for proc in (agent, server):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
