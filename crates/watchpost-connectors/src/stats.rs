//! Counters of a running pipeline, logged every few seconds as
//! `PipelineStats` and rendered in Prometheus text format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub buffered_rows: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub refused: AtomicU64,
    pub dead_letters: AtomicU64,
    dropped: Mutex<BTreeMap<String, u64>>,
    received_by_source: Mutex<BTreeMap<String, u64>>,
    sent_by_sink: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn add_received(&self, source: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.received.fetch_add(n, Ordering::Relaxed);
        *self.received_by_source.lock().expect("stats lock").entry(source.to_string()).or_default() += n;
    }
    pub fn add_sent(&self, sink: &str, rows: u64) {
        self.sent.fetch_add(rows, Ordering::Relaxed);
        *self.sent_by_sink.lock().expect("stats lock").entry(sink.to_string()).or_default() += rows;
    }
    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_buffered(&self, rows: u64, bytes: u64) {
        self.buffered_rows.fetch_add(rows, Ordering::Relaxed);
        self.buffered_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn add_refused(&self, rows: u64) {
        self.refused.fetch_add(rows, Ordering::Relaxed);
    }
    pub fn add_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_dropped(&self, reason: &str) {
        *self.dropped.lock().expect("stats lock").entry(reason.to_string()).or_default() += 1;
    }

    pub fn dropped(&self) -> BTreeMap<String, u64> {
        self.dropped.lock().expect("stats lock").clone()
    }

    pub fn log(&self) {
        let dropped: u64 = self.dropped().values().sum();
        tracing::info!(
            received = self.received.load(Ordering::Relaxed),
            buffered_rows = self.buffered_rows.load(Ordering::Relaxed),
            sent = self.sent.load(Ordering::Relaxed),
            retries = self.retries.load(Ordering::Relaxed),
            refused = self.refused.load(Ordering::Relaxed),
            dead_letters = self.dead_letters.load(Ordering::Relaxed),
            dropped,
            "PipelineStats"
        );
    }

    /// The counters in Prometheus text exposition format.
    pub fn prometheus(&self, pipeline: &str) -> String {
        let mut out = String::new();
        let label = format!("pipeline=\"{}\"", pipeline.replace('"', "'"));
        for (name, value) in [
            ("watchpost_pipeline_events_received_total", &self.received),
            ("watchpost_pipeline_rows_buffered_total", &self.buffered_rows),
            ("watchpost_pipeline_buffered_bytes_total", &self.buffered_bytes),
            ("watchpost_pipeline_rows_sent_total", &self.sent),
            ("watchpost_pipeline_batch_retries_total", &self.retries),
            ("watchpost_pipeline_rows_refused_total", &self.refused),
            ("watchpost_pipeline_dead_letters_total", &self.dead_letters),
        ] {
            out.push_str(&format!("# TYPE {name} counter\n{name}{{{label}}} {}\n", value.load(Ordering::Relaxed)));
        }
        let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
        out.push_str("# TYPE watchpost_pipeline_source_events_received_total counter\n");
        for (source, count) in self.received_by_source.lock().expect("stats lock").iter() {
            let source = escape(source);
            out.push_str(&format!(
                "watchpost_pipeline_source_events_received_total{{{label},source=\"{source}\"}} {count}\n"
            ));
        }
        out.push_str("# TYPE watchpost_pipeline_sink_rows_sent_total counter\n");
        for (sink, count) in self.sent_by_sink.lock().expect("stats lock").iter() {
            let sink = escape(sink);
            out.push_str(&format!("watchpost_pipeline_sink_rows_sent_total{{{label},sink=\"{sink}\"}} {count}\n"));
        }
        out.push_str("# TYPE watchpost_pipeline_events_dropped_total counter\n");
        for (reason, count) in self.dropped() {
            let reason = escape(&reason);
            out.push_str(&format!("watchpost_pipeline_events_dropped_total{{{label},reason=\"{reason}\"}} {count}\n"));
        }
        out
    }
}
