//! Stored functions and standard tables seen from queries: the engine,
//! the metastore and the store together, as the server wires them.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use serde_json::{json, Value as Json};
use watchpost_engine::{EngineOptions, QueryEngine, QueryError, QueryRequest};
use watchpost_metastore::{Metastore, SaveMode};
use watchpost_schema::standard::standard_tables;
use watchpost_schema::{ColumnDef, KqlType, TableSchema, TIME_RECEIVED};
use watchpost_storage::{AppendRequest, Store, StoreOptions};

use crate::functions::FunctionSpec;
use crate::{Access, Control, MetastoreFunctions};

/// 2024-06-03T00:00:00Z, the queries' "now".
const NOW_NS: i64 = 1_717_372_800_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    control: Control,
    engine: QueryEngine,
    workspace: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let metastore = Arc::new(Metastore::open(dir.path()).unwrap());
    let workspace = metastore.ensure_workspace(None, None).unwrap().id;
    let store =
        Arc::new(Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    let engine = QueryEngine::new(store.clone(), EngineOptions::default())
        .with_functions(Arc::new(MetastoreFunctions(metastore.clone())));
    Fixture { _dir: dir, control: Control::new(metastore, store), engine, workspace }
}

impl Fixture {
    fn ingest_raw(&self, table: &str, lines: &[&str]) {
        let schema = TableSchema::new(vec![
            ColumnDef::new("TimeGenerated", KqlType::Datetime),
            ColumnDef::new("RawData", KqlType::String),
            ColumnDef::new(TIME_RECEIVED, KqlType::Datetime),
        ]);
        let times: Vec<i64> = (0..lines.len() as i64).map(|idx| NOW_NS - HOUR_NS + idx).collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
            Arc::new(StringArray::from(lines.to_vec())),
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new(schema.arrow_schema(), arrays).unwrap();
        let request = AppendRequest {
            workspace: self.workspace.clone(),
            table: table.into(),
            idempotency_key: None,
            received_ns: NOW_NS,
            batch,
        };
        self.control.store.append(request).unwrap();
    }

    fn save(&self, name: &str, parameters: &str, body: &str) {
        let spec = FunctionSpec {
            name: name.into(),
            parameters: parameters.into(),
            body: body.into(),
            ..FunctionSpec::default()
        };
        self.control.save_function(&self.workspace, spec, SaveMode::CreateOrReplace, Access::ReadWrite).unwrap();
    }

    fn run(&self, text: &str) -> Result<Vec<Vec<Json>>, QueryError> {
        let request = QueryRequest {
            workspace: self.workspace.clone(),
            text: text.into(),
            window: None,
            now_ns: NOW_NS,
            timeout: Duration::from_secs(30),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(self.engine.run(&request)).map(|output| output.json_rows())
    }

    fn rows(&self, text: &str) -> Vec<Vec<Json>> {
        self.run(text).unwrap_or_else(|err| panic!("{text}: {err:?}"))
    }

    fn error(&self, text: &str) -> String {
        match self.run(text) {
            Err(QueryError::Invalid { diagnostics }) => diagnostics[0].message.clone(),
            other => panic!("{text}: expected an invalid query, got {other:?}"),
        }
    }
}

const RAW_LINES: [&str; 3] = [
    r#"user=alice action=login src=10.0.0.5 port=22 {"sev":"high"}"#,
    r#"user=bob action=logout src=10.0.0.6 port=2222 {"sev":"low"}"#,
    r#"user=carol action=login src=10.0.0.7 port=22 {"sev":"low"}"#,
];

const PARSER_V1: &str = r#"Raw_CL
| parse RawData with "user=" User " action=" Action " src=" SrcIp " " *
| extend Port = toint(extract(@"port=(\d+)", 1, RawData)), Details = parse_json(extract(@"(\{.*\})", 1, RawData))
| extend Severity = tostring(Details.sev)
| project TimeGenerated, User, Action, SrcIp, Port, Severity"#;

#[test]
fn changing_a_parser_changes_later_queries_over_old_rows() {
    let fx = fixture();
    fx.ingest_raw("Raw_CL", &RAW_LINES);
    fx.save("AuthParser", "", PARSER_V1);
    let query = "AuthParser | where Action == 'login' | project User, Port, Severity | order by User asc";
    assert_eq!(
        fx.rows(query),
        vec![vec![json!("alice"), json!(22), json!("high")], vec![json!("carol"), json!(22), json!("low")]]
    );

    // The parser changes; the same query over the same stored rows follows it.
    let v2 = format!("{PARSER_V1}\n| extend User = toupper(User), Severity = strcat('ssh-', Severity)");
    fx.save("AuthParser", "", &v2);
    assert_eq!(
        fx.rows(query),
        vec![vec![json!("ALICE"), json!(22), json!("ssh-high")], vec![json!("CAROL"), json!(22), json!("ssh-low")]]
    );
    // Old rows are untouched: the raw table still holds the lines as sent.
    assert_eq!(fx.rows("Raw_CL | count"), vec![vec![json!(3)]]);
}

#[test]
fn parser_parameters_filter_and_take_defaults() {
    let fx = fixture();
    fx.ingest_raw("Raw_CL", &RAW_LINES);
    fx.save("AuthParser", "", PARSER_V1);
    fx.save(
        "vimAuth",
        "starttime:datetime=datetime(null), username:string='*', ports:dynamic=dynamic([])",
        "AuthParser\n| where isnull(starttime) or TimeGenerated >= starttime\n| where username == '*' or User == username\n| where array_length(ports) == 0 or Port in (ports)",
    );
    assert_eq!(fx.rows("vimAuth | count"), vec![vec![json!(3)]]);
    assert_eq!(fx.rows("vimAuth() | count"), vec![vec![json!(3)]]);
    assert_eq!(fx.rows("vimAuth(username='bob') | project User"), vec![vec![json!("bob")]]);
    assert_eq!(fx.rows("vimAuth(ports=dynamic([2222])) | project User"), vec![vec![json!("bob")]]);
    assert_eq!(fx.rows("vimAuth(ago(1m)) | count"), vec![vec![json!(0)]], "positional starttime after every row");
    let message = fx.error("vimAuth(nobody='x')");
    assert!(message.contains("no parameter named 'nobody'"), "{message}");
}

#[test]
fn stored_functions_are_used_wherever_a_table_or_function_is() {
    let fx = fixture();
    fx.ingest_raw("Raw_CL", &RAW_LINES);
    fx.save("AuthParser", "", PARSER_V1);
    fx.save("Logins", "", "AuthParser | where Action == 'login'");
    fx.save("Top", "T:(User:string), n:long=1", "T | order by User asc | take n");
    fx.save("Shout", "s:string", "strcat(toupper(s), '!')");
    assert_eq!(fx.rows("Logins | count"), vec![vec![json!(2)]], "a function calling a function");
    assert_eq!(fx.rows("Top(Logins, 1) | project User"), vec![vec![json!("alice")]], "a tabular parameter");
    assert_eq!(fx.rows("Logins | invoke Top(2) | count"), vec![vec![json!(2)]], "invoke");
    assert_eq!(fx.rows("Logins | take 1 | project S = Shout(User)"), vec![vec![json!("ALICE!")]], "a scalar function");
    let joined = "Logins | join kind=inner (AuthParser | where Action == 'logout' | project SrcIp) on SrcIp | count";
    assert_eq!(fx.rows(joined), vec![vec![json!(0)]]);
    assert_eq!(fx.rows("let t = Logins; t | count"), vec![vec![json!(2)]]);
    // A caller's `let` does not leak into a stored function's body.
    assert_eq!(fx.rows("let Raw_CL = datatable(RawData:string)['x']; Logins | count"), vec![vec![json!(2)]]);
    // A `let` function of the same name shadows the stored one.
    assert_eq!(fx.rows("let Logins = () { print n = 7 }; Logins | project n"), vec![vec![json!(7)]]);
}

#[test]
fn recursion_and_broken_bodies_are_reported_at_the_call() {
    let fx = fixture();
    fx.save("Loop", "", "Loop | take 1");
    fx.save("Ping", "", "Pong");
    fx.save("Pong", "", "Ping | take 1");
    let message = fx.error("Loop | count");
    assert!(message.contains("in function 'Loop'") && message.contains("recursive"), "{message}");
    let message = fx.error("Ping");
    assert!(message.contains("recursive"), "{message}");
    fx.save("Broken", "", "NoSuchTable_CL | take 1");
    let message = fx.error("Broken | count");
    assert!(message.contains("in function 'Broken'") && message.contains("NoSuchTable_CL"), "{message}");
}

#[test]
fn every_standard_table_binds_and_runs_empty_on_a_fresh_workspace() {
    let fx = fixture();
    for table in standard_tables() {
        let name = &table.name;
        assert_eq!(fx.rows(&format!("{name} | take 1")), Vec::<Vec<Json>>::new(), "{name}");
        let counted = fx.rows(&format!("{name} | where TimeGenerated > ago(1d) | summarize count()"));
        assert_eq!(counted, vec![vec![json!(0)]], "{name}");
        let schema = fx.rows(&format!("{name} | getschema | count"));
        assert_eq!(schema, vec![vec![json!(table.schema.columns.len())]], "{name}: getschema agrees");
    }
}

#[test]
fn fuzzy_unions_skip_absent_tables_and_read_present_ones() {
    let fx = fixture();
    fx.ingest_raw("Raw_CL", &RAW_LINES);
    fx.save("AuthParser", "", PARSER_V1);
    let query = "union isfuzzy=true Syslog, Absent_CL, AuthParser, (SigninLogs | where ResultType == '0') | count";
    assert_eq!(fx.rows(query), vec![vec![json!(3)]]);
    let message = fx.error("union Syslog, Absent_CL | count");
    assert!(message.contains("Absent_CL"), "{message}");
}
