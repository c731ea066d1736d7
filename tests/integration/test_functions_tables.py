"""Saved functions (parsers), standard table schemas and table management
(issue 4, parts 1-3), against the real binary: the REST API, Kusto control
commands sent to the query endpoint, and `watchpost function ...`."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import requests

from conftest import HTTP_TIMEOUT, run_cli, unique_log_type


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def function_url(server, name: str = "") -> str:
    base = f"{server.url}/v1/workspaces/{server.workspace_id}/functions"
    return f"{base}/{name}" if name else base


def table_url(server, name: str = "") -> str:
    base = f"{server.url}/v1/workspaces/{server.workspace_id}/tables"
    return f"{base}/{name}" if name else base


def put_function(server, name: str, body: dict, key: str | None = None) -> requests.Response:
    return requests.put(function_url(server, name), json=body, headers=auth(key or server.primary_key), timeout=HTTP_TIMEOUT)


def command(server, text: str, key: str | None = None) -> requests.Response:
    return server.query_raw(text, key=key)


def add_query_key(server) -> str:
    result = run_cli("workspace", "add-query-key", "--data-dir", str(server.data_dir), server.workspace_id)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


RAW_LINES = [
    'user=alice action=login src=10.0.0.5 port=22 {"sev":"high"}',
    'user=bob action=logout src=10.0.0.6 port=2222 {"sev":"low"}',
    'user=carol action=login src=10.0.0.7 port=22 {"sev":"low"}',
]


def parser_body(table: str) -> str:
    return textwrap.dedent(
        f"""\
        {table}
        | parse Line_s with "user=" User " action=" Action " src=" SrcIp " " *
        | extend Port = toint(extract(@"port=(\\d+)", 1, Line_s)), Details = parse_json(extract(@"(\\{{.*\\}})", 1, Line_s))
        | extend Severity = tostring(Details.sev)
        | project TimeGenerated, User, Action, SrcIp, Port, Severity"""
    )


# --- the Sentinel parser pattern ---------------------------------------------------------


def test_changing_a_parser_changes_queries_over_old_rows(server):
    log_type = unique_log_type("RawAuth")
    table = f"{log_type}_CL"
    server.ingest(log_type, [{"Line": line} for line in RAW_LINES])
    name = f"Auth_{uuid.uuid4().hex[:8]}"
    response = put_function(server, name, {"body": parser_body(table), "category": "Parsers", "displayName": "Auth parser"})
    assert response.status_code == 201, response.text
    query = f"{name} | where Action == 'login' | project User, Port, Severity | order by User asc"
    assert server.query(query).rows == [["alice", 22, "high"], ["carol", 22, "low"]]

    # The same function replaced through a control command: the same query
    # over the same stored rows now reflects the new parser.
    changed = parser_body(table) + "\n| extend User = toupper(User), Severity = strcat('ssh-', Severity)"
    response = command(server, f".create-or-alter function with (folder='Parsers') {name}() {{\n{changed}\n}}")
    assert response.status_code == 200, response.text
    assert server.query(query).rows == [["ALICE", 22, "ssh-high"], ["CAROL", 22, "ssh-low"]]
    assert server.count(table) == 3


def test_function_parameters_defaults_and_nesting(server):
    log_type = unique_log_type("RawAuthP")
    table = f"{log_type}_CL"
    server.ingest(log_type, [{"Line": line} for line in RAW_LINES])
    suffix = uuid.uuid4().hex[:8]
    base, vim = f"Base_{suffix}", f"vimAuth_{suffix}"
    assert put_function(server, base, {"body": parser_body(table)}).status_code == 201
    response = put_function(server, vim, {
        "body": f"{base}\n| where username == '*' or User == username\n| where array_length(ports) == 0 or Port in (ports)",
        "parameters": [
            {"name": "username", "type": "string", "default": "'*'"},
            {"name": "ports", "type": "dynamic", "default": "dynamic([])"},
        ],
    })
    assert response.status_code == 201, response.text
    assert response.json()["parameters"] == "username:string='*', ports:dynamic=dynamic([])"
    assert server.count(vim) == 3
    assert server.query(f"{vim}(username='bob') | project User").rows == [["bob"]]
    assert server.query(f"{vim}(ports=dynamic([22])) | order by User asc | project User").rows == [["alice"], ["carol"]]
    # Used wherever a table is: a fuzzy union over present and absent tables.
    fuzzy = f"union isfuzzy=true {vim}, Missing_{suffix}_CL, Syslog, (SigninLogs | where ResultType == '0') | count"
    assert server.query(fuzzy).scalar() == 3
    error = server.query_raw(f"union Syslog, Missing_{suffix}_CL").json()["error"]
    assert f"Missing_{suffix}_CL" in error["innererror"]["message"]


def test_recursive_functions_are_refused_with_a_kusto_style_error(server):
    name = f"Loop_{uuid.uuid4().hex[:8]}"
    assert put_function(server, name, {"body": f"{name} | take 1"}).status_code == 201
    response = server.query_raw(f"{name} | count")
    assert response.status_code == 400, response.text
    message = response.json()["error"]["innererror"]["message"]
    assert f"in function '{name}'" in message and "recursive" in message


# --- the REST API ---------------------------------------------------------------------------


def test_function_rest_api_create_replace_list_show_delete(server):
    name = f"Fn_{uuid.uuid4().hex[:8]}"
    created = put_function(server, name, {"body": "print x = 1", "category": "Tools", "description": "one"})
    assert created.status_code == 201, created.text
    replaced = put_function(server, name, {"body": "print x = 2", "category": "Tools", "displayName": "Two"})
    assert replaced.status_code == 200, replaced.text
    shown = requests.get(function_url(server, name), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert shown.status_code == 200
    assert shown.json() == {"name": name, "parameters": "", "body": "print x = 2", "category": "Tools", "displayName": "Two", "description": ""}
    listed = requests.get(function_url(server), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT).json()["value"]
    assert name in [function["name"] for function in listed]
    assert server.query(f"{name}").rows == [[2]]
    deleted = requests.delete(function_url(server, name), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert deleted.status_code == 200
    gone = requests.get(function_url(server, name), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "NotFoundError"
    again = requests.delete(function_url(server, name), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert again.status_code == 404


def test_function_rest_api_refuses_bad_requests(server):
    name = f"Bad_{uuid.uuid4().hex[:8]}"
    bad_kql = put_function(server, name, {"body": "Syslog | where ("})
    assert bad_kql.status_code == 400 and "not valid KQL" in bad_kql.json()["error"]["message"]
    assert put_function(server, name, {"parameters": "x:long"}).status_code == 400
    assert put_function(server, "Syslog", {"body": "Heartbeat"}).status_code == 409
    not_json = requests.put(function_url(server, name), data=b"{", headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert not_json.status_code == 400
    assert put_function(server, name, {"body": "print 1"}, key="bm9wZQ==").status_code == 403
    query_key = add_query_key(server)
    # A query key reads but does not change (the server reads keys at start: restart).
    server.restart()
    assert put_function(server, name, {"body": "print 1"}, key=query_key).status_code == 403
    listed = requests.get(function_url(server), headers=auth(query_key), timeout=HTTP_TIMEOUT)
    assert listed.status_code == 200
    assert command(server, f".create function {name}() {{ print 1 }}", key=query_key).status_code == 403
    assert command(server, ".show functions", key=query_key).status_code == 200


# --- control commands ---------------------------------------------------------------------


def test_control_commands_create_show_and_drop(server):
    name = f"Cmd_{uuid.uuid4().hex[:8]}"
    created = command(server, f".create function with (folder='Demo', docstring='Hi') {name}(n:long = 2) {{ range i from 1 to n step 1 }}")
    assert created.status_code == 200, created.text
    table = created.json()["tables"][0]
    assert [column["name"] for column in table["columns"]] == ["Name", "Parameters", "Body", "Folder", "DocString"]
    assert table["rows"][0][0] == name and table["rows"][0][3] == "Demo" and table["rows"][0][4] == "Hi"
    assert server.query(f"{name}(3) | count").scalar() == 3
    assert command(server, f".create function {name}() {{ print 1 }}").status_code == 409
    shown = server.query(".show functions")
    assert name in shown.column("Name")
    dropped = command(server, f".drop function {name}")
    assert dropped.status_code == 200 and dropped.json()["tables"][0]["rows"] == [[name]]
    assert command(server, f".drop function {name}").status_code == 404
    assert command(server, f".drop function {name} ifexists").status_code == 200
    unsupported = command(server, ".purge table Syslog")
    assert unsupported.status_code == 400 and "unsupported control command" in unsupported.json()["error"]["message"]


def test_functions_and_tables_survive_a_restart(make_server):
    server = make_server()
    name = f"Keep_{uuid.uuid4().hex[:8]}"
    assert put_function(server, name, {"body": "print kept = 'yes'"}).status_code == 201
    table = f"Keep_{uuid.uuid4().hex[:8]}_CL"
    body = {"properties": {"schema": {"name": table, "columns": [{"name": "TimeGenerated", "type": "dateTime"}, {"name": "Note_s", "type": "string"}]}, "retentionInDays": 12}}
    assert requests.put(table_url(server, table), json=body, headers=auth(server.primary_key), timeout=HTTP_TIMEOUT).status_code == 201
    server.stop()
    server.start()
    assert server.query(name).rows == [["yes"]]
    shown = requests.get(table_url(server, table), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT).json()
    assert shown["properties"]["retentionInDays"] == 12
    assert "Note_s" in [column["name"] for column in shown["properties"]["schema"]["columns"]]
    assert server.query(f"{table} | count").scalar() == 0


# --- `watchpost function import` --------------------------------------------------------------

CLASSIC_PARSER = """\
Function:
  Title: Parser for the test auth log
  Version: '1.0.0'
Category: Microsoft Sentinel Parser
FunctionName: TestAuthParser
FunctionAlias: {alias}
FunctionParams:
  - Name: username
    Type: string
    Default: '*'
  - Name: minport
    Type: int
    Default: 0
FunctionQuery: |
  {table}
  | parse Line_s with "user=" User " action=" Action " src=" SrcIp " port=" Port:int " " *
  | where username == '*' or User == username
  | where Port >= minport
  | project TimeGenerated, User, Action, SrcIp, Port
"""

ASIM_PARSER = """\
Parser:
  Title: Authentication ASIM parser for the test log
ParserName: {name}
EquivalentBuiltInParser: _Im_Authentication_Test
ParserParams:
  - Name: starttime
    Type: datetime
    Default: datetime(null)
  - Name: disabled
    Type: bool
    Default: false
ParserQuery: |
  {alias}
  | where not(disabled)
  | where isnull(starttime) or TimeGenerated >= starttime
  | extend EventProduct = 'TestAuth', TargetUsername = User
"""


def test_function_import_creates_working_parsers_and_reports_each_file(server, tmp_path):
    log_type = unique_log_type("RawImport")
    table = f"{log_type}_CL"
    server.ingest(log_type, [{"Line": line} for line in RAW_LINES])
    suffix = uuid.uuid4().hex[:8]
    alias, asim = f"TestAuthEvent_{suffix}", f"vimAuthTest_{suffix}"
    (tmp_path / "parsers").mkdir()
    classic = tmp_path / "parsers" / "TestAuth.yaml"
    classic.write_text(CLASSIC_PARSER.format(alias=alias, table=table))
    asim_file = tmp_path / "parsers" / "vimAuthTest.yaml"
    asim_file.write_text(ASIM_PARSER.format(name=asim, alias=alias))
    broken = tmp_path / "broken.yaml"
    broken.write_text("FunctionName: Broken\nFunctionQuery: |\n  Syslog | where (\n")
    not_parser = tmp_path / "rule.yaml"
    not_parser.write_text("id: 1\nquery: Syslog\n")

    def import_files(*paths):
        return run_cli("function", "import", "--url", server.url, "--workspace", server.workspace_id, "--key", server.primary_key, *map(str, paths))

    result = import_files(tmp_path / "parsers", broken, not_parser)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert f"{classic}: created {alias}" in lines
    assert f"{asim_file}: created {asim}" in lines
    assert any(line.startswith(f"{broken}: failed (400)") and "not valid KQL" in line for line in lines), lines
    assert any(line.startswith(f"{not_parser}: failed:") and "not a parser file" in line for line in lines), lines
    assert lines[-1] == "2 imported, 2 failed"

    assert server.count(alias) == 3
    assert server.query(f"{alias}(username='bob') | project User").rows == [["bob"]]
    assert server.query(f"{alias}(minport=1000) | project User").rows == [["bob"]]
    assert server.query(f"{asim} | distinct EventProduct").rows == [["TestAuth"]]
    assert server.count(f"{asim}(disabled=true)") == 0
    assert server.count(f"{asim}(starttime=now(1h))") == 0

    again = import_files(classic)
    assert again.returncode == 0 and again.stdout.splitlines()[0] == f"{classic}: replaced {alias}"
    listed = run_cli("function", "list", "--url", server.url, "--workspace", server.workspace_id, "--key", server.primary_key)
    assert listed.returncode == 0 and f"{alias}(username:string='*', minport:int=0)" in listed.stdout.splitlines()


# --- tables -------------------------------------------------------------------------------------


def test_table_api_creates_extends_and_sets_retention(server):
    table = f"Managed_{uuid.uuid4().hex[:8]}_CL"
    body = {"properties": {"schema": {"name": table, "columns": [
        {"name": "TimeGenerated", "type": "dateTime"},
        {"name": "Message_s", "type": "string"},
        {"name": "Level_d", "type": "real"},
    ]}, "retentionInDays": 45}}
    created = requests.put(table_url(server, table), json=body, headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert created.status_code == 201, created.text
    props = created.json()["properties"]
    assert props["retentionInDays"] == 45 and props["schemaMode"] == "declared"
    assert props["schema"]["tableType"] == "CustomLog"
    columns = [(c["name"], c["type"]) for c in props["schema"]["columns"]]
    assert columns[:3] == [("TimeGenerated", "dateTime"), ("Message_s", "string"), ("Level_d", "real")]

    patch = {"properties": {"schema": {"columns": [{"name": "Host_s", "type": "string"}]}, "retentionInDays": 60}}
    patched = requests.patch(table_url(server, table), json=patch, headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)
    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"]["retentionInDays"] == 60

    # getschema, .show table and the tables API agree.
    declared = [c["name"] for c in patched.json()["properties"]["schema"]["columns"]]
    assert server.query(f"{table} | getschema | project ColumnName").column("ColumnName") == declared
    assert server.query(f".show table {table}").column("AttributeName") == declared
    assert table in server.query(".show tables").column("TableName")

    # Rows that fit are stored; a field the table does not declare is refused whole.
    log_type = table[: -len("_CL")]
    server.ingest(log_type, [{"Message": "hello", "Level": 3, "Host": "h1"}])
    refused = server.post(log_type, [{"Message": "x", "Unexpected": "y"}])
    assert refused.status_code == 400, refused.text
    assert "Unexpected_s" in refused.json()["Message"]
    assert server.query(f"{table} | project Message_s, Level_d, Host_s").rows == [["hello", 3.0, "h1"]]


def test_table_api_refuses_bad_tables(server):
    def put(name, body):
        return requests.put(table_url(server, name), json=body, headers=auth(server.primary_key), timeout=HTTP_TIMEOUT)

    columns = [{"name": "TimeGenerated", "type": "datetime"}]
    ok = {"properties": {"schema": {"columns": columns}}}
    assert put("NoSuffix", ok).status_code == 400
    assert put("NoTime_CL", {"properties": {"schema": {"columns": [{"name": "A", "type": "string"}]}}}).status_code == 400
    assert put("BadType_CL", {"properties": {"schema": {"columns": columns + [{"name": "A", "type": "text"}]}}}).status_code == 400
    assert put("Dup_CL", {"properties": {"schema": {"columns": columns + columns}}}).status_code == 400
    assert put("Ret_CL", {"properties": {"schema": {"columns": columns}, "retentionInDays": 0}}).status_code == 400
    assert put("Syslog", {"properties": {"schema": {"columns": [{"name": "Extra", "type": "string"}]}}}).status_code == 400
    retyped = f"Retype_{uuid.uuid4().hex[:8]}_CL"
    assert put(retyped, ok).status_code == 201
    assert put(retyped, {"properties": {"schema": {"columns": [{"name": "TimeGenerated", "type": "string"}]}}}).status_code == 400
    # A standard table keeps its schema; its retention can change.
    syslog = put("Syslog", {"properties": {"retentionInDays": 30}})
    assert syslog.status_code == 200, syslog.text
    assert syslog.json()["properties"]["schema"]["tableType"] == "Microsoft"
    assert syslog.json()["properties"]["retentionInDays"] == 30


def test_every_standard_table_binds_and_agrees_with_getschema(server):
    listed = requests.get(table_url(server), headers=auth(server.primary_key), timeout=HTTP_TIMEOUT).json()["value"]
    standard = [table for table in listed if table["properties"]["schema"]["tableType"] == "Microsoft"]
    names = {table["name"] for table in standard}
    for required in ["Syslog", "CommonSecurityLog", "SecurityEvent", "WindowsEvent", "SigninLogs", "AADNonInteractiveUserSignInLogs",
                     "AuditLogs", "AzureActivity", "OfficeActivity", "SecurityAlert", "SecurityIncident",
                     "ThreatIntelligenceIndicator", "Heartbeat", "DnsEvents", "W3CIISLog", "AWSCloudTrail", "Event",
                     "ASimAuthenticationEventLogs", "ASimDnsActivityLogs", "ASimNetworkSessionLogs", "ASimProcessEventLogs",
                     "ASimWebSessionLogs", "ASimFileEventLogs", "ASimAuditEventLogs", "ASimRegistryEventLogs"]:
        assert required in names, required
    for table in standard:
        name = table["name"]
        assert server.query(f"{name} | take 1").rows == [], name
        assert server.query(f"{name} | where TimeGenerated > ago(1d) | summarize count()").scalar() == 0, name
        declared = [column["name"] for column in table["properties"]["schema"]["columns"]]
        assert server.query(f"{name} | getschema | project ColumnName").column("ColumnName") == declared, name
