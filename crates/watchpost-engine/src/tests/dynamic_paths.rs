//! Dynamic property paths over a stored JSON string column, as benchmark
//! query q10 uses them: results, and what the physical plan runs per row.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use serde_json::json;
use watchpost_schema::{ColumnDef, KqlType, TableSchema};
use watchpost_storage::{AppendRequest, Store};

use super::{append_signins, fixture, physical_plan, request, rows, T0, WS};
use crate::EngineOptions;

const Q10: &str = r#"Events
| extend AF = parse_json(AdditionalFields)
| where tostring(AF.RiskLevel) in ("medium", "high")
| summarize Count = count() by Method = tostring(AF.Authentication.Method), OS = tostring(AF.Device.OS)
| order by Count desc, Method asc, OS asc"#;

/// Appends `Events` rows holding the given `AdditionalFields` texts.
fn append_events(store: &Store, additional_fields: &[&str]) {
    let schema = TableSchema::new(vec![
        ColumnDef::new("TimeGenerated", KqlType::Datetime),
        ColumnDef::new("AdditionalFields", KqlType::String),
        ColumnDef::new("_TimeReceived", KqlType::Datetime),
    ]);
    let n_rows = additional_fields.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(vec![T0; n_rows]).with_timezone("UTC")),
        Arc::new(StringArray::from(additional_fields.to_vec())),
        Arc::new(TimestampNanosecondArray::from(vec![T0; n_rows]).with_timezone("UTC")),
    ];
    let batch = RecordBatch::try_new(schema.arrow_schema(), columns).unwrap();
    let request =
        AppendRequest { workspace: WS.into(), table: "Events".into(), idempotency_key: None, received_ns: 0, batch };
    store.append(request).unwrap();
}

/// An `AdditionalFields` text shaped like the benchmark's, keys unsorted.
fn af(os: &str, method: &str, risk: &str) -> String {
    format!(
        r#"{{"Device":{{"OS":"{os}","TrustType":"AzureAd","IsCompliant":true}},"Authentication":{{"Method":"{method}","Requirement":"singleFactor"}},"RiskLevel":"{risk}","CorrelationId":"ab-cd"}}"#
    )
}

#[tokio::test]
async fn q10_counts_by_nested_properties() {
    let fx = fixture(EngineOptions::default());
    let texts = [
        af("Windows", "Password", "high"),
        af("Windows", "Password", "medium"),
        af("Linux", "FIDO2", "low"),
        af("Linux", "FIDO2", "high"),
        r#"{"RiskLevel":"high"}"#.to_string(),
        "not json".to_string(),
    ];
    append_events(&fx.store, &texts.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, counted) = rows(&fx.engine, &request(Q10)).await;
    assert_eq!(
        counted,
        vec![
            vec![json!("Password"), json!("Windows"), json!(2)],
            vec![json!(""), json!(""), json!(1)],
            vec![json!("FIDO2"), json!("Linux"), json!(1)],
        ]
    );
}

/// Per row, q10 only follows paths over the stored text: no `parse_json`,
/// no `tostring`, no tree.
#[tokio::test]
async fn q10_reads_paths_on_the_stored_text() {
    let fx = fixture(EngineOptions::default());
    append_events(&fx.store, &[&af("Windows", "Password", "high")]);
    fx.store.flush().unwrap();
    append_events(&fx.store, &[&af("Linux", "FIDO2", "medium")]);
    let plan = physical_plan(&fx.engine, &request(Q10)).await;
    assert!(plan.contains("FilterExec: dynamic_get_text(AdditionalFields@0, RiskLevel) IN"), "{plan}");
    assert!(plan.contains("dynamic_get_text(AF@0, Authentication, Method) as Method"), "{plan}");
    assert!(plan.contains("dynamic_get_text(AF@0, Device, OS) as OS"), "{plan}");
    assert!(plan.contains("ProjectionExec: expr=[AdditionalFields@0 as AF]"), "{plan}");
    assert!(!plan.contains("parse_json") && !plan.contains("tostring"), "{plan}");
}

/// A parsed column that is also used whole stays parsed; comparisons read
/// paths as text too.
#[tokio::test]
async fn a_parsed_column_used_whole_stays_parsed() {
    let fx = fixture(EngineOptions::default());
    append_events(&fx.store, &[r#"{"b":1,"a":"x"}"#, r#"{"a":"y"}"#]);
    let text = r#"Events
        | extend AF = parse_json(AdditionalFields)
        | where AF.a == "x"
        | summarize by m = tostring(AF.a), whole = tostring(AF)"#;
    let (_, found) = rows(&fx.engine, &request(text)).await;
    assert_eq!(found, vec![vec![json!("x"), json!(r#"{"a":"x","b":1}"#)]]);
    let plan = physical_plan(&fx.engine, &request(text)).await;
    assert!(plan.contains("FilterExec: dynamic_get_text(AdditionalFields@0, a) = x"), "{plan}");
    assert!(plan.contains("parse_json(AdditionalFields@0) as AF"), "{plan}");
    assert!(plan.contains("dynamic_get_text(AF@0, a) as m, tostring(AF@0) as whole"), "{plan}");
}

/// Two paths in one `where` still read the stored text: the fusion runs
/// before common subexpression elimination could pull the shared
/// `parse_json` out into a projection of its own.
#[tokio::test]
async fn two_paths_in_one_where_read_the_text() {
    let fx = fixture(EngineOptions::default());
    append_events(&fx.store, &[&af("Windows", "Password", "high"), &af("Linux", "Password", "high")]);
    let text = r#"Events
        | extend AF = parse_json(AdditionalFields)
        | where tostring(AF.RiskLevel) == "high" and tostring(AF.Device.OS) == "Windows"
        | count"#;
    let (_, counted) = rows(&fx.engine, &request(text)).await;
    assert_eq!(counted, vec![vec![json!(1)]]);
    let plan = physical_plan(&fx.engine, &request(text)).await;
    assert!(!plan.contains("parse_json"), "{plan}");
}

/// A wide `arg_max(T, *)` is read late: a semi join against each group's
/// extreme key narrows the input first, unless a `take` below it could
/// give the two passes different rows.
#[tokio::test]
async fn wide_arg_max_keeps_only_winning_rows_before_aggregating() {
    let fx = fixture(EngineOptions::default());
    let wide = "datatable(H:string, T:long, A:string, B:long, C:real)\
                [\"h1\",1,\"x\",1,1.0,\"h1\",2,\"y\",2,2.0,\"h2\",7,\"z\",3,3.0]";
    let late = format!("{wide} | summarize arg_max(T, *) by H");
    let plan = physical_plan(&fx.engine, &request(&late)).await;
    assert!(plan.contains("RightSemi"), "expected a semi join in:\n{plan}");
    let (_, got) = rows(&fx.engine, &request(&format!("{late} | order by H asc"))).await;
    assert_eq!(
        got,
        vec![
            vec![json!("h1"), json!(2), json!("y"), json!(2), json!(2.0)],
            vec![json!("h2"), json!(7), json!("z"), json!(3), json!(3.0)]
        ]
    );
    let sampled = format!("{wide} | take 2 | summarize arg_max(T, *) by H");
    let plan = physical_plan(&fx.engine, &request(&sampled)).await;
    assert!(!plan.contains("RightSemi"), "no late read below a take:\n{plan}");
    let narrow = format!("{wide} | summarize arg_max(T, A) by H");
    let plan = physical_plan(&fx.engine, &request(&narrow)).await;
    assert!(!plan.contains("RightSemi"), "no late read for two columns:\n{plan}");
}

/// The late read's semi join builds one table of the winners for every
/// probe partition instead of repartitioning the stored input by hash.
#[tokio::test]
async fn late_read_of_stored_rows_builds_the_winners_once() {
    let fx = fixture(EngineOptions::default());
    append_signins(
        &fx.store,
        &[(1, "alice", "failure", 10.0), (2, "alice", "success", 20.0), (3, "bob", "failure", 5.0)],
    );
    fx.store.flush().unwrap();
    let text = "SignIn_CL | summarize arg_max(TimeGenerated, *) by User_s";
    let plan = physical_plan(&fx.engine, &request(text)).await;
    assert!(plan.contains("RightSemi") && plan.contains("mode=CollectLeft"), "{plan}");
    let (_, got) =
        rows(&fx.engine, &request(&format!("{text} | order by User_s asc | project User_s, Result_s"))).await;
    assert_eq!(got, vec![vec![json!("alice"), json!("success")], vec![json!("bob"), json!("failure")]]);
}
