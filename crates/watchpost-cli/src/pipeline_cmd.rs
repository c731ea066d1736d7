//! `watchpost pipeline run|test|validate`: runs a TOML pipeline (sources
//! → transforms → sinks), tests its transforms on sample input, or checks
//! it without running it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::kql_step::EngineKql;
use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use watchpost_connectors::host;
use watchpost_connectors::runner::{self, RunOptions};
use watchpost_connectors::stats::Stats;
use watchpost_pipeline::{Event, PipelineConfig, Processed};

#[derive(Debug, Subcommand)]
pub(crate) enum PipelineCommand {
    /// Runs a pipeline until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Runs each input line through the transforms and prints the event,
    /// or why it was dropped or dead-lettered.
    Test(TestArgs),
    /// Checks a pipeline (transforms, sources, sinks) without running it.
    Validate(ValidateArgs),
    /// Sends this pipeline's dead letters (their RawEvent, as a line)
    /// through the pipeline again, to its sinks.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    config: PathBuf,
    /// Query API base URL of the workspace holding WatchpostDeadLetter_CL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Workspace id.
    #[arg(long)]
    workspace: String,
    /// A key of the workspace (sent as a bearer token).
    #[arg(long, env = "WATCHPOST_KEY", hide_env_values = true)]
    key: String,
    /// ISO 8601 duration limiting which dead letters are replayed, e.g. PT1H.
    #[arg(long, default_value = "P1D")]
    timespan: String,
    /// Only dead letters of this step (e.g. `transform[0] (grok)`).
    #[arg(long)]
    step: Option<String>,
    /// Disk buffer for the replay (default: ./watchpost-pipeline-data/NAME-replay).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    config: PathBuf,
    /// Checkpoints and the disk buffer (default: `data_dir` of the config,
    /// else ./watchpost-pipeline-data/NAME).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Longest time a record waits in memory before it is buffered (ms).
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
    /// Reading pauses while the disk buffer holds more than this (bytes).
    #[arg(long, default_value_t = 1 << 30)]
    max_buffer_bytes: u64,
    /// How long to keep delivering after a stop request (ms).
    #[arg(long, default_value_t = 5000)]
    drain_timeout_ms: u64,
    /// Serve Prometheus counters on http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    config: PathBuf,
    /// Input lines (`-` for stdin).
    #[arg(long)]
    input: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    config: PathBuf,
}

pub(crate) fn run(command: PipelineCommand) -> anyhow::Result<ExitCode> {
    match command {
        PipelineCommand::Run(args) => run_pipeline(args),
        PipelineCommand::Test(args) => test(args),
        PipelineCommand::Validate(args) => validate(args),
        PipelineCommand::Replay(args) => replay(args),
    }
}

/// Reads a pipeline document: TOML, or Logstash's language for `.conf`.
pub(crate) fn load(path: &Path) -> anyhow::Result<PipelineConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "conf") {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline");
        watchpost_pipeline::logstash_conf::parse(&text, name)
    } else {
        PipelineConfig::from_toml(&text)
    };
    parsed.with_context(|| format!("in {}", path.display()))
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let checked = config.compile_with(Some(&EngineKql)).and_then(|_| runner::plan(&config));
    match checked {
        Ok(plan) => {
            println!(
                "pipeline {:?} is valid: {} sources, {} transforms, {} sinks",
                config.name,
                plan.source_count(),
                config.transforms.len(),
                plan.sinks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{}: {err}", args.config.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let pipeline = match config.compile_with(Some(&EngineKql)) {
        Ok(pipeline) => pipeline,
        Err(err) => {
            eprintln!("{}: {err}", args.config.display());
            return Ok(ExitCode::from(1));
        }
    };
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(BufReader::new(file))
    };
    let mut stdout = std::io::stdout().lock();
    // A batched pipeline (a `kql` step) sees the lines in chunks, as the
    // runner gives them; the others one at a time.
    let chunk = if pipeline.batched() { 4096 } else { 1 };
    let mut events = Vec::with_capacity(chunk);
    let mut number = 0;
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose().with_context(|| format!("reading {}", args.input.display()))?;
        if let Some(line) = &line {
            let line = line.strip_suffix('\r').unwrap_or(line);
            events.push(Event::from_message(line, Utc::now()));
        }
        if events.len() < chunk && line.is_some() {
            continue;
        }
        for processed in pipeline.process_batch(std::mem::take(&mut events)) {
            number += 1;
            match processed {
                Processed::Event(event) => writeln!(stdout, "{number}: {}", Json::Object(event.fields))?,
                Processed::Dropped { step, reason } => writeln!(stdout, "{number}: dropped at {step}: {reason}")?,
                Processed::DeadLetter { step, reason, .. } => {
                    writeln!(stdout, "{number}: dead letter at {step}: {reason}")?
                }
            }
        }
        if line.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn run_pipeline(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = load(&args.config)?;
    let pipeline = config.compile_with(Some(&EngineKql)).with_context(|| format!("in {}", args.config.display()))?;
    let plan = runner::plan(&config).with_context(|| format!("in {}", args.config.display()))?;
    let data_dir = args
        .data_dir
        .or_else(|| config.data_dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./watchpost-pipeline-data").join(&config.name));
    let options = RunOptions {
        data_dir,
        flush_interval: Duration::from_millis(args.flush_interval_ms),
        max_buffer_bytes: args.max_buffer_bytes,
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        computer: host::computer_name(),
        heartbeat: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let stats = Arc::new(Stats::default());
    if let Some(listen) = &args.metrics_listen {
        crate::metrics_endpoint::serve(listen, pipeline.name.clone(), stats.clone())?;
    }
    tracing::info!(pipeline = %pipeline.name, data_dir = %options.data_dir.display(), "PipelineStarted");
    runner::run(&pipeline, plan, &options, &stop, &stats).context("running the pipeline")?;
    tracing::info!(pipeline = %pipeline.name, "PipelineStopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WATCHPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Sets `stop` on SIGINT or SIGTERM (a small runtime on its own thread).
pub(crate) fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        runtime.block_on(async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        });
        stop.store(true, Ordering::Relaxed);
    })?;
    Ok(())
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = load(&args.config)?;
    let pipeline = config.compile_with(Some(&EngineKql)).with_context(|| format!("in {}", args.config.display()))?;
    let mut plan = runner::plan(&config).with_context(|| format!("in {}", args.config.display()))?;
    let quote = |text: &str| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut query = format!("WatchpostDeadLetter_CL | where Pipeline_s == {}", quote(&config.name));
    if let Some(step) = &args.step {
        query.push_str(&format!(" | where Step_s == {}", quote(step)));
    }
    query.push_str(" | sort by TimeGenerated asc | project RawEvent_s");
    let url = format!("{}/v1/workspaces/{}/query", args.url.trim_end_matches('/'), args.workspace);
    let body = serde_json::json!({"query": query, "timespan": args.timespan});
    let response = ureq::post(&url)
        .set("Authorization", &format!("Bearer {}", args.key))
        .send_json(body)
        .map_err(|err| anyhow::anyhow!("querying dead letters at {url}: {err}"))?;
    let payload: Json = response.into_json().context("reading the query response")?;
    let lines: Vec<String> = payload["tables"][0]["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_string))
        .collect();
    eprintln!("replaying {} dead letters of pipeline {:?}", lines.len(), config.name);
    if lines.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    plan.files.clear();
    plan.syslogs.clear();
    plan.https.clear();
    plan.stdins.clear();
    plan.execs.clear();
    plan.replay = Some(lines);
    let options = RunOptions {
        data_dir: args
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./watchpost-pipeline-data").join(format!("{}-replay", config.name))),
        flush_interval: Duration::from_millis(200),
        max_buffer_bytes: 1 << 30,
        drain_timeout: Duration::from_secs(60),
        computer: host::computer_name(),
        heartbeat: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let stats = Arc::new(Stats::default());
    runner::run(&pipeline, plan, &options, &stop, &stats).context("replaying")?;
    let sent = stats.sent.load(Ordering::Relaxed);
    let dead = stats.dead_letters.load(Ordering::Relaxed);
    eprintln!("replay done: {sent} rows sent, {dead} failed again (back in WatchpostDeadLetter_CL)");
    Ok(ExitCode::SUCCESS)
}
