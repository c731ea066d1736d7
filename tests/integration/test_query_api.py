"""The query REST API (shared/spec/query-api.md) and the admin/query CLI."""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import json
import re
import uuid

import pytest
import requests

from conftest import (
    OMIT,
    WatchpostServer,
    iso_z,
    kusto_datetime,
    new_key,
    new_workspace_id,
    parse_datetime,
    run_cli,
    unique_log_type,
    utcnow,
)

# ---------------------------------------------------------------------------
# a table with known TimeGenerated values
#
# base = yesterday 12:00 UTC (always 12-36 h ago, inside the 2-day window in
# which time-generated-field is honoured). Rows, by minutes from base:
#   A -180, B -90, C -45, D -10, E +30;  F = now + 6 h (future, < 1 day);
#   G has no time field -> ingestion time (about now).


@pytest.fixture(scope="module")
def timed(server):
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    base = today - dt.timedelta(hours=12)
    now = utcnow().replace(microsecond=0)
    when = {
        "A": base - dt.timedelta(minutes=180),
        "B": base - dt.timedelta(minutes=90),
        "C": base - dt.timedelta(minutes=45),
        "D": base - dt.timedelta(minutes=10),
        "E": base + dt.timedelta(minutes=30),
        "F": now + dt.timedelta(hours=6),
    }
    log_type = unique_log_type("Timed")
    records = [{"Name": name, "At": iso_z(at)} for name, at in when.items()] + [{"Name": "G"}]
    server.ingest(log_type, records, time_generated_field="At")
    return {"table": f"{log_type}_CL", "base": base, "today": today, "when": when}


def names(server, table, **kwargs) -> list[str]:
    return sorted(server.query(f"{table} | project Name_s", **kwargs).column("Name_s"))


# --- timespan ------------------------------------------------------------------------


def test_rows_carry_the_time_generated_field(server, timed):
    rows = {r["Name_s"]: r["TimeGenerated"] for r in server.query(timed["table"]).dicts()}
    for name, at in timed["when"].items():
        assert rows[name] == kusto_datetime(at), name
    assert abs(parse_datetime(rows["G"]) - utcnow()) < dt.timedelta(minutes=10)


@pytest.mark.parametrize(
    "timespan, expected",
    [
        ("PT1H", "CD"),
        ("PT3600.0S", "CD"),  # what azure-monitor-query sends
        ("PT60M", "CD"),
        ("P1D", "ABCD"),
        ("PT2H30M", "BCD"),
    ],
)
def test_duration_timespan_ends_at_pinned_now(server, timed, timespan, expected):
    now = kusto_datetime(timed["base"])
    assert names(server, timed["table"], timespan=timespan, now=now) == list(expected)


def test_duration_timespan_ends_at_real_now(server, timed):
    assert names(server, timed["table"], timespan="PT1H") == ["G"]


def test_start_end_and_start_duration_timespans(server, timed):
    base = timed["base"]
    start_end = f"{iso_z(base - dt.timedelta(minutes=100))}/{iso_z(base - dt.timedelta(minutes=5))}"
    assert names(server, timed["table"], timespan=start_end) == ["B", "C", "D"]
    start_duration = f"{iso_z(base - dt.timedelta(minutes=200))}/PT2H"
    assert names(server, timed["table"], timespan=start_duration) == ["A", "B"]
    # Fractional seconds in the bounds, as Python's isoformat() writes them.
    fractional = f"{(base - dt.timedelta(minutes=50)).isoformat().replace('+00:00', 'Z')[:-1]}.500000Z/{iso_z(base)}"
    assert names(server, timed["table"], timespan=fractional) == ["C", "D"]


def test_date_only_timespan(server, timed):
    yesterday = (timed["today"] - dt.timedelta(days=1)).date().isoformat()
    today = timed["today"].date().isoformat()
    assert names(server, timed["table"], timespan=f"{yesterday}/{today}") == ["A", "B", "C", "D", "E"]


def test_no_or_null_timespan_means_no_filter(server, timed):
    assert names(server, timed["table"]) == list("ABCDEFG")
    assert names(server, timed["table"], timespan=None) == list("ABCDEFG")


def test_timespan_intersects_with_query_filter(server, timed):
    now = kusto_datetime(timed["base"])
    result = names(server, f"{timed['table']} | where Name_s != 'C'", timespan="PT1H", now=now)
    assert result == ["D"]


def test_pinned_now_drives_now_and_ago(server, timed):
    pinned = kusto_datetime(timed["base"])
    assert server.query("print t = now()", now=pinned).rows == [[pinned]]
    assert names(server, f"{timed['table']} | where TimeGenerated > ago(1h)", now=pinned) == list("CDEFG")
    real = server.query("print t = now()").scalar()
    assert abs(parse_datetime(real) - utcnow()) < dt.timedelta(minutes=5)


def test_get_form(server, timed):
    pinned = kusto_datetime(timed["base"])
    response = server.query_raw(f"{timed['table']} | project Name_s | sort by Name_s asc", method="GET", timespan="PT1H", now=pinned)
    assert response.status_code == 200, response.text
    assert response.json()["tables"][0]["rows"] == [["C"], ["D"]]
    response = server.query_raw(f"{timed['table']} | count", method="GET")
    assert response.json()["tables"][0]["rows"] == [[7]]


def test_bad_timespan_is_bad_argument(server, timed):
    response = server.query_raw(f"{timed['table']} | count", timespan="yesterday-ish")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadArgumentError"


# --- response shape ------------------------------------------------------------------


def test_response_shape_and_cell_encoding(server):
    response = server.query_raw(
        'print b = true, l = 1, big = 10000000000, r = 1.5, s = "x", d = datetime(2024-05-01T10:00:00Z), t = 1h, t2 = 2d'
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    assert response.headers.get("x-ms-request-id")
    payload = response.json()
    assert list(payload) == ["tables"], "no statistics unless asked"
    [table] = payload["tables"]
    assert table["name"] == "PrimaryResult"
    assert table["columns"] == [
        {"name": "b", "type": "bool"},
        {"name": "l", "type": "long"},
        {"name": "big", "type": "long"},
        {"name": "r", "type": "real"},
        {"name": "s", "type": "string"},
        {"name": "d", "type": "datetime"},
        {"name": "t", "type": "timespan"},
        {"name": "t2", "type": "timespan"},
    ]
    assert table["rows"] == [[True, 1, 10000000000, 1.5, "x", "2024-05-01T10:00:00.0000000Z", "01:00:00", "2.00:00:00"]]


def test_response_content_type_has_charset(server):
    """query-api.md 3: `Content-Type: application/json; charset=utf-8`."""
    response = server.query_raw("print a = 1")
    assert response.status_code == 200
    assert response.headers["content-type"].replace(" ", "").lower() == "application/json;charset=utf-8"


def test_empty_result_is_200_with_no_rows(server):
    table = server.query("datatable(a:string)[] | where a == 'x'")
    assert table.rows == [] and table.columns == ["a"]


DATA = 'datatable(Name:string, Host:string, N:long, V:real)["alpha","web-1",1,1.5, "beta","web-2",2,2.5, "gamma","db-1",3,3.5, "Alpha","web-1",4,4.5]'


@pytest.mark.parametrize(
    "kql, columns, rows",
    [
        ("| where N > 2 | project Name", ["Name"], [["gamma"], ["Alpha"]]),
        ("| where Name == 'alpha' | project N", ["N"], [[1]]),
        ("| where Name =~ 'ALPHA' | project N | sort by N asc", ["N"], [[1], [4]]),
        ("| where Host startswith 'web' and not(N == 2) | project N | sort by N asc", ["N"], [[1], [4]]),
        ("| where Host has 'db' or Name contains 'et' | project Name | sort by Name asc", ["Name"], [["beta"], ["gamma"]]),
        ("| where Name in ('beta', 'gamma') | count", ["Count"], [[2]]),
        ("| where Name !in ('beta', 'gamma') | count", ["Count"], [[2]]),
        ("| where N between (2 .. 3) | project N | sort by N desc", ["N"], [[3], [2]]),
        ("| summarize count() by Host | sort by Host asc", ["Host", "count_"], [["db-1", 1], ["web-1", 2], ["web-2", 1]]),
        ("| summarize sum(N), avg(V), min(N), max(V)", ["sum_N", "avg_V", "min_N", "max_V"], [[10, 3.0, 1, 4.5]]),
        ("| summarize dcount(Host), countif(N > 1)", ["dcount_Host", "countif_"], [[3, 3]]),
        ("| extend D = N * 2 | project Name, D | top 2 by D desc", ["Name", "D"], [["Alpha", 8], ["gamma", 6]]),
        ("| distinct Host | sort by Host asc", ["Host"], [["db-1"], ["web-1"], ["web-2"]]),
        ("| sort by N asc | take 1 | project Name", ["Name"], [["alpha"]]),
    ],
)
def test_kql_operators_over_the_wire(server, kql, columns, rows):
    table = server.query(f"{DATA} {kql}")
    assert table.columns == columns
    assert table.rows == rows


def test_bin_summarize_over_time(server, timed):
    table = server.query(
        f"{timed['table']} | where Name_s in ('A','B','C','D') | summarize n = count() by bin(TimeGenerated, 1h) | sort by TimeGenerated asc"
    )
    base = timed["base"]
    hour = lambda at: kusto_datetime(at.replace(minute=0, second=0))  # noqa: E731
    assert table.types == {"TimeGenerated": "datetime", "n": "long"}
    assert table.rows == [
        [hour(base - dt.timedelta(minutes=180)), 1],
        [hour(base - dt.timedelta(minutes=90)), 1],
        [hour(base - dt.timedelta(minutes=45)), 2],
    ]


# --- Prefer ---------------------------------------------------------------------------


def test_include_statistics(server):
    plain = server.query_raw("print a = 1", prefer="")
    assert plain.status_code == 200 and "statistics" not in plain.json()
    response = server.query_raw("print a = 1", prefer="include-statistics=true")
    assert response.status_code == 200, response.text
    statistics = response.json().get("statistics")
    assert isinstance(statistics, dict) and statistics, response.json()
    combined = server.query_raw("print a = 1", prefer="wait=60,include-statistics=true")
    assert "statistics" in combined.json()
    assert combined.json()["tables"][0]["rows"] == [[1]]


# --- errors ----------------------------------------------------------------------------


def error_of(response, status):
    assert response.status_code == status, f"expected {status}, got {response.status_code} {response.text}"
    return response.json()["error"]


def test_auth_errors(server):
    assert error_of(server.query_raw("print a = 1", key=OMIT), 401)["code"] == "AuthenticationFailed"
    assert error_of(server.query_raw("print a = 1", key="not-the-key"), 403)["code"] == "InvalidAuthenticationToken"
    response = server.query_raw("print a = 1", key=OMIT, extra_headers={"Authorization": f"Basic {server.primary_key}"})
    assert response.status_code in (401, 403)
    stranger = new_workspace_id()
    assert error_of(server.query_raw("print a = 1", workspace_id=stranger), 404)["code"] == "WorkspaceNotFoundError"


def test_secondary_key_is_a_valid_token(server):
    assert server.query("print a = 1", key=server.secondary_key).rows == [[1]]


def test_syntax_error_position(server):
    query = "print a = 1\n| where a == (1 + )"
    inner = error_of(server.query_raw(query), 400)
    assert inner["code"] == "BadArgumentError"
    inner = inner["innererror"]
    assert inner["code"] == "SyntaxError"
    assert inner["message"]
    assert inner["line"] == 2
    column0 = query.split("\n")[1].index(")")
    assert inner["pos"] in (column0, column0 + 1), f"pos {inner['pos']} should point at ')' (column {column0} 0-based)"


def test_semantic_error_unknown_column_has_hint(server):
    log_type = unique_log_type("Sem")
    server.ingest(log_type, [{"EventId": "s-1"}])
    query = f"{log_type}_CL\n| where EventID_s == 's-1'"
    error = error_of(server.query_raw(query), 400)
    assert error["code"] == "BadArgumentError"
    inner = error["innererror"]
    assert inner["code"] == "SemanticError"
    assert "EventID_s" in inner["message"]
    assert "EventId_s" in inner["message"], f"no did-you-mean hint: {inner['message']!r}"
    assert inner["line"] == 2
    assert inner["pos"] in (8, 9)


def test_semantic_error_unknown_table(server):
    inner = error_of(server.query_raw("NoSuchTable_CL | take 1"), 400)["innererror"]
    assert inner["code"] == "SemanticError"
    assert "NoSuchTable_CL" in inner["message"]


def test_bad_request_bodies(server):
    url = f"{server.url}/v1/workspaces/{server.workspace_id}/query"
    auth = {"Authorization": f"Bearer {server.primary_key}"}
    response = requests.post(url, data=b"{not json", headers={**auth, "Content-Type": "application/json"}, timeout=60)
    assert error_of(response, 400)["code"] == "BadArgumentError"
    response = requests.post(url, data=b'{"timespan": "PT1H"}', headers={**auth, "Content-Type": "application/json"}, timeout=60)
    assert error_of(response, 400)["code"] == "BadArgumentError"
    response = requests.post(url, data=b'{"query": "print a = 1"}', headers=auth, timeout=60)
    assert error_of(response, 400)["code"] == "BadArgumentError"
    response = requests.post(f"{server.url}/v1/nowhere", json={"query": "print 1"}, headers=auth, timeout=60)
    assert error_of(response, 404)["code"] == "PathNotFoundError"


# --- keys: query keys, rotation, auto-created workspace ---------------------------------


def test_query_key_added_before_start(make_server):
    server = make_server(start=False)
    created = run_cli("workspace", "create", "--data-dir", str(server.data_dir), "--id", server.workspace_id, "--key", server.primary_key)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["primaryKey"] == server.primary_key
    added = run_cli("workspace", "add-query-key", "--data-dir", str(server.data_dir), server.workspace_id)
    assert added.returncode == 0, added.stderr
    query_key = added.stdout.strip()
    assert query_key and "\n" not in query_key
    assert query_key in server.show_workspace()["queryKeys"]
    server.start()
    log_type = unique_log_type("QK")
    server.ingest(log_type, [{"EventId": "q-1"}])
    assert server.query(f"{log_type}_CL | project EventId_s", key=query_key).rows == [["q-1"]]
    # A query key is read-only: it cannot sign Data Collector posts.
    try:
        decodable = bool(base64.b64decode(query_key, validate=True))
    except (binascii.Error, ValueError):
        decodable = False
    if decodable:
        response = server.post(log_type, [{"EventId": "q-2"}], key=query_key)
        assert response.status_code == 403, response.text
    assert server.count(f"{log_type}_CL") == 1


def test_query_key_added_while_running_works_after_restart(make_server):
    server = make_server()
    added = run_cli("workspace", "add-query-key", "--data-dir", str(server.data_dir), server.workspace_id)
    assert added.returncode == 0, added.stderr
    query_key = added.stdout.strip()
    server.restart()
    assert server.query("print a = 1", key=query_key).rows == [[1]]
    assert server.query("print a = 1").rows == [[1]]


def test_rotated_key_works_after_restart(make_server):
    server = make_server()
    log_type = unique_log_type("Rotate")
    old_primary, old_secondary = server.primary_key, server.secondary_key
    server.ingest(log_type, [{"EventId": "before"}])
    assert server.stop() == 0
    rotated = run_cli("workspace", "rotate-key", "--data-dir", str(server.data_dir), server.workspace_id)
    assert rotated.returncode == 0, rotated.stderr
    shown = json.loads(rotated.stdout)
    new_primary = shown["primaryKey"]
    assert new_primary != old_primary and shown["secondaryKey"] == old_secondary
    assert server.show_workspace()["primaryKey"] == new_primary
    # Restart without --workspace ID=KEY (that flag would set the key back).
    server.primary_key = new_primary
    server.start(workspace_flag=False)
    server.ingest(log_type, [{"EventId": "after"}])
    response = server.post(log_type, [{"EventId": "old-key"}], key=old_primary)
    assert response.status_code == 403 and response.json()["Error"] == "InvalidAuthorization"
    server.ingest(log_type, [{"EventId": "secondary"}], key=old_secondary)
    assert sorted(server.query(f"{log_type}_CL | project EventId_s", key=new_primary).column("EventId_s")) == [
        "after",
        "before",
        "secondary",
    ]
    assert server.query_raw("print a = 1", key=old_primary).status_code == 403
    # Rotating the secondary leaves the primary alone.
    assert server.stop() == 0
    rotated = run_cli("workspace", "rotate-key", "--data-dir", str(server.data_dir), server.workspace_id, "--key", "secondary")
    assert rotated.returncode == 0, rotated.stderr
    shown = json.loads(rotated.stdout)
    assert shown["primaryKey"] == new_primary and shown["secondaryKey"] != old_secondary
    server.start(workspace_flag=False)
    assert server.post(log_type, [{"EventId": "x"}], key=old_secondary).status_code == 403
    server.ingest(log_type, [{"EventId": "new-secondary"}], key=shown["secondaryKey"])


def test_serve_creates_a_workspace_when_none_exists(make_server):
    server = make_server(start=False, workspace_id=None, primary_key=None)
    server.workspace_id = server.primary_key = None
    server.start()
    text = "\n".join(server.stdout_lines)
    ws = re.search(r"^  Workspace ID: (\S+)$", text, re.M)
    key = re.search(r"^  Primary key:  (\S+)$", text, re.M)
    assert ws and key, f"stdout: {server.stdout_lines}"
    server.workspace_id, server.primary_key = ws.group(1), key.group(1)
    uuid.UUID(server.workspace_id)
    assert len(base64.b64decode(server.primary_key)) >= 32
    log_type = unique_log_type("Auto")
    server.ingest(log_type, [{"EventId": "auto"}])
    assert server.query(f"{log_type}_CL | project EventId_s").rows == [["auto"]]
    server.restart(workspace_flag=False)
    assert not any("Workspace ID:" in line for line in server.stdout_lines), "a second workspace was created"
    listed = run_cli("workspace", "list", "--data-dir", str(server.data_dir))
    assert listed.stdout.split() == [server.workspace_id]
    assert server.query(f"{log_type}_CL | project EventId_s").rows == [["auto"]]


# --- CLI ------------------------------------------------------------------------------------


def test_workspace_cli(tmp_path):
    data_dir = str(tmp_path / "data")
    created = run_cli("workspace", "create", "--data-dir", data_dir)
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout)
    assert set(first) == {"id", "primaryKey", "secondaryKey", "queryKeys"}
    assert str(uuid.UUID(first["id"])) == first["id"]
    for name in ("primaryKey", "secondaryKey"):
        assert len(base64.b64decode(first[name], validate=True)) >= 32
    assert first["primaryKey"] != first["secondaryKey"]
    assert first["queryKeys"] == []

    chosen_id, chosen_key = new_workspace_id(), new_key()
    created = run_cli("workspace", "create", "--data-dir", data_dir, "--id", chosen_id, "--key", chosen_key)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["id"] == chosen_id

    listed = run_cli("workspace", "list", "--data-dir", data_dir)
    assert listed.returncode == 0
    assert sorted(listed.stdout.split()) == sorted([first["id"], chosen_id])

    shown = run_cli("workspace", "show", "--data-dir", data_dir, chosen_id)
    assert shown.returncode == 0
    shown = json.loads(shown.stdout)
    assert shown["id"] == chosen_id and shown["primaryKey"] == chosen_key

    rotated = json.loads(run_cli("workspace", "rotate-key", "--data-dir", data_dir, chosen_id).stdout)
    assert rotated["primaryKey"] != chosen_key and rotated["secondaryKey"] == shown["secondaryKey"]
    assert json.loads(run_cli("workspace", "show", "--data-dir", data_dir, chosen_id).stdout) == rotated

    added = run_cli("workspace", "add-query-key", "--data-dir", data_dir, chosen_id)
    assert added.returncode == 0
    assert json.loads(run_cli("workspace", "show", "--data-dir", data_dir, chosen_id).stdout)["queryKeys"] == [added.stdout.strip()]

    missing = run_cli("workspace", "show", "--data-dir", data_dir, new_workspace_id())
    assert missing.returncode != 0 and missing.stderr


def test_query_cli_table_csv_json(server, timed):
    base_args = ["query", "--url", server.url, "--workspace", server.workspace_id, "--key", server.primary_key]
    kql = 'datatable(Name:string, n:long)["alpha", 1, "b", 22222, "x,y", 3] | sort by n asc'

    table = run_cli(*base_args, kql)
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if line.strip()]
    assert len(lines) == 5, table.stdout
    header, rule, *rows = lines
    assert header.split() == ["Name", "n"]
    assert set(rule.replace(" ", "")) == {"-"}, rule
    n_at = header.index("n", len("Name"))
    assert [row[:n_at].rstrip() for row in rows] == ["alpha", "x,y", "b"]
    assert [row[n_at:].strip() for row in rows] == ["1", "3", "22222"]
    assert all(row[n_at - 1] == " " for row in rows), "values of column n start where its header starts"
    assert rule.split()[0] == "-" * len("alpha")

    as_csv = run_cli(*base_args, "--format", "csv", kql)
    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["Name", "n"], ["alpha", "1"], ["x,y", "3"], ["b", "22222"]]
    assert '"x,y"' in as_csv.stdout

    as_json = run_cli(*base_args, "--format", "json", kql)
    assert as_json.returncode == 0, as_json.stderr
    parsed = json.loads(as_json.stdout)
    assert parsed["rows"] == [["alpha", 1], ["x,y", 3], ["b", 22222]]

    base = timed["base"]
    span = f"{iso_z(base - dt.timedelta(minutes=100))}/{iso_z(base - dt.timedelta(minutes=5))}"
    counted = run_cli(*base_args, "--timespan", span, "--format", "csv", f"{timed['table']} | count")
    assert counted.returncode == 0, counted.stderr
    assert list(csv.reader(io.StringIO(counted.stdout))) == [["Count"], ["3"]]

    failed = run_cli(*base_args, "print a = (1 + )")
    assert failed.returncode != 0
    assert "1:" in failed.stderr, failed.stderr
    wrong_key = run_cli("query", "--url", server.url, "--workspace", server.workspace_id, "--key", "nope", "print 1")
    assert wrong_key.returncode != 0 and wrong_key.stderr
