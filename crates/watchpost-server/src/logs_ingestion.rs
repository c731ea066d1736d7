//! The Logs Ingestion API: data collection rules (`PUT|GET|DELETE
//! /v1/workspaces/{id}/dataCollectionRules/{name}`, `.../health`) and
//! `POST /dataCollectionRules/{immutableId}/streams/{stream}`.
//!
//! The rules themselves live in `watchpost-ingest::logs_ingestion`
//! (definition, decoding) and `watchpost-engine::transform`
//! (`transformKql`); this module authenticates, reads bodies, keeps the
//! compiled rules and each rule's health record, and appends to storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use subtle::ConstantTimeEq;
use watchpost_diagnostics::LineCol;
use watchpost_engine::transform::Transform;
use watchpost_geo::GeoDb;
use watchpost_ingest::logs_ingestion::{
    codes, decode_stream, gunzip_limited, stamp_time_generated, DataFlow, DcrDefinition, LogsIngestionError,
    API_VERSIONS,
};
use watchpost_metastore::{AppRegistration, DataCollectionRule, Metastore};
use watchpost_schema::standard::standard_table;
use watchpost_schema::{KqlType, TableSchema, TIME_GENERATED};
use watchpost_storage::{AppendRequest, StorageErrorKind};

use crate::dcr_health::{HealthBook, RuleHealth};
use crate::{json_response, AppState};

/// A rule with its definition parsed and its transforms compiled.
#[derive(Debug)]
pub struct CompiledRule {
    pub definition: DcrDefinition,
    /// One per data flow, in order; `None` for a flow without a transform.
    pub transforms: Vec<Option<Arc<Transform>>>,
}

/// Parses and checks a rule definition: the JSON shape, and every
/// `transformKql` against the transform subset and its stream's columns. A
/// transform problem is a 400 `InvalidTransformQuery` naming the flow, the
/// line and the position.
pub fn compile_rule(definition: &Json) -> Result<CompiledRule, LogsIngestionError> {
    compile_rule_with_geo(definition, &None)
}

/// [`compile_rule`], with transforms whose `geo_location` looks up in `geo`.
fn compile_rule_with_geo(definition: &Json, geo: &Option<Arc<GeoDb>>) -> Result<CompiledRule, LogsIngestionError> {
    let definition = DcrDefinition::parse(definition)?;
    let mut transforms = Vec::new();
    for (idx, flow) in definition.flows.iter().enumerate() {
        let stream = definition.stream(&flow.streams[0]).expect("flows name declared streams");
        let input = TableSchema::new(stream.columns.clone());
        let output = match &flow.transform_kql {
            None => {
                transforms.push(None);
                input
            }
            Some(text) => {
                let transform = Transform::compile(text, &input).map_err(|diagnostics| {
                    let first = &diagnostics[0];
                    let at = LineCol::locate(text, first.span.start as usize);
                    let mut message = format!(
                        "properties.dataFlows[{idx}].transformKql, line {}, position {}: {}",
                        at.line, at.column, first.message
                    );
                    let token = first.span.text(text);
                    if !token.is_empty() {
                        message.push_str(&format!(" (at `{token}`)"));
                    }
                    if let Some(hint) = &first.hint {
                        message.push_str(&format!(". {hint}"));
                    }
                    LogsIngestionError::new(400, codes::INVALID_TRANSFORM_QUERY, message)
                })?;
                let output = transform.output_schema().clone();
                transforms.push(Some(Arc::new(transform.with_geo(geo.clone()))));
                output
            }
        };
        check_built_in_output(idx, &definition.flows[idx], &output)?;
        if let Some(time) = output.column(TIME_GENERATED) {
            if time.kql_type != KqlType::Datetime {
                return Err(LogsIngestionError::new(
                    400,
                    codes::INVALID_TRANSFORM_QUERY,
                    format!(
                        "properties.dataFlows[{idx}]: the output column TimeGenerated is {}, it must be datetime (convert it with todatetime())",
                        time.kql_type
                    ),
                ));
            }
        }
    }
    Ok(CompiledRule { definition, transforms })
}

/// Refuses a flow into a built-in table (`Microsoft-<Table>`, one of the
/// standard tables Watchpost ships) whose output has a column the table
/// lacks or a column of another type, as Azure refuses such a rule. Caught
/// here, it is a precise 400 when the rule is saved rather than every batch
/// failing to store later. Built-in tables Watchpost does not ship are not
/// checked: their rows make a table as custom ones do.
fn check_built_in_output(idx: usize, flow: &DataFlow, output: &TableSchema) -> Result<(), LogsIngestionError> {
    if !flow.output_stream.starts_with("Microsoft-") {
        return Ok(());
    }
    let Some(table) = standard_table(&flow.table) else { return Ok(()) };
    for column in &output.columns {
        let problem = match table.schema.column(&column.name) {
            None => format!("the built-in table {} has no column `{}`", flow.table, column.name),
            Some(declared) if declared.kql_type != column.kql_type => format!(
                "the output column `{}` is {}, but the built-in table {} declares it {} (convert it in transformKql)",
                column.name, column.kql_type, flow.table, declared.kql_type
            ),
            Some(_) => continue,
        };
        return Err(LogsIngestionError::invalid_rule(format!(
            "properties.dataFlows[{idx}] ({}): {problem}",
            flow.output_stream
        )));
    }
    Ok(())
}

/// Compiled rules by immutable id, and their health records.
#[derive(Debug, Default)]
pub struct RuleRegistry {
    compiled: RwLock<HashMap<String, Arc<(DataCollectionRule, CompiledRule)>>>,
    health: HealthBook,
    /// What transforms' `geo_location` looks up in.
    geo: Option<Arc<GeoDb>>,
}

impl RuleRegistry {
    /// The registry of the data directory `data_dir`, whose health records
    /// it reads and saves there.
    pub fn open(data_dir: &std::path::Path, geo: Option<Arc<GeoDb>>) -> RuleRegistry {
        RuleRegistry { compiled: RwLock::default(), health: HealthBook::open(data_dir), geo }
    }

    /// Writes the health records if they changed; see [`HealthBook::save`].
    pub fn save_health(&self) -> Result<bool, watchpost_metastore::MetastoreError> {
        self.health.save()
    }

    /// The rule with `immutable_id`, compiled on first use. A rule that
    /// another process (the CLI's `watchpost dcr`) changed or deleted in the
    /// data directory is seen on its next use: the metastore file is
    /// checked (one `stat`) and a rule that differs from the compiled one
    /// is compiled again.
    fn get(&self, metastore: &Metastore, immutable_id: &str) -> Option<Arc<(DataCollectionRule, CompiledRule)>> {
        let key = immutable_id.to_ascii_lowercase();
        if let Err(err) = metastore.reload() {
            tracing::warn!(error = %err, "could not re-read the metastore; using the rules already loaded");
        }
        let Some(rule) = metastore.data_collection_rule_by_immutable_id(&key) else {
            self.remove(&key);
            return None;
        };
        if let Some(found) = self.compiled.read().expect("registry lock poisoned").get(&key) {
            if found.0 == rule {
                return Some(found.clone());
            }
        }
        let compiled = match compile_rule_with_geo(&rule.definition, &self.geo) {
            Ok(compiled) => compiled,
            Err(err) => {
                tracing::error!(rule = %rule.name, error = %err, "StoredRuleInvalid");
                // The rule still exists: its health record stays.
                self.compiled.write().expect("registry lock poisoned").remove(&key);
                return None;
            }
        };
        let entry = Arc::new((rule, compiled));
        self.compiled.write().expect("registry lock poisoned").insert(key, entry.clone());
        Some(entry)
    }

    fn replace(&self, rule: DataCollectionRule, compiled: CompiledRule) {
        let key = rule.immutable_id.clone();
        self.compiled.write().expect("registry lock poisoned").insert(key, Arc::new((rule, compiled)));
    }

    /// Forgets a deleted rule, and its health record.
    fn remove(&self, immutable_id: &str) {
        self.compiled.write().expect("registry lock poisoned").remove(immutable_id);
        self.health.remove(immutable_id);
    }

    fn health(&self, immutable_id: &str) -> RuleHealth {
        self.health.get(immutable_id)
    }

    fn record(&self, immutable_id: &str, change: impl FnOnce(&mut RuleHealth)) {
        self.health.record(immutable_id, change);
    }
}

// ---------------------------------------------------------------------------
// errors

fn error_response(err: &LogsIngestionError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, err.body_json());
    if let Ok(value) = HeaderValue::from_str(err.code) {
        response.headers_mut().insert("x-ms-error-code", value);
    }
    if err.status == 503 || err.status == 429 {
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

fn not_found(message: impl Into<String>) -> LogsIngestionError {
    LogsIngestionError::new(404, codes::NOT_FOUND, message)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get("authorization")?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

/// Who is calling: an app (from a token) or a workspace key holder.
enum Caller {
    App(AppRegistration),
    WorkspaceKey(String),
}

impl Caller {
    fn may_use(&self, rule: &DataCollectionRule) -> bool {
        match self {
            Caller::App(app) => {
                app.workspaces.iter().any(|ws| ws == &rule.workspace)
                    && (app.dcrs.is_empty() || app.dcrs.iter().any(|id| id.eq_ignore_ascii_case(&rule.immutable_id)))
            }
            Caller::WorkspaceKey(workspace) => workspace == &rule.workspace,
        }
    }
}

/// A bearer token: a JWT from the token endpoint, or a shared key of some
/// workspace (handy for scripts; it reaches only that workspace's rules).
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, LogsIngestionError> {
    let Some(token) = bearer(headers) else {
        return Err(LogsIngestionError::new(
            401,
            codes::INVALID_TOKEN,
            "The request has no bearer token (Authorization: Bearer <token>)",
        ));
    };
    if crate::tokens::looks_like_jwt(token) {
        let Some(tokens) = &state.tokens else {
            return Err(LogsIngestionError::new(401, codes::INVALID_TOKEN, "This server issues no tokens"));
        };
        return tokens
            .verify(token, &state.metastore, chrono::Utc::now().timestamp())
            .map(Caller::App)
            .map_err(|err| LogsIngestionError::new(401, codes::INVALID_TOKEN, err.to_string()));
    }
    for workspace in state.metastore.workspaces() {
        let mut matched = false;
        for key in [&workspace.primary_key, &workspace.secondary_key] {
            matched |= bool::from(key.as_bytes().ct_eq(token.as_bytes()));
        }
        if matched {
            return Ok(Caller::WorkspaceKey(workspace.id));
        }
    }
    Err(LogsIngestionError::new(401, codes::INVALID_TOKEN, "The bearer token is not valid"))
}

/// Management calls take a shared key of the workspace in the path.
fn authorize_admin(state: &AppState, workspace: &str, headers: &HeaderMap) -> Result<String, LogsIngestionError> {
    let Some(token) = bearer(headers) else {
        return Err(LogsIngestionError::new(
            401,
            codes::INVALID_TOKEN,
            "Managing data collection rules needs Authorization: Bearer <workspace shared key>",
        ));
    };
    let Some(found) = state.metastore.workspace(workspace) else {
        return Err(not_found(format!("Workspace '{workspace}' was not found")));
    };
    let mut matched = false;
    for key in [&found.primary_key, &found.secondary_key] {
        matched |= bool::from(key.as_bytes().ct_eq(token.as_bytes()));
    }
    if !matched {
        return Err(LogsIngestionError::new(403, codes::FORBIDDEN, "The token is not a shared key of this workspace"));
    }
    Ok(found.id)
}

// ---------------------------------------------------------------------------
// rule management

fn rule_resource(rule: &DataCollectionRule, base: &str) -> Json {
    let mut properties = rule.definition.get("properties").cloned().unwrap_or_else(|| rule.definition.clone());
    if let Some(object) = properties.as_object_mut() {
        object.insert("immutableId".into(), json!(rule.immutable_id));
        object.insert("provisioningState".into(), json!("Succeeded"));
        object.insert("endpoints".into(), json!({"logsIngestion": base}));
    }
    json!({
        "id": format!("/workspaces/{}/dataCollectionRules/{}", rule.workspace, rule.name),
        "name": rule.name,
        "type": "Microsoft.Insights/dataCollectionRules",
        "location": rule.definition.get("location").cloned().unwrap_or(json!("local")),
        "kind": rule.definition.get("kind").cloned().unwrap_or(json!("Direct")),
        "properties": properties,
    })
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    format!("{}://{host}", if state.options.https { "https" } else { "http" })
}

/// `PUT /v1/workspaces/{id}/dataCollectionRules/{name}`.
pub(crate) async fn put_rule(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let workspace = match authorize_admin(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err(err) => return error_response(&err),
    };
    let definition: Json = match serde_json::from_slice(&body) {
        Ok(definition) => definition,
        Err(err) => {
            return error_response(&LogsIngestionError::new(
                400,
                codes::INVALID_JSON,
                format!("The rule is not valid JSON: {err}"),
            ))
        }
    };
    let compiled = match compile_rule_with_geo(&definition, &state.rules.geo) {
        Ok(compiled) => compiled,
        Err(err) => return error_response(&err),
    };
    if let Err(err) = check_destinations(&state.metastore, &workspace, &compiled.definition) {
        return error_response(&err);
    }
    match state.metastore.put_data_collection_rule(&workspace, &name, definition) {
        Ok((rule, created)) => {
            tracing::info!(rule = %rule.name, immutable_id = %rule.immutable_id, created, "DataCollectionRuleSaved");
            let body = rule_resource(&rule, &base_url(&state, &headers));
            state.rules.replace(rule, compiled);
            json_response(if created { StatusCode::CREATED } else { StatusCode::OK }, body)
        }
        Err(err @ watchpost_metastore::MetastoreError::InvalidRuleName(_)) => {
            error_response(&LogsIngestionError::invalid_rule(err.to_string()))
        }
        Err(err) => {
            tracing::error!(error = %err, "DataCollectionRuleSaveFailed");
            error_response(&LogsIngestionError::new(500, codes::INTERNAL_ERROR, "The rule could not be saved"))
        }
    }
}

/// Every destination must name an existing workspace.
pub fn check_destinations(
    metastore: &Metastore,
    workspace: &str,
    definition: &DcrDefinition,
) -> Result<(), LogsIngestionError> {
    for destination in &definition.destinations {
        let target = destination.workspace_id.as_deref().unwrap_or(workspace);
        if metastore.workspace(target).is_none() {
            return Err(LogsIngestionError::invalid_rule(format!(
                "destination `{}` names workspace `{target}`, which does not exist",
                destination.name
            )));
        }
    }
    Ok(())
}

/// `GET /v1/workspaces/{id}/dataCollectionRules/{name}`.
pub(crate) async fn get_rule(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let workspace = match authorize_admin(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err(err) => return error_response(&err),
    };
    match state.metastore.data_collection_rule(&workspace, &name) {
        Some(rule) => json_response(StatusCode::OK, rule_resource(&rule, &base_url(&state, &headers))),
        None => error_response(&not_found(format!("Data collection rule '{name}' was not found"))),
    }
}

/// `DELETE /v1/workspaces/{id}/dataCollectionRules/{name}`: 200 when it
/// existed, 204 when there was nothing to delete (as ARM answers).
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let workspace = match authorize_admin(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err(err) => return error_response(&err),
    };
    let existing = state.metastore.data_collection_rule(&workspace, &name);
    match state.metastore.delete_data_collection_rule(&workspace, &name) {
        Ok(true) => {
            if let Some(rule) = existing {
                state.rules.remove(&rule.immutable_id);
            }
            StatusCode::OK.into_response()
        }
        Ok(false) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => {
            tracing::error!(error = %err, "DataCollectionRuleDeleteFailed");
            error_response(&LogsIngestionError::new(500, codes::INTERNAL_ERROR, "The rule could not be deleted"))
        }
    }
}

/// `GET /v1/workspaces/{id}/dataCollectionRules/{name}/health`.
pub(crate) async fn get_health(
    State(state): State<AppState>,
    Path((workspace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let workspace = match authorize_admin(&state, &workspace, &headers) {
        Ok(workspace) => workspace,
        Err(err) => return error_response(&err),
    };
    let Some(rule) = state.metastore.data_collection_rule(&workspace, &name) else {
        return error_response(&not_found(format!("Data collection rule '{name}' was not found")));
    };
    let health = state.rules.health(&rule.immutable_id);
    let mut body = serde_json::to_value(&health).expect("health serializes");
    body["immutableId"] = json!(rule.immutable_id);
    body["name"] = json!(rule.name);
    json_response(StatusCode::OK, body)
}

// ---------------------------------------------------------------------------
// ingestion

/// `POST /dataCollectionRules/{immutableId}/streams/{stream}?api-version=...`.
pub(crate) async fn post_stream(
    State(state): State<AppState>,
    Path((immutable_id, stream)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client_request_id = headers.get("x-ms-client-request-id").cloned();
    let mut response = match ingest(&state, &immutable_id, &stream, &params, &headers, body).await {
        Ok(report) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if !report.dropped.is_empty() {
                let text = report.dropped.iter().map(|(name, n)| format!("{name}={n}")).collect::<Vec<_>>().join(",");
                if let Ok(value) = HeaderValue::from_str(&text) {
                    response.headers_mut().insert("x-watchpost-dropped-columns", value);
                }
            }
            response
        }
        Err(err) => {
            let key = immutable_id.to_ascii_lowercase();
            // Only rules that exist get a record: any id can be sent.
            let known = state.metastore.data_collection_rule_by_immutable_id(&key).is_some();
            if err.status >= 400 && err.status != 401 && known {
                let message = err.to_string();
                state.rules.record(&key, |health| health.last_error = Some(message));
            }
            error_response(&err)
        }
    };
    if let Some(id) = client_request_id {
        response.headers_mut().insert("x-ms-client-request-id", id);
    }
    response
}

struct IngestReport {
    dropped: BTreeMap<String, u64>,
}

async fn ingest(
    state: &AppState,
    immutable_id: &str,
    stream_name: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<IngestReport, LogsIngestionError> {
    match params.get("api-version").map(String::as_str) {
        None => {
            return Err(LogsIngestionError::new(
                400,
                codes::INVALID_API_VERSION,
                "The api-version query parameter is required (2023-01-01)",
            ))
        }
        Some(version) if !API_VERSIONS.contains(&version) => {
            return Err(LogsIngestionError::new(
                400,
                codes::INVALID_API_VERSION,
                format!("api-version '{version}' is not supported; use {}", API_VERSIONS.join(" or ")),
            ))
        }
        Some(_) => {}
    }
    let caller = authenticate(state, headers)?;
    let entry = state
        .rules
        .get(&state.metastore, immutable_id)
        .ok_or_else(|| not_found(format!("Data collection rule '{immutable_id}' was not found")))?;
    let (rule, compiled) = (&entry.0, &entry.1);
    if !caller.may_use(rule) {
        return Err(LogsIngestionError::new(
            403,
            codes::FORBIDDEN,
            format!("The caller is not allowed to send to data collection rule '{}'", rule.immutable_id),
        ));
    }
    let Some(stream) = compiled.definition.stream(stream_name) else {
        return Err(not_found(format!(
            "Stream '{stream_name}' is not declared in data collection rule '{}'",
            rule.immutable_id
        )));
    };
    let limit = state.options.max_ingestion_body_bytes;
    let raw = read_limited(body, limit).await?;
    let encoding = headers.get("content-encoding").and_then(|value| value.to_str().ok()).unwrap_or("").trim();
    let received = chrono::Utc::now();
    let received_ns = received.timestamp_nanos_opt().expect("the clock is before 2262");
    let columns = stream.columns.clone();
    let gzip = match encoding.to_ascii_lowercase().as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => {
            return Err(LogsIngestionError::new(
                400,
                codes::INVALID_REQUEST,
                format!("Content-Encoding '{other}' is not supported; send gzip or an uncompressed body"),
            ))
        }
    };
    let decoded = tokio::task::spawn_blocking(move || {
        let body = if gzip { gunzip_limited(&raw, limit)? } else { raw.to_vec() };
        decode_stream(&body, &columns)
    })
    .await
    .map_err(|err| LogsIngestionError::new(500, codes::INTERNAL_ERROR, format!("decoding failed: {err}")))??;

    let records = decoded.batch.num_rows() as u64;
    let client_request_id =
        headers.get("x-ms-client-request-id").and_then(|value| value.to_str().ok()).map(str::to_string);
    let mut stored = 0_u64;
    for (idx, flow) in compiled.definition.flows_of(&stream.name) {
        let batch = match &compiled.transforms[idx] {
            None => decoded.batch.clone(),
            Some(transform) => {
                let output = transform.apply(decoded.batch.clone(), received_ns).await.map_err(|err| {
                    tracing::warn!(rule = %rule.name, flow = idx, error = %err, "TransformFailed");
                    LogsIngestionError::new(
                        400,
                        codes::INVALID_TRANSFORM_QUERY,
                        format!("dataFlows[{idx}].transformKql failed on this batch: {err}"),
                    )
                })?;
                let schema = transform.output_schema().arrow_schema();
                arrow::compute::concat_batches(&schema, &output).map_err(|err| {
                    LogsIngestionError::new(500, codes::INTERNAL_ERROR, format!("transform output: {err}"))
                })?
            }
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let batch = stamp_time_generated(batch, received_ns);
        for destination in &flow.destinations {
            let workspace = compiled
                .definition
                .destination(destination)
                .and_then(|destination| destination.workspace_id.clone())
                .unwrap_or_else(|| rule.workspace.clone());
            let request = AppendRequest {
                workspace,
                table: flow.table.clone(),
                idempotency_key: client_request_id
                    .as_ref()
                    .map(|id| format!("{id}#{}#{idx}#{destination}", rule.immutable_id)),
                received_ns,
                batch: batch.clone(),
            };
            let store = state.store.clone();
            let outcome = tokio::task::spawn_blocking(move || store.append(request))
                .await
                .map_err(|err| LogsIngestionError::new(500, codes::INTERNAL_ERROR, format!("append failed: {err}")))?;
            match outcome {
                Ok(outcome) => stored += outcome.receipt().rows,
                Err(err) if err.kind() == StorageErrorKind::Conflict => {
                    return Err(LogsIngestionError::new(
                        503,
                        "ServiceUnavailable",
                        "A request with the same x-ms-client-request-id is in progress; retry later",
                    ))
                }
                Err(err) => {
                    tracing::error!(error = %err, "LogsIngestionAppendFailed");
                    return Err(LogsIngestionError::new(500, codes::INTERNAL_ERROR, "The rows could not be stored"));
                }
            }
        }
    }
    if !decoded.dropped.is_empty() {
        tracing::warn!(rule = %rule.name, stream = %stream.name, dropped = ?decoded.dropped, "UndeclaredColumnsDropped");
    }
    let when = received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let stream_name = stream.name.clone();
    state.rules.record(&rule.immutable_id, |health| {
        health.requests += 1;
        health.records_received += records;
        health.rows_stored += stored;
        health.last_ingestion_time = Some(when.clone());
        for (name, count) in &decoded.dropped {
            let entry = health.dropped_columns.entry(name.clone()).or_default();
            entry.stream = stream_name.clone();
            entry.records += count;
            entry.last_seen = when.clone();
        }
        for (name, count) in &decoded.coercion_failures {
            *health.coercion_failures.entry(name.clone()).or_default() += count;
        }
    });
    Ok(IngestReport { dropped: decoded.dropped })
}

/// Reads the body, refusing more than `limit` bytes on the wire (413).
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, LogsIngestionError> {
    let too_large = || {
        LogsIngestionError::new(
            413,
            codes::CONTENT_LENGTH_LIMIT_EXCEEDED,
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    };
    let mut buffer = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            LogsIngestionError::new(400, codes::INVALID_REQUEST, format!("the body could not be read: {err}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(transform: &str) -> Json {
        json!({"properties": {
            "streamDeclarations": {"Custom-S": {"columns": [{"name": "Raw", "type": "string"}, {"name": "When", "type": "string"}]}},
            "destinations": {"logAnalytics": [{"name": "d"}]},
            "dataFlows": [{"streams": ["Custom-S"], "destinations": ["d"], "transformKql": transform, "outputStream": "Custom-T_CL"}],
        }})
    }

    #[test]
    fn compile_rule_points_at_what_the_transform_subset_forbids() {
        let err = compile_rule(&rule("source\n| where Raw != ''\n| take 10")).unwrap_err();
        assert_eq!((err.status, err.code), (400, codes::INVALID_TRANSFORM_QUERY));
        assert!(
            err.message.starts_with("properties.dataFlows[0].transformKql, line 3, position 3: the `take` operator"),
            "{}",
            err.message
        );
        assert!(err.message.contains("(at `take 10`)"), "{}", err.message);
    }

    /// The CLI changes rules in the data directory from another process;
    /// a running server uses the changed rule on its next request and stops
    /// accepting a deleted one, without a restart.
    #[test]
    fn rules_changed_or_deleted_by_another_process_are_seen_on_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let server = Metastore::open(dir.path()).unwrap();
        let workspace = server.ensure_workspace(None, None).unwrap();
        let first = rule("source | extend TimeGenerated = todatetime(When)");
        let (stored, _) = server.put_data_collection_rule(&workspace.id, "r", first.clone()).unwrap();
        let registry = RuleRegistry::default();
        assert_eq!(registry.get(&server, &stored.immutable_id).unwrap().0.definition, first);

        let cli = Metastore::open(dir.path()).unwrap();
        let second = rule("source | where Raw != 'skip' | extend TimeGenerated = now()");
        cli.put_data_collection_rule(&workspace.id, "r", second.clone()).unwrap();
        let entry = registry.get(&server, &stored.immutable_id).unwrap();
        assert_eq!(entry.0.definition, second);
        assert_eq!(entry.0.immutable_id, stored.immutable_id);

        assert!(cli.delete_data_collection_rule(&workspace.id, "r").unwrap());
        assert!(registry.get(&server, &stored.immutable_id).is_none());
    }

    /// A stored rule that no longer compiles is refused but keeps its health
    /// record; a deleted rule loses it.
    #[test]
    fn health_records_outlive_invalid_rules_but_not_deleted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let metastore = Metastore::open(dir.path()).unwrap();
        let workspace = metastore.ensure_workspace(None, None).unwrap();
        let (stored, _) = metastore.put_data_collection_rule(&workspace.id, "r", rule("source")).unwrap();
        let registry = RuleRegistry::open(dir.path(), None);
        assert!(registry.get(&metastore, &stored.immutable_id).is_some());
        registry.record(&stored.immutable_id, |health| health.requests = 3);

        metastore.put_data_collection_rule(&workspace.id, "r", rule("source | take 1")).unwrap();
        assert!(registry.get(&metastore, &stored.immutable_id).is_none());
        assert_eq!(registry.health(&stored.immutable_id).requests, 3);

        assert!(metastore.delete_data_collection_rule(&workspace.id, "r").unwrap());
        assert!(registry.get(&metastore, &stored.immutable_id).is_none());
        assert_eq!(registry.health(&stored.immutable_id).requests, 0);
    }

    /// A flow into a shipped built-in table must produce its columns with
    /// its types; the error names the flow, the column and the table.
    #[test]
    fn flows_into_built_in_tables_must_fit_their_columns() {
        let into_syslog = |transform: &str| {
            json!({"properties": {
                "streamDeclarations": {"Custom-S": {"columns": [{"name": "Raw", "type": "string"}, {"name": "When", "type": "string"}]}},
                "destinations": {"logAnalytics": [{"name": "d"}]},
                "dataFlows": [{"streams": ["Custom-S"], "destinations": ["d"], "transformKql": transform, "outputStream": "Microsoft-Syslog"}],
            }})
        };
        let fits = "source | project TimeGenerated = todatetime(When), SyslogMessage = Raw, ProcessID = toint(1)";
        compile_rule(&into_syslog(fits)).unwrap();

        let err =
            compile_rule(&into_syslog("source | project TimeGenerated = todatetime(When), Bogus = Raw")).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(
            err.message,
            "properties.dataFlows[0] (Microsoft-Syslog): the built-in table Syslog has no column `Bogus`"
        );
        let err = compile_rule(&into_syslog("source | project TimeGenerated = todatetime(When), ProcessID = Raw"))
            .unwrap_err();
        assert!(
            err.message
                .contains("the output column `ProcessID` is string, but the built-in table Syslog declares it int"),
            "{}",
            err.message
        );
        // Without a transform the stream's own columns are the output: Raw is not a Syslog column.
        let mut plain = into_syslog("source");
        plain["properties"]["dataFlows"][0].as_object_mut().unwrap().remove("transformKql");
        assert!(compile_rule(&plain).unwrap_err().message.contains("has no column `Raw`"));
        // Custom tables take any columns.
        compile_rule(&rule("source | extend TimeGenerated = todatetime(When), Bogus = Raw")).unwrap();
    }

    /// `parse_cef_dictionary`, a transform-only function in Azure, is in
    /// the transform subset.
    #[test]
    fn transforms_may_split_cef_extensions() {
        let transform =
            "source | extend TimeGenerated = todatetime(When), Act = tostring(parse_cef_dictionary(Raw).act)";
        let compiled = compile_rule(&rule(transform)).unwrap();
        let output = compiled.transforms[0].as_ref().unwrap().output_schema();
        assert_eq!(output.column("Act").unwrap().kql_type, KqlType::String);
    }

    #[test]
    fn compile_rule_wants_time_generated_as_datetime() {
        let err = compile_rule(&rule("source | extend TimeGenerated = When")).unwrap_err();
        assert!(err.message.contains("TimeGenerated is string, it must be datetime"), "{}", err.message);
        let compiled = compile_rule(&rule("source | extend TimeGenerated = todatetime(When)")).unwrap();
        let output = compiled.transforms[0].as_ref().unwrap().output_schema();
        assert_eq!(output.column(TIME_GENERATED).unwrap().kql_type, KqlType::Datetime);
    }
}
