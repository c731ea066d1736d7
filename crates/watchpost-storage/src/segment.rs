//! Parquet segments: immutable files of one table's rows, sorted by
//! `TimeGenerated`, zstd-compressed, with page statistics so readers can
//! prune by time and value. They are ordinary Parquet: DuckDB and pyarrow
//! read them.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch, SortOptions};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use watchpost_schema::TIME_GENERATED;

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
}

/// Concatenates `batches` (all of `schema`), sorts them by `TimeGenerated`
/// and writes them to `path` atomically (temporary name, fsync, rename).
pub(crate) fn write_segment(
    path: &Path,
    relative: String,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> StorageResult<SegmentMeta> {
    let combined = concat_batches(schema, batches).map_err(StorageError::arrow)?;
    let (sorted, min_time_ns, max_time_ns) = sort_by_time(combined)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let tmp = path.with_extension("parquet.tmp");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| StorageError::io(parent, source))?;
    }
    let file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(StorageError::parquet)?;
    writer.write(&sorted).map_err(StorageError::parquet)?;
    let file = writer.into_inner().map_err(StorageError::parquet)?;
    file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
    let bytes = file.metadata().map_err(|source| StorageError::io(&tmp, source))?.len();
    fs::rename(&tmp, path).map_err(|source| StorageError::io(path, source))?;
    Ok(SegmentMeta { file: relative, n_rows: sorted.num_rows() as u64, bytes, min_time_ns, max_time_ns })
}

fn sort_by_time(batch: RecordBatch) -> StorageResult<(RecordBatch, Option<i64>, Option<i64>)> {
    let Some(time) = batch.column_by_name(TIME_GENERATED).cloned() else {
        return Ok((batch, None, None));
    };
    let indices = sort_to_indices(&time, Some(SortOptions { descending: false, nulls_first: true }), None)
        .map_err(StorageError::arrow)?;
    let sorted = take_record_batch(&batch, &indices).map_err(StorageError::arrow)?;
    let times = sorted
        .column_by_name(TIME_GENERATED)
        .and_then(|column| column.as_any().downcast_ref::<TimestampNanosecondArray>().cloned());
    let (min, max) = match times {
        Some(times) => {
            let values = times.iter().flatten();
            (values.clone().min(), values.max())
        }
        None => (None, None),
    };
    Ok((sorted, min, max))
}
