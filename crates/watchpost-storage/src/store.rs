//! [`Store`]: the write-ahead log, the in-memory buffers and the segment
//! catalogue of one data directory, tied together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use arrow::array::{new_null_array, ArrayRef};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use watchpost_schema::standard::{standard_table, standard_tables};
use watchpost_schema::{KqlType, TableSchema};
use watchpost_wal::{Lsn, Wal, WalOptions};

use crate::catalog::{CatalogDocument, IdempotencyEntry, TableEntry, DEFAULT_RETENTION_DAYS};
use crate::record::{self, RecordHeader};
use crate::segment::{write_segment, SegmentCodec, SegmentMeta};
use crate::{Receipt, StorageError, StorageResult};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// How a [`Store`] behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fsync the WAL before an append returns. Only tests and benchmarks of
    /// the in-memory path turn it off.
    pub wal_fsync: bool,
    pub wal_segment_bytes: u64,
    /// How long a repeated idempotency key is answered from the first
    /// append's receipt.
    pub idempotency_window: Duration,
    /// Appends wait (up to `BACKPRESSURE_MAX_WAIT`) while the in-memory
    /// buffers hold more than this many bytes, so that a flush that cannot
    /// keep up slows ingest down instead of growing memory without bound.
    pub max_buffered_bytes: Option<u64>,
    /// How new segments are compressed.
    pub segment_codec: SegmentCodec,
}

/// The longest an append waits for a flush to make room.
pub const BACKPRESSURE_MAX_WAIT: Duration = Duration::from_secs(30);

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            wal_fsync: true,
            wal_segment_bytes: 64 * 1024 * 1024,
            idempotency_window: Duration::from_secs(24 * 3600),
            max_buffered_bytes: None,
            segment_codec: SegmentCodec::default(),
        }
    }
}

/// One batch of rows for one table.
#[derive(Debug)]
pub struct AppendRequest {
    pub workspace: String,
    pub table: String,
    /// A client-chosen key; a repeat within the window stores nothing.
    pub idempotency_key: Option<String>,
    /// Nanoseconds since the epoch.
    pub received_ns: i64,
    pub batch: RecordBatch,
}

/// What happened to an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The rows are durable and visible.
    Stored(Receipt),
    /// The idempotency key was seen before; nothing was stored this time and
    /// the first append's receipt is returned.
    Repeated(Receipt),
}

impl AppendOutcome {
    pub fn receipt(&self) -> &Receipt {
        match self {
            AppendOutcome::Stored(receipt) | AppendOutcome::Repeated(receipt) => receipt,
        }
    }
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushStats {
    pub segments_written: usize,
    pub rows_written: u64,
    pub flushed_lsn: Lsn,
}

/// A consistent view of one table for a reader.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub schema: TableSchema,
    /// Absolute paths of the segment files with what the catalogue knows of them.
    pub segments: Vec<(PathBuf, SegmentMeta)>,
    /// Buffered rows not yet in a segment, aligned to `schema`.
    pub batches: Vec<RecordBatch>,
}

/// What the catalogue knows of one table, for the tables API and
/// `.show tables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub schema: TableSchema,
    pub retention_days: u32,
    /// Appends must fit the schema (standard tables and tables created
    /// through the tables API); otherwise appends add columns.
    pub declared: bool,
    /// One of the standard tables of `watchpost_schema::standard`.
    pub standard: bool,
}

#[derive(Debug)]
struct TableState {
    schema: TableSchema,
    declared: bool,
    retention_days: u32,
    segments: Vec<SegmentMeta>,
    /// Batches being written to a segment by a running flush.
    frozen: Vec<RecordBatch>,
    active: Vec<RecordBatch>,
}

impl TableState {
    fn new(schema: TableSchema) -> TableState {
        TableState {
            schema,
            declared: false,
            retention_days: DEFAULT_RETENTION_DAYS,
            segments: Vec::new(),
            frozen: Vec::new(),
            active: Vec::new(),
        }
    }
}

#[derive(Debug)]
enum IdempotencyState {
    InFlight,
    Done { receipt: Receipt, at_ns: i64 },
}

type TableKey = (String, String);

/// A table's frozen batches, aligned to its schema, ready for a segment.
type FrozenTable = (TableKey, SchemaRef, Vec<RecordBatch>);

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<TableKey, TableState>,
    flushed_lsn: Lsn,
    idempotency: HashMap<(String, String), IdempotencyState>,
}

/// The storage of one data directory. Share it behind an `Arc`; every method
/// takes `&self` and may block on disk I/O.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    options: StoreOptions,
    wal: Wal,
    /// Appends hold it shared from WAL write to buffer insert; a flush takes
    /// it exclusively for the instant it freezes the buffers, so the frozen
    /// set holds exactly the records up to the WAL's last LSN.
    gate: RwLock<()>,
    state: RwLock<State>,
    flush_lock: Mutex<()>,
    buffered_bytes: AtomicU64,
    /// Bytes of frozen buffers a running flush has finished encoding: they
    /// are freed as soon as its files are synced and named, so appends do
    /// not wait for those syncs ([`Self::wait_for_room`]).
    encoded_bytes: AtomicU64,
}

impl Store {
    /// Opens the store in `data_dir`, replaying the WAL records that no
    /// segment holds yet and deleting segment files the catalogue never named.
    pub fn open(data_dir: &Path, options: StoreOptions) -> StorageResult<Store> {
        fs::create_dir_all(data_dir).map_err(|source| StorageError::io(data_dir, source))?;
        let document = CatalogDocument::load(data_dir)?;
        remove_orphan_segments(data_dir, &document)?;
        let wal_options =
            WalOptions { segment_bytes: options.wal_segment_bytes, fsync: options.wal_fsync, direct_io: true };
        let (wal, records) = Wal::open(&data_dir.join("wal"), wal_options)?;
        let mut state = State { flushed_lsn: document.flushed_lsn, ..State::default() };
        for entry in document.tables {
            let mut table = TableState::new(entry.schema);
            table.declared = entry.declared;
            table.retention_days = entry.retention_days;
            table.segments = entry.segments;
            state.tables.insert((entry.workspace, entry.name), table);
        }
        for entry in document.idempotency {
            let done = IdempotencyState::Done { receipt: entry.receipt, at_ns: entry.at_ns };
            state.idempotency.insert((entry.workspace, entry.key), done);
        }
        let mut buffered = 0u64;
        let mut n_replayed = 0usize;
        for (lsn, bytes) in records {
            if lsn <= document.flushed_lsn {
                continue;
            }
            match record::decode(&bytes) {
                Ok((header, batches)) => {
                    for batch in batches {
                        buffered += batch.get_array_memory_size() as u64;
                        insert_batch(&mut state, &header.workspace, &header.table, batch);
                    }
                    if let Some(key) = header.idempotency_key {
                        let done = IdempotencyState::Done { receipt: header.receipt, at_ns: header.received_ns };
                        state.idempotency.insert((header.workspace, key), done);
                    }
                    n_replayed += 1;
                }
                Err(err) => tracing::error!(lsn, error = %err, "skipping undecodable WAL record"),
            }
        }
        tracing::info!(records = n_replayed, tables = state.tables.len(), "storage opened");
        Ok(Store {
            data_dir: data_dir.to_path_buf(),
            options,
            wal,
            gate: RwLock::new(()),
            state: RwLock::new(state),
            flush_lock: Mutex::new(()),
            buffered_bytes: AtomicU64::new(buffered),
            encoded_bytes: AtomicU64::new(0),
        })
    }

    /// Makes a batch durable and visible. Blocks until the WAL is fsynced.
    pub fn append(&self, request: AppendRequest) -> StorageResult<AppendOutcome> {
        self.wait_for_room();
        let idempotency_key = request.idempotency_key.map(|key| (request.workspace.clone(), key));
        if let Some(key) = &idempotency_key {
            if let Some(receipt) = self.reserve_key(key, request.received_ns)? {
                return Ok(AppendOutcome::Repeated(receipt));
            }
        }
        let result = self.append_reserved(
            &request.workspace,
            &request.table,
            &idempotency_key,
            request.received_ns,
            request.batch,
        );
        if result.is_err() {
            if let Some(key) = &idempotency_key {
                self.write_state().idempotency.remove(key);
            }
        }
        result.map(AppendOutcome::Stored)
    }

    fn append_reserved(
        &self,
        workspace: &str,
        table: &str,
        idempotency_key: &Option<(String, String)>,
        received_ns: i64,
        batch: RecordBatch,
    ) -> StorageResult<Receipt> {
        let receipt = Receipt {
            rows: batch.num_rows() as u64,
            columns: batch.schema().fields().iter().map(|field| field.name().clone()).collect(),
        };
        let header = RecordHeader {
            workspace: workspace.to_string(),
            table: table.to_string(),
            idempotency_key: idempotency_key.as_ref().map(|(_, key)| key.clone()),
            receipt: receipt.clone(),
            received_ns,
        };
        self.check_declared_schema(workspace, table, &batch)?;
        let bytes = record::encode(&header, &batch)?;
        let _gate = self.gate.read().expect("gate lock poisoned");
        self.wal.append_buf(bytes)?;
        self.buffered_bytes.fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
        let mut state = self.write_state();
        insert_batch(&mut state, workspace, table, batch);
        if let Some(key) = idempotency_key {
            let done = IdempotencyState::Done { receipt: receipt.clone(), at_ns: received_ns };
            state.idempotency.insert(key.clone(), done);
        }
        Ok(receipt)
    }

    /// Waits while the buffers are over [`StoreOptions::max_buffered_bytes`]
    /// (a flush frees them when it completes), then proceeds in any case
    /// after [`BACKPRESSURE_MAX_WAIT`] so a stuck flush cannot stop ingest.
    /// Buffers a running flush has already encoded do not count: only disk
    /// syncs stand between them and being freed, and waiting for those
    /// left both cores idle.
    fn wait_for_room(&self) {
        let Some(limit) = self.options.max_buffered_bytes else { return };
        let held = || self.buffered_bytes().saturating_sub(self.encoded_bytes.load(Ordering::Relaxed));
        if held() <= limit {
            return;
        }
        let started = std::time::Instant::now();
        while held() > limit && started.elapsed() < BACKPRESSURE_MAX_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::debug!(waited_ms = started.elapsed().as_millis() as u64, "IngestBackpressure");
    }

    /// Returns the earlier receipt when `key` was already used within the
    /// window, otherwise marks it in flight.
    fn reserve_key(&self, key: &(String, String), now_ns: i64) -> StorageResult<Option<Receipt>> {
        let window_ns = self.options.idempotency_window.as_nanos() as i64;
        let mut state = self.write_state();
        match state.idempotency.get(key) {
            Some(IdempotencyState::InFlight) => Err(StorageError::DuplicateInFlight),
            Some(IdempotencyState::Done { receipt, at_ns }) if now_ns - at_ns <= window_ns => Ok(Some(receipt.clone())),
            _ => {
                state.idempotency.insert(key.clone(), IdempotencyState::InFlight);
                Ok(None)
            }
        }
    }

    /// The current schema of a table, if it exists. Every workspace has the
    /// standard tables, with their declared schemas, before any row arrives.
    pub fn table_schema(&self, workspace: &str, table: &str) -> Option<TableSchema> {
        let key = (workspace.to_string(), table.to_string());
        if let Some(state) = self.read_state().tables.get(&key) {
            return Some(state.schema.clone());
        }
        standard_table(table).map(|standard| standard.schema.clone())
    }

    /// The names of a workspace's tables (the standard tables included), sorted.
    pub fn tables(&self, workspace: &str) -> Vec<String> {
        let state = self.read_state();
        let mut names: Vec<String> =
            state.tables.keys().filter(|(ws, _)| ws == workspace).map(|(_, name)| name.clone()).collect();
        names.extend(standard_tables().iter().map(|table| table.name.clone()));
        names.sort();
        names.dedup();
        names
    }

    /// What the catalogue knows of a table, if it exists.
    pub fn table_info(&self, workspace: &str, table: &str) -> Option<TableInfo> {
        let key = (workspace.to_string(), table.to_string());
        let standard = standard_table(table).is_some();
        if let Some(state) = self.read_state().tables.get(&key) {
            return Some(TableInfo {
                name: table.to_string(),
                schema: state.schema.clone(),
                retention_days: state.retention_days,
                declared: state.declared,
                standard,
            });
        }
        let standard_table = standard_table(table)?;
        Some(TableInfo {
            name: table.to_string(),
            schema: standard_table.schema.clone(),
            retention_days: DEFAULT_RETENTION_DAYS,
            declared: true,
            standard: true,
        })
    }

    /// Creates a table with a declared schema, or adds the columns of
    /// `schema` it lacks to an existing table (a column is never removed or
    /// retyped), and sets its retention when given. A table created here is
    /// declared: appends must fit its columns. Returns the table afterwards.
    pub fn declare_table(
        &self,
        workspace: &str,
        table: &str,
        schema: &TableSchema,
        retention_days: Option<u32>,
    ) -> StorageResult<TableInfo> {
        let _flush = self.flush_lock.lock().expect("flush lock poisoned");
        {
            let mut state = self.write_state();
            let key = (workspace.to_string(), table.to_string());
            let existed = state.tables.contains_key(&key) || standard_table(table).is_some();
            let table_state = state.tables.entry(key).or_insert_with(|| new_table_state(table));
            if !existed {
                table_state.declared = true;
            }
            for column in &schema.columns {
                if let Some(existing) = table_state.schema.column(&column.name) {
                    if existing.kql_type != column.kql_type {
                        return Err(StorageError::ColumnTypeMismatch {
                            table: table.to_string(),
                            column: column.name.clone(),
                            declared: existing.kql_type,
                            found: column.kql_type,
                        });
                    }
                }
            }
            table_state.schema.merge(schema);
            if let Some(days) = retention_days {
                table_state.retention_days = days;
            }
            self.catalog_document(&state).store(&self.data_dir)?;
        }
        Ok(self.table_info(workspace, table).expect("the table was just declared"))
    }

    /// Refuses a batch for a declared table that has a field the table
    /// does not declare, or a field of another type.
    fn check_declared_schema(&self, workspace: &str, table: &str, batch: &RecordBatch) -> StorageResult<()> {
        let state = self.read_state();
        let schema = match state.tables.get(&(workspace.to_string(), table.to_string())) {
            Some(table_state) if table_state.declared => &table_state.schema,
            Some(_) => return Ok(()),
            None => match standard_table(table) {
                Some(standard) => &standard.schema,
                None => return Ok(()),
            },
        };
        let mut undeclared = Vec::new();
        for field in batch.schema().fields() {
            let Some(column) = schema.column(field.name()) else {
                undeclared.push(field.name().clone());
                continue;
            };
            let found = KqlType::of_field(field).unwrap_or(KqlType::String);
            if found != column.kql_type {
                return Err(StorageError::ColumnTypeMismatch {
                    table: table.to_string(),
                    column: column.name.clone(),
                    declared: column.kql_type,
                    found,
                });
            }
        }
        if !undeclared.is_empty() {
            return Err(StorageError::UndeclaredColumns { table: table.to_string(), columns: undeclared });
        }
        Ok(())
    }

    /// A consistent snapshot of a table for reading.
    pub fn snapshot(&self, workspace: &str, table: &str) -> Option<TableSnapshot> {
        let state = self.read_state();
        let Some(table_state) = state.tables.get(&(workspace.to_string(), table.to_string())) else {
            let standard = standard_table(table)?;
            return Some(TableSnapshot { schema: standard.schema.clone(), segments: Vec::new(), batches: Vec::new() });
        };
        let arrow_schema = table_state.schema.arrow_schema();
        let batches = table_state
            .frozen
            .iter()
            .chain(&table_state.active)
            .map(|batch| align_batch(batch, &arrow_schema))
            .collect::<StorageResult<Vec<_>>>()
            .ok()?;
        let segments =
            table_state.segments.iter().map(|segment| (self.data_dir.join(&segment.file), segment.clone())).collect();
        Some(TableSnapshot { schema: table_state.schema.clone(), segments, batches })
    }

    /// Bytes of Arrow data held in memory, waiting for a flush.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::Relaxed)
    }

    /// Sets a table's retention in days.
    pub fn set_retention(&self, workspace: &str, table: &str, days: u32) -> StorageResult<bool> {
        let _flush = self.flush_lock.lock().expect("flush lock poisoned");
        let mut state = self.write_state();
        let key = (workspace.to_string(), table.to_string());
        if !state.tables.contains_key(&key) && standard_table(table).is_some() {
            state.tables.insert(key.clone(), new_table_state(table));
        }
        let Some(table_state) = state.tables.get_mut(&key) else {
            return Ok(false);
        };
        table_state.retention_days = days;
        self.catalog_document(&state).store(&self.data_dir)?;
        Ok(true)
    }

    /// Writes every buffered row to Parquet segments, names them in the
    /// catalogue atomically, then trims the WAL.
    pub fn flush(&self) -> StorageResult<FlushStats> {
        let _flush = self.flush_lock.lock().expect("flush lock poisoned");
        let (flushed_lsn, frozen) = self.freeze()?;
        let mut written = Vec::new();
        let mut stats = FlushStats { flushed_lsn, ..FlushStats::default() };
        for ((workspace, table), schema, batches) in frozen {
            let relative = format!("workspaces/{workspace}/tables/{table}/{}.parquet", uuid::Uuid::new_v4());
            let bytes: u64 = batches.iter().map(|batch| batch.get_array_memory_size() as u64).sum();
            let encoded = || {
                self.encoded_bytes.fetch_add(bytes, Ordering::Relaxed);
            };
            let meta = write_segment(
                &self.data_dir.join(&relative),
                relative,
                &schema,
                &batches,
                self.options.segment_codec,
                encoded,
            );
            if meta.is_err() {
                self.encoded_bytes.store(0, Ordering::Relaxed);
            }
            let meta = meta?;
            stats.segments_written += 1;
            stats.rows_written += meta.n_rows;
            written.push(((workspace, table), meta));
        }
        {
            let mut state = self.write_state();
            for (key, meta) in written {
                let table_state = state.tables.get_mut(&key).expect("flushed tables exist");
                table_state.segments.push(meta);
                table_state.frozen.clear();
            }
            let previous_lsn = state.flushed_lsn;
            state.flushed_lsn = flushed_lsn.max(previous_lsn);
            if let Err(err) = self.catalog_document(&state).store(&self.data_dir) {
                state.flushed_lsn = previous_lsn;
                return Err(err);
            }
            let bytes: u64 = state
                .tables
                .values()
                .flat_map(|table| table.active.iter())
                .map(|batch| batch.get_array_memory_size() as u64)
                .sum();
            self.buffered_bytes.store(bytes, Ordering::Relaxed);
            self.encoded_bytes.store(0, Ordering::Relaxed);
        }
        self.wal.truncate_through(flushed_lsn)?;
        if stats.segments_written > 0 {
            tracing::info!(
                segments = stats.segments_written,
                rows = stats.rows_written,
                lsn = flushed_lsn,
                "SegmentsFlushed"
            );
        }
        Ok(stats)
    }

    /// Moves every active buffer to frozen and returns what to write, with
    /// the WAL position the frozen set covers.
    fn freeze(&self) -> StorageResult<(Lsn, Vec<FrozenTable>)> {
        let _gate = self.gate.write().expect("gate lock poisoned");
        let mut state = self.write_state();
        let flushed_lsn = self.wal.last_lsn();
        let mut frozen = Vec::new();
        for (key, table) in state.tables.iter_mut() {
            let active = std::mem::take(&mut table.active);
            table.frozen.extend(active);
            if table.frozen.is_empty() {
                continue;
            }
            let schema = table.schema.arrow_schema();
            // A batch that cannot be aligned fails the flush; its rows stay in
            // memory and in the WAL rather than being left out of the segment.
            let batches = table.frozen.iter().map(|batch| align_batch(batch, &schema)).collect::<StorageResult<_>>()?;
            frozen.push((key.clone(), schema, batches));
        }
        Ok((flushed_lsn, frozen))
    }

    /// Drops whole segments whose newest row is older than their table's
    /// retention. Returns how many segments were dropped.
    pub fn enforce_retention(&self, now_ns: i64) -> StorageResult<usize> {
        let _flush = self.flush_lock.lock().expect("flush lock poisoned");
        let mut dropped = Vec::new();
        {
            let mut state = self.write_state();
            for table in state.tables.values_mut() {
                let cutoff = now_ns - i64::from(table.retention_days) * NANOS_PER_DAY;
                let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut table.segments)
                    .into_iter()
                    .partition(|segment| segment.max_time_ns.is_some_and(|max| max < cutoff));
                table.segments = kept;
                dropped.extend(expired);
            }
            if dropped.is_empty() {
                return Ok(0);
            }
            self.catalog_document(&state).store(&self.data_dir)?;
        }
        for segment in &dropped {
            for file in std::iter::once(&segment.file).chain(segment.terms.as_ref()) {
                let path = self.data_dir.join(file);
                if let Err(err) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %err, "could not delete expired segment");
                }
            }
        }
        tracing::info!(segments = dropped.len(), "SegmentsExpired");
        Ok(dropped.len())
    }

    fn catalog_document(&self, state: &State) -> CatalogDocument {
        let window_ns = self.options.idempotency_window.as_nanos() as i64;
        let newest = state
            .idempotency
            .values()
            .filter_map(|entry| match entry {
                IdempotencyState::Done { at_ns, .. } => Some(*at_ns),
                IdempotencyState::InFlight => None,
            })
            .max()
            .unwrap_or(0);
        let tables = state
            .tables
            .iter()
            .map(|((workspace, name), table)| TableEntry {
                workspace: workspace.clone(),
                name: name.clone(),
                schema: table.schema.clone(),
                retention_days: table.retention_days,
                segments: table.segments.clone(),
                declared: table.declared,
            })
            .collect();
        let idempotency = state
            .idempotency
            .iter()
            .filter_map(|((workspace, key), entry)| match entry {
                IdempotencyState::Done { receipt, at_ns } if newest - at_ns <= window_ns => Some(IdempotencyEntry {
                    workspace: workspace.clone(),
                    key: key.clone(),
                    receipt: receipt.clone(),
                    at_ns: *at_ns,
                }),
                _ => None,
            })
            .collect();
        CatalogDocument { flushed_lsn: state.flushed_lsn, tables, idempotency }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("state lock poisoned")
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("state lock poisoned")
    }
}

fn insert_batch(state: &mut State, workspace: &str, table: &str, batch: RecordBatch) {
    let batch_schema = TableSchema::from_arrow(&batch.schema());
    let table_state =
        state.tables.entry((workspace.to_string(), table.to_string())).or_insert_with(|| new_table_state(table));
    table_state.schema.merge(&batch_schema);
    table_state.active.push(batch);
}

/// The state of a table that has no state yet: a standard table starts
/// with its declared schema, any other table empty (its appends add columns).
fn new_table_state(table: &str) -> TableState {
    match standard_table(table) {
        Some(standard) => {
            let mut state = TableState::new(standard.schema.clone());
            state.declared = true;
            state
        }
        None => TableState::new(TableSchema::default()),
    }
}

/// Presents `batch` with exactly the columns of `schema`: missing columns
/// become nulls, and a column of another Arrow type is cast (nulls where
/// the cast fails).
pub fn align_batch(batch: &RecordBatch, schema: &SchemaRef) -> StorageResult<RecordBatch> {
    let n_rows = batch.num_rows();
    let batch_schema = batch.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch_schema.index_of(field.name()) {
            Ok(idx) if batch.column(idx).data_type() == field.data_type() => batch.column(idx).clone(),
            Ok(idx) => {
                cast(batch.column(idx), field.data_type()).unwrap_or_else(|_| new_null_array(field.data_type(), n_rows))
            }
            Err(_) => new_null_array(field.data_type(), n_rows),
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(n_rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(StorageError::arrow)
}

/// Deletes segment files (and temporary files) under `workspaces/` that the
/// catalogue does not name: leftovers of a flush that crashed before its
/// catalogue write.
fn remove_orphan_segments(data_dir: &Path, document: &CatalogDocument) -> StorageResult<()> {
    let known: HashSet<PathBuf> = document
        .tables
        .iter()
        .flat_map(|table| table.segments.iter())
        .flat_map(|segment| std::iter::once(&segment.file).chain(segment.terms.as_ref()))
        .map(|file| data_dir.join(file))
        .collect();
    let root = data_dir.join("workspaces");
    for table_dir in list_dirs(&root).into_iter().flat_map(|ws| list_dirs(&ws.join("tables"))) {
        let Ok(entries) = fs::read_dir(&table_dir) else { continue };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_file() && !known.contains(&path) {
                tracing::warn!(path = %path.display(), "removing segment file the catalog does not name");
                fs::remove_file(&path).map_err(|source| StorageError::io(&path, source))?;
            }
        }
    }
    Ok(())
}

fn list_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|entry| entry.path()).filter(|path| path.is_dir()).collect()
}

#[cfg(test)]
mod tests;
