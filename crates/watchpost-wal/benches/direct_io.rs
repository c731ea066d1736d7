//! Appends with and without direct I/O, side by side: `cargo bench -p watchpost-wal`.
//!
//! Each run appends `WAL_BENCH_MB` (default 1024) MB of 5 MB records (the size of one Data
//! Collector post's Arrow record) from four threads with fsync on, into a fresh log under
//! `WAL_BENCH_DIR` (default the system temporary directory; use a real disk, tmpfs refuses
//! direct I/O), and reports wall-clock MB/s and MB per CPU-second of the process. Runs of
//! the two modes alternate so that the machine's drift hits both; medians of five runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use watchpost_wal::{Wal, WalOptions};

const RECORD_BYTES: usize = 5 << 20;
const THREADS: usize = 4;
const RUNS: usize = 5;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn run(direct_io: bool, total_mb: usize, base: &std::path::Path) -> (f64, f64) {
    let dir = tempfile::tempdir_in(base).expect("temporary directory");
    let options = WalOptions { direct_io, ..WalOptions::default() };
    let (wal, _) = Wal::open(dir.path(), options).expect("open");
    let wal = Arc::new(wal);
    let records = total_mb * (1 << 20) / RECORD_BYTES;
    let next = Arc::new(AtomicUsize::new(0));
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (wal, next) = (wal.clone(), next.clone());
            std::thread::spawn(move || {
                let record: Vec<u8> = (0..RECORD_BYTES).map(|at| (at * 7 + thread) as u8).collect();
                while next.fetch_add(1, Ordering::Relaxed) < records {
                    wal.append(&record).expect("append");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer thread");
    }
    let (seconds, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_before);
    // The record buffers are built inside the timed window; their cost is the same in both modes.
    let mb = (records * RECORD_BYTES) as f64 / 1e6;
    (mb / seconds, mb / cpu)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let total_mb = std::env::var("WAL_BENCH_MB").ok().and_then(|value| value.parse().ok()).unwrap_or(1024);
    let base = std::env::var_os("WAL_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let mut results = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for round in 0..RUNS {
        for (index, direct_io) in [true, false].into_iter().enumerate() {
            let (rate, per_cpu) = run(direct_io, total_mb, &base);
            println!("run {round} direct_io={direct_io}: {rate:.0} MB/s, {per_cpu:.0} MB per CPU-s");
            results[index].0.push(rate);
            results[index].1.push(per_cpu);
        }
    }
    for (index, name) in ["direct", "buffered"].into_iter().enumerate() {
        let (rates, per_cpu) = &mut results[index];
        println!(
            "{name}: median {:.0} MB/s, {:.0} MB per CPU-s ({RUNS} runs of {total_mb} MB)",
            median(rates),
            median(per_cpu)
        );
    }
}
