"""Logs Ingestion API, TLS and tokens, driven by Microsoft's own SDKs.

`azure-identity`'s ClientSecretCredential gets tokens from Watchpost's
OAuth2 endpoint (authority = the server's https address; instance discovery
off, since MSAL would otherwise ask login.microsoftonline.com about an
unknown host), `azure-monitor-ingestion`'s LogsIngestionClient uploads
(chunked, gzipped) to a data collection rule whose transform parses a raw
column, and `azure-monitor-query`'s LogsQueryClient reads the rows back
(`query_workspace` with a timespan, and `query_batch`). The server runs
with `--tls-self-signed`; the clients trust `<data-dir>/tls/ca.pem`.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import random
import uuid
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsBatchQuery, LogsQueryClient, LogsQueryStatus

from conftest import WatchpostServer, new_key, new_workspace_id, run_cli

STREAM = "Custom-RawEvents"
TRANSFORM = (
    "source | parse RawData with 'user=' User:string ' action=' Action:string ' bytes=' Bytes:long"
    " | extend Kb = Bytes / 1024 | project-away RawData"
)


def rule_definition(workspace_id: str, parsed_table: str, raw_table: str) -> dict:
    return {
        "location": "local",
        "kind": "Direct",
        "properties": {
            "streamDeclarations": {
                STREAM: {
                    "columns": [
                        {"name": "TimeGenerated", "type": "datetime"},
                        {"name": "RawData", "type": "string"},
                        {"name": "Host", "type": "string"},
                        {"name": "Attempt", "type": "int"},
                    ]
                }
            },
            "destinations": {"logAnalytics": [{"name": "ws", "workspaceId": workspace_id}]},
            "dataFlows": [
                {
                    "streams": [STREAM],
                    "destinations": ["ws"],
                    "transformKql": TRANSFORM,
                    "outputStream": f"Custom-{parsed_table}",
                },
                {"streams": [STREAM], "destinations": ["ws"], "outputStream": f"Custom-{raw_table}"},
            ],
        },
    }


def cli_json(*args: str) -> dict:
    result = run_cli(*args)
    assert result.returncode == 0, f"{args} failed: {result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("wp-logs-ingestion")
    data = base / "data"
    workspace, key = new_workspace_id(), new_key()
    created = run_cli("workspace", "create", "--data-dir", str(data), "--id", workspace, "--key", key)
    assert created.returncode == 0, created.stderr
    rule_file = base / "raw-events.json"
    rule_file.write_text(json.dumps(rule_definition(workspace, "SdkParsed_CL", "SdkRaw_CL")))
    made = run_cli("dcr", "create", "--data-dir", str(data), "--workspace", workspace, "--file", str(rule_file))
    assert made.returncode == 0, made.stderr
    immutable_id = made.stdout.strip()
    assert immutable_id.startswith("dcr-") and len(immutable_id) == 36, made.stdout
    app = cli_json("app", "create", "--data-dir", str(data), "--name", "sdk-tests", "--workspace", workspace)
    # An app allowed only on another rule: the ingestion API must refuse it here.
    other_rule = "dcr-" + uuid.uuid4().hex
    narrow = cli_json(
        "app", "create", "--data-dir", str(data), "--name", "narrow", "--workspace", workspace, "--dcr", other_rule
    )
    # A second workspace the apps have no access to.
    other_workspace = new_workspace_id()
    made_other = run_cli("workspace", "create", "--data-dir", str(data), "--id", other_workspace)
    assert made_other.returncode == 0, made_other.stderr
    server = WatchpostServer(data, workspace, key, log_dir=base, name="tls")
    server.extra_args = ["--tls-self-signed"]
    server.start()
    assert server.scheme == "https", server.stdout_lines
    ca = str(data / "tls" / "ca.pem")
    yield {
        "server": server,
        "workspace": workspace,
        "other_workspace": other_workspace,
        "key": key,
        "rule": immutable_id,
        "app": app,
        "narrow": narrow,
        "ca": ca,
        "base": base,
    }
    server.kill()


def credential(env, app=None) -> ClientSecretCredential:
    app = app or env["app"]
    return ClientSecretCredential(
        app["tenantId"],
        app["clientId"],
        app["clientSecret"],
        authority=env["server"].url,
        disable_instance_discovery=True,
        connection_verify=env["ca"],
    )


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_app_create_prints_credentials_and_plain_http_is_refused(env):
    app = env["app"]
    assert set(app) >= {"tenantId", "clientId", "clientSecret", "workspaces", "dcrs", "expiresAt"}
    assert app["workspaces"] == [env["workspace"]]
    # The secret is stored hashed only.
    metastore = (Path(env["server"].data_dir) / "metastore.json").read_text()
    assert app["clientSecret"] not in metastore
    # The CA the server presents is the one it wrote; an untrusting client fails.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{env['server'].url}/healthz", timeout=10, verify=True)
    assert requests.get(f"{env['server'].url}/healthz", timeout=10, verify=env["ca"]).text == "ok"


def test_client_secret_credential_gets_a_signed_token(env):
    token = credential(env).get_token("https://monitor.azure.com/.default")
    claims = jwt_claims(token.token)
    assert claims["aud"] == "https://monitor.azure.com"
    assert claims["appid"] == env["app"]["clientId"]
    assert claims["tid"] == env["app"]["tenantId"]
    assert token.expires_on > dt.datetime.now().timestamp() + 600
    # The discovery document names the keys that verify it.
    base = env["server"].url
    tenant = env["app"]["tenantId"]
    config = requests.get(f"{base}/{tenant}/v2.0/.well-known/openid-configuration", verify=env["ca"], timeout=10).json()
    assert config["token_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/token"
    keys = requests.get(config["jwks_uri"], verify=env["ca"], timeout=10).json()["keys"]
    header = json.loads(base64.urlsafe_b64decode(token.token.split(".")[0] + "=="))
    assert header["kid"] in [key["kid"] for key in keys]
    # A wrong secret is refused the way Entra ID refuses it.
    bad = dict(env["app"], clientSecret="wrong")
    with pytest.raises(Exception) as raised:
        credential(env, bad).get_token("https://monitor.azure.com/.default")
    assert "invalid_client" in str(raised.value) or "7000215" in str(raised.value)


def test_sdk_upload_through_a_transform_then_query_back(env):
    server, workspace = env["server"], env["workspace"]
    cred = credential(env)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rng = random.Random(7)
    logs = []
    expected: dict[str, list[int]] = {}
    # Three days of events and ~1.6 MB of JSON: the SDK splits it into
    # chunks of at most 1 MiB, and no chunk is refused for its time span.
    for i in range(3000):
        action = rng.choice(["login", "logout", "read"])
        size = rng.randrange(0, 100_000)
        expected.setdefault(action, []).append(size)
        logs.append(
            {
                "TimeGenerated": (now - dt.timedelta(minutes=i * 1.4)).isoformat().replace("+00:00", "Z"),
                "RawData": f"user=u{i % 17} action={action} bytes={size} " + "x" * 400,
                "Host": f"host-{i % 5}",
                "Attempt": str(i % 3),
                "Undeclared": i,
            }
        )
    client = LogsIngestionClient(endpoint=server.url, credential=cred, connection_verify=env["ca"])
    failures = []
    client.upload(rule_id=env["rule"], stream_name=STREAM, logs=logs, on_error=failures.append)
    assert failures == []

    query = LogsQueryClient(cred, endpoint=server.url, connection_verify=env["ca"])
    result = query.query_workspace(
        workspace,
        "SdkParsed_CL | summarize n = count(), total = sum(Bytes), users = dcount(User) by Action | order by Action asc",
        timespan=dt.timedelta(days=4),
    )
    assert result.status == LogsQueryStatus.SUCCESS
    rows = {row["Action"]: (row["n"], row["total"], row["users"]) for row in result.tables[0].rows}
    assert rows == {action: (len(sizes), sum(sizes), 17) for action, sizes in expected.items()}

    # The transform's output columns, with RawData gone and Kb computed.
    columns = query.query_workspace(workspace, "SdkParsed_CL | getschema | project ColumnName", timespan=None)
    names = [row[0] for row in columns.tables[0].rows]
    assert "RawData" not in names and {"User", "Action", "Bytes", "Kb", "Host", "Attempt"} <= set(names)

    # A window of one day sees only the last day's events.
    last_day = query.query_workspace(workspace, "SdkParsed_CL | count", timespan=dt.timedelta(days=1))
    in_window = sum(1 for i in range(3000) if i * 1.4 < 24 * 60)
    assert last_day.tables[0].rows[0][0] == in_window

    batch = query.query_batch(
        [
            LogsBatchQuery(workspace, "SdkRaw_CL | summarize n = count(), a = sum(Attempt)", timespan=dt.timedelta(days=4)),
            LogsBatchQuery(workspace, "SdkParsed_CL | where Action == 'read' | count", timespan=dt.timedelta(days=4)),
            LogsBatchQuery(workspace, "SdkRaw_CL | summarize by Nope", timespan=None),
        ]
    )
    assert batch[0].status == LogsQueryStatus.SUCCESS
    assert list(batch[0].tables[0].rows[0]) == [3000, sum(i % 3 for i in range(3000))]
    assert batch[1].tables[0].rows[0][0] == len(expected["read"])
    assert batch[2].status == LogsQueryStatus.FAILURE

    # The undeclared property was not stored, and the rule's health record says so.
    raw_columns = query.query_workspace(workspace, "SdkRaw_CL | getschema | project ColumnName", timespan=None)
    assert "Undeclared" not in [row[0] for row in raw_columns.tables[0].rows]
    health = requests.get(
        f"{server.url}/v1/workspaces/{workspace}/dataCollectionRules/raw-events/health",
        headers={"Authorization": f"Bearer {env['key']}"},
        verify=env["ca"],
        timeout=30,
    ).json()
    assert health["immutableId"] == env["rule"]
    assert health["droppedColumns"]["Undeclared"]["records"] == 3000
    assert health["recordsReceived"] == 3000
    assert health["rowsStored"] == 6000


def test_rule_management_over_http_refuses_forbidden_transforms(env):
    server, workspace = env["server"], env["workspace"]
    url = f"{server.url}/v1/workspaces/{workspace}/dataCollectionRules/mgmt-rule"
    auth = {"Authorization": f"Bearer {env['key']}"}
    bad = rule_definition(workspace, "Mgmt_CL", "MgmtRaw_CL")
    bad["properties"]["dataFlows"][0]["transformKql"] = "source\n| summarize count() by Host"
    refused = requests.put(url, json=bad, headers=auth, verify=env["ca"], timeout=30)
    assert refused.status_code == 400
    assert refused.headers["x-ms-error-code"] == "InvalidTransformQuery"
    message = refused.json()["error"]["message"]
    assert "dataFlows[0].transformKql, line 2, position 3" in message and "`summarize`" in message, message

    good = rule_definition(workspace, "Mgmt_CL", "MgmtRaw_CL")
    created = requests.put(url, json=good, headers=auth, verify=env["ca"], timeout=30)
    assert created.status_code == 201, created.text
    immutable_id = created.json()["properties"]["immutableId"]
    replaced = requests.put(url, json=good, headers=auth, verify=env["ca"], timeout=30)
    assert replaced.status_code == 200 and replaced.json()["properties"]["immutableId"] == immutable_id
    fetched = requests.get(url, headers=auth, verify=env["ca"], timeout=30).json()
    assert fetched["properties"]["dataFlows"][0]["transformKql"] == TRANSFORM

    # The new rule takes data at once, through the SDK.
    client = LogsIngestionClient(endpoint=server.url, credential=credential(env), connection_verify=env["ca"])
    client.upload(immutable_id, STREAM, [{"RawData": "user=z action=mgmt bytes=2048", "Host": "h"}])
    query = LogsQueryClient(credential(env), endpoint=server.url, connection_verify=env["ca"])
    rows = query.query_workspace(workspace, "Mgmt_CL | project User, Action, Kb", timespan=None).tables[0].rows
    assert [list(row) for row in rows] == [["z", "mgmt", 2]]

    assert requests.delete(url, headers=auth, verify=env["ca"], timeout=30).status_code == 200
    assert requests.get(url, headers=auth, verify=env["ca"], timeout=30).status_code == 404
    with pytest.raises(HttpResponseError) as gone:
        client.upload(immutable_id, STREAM, [{"RawData": "x"}])
    assert gone.value.status_code == 404


def test_ingestion_errors_are_documented_and_limits_absorbed(env):
    server = env["server"]
    token = credential(env).get_token("https://monitor.azure.com/.default").token
    url = f"{server.url}/dataCollectionRules/{env['rule']}/streams/{STREAM}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(body: bytes, *, query="api-version=2023-01-01", extra=None, target=url):
        return requests.post(
            f"{target}?{query}" if query else target,
            data=body,
            headers={**headers, **(extra or {})},
            verify=env["ca"],
            timeout=120,
        )

    cases = [
        (post(b"[]", query=None), 400, "InvalidApiVersion"),
        (post(b"[]", query="api-version=1999-01-01"), 400, "InvalidApiVersion"),
        (post(b"[1, 2]"), 400, "InvalidJson"),
        (post(b"[]", extra={"Authorization": "Bearer nope"}), 401, "InvalidToken"),
        (post(b"[]", target=f"{server.url}/dataCollectionRules/dcr-{'0' * 32}/streams/{STREAM}"), 404, "NotFound"),
        (post(b"[]", target=f"{server.url}/dataCollectionRules/{env['rule']}/streams/Custom-Nope"), 404, "NotFound"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.headers.get("x-ms-error-code")) == (status, code), response.text
        assert response.json()["error"]["code"] == code

    # An app registered for another rule only is refused on this one.
    narrow = LogsIngestionClient(endpoint=server.url, credential=credential(env, env["narrow"]), connection_verify=env["ca"])
    with pytest.raises(HttpResponseError) as refused:
        narrow.upload(env["rule"], STREAM, [{"RawData": "x"}])
    assert refused.value.status_code == 403

    # One 6 MB gzip body spanning a year: Azure would refuse it (1 MB per
    # call); Watchpost takes it in one request and says what it dropped.
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    records = [
        {
            "TimeGenerated": (start + dt.timedelta(days=i % 365)).isoformat(),
            "RawData": f"user=big action=bulk bytes={i} " + "y" * 200,
            "Host": "bulk",
            "Stray": 1,
        }
        for i in range(25_000)
    ]
    body = json.dumps(records).encode()
    assert len(body) > 5_000_000
    accepted = post(gzip.compress(body), extra={"Content-Encoding": "gzip", "x-ms-client-request-id": str(uuid.uuid4())})
    assert accepted.status_code == 204, accepted.text
    assert accepted.headers["x-watchpost-dropped-columns"] == "Stray=25000"
    query = LogsQueryClient(credential(env), endpoint=server.url, connection_verify=env["ca"])
    counted = query.query_workspace(
        env["workspace"], "SdkParsed_CL | where Action == 'bulk' | summarize count(), dcount(bin(TimeGenerated, 1d))", timespan=None
    )
    assert list(counted.tables[0].rows[0]) == [25_000, 365]

    # Above the body limit (30 MB by default, decompressed too): 413.
    bomb = gzip.compress(b"[" + b" " * (31 * 1024 * 1024) + b"]")
    too_big = post(bomb, extra={"Content-Encoding": "gzip"})
    assert too_big.status_code == 413 and too_big.headers["x-ms-error-code"] == "ContentLengthLimitExceeded"


def test_query_api_takes_tokens_only_for_the_apps_workspaces(env):
    server = env["server"]
    token = credential(env).get_token(f"{server.url}/.default").token
    headers = {"Authorization": f"Bearer {token}"}
    ok = requests.post(
        f"{server.url}/v1/workspaces/{env['workspace']}/query",
        json={"query": "print x = 1"},
        headers=headers,
        verify=env["ca"],
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["tables"][0]["rows"] == [[1]]
    refused = requests.post(
        f"{server.url}/v1/workspaces/{env['other_workspace']}/query",
        json={"query": "print x = 1"},
        headers=headers,
        verify=env["ca"],
        timeout=30,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "InsufficientAccessError"
    # The workspace key still works as before.
    by_key = requests.post(
        f"{server.url}/v1/workspaces/{env['workspace']}/query",
        json={"query": "print x = 2"},
        headers={"Authorization": f"Bearer {env['key']}"},
        verify=env["ca"],
        timeout=30,
    )
    assert by_key.status_code == 200


def test_tls_cert_and_key_flags_serve_a_given_certificate(env, tmp_path):
    tls = Path(env["server"].data_dir) / "tls"
    other = WatchpostServer(tmp_path / "data", new_workspace_id(), new_key(), log_dir=tmp_path, name="given-cert")
    other.extra_args = ["--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key")]
    try:
        # The conftest health check trusts data/tls/ca.pem, which this
        # server does not write: point it at the first server's CA.
        (tmp_path / "data" / "tls").mkdir(parents=True)
        (tmp_path / "data" / "tls" / "ca.pem").write_text((tls / "ca.pem").read_text())
        other.start()
        assert other.scheme == "https"
        assert requests.get(f"{other.url}/healthz", verify=env["ca"], timeout=10).text == "ok"
    finally:
        other.kill()
    missing_key = run_cli("serve", "--data-dir", str(tmp_path / "d2"), "--tls-cert", str(tls / "server.pem"))
    assert missing_key.returncode != 0 and "--tls-key" in missing_key.stderr
