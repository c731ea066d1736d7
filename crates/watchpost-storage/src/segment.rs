//! Parquet segments: immutable files of one table's rows, sorted by
//! `TimeGenerated`, zstd-compressed, with page statistics so readers can
//! prune by time and value. They are ordinary Parquet: DuckDB and pyarrow
//! read them.

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use watchpost_schema::TIME_GENERATED;

use crate::terms::{TermFilterBuilder, BLOCK_ROWS};
use crate::{StorageError, StorageResult};

/// What the catalog records about one segment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Path relative to the data directory.
    pub file: String,
    pub n_rows: u64,
    pub bytes: u64,
    /// Smallest and largest `TimeGenerated`, nanoseconds since the epoch.
    pub min_time_ns: Option<i64>,
    pub max_time_ns: Option<i64>,
    /// The segment's term filters (`terms` module), relative to the data
    /// directory; absent for segments written before they existed and for
    /// tables without string columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<String>,
}

/// Rows written per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Encodes `batches` in time order (`order`, or as they are when `None`),
/// handing each written batch to `also`.
fn write_rows(
    writer: &mut ArrowWriter<fs::File>,
    batches: &[RecordBatch],
    order: Option<&[(usize, usize)]>,
    also: impl Fn(&RecordBatch),
) -> StorageResult<()> {
    match order {
        None => {
            for batch in batches {
                writer.write(batch).map_err(StorageError::parquet)?;
                also(batch);
            }
        }
        Some(order) => {
            let inputs: Vec<&RecordBatch> = batches.iter().collect();
            for chunk in order.chunks(ROW_GROUP_ROWS) {
                let rows = interleave_record_batch(&inputs, chunk).map_err(StorageError::arrow)?;
                writer.write(&rows).map_err(StorageError::parquet)?;
                also(&rows);
            }
        }
    }
    Ok(())
}

/// Writes `batches` (all of `schema`) to `path` sorted by `TimeGenerated`,
/// atomically (temporary name, fsync, rename).
///
/// Rows are gathered into row groups straight from the input batches in
/// time order (`interleave`), so memory beyond the input is about two row
/// groups (one being encoded, one being tokenised), not a sorted copy of
/// everything. Batches already in time order,
/// the usual case since `TimeGenerated` mostly follows arrival, are written
/// as they are, without the copy.
pub(crate) fn write_segment(
    path: &Path,
    relative: String,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> StorageResult<SegmentMeta> {
    let TimeOrder { order, n_rows, min_time_ns, max_time_ns } = time_order(batches);
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Pages end at least every term-filter block, so the rows of a
        // block that may hold a term are read without their neighbours.
        .set_data_page_row_count_limit(BLOCK_ROWS)
        .build();
    let tmp = path.with_extension("parquet.tmp");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| StorageError::io(parent, source))?;
    }
    let file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(StorageError::parquet)?;
    // The term filters are built on a thread of their own from the same
    // batches as the Parquet encoder takes, so a flush costs the longer of
    // the two rather than their sum (flushing paces ingest).
    // A rendezvous channel: the builder holds one row group while the
    // encoder writes the next, so at most two gathered row groups are alive.
    let (rows_tx, rows_rx) = mpsc::sync_channel::<RecordBatch>(0);
    let (written, terms) = std::thread::scope(|scope| {
        let builder = match TermFilterBuilder::new(schema) {
            Some(mut builder) => {
                let spawned =
                    std::thread::Builder::new().name("watchpost-terms".into()).spawn_scoped(scope, move || {
                        for rows in rows_rx {
                            builder.push(&rows);
                        }
                        builder
                    });
                Some(spawned.map_err(|source| StorageError::io(path, source))?)
            }
            None => None,
        };
        let send = |rows: &RecordBatch| {
            if builder.is_some() {
                // A closed channel means the builder thread panicked; the
                // join below raises it.
                let _ = rows_tx.send(rows.clone());
            }
        };
        let written = write_rows(&mut writer, batches, order.as_deref(), send);
        drop(rows_tx);
        // A panic there is a bug, raised here as it would have been had
        // the builder run on this thread.
        let terms = builder.map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        Ok::<_, StorageError>((written, terms))
    })?;
    written?;
    let file = writer.into_inner().map_err(StorageError::parquet)?;
    file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
    let bytes = file.metadata().map_err(|source| StorageError::io(&tmp, source))?.len();
    fs::rename(&tmp, path).map_err(|source| StorageError::io(path, source))?;
    let terms = match terms {
        Some(terms) => {
            terms.write(&path.with_extension("terms"))?;
            Some(terms_path(&relative))
        }
        None => None,
    };
    Ok(SegmentMeta { file: relative, n_rows: n_rows as u64, bytes, min_time_ns, max_time_ns, terms })
}

/// The term filter file of the segment at `relative`.
fn terms_path(relative: &str) -> String {
    match relative.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}.terms"),
        None => format!("{relative}.terms"),
    }
}

/// How to put a table's buffered rows in `TimeGenerated` order.
struct TimeOrder {
    /// The `(batch, row)` positions of every row in `TimeGenerated` order
    /// (nulls first, ties in arrival order); `None` when the rows already
    /// are in that order.
    order: Option<Vec<(usize, usize)>>,
    n_rows: usize,
    min_time_ns: Option<i64>,
    max_time_ns: Option<i64>,
}

fn time_order(batches: &[RecordBatch]) -> TimeOrder {
    let mut keyed: Vec<(Option<i64>, usize, usize)> = Vec::new();
    for (batch_idx, batch) in batches.iter().enumerate() {
        let times = batch
            .column_by_name(TIME_GENERATED)
            .and_then(|column| column.as_any().downcast_ref::<TimestampNanosecondArray>());
        for row_idx in 0..batch.num_rows() {
            let time = times.and_then(|times| times.is_valid(row_idx).then(|| times.value(row_idx)));
            keyed.push((time, batch_idx, row_idx));
        }
    }
    let in_order = keyed.is_sorted_by_key(|(time, _, _)| *time);
    if !in_order {
        // Stable: ties keep arrival order.
        keyed.sort_by_key(|(time, _, _)| *time);
    }
    let min_time_ns = keyed.iter().find_map(|(time, _, _)| *time);
    let max_time_ns = keyed.last().and_then(|(time, _, _)| *time);
    let n_rows = keyed.len();
    let order = (!in_order).then(|| keyed.into_iter().map(|(_, batch_idx, row_idx)| (batch_idx, row_idx)).collect());
    TimeOrder { order, n_rows, min_time_ns, max_time_ns }
}
