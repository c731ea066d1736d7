"""`watchpost pipeline` end to end: a file source tailing through rename
and copy-truncate rotation, grok, the Data Collector sink into a real
`watchpost serve`, dead letters, a `kill -9` of the pipeline mid-stream and
a server outage while the pipeline buffers to disk. With Watchpost as the
receiver every line must arrive exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import (
    free_port,
    run_cli,
    unique_log_type,
    wait_until,
    watchpost_bin,
)


class Pipeline:
    """One `watchpost pipeline run` child process."""

    def __init__(self, config: Path, data_dir: Path, log_dir: Path):
        self.config, self.data_dir, self.log_dir = config, data_dir, log_dir
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> "Pipeline":
        self.runs += 1
        stderr = open(self.log_dir / f"pipeline-{self.runs}.stderr.log", "wb")
        env = dict(os.environ, WATCHPOST_LOG="info", NO_COLOR="1")
        command = [str(watchpost_bin()), "pipeline", "run", str(self.config), "--data-dir", str(self.data_dir)]
        command += ["--flush-interval-ms", "200"]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        stderr.close()
        return self

    def stop(self, sig=signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def log(self) -> str:
        return "".join((self.log_dir / f"pipeline-{i}.stderr.log").read_text() for i in range(1, self.runs + 1))

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *_exc) -> None:
        """A pipeline used in `with` must stop cleanly on SIGTERM, whatever happened in the block."""
        assert self.stop() == 0, self.log()


def write_config(path: Path, server, log_dir: Path, log_type: str, extra_source: str = "", transforms: str | None = None):
    if transforms is None:
        transforms = """
[[transform]]
type = "grok"
match = { message = "^%{IPORHOST:clientip} %{WORD:verb} %{INT:seq:int}$" }
"""
    path.write_text(
        f"""
name = "it"
[[source]]
type = "file"
id = "web"
paths = ["{log_dir}/*.log"]
glob_interval_ms = 100
rotate_wait_ms = 1000
{extra_source}
{transforms}
[[sink]]
type = "data_collector"
endpoint = "{server.url}"
workspace_id = "{server.workspace_id}"
workspace_key = "{server.primary_key}"
log_type = "{log_type}"
batch_max_rows = 50
"""
    )


def append(path: Path, start: int, end: int, pause: float = 0.0):
    with open(path, "a") as f:
        for i in range(start, end):
            f.write(f"10.0.0.{i % 250} GET {i}\n")
            if pause and i % 20 == 0:
                f.flush()
                time.sleep(pause)


def append_while_killing(pipeline: Pipeline, path: Path, lines: int, rounds: int, every: float):
    """Appends `lines` numbered lines while the pipeline is killed with SIGKILL and restarted `rounds` times."""
    writer = threading.Thread(target=append, args=(path, 0, lines, 0.01))
    writer.start()
    for _ in range(rounds):
        time.sleep(every)
        pipeline.stop(signal.SIGKILL)
        pipeline.start()
    writer.join()


def wait_for_count(server, kql: str, expected: int, timeout: float = 90):
    last = [None]

    def check():
        response = server.query_raw(f"{kql} | count")
        if response.status_code != 200:  # the table does not exist yet
            return False
        last[0] = response.json()["tables"][0]["rows"][0][0]
        return last[0] >= expected

    try:
        wait_until(check, timeout, interval=0.3, message=f"{kql} reaching {expected}")
    except AssertionError as err:
        raise AssertionError(f"{err}; last count {last[0]}") from None


def assert_exactly_once(server, table: str, n: int):
    assert server.count(table) == n, "duplicates or extra rows"
    assert server.count(f"{table} | distinct seq_d") == n
    assert server.count(f"{table} | where seq_d >= 0 and seq_d < {n}") == n


def test_validate_and_test_commands(tmp_path, server):
    config = tmp_path / "p.toml"
    write_config(config, server, tmp_path / "logs", "Unused")
    result = run_cli("pipeline", "validate", str(config))
    assert result.returncode == 0, result.stderr
    assert "1 sources, 1 transforms, 1 sinks" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("match = {", "break_on_mtach = false\nmatch = {"))
    result = run_cli("pipeline", "validate", str(bad))
    assert result.returncode == 1
    assert "transform[0] (grok): unsupported option `break_on_mtach`" in result.stderr
    lines = tmp_path / "in.txt"
    lines.write_text("10.0.0.1 GET 7\nnot a match\n")
    result = run_cli("pipeline", "test", str(config), "--input", str(lines))
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    event = json.loads(first.split(": ", 1)[1])
    assert (event["clientip"], event["verb"], event["seq"]) == ("10.0.0.1", "GET", 7)
    assert second.startswith("2: dead letter at transform[0] (grok): no grok pattern matched [message]")


def test_rotation_dead_letters_and_multiline(tmp_path, server):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Tail")
    config = tmp_path / "p.toml"
    write_config(config, server, log_dir, log_type)
    access = log_dir / "access.log"
    append(access, 0, 100)
    with Pipeline(config, tmp_path / "pdata", tmp_path).start() as pipeline:
        append(access, 100, 300, pause=0.01)
        wait_for_count(server, f"{log_type}_CL", 300)
        # Rename rotation while a writer still holds the old file.
        with open(access, "a") as old_writer:
            os.rename(access, log_dir / "access.log.1")
            for i in range(300, 350):
                old_writer.write(f"10.0.0.1 GET {i}\n")
        append(access, 350, 600, pause=0.01)
        wait_for_count(server, f"{log_type}_CL", 600)
        # Copy-truncate rotation.
        shutil.copy(access, log_dir / "access.log.2")
        with open(access, "r+") as f:
            f.truncate(0)
        append(access, 600, 1000, pause=0.005)
        with open(access, "a") as f:
            for i in range(5):
                f.write(f"!! garbage line {i}\n")
        wait_for_count(server, f"{log_type}_CL", 1000)
        wait_for_count(server, "WatchpostDeadLetter_CL", 5)
    assert_exactly_once(server, f"{log_type}_CL", 1000)
    dead = server.query("WatchpostDeadLetter_CL | sort by RawEvent_s asc").dicts()
    assert [d["RawEvent_s"] for d in dead] == [f"!! garbage line {i}" for i in range(5)]
    assert all(d["Pipeline_s"] == "it" and d["Step_s"] == "transform[0] (grok)" for d in dead)
    assert "no grok pattern matched" in dead[0]["Reason_s"]
    assert "FileTruncated" in pipeline.log()
    row = server.query(f"{log_type}_CL | where seq_d == 5").dicts()[0]
    assert row["path_s"] == str(access) and row["host_s"] == socket.gethostname()
    assert row["message_s"] == "10.0.0.5 GET 5"


def test_java_stack_traces_stay_one_record(tmp_path, server):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Java")
    config = tmp_path / "p.toml"
    write_config(config, server, log_dir, log_type, extra_source='record_start = "timestamp"\nmultiline_timeout_ms = 500', transforms="")
    app = log_dir / "app.log"
    with open(app, "w") as f:
        for i in range(20):
            f.write(f"2024-10-29 18:28:{i:02d} ERROR request {i} failed\n")
            f.write("java.lang.IllegalStateException: boom\n\tat com.example.A.b(A.java:10)\n")
            f.write("Caused by: java.io.IOException: disk\n\t... 3 more\n")
    with Pipeline(config, tmp_path / "pdata", tmp_path).start() as pipeline:
        wait_for_count(server, f"{log_type}_CL", 20)
    rows = server.query(f"{log_type}_CL | project message_s").dicts()
    assert len(rows) == 20
    assert all(r["message_s"].count("\n") == 4 and "\tat com.example.A.b" in r["message_s"] for r in rows)


def test_kill_9_mid_stream_loses_and_repeats_nothing(tmp_path, server):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Kill")
    config = tmp_path / "p.toml"
    write_config(config, server, log_dir, log_type)
    pipeline = Pipeline(config, tmp_path / "pdata", tmp_path).start()
    append_while_killing(pipeline, log_dir / "access.log", 4000, rounds=3, every=0.7)
    with pipeline:
        wait_for_count(server, f"{log_type}_CL", 4000)
        time.sleep(1)
    assert_exactly_once(server, f"{log_type}_CL", 4000)


KQL_TRANSFORMS = """
[[transform]]
type = "grok"
match = { message = "^%{IPORHOST:clientip} %{WORD:verb} %{INT:seq:int}$" }

[[transform]]
type = "kql"
query = '''source
  | where seq % 10 != 3
  | extend Bucket = bin(seq, 100), Ip = strcat('ip-', clientip)
  | project-away clientip'''
columns = { seq = "long", clientip = "string" }
"""


def test_kql_step_filters_and_extends_in_batches_and_survives_kill_9(tmp_path, server):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Kql")
    config = tmp_path / "p.toml"
    write_config(config, server, log_dir, log_type, transforms=KQL_TRANSFORMS)
    result = run_cli("pipeline", "validate", str(config))
    assert result.returncode == 0, result.stderr
    too_big = "9" * 20  # an INT grok keeps as text, and no long holds
    lines = tmp_path / "in.txt"
    lines.write_text(f"10.0.0.1 GET 7\n10.0.0.1 GET 13\n10.0.0.2 GET {too_big}\n")
    result = run_cli("pipeline", "test", str(config), "--input", str(lines))
    assert result.returncode == 0, result.stderr
    first, second, third = result.stdout.splitlines()
    event = json.loads(first.split(": ", 1)[1])
    assert (event["seq"], event["Bucket"], event["Ip"], event["verb"]) == (7, 0, "ip-10.0.0.1", "GET")
    assert "clientip" not in event
    assert second == "2: dropped at transform[1] (kql): filtered out by the query"
    assert third == f'3: dead letter at transform[1] (kql): the value of `seq` ("{too_big}") cannot be converted to long'

    access = log_dir / "access.log"
    pipeline = Pipeline(config, tmp_path / "pdata", tmp_path).start()
    append_while_killing(pipeline, access, 3000, rounds=2, every=0.8)
    with open(access, "a") as f:
        f.write(f"10.0.0.9 GET {too_big}\n")
    table = f"{log_type}_CL"
    dead = f"WatchpostDeadLetter_CL | where RawEvent_s has '{too_big}' and RawEvent_s has '10.0.0.9'"
    with pipeline:
        wait_for_count(server, table, 2700)
        wait_for_count(server, dead, 1)
        time.sleep(1)
    # Every line whose seq does not end in 3, exactly once, extended.
    assert server.count(table) == 2700
    assert server.count(f"{table} | distinct seq_d") == 2700
    assert server.count(f"{table} | where toint(seq_d) % 10 == 3") == 0
    assert server.count(f"{table} | where Bucket_d == seq_d - toint(seq_d) % 100 and Ip_s startswith 'ip-10.0.0.'") == 2700
    assert server.count(f"{table} | getschema | where ColumnName startswith 'clientip'") == 0
    assert server.count(dead) == 1


def test_server_outage_is_buffered_to_disk(tmp_path, fixed_server):
    server = fixed_server
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Outage")
    config = tmp_path / "p.toml"
    write_config(config, server, log_dir, log_type)
    access = log_dir / "access.log"
    append(access, 0, 500)
    with Pipeline(config, tmp_path / "pdata", tmp_path).start() as pipeline:
        wait_for_count(server, f"{log_type}_CL", 500)
        assert server.stop() == 0
        down_at = time.monotonic()
        append(access, 500, 1500, pause=0.01)
        wait_until(lambda: list((tmp_path / "pdata" / "buffer").glob("*.seg")), 20, message="segments on disk")
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert pipeline.proc.poll() is None, "the pipeline died while the server was down"
        server.start()
        wait_for_count(server, f"{log_type}_CL", 1500)
        time.sleep(1)
    assert_exactly_once(server, f"{log_type}_CL", 1500)
    assert "BatchRetrying" in pipeline.log()


def test_logstash_conf_runs_like_toml(tmp_path, server):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    log_type = unique_log_type("Conf")
    conf = tmp_path / "web.conf"
    conf.write_text(
        f"""
input {{ file {{ path => "{log_dir}/*.log" glob_interval_ms => 100 }} }}
filter {{
  grok {{ match => {{ "message" => "^%{{IPORHOST:clientip}} %{{WORD:verb}} %{{INT:seq:int}}$" }} }}
  if [verb] == "HEAD" {{ drop {{ }} }} else {{ mutate {{ uppercase => ["verb"] add_tag => "seen" }} }}
}}
output {{
  microsoft-logstash-output-azure-loganalytics {{
    endpoint => "{server.url}" workspace_id => "{server.workspace_id}"
    workspace_key => "{server.primary_key}" custom_log_table_name => "{log_type}"
  }}
}}
"""
    )
    result = run_cli("pipeline", "validate", str(conf))
    assert result.returncode == 0, result.stderr
    (log_dir / "a.log").write_text("10.0.0.1 get 1\n10.0.0.1 HEAD 2\n10.0.0.1 put 3\n")
    with Pipeline(conf, tmp_path / "pdata", tmp_path).start() as pipeline:
        wait_for_count(server, f"{log_type}_CL", 2)
        time.sleep(0.5)
    rows = server.query(f"{log_type}_CL | sort by seq_d asc").dicts()
    assert [(r["verb_s"], r["seq_d"]) for r in rows] == [("GET", 1), ("PUT", 3)]
    assert json.loads(rows[0]["tags_s"]) == ["seen"]


def stdin_config(path: Path, server, log_type: str, pattern: str) -> None:
    path.write_text(
        f"""
name = "replayed"
[[source]]
type = "stdin"
[[transform]]
type = "grok"
match = {{ message = {json.dumps(pattern)} }}
[[sink]]
type = "data_collector"
endpoint = "{server.url}"
workspace_id = "{server.workspace_id}"
workspace_key = "{server.primary_key}"
log_type = "{log_type}"
"""
    )


def test_stdin_source_ends_with_its_input_and_replay_fixes_dead_letters(tmp_path, server):
    log_type = unique_log_type("Replay")
    broken, fixed = tmp_path / "broken.toml", tmp_path / "fixed.toml"
    stdin_config(broken, server, log_type, "^%{WORD:verb} %{INT:seq:int}$")
    stdin_config(fixed, server, log_type, "^(?:%{WORD:verb}|%{WORD:verb}-%{WORD:extra}) %{INT:seq:int}$")
    lines = "".join(f"get {i}\n" for i in range(10)) + "get-more 10\nget-more 11\n"
    run = subprocess.run(
        [str(watchpost_bin()), "pipeline", "run", str(broken), "--data-dir", str(tmp_path / "d1"), "--flush-interval-ms", "100"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert server.count(f"{log_type}_CL") == 10
    dead = f"WatchpostDeadLetter_CL | where Pipeline_s == 'replayed'"
    assert server.count(dead) == 2
    replay = run_cli(
        "pipeline", "replay", str(fixed), "--url", server.url, "--workspace", server.workspace_id,
        "--key", server.primary_key, "--data-dir", str(tmp_path / "d2"), timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replaying 2 dead letters" in replay.stderr
    rows = server.query(f"{log_type}_CL | where seq_d >= 10 | sort by seq_d asc").dicts()
    assert [(r["verb_s"], r["extra_s"], r["seq_d"]) for r in rows] == [("get", "more", 10), ("get", "more", 11)]


def test_exec_source_takes_ndjson_on_a_schedule(tmp_path, server):
    log_type = unique_log_type("Exec")
    script = tmp_path / "connector.py"
    script.write_text(
        "import json, time\n"
        "print(json.dumps({'Kind': 'poll', 'At': time.time()}))\n"
        "print(json.dumps({'Kind': 'poll2', 'Nested': {'a': 1}}))\n"
        "print('not json')\n"
    )
    import sys

    config = tmp_path / "exec.toml"
    config.write_text(
        f"""
name = "exec"
[[source]]
type = "exec"
command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]
interval_secs = 1
[[sink]]
type = "data_collector"
endpoint = "{server.url}"
workspace_id = "{server.workspace_id}"
workspace_key = "{server.primary_key}"
log_type = "{log_type}"
"""
    )
    with Pipeline(config, tmp_path / "pdata", tmp_path).start() as pipeline:
        wait_for_count(server, f"{log_type}_CL | where Kind_s == 'poll'", 2)
        wait_for_count(server, "WatchpostDeadLetter_CL | where Pipeline_s == 'exec'", 1)
    row = server.query(f"{log_type}_CL | where Kind_s == 'poll2' | take 1").dicts()[0]
    assert row["Nested_a_d"] == 1
    dead = server.query("WatchpostDeadLetter_CL | where Pipeline_s == 'exec' | take 1").dicts()[0]
    assert dead["RawEvent_s"] == "not json" and "not JSON" in dead["Reason_s"]


def test_logs_ingestion_sink_gzips_retries_with_the_same_key(tmp_path):
    """Against a stub of the Logs Ingestion API (a real one lives on the
    server's logs-ingestion work): bearer token, gzip, 204, and a retried
    batch keeps its idempotency key."""
    import gzip
    import http.server

    calls: list[tuple[str, dict, list]] = []

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rows = json.loads(gzip.decompress(body)) if self.headers.get("Content-Encoding") == "gzip" else None
            calls.append((self.path, dict(self.headers), rows))
            status = 503 if len(calls) == 1 else 204
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    stub = http.server.HTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    config = tmp_path / "li.toml"
    config.write_text(
        f"""
[[source]]
type = "stdin"
[[transform]]
type = "json"
source = "message"
remove_field = ["message"]
[[sink]]
type = "logs_ingestion"
endpoint = "http://127.0.0.1:{stub.server_port}"
dcr_id = "dcr-00000000000000000000000000000001"
stream = "Custom-%{{kind}}"
token = "secret-token"
"""
    )
    try:
        run = subprocess.run(
            [str(watchpost_bin()), "pipeline", "run", str(config), "--data-dir", str(tmp_path / "d")],
            input='{"kind":"Web","n":1}\n',
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stub.shutdown()
    assert run.returncode == 0, run.stderr
    assert len(calls) == 2
    (path1, headers1, rows1), (path2, headers2, rows2) = calls
    assert path1 == path2 == "/dataCollectionRules/dcr-00000000000000000000000000000001/streams/Custom-Web?api-version=2023-01-01"
    assert headers1["Authorization"] == "Bearer secret-token"
    assert headers1["x-ms-client-request-id"] == headers2["x-ms-client-request-id"]
    assert rows1 == rows2 and len(rows2) == 1
    assert (rows2[0]["kind"], rows2[0]["n"]) == ("Web", 1) and "TimeGenerated" in rows2[0]


def http_config(path: Path, endpoint: str, server, log_type: str, port: int) -> None:
    path.write_text(
        f"""
name = "http"
[[source]]
type = "http"
listen = "127.0.0.1:{port}"
path = "/events"
token = "shipper-token"
[[sink]]
type = "data_collector"
endpoint = "{endpoint}"
workspace_id = "{server.workspace_id}"
workspace_key = "{server.primary_key}"
log_type = "{log_type}"
"""
    )


def test_http_source_takes_json_ndjson_and_gzip_and_acknowledges_durably(tmp_path, server):
    """`requests` posts as any shipper would; a 200 means the events are in
    the disk buffer: the pipeline is killed with -9 while its sink points
    at a closed port, and the restarted pipeline still delivers them."""
    import gzip

    port = free_port()
    log_type = unique_log_type("Http")
    config = tmp_path / "http.toml"
    closed_port = free_port()
    http_config(config, f"http://127.0.0.1:{closed_port}", server, log_type, port)
    pipeline = Pipeline(config, tmp_path / "pdata", tmp_path).start()
    url = f"http://127.0.0.1:{port}/events"
    auth = {"Authorization": "Bearer shipper-token"}
    wait_until(lambda: "HttpSourceListening" in pipeline.log(), 30, message="the http source listening")
    try:
        ndjson = "".join(json.dumps({"seq": i, "Kind": "ndjson"}) + "\n" for i in range(0, 100))
        response = requests.post(url, data=ndjson, headers=auth, timeout=30)
        assert (response.status_code, response.json()) == (200, {"accepted": 100})
        array = [{"seq": i, "Kind": "array", "Nested": {"a": i}} for i in range(100, 150)]
        response = requests.post(url, json=array, headers=auth, timeout=30)
        assert (response.status_code, response.json()) == (200, {"accepted": 50})
        body = gzip.compress("".join(json.dumps({"seq": i, "Kind": "gzip"}) + "\n" for i in range(150, 200)).encode())
        response = requests.post(url, data=body, headers={**auth, "Content-Encoding": "gzip"}, timeout=30)
        assert (response.status_code, response.json()) == (200, {"accepted": 50})
        # Refused requests: nothing of them is taken.
        bad = requests.post(url, data='{"seq": 900}\n{oops\n', headers=auth, timeout=30)
        assert bad.status_code == 400 and "line 2 is not JSON" in bad.json()["error"], bad.text
        assert requests.post(url, data="{}", timeout=30).status_code == 401
        assert requests.post(f"http://127.0.0.1:{port}/other", data="{}", headers=auth, timeout=30).status_code == 404
    finally:
        pipeline.stop(signal.SIGKILL)
    http_config(config, server.url, server, log_type, port)
    with Pipeline(config, tmp_path / "pdata", tmp_path).start() as pipeline:
        wait_for_count(server, f"{log_type}_CL", 200)
        time.sleep(1)
    assert_exactly_once(server, f"{log_type}_CL", 200)
    assert server.count(f"{log_type}_CL | where Kind_s == 'array' and Nested_a_d == seq_d") == 50
    assert server.count(f"{log_type}_CL | where Kind_s == 'gzip'") == 50
