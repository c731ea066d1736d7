//! `watchpost upload`: the Upload-AzMonitorLog use case (ingestion spec 3)
//! done properly: CSV, JSON or NDJSON from files or stdin, sent through the
//! HTTP Data Collector API in batches under its limits, with retries, a
//! progress bar on a terminal, a summary, and a reject file.

mod input;

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value as Json};
use watchpost_connectors::data_collector::{MAX_POST_BYTES, TARGET_POST_BYTES};
use watchpost_connectors::{host, DataCollectorClient, PostOptions, PostOutcome, RetryPolicy, SharedKey};

use self::input::{InputFormat, Record};

#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// Input files (CSV with a header row, a JSON array, or NDJSON); `-` or
    /// none reads stdin.
    inputs: Vec<PathBuf>,
    /// Workspace id (GUID).
    #[arg(long)]
    workspace_id: String,
    /// The workspace's primary or secondary shared key (base64).
    #[arg(long, env = "WATCHPOST_WORKSPACE_KEY", hide_env_values = true)]
    workspace_key: String,
    /// Log type: the rows land in `<LOG_TYPE>_CL`.
    #[arg(long)]
    log_type: String,
    /// Adds `Computer` = this machine's name to every row.
    #[arg(long)]
    add_computer_name: bool,
    /// Azure resource id sent as `x-ms-AzureResourceId` (fills `_ResourceId`).
    #[arg(long)]
    tagged_resource_id: Option<String>,
    /// Name of the tag property added to every row when --tag-value is set.
    #[arg(long, default_value = "DataTagging")]
    tag_name: String,
    /// Value of the tag property; no tag is added when absent or empty.
    #[arg(long)]
    tag_value: Option<String>,
    /// A field of each row whose value becomes TimeGenerated.
    #[arg(long)]
    time_field: Option<String>,
    /// Base URL of the Data Collector API: a Watchpost server, or
    /// `https://<workspace-id>.ods.opinsights.azure.com` for Azure.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    endpoint: String,
    /// Input format; `auto` decides by file extension, or for stdin by the
    /// first character (`[` JSON array, `{` NDJSON, else CSV).
    #[arg(long, value_enum, default_value = "auto")]
    format: InputFormat,
    /// Where rows that were not accepted go (NDJSON: source, reason, row).
    /// Default: `<first input>.rejected.ndjson`, or
    /// `watchpost-upload.rejected.ndjson` for stdin.
    #[arg(long)]
    reject_file: Option<PathBuf>,
    /// Largest request body in bytes (at most the API's 30 MB).
    #[arg(long, default_value_t = TARGET_POST_BYTES)]
    batch_bytes: usize,
    /// Most rows per request.
    #[arg(long, default_value_t = 50_000)]
    batch_rows: usize,
    /// Attempts per batch on 429, 5xx and network errors.
    #[arg(long, default_value_t = 6)]
    max_attempts: u32,
}

pub(crate) fn run(args: UploadArgs) -> anyhow::Result<ExitCode> {
    validate_args(&args)?;
    let key = SharedKey::new(&args.workspace_id, &args.workspace_key).map_err(anyhow::Error::msg)?;
    let client = DataCollectorClient::new(&args.endpoint, key);
    let mut extra = Map::new();
    if args.add_computer_name {
        extra.insert("Computer".to_string(), Json::String(host::computer_name()));
    }
    if let Some(value) = args.tag_value.as_deref().filter(|value| !value.is_empty()) {
        extra.insert(args.tag_name.clone(), Json::String(value.to_string()));
    }
    let reject_path = args.reject_file.clone().unwrap_or_else(|| default_reject_path(&args.inputs));
    let mut upload = Upload {
        client: &client,
        args: &args,
        extra,
        batch: Batch::default(),
        rejects: Rejects::new(reject_path),
        progress: progress_bar(),
        accepted: 0,
        batches: 0,
    };
    let started = Instant::now();
    let inputs = if args.inputs.is_empty() { vec![PathBuf::from("-")] } else { args.inputs.clone() };
    for path in &inputs {
        let records = input::read(path, args.format).with_context(|| format!("reading {}", path.display()))?;
        for record in records {
            upload.add(record?)?;
        }
    }
    upload.flush()?;
    upload.progress.finish_and_clear();
    upload.summary(started.elapsed())
}

fn validate_args(args: &UploadArgs) -> anyhow::Result<()> {
    let log_type = &args.log_type;
    if log_type.is_empty() || log_type.len() > 100 || !log_type.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("--log-type must be 1 to 100 letters, digits or underscores, got {log_type:?}");
    }
    if args.batch_bytes < 1024 || args.batch_bytes > MAX_POST_BYTES {
        bail!("--batch-bytes must be between 1024 and {MAX_POST_BYTES}");
    }
    if args.batch_rows == 0 {
        bail!("--batch-rows must be at least 1");
    }
    if args.max_attempts == 0 {
        bail!("--max-attempts must be at least 1");
    }
    Ok(())
}

fn default_reject_path(inputs: &[PathBuf]) -> PathBuf {
    match inputs.first() {
        Some(path) if path.as_os_str() != "-" => {
            let mut name = path.as_os_str().to_owned();
            name.push(".rejected.ndjson");
            PathBuf::from(name)
        }
        _ => PathBuf::from("watchpost-upload.rejected.ndjson"),
    }
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows sent ({per_sec}) {msg}")
            .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Rows waiting for the next POST: the JSON array body and where each row
/// came from (for the reject file).
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    rows: Vec<(String, Map<String, Json>)>,
}

struct Upload<'a> {
    client: &'a DataCollectorClient,
    args: &'a UploadArgs,
    extra: Map<String, Json>,
    batch: Batch,
    rejects: Rejects,
    progress: ProgressBar,
    accepted: u64,
    batches: u64,
}

impl Upload<'_> {
    fn add(&mut self, record: Record) -> anyhow::Result<()> {
        let mut row = match record.row {
            Ok(row) => row,
            Err(reason) => return self.rejects.write(&record.source, &reason, &Json::String(record.raw)),
        };
        for (name, value) in &self.extra {
            row.insert(name.clone(), value.clone());
        }
        let encoded = serde_json::to_vec(&row).expect("a JSON map always serialises");
        if encoded.len() + 2 > self.args.batch_bytes {
            let reason = format!("the row is {} bytes, more than one request may carry", encoded.len());
            return self.rejects.write(&record.source, &reason, &Json::Object(row));
        }
        let full_bytes = self.batch.body.len() + encoded.len() + 2 > self.args.batch_bytes;
        if full_bytes || self.batch.rows.len() >= self.args.batch_rows {
            self.flush()?;
        }
        self.batch.body.push(if self.batch.body.is_empty() { b'[' } else { b',' });
        self.batch.body.extend_from_slice(&encoded);
        self.batch.rows.push((record.source, row));
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.rows.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.body.push(b']');
        let idempotency_key = uuid::Uuid::new_v4().to_string();
        let options = PostOptions {
            log_type: &self.args.log_type,
            time_field: self.args.time_field.as_deref(),
            resource_id: self.args.tagged_resource_id.as_deref(),
            idempotency_key: Some(&idempotency_key),
            gzip: false,
            standard_table: false,
        };
        let policy = RetryPolicy::bounded(self.args.max_attempts);
        let progress = self.progress.clone();
        let outcome = self.client.post_with_retries(&batch.body, &options, &policy, &mut |outcome, wait| {
            let message = match outcome {
                PostOutcome::Retryable { message, .. } => message.as_str(),
                _ => "",
            };
            progress.suspend(|| eprintln!("retrying in {:.1}s: {message}", wait.as_secs_f64()));
            true
        });
        self.batches += 1;
        match outcome {
            PostOutcome::Accepted => {
                self.accepted += batch.rows.len() as u64;
                self.progress.inc(batch.rows.len() as u64);
            }
            PostOutcome::Retryable { message, .. } | PostOutcome::Rejected { message, .. } => {
                self.progress.suspend(|| eprintln!("batch of {} rows not accepted: {message}", batch.rows.len()));
                for (source, row) in batch.rows {
                    self.rejects.write(&source, &message, &Json::Object(row))?;
                }
            }
        }
        Ok(())
    }

    fn summary(mut self, elapsed: Duration) -> anyhow::Result<ExitCode> {
        let rejected = self.rejects.count;
        let rate = self.accepted as f64 / elapsed.as_secs_f64().max(1e-6);
        let table = format!("{}_CL", self.args.log_type);
        eprintln!(
            "uploaded {} rows to {table} in {} requests, {:.1}s ({rate:.0} rows/s); {rejected} rejected",
            self.accepted,
            self.batches,
            elapsed.as_secs_f64()
        );
        self.rejects.finish()?;
        if rejected > 0 {
            eprintln!("rejected rows written to {}", self.rejects.path.display());
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The reject file, created on the first rejected row.
struct Rejects {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    count: u64,
}

impl Rejects {
    fn new(path: PathBuf) -> Rejects {
        Rejects { path, writer: None, count: 0 }
    }

    fn write(&mut self, source: &str, reason: &str, row: &Json) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let file = File::create(&self.path).with_context(|| format!("creating {}", self.path.display()))?;
            self.writer = Some(BufWriter::new(file));
        }
        let writer = self.writer.as_mut().expect("created above");
        let line = serde_json::json!({"source": source, "reason": reason, "row": row});
        serde_json::to_writer(&mut *writer, &line)?;
        writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }
}
