//! `POST /api/logs`: the HTTP Data Collector API, including Watchpost's
//! `x-watchpost-standard-table` header (a post for a standard table such as
//! `Syslog`), whose rules live in `watchpost_ingest::data_collector`.

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt;
use watchpost_ingest::data_collector::{
    self, DataCollectorError, DataCollectorRequest, WorkspaceKeyState, WorkspaceKeys, MAX_BODY_BYTES,
};
use watchpost_metastore::Metastore;
use watchpost_storage::{AppendOutcome, AppendRequest, StorageError, StorageErrorKind};

use crate::AppState;

/// Header carrying what a request stored, for clients that care.
pub(crate) const RECEIPT_HEADER: &str = "x-watchpost-receipt";

struct MetastoreKeys<'a>(&'a Metastore);

impl WorkspaceKeys for MetastoreKeys<'_> {
    fn keys(&self, workspace_id: &str) -> Option<WorkspaceKeyState> {
        let workspace = self.0.workspace(workspace_id)?;
        if !workspace.active {
            return Some(WorkspaceKeyState::Inactive);
        }
        let (primary, secondary) = workspace.shared_key_bytes();
        Some(WorkspaceKeyState::Active { primary, secondary })
    }
}

pub(crate) async fn post_logs(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared_length = headers
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
        return error_response(&too_large());
    }
    let mut buffer = state.bodies.take(declared_length.unwrap_or(0));
    match read_body(body, &mut buffer).await {
        Ok(()) => {}
        Err(BodyError::TooLarge) => return error_response(&too_large()),
        Err(BodyError::Read(message)) => {
            tracing::debug!(%message, "BatchBodyReadFailed");
            return error_response(&DataCollectorError::new(
                400,
                Some("InvalidDataFormat"),
                "The request body could not be read",
            ));
        }
    }
    let bodies = state.bodies.clone();
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let idempotency_key =
        header_value(&headers, "idempotency-key").or_else(|| header_value(&headers, "x-ms-client-request-id"));
    let path = uri.path().to_string();
    let method = method.as_str().to_string();
    let (metastore, store, date_window) = (state.metastore.clone(), state.store.clone(), state.options.date_window);
    // Validation, decoding and the WAL append all run on the blocking pool:
    // they are CPU and disk work, and the body is borrowed, not copied.
    let outcome = tokio::task::spawn_blocking(move || {
        let request = DataCollectorRequest {
            method: &method,
            path: &path,
            query: query.as_deref(),
            headers: &header_pairs,
            body: &buffer,
        };
        let received = Utc::now();
        let post = data_collector::validate(&request, &MetastoreKeys(&metastore), received, date_window)
            .map_err(IngestFailure::Rejected)?;
        let schema = store.table_schema(&post.workspace_id, &post.table).unwrap_or_default();
        let decoded = data_collector::decode(&post, &schema, received).map_err(IngestFailure::Rejected)?;
        for warning in &decoded.warnings {
            tracing::warn!(table = %post.table, %warning, "BatchWarning");
        }
        let request = AppendRequest {
            workspace: post.workspace_id.clone(),
            table: post.table.clone(),
            idempotency_key,
            received_ns: received.timestamp_nanos_opt().expect("the clock is before 2262"),
            batch: decoded.batch,
        };
        let outcome = store.append(request).map_err(IngestFailure::Storage);
        drop(post);
        bodies.give_back(buffer);
        outcome
    })
    .await;
    match outcome {
        Ok(Ok(outcome)) => accepted(&outcome),
        Ok(Err(IngestFailure::Rejected(err))) => error_response(&err),
        Ok(Err(IngestFailure::Storage(err))) => storage_error(&err),
        Err(join_error) => {
            tracing::error!(error = %join_error, "ingest task failed");
            error_response(&DataCollectorError::internal("internal error"))
        }
    }
}

/// Request-body buffers for reuse. Bodies are megabytes each; reusing their
/// buffers spares the allocator a fresh, zero-filled mapping per request.
#[derive(Debug, Default)]
pub(crate) struct BodyPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept at most, and the largest capacity kept.
const POOLED_BODIES: usize = 8;
const POOLED_BODY_CAPACITY: usize = 8 << 20;

impl BodyPool {
    /// An empty buffer with room for `expected` bytes (a declared length,
    /// trusted only up to the body limit).
    fn take(&self, expected: usize) -> Vec<u8> {
        let expected = expected.min(MAX_BODY_BYTES);
        let mut buffer = self.free.lock().expect("body pool lock poisoned").pop().unwrap_or_default();
        buffer.clear();
        buffer.reserve(expected);
        buffer
    }

    fn give_back(&self, buffer: Vec<u8>) {
        if buffer.capacity() > POOLED_BODY_CAPACITY {
            return;
        }
        let mut free = self.free.lock().expect("body pool lock poisoned");
        if free.len() < POOLED_BODIES {
            free.push(buffer);
        }
    }
}

enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads the whole body into `buffer`, refusing more than the body limit.
async fn read_body(mut body: Body, buffer: &mut Vec<u8>) -> Result<(), BodyError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyError::Read(error.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(())
}

enum IngestFailure {
    Rejected(DataCollectorError),
    Storage(StorageError),
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

fn accepted(outcome: &AppendOutcome) -> Response {
    let receipt = outcome.receipt();
    let repeated = matches!(outcome, AppendOutcome::Repeated(_));
    let text = format!("rows={}; columns={}; repeated={repeated}", receipt.rows, receipt.columns.join(","));
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&text) {
        response.headers_mut().insert(RECEIPT_HEADER, value);
    }
    response
}

fn too_large() -> DataCollectorError {
    DataCollectorError::too_large(format!("The request body is larger than the limit of {MAX_BODY_BYTES} bytes"))
}

fn storage_error(err: &StorageError) -> Response {
    match err.kind() {
        StorageErrorKind::Conflict => {
            let mut response = error_response(&DataCollectorError::new(
                503,
                Some("ServiceUnavailable"),
                "A request with the same idempotency key is in progress; retry later",
            ));
            response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            response
        }
        // The rows do not fit a table with a declared schema: nothing was
        // stored, and the sender is told which fields to declare or drop.
        StorageErrorKind::InvalidInput => {
            error_response(&DataCollectorError::new(400, Some("InvalidDataFormat"), err.to_string()))
        }
        _ => {
            tracing::error!(error = %err, "StorageAppendError");
            error_response(&DataCollectorError::internal("The events could not be stored"))
        }
    }
}

fn error_response(err: &DataCollectorError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(status = err.status, message = %err.message, "BatchRejected");
    } else {
        tracing::debug!(status = err.status, message = %err.message, "BatchRejected");
    }
    let mut response = (status, err.body_json()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    response
}
