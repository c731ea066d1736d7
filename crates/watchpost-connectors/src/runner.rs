//! Runs a pipeline: sources → transforms → per-sink batchers → disk
//! buffer → a sender thread that delivers each segment to its sinks with
//! retries, sending refused rows to the dead-letter table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value as Json};
use watchpost_pipeline::{
    event_to_row, Batch, Batcher, ConfigError, ConfigResult, Delivery, Event, FieldRef, Options, Pipeline,
    PipelineConfig, Processed, Sink, DEAD_LETTER_LOG_TYPE,
};

use crate::data_collector::RetryPolicy;
use crate::disk_buffer::{CheckpointFile, Checkpoints, DiskBuffer, Segment};
use crate::file_source::{FileSource, FileSourceConfig, SourceRecord};
use crate::http_source::{self, Ack, HttpSourceConfig};
use crate::process_sources::{self, ExecSourceConfig, Incoming};
use crate::sinks::{build_sink, SinkSettings};
use crate::stats::Stats;
use crate::syslog_source::{self, SyslogSourceConfig};

/// Source types this build knows.
pub const SOURCE_TYPES: &[&str] = &["file", "syslog", "http", "stdin", "exec"];

/// How long events an `http` client waits on may sit in memory.
const ACK_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Most events collected before a batched pipeline (one with a `kql`
/// step) runs them; fewer wait at most until the next flush.
const TRANSFORM_BATCH: usize = 4096;

/// Settings of a run that are not in the pipeline document.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    /// Longest time a record waits in memory before it is buffered.
    pub flush_interval: Duration,
    /// Reading pauses while the disk buffer holds more than this.
    pub max_buffer_bytes: u64,
    /// How long to keep delivering buffered batches after a stop request.
    pub drain_timeout: Duration,
    /// Stamped into `host` (or `Computer`) on every event.
    pub computer: String,
    /// Send a `Heartbeat` row this often (the agent preset).
    pub heartbeat: Option<Duration>,
}

/// The sources and sinks of a pipeline, built and checked.
pub struct Plan {
    pub files: Vec<FileSourceConfig>,
    pub syslogs: Vec<SyslogSourceConfig>,
    pub https: Vec<HttpSourceConfig>,
    pub stdins: Vec<String>,
    pub execs: Vec<ExecSourceConfig>,
    /// Raw records to send through once (`pipeline replay`), in place of
    /// the document's sources.
    pub replay: Option<Vec<String>>,
    pub sinks: Vec<(Box<dyn Sink>, SinkSettings)>,
}

impl Plan {
    pub fn source_count(&self) -> usize {
        self.files.len()
            + self.syslogs.len()
            + self.https.len()
            + self.stdins.len()
            + self.execs.len()
            + usize::from(self.replay.is_some())
    }
}

/// Checks and builds sources and sinks (no I/O besides reading env vars).
pub fn plan(config: &PipelineConfig) -> ConfigResult<Plan> {
    let mut files = Vec::new();
    let mut syslogs = Vec::new();
    let mut https = Vec::new();
    let mut stdins = Vec::new();
    let mut execs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (index, table) in config.sources.iter().enumerate() {
        let mut options = Options::new(table.clone(), format!("source[{index}]"));
        let kind = options.string("type")?.ok_or_else(|| options.error("missing `type`"))?;
        let id = options.string("id")?.unwrap_or_else(|| format!("source{index}"));
        let mut options = Options::new(options.into_table(), format!("source[{index}] ({kind})"));
        match kind.as_str() {
            "file" => files.push(FileSourceConfig::from_options(&mut options, id.clone())?),
            "syslog" => syslogs.push(SyslogSourceConfig::from_options(&mut options, id.clone())?),
            "http" => https.push(HttpSourceConfig::from_options(&mut options, id.clone())?),
            "stdin" => stdins.push(id.clone()),
            "exec" => execs.push(ExecSourceConfig::from_options(&mut options, id.clone())?),
            other => {
                return Err(options
                    .error(format!("unsupported source type `{other}`; this build knows {}", SOURCE_TYPES.join(", "))))
            }
        }
        options.finish()?;
        if !ids.insert(id.clone()) {
            return Err(ConfigError::new(format!("source[{index}]"), format!("two sources have the id {id:?}")));
        }
    }
    let mut sinks = Vec::new();
    for (index, table) in config.sinks.iter().enumerate() {
        let mut options = Options::new(table.clone(), format!("sink[{index}]"));
        let built = build_sink(&mut options)?;
        options.finish()?;
        sinks.push(built);
    }
    if sinks.is_empty() {
        return Err(ConfigError::new("pipeline", "at least one [[sink]] is required"));
    }
    if stdins.len() > 1 {
        return Err(ConfigError::new("source", "only one stdin source is possible"));
    }
    Ok(Plan { files, syslogs, https, stdins, execs, replay: None, sinks })
}

/// Runs until `stop` is set, then flushes, drains for a while and returns.
pub fn run(
    pipeline: &Pipeline,
    plan: Plan,
    options: &RunOptions,
    stop: &Arc<AtomicBool>,
    stats: &Arc<Stats>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let buffer = DiskBuffer::open(&options.data_dir)?;
    let state = buffer.recover()?;
    // The recovered generation is made durable before anything is sent,
    // so a segment is only ever deleted after its checkpoints are saved.
    buffer.write_checkpoints(&state)?;
    let committed = Arc::new(AtomicU64::new(state.generation));
    let (net_sender, net_records) = std::sync::mpsc::sync_channel::<Incoming>(65_536);
    for (index, config) in plan.syslogs.iter().enumerate() {
        syslog_source::start(config, index, net_sender.clone(), stop.clone())?;
    }
    for config in &plan.https {
        http_source::start(config, net_sender.clone(), stop.clone())?;
    }
    for id in &plan.stdins {
        process_sources::start_stdin(id.clone(), net_sender.clone())?;
    }
    for config in &plan.execs {
        process_sources::start_exec(config.clone(), net_sender.clone(), stop.clone())?;
    }
    if let Some(lines) = plan.replay.clone() {
        let sender = net_sender.clone();
        std::thread::Builder::new().name("replay-source".into()).spawn(move || {
            for text in lines {
                if sender.send(Incoming::Line { source: "replay".into(), text }).is_err() {
                    return;
                }
            }
            let _ = sender.send(Incoming::End { source: "replay".into() });
        })?;
    }
    drop(net_sender);
    // A pipeline fed only by stdin (or a replay) ends with its input.
    let finite = plan.stdins.len() + usize::from(plan.replay.is_some());
    let finite_only = finite > 0 && finite == plan.source_count();
    let mut ended = false;
    let mut sources: Vec<FileSource> = plan
        .files
        .into_iter()
        .map(|config| {
            let restored = state.sources.get(&config.id).cloned().unwrap_or_default();
            FileSource::new(config, restored)
        })
        .collect();
    let (sinks, settings): (Vec<_>, Vec<_>) = plan.sinks.into_iter().unzip();
    let shutdown = Arc::new(Mutex::new(None::<Instant>));
    let sender = {
        let sender = Sender {
            buffer: DiskBuffer::open(&options.data_dir)?,
            sinks,
            committed: committed.clone(),
            shutdown: shutdown.clone(),
            stats: stats.clone(),
            pipeline_name: pipeline.name.clone(),
            local_dead_letters: options.data_dir.join("dead-letters.ndjson"),
        };
        std::thread::Builder::new().name("pipeline-sender".into()).spawn(move || sender.run())?
    };
    let mut main = MainLoop {
        pipeline,
        settings: &settings,
        batchers: settings.iter().map(|s| Batcher::new(s.batch_max_bytes, s.batch_max_rows)).collect(),
        closed: Vec::new(),
        buffer,
        generation: state.generation,
        last_checkpoints: state.sources,
        committed,
        stats: stats.clone(),
        computer: options.computer.clone(),
        acks: Vec::new(),
        pending: Vec::new(),
    };
    let mut records = Vec::new();
    let mut last_flush = Instant::now();
    let mut last_buffer_check = Instant::now() - Duration::from_secs(60);
    let mut buffer_full = false;
    let mut last_stats = Instant::now();
    let mut last_heartbeat = None;
    while !stop.load(Ordering::Relaxed) {
        if last_buffer_check.elapsed() >= Duration::from_millis(500) {
            buffer_full = main.buffer.pending_bytes() > options.max_buffer_bytes;
            last_buffer_check = Instant::now();
        }
        let mut read = 0;
        if !buffer_full {
            for source in &mut sources {
                match source.poll(&mut records, 4 << 20) {
                    Ok(bytes) => read += bytes,
                    Err(err) => tracing::warn!(source = source.id(), error = %err, "SourceReadError"),
                }
                stats.add_received(source.id(), records.len() as u64);
                for record in records.drain(..) {
                    main.handle_file_record(record, source.table());
                }
            }
        }
        if options.heartbeat.is_some_and(|every| last_heartbeat.is_none_or(|at: Instant| at.elapsed() >= every)) {
            main.handle_event("heartbeat", heartbeat_event(&options.computer));
            last_heartbeat = Some(Instant::now());
        }
        let mut received = 0;
        while let Ok(incoming) = net_records.try_recv() {
            ended |= main.handle_incoming(incoming, &plan.syslogs);
            received += 1;
            read += 1;
            if received >= 50_000 {
                break;
            }
        }
        if finite_only && ended && received == 0 {
            break;
        }
        // Events whose sender waits for them to be buffered (http) are
        // flushed sooner than the interval.
        let due = last_flush.elapsed() >= options.flush_interval
            || (!main.acks.is_empty() && last_flush.elapsed() >= ACK_FLUSH_INTERVAL);
        if !main.closed.is_empty() || due {
            main.flush(&sources)?;
            last_flush = Instant::now();
        }
        if last_stats.elapsed() >= Duration::from_secs(10) {
            stats.log();
            last_stats = Instant::now();
        }
        if read == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    main.flush(&sources)?;
    *shutdown.lock().expect("shutdown lock") = Some(Instant::now() + options.drain_timeout);
    let _ = sender.join();
    stats.log();
    Ok(())
}

struct MainLoop<'a> {
    pipeline: &'a Pipeline,
    settings: &'a [SinkSettings],
    batchers: Vec<Batcher>,
    /// Batches closed by size, waiting for the next flush.
    closed: Vec<(usize, Batch)>,
    buffer: DiskBuffer,
    generation: u64,
    last_checkpoints: Checkpoints,
    committed: Arc<AtomicU64>,
    stats: Arc<Stats>,
    computer: String,
    /// Senders told once the events they sent are in the disk buffer.
    acks: Vec<Ack>,
    /// Events (with their raw record) waiting for a batched pipeline.
    pending: Vec<(String, Event)>,
}

impl MainLoop<'_> {
    /// One item from a pushing source; true when a finite source ended.
    fn handle_incoming(&mut self, incoming: Incoming, syslogs: &[SyslogSourceConfig]) -> bool {
        match incoming {
            Incoming::Net(record) => {
                let config = &syslogs[record.listener];
                self.stats.add_received(&config.id, 1);
                match syslog_source::record_to_event(&record, config, &self.computer) {
                    Some(event) => self.handle_event(&record.text, event),
                    None => self.stats.add_dropped(&format!("source {}: facility/severity filter", config.id)),
                }
            }
            Incoming::Line { source, text } => {
                let mut event = Event::from_message(&text, Utc::now());
                event.fields.insert("host".to_string(), Json::String(self.computer.clone()));
                self.handle_event(&text, event);
                self.stats.add_received(&source, 1);
            }
            Incoming::Object { source, object, raw } => {
                let mut event = Event { fields: object };
                if !event.fields.contains_key("@timestamp") {
                    event.set_timestamp(Utc::now());
                }
                self.handle_event(&raw, event);
                self.stats.add_received(&source, 1);
            }
            Incoming::Invalid { source, raw, reason } => {
                self.stats.add_received(&source, 1);
                self.stats.add_dead_letter();
                let row = self.pipeline.dead_letter_row(&raw, None, &format!("source {source}"), &reason);
                for index in 0..self.settings.len() {
                    self.add(index, DEAD_LETTER_LOG_TYPE, &row);
                }
            }
            Incoming::Request { items, ack } => {
                for item in items {
                    self.handle_incoming(item, syslogs);
                }
                self.acks.push(ack);
            }
            Incoming::End { .. } => return true,
        }
        false
    }

    fn handle_file_record(&mut self, record: SourceRecord, table: Option<&str>) {
        let event = match table {
            None => {
                let mut event = Event::from_message(&record.text, Utc::now());
                event.fields.insert("path".to_string(), Json::String(record.path));
                event.fields.insert("host".to_string(), Json::String(self.computer.clone()));
                event
            }
            Some(table) => {
                let mut event = Event::default();
                event.set_timestamp(Utc::now());
                event.fields.insert("RawData".to_string(), Json::String(record.text.clone()));
                event.fields.insert("FilePath".to_string(), Json::String(record.path));
                event.fields.insert("Computer".to_string(), Json::String(self.computer.clone()));
                event.set(&metadata_table(), Json::String(table.to_string()));
                event
            }
        };
        self.handle_event(&record.text, event);
    }

    fn handle_event(&mut self, raw: &str, event: Event) {
        if self.pipeline.batched() {
            self.pending.push((raw.to_string(), event));
            if self.pending.len() >= TRANSFORM_BATCH {
                self.process_pending();
            }
            return;
        }
        let processed = self.pipeline.process(event);
        self.route(raw, processed);
    }

    /// Runs the collected events through a batched pipeline.
    fn process_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (raws, events): (Vec<String>, Vec<Event>) = std::mem::take(&mut self.pending).into_iter().unzip();
        for (raw, processed) in raws.iter().zip(self.pipeline.process_batch(events)) {
            self.route(raw, processed);
        }
    }

    /// Sends a processed event to every sink's batcher (or counts it).
    fn route(&mut self, raw: &str, processed: Processed) {
        match processed {
            Processed::Event(event) => {
                for index in 0..self.settings.len() {
                    let settings = &self.settings[index];
                    let table = event.sprintf(&settings.log_type);
                    if !settings.valid_table(&table) {
                        let reason = format!("log_type {:?} gives the invalid table name {table:?}", settings.log_type);
                        let row = self.pipeline.dead_letter_row(raw, Some(&event), &format!("sink[{index}]"), &reason);
                        self.add(index, DEAD_LETTER_LOG_TYPE, &row);
                        continue;
                    }
                    let row = event_to_row(&event, settings.time_field_for(&table));
                    self.add(index, &table, &row);
                }
            }
            Processed::Dropped { step, reason } => self.stats.add_dropped(&format!("{step}: {reason}")),
            Processed::DeadLetter { event, step, reason } => {
                self.stats.add_dead_letter();
                let row = self.pipeline.dead_letter_row(raw, Some(&event), &step, &reason);
                for index in 0..self.settings.len() {
                    self.add(index, DEAD_LETTER_LOG_TYPE, &row);
                }
            }
        }
    }

    fn add(&mut self, sink: usize, table: &str, row: &Map<String, Json>) {
        match self.batchers[sink].add(table, row) {
            Ok(Some((table, body, rows))) => self.closed.push((sink, new_batch(table, body, rows))),
            Ok(None) => {}
            Err(reason) => {
                // Too big for any request: keep it where a person can find it.
                tracing::error!(sink, table, %reason, "RowTooLarge");
                self.stats.add_dropped(&reason);
            }
        }
    }

    /// Writes every open batch and the source checkpoints as one segment.
    fn flush(&mut self, sources: &[FileSource]) -> std::io::Result<()> {
        // Checkpoints below cover every record read, so all of them must
        // be in the batches first.
        self.process_pending();
        let mut batches = std::mem::take(&mut self.closed);
        for (sink, batcher) in self.batchers.iter_mut().enumerate() {
            for (table, body, rows) in batcher.drain() {
                batches.push((sink, new_batch(table, body, rows)));
            }
        }
        let checkpoints: Checkpoints = sources.iter().map(|s| (s.id().to_string(), s.checkpoints())).collect();
        if batches.is_empty() && checkpoints == self.last_checkpoints {
            self.acknowledge();
            return Ok(());
        }
        self.generation += 1;
        if !batches.is_empty() {
            let rows: usize = batches.iter().map(|(_, b)| b.rows).sum();
            let bytes = self.buffer.write_segment(self.generation, &checkpoints, &batches)?;
            self.stats.add_buffered(rows as u64, bytes);
        }
        self.buffer.write_checkpoints(&CheckpointFile { generation: self.generation, sources: checkpoints.clone() })?;
        self.committed.store(self.generation, Ordering::Release);
        self.last_checkpoints = checkpoints;
        self.acknowledge();
        Ok(())
    }

    fn acknowledge(&mut self) {
        for ack in self.acks.drain(..) {
            // A sender that gave up waiting needs no answer.
            let _ = ack.send(());
        }
    }
}

fn metadata_table() -> FieldRef {
    FieldRef { path: vec!["@metadata".to_string(), "table".to_string()] }
}

/// One `Heartbeat` row per agent and interval; every field is a column of
/// the standard `Heartbeat` table.
fn heartbeat_event(computer: &str) -> Event {
    let mut event = Event::default();
    event.set_timestamp(Utc::now());
    for (name, value) in [
        ("Computer", computer),
        ("Category", "Direct Agent"),
        ("OSType", "Linux"),
        ("Version", env!("CARGO_PKG_VERSION")),
        ("ComputerEnvironment", "Non-Azure"),
        ("SourceSystem", "Linux"),
    ] {
        event.fields.insert(name.to_string(), Json::String(value.to_string()));
    }
    event.set(&metadata_table(), Json::String("Heartbeat".to_string()));
    event
}

fn new_batch(table: String, body: Vec<u8>, rows: usize) -> Batch {
    Batch { table, rows, body, idempotency_key: uuid::Uuid::new_v4().to_string() }
}

/// Delivers buffered segments in order.
struct Sender {
    buffer: DiskBuffer,
    sinks: Vec<Box<dyn Sink>>,
    committed: Arc<AtomicU64>,
    shutdown: Arc<Mutex<Option<Instant>>>,
    stats: Arc<Stats>,
    pipeline_name: String,
    local_dead_letters: PathBuf,
}

struct Interrupted;

impl Sender {
    fn deadline(&self) -> Option<Instant> {
        *self.shutdown.lock().expect("shutdown lock")
    }

    fn run(mut self) {
        loop {
            let committed = self.committed.load(Ordering::Acquire);
            let paths = self.buffer.segment_paths().unwrap_or_default();
            let ready: Vec<PathBuf> = paths.into_iter().filter(|p| generation_of(p) <= committed).collect();
            if ready.is_empty() {
                if self.deadline().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            for path in ready {
                let segment = match self.buffer.read_segment(&path) {
                    Ok(segment) => segment,
                    Err(err) => {
                        tracing::error!(path = %path.display(), error = %err, "SegmentUnreadable");
                        let _ = std::fs::rename(&path, path.with_extension("bad"));
                        continue;
                    }
                };
                if self.deliver_segment(&segment).is_err() {
                    return;
                }
                if let Err(err) = self.buffer.remove_segment(&segment) {
                    tracing::error!(path = %path.display(), error = %err, "SegmentRemoveFailed");
                }
            }
        }
    }

    fn deliver_segment(&mut self, segment: &Segment) -> Result<(), Interrupted> {
        for (sink, batch) in &segment.batches {
            let Some(sink_index) = (*sink < self.sinks.len()).then_some(*sink) else {
                tracing::error!(sink, "SegmentNamesUnknownSink");
                continue;
            };
            match self.deliver(sink_index, batch)? {
                None => {}
                Some(reason) => self.dead_letter_batch(sink_index, batch, &reason)?,
            }
        }
        Ok(())
    }

    /// Delivers with retries; `Some(reason)` when refused for good.
    fn deliver(&mut self, sink: usize, batch: &Batch) -> Result<Option<String>, Interrupted> {
        let policy = RetryPolicy::unbounded();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.sinks[sink].deliver(batch) {
                Delivery::Delivered => {
                    self.stats.add_sent(self.sinks[sink].name(), batch.rows as u64);
                    return Ok(None);
                }
                Delivery::Refused { reason } => {
                    tracing::warn!(sink = self.sinks[sink].name(), table = %batch.table, rows = batch.rows, %reason, "BatchRefused");
                    self.stats.add_refused(batch.rows as u64);
                    return Ok(Some(reason));
                }
                Delivery::Retry { after, reason } => {
                    self.stats.add_retry();
                    let wait = after.unwrap_or_else(|| policy.backoff(attempt)).min(Duration::from_secs(60));
                    if attempt == 1 || attempt % 10 == 0 {
                        tracing::warn!(sink = self.sinks[sink].name(), table = %batch.table, attempt, %reason, wait_ms = wait.as_millis() as u64, "BatchRetrying");
                    }
                    self.sleep(wait)?;
                }
            }
        }
    }

    fn sleep(&self, wait: Duration) -> Result<(), Interrupted> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.deadline().is_some_and(|d| Instant::now() >= d) {
                return Err(Interrupted);
            }
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
        Ok(())
    }

    /// Sends the rows of a refused batch to the dead-letter table (same
    /// sink, a key derived from the batch's so a retry stays exactly-once);
    /// if that is refused too, to a local file.
    fn dead_letter_batch(&mut self, sink: usize, batch: &Batch, reason: &str) -> Result<(), Interrupted> {
        let rows: Vec<Json> = serde_json::from_slice(&batch.body).unwrap_or_default();
        let step = format!("sink[{sink}] {}", self.sinks[sink].name());
        let dead: Vec<Json> = rows
            .iter()
            .map(|row| {
                let mut out = Map::new();
                out.insert("RawEvent".into(), Json::String(row.to_string()));
                out.insert("Pipeline".into(), Json::String(self.pipeline_name.clone()));
                out.insert("Step".into(), Json::String(step.clone()));
                out.insert("Reason".into(), Json::String(format!("table {}_CL: {reason}", batch.table)));
                Json::Object(out)
            })
            .collect();
        if batch.table != DEAD_LETTER_LOG_TYPE {
            let dead_batch = Batch {
                table: DEAD_LETTER_LOG_TYPE.to_string(),
                rows: dead.len(),
                body: serde_json::to_vec(&dead).expect("JSON values serialise"),
                idempotency_key: format!("{}-dead-letter", batch.idempotency_key),
            };
            if self.deliver(sink, &dead_batch)?.is_none() {
                return Ok(());
            }
        }
        write_local_dead_letters(&self.local_dead_letters, &dead);
        Ok(())
    }
}

fn write_local_dead_letters(path: &Path, rows: &[Json]) {
    use std::io::Write;
    let mut text = String::new();
    for row in rows {
        text.push_str(&row.to_string());
        text.push('\n');
    }
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_data()));
    match result {
        Ok(()) => tracing::error!(path = %path.display(), rows = rows.len(), "DeadLettersWrittenLocally"),
        Err(err) => tracing::error!(path = %path.display(), error = %err, rows = rows.len(), "DeadLettersLost"),
    }
}

fn generation_of(path: &Path) -> u64 {
    path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}
