//! The management API: saved functions (`/v1/workspaces/{id}/functions`)
//! and tables (`/v1/workspaces/{id}/tables`), and control commands sent to
//! the query endpoint. The rules are in `watchpost-control`; this module
//! translates HTTP to it and its errors back to OneAPI error bodies.
//!
//! Reading needs a shared key or a query key; changing needs a shared key.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value as Json};
use subtle::ConstantTimeEq;
use watchpost_control::functions::{function_json, FunctionSpec};
use watchpost_control::tables::{table_json, TableSpec};
use watchpost_control::{Access, CommandResult, ControlError, ControlErrorKind};
use watchpost_metastore::{SaveMode, Workspace};

use crate::query::{api_error, authorize};
use crate::{json_response, AppState};

/// Authorizes the request and says what its key allows; the error is the
/// response to send.
fn authorize_access(
    state: &AppState,
    workspace: &str,
    headers: &HeaderMap,
) -> Result<(Workspace, Access), Box<Response>> {
    let workspace =
        authorize(state, workspace, headers).map_err(|(status, body)| Box::new(json_response(status, body)))?;
    let access = access_of(&workspace, headers);
    Ok((workspace, access))
}

/// A shared key may change the workspace; a query key may only read it.
pub(crate) fn access_of(workspace: &Workspace, headers: &HeaderMap) -> Access {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|header| header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    let mut shared = false;
    for key in [&workspace.primary_key, &workspace.secondary_key] {
        shared |= bool::from(key.as_bytes().ct_eq(token.as_bytes()));
    }
    if shared {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    }
}

/// The OneAPI error response for a management failure.
pub(crate) fn control_error(err: &ControlError) -> Response {
    let (status, body) = control_error_body(err);
    json_response(status, body)
}

/// The status and OneAPI body for a management failure.
pub(crate) fn control_error_body(err: &ControlError) -> (StatusCode, Json) {
    let (status, code) = match err.kind() {
        ControlErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "BadArgumentError"),
        ControlErrorKind::NotFound => (StatusCode::NOT_FOUND, "NotFoundError"),
        ControlErrorKind::Conflict => (StatusCode::CONFLICT, "ConflictError"),
        ControlErrorKind::Forbidden => (StatusCode::FORBIDDEN, "InsufficientAccessError"),
        ControlErrorKind::Internal => {
            tracing::error!(error = %err, "ManagementRequestFailed");
            let body = json!({"error": {"code": "InternalServerError", "message": "internal error"}});
            return (StatusCode::INTERNAL_SERVER_ERROR, body);
        }
    };
    (status, json!({"error": {"code": code, "message": err.to_string()}}))
}

/// A control command's answer in the query API's shape.
pub(crate) fn command_body(result: &CommandResult) -> Json {
    let columns: Vec<Json> =
        result.columns.iter().map(|(name, kql_type)| json!({"name": name, "type": kql_type.name()})).collect();
    json!({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": result.rows}]})
}

fn parse_body(body: &Bytes) -> Result<Json, Box<Response>> {
    serde_json::from_slice(body).map_err(|err| {
        let message = format!("The request body is not valid JSON: {err}");
        Box::new(api_error(StatusCode::BAD_REQUEST, "BadArgumentError", &message, None))
    })
}

pub(crate) async fn list_functions(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (workspace, _) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    let value: Vec<Json> = state.control.functions(&workspace.id).iter().map(function_json).collect();
    json_response(StatusCode::OK, json!({ "value": value }))
}

pub(crate) async fn get_function(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (workspace, _) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    match state.control.function(&workspace.id, &name) {
        Ok(function) => json_response(StatusCode::OK, function_json(&function)),
        Err(err) => control_error(&err),
    }
}

/// `PUT`: creates (201) or replaces (200) a function.
pub(crate) async fn put_function(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (workspace, access) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let saved = FunctionSpec::from_json(&name, &body)
        .and_then(|spec| state.control.save_function(&workspace.id, spec, SaveMode::CreateOrReplace, access))
        .and_then(|replaced| Ok((replaced, state.control.function(&workspace.id, &name)?)));
    match saved {
        Ok((replaced, function)) => {
            let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
            json_response(status, function_json(&function))
        }
        Err(err) => control_error(&err),
    }
}

pub(crate) async fn delete_function(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (workspace, access) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    match state.control.drop_function(&workspace.id, &name, access) {
        Ok(true) => json_response(StatusCode::OK, json!({"name": name, "deleted": true})),
        Ok(false) => control_error(&ControlError::NotFound(format!("function `{name}` does not exist"))),
        Err(err) => control_error(&err),
    }
}

pub(crate) async fn list_tables(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (workspace, _) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    let value: Vec<Json> = state.control.tables(&workspace.id).iter().map(table_json).collect();
    json_response(StatusCode::OK, json!({ "value": value }))
}

pub(crate) async fn get_table(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (workspace, _) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    match state.control.table(&workspace.id, &name) {
        Ok(info) => json_response(StatusCode::OK, table_json(&info)),
        Err(err) => control_error(&err),
    }
}

/// `PUT` and `PATCH`: creates a table or adds columns and sets retention.
/// Both merge (a column is never removed), so they answer alike.
pub(crate) async fn put_table(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (workspace, access) = match authorize_access(&state, &workspace, &headers) {
        Ok(authorized) => authorized,
        Err(response) => return *response,
    };
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let control = state.control.clone();
    let workspace_id = workspace.id.clone();
    // Declaring a table rewrites the catalogue file (fsync): off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let existed = control.store.table_info(&workspace_id, &name).is_some();
        let spec = TableSpec::from_json(&name, &body)?;
        control.put_table(&workspace_id, spec, access).map(|info| (existed, info))
    })
    .await;
    match result {
        Ok(Ok((existed, info))) => {
            let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
            json_response(status, table_json(&info))
        }
        Ok(Err(err)) => control_error(&err),
        Err(join_error) => {
            tracing::error!(error = %join_error, "ManagementRequestFailed");
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "internal error", None)
        }
    }
}
