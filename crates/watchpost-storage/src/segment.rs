//! Parquet segments: immutable files of one table's rows, sorted by
//! `TimeGenerated`, zstd-compressed, with page statistics so readers can
//! prune by time and value. They are ordinary Parquet: DuckDB and pyarrow
//! read them.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{encode_arrow_schema, ArrowWriter, ARROW_SCHEMA_META_KEY};
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::file::metadata::{ColumnChunkMetaData, KeyValue};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use watchpost_schema::TIME_GENERATED;

use crate::terms::{TermFilterBuilder, BLOCK_ROWS};
use crate::{StorageError, StorageResult};

mod encode;

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
    /// The string columns whose every page is dictionary-encoded. The
    /// segment's Arrow schema gives them as `Dictionary(Int32, Utf8)`, so
    /// readers may take them as dictionary keys without building strings.
    /// Empty for segments written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionary: Vec<String>,
}

/// How segment pages are compressed. Readers need no setting: each
/// Parquet column chunk names its codec, so segments of both kinds are
/// read side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentCodec {
    /// LZ4 (`LZ4_RAW`): the default. Scans decompress several times faster
    /// than zstd's; on the benchmark data, files are about 1.6× larger.
    #[default]
    Lz4,
    /// zstd level 1: smaller files (about 60% of LZ4's), slower scans.
    Zstd,
}

impl SegmentCodec {
    /// The codec called `name` (`lz4` or `zstd`).
    pub fn parse(name: &str) -> Option<SegmentCodec> {
        match name.to_ascii_lowercase().as_str() {
            "lz4" => Some(SegmentCodec::Lz4),
            "zstd" => Some(SegmentCodec::Zstd),
            _ => None,
        }
    }

    fn compression(self) -> Compression {
        match self {
            SegmentCodec::Lz4 => Compression::LZ4_RAW,
            SegmentCodec::Zstd => Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")),
        }
    }
}

/// Rows written per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per Parquet data page at most. Pages are the unit a reader fetches
/// and decompresses, so a query that needs a few scattered rows (the
/// winners of a late-read `arg_max`, found by their keys) pays for one page
/// of every column per row: with 1,024-row pages, 500 rows spread over 10M
/// read about 5% of the pages, against a third with 8,192-row pages. A
/// term-filter block is a whole number of pages (and row groups a whole
/// number of blocks), so a block that may hold a term is still read
/// without its neighbours. Decoding more, smaller pages costs full scans
/// little: page headers are a few bytes and LZ4 works on each page alone.
pub(crate) const PAGE_ROWS: usize = 1024;
const _: () = assert!(BLOCK_ROWS.is_multiple_of(PAGE_ROWS) && ROW_GROUP_ROWS.is_multiple_of(BLOCK_ROWS));

/// Writes `batches` (all of `schema`) to `path` sorted by `TimeGenerated`,
/// atomically (temporary name, fsync, rename). `encoded` is called once
/// every row is encoded, before the syncs: from then on the batches are no
/// longer read.
///
/// Each row group's columns are encoded on every core ([`encode`]): rows in
/// time order are gathered column by column by the worker that encodes the
/// column (`interleave`) and builds its term filters, so memory beyond the
/// input is about one column of one row group per core, not a sorted copy
/// of everything. Batches already in time order, the usual case since
/// `TimeGenerated` mostly follows arrival, are encoded as they are, without
/// the copy.
pub(crate) fn write_segment(
    path: &Path,
    relative: String,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
    codec: SegmentCodec,
    encoded: impl FnOnce(),
) -> StorageResult<SegmentMeta> {
    let TimeOrder { order, n_rows, min_time_ns, max_time_ns } = time_order(batches);
    let mut properties = WriterProperties::builder()
        .set_compression(codec.compression())
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS);
    for column in encode::mostly_unique_columns(schema, batches) {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    let tmp = path.with_extension("parquet.tmp");
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| StorageError::io(parent, source))?;
    }
    let file = fs::File::create(&tmp).map_err(|source| StorageError::io(&tmp, source))?;
    // `ArrowWriter` sets the file up (the Parquet schema); its row groups
    // are then encoded here, a column per core. The Arrow schema in the
    // footer is written last, once it is known which columns kept their
    // dictionaries.
    let options = ArrowWriterOptions::new().with_properties(properties.build()).with_skip_arrow_metadata(true);
    let writer = ArrowWriter::try_new_with_options(file, schema.clone(), options).map_err(StorageError::parquet)?;
    let (mut writer, factory) = writer.into_serialized_writer().map_err(StorageError::parquet)?;
    let encoder = encode::Encoder::new(schema, batches, writer.schema_descr(), TermFilterBuilder::new(schema));
    // Candidates: the Parquet columns of top-level string fields, dropped
    // at the first chunk that is not dictionary-encoded throughout.
    let descriptor = writer.schema_descr();
    let mut dictionary: Vec<(usize, String)> = (0..descriptor.num_columns())
        .filter_map(|leaf| {
            let field = schema.field(descriptor.get_column_root_idx(leaf));
            (field.data_type() == &DataType::Utf8).then(|| (leaf, field.name().clone()))
        })
        .collect();
    for (index, group) in encode::row_groups(batches, order.as_deref(), ROW_GROUP_ROWS).iter().enumerate() {
        let chunks = encoder.encode(&factory, index, group)?;
        let mut row_group = writer.next_row_group().map_err(StorageError::parquet)?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group).map_err(StorageError::parquet)?;
        }
        let written = row_group.close().map_err(StorageError::parquet)?;
        dictionary.retain(|(idx, _)| fully_dictionary_encoded(written.column(*idx)));
        start_writeback(writer.inner());
    }
    let dictionary: Vec<String> = dictionary.into_iter().map(|(_, name)| name).collect();
    let hinted = dictionary_hints(schema, &dictionary);
    writer.append_key_value_metadata(KeyValue::new(ARROW_SCHEMA_META_KEY.to_string(), encode_arrow_schema(&hinted)));
    let file = writer.into_inner().map_err(StorageError::parquet)?;
    start_writeback(&file);
    encoded();
    // The term filters are written (and synced) while the segment's last
    // pages are still going to disk; both are durable before either is
    // named in the catalogue.
    let terms = match encoder.into_terms() {
        Some(terms) => {
            terms.write(&path.with_extension("terms"))?;
            Some(terms_path(&relative))
        }
        None => None,
    };
    file.sync_all().map_err(|source| StorageError::io(&tmp, source))?;
    let bytes = file.metadata().map_err(|source| StorageError::io(&tmp, source))?.len();
    fs::rename(&tmp, path).map_err(|source| StorageError::io(path, source))?;
    Ok(SegmentMeta { file: relative, n_rows: n_rows as u64, bytes, min_time_ns, max_time_ns, terms, dictionary })
}

/// Whether every data page of `chunk` holds dictionary indices (a writer
/// falls back to plain pages when a dictionary grows too large).
fn fully_dictionary_encoded(chunk: &ColumnChunkMetaData) -> bool {
    if chunk.dictionary_page_offset().is_none() {
        return false;
    }
    let Some(stats) = chunk.page_encoding_stats() else { return false };
    stats.iter().all(|page| {
        !matches!(page.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
            || matches!(page.encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY)
    })
}

/// `schema` with the `dictionary` columns typed `Dictionary(Int32, Utf8)`:
/// the Arrow schema a segment declares in its footer, and the one a reader
/// of those columns as dictionaries asks for.
pub fn dictionary_hints(schema: &Schema, dictionary: &[String]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let field = field.as_ref().clone();
            if dictionary.iter().any(|name| name == field.name()) {
                let data_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                field.with_data_type(data_type)
            } else {
                field
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Asks the kernel to start writing `file`'s dirty pages now, without
/// waiting for them, so the fsync that makes a segment durable finds most
/// of its pages already written: the disk works while the next row group
/// is encoded, rather than taking the whole file at the end while ingest
/// waits for the flush (RocksDB's `bytes_per_sync` serves the same end).
pub(crate) fn start_writeback(file: &fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range takes the descriptor of a file this
        // process holds open, and no pointers.
        let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
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

#[cfg(test)]
mod tests;
