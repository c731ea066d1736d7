"""`watchpost agent` with flags against the real server: util-linux
`logger` over UDP and TCP (RFC 3164, RFC 5424, octet counting), CEF
messages, rsyslog forwarding (when rsyslogd is installed; `.ci/run`
installs it), custom log files and heartbeats.

The agent sends syslog, CEF and heartbeat batches with the Watchpost
header `x-watchpost-standard-table: true`, so the rows land in the standard
`Syslog`, `CommonSecurityLog` and `Heartbeat` tables with their declared
columns and types (`Facility`, `ProcessID` as int, ...), never in `_CL`
tables; custom file tables stay `<Name>_CL` with typed suffixes."""

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

from conftest import free_port, wait_until, watchpost_bin


def agent_command(server, data_dir: Path, *extra: str, heartbeat: str = "0") -> list[str]:
    """`watchpost agent` with flags, sending to `server`, flushing every 200 ms."""
    return [
        str(watchpost_bin()), "agent", "--endpoint", server.url, "--workspace-id", server.workspace_id,
        "--workspace-key", server.primary_key, "--data-dir", str(data_dir), "--heartbeat-interval-secs", heartbeat,
        "--flush-interval-ms", "200", *extra,
    ]


def start_agent(command: list[str], stderr_path: Path, listening: bool = True) -> subprocess.Popen:
    """Starts the agent, its stderr appended to `stderr_path`; with `listening`,
    waits until its syslog listener is up."""
    with open(stderr_path, "ab") as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    if listening:
        wait_until(lambda: "SyslogListening" in stderr_path.read_text(), 30, message="the agent listening")
    return proc


def stop_agent(proc: subprocess.Popen) -> None:
    """SIGTERM, which flushes and drains, unless it already exited."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture
def agent(server, tmp_path):
    port, metrics_port = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    stderr_path = tmp_path / "agent.stderr.log"
    command = agent_command(
        server, tmp_path / "agent-data", "--syslog-listen", f"127.0.0.1:{port}", "--file", f"{logs}/*.log=AgentApp_CL",
        "--metrics-listen", f"127.0.0.1:{metrics_port}", heartbeat="1",
    )
    proc = start_agent(command, stderr_path)
    yield {"port": port, "metrics": f"http://127.0.0.1:{metrics_port}/metrics", "logs": logs, "proc": proc, "stderr": stderr_path}
    stop_agent(proc)


def count(server, kql: str) -> int:
    response = server.query_raw(f"{kql} | count")
    return response.json()["tables"][0]["rows"][0][0] if response.status_code == 200 else 0


def assert_no_table(server, table: str) -> None:
    response = server.query_raw(f"{table} | count")
    assert response.status_code == 400, f"{table} exists: {response.text}"


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
    query = f"Syslog | where SyslogMessage startswith '{marker}'"
    wait_until(lambda: count(server, query) == 5, 60, message="five syslog rows")
    table = server.query(query)
    types = table.types
    assert (types["SyslogMessage"], types["Facility"], types["SeverityLevel"]) == ("string", "string", "string")
    assert (types["ProcessID"], types["EventTime"], types["TimeGenerated"]) == ("int", "datetime", "datetime")
    rows = {r["ProcessName"]: r for r in table.dicts()}
    assert set(rows) == {"udp3164", "udp5424", "tcp3164", "tcp5424", "octet"}
    assert (rows["udp3164"]["Facility"], rows["udp3164"]["SeverityLevel"]) == ("local4", "warning")
    assert (rows["udp5424"]["Facility"], rows["udp5424"]["SeverityLevel"]) == ("auth", "info")
    assert (rows["tcp3164"]["Facility"], rows["tcp3164"]["SeverityLevel"]) == ("daemon", "err")
    assert (rows["octet"]["Facility"], rows["octet"]["SeverityLevel"]) == ("local7", "debug")
    assert rows["tcp5424"]["ProcessID"] == 4242
    assert rows["octet"]["SyslogMessage"] == f"{marker} octet"
    assert rows["udp3164"]["SyslogMessage"] == f"{marker} udp 3164"
    for row in rows.values():
        assert row["Type"] == "Syslog"
        assert row["TenantId"] == server.workspace_id
        assert row["SourceSystem"] == "Linux"
        assert row["HostIP"] == "127.0.0.1"
        assert row["CollectorHostName"] == socket.gethostname()
        assert row["Computer"] == row["HostName"]
        assert row["EventTime"] is not None
        # TimeGenerated is the listener's receive time (spec 6), sent as TimeCollected.
        assert row["TimeGenerated"] == row["TimeCollected"]
        assert row["_IsBillable"] == "true" and row["_BilledSize"] > len(row["SyslogMessage"])
    assert len({r["_ItemId"] for r in rows.values()}) == 5 and all(len(r["_ItemId"]) == 36 for r in rows.values())
    assert count(server, f"CommonSecurityLog | where Message startswith '{marker}'") == 0
    for table_name in ("Syslog_CL", "CommonSecurityLog_CL"):
        assert_no_table(server, table_name)


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
    query = f"CommonSecurityLog | where Message startswith '{marker}'"
    wait_until(lambda: count(server, query) == 2, 60, message="two CommonSecurityLog rows")
    table = server.query(query)
    assert (table.types["SourcePort"], table.types["DeviceCustomNumber1"], table.types["ReceivedBytes"]) == ("int", "int", "long")
    for row in table.dicts():
        assert row["Type"] == "CommonSecurityLog"
        assert row["SourceSystem"] == "OpsManager"
        assert row["DeviceVendor"] == "WatchpostKit"
        assert row["DeviceProduct"] == "Kit|Sensor"
        assert row["DeviceVersion"] == "1.0"
        assert row["DeviceEventClassID"] == "wpk-100"
        assert row["Activity"] == "Port scan detected"
        assert row["LogSeverity"] == "7"
        assert (row["SourceIP"], row["DestinationIP"]) == ("10.1.2.3", "192.0.2.10")
        assert (row["SourcePort"], row["DestinationPort"]) == (51515, 443)
        assert (row["Protocol"], row["DeviceAction"], row["SimplifiedDeviceAction"]) == ("TCP", "blocked", "Deny")
        assert row["SourceUserName"] == "alice"
        assert (row["DeviceCustomString1Label"], row["DeviceCustomString1"]) == ("Rule", "deny all")
        assert (row["DeviceCustomNumber1Label"], row["DeviceCustomNumber1"]) == ("Hits", 42)
        assert row["Message"] == f"{marker} a=b c\\d"
        assert row["RequestURL"] == "https://example.test/a?b=c"
        assert row["AdditionalExtensions"] == "wpkCustom=xyz"
        assert row["CollectorHostName"] == socket.gethostname()
        assert row["TimeGenerated"] is not None
    assert count(server, f"Syslog | where SyslogMessage contains '{marker}'") == 0
    assert_no_table(server, "CommonSecurityLog_CL")


def test_files_and_heartbeat(server, agent):
    app = agent["logs"] / "app.log"
    app.write_text("".join(f"line {i}\n" for i in range(25)))
    wait_until(lambda: count(server, "AgentApp_CL") == 25, 60, message="25 file rows")
    rows = server.query("AgentApp_CL | sort by RawData__s asc | take 1").dicts()
    assert rows[0]["FilePath_s"] == str(app)
    assert rows[0]["Computer_s"] == socket.gethostname()
    wait_until(lambda: count(server, f"Heartbeat | where Computer == '{socket.gethostname()}'") >= 2, 30, message="heartbeats")
    row = server.query("Heartbeat | take 1").dicts()[0]
    assert (row["Category"], row["OSType"], row["ComputerEnvironment"]) == ("Direct Agent", "Linux", "Non-Azure")
    assert (row["Type"], row["SourceSystem"], row["TenantId"]) == ("Heartbeat", "Linux", server.workspace_id)
    assert row["TimeGenerated"] is not None and row["Version"]
    assert_no_table(server, "Heartbeat_CL")
    metrics = requests.get(agent["metrics"], timeout=10).text
    assert 'watchpost_pipeline_source_events_received_total{pipeline="agent",source="file0"} 25' in metrics
    sent = [line for line in metrics.splitlines() if line.startswith("watchpost_pipeline_sink_rows_sent_total")]
    assert sent and int(sent[0].rsplit(" ", 1)[1]) >= 27


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslog is not installed (.ci/run installs it)")
def test_rsyslog_forwards_to_the_listener(server, agent, tmp_path):
    rows = forward_through_rsyslog(server, tmp_path / "rsyslog", agent["port"], "viarsyslog", "user.notice")
    assert {r["ProcessName"] for r in rows} == {"viarsyslog"}
    assert {(r["Facility"], r["SeverityLevel"]) for r in rows} == {("user", "notice")}
    assert {r["Type"] for r in rows} == {"Syslog"}


def forward_through_rsyslog(
    server, work: Path, target_port: int, tag: str, priority: str, global_extra: str = "", action_extra: str = ""
) -> list[dict]:
    """Runs rsyslogd, forwarding everything it gets over UDP to the agent's
    `target_port` over TCP with octet counting (plus `global_extra` and
    `action_extra` settings), sends it ten messages with `logger`, and
    returns the ten `Syslog` rows they became."""
    work.mkdir()
    rsyslog_port = free_port()
    conf = work / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{work}" {global_extra})
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{rsyslog_port}")
*.* action(type="omfwd" target="127.0.0.1" port="{target_port}" protocol="tcp" TCP_Framing="octet-counted"
           {action_extra})
"""
    )
    proc = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "rsyslogd.log", "wb"),
    )
    try:
        time.sleep(1.5)
        marker = f"{tag}{time.time_ns()}"
        for i in range(10):
            logger(rsyslog_port, "--udp", "--rfc3164", "-t", tag, "-p", priority, f"{marker} {i}")
        query = f"Syslog | where SyslogMessage startswith '{marker}'"
        wait_until(lambda: count(server, query) == 10, 60, message=f"ten rows forwarded by rsyslog ({tag})")
        rows = server.query(query).dicts()
        assert {r["SyslogMessage"] for r in rows} == {f"{marker} {i}" for i in range(10)}
        return rows
    finally:
        stop_agent(proc)


def make_tls_files(work: Path) -> dict:
    """A CA and a server certificate for localhost/127.0.0.1 it signed, made
    with the openssl command line."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(work / "ca.key"), "-out", str(work / "ca.pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(work / "server.key"), "-out", str(work / "server.csr"))
    (work / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(work / "server.csr"), "-CA", str(work / "ca.pem"), "-CAkey",
            str(work / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(work / "san.ext"),
            "-out", str(work / "server.pem"))
    return {"ca": work / "ca.pem", "cert": work / "server.pem", "key": work / "server.key"}


@pytest.fixture
def tls_agent(server, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    work = tmp_path / "tls"
    work.mkdir()
    files = make_tls_files(work)
    port = free_port()
    stderr_path = tmp_path / "tls-agent.stderr.log"
    command = agent_command(
        server, tmp_path / "tls-agent-data", "--syslog-tls-listen", f"127.0.0.1:{port}",
        "--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"]),
    )
    proc = start_agent(command, stderr_path)
    yield {"port": port, "ca": files["ca"], "work": work, "stderr": stderr_path}
    stop_agent(proc)


def test_syslog_over_tls_from_python_ssl(server, tls_agent):
    """RFC 5425 framing (octet counting) over a TLS connection made by
    Python's ssl module (OpenSSL), which verifies the agent's certificate."""
    import ssl

    marker = f"tls{time.time_ns()}"
    context = ssl.create_default_context(cafile=str(tls_agent["ca"]))
    with socket.create_connection(("127.0.0.1", tls_agent["port"]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            for i in range(3):
                message = f"<38>1 2026-11-30T10:00:0{i}Z web01 sshd 77 - - {marker} {i}".encode()
                tls.sendall(str(len(message)).encode() + b" " + message)
    query = f"Syslog | where SyslogMessage startswith '{marker}'"
    wait_until(lambda: count(server, query) == 3, 60, message="three rows over TLS")
    rows = server.query(query).dicts()
    assert {(r["Facility"], r["SeverityLevel"], r["ProcessName"], r["ProcessID"]) for r in rows} == {
        ("auth", "info", "sshd", 77)
    }
    assert {r["SyslogMessage"] for r in rows} == {f"{marker} {i}" for i in range(3)}
    # Plain text on the TLS port is refused and logged; nothing lands.
    with socket.create_connection(("127.0.0.1", tls_agent["port"]), timeout=10) as raw:
        raw.sendall(f"<13>Feb 10 12:00:00 host app: {marker} plain\n".encode())
    wait_until(lambda: "SyslogTlsFailed" in tls_agent["stderr"].read_text(), 30, message="the refused handshake")
    assert count(server, f"Syslog | where SyslogMessage has 'plain' and SyslogMessage startswith '{marker}'") == 0


RSYSLOG_GTLS = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")


@pytest.mark.skipif(
    shutil.which("rsyslogd") is None or shutil.which("logger") is None or not RSYSLOG_GTLS.exists(),
    reason="rsyslog with its GnuTLS driver (rsyslog-gnutls) and logger are not installed",
)
def test_rsyslog_forwards_over_tls(server, tls_agent, tmp_path):
    rows = forward_through_rsyslog(
        server,
        tmp_path / "rsyslog-tls",
        tls_agent["port"],
        "viatls",
        "local3.err",
        global_extra=f'DefaultNetstreamDriverCAFile="{tls_agent["ca"]}"',
        action_extra='StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name" '
        'StreamDriverPermittedPeers="localhost"',
    )
    assert {(r["ProcessName"], r["Facility"], r["SeverityLevel"]) for r in rows} == {("viatls", "local3", "err")}


def test_agent_kill_9_mid_stream_loses_and_repeats_nothing(server, tmp_path):
    """The agent `kill -9`'d three times while a file grows: every line lands once."""
    import threading

    logs = tmp_path / "logs"
    logs.mkdir()
    table = f"AgentKill{time.time_ns() % 10**9}"
    command = agent_command(server, tmp_path / "agent-data", "--file", f"{logs}/*.log={table}_CL")

    def start():
        return start_agent(command, tmp_path / "agent.log", listening=False)

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
        stop_agent(proc)
    assert count(server, f"{table}_CL") == 3000
    assert count(server, f"{table}_CL | distinct RawData__s") == 3000


def test_agent_buffers_a_30_second_outage_to_disk(fixed_server, tmp_path):
    """The server stopped for 30 s while the agent takes syslog messages and a
    growing file: it keeps them in its disk buffer, and once the server is back
    every one arrives exactly once."""
    server = fixed_server
    logs = tmp_path / "logs"
    logs.mkdir()
    table = f"AgentOutage{time.time_ns() % 10**9}"
    port = free_port()
    command = agent_command(
        server, tmp_path / "agent-data", "--syslog-listen", f"127.0.0.1:{port}", "--file", f"{logs}/*.log={table}_CL"
    )
    proc = start_agent(command, tmp_path / "agent.log")
    marker = f"outage{time.time_ns() % 10**9}"
    try:
        with open(logs / "app.log", "a") as f:
            for i in range(200):
                f.write(f"before {i}\n")
        wait_until(lambda: count(server, f"{table}_CL") >= 200, 60, message="rows before the outage")
        assert server.stop() == 0
        down_at = time.monotonic()
        with open(logs / "app.log", "a") as f:
            for i in range(800):
                f.write(f"during {i}\n")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for i in range(300):
                sock.sendall(f"<13>1 2026-11-30T07:00:00Z host app - - - {marker} {i}\n".encode())
        wait_until(lambda: list((tmp_path / "agent-data" / "buffer").glob("*.seg")), 20, message="segments on disk")
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert proc.poll() is None, "the agent died while the server was down"
        server.start()
        wait_until(lambda: count(server, f"{table}_CL") >= 1000, 90, message="file rows after the outage")
        syslog = f"Syslog | where SyslogMessage has '{marker}'"
        wait_until(lambda: count(server, syslog) >= 300, 90, message="syslog rows after the outage")
        time.sleep(1)
    finally:
        stop_agent(proc)
    assert count(server, f"{table}_CL") == 1000
    assert count(server, f"{table}_CL | distinct RawData__s") == 1000
    assert count(server, syslog) == 300
    assert count(server, f"{syslog} | distinct SyslogMessage") == 300
    assert "BatchRetrying" in (tmp_path / "agent.log").read_text()
