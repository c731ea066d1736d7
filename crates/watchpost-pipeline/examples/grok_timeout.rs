//! How closely the grok transform keeps `timeout_millis` on runaway
//! matches, for the benchmark note: `cargo run --release -p
//! watchpost-pipeline --example grok_timeout`. For each timeout and each
//! pathological pattern (kinds of catastrophic backtracking, anchored and
//! not, each on a line it almost matches), it prints the median time one event
//! takes over 5 runs and the tag it ends with.

use std::time::Instant;

use chrono::Utc;
use watchpost_pipeline::{Event, PipelineConfig, Processed};

fn main() {
    let cases = [
        ("alternation", "^(a|aa)+$", format!("{}!", "a".repeat(60))),
        ("nested +", "^(a+)+$", format!("{}!", "a".repeat(60))),
        ("words", r"^(\w+\s?)+$", format!("{}!", "word ".repeat(40))),
        // Unanchored: PCRE2 counts steps afresh at each start position.
        ("unanch. alt", "(a|aa)+$", format!("{}!", "a".repeat(60))),
        ("unanch. poly", r"\w*\w*\w*[=:]", "x".repeat(400)),
    ];
    println!("{:>10}  {:<14} {:>10} {:>8}  tag", "timeout", "pattern", "median ms", "ratio");
    for timeout in ["5", "20", "50", "100", "1000", "30000 (default)"] {
        let millis: f64 = timeout.split(' ').next().unwrap().parse().unwrap();
        for (name, pattern, line) in &cases {
            let config = format!(
                "[[transform]]\ntype = \"grok\"\ntimeout_millis = {millis}\nmatch = {{ message = {:?} }}\n",
                pattern
            );
            let pipeline = PipelineConfig::from_toml(&config).unwrap().compile().unwrap();
            let mut times = Vec::new();
            let mut tag = String::new();
            for _ in 0..5 {
                let event = Event::from_message(line, Utc::now());
                let started = Instant::now();
                let processed = pipeline.process(event);
                times.push(started.elapsed().as_secs_f64() * 1e3);
                tag = match processed {
                    Processed::DeadLetter { event, .. } => event.tags().collect::<Vec<_>>().join(","),
                    other => format!("{other:?}"),
                };
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("{timeout:>10}  {name:<14} {median:>10.2} {:>8.2}  {tag}", median / millis);
        }
    }
}
