//! Suite `logs-ingestion`: events/s through the Logs Ingestion API with and
//! without a transform, beside the Data Collector API, against one
//! `watchpost serve` per run, in the same run.
//!
//! Each run starts a fresh server, creates two rules over one stream
//! (`RawData`, `Host`, `TimeGenerated`): one passes the stream through, one
//! runs `parse` + `extend` over `RawData`. It registers an app, gets a token
//! from the token endpoint, then posts the same synthetic events three
//! ways: gzip bodies (as `LogsIngestionClient` sends them) to each rule,
//! and plain JSON to `POST /api/logs`. Bodies are made before timing.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::{median, post, Server, KEY, TIME_FIELD, WORKSPACE};

#[derive(Debug, clap::Args)]
pub(crate) struct LogsIngestionArgs {
    /// Path of the watchpost binary.
    #[arg(long, default_value = "target/release/watchpost")]
    bin: PathBuf,
    /// Events per path per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 2_000)]
    batch_events: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Timed runs; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where temporary data directories go.
    #[arg(long, default_value = "/tmp")]
    work: PathBuf,
}

const TRANSFORM: &str = "source | parse RawData with 'user=' User:string ' action=' Action:string ' bytes=' Bytes:long ' src=' SrcIp:string | extend Kb = Bytes / 1024 | project-away RawData";

fn rule(transform: Option<&str>, table: &str) -> Json {
    let mut flow =
        json!({"streams": ["Custom-Bench"], "destinations": ["ws"], "outputStream": format!("Custom-{table}")});
    if let Some(transform) = transform {
        flow["transformKql"] = json!(transform);
    }
    json!({"properties": {
        "streamDeclarations": {"Custom-Bench": {"columns": [
            {"name": "TimeGenerated", "type": "datetime"}, {"name": "Host", "type": "string"}, {"name": "RawData", "type": "string"}]}},
        "destinations": {"logAnalytics": [{"name": "ws"}]},
        "dataFlows": [flow],
    }})
}

/// One request's worth of events: `(events, DCR gzip body, Data Collector body)`.
type Bodies = (usize, Vec<u8>, Vec<u8>);

/// Sends one request on a connection.
type Send = Arc<dyn Fn(&ureq::Agent, &Bodies) -> anyhow::Result<()> + std::marker::Send + Sync>;

/// Makes every request body up front.
fn make_bodies(args: &LogsIngestionArgs) -> anyhow::Result<Vec<Bodies>> {
    let start = chrono::Utc::now() - chrono::Duration::days(2);
    let actions = ["login", "logout", "read", "write", "delete"];
    let mut bodies = Vec::new();
    let mut made = 0;
    while made < args.events {
        let n = args.batch_events.min(args.events - made);
        let mut dcr = Vec::with_capacity(n);
        let mut dc = Vec::with_capacity(n);
        for i in made..made + n {
            let time = (start + chrono::Duration::milliseconds(i as i64 * 50)).to_rfc3339();
            let raw = format!(
                "user=u{} action={} bytes={} src=10.0.{}.{}",
                i % 997,
                actions[i % actions.len()],
                (i * 7919) % 1_000_000,
                (i / 256) % 256,
                i % 256
            );
            let host = format!("host-{}", i % 50);
            dcr.push(json!({"TimeGenerated": time, "Host": host, "RawData": raw}));
            // `RawData` is a reserved property name in the Data Collector API.
            dc.push(json!({TIME_FIELD: time, "Host": host, "RawText": raw}));
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&serde_json::to_vec(&dcr)?)?;
        bodies.push((n, encoder.finish()?, serde_json::to_vec(&dc)?));
        made += n;
    }
    Ok(bodies)
}

/// Posts every body with `connections` threads; returns events/s.
fn drive(connections: usize, bodies: &Arc<Vec<Bodies>>, send: Send) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (bodies, next, send) = (bodies.clone(), next.clone(), send.clone());
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build();
                let mut events = 0;
                loop {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(idx) else { return Ok(events) };
                    send(&agent, body)?;
                    events += body.0;
                }
            })
        })
        .collect();
    let mut events = 0;
    for worker in workers {
        events += worker.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

fn post_stream(agent: &ureq::Agent, url: &str, token: &str, body: &[u8]) -> anyhow::Result<()> {
    match agent
        .post(url)
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .set("Content-Encoding", "gzip")
        .send_bytes(body)
    {
        Ok(response) if response.status() == 204 => Ok(()),
        Ok(response) => bail!("unexpected status {}", response.status()),
        Err(err) => bail!("post failed: {err}"),
    }
}

/// Creates the rules and an app; returns the immutable ids and a token.
fn set_up(args: &LogsIngestionArgs, server: &Server, data_dir: &PathBuf) -> anyhow::Result<(String, String, String)> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let key = base64::engine::general_purpose::STANDARD.encode(KEY);
    let mut ids = Vec::new();
    for (name, transform, table) in [("plain", None, "BenchPlain_CL"), ("parsed", Some(TRANSFORM), "BenchParsed_CL")] {
        let response: Json = agent
            .put(&format!("{}/v1/workspaces/{WORKSPACE}/dataCollectionRules/{name}", server.url))
            .set("Authorization", &format!("Bearer {key}"))
            .send_json(rule(transform, table))
            .with_context(|| format!("creating rule {name}"))?
            .into_json()?;
        ids.push(response["properties"]["immutableId"].as_str().context("no immutableId")?.to_string());
    }
    let output = Command::new(&args.bin)
        .args(["app", "create", "--name", "bench", "--workspace", WORKSPACE, "--data-dir"])
        .arg(data_dir)
        .output()?;
    if !output.status.success() {
        bail!("app create failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let app: Json = serde_json::from_slice(&output.stdout)?;
    let field = |name: &str| app[name].as_str().map(str::to_string).context("app create output");
    let (tenant, client, secret) = (field("tenantId")?, field("clientId")?, field("clientSecret")?);
    let token: Json = agent
        .post(&format!("{}/{tenant}/oauth2/v2.0/token", server.url))
        .send_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client),
            ("client_secret", &secret),
            ("scope", "https://monitor.azure.com/.default"),
        ])?
        .into_json()?;
    let token = token["access_token"].as_str().context("no access_token")?.to_string();
    Ok((ids[0].clone(), ids[1].clone(), token))
}

pub(crate) fn run(args: LogsIngestionArgs) -> anyhow::Result<()> {
    let bodies = Arc::new(make_bodies(&args)?);
    let dcr_bytes: usize = bodies.iter().map(|body| body.1.len()).sum();
    let dc_bytes: usize = bodies.iter().map(|body| body.2.len()).sum();
    println!(
        "{} events per path in {} requests; DCR bodies {:.1} MB gzip, Data Collector bodies {:.1} MB",
        args.events,
        bodies.len(),
        dcr_bytes as f64 / 1e6,
        dc_bytes as f64 / 1e6
    );
    let (mut plain, mut parsed, mut collector) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let data_dir = args.work.join(format!("watchpost-bench-li-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let server = Server::start(&args.bin, &data_dir, None)?;
        let (plain_id, parsed_id, token) = set_up(&args, &server, &data_dir)?;
        let token = Arc::new(token);
        let stream_url =
            |id: &str| format!("{}/dataCollectionRules/{id}/streams/Custom-Bench?api-version=2023-01-01", server.url);
        let (plain_url, parsed_url) = (stream_url(&plain_id), stream_url(&parsed_id));
        let send_plain = {
            let token = token.clone();
            Arc::new(move |agent: &ureq::Agent, body: &Bodies| post_stream(agent, &plain_url, &token, &body.1))
        };
        let send_parsed = {
            let token = token.clone();
            Arc::new(move |agent: &ureq::Agent, body: &Bodies| post_stream(agent, &parsed_url, &token, &body.1))
        };
        let url = server.url.clone();
        let send_collector = Arc::new(move |agent: &ureq::Agent, body: &Bodies| post(agent, &url, "BenchDc", &body.2));
        // The order rotates so no path always meets the fullest buffers.
        let mut rates = [0.0; 3];
        for step in 0..3 {
            let path = (step + run) % 3;
            rates[path] = match path {
                0 => drive(args.connections, &bodies, send_plain.clone())?,
                1 => drive(args.connections, &bodies, send_parsed.clone())?,
                _ => drive(args.connections, &bodies, send_collector.clone())?,
            };
        }
        println!(
            "run {run}: DCR without transform {:.0} events/s; DCR with parse transform {:.0} events/s; Data Collector {:.0} events/s",
            rates[0], rates[1], rates[2]
        );
        plain.push(rates[0]);
        parsed.push(rates[1]);
        collector.push(rates[2]);
        server.stop()?;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let summary = json!({
        "suite": "logs-ingestion",
        "runs": args.runs,
        "events_per_path": args.events,
        "batch_events": args.batch_events,
        "connections": args.connections,
        "median_events_per_s": {
            "dcr_no_transform": median(&mut plain),
            "dcr_parse_transform": median(&mut parsed),
            "data_collector": median(&mut collector),
        },
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
