//! Suite `queries`: the kit's hunting queries (`shared/bench/queries.kql`)
//! against a release `watchpost serve` over the query API, side by side with
//! DuckDB on its native table (`run_peers.py --modes native`), on the same
//! data in the same run.
//!
//! Loading: the kit's NDJSON is cut into Data Collector bodies on the fly
//! (at most 5 MB, like the kit's batches file, which is never written) and
//! posted as table `Events`; the server is stopped so that its final flush
//! leaves every row in segments. DuckDB's native table is created from the
//! kit's Parquet file of the same rows. With `--reuse` an existing data
//! directory and DuckDB file are used as they are.
//!
//! The Data Collector API stores `Events` as `Events_CL` with type suffixes
//! (`Message_s`, `Bytes_d`); each query is run after a `let Events = ...`
//! that renames the columns back, which costs nothing at run time.
//!
//! Measuring: per query, a fresh server (its peak RSS is the process's
//! VmHWM, as DuckDB's is its child's), one warm-up, then `--runs` timed runs
//! of the whole HTTP round trip with the result fully received.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::{median, post, Server, KEY, TIME_FIELD, WORKSPACE};

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// Path of the watchpost binary (a release build).
    #[arg(long, default_value = "target/release/watchpost")]
    bin: PathBuf,
    /// The kit's folder: queries.kql, run_peers.py, queries-duckdb.sql.
    #[arg(long, default_value = "../shared/bench")]
    kit: PathBuf,
    /// Folder with events-SIZE.ndjson and events-SIZE.parquet.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "10m")]
    size: String,
    /// Watchpost data directory (created and loaded unless --reuse).
    #[arg(long)]
    data_dir: PathBuf,
    /// Folder for DuckDB's native database (duckdb-SIZE.duckdb).
    #[arg(long)]
    peer_work: PathBuf,
    /// Python with duckdb installed.
    #[arg(long, default_value = "python3")]
    peer_python: PathBuf,
    /// Use the data directory and DuckDB file as they are.
    #[arg(long)]
    reuse: bool,
    /// Timed runs per query (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Comma list of query ids (default: all).
    #[arg(long, default_value = "")]
    queries: String,
    /// Skip DuckDB (Watchpost figures only).
    #[arg(long)]
    no_peer: bool,
    /// Concurrent HTTP connections while loading.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Write all figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Blocks of `queries.kql`: `// @id <id>` lines start them.
fn load_queries(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(id) = line.trim().strip_prefix("// @id ") {
            out.push((id.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            if !line.trim_start().starts_with("//") {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    Ok(out.into_iter().map(|(id, body)| (id, body.trim().to_string())).collect())
}

/// Streams the NDJSON file as Data Collector bodies of at most 5 MB.
fn load(args: &QueryArgs) -> anyhow::Result<()> {
    let ndjson = args.data.join(format!("events-{}.ndjson", args.size));
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let server = Server::start(&args.bin, &args.data_dir, None)?;
    let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(args.connections * 2);
    let receiver = Arc::new(Mutex::new(receiver));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (receiver, url) = (receiver.clone(), server.url.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build();
                loop {
                    let body = receiver.lock().expect("receiver lock").recv();
                    let Ok(body) = body else { return Ok(()) };
                    post(&agent, &url, "Events", &body)?;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&ndjson).context("opening the NDJSON")?);
    let (mut body, mut rows, mut bytes) = (Vec::with_capacity(5_000_000), 0u64, 0u64);
    let from = b"\"TimeGenerated\":";
    let to = format!("\"{TIME_FIELD}\":");
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if body.len() + line.len() + 2 > 5_000_000 && !body.is_empty() {
            body.push(b']');
            bytes += body.len() as u64;
            sender.send(std::mem::replace(&mut body, Vec::with_capacity(5_000_000)))?;
        }
        body.push(if body.is_empty() { b'[' } else { b',' });
        // Same rename as the ingest suite: TimeGenerated is reserved.
        match line.windows(from.len()).position(|window| window == from) {
            Some(at) => {
                body.extend_from_slice(&line[..at]);
                body.extend_from_slice(to.as_bytes());
                body.extend_from_slice(&line[at + from.len()..]);
            }
            None => body.extend_from_slice(&line),
        }
        rows += 1;
    }
    if !body.is_empty() {
        body.push(b']');
        bytes += body.len() as u64;
        sender.send(body)?;
    }
    drop(sender);
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let posted = started.elapsed().as_secs_f64();
    server.stop()?;
    let flushed = started.elapsed().as_secs_f64();
    println!(
        "load watchpost {}: {rows} rows, {:.0} MB posted in {posted:.1}s ({:.0} MB/s), flushed and stopped at {flushed:.1}s",
        args.size,
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / posted
    );
    Ok(())
}

/// Creates DuckDB's native table from the kit's Parquet file.
fn load_peer(args: &QueryArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.peer_work)?;
    let db = args.peer_work.join(format!("duckdb-{}.duckdb", args.size));
    let parquet = args.data.join(format!("events-{}.parquet", args.size));
    let _ = std::fs::remove_file(&db);
    let script = "import duckdb, sys\n\
                  con = duckdb.connect(sys.argv[1])\n\
                  con.execute(\"SET TimeZone = 'UTC'\")\n\
                  con.execute(\"CREATE TABLE Events AS SELECT * FROM read_parquet('\" + sys.argv[2] + \"')\")\n\
                  print('duckdb rows', con.execute('SELECT count(*) FROM Events').fetchone()[0])\n\
                  con.close()\n";
    let status = Command::new(&args.peer_python).arg("-c").arg(script).arg(&db).arg(&parquet).status()?;
    if !status.success() {
        bail!("creating DuckDB's native table failed");
    }
    Ok(())
}

struct Figures {
    median: f64,
    min: f64,
    max: f64,
    rows: usize,
    peak_rss: u64,
}

/// Peak resident memory of process `pid` (VmHWM), 0 when unknown.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn run_query(agent: &ureq::Agent, url: &str, text: &str) -> anyhow::Result<usize> {
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let response = agent
        .post(&format!("{url}/v1/workspaces/{WORKSPACE}/query"))
        .set("Authorization", &format!("Bearer {key}"))
        .set("Prefer", "wait=600")
        .send_json(json!({ "query": text }));
    let response: Json = match response {
        Ok(response) => response.into_json()?,
        Err(ureq::Error::Status(status, response)) => {
            bail!("query failed with {status}: {}", response.into_string().unwrap_or_default())
        }
        Err(err) => bail!("query failed: {err}"),
    };
    Ok(response["tables"][0]["rows"].as_array().map(Vec::len).unwrap_or(0))
}

/// The `let` that presents `Events_CL` under the kit's column names.
fn events_view(agent: &ureq::Agent, url: &str) -> anyhow::Result<String> {
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let response: Json = agent
        .post(&format!("{url}/v1/workspaces/{WORKSPACE}/query"))
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(json!({ "query": "Events_CL | take 1" }))?
        .into_json()?;
    let mut renames = Vec::new();
    for column in response["tables"][0]["columns"].as_array().context("no columns")? {
        let name = column["name"].as_str().unwrap_or_default();
        if let Some(base) = ["_s", "_d", "_b", "_t", "_g"].iter().find_map(|suffix| name.strip_suffix(suffix)) {
            if !base.is_empty() && base != "EventTime_Utc" {
                renames.push(format!("{base} = {name}"));
            }
        }
    }
    // The kit's events are from 2024, more than two days before they are
    // received, so the Data Collector API stores the receive time as
    // `TimeGenerated` (as Azure does) and keeps the event's own time as
    // `EventTime_Utc_t`: the view presents that one as `TimeGenerated`.
    Ok(format!(
        "let Events = Events_CL | project-away TimeGenerated | project-rename TimeGenerated = {TIME_FIELD}_t, {};\n",
        renames.join(", ")
    ))
}

fn watchpost_query(args: &QueryArgs, view: &str, text: &str) -> anyhow::Result<Figures> {
    let server = Server::start(&args.bin, &args.data_dir, None)?;
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(900)).build();
    let query = format!("{view}{text}");
    let result = (|| {
        run_query(&agent, &server.url, &query)?;
        let mut walls = Vec::new();
        let mut rows = 0;
        for _ in 0..args.runs {
            let started = Instant::now();
            rows = run_query(&agent, &server.url, &query)?;
            walls.push(started.elapsed().as_secs_f64());
        }
        let (min, max) = (walls.iter().copied().fold(f64::MAX, f64::min), walls.iter().copied().fold(0.0, f64::max));
        Ok(Figures { median: median(&mut walls), min, max, rows, peak_rss: peak_rss(server.child.id()) })
    })();
    server.stop()?;
    result
}

fn duckdb_queries(args: &QueryArgs) -> anyhow::Result<BTreeMap<String, Figures>> {
    let out = args.peer_work.join("duckdb-queries.json");
    let mut command = Command::new(&args.peer_python);
    command
        .arg(args.kit.join("run_peers.py"))
        .args(["--engines", "duckdb", "--modes", "native", "--skip-ingest", "--sizes", &args.size])
        .args(["--runs", &args.runs.to_string(), "--data"])
        .arg(&args.data)
        .arg("--work")
        .arg(&args.peer_work)
        .arg("--out")
        .arg(&out);
    if !args.queries.is_empty() {
        command.args(["--queries", &args.queries]);
    }
    if !command.status().context("running run_peers.py")?.success() {
        bail!("run_peers.py failed");
    }
    let results: Json = serde_json::from_slice(&std::fs::read(&out)?)?;
    let mut figures = BTreeMap::new();
    for result in results["queries"].as_array().context("no queries in the peer results")? {
        let (Some(id), Some(walls)) = (result["query"].as_str(), result["walls"].as_array()) else { continue };
        let mut walls: Vec<f64> = walls.iter().filter_map(Json::as_f64).collect();
        if walls.is_empty() {
            continue;
        }
        let (min, max) = (walls.iter().copied().fold(f64::MAX, f64::min), walls.iter().copied().fold(0.0, f64::max));
        figures.insert(
            id.to_string(),
            Figures {
                median: median(&mut walls),
                min,
                max,
                rows: result["rows"].as_u64().unwrap_or(0) as usize,
                peak_rss: result["peak_rss"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(figures)
}

fn ms(seconds: f64) -> String {
    format!("{:.0}", seconds * 1000.0)
}

pub(crate) fn queries(args: QueryArgs) -> anyhow::Result<()> {
    let mut queries = load_queries(&args.kit.join("queries.kql"))?;
    if !args.queries.is_empty() {
        let wanted: Vec<&str> = args.queries.split(',').collect();
        queries.retain(|(id, _)| wanted.contains(&id.as_str()));
    }
    if !args.reuse {
        load(&args)?;
        if !args.no_peer {
            load_peer(&args)?;
        }
    }
    let peer = if args.no_peer { BTreeMap::new() } else { duckdb_queries(&args)? };
    let view = {
        let server = Server::start(&args.bin, &args.data_dir, None)?;
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        let view = events_view(&agent, &server.url);
        server.stop()?;
        view?
    };
    println!(
        "{:20} | {:>26} {:>5} {:>8} | {:>26} {:>5} {:>8} | {:>6}",
        "query",
        "watchpost ms median (min-max)",
        "rows",
        "RSS MiB",
        "duckdb ms median (min-max)",
        "rows",
        "RSS MiB",
        "ratio"
    );
    let (mut log_sum, mut n_ratios, mut worst) = (0.0, 0, (String::new(), 0.0f64));
    let (mut wp_rss, mut duck_rss) = (0u64, 0u64);
    let mut records = Vec::new();
    let mut mismatches = Vec::new();
    for (id, text) in &queries {
        let ours = watchpost_query(&args, &view, text).with_context(|| format!("query {id}"))?;
        wp_rss = wp_rss.max(ours.peak_rss);
        let theirs = peer.get(id);
        let ratio = theirs.map(|theirs| ours.median / theirs.median);
        if let (Some(ratio), Some(theirs)) = (ratio, theirs) {
            log_sum += ratio.ln();
            n_ratios += 1;
            if ratio > worst.1 {
                worst = (id.clone(), ratio);
            }
            duck_rss = duck_rss.max(theirs.peak_rss);
            if theirs.rows != ours.rows {
                mismatches.push(format!("{id}: watchpost {} rows, duckdb {}", ours.rows, theirs.rows));
            }
        }
        let peer_cell = theirs
            .map(|t| {
                format!(
                    "{:>26} {:>5} {:>8}",
                    format!("{} ({}-{})", ms(t.median), ms(t.min), ms(t.max)),
                    t.rows,
                    t.peak_rss >> 20
                )
            })
            .unwrap_or_else(|| format!("{:>26} {:>5} {:>8}", "-", "", ""));
        println!(
            "{id:20} | {:>26} {:>5} {:>8} | {peer_cell} | {:>6}",
            format!("{} ({}-{})", ms(ours.median), ms(ours.min), ms(ours.max)),
            ours.rows,
            ours.peak_rss >> 20,
            ratio.map(|r| format!("{r:.2}")).unwrap_or_default()
        );
        records.push(json!({
            "query": id, "watchpost": {"median": ours.median, "min": ours.min, "max": ours.max, "rows": ours.rows, "peak_rss": ours.peak_rss},
            "duckdb": theirs.map(|t| json!({"median": t.median, "min": t.min, "max": t.max, "rows": t.rows, "peak_rss": t.peak_rss})),
            "ratio": ratio,
        }));
    }
    let geomean = (n_ratios > 0).then(|| (log_sum / n_ratios as f64).exp());
    let summary = json!({
        "suite": "queries",
        "size": args.size,
        "runs": args.runs,
        "geomean_ratio": geomean,
        "worst": {"query": worst.0, "ratio": worst.1},
        "peak_rss_mib": {"watchpost": wp_rss >> 20, "duckdb": duck_rss >> 20},
        "row_count_mismatches": mismatches,
        "queries": records,
    });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&summary)?)?;
    }
    println!(
        "geometric mean ratio {}; worst {} {:.2}; peak RSS watchpost {} MiB, duckdb {} MiB; row counts {}",
        geomean.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()),
        worst.0,
        worst.1,
        wp_rss >> 20,
        duck_rss >> 20,
        if mismatches.is_empty() { "agree".to_string() } else { format!("DIFFER: {}", mismatches.join("; ")) }
    );
    Ok(())
}
