//! `watchpost-bench`: benchmarks that print figures.
//!
//! Suite `decode`: the Data Collector body decoder alone, in process, one
//! core, over the kit's batches: MB/s per run and the median.
//!
//! Suite `flush`: the storage side alone, in process: the kit's batches are
//! decoded and appended (untimed, WAL fsync off), then one flush writes
//! them to Parquet segments with their term filters; wall and process CPU
//! seconds per run and the median MB/s of the posted JSON they stand for.
//!
//! Suite `logs-ingestion` (module [`logs_ingestion`]): the Logs Ingestion
//! API with and without a transform, beside the Data Collector API.
//!
//! Suite `ingest`: drives a real `watchpost` binary over HTTP, measured side
//! by side with peer engines: replays the Data Collector batches made by
//! `shared/bench/gen_events.py` (`events-<size>.batches.jsonl`) through
//! `POST /api/logs` with WAL fsync on, and reports events/s, MB/s and the
//! server's peak RSS per run and their medians; then measures the time from
//! a 200 to the rows being returned by a query. With `--peer-script` it runs
//! DuckDB's NDJSON load (`run_peers.py --ingest-only`) before each run, so
//! both are measured on the same machine state, and prints the ratio.

mod logs_ingestion;
mod queries;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value as Json};

const WORKSPACE: &str = "b0b0b0b0-0000-4000-8000-00000000be4c";
const KEY: &[u8] = b"watchpost-benchmark-shared-key!!";

#[derive(Debug, Parser)]
#[command(about = "Watchpost benchmarks")]
enum Suite {
    /// End-to-end ingest over HTTP, beside DuckDB.
    Ingest(Args),
    /// The Data Collector decoder alone.
    Decode(DecodeArgs),
    /// Flushing decoded rows to Parquet segments and term filters.
    Flush(DecodeArgs),
    /// The kit's hunting queries over HTTP, beside DuckDB.
    Queries(queries::QueryArgs),
    /// Logs Ingestion API with and without a transform, beside the Data Collector API.
    LogsIngestion(logs_ingestion::LogsIngestionArgs),
}

#[derive(Debug, clap::Args)]
struct DecodeArgs {
    /// Data Collector batches, one JSON array per line.
    #[arg(long)]
    batches: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Path of the watchpost binary (a release build).
    #[arg(long, default_value = "target/release/watchpost")]
    bin: PathBuf,
    /// Data Collector batches, one JSON array per line.
    #[arg(long)]
    batches: PathBuf,
    /// Timed runs; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Posts used to measure 200-to-queryable latency.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// `run_peers.py` of the benchmark kit: run DuckDB's ingest beside ours.
    #[arg(long)]
    peer_script: Option<PathBuf>,
    /// Python with duckdb installed, for the peer script.
    #[arg(long, default_value = "python3")]
    peer_python: PathBuf,
    /// Folder with events-SIZE.ndjson for the peer script.
    #[arg(long)]
    peer_data: Option<PathBuf>,
    #[arg(long, default_value = "1m")]
    peer_size: String,
    /// Where temporary data directories go.
    #[arg(long, default_value = "/tmp")]
    work: PathBuf,
    /// A `watchpost serve` TOML config for the server under test.
    #[arg(long)]
    server_config: Option<PathBuf>,
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &PathBuf, data_dir: &PathBuf, config: Option<&PathBuf>) -> anyhow::Result<Server> {
        let mut command = Command::new(bin);
        if let Some(config) = config {
            command.arg("serve").arg("--config").arg(config);
        } else {
            command.arg("serve");
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--workspace")
            .arg(format!("{WORKSPACE}={}", base64::engine::general_purpose::STANDARD.encode(KEY)))
            .env("WATCHPOST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else { bail!("server exited before listening") };
            let line = line?;
            if let Some(url) = line.strip_prefix("Watchpost is listening on ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, url })
    }

    fn rss_bytes(&self) -> u64 {
        rss_bytes(self.child.id())
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// CPU time (user + system) process `pid` has used, in seconds; 0 when it cannot be read.
///
/// Wall-clock rates on a shared 2-core machine swing with whatever else runs; the server's
/// CPU seconds per megabyte do not, so A/B comparisons of the server use this.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_second.max(1.0)
}

/// A server left behind by an error is killed, not orphaned.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of process `pid` (VmRSS), 0 when it cannot be read.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn post(agent: &ureq::Agent, url: &str, log_type: &str, body: &[u8]) -> anyhow::Result<()> {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let auth = watchpost_ingest::data_collector::authorization(WORKSPACE, KEY, body.len(), "application/json", &date);
    let response = agent
        .post(&format!("{url}/api/logs?api-version=2016-04-01"))
        .set("Authorization", &auth)
        .set("Content-Type", "application/json")
        .set("Log-Type", log_type)
        .set("x-ms-date", &date)
        .set("time-generated-field", TIME_FIELD)
        .send_bytes(body);
    match response {
        Ok(response) if response.status() == 200 => Ok(()),
        Ok(response) => bail!("unexpected status {}", response.status()),
        Err(err) => bail!("post failed: {err}"),
    }
}

struct IngestRun {
    seconds: f64,
    /// CPU seconds the server used during the run.
    server_cpu: f64,
    events: u64,
    bytes: u64,
    peak_rss: u64,
}

fn ingest_run(args: &Args, batches: &Arc<Vec<(usize, Vec<u8>)>>, run: usize) -> anyhow::Result<IngestRun> {
    let data_dir = args.work.join(format!("watchpost-bench-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = Server::start(&args.bin, &data_dir, args.server_config.as_ref())?;
    let next = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(server.rss_bytes()));
    let pid = server.child.id();
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (batches, next, events, url) = (batches.clone(), next.clone(), events.clone(), server.url.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build();
                loop {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let Some((n_events, body)) = batches.get(idx) else { return Ok(()) };
                    post(&agent, &url, "Events", body)?;
                    events.fetch_add(*n_events as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu_before;
    done.store(true, Ordering::Relaxed);
    sampler.join().ok();
    let peak_rss = peak.load(Ordering::Relaxed).max(server.rss_bytes());
    let bytes = batches.iter().map(|(_, body)| body.len() as u64).sum();
    server.stop()?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(IngestRun { seconds, server_cpu, events: events.load(Ordering::Relaxed), bytes, peak_rss })
}

/// Posts single events and times how long after the 200 a query returns them.
fn latency_run(args: &Args) -> anyhow::Result<Vec<f64>> {
    let data_dir = args.work.join(format!("watchpost-bench-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = Server::start(&args.bin, &data_dir, args.server_config.as_ref())?;
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let mut samples = Vec::new();
    for idx in 0..args.latency_samples {
        let marker = format!("probe-{idx}");
        let body = serde_json::to_vec(&json!([{"Marker": marker, "N": idx}]))?;
        post(&agent, &server.url, "Probe", &body)?;
        let acknowledged = Instant::now();
        loop {
            let query = format!("Probe_CL | where Marker_s == '{marker}' | count");
            let response: Json = agent
                .post(&format!("{}/v1/workspaces/{WORKSPACE}/query", server.url))
                .set("Authorization", &format!("Bearer {key}"))
                .send_json(json!({ "query": query }))?
                .into_json()?;
            if response["tables"][0]["rows"][0][0].as_u64() == Some(1) {
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(10) {
                bail!("event {marker} not queryable 10 s after its 200");
            }
        }
        samples.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(samples)
}

/// Runs DuckDB's NDJSON ingest once; returns its MB/s.
fn peer_run(args: &Args, script: &PathBuf) -> anyhow::Result<f64> {
    let data = args.peer_data.as_ref().context("--peer-data is required with --peer-script")?;
    let out = args.work.join(format!("watchpost-bench-peer-{}.json", std::process::id()));
    let work = args.work.join(format!("watchpost-bench-peer-{}", std::process::id()));
    let status = Command::new(&args.peer_python)
        .arg(script)
        .args(["--engines", "duckdb", "--ingest-only", "--sizes", &args.peer_size, "--data"])
        .arg(data)
        .arg("--work")
        .arg(&work)
        .arg("--out")
        .arg(&out)
        .status()
        .context("running the peer script")?;
    if !status.success() {
        bail!("peer script failed");
    }
    let results: Json = serde_json::from_slice(&std::fs::read(&out)?)?;
    let _ = std::fs::remove_dir_all(&work);
    let ingest = &results["ingest"][0];
    let (bytes, wall) = (ingest["input_bytes"].as_f64(), ingest["wall"].as_f64());
    match (bytes, wall) {
        (Some(bytes), Some(wall)) if wall > 0.0 => Ok(bytes / wall / 1e6),
        _ => bail!("peer script reported no ingest figures: {ingest}"),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let idx = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[idx]
}

fn main() -> anyhow::Result<()> {
    match Suite::parse() {
        Suite::Ingest(args) => ingest(args),
        Suite::Decode(args) => decode(args),
        Suite::Flush(args) => flush(args),
        Suite::Queries(args) => queries::queries(args),
        Suite::LogsIngestion(args) => logs_ingestion::run(args),
    }
}

/// The kit's records carry a `TimeGenerated` property, which the Data
/// Collector API reserves (Azure answers 400 `InvalidDataFormat`). The bench
/// renames it to a name of the same length and names that one in the
/// `time-generated-field` header, so the bytes posted stay the same size.
const TIME_FIELD: &str = "EventTime_Utc";

/// Reads the kit's batches file: one JSON array (a POST body) per line,
/// with the reserved `TimeGenerated` property renamed to [`TIME_FIELD`].
fn read_batches(path: &PathBuf) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(text)?.replace("\"TimeGenerated\":", &format!("\"{TIME_FIELD}\":")).into_bytes();
    let mut batches = Vec::new();
    for line in text.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
        let n_events = serde_json::from_slice::<Vec<serde_json::value::Value>>(line)?.len();
        batches.push((n_events, line.to_vec()));
    }
    Ok(batches)
}

/// CPU time of the calling thread (user + system), from /proc: on a busy
/// shared machine it moves far less than wall time, so A/B runs of the
/// single-threaded decoder compare on it. 0 where /proc is unavailable.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |idx: usize| fields.get(idx).and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here; the
    // kernel reports them in USER_HZ, which is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// A kit batch as a validated Data Collector post to `Events_CL`.
fn bench_post(body: &[u8]) -> watchpost_ingest::data_collector::ValidatedPost<'_> {
    watchpost_ingest::data_collector::ValidatedPost {
        workspace_id: WORKSPACE.to_string(),
        table: "Events_CL".to_string(),
        table_kind: watchpost_ingest::data_collector::TableKind::Custom,
        time_generated_field: Some(TIME_FIELD.to_string()),
        resource_id: None,
        body: std::borrow::Cow::Borrowed(body),
    }
}

/// Per-run MB/s and MB per CPU-second of the in-process suites.
#[derive(Default)]
struct Rates {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Rates {
    /// Records a run over `bytes` and returns its two rates.
    fn record(&mut self, bytes: usize, seconds: f64, cpu_seconds: f64) -> (f64, f64) {
        let (rate, cpu_rate) = (bytes as f64 / seconds / 1e6, bytes as f64 / cpu_seconds / 1e6);
        self.wall.push(rate);
        self.cpu.push(cpu_rate);
        (rate, cpu_rate)
    }

    /// Prints the medians as the suite's JSON line.
    fn print(mut self, suite: &str) {
        let runs = self.wall.len();
        println!(
            "{}",
            json!({"suite": suite, "runs": runs, "median_mb_per_s": median(&mut self.wall),
                   "median_mb_per_cpu_s": median(&mut self.cpu)})
        );
    }
}

fn decode(args: DecodeArgs) -> anyhow::Result<()> {
    use watchpost_ingest::data_collector::decode;
    let batches = read_batches(&args.batches)?;
    let bytes: usize = batches.iter().map(|(_, body)| body.len()).sum();
    let mut rates = Rates::default();
    for run in 0..args.runs {
        let mut schema = watchpost_schema::TableSchema::default();
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        let mut rows = 0;
        for (_, body) in &batches {
            let post = bench_post(body);
            let decoded = decode(&post, &schema, chrono::Utc::now()).map_err(|err| anyhow::anyhow!(err.message))?;
            schema.columns.extend(decoded.new_columns);
            rows += decoded.n_rows;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = thread_cpu_seconds() - cpu_started;
        let (rate, cpu_rate) = rates.record(bytes, seconds, cpu_seconds);
        println!(
            "decode run {run}: {rows} rows, {:.0} MB in {seconds:.2}s = {rate:.0} MB/s; {cpu_seconds:.2} CPU-s = {cpu_rate:.0} MB per CPU-s",
            bytes as f64 / 1e6
        );
    }
    rates.print("decode");
    Ok(())
}

/// CPU seconds (user + system) the whole process used so far, from /proc.
fn process_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

fn flush(args: DecodeArgs) -> anyhow::Result<()> {
    use watchpost_ingest::data_collector::decode;
    use watchpost_storage::{AppendRequest, Store, StoreOptions};
    let batches = read_batches(&args.batches)?;
    let bytes: usize = batches.iter().map(|(_, body)| body.len()).sum();
    let mut rates = Rates::default();
    for run in 0..args.runs {
        let dir = tempfile::tempdir()?;
        let options = StoreOptions { wal_fsync: false, ..StoreOptions::default() };
        let store = Store::open(dir.path(), options)?;
        for (_, body) in &batches {
            let post = bench_post(body);
            let schema = store.table_schema(WORKSPACE, "Events_CL").unwrap_or_default();
            let received = chrono::Utc::now();
            let decoded = decode(&post, &schema, received).map_err(|err| anyhow::anyhow!(err.message))?;
            store.append(AppendRequest {
                workspace: WORKSPACE.to_string(),
                table: "Events_CL".to_string(),
                idempotency_key: None,
                received_ns: received.timestamp_nanos_opt().unwrap_or_default(),
                batch: decoded.batch,
            })?;
        }
        let buffered = store.buffered_bytes();
        let started = Instant::now();
        let cpu_started = process_cpu_seconds();
        let stats = store.flush()?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process_cpu_seconds() - cpu_started;
        let (rate, cpu_rate) = rates.record(bytes, seconds, cpu_seconds);
        println!(
            "flush run {run}: {} rows ({} MiB of Arrow, {:.0} MB posted) in {seconds:.2}s = {rate:.0} MB/s; {cpu_seconds:.2} CPU-s = {cpu_rate:.0} MB per CPU-s",
            stats.rows_written,
            buffered >> 20,
            bytes as f64 / 1e6
        );
    }
    rates.print("flush");
    Ok(())
}

fn ingest(args: Args) -> anyhow::Result<()> {
    let batches = Arc::new(read_batches(&args.batches)?);
    let (mut events_per_s, mut mb_per_s, mut peer_mb_per_s, mut ratios) = (vec![], vec![], vec![], vec![]);
    let mut mb_per_cpu_s = vec![];
    let mut peak_rss = 0u64;
    for run in 0..args.runs {
        let peer = match &args.peer_script {
            Some(script) => Some(peer_run(&args, script)?),
            None => None,
        };
        let result = ingest_run(&args, &batches, run)?;
        let mbs = result.bytes as f64 / result.seconds / 1e6;
        println!(
            "run {run}: watchpost {} events in {:.2}s = {:.0} events/s, {:.0} MB/s, server CPU {:.2}s = {:.0} MB per CPU-s, peak RSS {} MiB{}",
            result.events,
            result.seconds,
            result.events as f64 / result.seconds,
            mbs,
            result.server_cpu,
            result.bytes as f64 / result.server_cpu / 1e6,
            result.peak_rss >> 20,
            peer.map(|p| format!("; duckdb {p:.0} MB/s; ratio {:.2}", mbs / p)).unwrap_or_default()
        );
        events_per_s.push(result.events as f64 / result.seconds);
        mb_per_s.push(mbs);
        mb_per_cpu_s.push(result.bytes as f64 / result.server_cpu / 1e6);
        peak_rss = peak_rss.max(result.peak_rss);
        if let Some(peer) = peer {
            peer_mb_per_s.push(peer);
            ratios.push(mbs / peer);
        }
    }
    let mut latencies = latency_run(&args)?;
    let summary = json!({
        "suite": "ingest",
        "runs": args.runs,
        "connections": args.connections,
        "median_events_per_s": median(&mut events_per_s),
        "median_mb_per_s": median(&mut mb_per_s),
        "median_mb_per_server_cpu_s": median(&mut mb_per_cpu_s),
        "peak_rss_mib": peak_rss >> 20,
        "duckdb_median_mb_per_s": (!peer_mb_per_s.is_empty()).then(|| median(&mut peer_mb_per_s)),
        "median_ratio_vs_duckdb": (!ratios.is_empty()).then(|| median(&mut ratios)),
        "ack_to_queryable_ms": {"p50": percentile(&mut latencies, 0.5), "p99": percentile(&mut latencies, 0.99), "max": percentile(&mut latencies, 1.0)},
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
