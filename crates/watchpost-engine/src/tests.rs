//! Engine tests over a real store in a temporary directory: rows in
//! buffers and in segments, the query window, the clock, the row cap.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use serde_json::{json, Value as Json};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};
use watchpost_storage::{AppendRequest, Store, StoreOptions};

use super::*;

const WS: &str = "00000000-0000-0000-0000-0000000000aa";
const HOUR: i64 = 3_600_000_000_000;
/// 2024-06-03T00:00:00Z.
const T0: i64 = 1_717_372_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    engine: QueryEngine,
}

fn fixture(options: EngineOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    let engine = QueryEngine::new(store.clone(), options);
    Fixture { _dir: dir, store, engine }
}

/// Appends sign-in rows: (hour offset, user, result, bytes).
pub(super) fn append_signins(store: &Store, rows: &[(i64, &str, &str, f64)]) {
    let schema = TableSchema::new(vec![
        ColumnDef::new("TimeGenerated", KqlType::Datetime),
        ColumnDef::new("User_s", KqlType::String),
        ColumnDef::new("Result_s", KqlType::String),
        ColumnDef::new("Bytes_d", KqlType::Real),
        ColumnDef::new("_TimeReceived", KqlType::Datetime),
    ]);
    let times: Vec<i64> = rows.iter().map(|row| T0 + row.0 * HOUR).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
        Arc::new(StringArray::from(rows.iter().map(|row| row.1).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|row| row.2).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(rows.iter().map(|row| row.3).collect::<Vec<_>>())),
        Arc::new(TimestampNanosecondArray::from(vec![T0 + 100 * HOUR; rows.len()]).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(schema.arrow_schema(), columns).unwrap();
    let request =
        AppendRequest { workspace: WS.into(), table: "SignIn_CL".into(), idempotency_key: None, received_ns: 0, batch };
    store.append(request).unwrap();
}

fn request(text: &str) -> QueryRequest {
    QueryRequest {
        workspace: WS.into(),
        text: text.into(),
        window: None,
        now_ns: T0 + 24 * HOUR,
        timeout: Duration::from_secs(30),
    }
}

async fn rows(engine: &QueryEngine, request: &QueryRequest) -> (Vec<(String, &'static str)>, Vec<Vec<Json>>) {
    let output = engine.run(request).await.unwrap_or_else(|err| panic!("{}: {err:?}", request.text));
    let columns = output.columns.iter().map(|c| (c.name.clone(), c.kql_type.name())).collect();
    (columns, output.json_rows())
}

/// The physical plan of `request`, one operator a line.
pub(super) async fn physical_plan(engine: &QueryEngine, request: &QueryRequest) -> String {
    let bound = engine.check(&request.workspace, &request.text).unwrap();
    let session = engine.session().unwrap();
    let mut stats = QueryStats::default();
    let pruning = Arc::new(scan::TermPruning::default());
    let plan = engine.lowered_plan(&session, &bound, request, &mut stats, &pruning).unwrap();
    let physical = session.state().create_physical_plan(&plan).await.unwrap();
    let text = datafusion::physical_plan::displayable(physical.as_ref()).indent(true).to_string();
    text
}

fn sample(store: &Store) {
    append_signins(store, &[(1, "alice", "failure", 10.0), (2, "alice", "failure", 20.0), (3, "bob", "success", 5.0)]);
    store.flush().unwrap();
    append_signins(store, &[(4, "alice", "success", 1.0), (30, "carol", "failure", 7.0)]);
}

#[tokio::test]
async fn reads_segments_and_buffers_together() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    let (columns, rows) = rows(
        &fx.engine,
        &request("SignIn_CL | where Result_s == 'failure' | summarize n = count() by User_s | sort by User_s asc"),
    )
    .await;
    assert_eq!(columns, vec![("User_s".to_string(), "string"), ("n".to_string(), "long")]);
    assert_eq!(rows, vec![vec![json!("alice"), json!(2)], vec![json!("carol"), json!(1)]]);
}

#[tokio::test]
async fn summarize_names_columns_like_kusto() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    let text = "SignIn_CL | summarize count(), sum(Bytes_d) by bin(TimeGenerated, 1d) | sort by TimeGenerated asc";
    let (columns, rows) = rows(&fx.engine, &request(text)).await;
    let names: Vec<_> = columns.iter().map(|(name, ty)| format!("{name}:{ty}")).collect();
    assert_eq!(names, ["TimeGenerated:datetime", "count_:long", "sum_Bytes_d:real"]);
    assert_eq!(rows[0], vec![json!("2024-06-03T00:00:00.0000000Z"), json!(4), json!(36.0)]);
    assert_eq!(rows[1], vec![json!("2024-06-04T00:00:00.0000000Z"), json!(1), json!(7.0)]);
}

#[tokio::test]
async fn ago_uses_the_query_clock_and_window_limits_time() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    // now = T0 + 24h; ago(21h) = T0 + 3h.
    let (_, recent) = rows(&fx.engine, &request("SignIn_CL | where TimeGenerated >= ago(21h) | count")).await;
    assert_eq!(recent, vec![vec![json!(3)]]);
    let mut windowed = request("SignIn_CL | count");
    windowed.window = Some(TimeWindow { start_ns: T0 + 2 * HOUR, end_ns: T0 + 4 * HOUR });
    let (_, counted) = rows(&fx.engine, &windowed).await;
    assert_eq!(counted, vec![vec![json!(2)]]);
}

#[tokio::test]
async fn string_operators_follow_kql_semantics() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    let cases = [
        ("SignIn_CL | where User_s has 'ALICE' | count", 3),
        ("SignIn_CL | where User_s contains 'LI' | count", 3),
        ("SignIn_CL | where User_s startswith 'b' | count", 1),
        ("SignIn_CL | where User_s =~ 'CAROL' | count", 1),
        ("SignIn_CL | where User_s in ('bob', 'carol') | count", 2),
        ("SignIn_CL | where User_s !in ('bob', 'carol') | count", 3),
        ("SignIn_CL | where Bytes_d between (5.0 .. 10.0) | count", 3),
        ("SignIn_CL | where not(Result_s == 'failure') and Bytes_d > 1 | count", 1),
    ];
    for (text, expected) in cases {
        let (_, counted) = rows(&fx.engine, &request(text)).await;
        assert_eq!(counted, vec![vec![json!(expected)]], "{text}");
    }
}

#[tokio::test]
async fn project_extend_take_and_ingestion_time() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    let text = "SignIn_CL | sort by TimeGenerated asc | take 2 | extend Kb = Bytes_d / 1000, Arrived = ingestion_time() | project User_s, Kb, Arrived";
    let (columns, rows) = rows(&fx.engine, &request(text)).await;
    assert_eq!(columns.iter().map(|c| c.1).collect::<Vec<_>>(), ["string", "real", "datetime"]);
    assert_eq!(rows[0], vec![json!("alice"), json!(0.01), json!("2024-06-07T04:00:00.0000000Z")]);
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn row_cap_truncates_with_a_flag() {
    let fx = fixture(EngineOptions { max_rows: 2, ..EngineOptions::default() });
    sample(&fx.store);
    let output = fx.engine.run(&request("SignIn_CL")).await.unwrap();
    assert!(output.truncated);
    assert_eq!(output.stats.rows, 2);
}

#[tokio::test]
async fn errors_are_diagnostics_not_engine_messages() {
    let fx = fixture(EngineOptions::default());
    sample(&fx.store);
    let err = fx.engine.run(&request("SignIn_CL | where Usr_s == 'x'")).await.unwrap_err();
    let QueryError::Invalid { diagnostics } = err else { panic!("expected a diagnostic") };
    assert_eq!(diagnostics[0].message, "Failed to resolve scalar expression named 'Usr_s'");
    assert_eq!(diagnostics[0].hint.as_deref(), Some("did you mean 'User_s'?"));
    let err = fx.engine.run(&request("SigninLogz | take 1")).await.unwrap_err();
    assert!(matches!(err, QueryError::Invalid { .. }));
    let err = fx.engine.run(&request("SignIn_CL | where")).await.unwrap_err();
    let QueryError::Invalid { diagnostics } = err else { panic!("expected a diagnostic") };
    assert_eq!(diagnostics[0].kind, watchpost_diagnostics::DiagnosticKind::Syntax);
}

#[tokio::test]
async fn datatable_and_print_need_no_table() {
    let fx = fixture(EngineOptions::default());
    let text = "datatable(Name:string, Score:long)['alpha', 5, 'beta', 12] | where Score > 7";
    let (_, rows_out) = rows(&fx.engine, &request(text)).await;
    assert_eq!(rows_out, vec![vec![json!("beta"), json!(12)]]);
    let (columns, printed) = rows(&fx.engine, &request("print x = 1 + 2, 'y'")).await;
    assert_eq!(columns, vec![("x".to_string(), "long"), ("print_1".to_string(), "string")]);
    assert_eq!(printed, vec![vec![json!(3), json!("y")]]);
}

#[test]
fn long_integers_keep_their_type() {
    let array: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None]));
    assert_eq!(result::encode_cell(KqlType::Long, &array, 0), json!(7));
    assert_eq!(result::encode_cell(KqlType::Long, &array, 1), Json::Null);
}

mod dictionary;
mod dynamic_paths;
mod functions;
mod term_filters;
