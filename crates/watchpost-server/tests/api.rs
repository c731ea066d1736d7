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
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert!(response.headers().contains_key("x-ms-request-id"), "every response has a request id");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap() };
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
