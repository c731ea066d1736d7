"""A real Data Collector client package against Watchpost.

`azure-log-analytics-data-collector-api` (module `datacollectorapi`) always
builds `https://{ws}.{endpoint}/api/logs?api-version=2016-04-01` and calls
`requests.post`. We do not touch its URL path, headers or body: a
`requests` transport adapter, returned for https:// URLs only, sends the very
same PreparedRequest to plain http on 127.0.0.1 (through a byte-recording TCP
proxy), setting only the Host header urllib3 would have put on the wire for the
original URL. The test then checks that the bytes the server received are the
client's, and that what it stored matches spec 1.5 exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import selectors
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
import requests.adapters
import requests.sessions

from conftest import (
    STANDARD_COLUMNS,
    STANDARD_TYPES,
    Receipt,
    iso_z,
    kusto_datetime,
    parse_datetime,
    shared_key_authorization,
    unique_log_type,
    utcnow,
)

datacollectorapi = pytest.importorskip("datacollectorapi.client")
DataCollectorAPIClient = datacollectorapi.DataCollectorAPIClient


# ---------------------------------------------------------------------------
# plumbing: a recording proxy and a redirecting transport adapter


class RecordingProxy:
    """A loopback TCP proxy that keeps every byte clients send upstream."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.captured: list[bytearray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            buffer = bytearray()
            self.captured.append(buffer)
            threading.Thread(target=self._pump, args=(client, buffer), daemon=True).start()

    def _pump(self, client: socket.socket, buffer: bytearray):
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            open_ends = 2
            while open_ends and not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    source, sink = key.fileobj, key.data
                    data = source.recv(65536)
                    if not data:
                        selector.unregister(source)
                        open_ends -= 1
                        try:
                            sink.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if source is client:
                        buffer.extend(data)
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            client.close()
            upstream.close()

    def close(self):
        self._stop.set()
        self.listener.close()


def parse_http_request(raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete request head in {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    length = int(next(v for n, v in headers if n.lower() == "content-length"))
    return lines[0], headers, rest[:length]


class RedirectToWatchpost(requests.adapters.HTTPAdapter):
    """Sends the client's PreparedRequest to http://127.0.0.1:PORT unchanged."""

    def __init__(self, port: int):
        super().__init__(max_retries=0)
        self.port = port
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request.copy())
        original = urlsplit(request.url)
        forwarded = request.copy()
        forwarded.url = f"http://127.0.0.1:{self.port}{request.path_url}"
        # What urllib3 would have put on the wire for the https URL.
        forwarded.headers["Host"] = original.netloc
        return super().send(forwarded, **kwargs)


@pytest.fixture
def routed_client(server, monkeypatch):
    """(client, adapter, proxy): the package's client wired to Watchpost."""
    proxy = RecordingProxy(server.port)
    adapter = RedirectToWatchpost(proxy.port)
    original_get_adapter = requests.sessions.Session.get_adapter

    def get_adapter(self, url):
        if url.lower().startswith("https://"):
            return adapter
        return original_get_adapter(self, url)

    monkeypatch.setattr(requests.sessions.Session, "get_adapter", get_adapter)
    client = DataCollectorAPIClient(server.workspace_id, server.primary_key)
    yield client, adapter, proxy
    proxy.close()


def wire_requests(proxy: RecordingProxy, expected: int):
    """The requests seen on the wire (one per connection: the client makes a
    fresh Session, hence a fresh connection, per post)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        complete = [bytes(b) for b in proxy.captured if b"\r\n\r\n" in b]
        parsed = []
        for raw in complete:
            line, headers, body = parse_http_request(raw)
            length = int(next(v for n, v in headers if n.lower() == "content-length"))
            if len(body) == length:
                parsed.append((line, headers, body))
        if len(parsed) >= expected:
            return parsed
        time.sleep(0.02)
    raise AssertionError(f"proxy saw {len(proxy.captured)} connections, wanted {expected}")


# ---------------------------------------------------------------------------
# the test data

GUID_UPPER = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
GUID_BARE = "6f9619ff8b86d011b42d00c04fc964fe"


def client_records(created: list[dt.datetime]):
    return [
        {
            "EventId": "dc-1",
            "Message": "hello w\u00f6rld \u2603",
            "Count": 42,
            "Ratio": 0.25,
            "Enabled": True,
            "Seen": "2024-05-01T10:00:00Z",
            "Corr": GUID_UPPER,
            "Tags": {"env": "test", "idx": 0},
            "List": [1, "a", True, None],
            "Missing": None,
            "NumText": "42",
            "BoolText": "true",
            "DateOnly": "2024-05-01",
            "Created": iso_z(created[0]),
        },
        {
            "EventId": "dc-2",
            "Message": "second",
            "Count": -1.5,
            "Ratio": 1000,
            "Enabled": False,
            "Seen": "2024-05-01T12:30:45.123456+02:00",
            "Corr": GUID_BARE,
            "Tags": {"env": "prod", "idx": 1, "deep": {"a": [1, 2]}},
            "List": [],
            "Missing": None,
            "NumText": "7",
            "BoolText": "false",
            "DateOnly": "2024-05-02",
            "Created": iso_z(created[1]),
            "Extra": "only in the second record",
        },
        {
            "EventId": "dc-3",
            "Message": "",
            "Count": 0,
            "Ratio": 1e-3,
            "Enabled": True,
            "Seen": "2024-05-01 23:59:59Z",
            "Corr": GUID_UPPER.lower(),
            "Tags": {},
            "List": ["x"],
            "Missing": None,
            "NumText": "-0.5",
            "BoolText": "TRUE",
            "DateOnly": "yesterday",
            "Created": iso_z(created[2]),
        },
    ]


EXPECTED_PROPERTY_COLUMNS = {
    "EventId_s": "string",
    "Message_s": "string",
    "Count_d": "real",
    "Ratio_d": "real",
    "Enabled_b": "bool",
    "Seen_t": "datetime",
    "Corr_g": "guid",
    "Tags_s": "string",
    "List_s": "string",
    "NumText_s": "string",
    "BoolText_s": "string",
    "DateOnly_s": "string",
    "Created_t": "datetime",
    "Extra_s": "string",
}


def test_client_posts_reach_watchpost_unchanged_and_are_typed_per_spec(server, routed_client):
    client, adapter, proxy = routed_client
    log_type = unique_log_type("DcClient")
    table = f"{log_type}_CL"
    now = utcnow().replace(microsecond=0)
    created = [now - dt.timedelta(hours=1), now - dt.timedelta(hours=30), now - dt.timedelta(minutes=5)]
    records = client_records(created)

    before = utcnow()
    response = client.post_data(log_type, records, record_timestamp="Created")
    after = utcnow()
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers.get("x-ms-request-id"), "every response carries x-ms-request-id"

    # --- what the client built, and what went over the wire -----------------
    assert len(adapter.sent) == 1
    prepared = adapter.sent[0]
    assert prepared.url == f"https://{server.workspace_id}.ods.opinsights.azure.com/api/logs?api-version=2016-04-01"
    [(request_line, wire_headers, wire_body)] = wire_requests(proxy, 1)
    assert request_line == "POST /api/logs?api-version=2016-04-01 HTTP/1.1"
    wire = {name.lower(): value for name, value in wire_headers}
    for name, value in prepared.headers.items():
        assert wire[name.lower()] == value, f"header {name} changed on the way"
    assert wire["host"] == f"{server.workspace_id}.ods.opinsights.azure.com"
    assert wire["content-type"] == "application/json"
    assert wire["time-generated-field"] == "Created"
    assert wire["log-type"] == log_type
    sent_body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert wire_body == sent_body, "body changed on the way"
    # simplejson with ", " / ": " separators and \u escapes: pure ASCII.
    assert json.loads(wire_body) == records
    assert wire_body.isascii()
    expected_auth = shared_key_authorization(server.workspace_id, server.primary_key, wire["x-ms-date"], len(wire_body))
    assert wire["authorization"] == expected_auth

    # --- the server's receipt says it parsed exactly this body -----------------
    receipt = Receipt.parse(response.headers.get("x-watchpost-receipt"))
    assert receipt.rows == 3
    assert not receipt.repeated
    assert set(EXPECTED_PROPERTY_COLUMNS) <= set(receipt.columns)
    assert not any(c.startswith("Missing") for c in receipt.columns)

    # --- and it stored them as spec 1.5 says -----------------------------------
    result = server.query(f"{table} | sort by EventId_s asc")
    assert result.columns[: len(STANDARD_COLUMNS)] == STANDARD_COLUMNS, result.columns
    assert set(result.columns) == set(STANDARD_COLUMNS) | set(EXPECTED_PROPERTY_COLUMNS), result.columns
    assert len(result.columns) == len(set(result.columns))
    for name, kql_type in {**STANDARD_TYPES, **EXPECTED_PROPERTY_COLUMNS}.items():
        assert result.types[name] == kql_type, f"{name}: {result.types[name]} != {kql_type}"
    assert set(receipt.columns) == set(result.columns)

    rows = result.dicts()
    assert [r["EventId_s"] for r in rows] == ["dc-1", "dc-2", "dc-3"]
    r1, r2, r3 = rows
    for row, when in zip(rows, created):
        assert row["TenantId"] == server.workspace_id
        assert row["SourceSystem"] == "RestAPI"
        assert row["Type"] == table
        assert row["_ResourceId"] == ""
        assert row["TimeGenerated"] == kusto_datetime(when), "TimeGenerated comes from time-generated-field"
        assert row["Created_t"] == kusto_datetime(when), "the named field is also kept as a column"
        received = parse_datetime(row["_TimeReceived"])
        assert before - dt.timedelta(seconds=1) <= received <= after + dt.timedelta(seconds=1)

    assert r1["Message_s"] == "hello w\u00f6rld \u2603"
    assert (r2["Message_s"], r3["Message_s"]) == ("second", "")
    assert (r1["Count_d"], r2["Count_d"], r3["Count_d"]) == (42, -1.5, 0)
    assert all(isinstance(r["Count_d"], (int, float)) for r in rows)
    assert (r1["Ratio_d"], r2["Ratio_d"], r3["Ratio_d"]) == (0.25, 1000, 0.001)
    assert (r1["Enabled_b"], r2["Enabled_b"], r3["Enabled_b"]) == (True, False, True)
    assert r1["Seen_t"] == "2024-05-01T10:00:00.0000000Z"
    assert r2["Seen_t"] == "2024-05-01T10:30:45.1234560Z", "offsets are converted to UTC, fraction kept"
    assert r3["Seen_t"] == "2024-05-01T23:59:59.0000000Z", "a space instead of T is accepted"
    assert r1["Corr_g"] == GUID_UPPER.lower()
    assert r2["Corr_g"] == "6f9619ff-8b86-d011-b42d-00c04fc964fe", "GUID without dashes is normalised"
    assert r3["Corr_g"] == GUID_UPPER.lower()
    assert r1["Tags_s"] == '{"env":"test","idx":0}'
    assert json.loads(r2["Tags_s"]) == {"env": "prod", "idx": 1, "deep": {"a": [1, 2]}}
    assert " " not in r2["Tags_s"], "nested values are compact JSON"
    assert r3["Tags_s"] == "{}"
    assert (r1["List_s"], r2["List_s"], r3["List_s"]) == ('[1,"a",true,null]', "[]", '["x"]')
    assert (r1["NumText_s"], r2["NumText_s"], r3["NumText_s"]) == ("42", "7", "-0.5"), "numbers as text stay strings"
    assert (r1["BoolText_s"], r3["BoolText_s"]) == ("true", "TRUE")
    assert (r1["DateOnly_s"], r2["DateOnly_s"]) == ("2024-05-01", "2024-05-02"), "date-only stays a string"
    assert r2["Extra_s"] == "only in the second record"
    # A string cell absent from a record: null (or "", Kusto's empty string).
    assert r1["Extra_s"] in (None, "") and r3["Extra_s"] in (None, "")

    # Typed columns are usable as their type in KQL.
    assert server.count(f"{table} | where Count_d > 1") == 1
    assert server.count(f"{table} | where Enabled_b == true") == 2
    assert server.count(f"{table} | where Seen_t > datetime(2024-05-01T10:15:00Z)") == 2
    assert server.count(f"{table} | where TimeGenerated > ago(2h)") == 2


def test_client_existing_table_converts_else_adds_column(server, routed_client):
    """Spec 1.5, existing table: fit into the column of the same base name,
    else add a column with the inferred suffix."""
    client, _, _ = routed_client
    log_type = unique_log_type("DcConvert")
    table = f"{log_type}_CL"
    first = {"EventId": "c-1", "Count": 1, "Enabled": True, "Seen": "2024-05-01T10:00:00Z", "Corr": GUID_UPPER, "Ratio": 0.5, "Note": "x"}
    assert client.post_data(log_type, [first]).status_code == 200
    second = {
        "EventId": "c-2",
        "Count": "17",  # numeric text -> existing Count_d
        "Enabled": "FALSE",  # true/false text -> existing Enabled_b
        "Seen": "2024-06-01T08:00:00Z",  # ISO text -> existing Seen_t
        "Corr": GUID_BARE,  # GUID text -> existing Corr_g
        "Ratio": "not a number",  # cannot convert -> new Ratio_s
        "Note": 5,  # a JSON number is not text: new Note_d (the doc's example 3: `string_d`)
    }
    response = client.post_data(log_type, [second])
    assert response.status_code == 200, response.text
    receipt = Receipt.parse(response.headers.get("x-watchpost-receipt"))
    assert {"Ratio_s", "Note_d"} <= set(receipt.columns)

    result = server.query(f"{table} | sort by EventId_s asc")
    assert result.types["Count_d"] == "real"
    assert result.types["Ratio_s"] == "string"
    assert result.types["Ratio_d"] == "real"
    assert not any(c in result.columns for c in ("Count_s", "Enabled_s", "Seen_s", "Corr_s"))
    assert result.types["Note_d"] == "real"
    c1, c2 = result.dicts()
    assert (c1["Count_d"], c2["Count_d"]) == (1, 17)
    assert (c1["Enabled_b"], c2["Enabled_b"]) == (True, False)
    assert c2["Seen_t"] == "2024-06-01T08:00:00.0000000Z"
    assert c2["Corr_g"] == "6f9619ff-8b86-d011-b42d-00c04fc964fe"
    assert c1["Ratio_d"] == 0.5 and c1["Ratio_s"] in (None, "")
    assert (c2["Ratio_d"], c2["Ratio_s"]) == (None, "not a number")
    assert c1["Note_s"] == "x" and c1["Note_d"] is None
    assert c2["Note_d"] == 5 and c2["Note_s"] in (None, "")


def test_client_without_time_generated_field_uses_ingestion_time(server, routed_client):
    client, adapter, proxy = routed_client
    log_type = unique_log_type("DcNoTime")
    before = utcnow()
    # The package sends `time-generated-field:` with an empty value here.
    response = client.post_data(log_type, {"EventId": "n-1", "When": "2024-05-01T10:00:00Z"})
    after = utcnow()
    assert response.status_code == 200, response.text
    [(_, headers, body)] = wire_requests(proxy, 1)
    assert ("time-generated-field", "") in [(n.lower(), v) for n, v in headers]
    assert body.startswith(b"{"), "a bare object, not an array"
    [row] = server.query(f"{log_type}_CL").dicts()
    generated = parse_datetime(row["TimeGenerated"])
    assert before - dt.timedelta(seconds=1) <= generated <= after + dt.timedelta(seconds=1)
    assert row["When_t"] == "2024-05-01T10:00:00.0000000Z"


def test_client_rejects_bad_log_type_locally_and_server_agrees(server, routed_client):
    client, adapter, _ = routed_client
    with pytest.raises(Exception):
        client.post_data("bad-type", [{"a": 1}])
    assert adapter.sent == []
    # 100 characters is the documented maximum: the client allows it, so must we.
    log_type = "L" * 90 + unique_log_type("")[1:11]
    assert len(log_type) == 100
    response = client.post_data(log_type, [{"a": 1}])
    assert response.status_code == 200, response.text
    assert server.count(f"{log_type}_CL") == 1


def test_client_bad_key_is_rejected(server, routed_client):
    from conftest import new_key

    wrong = DataCollectorAPIClient(server.workspace_id, new_key())
    response = wrong.post_data(unique_log_type("DcWrongKey"), [{"a": 1}])
    assert response.status_code == 403
    assert response.json()["Error"] == "InvalidAuthorization"


def test_seven_digit_fractions_keep_100ns_precision(server):
    """Spec 1.5 accepts `.fffffff` and the query API prints 7 digits: Kusto
    datetimes have 100 ns ticks, so the 7th digit must survive."""
    log_type = unique_log_type("Ticks")
    when = utcnow().replace(microsecond=0) - dt.timedelta(hours=2)
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + ".1234567Z"
    server.ingest(log_type, [{"At": text, "Other": "2024-05-01T12:30:45.7654321+02:00"}], time_generated_field="At")
    [row] = server.query(f"{log_type}_CL").dicts()
    assert row["Other_t"] == "2024-05-01T10:30:45.7654321Z"
    assert row["At_t"] == text.replace("Z", "") + "Z"
    assert row["TimeGenerated"] == row["At_t"]


def test_time_generated_field_fallbacks_use_receive_time(server):
    """Spec 1.2 time-generated-field: a value missing, unparsable, more than
    2 days old or more than 1 day ahead gives TimeGenerated = receive time;
    the field itself is still kept as its own column when it is a date."""
    log_type = unique_log_type("TgFallback")
    now = utcnow().replace(microsecond=0)
    good = now - dt.timedelta(hours=40)
    records = [
        {"Case": "good", "At": iso_z(good)},
        {"Case": "old", "At": iso_z(now - dt.timedelta(days=3))},
        {"Case": "future", "At": iso_z(now + dt.timedelta(days=2))},
        {"Case": "unparsable", "At": "not a date"},
        {"Case": "missing"},
    ]
    before = utcnow()
    server.ingest(log_type, records, time_generated_field="At")
    after = utcnow()
    rows = {r["Case_s"]: r for r in server.query(f"{log_type}_CL").dicts()}
    assert rows["good"]["TimeGenerated"] == kusto_datetime(good)
    for case in ("old", "future", "unparsable", "missing"):
        generated = parse_datetime(rows[case]["TimeGenerated"])
        assert before - dt.timedelta(seconds=1) <= generated <= after + dt.timedelta(seconds=1), case
        assert rows[case]["TimeGenerated"] == rows[case]["_TimeReceived"], case
    assert rows["old"]["At_t"] == kusto_datetime(now - dt.timedelta(days=3))
    assert rows["unparsable"]["At_s"] == "not a date"


def test_log_type_suffix_is_appended_unconditionally(server):
    log_type = unique_log_type("Suffix") + "_CL"
    server.ingest(log_type, [{"EventId": "s"}])
    [row] = server.query(f"{log_type}_CL").dicts()
    assert row["Type"] == f"{log_type}_CL" and row["Type"].endswith("_CL_CL")
