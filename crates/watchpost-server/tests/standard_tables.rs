//! The Data Collector API's `x-watchpost-standard-table` header (Watchpost
//! rule): rows go into the standard table `Log-Type` names, with its
//! declared column types, or the whole batch is refused. Driven through the
//! router with `oneshot` and read back through the query API.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use tower::ServiceExt;
use watchpost_engine::{EngineOptions, QueryEngine};
use watchpost_metastore::Metastore;
use watchpost_server::{router, AppState, ServerOptions};
use watchpost_storage::{Store, StoreOptions};

const WS: &str = "3d1c5e2a-0000-4000-8000-0000000000bb";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

struct App {
    _dir: tempfile::TempDir,
    router: axum::Router,
}

fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let metastore = Arc::new(Metastore::open(dir.path()).unwrap());
    metastore.ensure_workspace(Some(WS), Some(KEY)).unwrap();
    let store =
        Arc::new(Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    let engine = QueryEngine::new(store.clone(), EngineOptions::default());
    let state = AppState::new(metastore, store, engine, ServerOptions::default());
    App { _dir: dir, router: router(state) }
}

async fn call(app: &App, request: Request<Body>) -> (StatusCode, Json) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, body)
}

/// A signed Data Collector post; `headers` are added as given.
fn post_logs(log_type: &str, headers: &[(&str, &str)], body: &Json) -> Request<Body> {
    let body = body.to_string();
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let key = base64::engine::general_purpose::STANDARD.decode(KEY).unwrap();
    let authorization =
        watchpost_ingest::data_collector::authorization(WS, &key, body.len(), "application/json", &date);
    let mut builder = Request::post("/api/logs?api-version=2016-04-01")
        .header("content-type", "application/json")
        .header("log-type", log_type)
        .header("x-ms-date", date)
        .header("authorization", authorization);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body)).unwrap()
}

/// Runs a query; returns the status and the first table (or the error).
async fn query(app: &App, kql: &str) -> (StatusCode, Json) {
    let request = Request::post(format!("/v1/workspaces/{WS}/query"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(json!({ "query": kql }).to_string()))
        .unwrap();
    let (status, answer) = call(app, request).await;
    if status != StatusCode::OK {
        return (status, answer);
    }
    (status, answer["tables"][0].clone())
}

async fn count(app: &App, table: &str) -> i64 {
    let (status, table) = query(app, &format!("{table} | count")).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    table["rows"][0][0].as_i64().unwrap()
}

const STANDARD: (&str, &str) = ("x-watchpost-standard-table", "true");

#[tokio::test]
async fn the_header_writes_syslog_rows_with_typed_columns_exactly_once() {
    let app = app();
    let now = chrono::Utc::now();
    let collected = (now - chrono::Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!([
        {"TimeCollected": collected, "EventTime": "2026-11-29T03:14:27Z", "Computer": "web1", "HostName": "web1",
         "Facility": "authpriv", "SeverityLevel": "info", "SyslogMessage": "a pam", "ProcessID": 4242,
         "ProcessName": "sudo", "HostIP": "127.0.0.1", "CollectorHostName": "collector", "SourceSystem": "Linux"},
        {"SyslogMessage": "b plain", "Facility": "local4", "SeverityLevel": "warning", "ProcessID": "7"}
    ]);
    let headers = [STANDARD, ("time-generated-field", "TimeCollected"), ("idempotency-key", "batch-1")];
    let (status, answer) = call(&app, post_logs("Syslog", &headers, &body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let kql = "Syslog | sort by SyslogMessage asc | project SyslogMessage, Facility, SeverityLevel, ProcessID, \
               ProcessName, HostName, EventTime, TimeGenerated, TimeCollected, Type, TenantId, SourceSystem";
    let (status, table) = query(&app, kql).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    let types: Vec<(&str, &str)> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| (column["name"].as_str().unwrap(), column["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("SyslogMessage", "string"),
            ("Facility", "string"),
            ("SeverityLevel", "string"),
            ("ProcessID", "int"),
            ("ProcessName", "string"),
            ("HostName", "string"),
            ("EventTime", "datetime"),
            ("TimeGenerated", "datetime"),
            ("TimeCollected", "datetime"),
            ("Type", "string"),
            ("TenantId", "string"),
            ("SourceSystem", "string"),
        ]
    );
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let first = rows[0].as_array().unwrap();
    assert_eq!(
        first[..6],
        [json!("a pam"), json!("authpriv"), json!("info"), json!(4242), json!("sudo"), json!("web1")]
    );
    assert!(first[6].as_str().unwrap().starts_with("2026-11-29T03:14:27"), "{first:?}");
    let time_generated = first[7].as_str().unwrap();
    assert!(
        time_generated.starts_with(&collected[..19]),
        "TimeGenerated {time_generated} from TimeCollected {collected}"
    );
    assert_eq!(first[7], first[8]);
    assert_eq!(first[9..], [json!("Syslog"), json!(WS), json!("Linux")]);
    let second = rows[1].as_array().unwrap();
    assert_eq!((&second[0], &second[3], &second[4]), (&json!("b plain"), &json!(7), &Json::Null));
    assert_eq!(second[11], json!("RestAPI"));

    // The same idempotency key stores nothing twice; nothing went to a _CL table.
    let (status, _) = call(&app, post_logs("Syslog", &headers, &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&app, "Syslog").await, 2);
    assert_ne!(query(&app, "Syslog_CL | count").await.0, StatusCode::OK, "no Syslog_CL table");
}

#[tokio::test]
async fn an_unknown_property_or_a_bad_value_refuses_the_whole_batch() {
    let app = app();
    let body = json!([{"SyslogMessage": "fine"}, {"SyslogMessage": "also fine", "Bogus": 1}]);
    let (status, answer) = call(&app, post_logs("Syslog", &[STANDARD], &body)).await;
    assert_eq!((status, answer["Error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidDataFormat")), "{answer}");
    assert!(answer["Message"].as_str().unwrap().contains("`Bogus`"), "{answer}");
    let body = json!([{"SyslogMessage": "fine"}, {"ProcessID": "seven"}]);
    let (status, answer) = call(&app, post_logs("Syslog", &[STANDARD], &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["Message"].as_str().unwrap().contains("`ProcessID`"), "{answer}");
    assert_eq!(count(&app, "Syslog").await, 0, "nothing of a refused batch is stored");

    // CommonSecurityLog and Heartbeat take their own columns, and a time
    // field that is no column of theirs only sets TimeGenerated.
    let body = json!({"TimeCollected": chrono::Utc::now().to_rfc3339(), "DeviceVendor": "V", "SourcePort": 443,
                      "ReceivedBytes": 5_000_000_000_i64, "RemotePort": 443});
    let headers = [STANDARD, ("time-generated-field", "TimeCollected")];
    assert_eq!(call(&app, post_logs("CommonSecurityLog", &headers, &body)).await.0, StatusCode::OK);
    let (_, table) =
        query(&app, "CommonSecurityLog | project DeviceVendor, SourcePort, ReceivedBytes, RemotePort").await;
    assert_eq!(table["rows"], json!([["V", 443, 5_000_000_000_i64, "443"]]));
    let body = json!({"TimeCollected": chrono::Utc::now().to_rfc3339(), "Computer": "c", "Category": "Direct Agent"});
    assert_eq!(call(&app, post_logs("Heartbeat", &headers, &body)).await.0, StatusCode::OK);
    assert_eq!(count(&app, "Heartbeat | where Computer == 'c' and Category == 'Direct Agent'").await, 1);
}

#[tokio::test]
async fn a_log_type_that_is_no_standard_table_is_refused() {
    let app = app();
    let body = json!({"Message": "x"});
    for log_type in ["NotAStandardTable", "syslog"] {
        let (status, answer) = call(&app, post_logs(log_type, &[STANDARD], &body)).await;
        assert_eq!((status, answer["Error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidLogType")), "{answer}");
        assert!(answer["Message"].as_str().unwrap().contains("is not a standard table"), "{answer}");
    }
    let (status, answer) = call(&app, post_logs("Syslog", &[("x-watchpost-standard-table", "yes")], &body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_ne!(query(&app, "NotAStandardTable_CL | count").await.0, StatusCode::OK, "nothing was stored");
}

#[tokio::test]
async fn without_the_header_rows_go_to_the_custom_table_as_before() {
    let app = app();
    let body = json!({"SyslogMessage": "custom", "ProcessID": 12});
    for headers in [&[][..], &[("x-watchpost-standard-table", "false")][..]] {
        let (status, answer) = call(&app, post_logs("Syslog", headers, &body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, table) = query(&app, "Syslog_CL | project SyslogMessage_s, ProcessID_d, Type").await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(table["rows"], json!([["custom", 12.0, "Syslog_CL"], ["custom", 12.0, "Syslog_CL"]]));
    assert_eq!(count(&app, "Syslog").await, 0);
}
