//! In-process API scenarios: the router driven with `oneshot`, no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use tower::ServiceExt;
use watchpost_engine::{EngineOptions, QueryEngine};
use watchpost_metastore::Metastore;
use watchpost_server::{router, AppState, ServerOptions};
use watchpost_storage::{Store, StoreOptions};

const WS: &str = "3d1c5e2a-0000-4000-8000-0000000000aa";
const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";

struct App {
    _dir: tempfile::TempDir,
    router: axum::Router,
    query_key: String,
}

fn app(max_rows: usize) -> App {
    let dir = tempfile::tempdir().unwrap();
    let metastore = Arc::new(Metastore::open(dir.path()).unwrap());
    metastore.ensure_workspace(Some(WS), Some(KEY)).unwrap();
    let query_key = metastore.add_query_key(WS).unwrap();
    let store =
        Arc::new(Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    let engine = QueryEngine::new(store.clone(), EngineOptions { max_rows, ..EngineOptions::default() });
    let state = AppState::new(metastore, store, engine, ServerOptions::default());
    App { _dir: dir, router: router(state), query_key }
}

async fn call(app: &App, request: Request<Body>) -> (StatusCode, Json) {
    let (status, _, body) = send(&app.router, request).await;
    (status, body)
}

fn query_request(path: &str, token: Option<&str>, body: Json) -> Request<Body> {
    let mut builder = Request::post(path).header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn query_keys_and_shared_keys_are_accepted_others_are_not() {
    let app = app(100);
    let path = format!("/v1/workspaces/{WS}/query");
    let body = json!({"query": "print n = 1"});
    let (status, answer) = call(&app, query_request(&path, Some(&app.query_key), body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["tables"][0]["rows"], json!([[1]]));
    assert_eq!(call(&app, query_request(&path, Some(KEY), body.clone())).await.0, StatusCode::OK);
    let (status, answer) = call(&app, query_request(&path, Some("wrong"), body.clone())).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("InvalidAuthenticationToken")));
    let (status, answer) = call(&app, query_request(&path, None, body.clone())).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("AuthenticationFailed")));
    let other = "/v1/workspaces/00000000-0000-4000-8000-000000000000/query";
    let (status, answer) = call(&app, query_request(other, Some(KEY), body)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("WorkspaceNotFoundError")));
}

#[tokio::test]
async fn row_cap_returns_a_partial_result() {
    let app = app(2);
    let path = format!("/v1/workspaces/{WS}/query");
    let body = json!({"query": "datatable(n:long)[1, 2, 3, 4]"});
    let (status, answer) = call(&app, query_request(&path, Some(KEY), body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["tables"][0]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(answer["error"]["code"], "PartialError");
}

#[tokio::test]
async fn batch_answers_each_member_on_its_own() {
    let app = app(100);
    let requests = json!({"requests": [
        {"id": "a", "headers": {"Prefer": "include-statistics=true"}, "body": {"query": "print x = 'a'", "timespan": null, "workspaces": null}, "method": "POST", "path": "/query", "workspace": WS},
        {"id": "b", "headers": {"Prefer": ""}, "body": {"query": "print x = ", "timespan": null}, "method": "POST", "path": "/query", "workspace": WS},
        {"id": "c", "body": {"query": "print 1"}, "method": "POST", "path": "/query", "workspace": "00000000-0000-4000-8000-000000000000"},
        {"id": "d", "body": {"query": "print 1"}, "method": "POST", "path": "/nope", "workspace": WS},
    ]});
    let (status, answer) = call(&app, query_request("/v1/$batch", Some(KEY), requests)).await;
    assert_eq!(status, StatusCode::OK);
    let responses = answer["responses"].as_array().unwrap();
    let by_id = |id: &str| responses.iter().find(|member| member["id"] == id).unwrap().clone();
    assert_eq!(by_id("a")["status"], 200);
    assert_eq!(by_id("a")["body"]["tables"][0]["rows"], json!([["a"]]));
    assert!(by_id("a")["body"]["statistics"].is_object());
    assert_eq!(by_id("b")["status"], 400);
    assert_eq!(by_id("b")["body"]["error"]["innererror"]["code"], "SyntaxError");
    assert_eq!(by_id("c")["status"], 404);
    assert_eq!(by_id("d")["status"], 404);

    let duplicate = json!({"requests": [
        {"id": "a", "body": {"query": "print 1"}, "method": "POST", "path": "/query", "workspace": WS},
        {"id": "a", "body": {"query": "print 1"}, "method": "POST", "path": "/query", "workspace": WS},
    ]});
    assert_eq!(call(&app, query_request("/v1/$batch", Some(KEY), duplicate)).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_paths_get_the_oneapi_not_found() {
    let app = app(100);
    let request = Request::get("/v2/nothing").body(Body::empty()).unwrap();
    let (status, answer) = call(&app, request).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("PathNotFoundError")));
}

#[tokio::test]
async fn query_without_json_content_type_is_a_bad_argument() {
    let app = app(100);
    let request = Request::post(format!("/v1/workspaces/{WS}/query"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from("query=print 1"))
        .unwrap();
    let (status, answer) = call(&app, request).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadArgumentError")));
}

#[tokio::test]
async fn render_goes_back_only_when_asked_for() {
    let app = app(100);
    let path = format!("/v1/workspaces/{WS}/query");
    let body = json!({"query": "range x from 1 to 2 step 1 | sort by x asc | render timechart with (title = 'Hits', ycolumns = x)"});
    let mut request = query_request(&path, Some(KEY), body.clone());
    request.headers_mut().insert("prefer", "include-render=true".parse().unwrap());
    let (status, answer) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["tables"][0]["rows"], json!([[1], [2]]));
    assert_eq!(answer["render"]["visualization"], "timechart");
    assert_eq!(answer["render"]["title"], "Hits");
    assert_eq!(answer["render"]["ycolumns"], "x");
    assert_eq!(answer["render"]["isQuerySorted"], true);
    assert_eq!(answer["render"]["kind"], "default");
    let (_, answer) = call(&app, query_request(&path, Some(KEY), body)).await;
    assert!(answer.get("render").is_none());
}

/// The state of a server over `dir`, with `geo` as its GeoIP database.
fn state_over(dir: &std::path::Path, geo: Option<Arc<watchpost_geo::GeoDb>>) -> AppState {
    let metastore = Arc::new(Metastore::open(dir).unwrap());
    metastore.ensure_workspace(Some(WS), Some(KEY)).unwrap();
    let store = Arc::new(Store::open(dir, StoreOptions { wal_fsync: false, ..StoreOptions::default() }).unwrap());
    let engine = QueryEngine::new(store.clone(), EngineOptions { geo, ..EngineOptions::default() });
    AppState::new(metastore, store, engine, ServerOptions::default())
}

/// Runs `request`; every response must carry a request id.
async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Json) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    assert!(headers.contains_key("x-ms-request-id"), "every response has a request id");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, headers, body)
}

fn with_key(builder: axum::http::request::Builder, body: Json) -> Request<Body> {
    builder
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A transform enriches rows with `geo_location` from the server's GeoIP
/// database; the rule's health record (what was dropped) survives a
/// restart of the server.
#[tokio::test]
async fn transforms_geolocate_and_rule_health_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = watchpost_geo::GeoDb::from_bytes(watchpost_geo::testing::sample_database(), "sample").unwrap();
    let state = state_over(dir.path(), Some(Arc::new(db)));
    let app = router(state.clone());
    let rule = json!({"properties": {
        "streamDeclarations": {"Custom-Conn": {"columns": [{"name": "Ip", "type": "string"}]}},
        "destinations": {"logAnalytics": [{"name": "here"}]},
        "dataFlows": [{
            "streams": ["Custom-Conn"], "destinations": ["here"], "outputStream": "Custom-Conn_CL",
            "transformKql": "source | extend TimeGenerated = now(), Geo = geo_location(Ip) | project TimeGenerated, Ip, Country = tostring(Geo.country), City = tostring(Geo.city), Region = tostring(Geo.region)"
        }]
    }});
    let path = format!("/v1/workspaces/{WS}/dataCollectionRules/geo");
    let (status, _, created) = send(&app, with_key(Request::put(&path), rule)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let immutable_id = created["properties"]["immutableId"].as_str().unwrap().to_string();

    let rows = json!([{"Ip": "20.53.203.50", "Port": 443}, {"Ip": "10.0.0.1"}]);
    let stream = format!("/dataCollectionRules/{immutable_id}/streams/Custom-Conn?api-version=2023-01-01");
    let (status, headers, _) = send(&app, with_key(Request::post(&stream), rows)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["x-watchpost-dropped-columns"], "Port=1");

    let query = json!({"query": "Conn_CL | order by Ip asc | project Ip, Country, City, Region"});
    let (status, _, answer) =
        send(&app, with_key(Request::post(format!("/v1/workspaces/{WS}/query")), query.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["tables"][0]["rows"],
        json!([["10.0.0.1", "", "", ""], ["20.53.203.50", "Australia", "Sydney", "Oceania"]])
    );

    assert!(state.save_rule_health().unwrap());
    drop((app, state));
    let restarted = router(state_over(dir.path(), None));
    let (status, _, health) = send(&restarted, with_key(Request::get(format!("{path}/health")), Json::Null)).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["requests"], 1);
    assert_eq!(health["recordsReceived"], 2);
    assert_eq!(health["rowsStored"], 2);
    assert_eq!(health["droppedColumns"]["Port"]["records"], 1);
    assert_eq!(health["droppedColumns"]["Port"]["stream"], "Custom-Conn");

    // Requests naming a rule that does not exist leave no record behind.
    let unknown =
        "/dataCollectionRules/dcr-00000000000000000000000000000000/streams/Custom-Conn?api-version=2023-01-01";
    let (status, _, _) = send(&restarted, with_key(Request::post(unknown), json!([]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let saved = std::fs::read_to_string(dir.path().join(watchpost_server::dcr_health::FILE_NAME)).unwrap();
    assert!(!saved.contains("dcr-0000"), "{saved}");
}
