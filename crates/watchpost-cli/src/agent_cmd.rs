//! `watchpost agent`: the Log Analytics agent preset (agent spec): custom
//! log files, a syslog/CEF listener on one port for UDP and TCP, and a
//! heartbeat, shipped through the Data Collector sink with a disk buffer.
//! Syslog, CEF and heartbeat rows go to the standard `Syslog`,
//! `CommonSecurityLog` and `Heartbeat` tables (the sink sends
//! `x-watchpost-standard-table: true`); file tables go to `<Name>_CL`.
//! `--config` takes a pipeline document instead of the flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use toml::Value;
use watchpost_connectors::host;
use watchpost_connectors::runner::{self, RunOptions};
use watchpost_connectors::stats::Stats;
use watchpost_pipeline::PipelineConfig;

use crate::pipeline_cmd::{init_logging, load, watch_signals};

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// A pipeline document (TOML) instead of the flags below.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data Collector API base URL (a Watchpost, or
    /// `https://WORKSPACE_ID.ods.opinsights.azure.com`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    endpoint: String,
    #[arg(long)]
    workspace_id: Option<String>,
    #[arg(long, env = "WATCHPOST_WORKSPACE_KEY", hide_env_values = true)]
    workspace_key: Option<String>,
    /// Syslog and CEF listener, UDP and TCP on the same port (repeatable).
    #[arg(long)]
    syslog_listen: Vec<String>,
    /// Syslog over TLS (RFC 5425) on this address (repeatable); needs
    /// --tls-cert-file and --tls-key-file.
    #[arg(long)]
    syslog_tls_listen: Vec<String>,
    /// PEM certificate chain (leaf first) the TLS listeners present.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// Take only TLS clients with a certificate this CA (PEM) issued.
    #[arg(long)]
    tls_client_ca_file: Option<PathBuf>,
    /// `GLOB=TABLE`: lines of matching files into `<TABLE>_CL` (repeatable).
    #[arg(long)]
    file: Vec<String>,
    /// Multi-line records: newline, timestamp, java or regex:PATTERN.
    #[arg(long, default_value = "newline")]
    record_start: String,
    /// Checkpoints and the disk buffer.
    #[arg(long, default_value = "./watchpost-agent-data")]
    data_dir: PathBuf,
    /// Seconds between Heartbeat rows (0 turns them off).
    #[arg(long, default_value_t = 60)]
    heartbeat_interval_secs: u64,
    /// Longest time a record waits in memory before it is buffered (ms).
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Serve Prometheus counters on http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<String>,
}

pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = match &args.config {
        Some(path) => load(path)?,
        None => flags_config(&args)?,
    };
    let pipeline = config.compile_with(Some(&crate::kql_step::EngineKql))?;
    let plan = runner::plan(&config)?;
    let options = RunOptions {
        data_dir: args.data_dir.clone(),
        flush_interval: Duration::from_millis(args.flush_interval_ms),
        max_buffer_bytes: 1 << 30,
        drain_timeout: Duration::from_secs(5),
        computer: host::computer_name(),
        heartbeat: (args.heartbeat_interval_secs > 0).then(|| Duration::from_secs(args.heartbeat_interval_secs)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let stats = Arc::new(Stats::default());
    if let Some(listen) = &args.metrics_listen {
        crate::metrics_endpoint::serve(listen, pipeline.name.clone(), stats.clone())?;
    }
    tracing::info!(data_dir = %options.data_dir.display(), "AgentStarted");
    runner::run(&pipeline, plan, &options, &stop, &stats).context("running the agent")?;
    tracing::info!("AgentStopped");
    Ok(ExitCode::SUCCESS)
}

/// The pipeline the flags describe, built as a TOML document so that it
/// goes through the same checks as a file.
fn flags_config(args: &AgentArgs) -> anyhow::Result<PipelineConfig> {
    let (Some(workspace_id), Some(workspace_key)) = (&args.workspace_id, &args.workspace_key) else {
        bail!("--workspace-id and --workspace-key are required without --config");
    };
    if args.syslog_listen.is_empty() && args.syslog_tls_listen.is_empty() && args.file.is_empty() {
        bail!("nothing to collect: give --syslog-listen, --syslog-tls-listen and/or --file GLOB=TABLE");
    }
    let mut sources = Vec::new();
    for (index, listen) in args.syslog_listen.iter().enumerate() {
        sources.push(table([
            ("type", Value::from("syslog")),
            ("id", Value::from(format!("syslog{index}"))),
            ("listen", Value::from(listen.as_str())),
        ]));
    }
    for (index, listen) in args.syslog_tls_listen.iter().enumerate() {
        let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) else {
            bail!("--syslog-tls-listen needs --tls-cert-file and --tls-key-file");
        };
        let mut source = vec![
            ("type", Value::from("syslog")),
            ("id", Value::from(format!("syslog-tls{index}"))),
            ("tls_listen", Value::from(listen.as_str())),
            ("tls_cert_file", Value::from(cert.display().to_string())),
            ("tls_key_file", Value::from(key.display().to_string())),
        ];
        if let Some(ca) = &args.tls_client_ca_file {
            source.push(("tls_client_ca_file", Value::from(ca.display().to_string())));
        }
        sources.push(Value::Table(source.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    }
    for (index, spec) in args.file.iter().enumerate() {
        let Some((glob, name)) = spec.rsplit_once('=') else {
            bail!("--file {spec:?}: expected GLOB=TABLE");
        };
        let log_type = name.strip_suffix("_CL").unwrap_or(name);
        sources.push(table([
            ("type", Value::from("file")),
            ("id", Value::from(format!("file{index}"))),
            ("paths", Value::Array(vec![Value::from(glob)])),
            ("table", Value::from(log_type)),
            ("record_start", Value::from(args.record_start.as_str())),
        ]));
    }
    let sink = table([
        ("type", Value::from("data_collector")),
        ("endpoint", Value::from(args.endpoint.as_str())),
        ("workspace_id", Value::from(workspace_id.as_str())),
        ("workspace_key", Value::from(workspace_key.as_str())),
        ("log_type", Value::from("%{[@metadata][table]}")),
    ]);
    let document =
        table([("name", Value::from("agent")), ("source", Value::Array(sources)), ("sink", Value::Array(vec![sink]))]);
    let text = toml::to_string(&document).context("building the agent pipeline")?;
    Ok(PipelineConfig::from_toml(&text)?)
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
