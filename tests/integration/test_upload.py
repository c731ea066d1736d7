"""`watchpost upload` against the real server: CSV and NDJSON land with the
requested tags, computer name and resource id; bad rows go to the reject
file and the exit code says so; a server that answers 503 then recovers is
retried."""

from __future__ import annotations

import json
import socket
import subprocess

from conftest import run_cli, unique_log_type, watchpost_bin


def upload(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    command = [
        str(watchpost_bin()),
        "upload",
        "--endpoint",
        server.url,
        "--workspace-id",
        server.workspace_id,
        "--workspace-key",
        server.primary_key,
        *args,
    ]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


def test_csv_lands_with_tags_and_computer_name(server, tmp_path):
    log_type = unique_log_type("UploadCsv")
    path = tmp_path / "rows.csv"
    path.write_text('Name,Count,Note\nalpha,1,"quoted, with comma"\nbeta,2,"multi\nline"\ngamma,3,plain\n')
    result = upload(
        server,
        str(path),
        "--log-type",
        log_type,
        "--add-computer-name",
        "--tag-value",
        "batch-7",
        "--tagged-resource-id",
        "/subscriptions/x/resourceGroups/rg/providers/p/vm1",
    )
    assert result.returncode == 0, result.stderr
    assert "uploaded 3 rows" in result.stderr
    rows = server.query(f"{log_type}_CL | sort by Name_s asc").dicts()
    assert [r["Name_s"] for r in rows] == ["alpha", "beta", "gamma"]
    # CSV values are strings (spec 3), so Count stays a string column.
    assert [r["Count_s"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["Note_s"] == "quoted, with comma"
    assert rows[1]["Note_s"] == "multi\nline"
    assert all(r["DataTagging_s"] == "batch-7" for r in rows)
    assert all(r["Computer_s"] == socket.gethostname() for r in rows)
    assert all(r["_ResourceId"] == "/subscriptions/x/resourceGroups/rg/providers/p/vm1" for r in rows)


def test_ndjson_from_stdin_in_several_batches_with_time_field(server):
    log_type = unique_log_type("UploadNd")
    lines = [json.dumps({"Seq": i, "When": "2026-01-02T03:04:05Z", "Msg": f"m{i}"}) for i in range(500)]
    result = upload(
        server,
        "--log-type",
        log_type,
        "--tag-name",
        "Source",
        "--tag-value",
        "import",
        "--time-field",
        "When",
        "--batch-rows",
        "64",
        stdin="\n".join(lines) + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "in 8 requests" in result.stderr
    assert server.count(f"{log_type}_CL") == 500
    assert server.count(f"{log_type}_CL | distinct Seq_d") == 500
    assert server.count(f"{log_type}_CL | where Source_s == 'import'") == 500


def test_bad_rows_go_to_the_reject_file(server, tmp_path):
    log_type = unique_log_type("UploadBad")
    path = tmp_path / "rows.ndjson"
    path.write_text('{"a": "ok1"}\nnot json\n{"a": "ok2"}\n{"RawData": "reserved name"}\n')
    reject = tmp_path / "rejects.ndjson"
    result = upload(server, str(path), "--log-type", log_type, "--reject-file", str(reject), "--batch-rows", "1")
    assert result.returncode == 1, result.stderr
    assert "2 rejected" in result.stderr
    assert server.count(f"{log_type}_CL") == 2
    rejected = [json.loads(line) for line in reject.read_text().splitlines()]
    assert [r["source"].rsplit(":", 1)[1] for r in rejected] == ["2", "4"]
    assert rejected[0]["row"] == "not json"
    assert rejected[1]["row"] == {"RawData": "reserved name"}
    assert "400" in rejected[1]["reason"]


def test_bad_key_rejects_everything_and_says_so(server, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a\n1\n2\n")
    result = run_cli(
        "upload",
        str(path),
        "--endpoint",
        server.url,
        "--workspace-id",
        server.workspace_id,
        "--workspace-key",
        "c2hhcmVkX2tleQ==",
        "--log-type",
        "Denied",
    )
    assert result.returncode == 1
    assert "403" in result.stderr
    assert len((tmp_path / "rows.csv.rejected.ndjson").read_text().splitlines()) == 2


def test_retries_through_503_and_honours_retry_after(server, tmp_path):
    """A proxy answers 503 with Retry-After: 1 twice, then forwards."""
    import http.server
    import threading
    import time
    import urllib.request

    log_type = unique_log_type("UploadRetry")
    seen: list[float] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(time.monotonic())
            if len(seen) <= 2:
                self.send_response(503)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = urllib.request.Request(server.url + self.path, data=body, method="POST")
            for name, value in self.headers.items():
                if name.lower() not in ("host", "content-length"):
                    request.add_header(name, value)
            with urllib.request.urlopen(request) as response:
                self.send_response(response.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args):
            pass

    proxy = http.server.HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "rows.csv"
        path.write_text("a\n1\n2\n")
        command = [
            str(watchpost_bin()),
            "upload",
            str(path),
            "--endpoint",
            f"http://127.0.0.1:{proxy.server_port}",
            "--workspace-id",
            server.workspace_id,
            "--workspace-key",
            server.primary_key,
            "--log-type",
            log_type,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        proxy.shutdown()
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("retrying in 1.0s") == 2
    assert len(seen) == 3 and seen[2] - seen[0] >= 1.9
    assert server.count(f"{log_type}_CL") == 2
