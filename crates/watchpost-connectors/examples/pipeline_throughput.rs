//! Throughput of the file → grok(COMBINEDAPACHELOG) → sink path, for the
//! benchmark note: `cargo run --release -p watchpost-connectors --example
//! pipeline_throughput -- [LINES] [OUT_DIR]`. It writes LINES Apache
//! combined lines to a file, runs the real runner (file source with
//! checkpoints, grok, batching, disk buffer, NDJSON file sink) until every
//! row is delivered, and prints wall time, CPU time (user + system, all
//! threads, from /proc/self/stat) and peak RSS.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use watchpost_connectors::runner::{self, RunOptions};
use watchpost_connectors::stats::Stats;
use watchpost_pipeline::PipelineConfig;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = match args.next() {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("wp-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    let input = dir.join("logs/access.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
    for i in 0..lines {
        writeln!(
            file,
            r#"10.{}.{}.{} - user{} [10/Oct/2000:13:55:36 -0700] "GET /app/page{}.html?id={} HTTP/1.1" {} {} "http://example.com/start.html" "Mozilla/5.0 (X11; Linux x86_64) bench/{}""#,
            i % 200,
            (i / 200) % 250,
            i % 250,
            i % 1000,
            i % 5000,
            i,
            [200, 304, 404, 500][(i % 4) as usize],
            1000 + i % 90_000,
            i % 7
        )?;
    }
    file.flush()?;
    drop(file);
    let input_bytes = std::fs::metadata(&input)?.len();
    let config = format!(
        r#"
name = "bench"
[[source]]
type = "file"
paths = ["{logs}/*.log"]
[[transform]]
type = "grok"
match = {{ message = "^%{{COMBINEDAPACHELOG}}$" }}
[[sink]]
type = "file"
path = "{out}"
log_type = "Apache"
"#,
        logs = dir.join("logs").display(),
        out = dir.join("out.ndjson").display()
    );
    let config = PipelineConfig::from_toml(&config).expect("valid config");
    let pipeline = config.compile().expect("compiles");
    let plan = runner::plan(&config).expect("plans");
    let options = RunOptions {
        data_dir: dir.join("data"),
        flush_interval: Duration::from_millis(500),
        max_buffer_bytes: 1 << 30,
        drain_timeout: Duration::from_secs(60),
        computer: "bench".into(),
        heartbeat: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let watcher = {
        let (stop, stats) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            while stats.sent.load(Ordering::Relaxed) < lines {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    runner::run(&pipeline, plan, &options, &stop, &stats)?;
    watcher.join().expect("watcher");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "lines={lines} input_mb={:.1} wall_s={wall:.2} events_per_s={:.0} cpu_s={cpu:.2} events_per_cpu_s={:.0} dead_letters={} peak_rss_mib={:.1}",
        input_bytes as f64 / 1e6,
        lines as f64 / wall,
        lines as f64 / cpu.max(1e-9),
        stats.dead_letters.load(Ordering::Relaxed),
        peak_rss_kib() as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
