"""Every documented Data Collector error, on the raw wire (spec 1.1-1.7).

Requests are built by hand with `requests` and the spec's SharedKey rule
(conftest.build_post), so each test changes exactly one thing. The module
first stores a baseline batch; the last test checks that after all the bad
requests the server is still up and the baseline is intact, and that nothing
from a rejected request was stored.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import time
import uuid

import pytest
import requests

from conftest import (
    API_VERSION,
    OMIT,
    Receipt,
    build_post,
    new_key,
    new_workspace_id,
    rfc1123,
    shared_key_authorization,
    unique_log_type,
)

# All rejected requests use this Log-Type; the last test checks it stayed empty.
REJECTED = unique_log_type("Rejected")
BASELINE = unique_log_type("Baseline")
BASELINE_ROWS = [{"EventId": f"base-{i:03d}", "N": i, "Flag": i % 2 == 0} for i in range(25)]


@pytest.fixture(scope="module", autouse=True)
def baseline(server):
    receipt = server.ingest(BASELINE, BASELINE_ROWS)
    assert receipt.rows == len(BASELINE_ROWS)
    return receipt


def assert_error(response: requests.Response, status: int, code: str | None):
    assert response.status_code == status, (
        f"expected {status} {code}, got {response.status_code} {response.text[:300]!r}"
    )
    assert response.headers.get("x-ms-request-id"), "every response carries x-ms-request-id"
    assert "x-watchpost-receipt" not in response.headers
    if code is not None:
        body = response.json()
        assert body.get("Error") == code, f"expected Error={code}, got {body}"
        assert isinstance(body.get("Message"), str) and body["Message"], body


def assert_ok(response: requests.Response) -> Receipt:
    assert response.status_code == 200, f"expected 200, got {response.status_code} {response.text[:300]!r}"
    assert response.content == b""
    assert response.headers.get("x-ms-request-id")
    return Receipt.parse(response.headers.get("x-watchpost-receipt"))


ONE = [{"EventId": "x", "N": 1}]


def test_signing_helper_matches_spec_vector():
    """Spec 1.3's test vector, so the raw tests below sign correctly."""
    auth = shared_key_authorization("customer_id", "c2hhcmVkX2tleQ==", "Sat, 01 Jan 2000 01:01:01 GMT", 1)
    assert auth == "SharedKey customer_id:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE="


# --- 1.1 request line -----------------------------------------------------------


def test_missing_api_version(server):
    assert_error(server.post(REJECTED, ONE, query=None), 400, "MissingApiVersion")
    assert_error(server.post(REJECTED, ONE, query="other=1"), 400, "MissingApiVersion")


@pytest.mark.parametrize("version", ["2023-01-01", "2016-04-02", "latest"])
def test_invalid_api_version(server, version):
    assert_error(server.post(REJECTED, ONE, query=f"api-version={version}"), 400, "InvalidApiVersion")


def test_other_methods_and_paths_are_not_found(server):
    response = requests.get(f"{server.url}/api/logs?api-version={API_VERSION}", timeout=30)
    assert response.status_code in (404, 405)
    assert response.headers.get("x-ms-request-id")
    response = requests.put(f"{server.url}/api/logs?api-version={API_VERSION}", data=b"[]", timeout=30)
    assert response.status_code in (404, 405)
    data, headers = build_post(server.workspace_id, server.primary_key, REJECTED, ONE)
    response = requests.post(f"{server.url}/api/nope?api-version={API_VERSION}", data=data, headers=headers, timeout=30)
    assert response.status_code == 404
    assert response.headers.get("x-ms-request-id")


# --- 1.2 / 1.3 authorization ----------------------------------------------------------


def test_missing_authorization(server):
    assert_error(server.post(REJECTED, ONE, authorization=OMIT), 403, "InvalidAuthorization")


@pytest.mark.parametrize(
    "make",
    [
        lambda ws: "",
        lambda ws: "Bearer abc",
        lambda ws: "SharedKey",
        lambda ws: f"SharedKey {ws}",
        lambda ws: f"SharedKey {ws}:",
        lambda ws: f"SharedKey {ws}:!!not-base64!!",
        lambda ws: f"SharedKey {ws}:c2hvcnQ=",
        lambda ws: f"Basic {ws}:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=",
    ],
    ids=["empty", "bearer", "scheme-only", "no-colon", "no-signature", "not-base64", "short-signature", "basic-scheme"],
)
def test_malformed_authorization(server, make):
    assert_error(server.post(REJECTED, ONE, authorization=make(server.workspace_id)), 403, "InvalidAuthorization")


def test_unknown_workspace(server):
    stranger = new_workspace_id()
    response = server.post(REJECTED, ONE, workspace_id=stranger, key=new_key())
    assert_error(response, 400, "InvalidCustomerId")
    response = server.post(REJECTED, ONE, workspace_id="not-a-guid", key=new_key())
    assert_error(response, 400, "InvalidCustomerId")


def test_wrong_signature(server):
    # Signed with a key that is not the workspace's.
    assert_error(server.post(REJECTED, ONE, key=new_key()), 403, "InvalidAuthorization")
    # Signed over a different Content-Length.
    body = json.dumps(ONE).encode()
    assert_error(server.post(REJECTED, body, sign_length=len(body) + 1), 403, "InvalidAuthorization")
    # Signed over a different Content-Type than the one sent.
    response = server.post(
        REJECTED, ONE, content_type="application/json; charset=utf-8", sign_content_type="application/json"
    )
    assert_error(response, 403, "InvalidAuthorization")
    # Signed over another date than the one sent.
    date = rfc1123()
    other = rfc1123(time.time() - 60)
    auth = shared_key_authorization(server.workspace_id, server.primary_key, other, len(body))
    assert_error(server.post(REJECTED, body, date=date, authorization=auth), 403, "InvalidAuthorization")
    # Resource with the query string (the spec says literally /api/logs).
    string = f"POST\n{len(body)}\napplication/json\nx-ms-date:{date}\n/api/logs?api-version={API_VERSION}"
    import base64, hashlib, hmac

    digest = hmac.new(base64.b64decode(server.primary_key), string.encode(), hashlib.sha256).digest()
    auth = f"SharedKey {server.workspace_id}:{base64.b64encode(digest).decode()}"
    assert_error(server.post(REJECTED, body, date=date, authorization=auth), 403, "InvalidAuthorization")


def test_x_ms_date_missing_unparsable_or_stale(server):
    assert_error(server.post(REJECTED, ONE, date=OMIT), 403, "InvalidAuthorization")
    assert_error(server.post(REJECTED, ONE, date="yesterday at noon"), 403, "InvalidAuthorization")
    assert_error(server.post(REJECTED, ONE, date=rfc1123(time.time() - 20 * 60)), 403, "InvalidAuthorization")
    assert_error(server.post(REJECTED, ONE, date=rfc1123(time.time() + 20 * 60)), 403, "InvalidAuthorization")
    assert_error(server.post(REJECTED, ONE, date=rfc1123(time.time() - 3 * 86400)), 403, "InvalidAuthorization")


def test_x_ms_date_within_window_is_accepted(server):
    log_type = unique_log_type("DateOk")
    assert_ok(server.post(log_type, ONE, date=rfc1123(time.time() - 5 * 60)))
    assert_ok(server.post(log_type, ONE, date=rfc1123(time.time() + 5 * 60)))
    assert server.count(f"{log_type}_CL") == 2


# --- 1.2 Content-Type and Log-Type ------------------------------------------------------


def test_missing_content_type(server):
    assert_error(server.post(REJECTED, ONE, content_type=OMIT), 400, "MissingContentType")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", "application/jsonl"])
def test_unsupported_content_type(server, content_type):
    assert_error(server.post(REJECTED, ONE, content_type=content_type), 400, "UnsupportedContentType")


def test_missing_log_type(server):
    assert_error(server.post(OMIT, ONE), 400, "MissingLogType")
    assert_error(server.post("", ONE), 400, "MissingLogType")


@pytest.mark.parametrize(
    "log_type",
    ["bad-name", "bad name", "a.b", "x/y", "semi;colon", "L" * 101, "Q" * 300],
    ids=["dash", "space", "dot", "slash", "semicolon", "101-chars", "300-chars"],
)
def test_invalid_log_type(server, log_type):
    assert_error(server.post(log_type, ONE), 400, "InvalidLogType")


def test_validation_order(server):
    """api-version -> Authorization -> workspace -> Content-Type -> Log-Type -> signature -> body."""
    # No api-version beats a missing Authorization.
    assert_error(server.post(REJECTED, ONE, query=None, authorization=OMIT), 400, "MissingApiVersion")
    # Unknown workspace beats missing Content-Type and Log-Type.
    response = server.post(OMIT, ONE, workspace_id=new_workspace_id(), key=new_key(), content_type=OMIT)
    assert_error(response, 400, "InvalidCustomerId")
    # Content-Type and Log-Type are checked before the signature.
    assert_error(server.post(REJECTED, ONE, key=new_key(), content_type=OMIT), 400, "MissingContentType")
    assert_error(server.post(OMIT, ONE, key=new_key()), 400, "MissingLogType")
    # The signature is checked before the body.
    assert_error(server.post(REJECTED, b"{not json", key=new_key()), 403, "InvalidAuthorization")


# --- 1.4 body ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'[{"a":1}', b"[1,2,3]", b'"text"', b"42", b"null", b"true", b'[{"a":1}, 3]', b'[{"a":1}, []]', b"", b"   "],
    ids=["garbage", "truncated", "numbers", "string", "number", "null", "bool", "mixed", "nested-array", "empty", "blank"],
)
def test_invalid_body(server, body):
    assert_error(server.post(REJECTED, body), 400, "InvalidDataFormat")


def test_non_utf8_body(server):
    body = b'[{"EventId":"\xff\xfe latin-1 \xe9"}]'
    assert_error(server.post(REJECTED, body), 400, "InvalidDataFormat")


@pytest.mark.parametrize("name", ["tenant", "TimeGenerated", "RawData"])
def test_reserved_property_names(server, name):
    body = [{"EventId": "ok"}, {"EventId": "bad", name: "value"}]
    assert_error(server.post(REJECTED, body), 400, "InvalidDataFormat")


def test_property_names_are_sanitised_and_long_names_kept(server):
    log_type = unique_log_type("Names")
    long_name = "N" * 480
    receipt = assert_ok(server.post(log_type, [{"bad-name x": "v", "ok.dot": 1, long_name: True}]))
    assert {"bad_name_x_s", "ok_dot_d", f"{long_name}_b"} <= set(receipt.columns)
    [row] = server.query(f"{log_type}_CL").dicts()
    assert (row["bad_name_x_s"], row["ok_dot_d"], row[f"{long_name}_b"]) == ("v", 1, True)
    assert_error(server.post(REJECTED, [{"M" * 600: 1}]), 400, "InvalidDataFormat")


# --- 1.6 limits -------------------------------------------------------------------------


def _read_http_response(sock: socket.socket, already: bytes = b"", timeout: float = 60) -> bytes:
    data = bytearray(already)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head, sep, rest = bytes(data).partition(b"\r\n\r\n")
        if sep:
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length is not None and len(rest) >= length:
                return bytes(data)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data)


def test_oversize_body_is_413(server):
    size = 31 * 1024 * 1024 + 12345  # over 30 MB however counted
    prefix, suffix = b'[{"Big":"', b'"}]'
    filler = size - len(prefix) - len(suffix)
    date = rfc1123()
    auth = shared_key_authorization(server.workspace_id, server.primary_key, date, size)
    head = (
        f"POST /api/logs?api-version={API_VERSION} HTTP/1.1\r\n"
        f"Host: {server.address}\r\n"
        "Content-Type: application/json\r\n"
        f"Log-Type: {REJECTED}\r\n"
        f"x-ms-date: {date}\r\n"
        f"Authorization: {auth}\r\n"
        f"Content-Length: {size}\r\n"
        "\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    received = b""
    try:
        sock.sendall(head + prefix)
        chunk = b"a" * (256 * 1024)
        remaining = filler
        # Send like a client would, but read the answer as soon as it comes
        # (a server may answer 413 before the body is in).
        while remaining > 0:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = chunk[: min(len(chunk), remaining)]
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            remaining -= len(piece)
        else:
            try:
                sock.sendall(suffix)
            except (BrokenPipeError, ConnectionResetError):
                pass
        received = _read_http_response(sock)
    finally:
        sock.close()
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), f"expected 413, got {received[:300]!r}"
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"x-ms-request-id" in head.lower()
    payload = json.loads(body)
    assert set(payload) >= {"Error", "Message"}, payload
    assert requests.get(f"{server.url}/healthz", timeout=30).status_code == 200


def test_too_many_columns_drops_values_and_accepts(server):
    """Spec 1.6: a new column beyond 500 -> its value is dropped (request accepted)."""
    log_type = unique_log_type("Wide")
    record = {f"p{i:03d}": i for i in range(520)}
    record["EventId"] = "wide-1"
    receipt = assert_ok(server.post(log_type, [record]))
    assert receipt.rows == 1
    result = server.query(f"{log_type}_CL")
    assert len(result.columns) == 500, f"{len(result.columns)} columns"
    assert set(receipt.columns) == set(result.columns)
    [row] = result.dicts()
    kept = [c for c in result.columns if c.startswith("p") and c.endswith("_d")]
    assert len(kept) >= 490
    for column in kept:
        assert row[column] == int(column[1:4]), column
    # A further new column on a full table: accepted, that value dropped.
    receipt = assert_ok(server.post(log_type, [{kept[0][:-2]: 7, "BrandNew": "x"}]))
    result = server.query(f"{log_type}_CL")
    assert len(result.columns) == 500
    assert "BrandNew_s" not in result.columns
    assert sorted(result.column(kept[0])) == [0, 7]


def test_long_field_values_are_truncated_not_rejected(server):
    log_type = unique_log_type("BigValue")
    value = "abcdefgh" * 6000  # 48,000 bytes
    assert_ok(server.post(log_type, [{"Big": value, "Small": "s"}]))
    [row] = server.query(f"{log_type}_CL").dicts()
    stored = row["Big_s"]
    assert 32_000 <= len(stored.encode()) <= 32 * 1024, len(stored)
    assert value.startswith(stored)
    assert row["Small_s"] == "s"


# --- leniency rules -------------------------------------------------------------------


def test_secondary_key_signature_works(server):
    log_type = unique_log_type("Secondary")
    assert server.secondary_key and server.secondary_key != server.primary_key
    assert_ok(server.post(log_type, ONE, key=server.secondary_key))
    assert server.count(f"{log_type}_CL") == 1


def test_double_slash_path_works(server):
    log_type = unique_log_type("DoubleSlash")
    assert_ok(server.post(log_type, ONE, path="//api/logs"))
    assert server.count(f"{log_type}_CL") == 1


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"])
def test_content_type_parameters_and_case_are_accepted(server, content_type):
    log_type = unique_log_type("Charset")
    assert_ok(server.post(log_type, ONE, content_type=content_type))
    assert server.count(f"{log_type}_CL") == 1


def test_host_header_is_irrelevant(server):
    log_type = unique_log_type("Host")
    for host in (f"{new_workspace_id()}.ods.opinsights.azure.com", "example.invalid", f"{server.workspace_id}.ods.opinsights.azure.com"):
        assert_ok(server.post(log_type, ONE, extra_headers={"Host": host}))
    assert server.count(f"{log_type}_CL") == 3


def test_lower_case_header_names_and_empty_optional_headers(server):
    """What the Python clients send (spec 4.1): lower-case content-type, empty
    time-generated-field; Upload-AzMonitorLog sends x-ms-AzureResourceId empty."""
    log_type = unique_log_type("LowerCase")
    body = json.dumps(ONE).encode()
    date = rfc1123()
    headers = {
        "content-type": "application/json",
        "authorization": shared_key_authorization(server.workspace_id, server.primary_key, date, len(body)),
        "log-type": log_type,
        "x-ms-date": date,
        "time-generated-field": "",
        "x-ms-AzureResourceId": "",
    }
    response = requests.post(f"{server.url}/api/logs?api-version={API_VERSION}", data=body, headers=headers, timeout=60)
    assert_ok(response)
    [row] = server.query(f"{log_type}_CL").dicts()
    assert row["_ResourceId"] == ""


def test_resource_id_header_fills_resource_id(server):
    log_type = unique_log_type("ResId")
    resource = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM1"
    assert_ok(server.post(log_type, ONE, extra_headers={"x-ms-AzureResourceId": resource}))
    [row] = server.query(f"{log_type}_CL").dicts()
    assert row["_ResourceId"] == resource


def test_content_length_as_character_count_is_accepted(server):
    """Spec 1.3: verify against the byte count, then the character count."""
    log_type = unique_log_type("CharCount")
    text = json.dumps([{"Msg": "h\u00e9llo \u2603 \U0001F600"}], ensure_ascii=False)
    data = text.encode("utf-8")
    assert len(data) != len(text)
    assert_ok(server.post(log_type, data, sign_length=len(text)))
    assert_ok(server.post(log_type, data))
    rows = server.query(f"{log_type}_CL").dicts()
    assert [r["Msg_s"] for r in rows] == ["h\u00e9llo \u2603 \U0001F600"] * 2


def test_gzip_content_encoding(server):
    """Spec 1.2 Watchpost rule: sign over the compressed length, gunzip to parse."""
    log_type = unique_log_type("Gzip")
    compressed = gzip.compress(json.dumps([{"EventId": "g-1"}, {"EventId": "g-2"}]).encode())
    receipt = assert_ok(server.post(log_type, compressed, extra_headers={"Content-Encoding": "gzip"}))
    assert receipt.rows == 2
    assert sorted(server.query(f"{log_type}_CL").column("EventId_s")) == ["g-1", "g-2"]


def test_idempotency_key_repeats_are_acknowledged_and_not_stored(server):
    log_type = unique_log_type("Idem")
    key = str(uuid.uuid4())
    records = [{"EventId": "i-1"}, {"EventId": "i-2"}]
    first = assert_ok(server.post(log_type, records, extra_headers={"Idempotency-Key": key}))
    assert (first.rows, first.repeated) == (2, False)
    again = assert_ok(server.post(log_type, records, extra_headers={"Idempotency-Key": key}))
    assert (again.rows, again.repeated) == (2, True)
    assert again.columns == first.columns
    # x-ms-client-request-id works the same way.
    other = str(uuid.uuid4())
    assert not assert_ok(server.post(log_type, records, extra_headers={"x-ms-client-request-id": other})).repeated
    assert assert_ok(server.post(log_type, records, extra_headers={"x-ms-client-request-id": other})).repeated
    assert server.count(f"{log_type}_CL") == 4
    # A rejected request does not burn the key.
    fresh = str(uuid.uuid4())
    assert_error(server.post(log_type, b"{bad", extra_headers={"Idempotency-Key": fresh}), 400, "InvalidDataFormat")
    assert not assert_ok(server.post(log_type, records, extra_headers={"Idempotency-Key": fresh})).repeated
    assert server.count(f"{log_type}_CL") == 6


# --- configuration that changes these rules ---------------------------------------------


def test_date_window_is_configurable_and_zero_turns_it_off(make_server):
    strict = make_server(config={"date_window_seconds": 60, "log_format": "json"})
    log_type = unique_log_type("Window")
    assert_ok(strict.post(log_type, ONE, date=rfc1123(time.time() - 20)))
    assert_error(strict.post(log_type, ONE, date=rfc1123(time.time() - 5 * 60)), 403, "InvalidAuthorization")
    # log_format = "json": every stderr line is a JSON object.
    assert strict.stop() == 0
    lines = [line for line in strict.stderr_path.read_text().splitlines() if line.strip()]
    assert lines, "no log output"
    for line in lines:
        assert isinstance(json.loads(line), dict), line

    off = make_server(config={"date_window_seconds": 0})
    assert_ok(off.post(log_type, ONE, date=rfc1123(time.time() - 3 * 86400)))
    assert_ok(off.post(log_type, ONE, date=rfc1123(time.time() + 3 * 86400)))
    # Off means no window, not no date: a missing or unparsable date still fails.
    assert_error(off.post(log_type, ONE, date=OMIT), 403, "InvalidAuthorization")
    assert_error(off.post(log_type, ONE, date="soon"), 403, "InvalidAuthorization")
    assert off.count(f"{log_type}_CL") == 2


# --- must stay last -----------------------------------------------------------------------


def test_zz_server_survived_and_acknowledged_rows_are_intact(server):
    assert server.running
    assert requests.get(f"{server.url}/healthz", timeout=30).text.strip() == "ok"
    result = server.query(f"{BASELINE}_CL | sort by EventId_s asc | project EventId_s, N_d, Flag_b")
    assert [tuple(r) for r in result.rows] == [(r["EventId"], r["N"], r["Flag"]) for r in BASELINE_ROWS]
    # Nothing of any rejected request was stored: the table is unknown or empty.
    response = server.query_raw(f"{REJECTED}_CL | count")
    if response.status_code == 200:
        assert response.json()["tables"][0]["rows"] == [[0]]
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["innererror"]["code"] == "SemanticError"
