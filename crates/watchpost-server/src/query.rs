//! `POST|GET /v1/workspaces/{id}/query`: the Log Analytics query API.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use subtle::ConstantTimeEq;
use watchpost_diagnostics::LineCol;
use watchpost_engine::{QueryError, QueryOutput, QueryRequest, TimeWindow};
use watchpost_metastore::Workspace;

use crate::timespan::parse_timespan;
use crate::{json_response, AppState};

const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
pub(crate) struct QueryBody {
    query: Option<String>,
    timespan: Option<String>,
    #[allow(dead_code)]
    workspaces: Option<Vec<String>>,
}

pub(crate) async fn post_query(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let workspace = match authorize(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err((status, body)) => return json_response(status, body),
    };
    let content_type = headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return bad_argument("InvalidContentType", "The request must have Content-Type: application/json");
    }
    let body: QueryBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return bad_argument("InvalidJsonBody", &format!("The request body is not valid JSON: {err}")),
    };
    run(&state, &workspace, body, &headers).await
}

pub(crate) async fn get_query(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let workspace = match authorize(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err((status, body)) => return json_response(status, body),
    };
    let body =
        QueryBody { query: params.get("query").cloned(), timespan: params.get("timespan").cloned(), workspaces: None };
    run(&state, &workspace, body, &headers).await
}

/// Checks `Authorization: Bearer <token>`: a shared key or a query key of
/// the workspace.
pub(crate) fn authorize(
    state: &AppState,
    workspace_id: &str,
    headers: &HeaderMap,
) -> Result<Workspace, (StatusCode, Json)> {
    let Some(header) = headers.get("authorization").and_then(|value| value.to_str().ok()) else {
        let message = "Authentication failed: the Authorization header is missing";
        return Err((StatusCode::UNAUTHORIZED, error_body("AuthenticationFailed", message, None)));
    };
    let Some(workspace) = state.metastore.workspace(workspace_id) else {
        let message = format!("Workspace '{workspace_id}' was not found");
        return Err((StatusCode::NOT_FOUND, error_body("WorkspaceNotFoundError", &message, None)));
    };
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim).unwrap_or("");
    if crate::tokens::looks_like_jwt(token) {
        return authorize_token(state, workspace, token);
    }
    let candidates = [&workspace.primary_key, &workspace.secondary_key].into_iter().chain(&workspace.query_keys);
    let mut matched = false;
    for candidate in candidates {
        matched |= bool::from(candidate.as_bytes().ct_eq(token.as_bytes()));
    }
    if token.is_empty() || !matched {
        let message = "The access token is not valid for this workspace";
        return Err((StatusCode::FORBIDDEN, error_body("InvalidAuthenticationToken", message, None)));
    }
    Ok(workspace)
}

/// A token from the token endpoint: valid, and its app allowed on the workspace.
fn authorize_token(state: &AppState, workspace: Workspace, token: &str) -> Result<Workspace, (StatusCode, Json)> {
    let Some(tokens) = &state.tokens else {
        let message = "This server issues no tokens";
        return Err((StatusCode::FORBIDDEN, error_body("InvalidAuthenticationToken", message, None)));
    };
    match tokens.verify(token, &state.metastore, chrono::Utc::now().timestamp()) {
        Ok(app) if app.workspaces.iter().any(|id| id == &workspace.id) => Ok(workspace),
        Ok(app) => {
            let message = format!("The app '{}' has no access to workspace {}", app.client_id, workspace.id);
            Err((StatusCode::FORBIDDEN, error_body("InsufficientAccessError", &message, None)))
        }
        Err(err) => Err((StatusCode::FORBIDDEN, error_body("InvalidAuthenticationToken", &err.to_string(), None))),
    }
}

struct Preferences {
    wait: Option<Duration>,
    include_statistics: bool,
    include_render: bool,
}

fn preferences(headers: &HeaderMap) -> Preferences {
    let mut prefs = Preferences { wait: None, include_statistics: false, include_render: false };
    for value in headers.get_all("prefer").iter().filter_map(|value| value.to_str().ok()) {
        for item in value.split([',', ';']).map(str::trim) {
            let (name, setting) = item.split_once('=').unwrap_or((item, "true"));
            match name.trim().to_ascii_lowercase().as_str() {
                "wait" => prefs.wait = setting.trim().parse::<u64>().ok().map(Duration::from_secs),
                "include-statistics" => prefs.include_statistics = setting.trim().eq_ignore_ascii_case("true"),
                "include-render" => prefs.include_render = setting.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
    }
    prefs
}

/// The query's "now": the `x-watchpost-now` header (ISO 8601) when given,
/// so tests and rule runs can pin it, else the clock.
fn query_now(headers: &HeaderMap) -> Option<i64> {
    let Some(value) = headers.get("x-watchpost-now").and_then(|value| value.to_str().ok()) else {
        return Some(chrono::Utc::now().timestamp_nanos_opt().expect("the clock is before 2262"));
    };
    chrono::DateTime::parse_from_rfc3339(value.trim()).ok().and_then(|time| time.timestamp_nanos_opt())
}

async fn run(state: &AppState, workspace: &Workspace, body: QueryBody, headers: &HeaderMap) -> Response {
    let (status, body) = run_query(state, workspace, body, headers).await;
    json_response(status, body)
}

/// Runs one query and returns the status and body of its answer.
async fn run_query(
    state: &AppState,
    workspace: &Workspace,
    body: QueryBody,
    headers: &HeaderMap,
) -> (StatusCode, Json) {
    let Some(text) = body.query.filter(|text| !text.trim().is_empty()) else {
        return bad_argument_body("MissingQuery", "The request has no 'query'");
    };
    let Some(now_ns) = query_now(headers) else {
        return bad_argument_body("InvalidNow", "x-watchpost-now must be an ISO 8601 date-time");
    };
    let window: Option<TimeWindow> = match body.timespan.as_deref().map(|text| parse_timespan(text, now_ns)) {
        None => None,
        Some(Ok(window)) => Some(window),
        Some(Err(message)) => return bad_argument_body("InvalidTimespan", &message),
    };
    if watchpost_control::is_command(&text) {
        let access = crate::management::access_of(workspace, headers);
        let control = state.control.clone();
        let workspace_id = workspace.id.clone();
        // Commands may rewrite the metastore or catalogue files (fsync).
        let result = tokio::task::spawn_blocking(move || control.run_command(&workspace_id, &text, access)).await;
        return match result {
            Ok(Ok(result)) => (StatusCode::OK, crate::management::command_body(&result)),
            Ok(Err(err)) => crate::management::control_error_body(&err),
            Err(join_error) => {
                tracing::error!(error = %join_error, "ControlCommandFailed");
                (StatusCode::INTERNAL_SERVER_ERROR, error_body("InternalServerError", "internal error", None))
            }
        };
    }
    let prefs = preferences(headers);
    let timeout = prefs.wait.map(|wait| wait.min(MAX_WAIT)).unwrap_or(state.options.query_timeout);
    let request = QueryRequest { workspace: workspace.id.clone(), text: text.clone(), window, now_ns, timeout };
    match state.engine.run(&request).await {
        Ok(output) => (StatusCode::OK, success(&output, &prefs, state.engine.max_rows())),
        Err(QueryError::Invalid { diagnostics }) => {
            let first = &diagnostics[0];
            let position = LineCol::locate(&text, first.span.start as usize);
            let message = match &first.hint {
                Some(hint) => format!("{} ({hint})", first.message),
                None => first.message.clone(),
            };
            let details: Vec<Json> = diagnostics
                .iter()
                .map(|diagnostic| json!({"code": diagnostic.code, "message": diagnostic.render(&text), "target": "query"}))
                .collect();
            let inner = json!({
                "code": first.kind.api_code(),
                "message": message,
                "line": position.line,
                "pos": position.column,
                "token": first.span.text(&text),
            });
            let body = json!({"error": {
                "code": "BadArgumentError",
                "message": "The request had some invalid properties",
                "innererror": inner,
                "details": details,
            }});
            (StatusCode::BAD_REQUEST, body)
        }
        Err(QueryError::Timeout(limit)) => (
            StatusCode::GATEWAY_TIMEOUT,
            error_body("GatewayTimeout", &format!("The query did not finish within {} seconds", limit.as_secs()), None),
        ),
        Err(QueryError::Execution(detail)) => {
            tracing::warn!(query = %text, error = %detail, "QueryExecutionError");
            let inner = json!({"code": "QueryExecutionError", "message": detail});
            (StatusCode::BAD_REQUEST, error_body("BadArgumentError", "The query could not be executed", Some(inner)))
        }
    }
}

fn success(output: &QueryOutput, prefs: &Preferences, max_rows: usize) -> Json {
    let columns: Vec<Json> =
        output.columns.iter().map(|column| json!({"name": column.name, "type": column.kql_type.name()})).collect();
    let rows = output.json_rows();
    let mut body = json!({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]});
    if let Some(render) = output.render.as_ref().filter(|_| prefs.include_render) {
        body["render"] = render.to_json();
    }
    if prefs.include_statistics {
        body["statistics"] = json!({"query": {
            "executionTime": output.stats.execution_time.as_secs_f64(),
            "resourceUsage": {"rowsReturned": output.stats.rows},
            "datasetStatistics": [{"tableRowCount": output.stats.rows}],
            "segmentsScanned": output.stats.segments_scanned,
            "segmentsPruned": output.stats.segments_pruned,
        }});
    }
    if output.truncated {
        body["error"] = json!({
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [{"code": "EngineError", "message": format!("Query result set has exceeded the internal record count limit {max_rows} records. The result was truncated."), "target": "query"}],
        });
    }
    body
}

fn bad_argument(code: &str, message: &str) -> Response {
    let (status, body) = bad_argument_body(code, message);
    json_response(status, body)
}

fn bad_argument_body(code: &str, message: &str) -> (StatusCode, Json) {
    let inner = json!({"code": code, "message": message});
    (StatusCode::BAD_REQUEST, error_body("BadArgumentError", message, Some(inner)))
}

/// An error body in the OneAPI shape.
fn error_body(code: &str, message: &str, inner: Option<Json>) -> Json {
    let mut error = json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = inner;
    }
    json!({ "error": error })
}

/// An error response in the OneAPI shape.
pub(crate) fn api_error(status: StatusCode, code: &str, message: &str, inner: Option<Json>) -> Response {
    json_response(status, error_body(code, message, inner))
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchBody {
    requests: Vec<BatchMember>,
}

#[derive(Debug, Deserialize)]
struct BatchMember {
    id: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    body: Option<QueryBody>,
    method: Option<String>,
    path: Option<String>,
    workspace: String,
}

/// `POST /v1/$batch`: several queries in one request; each member is
/// authorized and answered on its own, in the order given.
pub(crate) async fn post_batch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("authorization").is_none() {
        let message = "Authentication failed: the Authorization header is missing";
        return api_error(StatusCode::UNAUTHORIZED, "AuthenticationFailed", message, None);
    }
    let batch: BatchBody = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(err) => return bad_argument("InvalidJsonBody", &format!("The batch body is not valid: {err}")),
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = batch.requests.iter().find(|member| !seen.insert(member.id.as_str())) {
        return bad_argument("DuplicateRequestId", &format!("The batch repeats the id '{}'", duplicate.id));
    }
    let mut responses = Vec::new();
    for mut member in batch.requests {
        let body = member.body.take();
        let (status, body) = run_member(&state, &headers, body, &member).await;
        responses.push(json!({"id": member.id, "status": status.as_u16(), "body": body}));
    }
    json_response(StatusCode::OK, json!({ "responses": responses }))
}

async fn run_member(
    state: &AppState,
    outer_headers: &HeaderMap,
    body: Option<QueryBody>,
    member: &BatchMember,
) -> (StatusCode, Json) {
    let method = member.method.as_deref().unwrap_or("GET");
    if !method.eq_ignore_ascii_case("POST") || member.path.as_deref().unwrap_or("/query") != "/query" {
        return (StatusCode::NOT_FOUND, error_body("PathNotFoundError", "The requested path does not exist", None));
    }
    let workspace = match authorize(state, &member.workspace, outer_headers) {
        Ok(workspace) => workspace,
        Err(answer) => return answer,
    };
    let mut headers = outer_headers.clone();
    headers.remove("prefer");
    for (name, value) in &member.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name.as_str()), axum::http::HeaderValue::from_str(value))
        {
            headers.insert(name, value);
        }
    }
    let Some(body) = body else {
        return bad_argument_body("MissingQuery", "The batch member has no body");
    };
    run_query(state, &workspace, body, &headers).await
}
