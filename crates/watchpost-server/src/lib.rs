//! The HTTP server: the axum router, wire DTOs, authentication and the
//! mapping of errors to status codes and Azure-shaped bodies.
//!
//! Routes: `POST /api/logs` (HTTP Data Collector API, `data_collector`),
//! `POST|GET /v1/workspaces/{id}/query` (Log Analytics query API, `query`,
//! which also takes Kusto control commands), the management API for saved
//! functions and tables (`/v1/workspaces/{id}/functions|tables/{name}`,
//! `management`), the Logs Ingestion API and its data collection rules
//! ([`logs_ingestion`]), the OAuth2 token endpoint for app registrations
//! ([`tokens`]), `GET /healthz`; [`tls`] serves all of it over https.
//! Business rules live in `watchpost-ingest`,
//! `watchpost-storage` and `watchpost-engine`; this crate only translates
//! between HTTP and them.
//!
//! Invariants: the only crate that speaks server-side HTTP; every response
//! carries `x-ms-request-id`; an internal failure is logged in full and
//! masked in the response.
//!
//! Start reading at [`router`] and [`AppState`].

mod data_collector;
pub mod dcr_health;
pub mod logs_ingestion;
mod management;
mod query;
mod timespan;
pub mod tls;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use watchpost_control::{Control, MetastoreFunctions};
use watchpost_engine::QueryEngine;
use watchpost_metastore::Metastore;
use watchpost_storage::Store;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How far `x-ms-date` may be from the server clock; `None` disables the check.
    pub date_window: Option<Duration>,
    /// Default query timeout (`Prefer: wait=N` overrides it, up to 10 minutes).
    pub query_timeout: Duration,
    /// The server is reached over https (URLs it hands out say so).
    pub https: bool,
    /// Largest Logs Ingestion body, on the wire and decompressed.
    pub max_ingestion_body_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            date_window: Some(Duration::from_secs(15 * 60)),
            query_timeout: Duration::from_secs(180),
            https: false,
            max_ingestion_body_bytes: watchpost_ingest::logs_ingestion::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub metastore: Arc<Metastore>,
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    pub options: ServerOptions,
    /// Saved functions and table declarations.
    pub control: Control,
    /// Request-body buffers kept for reuse by ingest.
    pub(crate) bodies: Arc<data_collector::BodyPool>,
    /// Signs and verifies app tokens; `None` serves no token endpoint.
    pub tokens: Option<Arc<tokens::TokenIssuer>>,
    /// Compiled data collection rules and their health records.
    pub(crate) rules: Arc<logs_ingestion::RuleRegistry>,
}

impl AppState {
    /// The engine is given the metastore's saved functions, so queries can
    /// call them.
    pub fn new(metastore: Arc<Metastore>, store: Arc<Store>, engine: QueryEngine, options: ServerOptions) -> AppState {
        let engine = engine.with_functions(Arc::new(MetastoreFunctions(metastore.clone())));
        let control = Control::new(metastore.clone(), store.clone());
        let rules = Arc::new(logs_ingestion::RuleRegistry::open(metastore.data_dir(), engine.geo().cloned()));
        AppState { metastore, store, engine, options, control, bodies: Arc::default(), tokens: None, rules }
    }

    /// Writes the rules' health records if they changed (the server calls
    /// this every few seconds and on shutdown).
    pub fn save_rule_health(&self) -> Result<bool, watchpost_metastore::MetastoreError> {
        self.rules.save_health()
    }

    /// Serves the token endpoint and accepts tokens signed by `issuer`.
    pub fn with_tokens(mut self, issuer: Arc<tokens::TokenIssuer>) -> AppState {
        self.tokens = Some(issuer);
        self
    }
}

/// Builds the router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/logs", post(data_collector::post_logs))
        .route("//api/logs", post(data_collector::post_logs))
        .route("/v1/workspaces/{workspace}/query", post(query::post_query).get(query::get_query))
        .route("/v1/$batch", post(query::post_batch))
        .route("/v1/workspaces/{workspace}/functions", get(management::list_functions))
        .route(
            "/v1/workspaces/{workspace}/functions/{name}",
            get(management::get_function).put(management::put_function).delete(management::delete_function),
        )
        .route("/v1/workspaces/{workspace}/tables", get(management::list_tables))
        .route(
            "/v1/workspaces/{workspace}/tables/{name}",
            get(management::get_table).put(management::put_table).patch(management::put_table),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/v1/workspaces/{workspace}/dataCollectionRules/{name}",
            put(logs_ingestion::put_rule).get(logs_ingestion::get_rule).delete(logs_ingestion::delete_rule),
        )
        .route("/v1/workspaces/{workspace}/dataCollectionRules/{name}/health", get(logs_ingestion::get_health))
        .route("/dataCollectionRules/{immutable_id}/streams/{stream}", post(logs_ingestion::post_stream))
        .route("/{tenant}/oauth2/v2.0/token", post(tokens::token))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(tokens::openid_configuration))
        .route("/{tenant}/.well-known/openid-configuration", get(tokens::openid_configuration))
        .route("/{tenant}/discovery/v2.0/keys", get(tokens::jwks))
        .route("/common/discovery/instance", get(tokens::instance_discovery))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

pub(crate) async fn not_found() -> Response {
    query::api_error(StatusCode::NOT_FOUND, "PathNotFoundError", "The requested path does not exist", None)
}

/// Gives every response an `x-ms-request-id`, and logs the request.
async fn request_id(request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, %request_id, "request handled");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-ms-request-id", value);
    }
    response
}

/// A JSON response with a status.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    response
}
