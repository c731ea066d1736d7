"""`watchpost agent` with flags against the real server: util-linux
`logger` over UDP and TCP (RFC 3164, RFC 5424, octet counting), CEF
messages, rsyslog forwarding (when rsyslogd is installed; `.ci/run`
installs it), custom log files and heartbeats.

The Data Collector API only writes `_CL` tables with typed suffixes, so
the rows land in `Syslog_CL`, `CommonSecurityLog_CL`, `Heartbeat_CL` with
columns such as `Facility_s`; the column values are the spec's."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import wait_until, watchpost_bin


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def agent(server, tmp_path):
    port, metrics_port = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    stderr_path = tmp_path / "agent.stderr.log"
    command = [
        str(watchpost_bin()),
        "agent",
        "--endpoint",
        server.url,
        "--workspace-id",
        server.workspace_id,
        "--workspace-key",
        server.primary_key,
        "--syslog-listen",
        f"127.0.0.1:{port}",
        "--file",
        f"{logs}/*.log=AgentApp_CL",
        "--data-dir",
        str(tmp_path / "agent-data"),
        "--heartbeat-interval-secs",
        "1",
        "--flush-interval-ms",
        "200",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    ]
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    wait_until(lambda: "SyslogListening" in stderr_path.read_text(), 30, message="the agent listening")
    yield {"port": port, "metrics": f"http://127.0.0.1:{metrics_port}/metrics", "logs": logs, "proc": proc, "stderr": stderr_path}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def count(server, kql: str) -> int:
    response = server.query_raw(f"{kql} | count")
    return response.json()["tables"][0]["rows"][0][0] if response.status_code == 200 else 0


def logger(port: int, *args: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(port), *args], check=True, timeout=30)


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
def test_logger_udp_tcp_and_octet_counting(server, agent):
    port, marker = agent["port"], f"m{time.time_ns()}"
    logger(port, "--udp", "--rfc3164", "-t", "udp3164", "-p", "local4.warning", f"{marker} udp 3164")
    logger(port, "--udp", "--rfc5424", "-t", "udp5424", "-p", "auth.info", f"{marker} udp 5424")
    logger(port, "--tcp", "--rfc3164", "-t", "tcp3164", "-p", "daemon.err", f"{marker} tcp 3164")
    logger(port, "--tcp", "--rfc5424", "-t", "tcp5424", "--id=4242", f"{marker} tcp 5424")
    logger(port, "--tcp", "--octet-count", "--rfc5424", "-t", "octet", "-p", "local7.debug", f"{marker} octet")
    query = f"Syslog_CL | where SyslogMessage_s startswith '{marker}'"
    wait_until(lambda: count(server, query) == 5, 60, message="five syslog rows")
    rows = {r["ProcessName_s"]: r for r in server.query(query).dicts()}
    assert set(rows) == {"udp3164", "udp5424", "tcp3164", "tcp5424", "octet"}
    assert (rows["udp3164"]["Facility_s"], rows["udp3164"]["SeverityLevel_s"]) == ("local4", "warning")
    assert (rows["udp5424"]["Facility_s"], rows["udp5424"]["SeverityLevel_s"]) == ("auth", "info")
    assert (rows["tcp3164"]["Facility_s"], rows["tcp3164"]["SeverityLevel_s"]) == ("daemon", "err")
    assert (rows["octet"]["Facility_s"], rows["octet"]["SeverityLevel_s"]) == ("local7", "debug")
    assert rows["tcp5424"]["ProcessID_d"] == 4242
    assert rows["octet"]["SyslogMessage_s"] == f"{marker} octet"
    for row in rows.values():
        assert row["HostIP_s"] == "127.0.0.1"
        assert row["CollectorHostName_s"] == socket.gethostname()
        assert row["Computer_s"] == row["HostName_s"]
    assert count(server, f"CommonSecurityLog_CL | where Message_s startswith '{marker}'") == 0


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
def test_cef_becomes_common_security_log(server, agent):
    marker = f"scan{time.time_ns()}"
    cef = (
        r"CEF:0|WatchpostKit|Kit\|Sensor|1.0|wpk-100|Port scan detected|7|src=10.1.2.3 dst=192.0.2.10 "
        rf"spt=51515 dpt=443 proto=TCP act=blocked suser=alice cs1Label=Rule cs1=deny all cn1Label=Hits cn1=42 "
        rf"msg={marker} a\=b c\\d request=https://example.test/a?b=c wpkCustom=xyz"
    )
    logger(agent["port"], "--udp", "--rfc3164", "-t", "wpk-cef", "-p", "local4.warning", cef)
    logger(agent["port"], "--tcp", "--octet-count", "--rfc5424", "-t", "wpk-cef", cef)
    query = f"CommonSecurityLog_CL | where Message_s startswith '{marker}'"
    wait_until(lambda: count(server, query) == 2, 60, message="two CommonSecurityLog rows")
    for row in server.query(query).dicts():
        assert row["DeviceVendor_s"] == "WatchpostKit"
        assert row["DeviceProduct_s"] == "Kit|Sensor"
        assert row["DeviceVersion_s"] == "1.0"
        assert row["DeviceEventClassID_s"] == "wpk-100"
        assert row["Activity_s"] == "Port scan detected"
        assert row["LogSeverity_s"] == "7"
        assert (row["SourceIP_s"], row["DestinationIP_s"]) == ("10.1.2.3", "192.0.2.10")
        assert (row["SourcePort_d"], row["DestinationPort_d"]) == (51515, 443)
        assert (row["Protocol_s"], row["DeviceAction_s"], row["SimplifiedDeviceAction_s"]) == ("TCP", "blocked", "Deny")
        assert row["SourceUserName_s"] == "alice"
        assert (row["DeviceCustomString1Label_s"], row["DeviceCustomString1_s"]) == ("Rule", "deny all")
        assert (row["DeviceCustomNumber1Label_s"], row["DeviceCustomNumber1_d"]) == ("Hits", 42)
        assert row["Message_s"] == f"{marker} a=b c\\d"
        assert row["RequestURL_s"] == "https://example.test/a?b=c"
        assert row["AdditionalExtensions_s"] == "wpkCustom=xyz"
    assert count(server, f"Syslog_CL | where SyslogMessage_s contains '{marker}'") == 0


def test_files_and_heartbeat(server, agent):
    app = agent["logs"] / "app.log"
    app.write_text("".join(f"line {i}\n" for i in range(25)))
    wait_until(lambda: count(server, "AgentApp_CL") == 25, 60, message="25 file rows")
    rows = server.query("AgentApp_CL | sort by RawData__s asc | take 1").dicts()
    assert rows[0]["FilePath_s"] == str(app)
    assert rows[0]["Computer_s"] == socket.gethostname()
    wait_until(lambda: count(server, f"Heartbeat_CL | where Computer_s == '{socket.gethostname()}'") >= 2, 30, message="heartbeats")
    row = server.query("Heartbeat_CL | take 1").dicts()[0]
    assert (row["Category_s"], row["OSType_s"]) == ("Direct Agent", "Linux")
    metrics = requests.get(agent["metrics"], timeout=10).text
    assert 'watchpost_pipeline_source_events_received_total{pipeline="agent",source="file0"} 25' in metrics
    sent = [line for line in metrics.splitlines() if line.startswith("watchpost_pipeline_sink_rows_sent_total")]
    assert sent and int(sent[0].rsplit(" ", 1)[1]) >= 27


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslog is not installed (.ci/run installs it)")
def test_rsyslog_forwards_to_the_listener(server, agent, tmp_path):
    rsyslog_port = free_port()
    work = tmp_path / "rsyslog"
    work.mkdir()
    conf = work / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{rsyslog_port}")
*.* action(type="omfwd" target="127.0.0.1" port="{agent['port']}" protocol="tcp" TCP_Framing="octet-counted")
"""
    )
    proc = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "rsyslogd.log", "wb"),
    )
    try:
        time.sleep(1.5)
        marker = f"rs{time.time_ns()}"
        for i in range(10):
            logger(rsyslog_port, "--udp", "--rfc3164", "-t", "viarsyslog", "-p", "user.notice", f"{marker} {i}")
        query = f"Syslog_CL | where SyslogMessage_s startswith '{marker}'"
        wait_until(lambda: count(server, query) == 10, 60, message="ten forwarded rows")
        rows = server.query(query).dicts()
        assert {r["ProcessName_s"] for r in rows} == {"viarsyslog"}
        assert {r["Facility_s"] for r in rows} == {"user"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_agent_kill_9_mid_stream_loses_and_repeats_nothing(server, tmp_path):
    """The agent `kill -9`'d three times while a file grows: every line lands once."""
    import threading

    logs = tmp_path / "logs"
    logs.mkdir()
    table = f"AgentKill{time.time_ns() % 10**9}"
    command = [
        str(watchpost_bin()), "agent", "--endpoint", server.url, "--workspace-id", server.workspace_id,
        "--workspace-key", server.primary_key, "--file", f"{logs}/*.log={table}_CL",
        "--data-dir", str(tmp_path / "agent-data"), "--heartbeat-interval-secs", "0", "--flush-interval-ms", "200",
    ]

    def start():
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "agent.log", "ab"))

    def write():
        with open(logs / "app.log", "a") as f:
            for i in range(3000):
                f.write(f"line {i}\n")
                if i % 20 == 0:
                    f.flush()
                    time.sleep(0.01)

    proc = start()
    writer = threading.Thread(target=write)
    writer.start()
    for _ in range(3):
        time.sleep(0.6)
        proc.kill()
        proc.wait(30)
        proc = start()
    writer.join()
    try:
        wait_until(lambda: count(server, f"{table}_CL") >= 3000, 90, message="3000 rows")
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert count(server, f"{table}_CL") == 3000
    assert count(server, f"{table}_CL | distinct RawData__s") == 3000
