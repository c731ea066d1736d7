//! Sinks: the HTTP Data Collector API (SharedKey), and `stdout` and
//! `file` (NDJSON) for debugging. Each is built from a `[[sink]]` table.
//!
//! A Data Collector sink sends rows whose table is a standard table
//! Watchpost ships (`Syslog`, `CommonSecurityLog`, `Heartbeat`, ...) with
//! `x-watchpost-standard-table: true`, so Watchpost stores them in that
//! table rather than `<Name>_CL` (option `standard_tables = false` turns
//! this off); their `@timestamp` travels as
//! [`STANDARD_TIME_FIELD`].

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value as Json;
use watchpost_pipeline::{Batch, ConfigResult, Delivery, Options, Sink, STANDARD_TIME_FIELD};
use watchpost_schema::standard::standard_table;

use crate::data_collector::{DataCollectorClient, PostOptions, PostOutcome, MAX_POST_BYTES, TARGET_POST_BYTES};
use crate::shared_key::SharedKey;

/// Sink types this build knows; the Logstash output plugin names are
/// aliases of `data_collector` (grok spec 5).
pub const SINK_TYPES: &[&str] = &["data_collector", "logs_ingestion", "stdout", "file"];

/// The Logs Ingestion API's limit per call, compressed or not (spec 2.3).
pub const LOGS_INGESTION_MAX_BYTES: usize = 1_000_000;

/// How a sink wants its rows batched and named.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Log type, possibly with `%{field}` references.
    pub log_type: String,
    /// The row field that carries `@timestamp`.
    pub time_field: String,
    pub batch_max_bytes: usize,
    pub batch_max_rows: usize,
    /// Table names are stream names (`Custom-X`), which may hold `-`.
    pub stream_names: bool,
    /// Rows for a standard table go to that table (Data Collector sinks
    /// with `standard_tables` on, the default).
    pub standard_tables: bool,
}

impl SinkSettings {
    pub fn valid_table(&self, name: &str) -> bool {
        if self.stream_names {
            return !name.is_empty()
                && name.len() <= 200
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        }
        valid_log_type(name)
    }

    /// Whether rows for `table` are written to the standard table of that
    /// name rather than `<table>_CL`.
    pub fn writes_standard_table(&self, table: &str) -> bool {
        self.standard_tables && is_standard_table(table)
    }

    /// The row property that carries `@timestamp` for `table`.
    pub fn time_field_for(&self, table: &str) -> &str {
        if self.writes_standard_table(table) {
            STANDARD_TIME_FIELD
        } else {
            &self.time_field
        }
    }
}

/// Whether `name` is a standard table Watchpost ships (case-sensitive).
pub fn is_standard_table(name: &str) -> bool {
    standard_table(name).is_some()
}

/// Builds a sink from its table: the sink and its batching settings.
pub fn build_sink(options: &mut Options) -> ConfigResult<(Box<dyn Sink>, SinkSettings)> {
    let kind = options.string("type")?.ok_or_else(|| options.error("missing `type`"))?;
    let stream_names = kind == "logs_ingestion";
    let log_type = match stream_names {
        true => options.string("stream")?,
        false => options.string("log_type")?.or(options.string("custom_log_table_name")?),
    };
    let default_time_field = if stream_names { "TimeGenerated" } else { "EventTime" };
    let time_field = options.string("time_field")?.unwrap_or_else(|| default_time_field.to_string());
    if time_field.is_empty() || !time_field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(options.error("`time_field` must be letters, digits and underscores"));
    }
    let (default_bytes, max_bytes) = if stream_names {
        (LOGS_INGESTION_MAX_BYTES, LOGS_INGESTION_MAX_BYTES)
    } else {
        (TARGET_POST_BYTES, MAX_POST_BYTES)
    };
    let batch_max_bytes = options.u64("batch_max_bytes", default_bytes as u64)? as usize;
    if !(1024..=max_bytes).contains(&batch_max_bytes) {
        return Err(options.error(format!("`batch_max_bytes` must be between 1024 and {max_bytes}")));
    }
    let batch_max_rows = options.u64("batch_max_rows", 10_000)?.max(1) as usize;
    let mut standard_tables = false;
    let sink: Box<dyn Sink> = match kind.as_str() {
        "data_collector"
        | "azure_loganalytics"
        | "microsoft-logstash-output-azure-loganalytics"
        | "microsoft-sentinel-log-analytics-logstash-output-plugin" => {
            let sink = DataCollectorSink::build(options, &time_field)?;
            standard_tables = sink.standard_tables;
            Box::new(sink)
        }
        "logs_ingestion" => Box::new(LogsIngestionSink::build(options)?),
        "stdout" => Box::new(StdoutSink),
        "file" => {
            let path = options.string("path")?.ok_or_else(|| options.error("option `path` is required"))?;
            Box::new(FileSink { path: PathBuf::from(path) })
        }
        other => {
            return Err(
                options.error(format!("unsupported sink type `{other}`; this build knows {}", SINK_TYPES.join(", ")))
            )
        }
    };
    let log_type = match (log_type, kind.as_str()) {
        (Some(log_type), _) => log_type,
        (None, "stdout" | "file") => "Events".to_string(),
        (None, "logs_ingestion") => return Err(options.error("option `stream` is required (e.g. Custom-MyTable)")),
        (None, _) => return Err(options.error("option `log_type` is required (the table without _CL)")),
    };
    let settings =
        SinkSettings { log_type, time_field, batch_max_bytes, batch_max_rows, stream_names, standard_tables };
    if !settings.log_type.contains("%{") && !settings.valid_table(&settings.log_type) {
        return Err(options.error(format!("table or stream name {:?} is not valid", settings.log_type)));
    }
    Ok((sink, settings))
}

pub fn valid_log_type(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The HTTP Data Collector API.
pub struct DataCollectorSink {
    name: String,
    client: DataCollectorClient,
    time_field: String,
    resource_id: Option<String>,
    gzip: bool,
    standard_tables: bool,
}

impl DataCollectorSink {
    fn build(options: &mut Options, time_field: &str) -> ConfigResult<DataCollectorSink> {
        let endpoint = options.string("endpoint")?.unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
        let workspace_id =
            options.string("workspace_id")?.ok_or_else(|| options.error("option `workspace_id` is required"))?;
        let key = options
            .secret("workspace_key")?
            .ok_or_else(|| options.error("option `workspace_key` or `workspace_key_env` is required"))?;
        let key = SharedKey::new(&workspace_id, &key).map_err(|e| options.error(e))?;
        // Accepted for compatibility with the Logstash output plugin.
        for ignored in ["plugin_flush_interval", "key_names", "key_types", "id"] {
            options.take(ignored);
        }
        Ok(DataCollectorSink {
            name: format!("data_collector {endpoint}"),
            client: DataCollectorClient::new(&endpoint, key),
            time_field: time_field.to_string(),
            resource_id: options.string("resource_id")?,
            gzip: options.bool("gzip", false)?,
            standard_tables: options.bool("standard_tables", true)?,
        })
    }
}

impl Sink for DataCollectorSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &Batch) -> Delivery {
        // The same rule as `SinkSettings::time_field_for`, which shaped the rows.
        let standard_table = self.standard_tables && is_standard_table(&batch.table);
        let time_field = if standard_table { STANDARD_TIME_FIELD } else { self.time_field.as_str() };
        let options = PostOptions {
            log_type: &batch.table,
            time_field: Some(time_field),
            resource_id: self.resource_id.as_deref(),
            idempotency_key: Some(&batch.idempotency_key),
            gzip: self.gzip,
            standard_table,
        };
        match self.client.post(&batch.body, &options) {
            PostOutcome::Accepted => Delivery::Delivered,
            PostOutcome::Retryable { retry_after, message, .. } => {
                Delivery::Retry { after: retry_after, reason: message }
            }
            PostOutcome::Rejected { message, .. } => Delivery::Refused { reason: message },
        }
    }
}

/// The Logs Ingestion API (DCR based): bearer token, gzip, 204 on success.
/// The batch's table is the stream name.
pub struct LogsIngestionSink {
    name: String,
    base: String,
    dcr_id: String,
    token: String,
    gzip: bool,
    agent: ureq::Agent,
}

impl LogsIngestionSink {
    fn build(options: &mut Options) -> ConfigResult<LogsIngestionSink> {
        let endpoint = options.string("endpoint")?.ok_or_else(|| options.error("option `endpoint` is required"))?;
        let dcr_id = options.string("dcr_id")?.ok_or_else(|| options.error("option `dcr_id` is required"))?;
        let token =
            options.secret("token")?.ok_or_else(|| options.error("option `token` or `token_env` is required"))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .build();
        Ok(LogsIngestionSink {
            name: format!("logs_ingestion {endpoint}"),
            base: endpoint.trim_end_matches('/').to_string(),
            dcr_id,
            token,
            gzip: options.bool("gzip", true)?,
            agent,
        })
    }
}

impl Sink for LogsIngestionSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: &Batch) -> Delivery {
        let url =
            format!("{}/dataCollectionRules/{}/streams/{}?api-version=2023-01-01", self.base, self.dcr_id, batch.table);
        let mut request = self
            .agent
            .post(&url)
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/json")
            .set("x-ms-client-request-id", &batch.idempotency_key)
            .set(crate::data_collector::IDEMPOTENCY_HEADER, &batch.idempotency_key);
        let compressed;
        let body: &[u8] = if self.gzip {
            compressed = crate::data_collector::gzip(&batch.body);
            request = request.set("Content-Encoding", "gzip");
            &compressed
        } else {
            &batch.body
        };
        let (status, response) = match request.send_bytes(body) {
            Ok(response) => (response.status(), response),
            Err(ureq::Error::Status(status, response)) => (status, response),
            Err(err) => return Delivery::Retry { after: None, reason: err.to_string() },
        };
        if (200..300).contains(&status) {
            return Delivery::Delivered;
        }
        let after = response.header("retry-after").and_then(crate::data_collector::parse_retry_after);
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(response.into_reader(), 4096), &mut text);
        let reason = format!("HTTP {status}: {}", text.trim());
        if status == 408 || status == 429 || status >= 500 {
            Delivery::Retry { after, reason }
        } else {
            Delivery::Refused { reason }
        }
    }
}

/// Prints each row as one JSON line, with its table.
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn deliver(&mut self, batch: &Batch) -> Delivery {
        let lines = ndjson_lines(batch);
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(lines.as_bytes()).and_then(|()| stdout.flush()) {
            Ok(()) => Delivery::Delivered,
            Err(err) => Delivery::Retry { after: None, reason: err.to_string() },
        }
    }
}

/// Appends each row as one JSON line to a file.
pub struct FileSink {
    path: PathBuf,
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn deliver(&mut self, batch: &Batch) -> Delivery {
        let lines = ndjson_lines(batch);
        let result = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(lines.as_bytes()).and_then(|()| file.sync_data()));
        match result {
            Ok(()) => Delivery::Delivered,
            Err(err) => Delivery::Retry { after: None, reason: format!("{}: {err}", self.path.display()) },
        }
    }
}

/// One line per row with `Type` added, cut from the batch body without
/// parsing it: the body is a JSON array of objects the batcher wrote, so
/// splitting at top-level commas (outside strings) is exact. Hand-written
/// because a parse and re-serialisation doubled the cost of this sink.
fn ndjson_lines(batch: &Batch) -> String {
    let body = &batch.body;
    let type_field = format!("{{\"Type\":{},", Json::String(format!("{}_CL", batch.table)));
    let mut out = String::with_capacity(body.len() + batch.rows * type_field.len());
    let (mut depth, mut in_string, mut escaped, mut start) = (0usize, false, false, None);
    for (index, &byte) in body.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth == 2 && byte == b'{' {
                    start = Some(index);
                }
            }
            b'}' | b']' => {
                if depth == 2 && byte == b'}' {
                    if let Some(begin) = start.take() {
                        let row = String::from_utf8_lossy(&body[begin + 1..=index]);
                        if row == "}" {
                            out.push_str(&type_field[..type_field.len() - 1]);
                            out.push('}');
                        } else {
                            out.push_str(&type_field);
                            out.push_str(&row);
                        }
                        out.push('\n');
                    }
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_collector_settings(extra: &str) -> SinkSettings {
        let text = format!(
            "type = \"data_collector\"\nworkspace_id = \"ws\"\nworkspace_key = \"a2V5\"\n\
             log_type = \"%{{[@metadata][table]}}\"\n{extra}"
        );
        let mut options = Options::new(toml::from_str::<toml::Table>(&text).unwrap(), "sink[0]");
        let (_, settings) = build_sink(&mut options).unwrap();
        options.finish().unwrap();
        settings
    }

    #[test]
    fn data_collector_sinks_write_standard_tables_unless_told_not_to() {
        let settings = data_collector_settings("");
        for table in ["Syslog", "CommonSecurityLog", "Heartbeat"] {
            assert!(settings.writes_standard_table(table), "{table}");
            assert_eq!(settings.time_field_for(table), STANDARD_TIME_FIELD);
        }
        for table in ["AgentApp", "syslog", "Syslog_CL", "WatchpostDeadLetter"] {
            assert!(!settings.writes_standard_table(table), "{table}");
            assert_eq!(settings.time_field_for(table), "EventTime");
        }
        let settings = data_collector_settings("standard_tables = false\ntime_field = \"When\"");
        assert!(!settings.writes_standard_table("Syslog"));
        assert_eq!(settings.time_field_for("Syslog"), "When");
        let mut options = Options::new(toml::from_str("type = \"stdout\"").unwrap(), "sink[0]");
        assert!(!build_sink(&mut options).unwrap().1.writes_standard_table("Syslog"));
    }

    #[test]
    fn ndjson_lines_add_type_without_reparsing() {
        let body = br#"[{"a":"x,}{\"y"},{},{"n":[1,{"b":2}]}]"#.to_vec();
        let batch = Batch { table: "T".into(), rows: 3, body, idempotency_key: "k".into() };
        let lines = ndjson_lines(&batch);
        let parsed: Vec<Json> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0], serde_json::json!({"Type": "T_CL", "a": "x,}{\"y"}));
        assert_eq!(parsed[1], serde_json::json!({"Type": "T_CL"}));
        assert_eq!(parsed[2], serde_json::json!({"Type": "T_CL", "n": [1, {"b": 2}]}));
    }
}
