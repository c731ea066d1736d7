//! Encoding a segment's row groups on every core.
//!
//! `ArrowWriter` encodes a row group's columns one after another on the
//! calling thread. A flush is the one big piece of CPU work besides
//! decoding requests, and when it falls behind, ingest waits for it; so the
//! columns of each row group are shared out between worker threads (one per
//! core, each taking the largest column left), each gathering its columns'
//! rows in time order
//! and encoding them with parquet's own [`ArrowColumnWriter`]s. The chunks
//! are then appended to the row group in schema order, so the file is the
//! same as `ArrowWriter` would write. The worker that encodes a string
//! column also builds its term filters (`crate::terms`) from the rows it
//! has just gathered, while they are in cache.
//!
//! Per column, dictionary encoding is turned off when a sample of the rows
//! is mostly distinct values ([`mostly_unique_columns`]): for timestamps,
//! identifiers and free text the dictionary only grows until parquet gives
//! up on it, and every value was hashed and compared for nothing.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::PAGE_ROWS;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::schema::types::SchemaDescriptor;

use crate::terms::{ColumnTerms, TermFilterBuilder};
use crate::{StorageError, StorageResult};

/// Rows looked at to decide whether a column is mostly distinct values.
const SAMPLE_ROWS: usize = 4096;
/// Fewer non-null sampled values than this decide nothing.
const MIN_SAMPLE: usize = 64;

/// The top-level columns whose sampled values are mostly distinct (more
/// than 60% of the first [`SAMPLE_ROWS`] non-null values differ), for
/// which dictionary encoding costs CPU and saves nothing. The bar is above
/// one half because skewed columns look more distinct in a small sample
/// than in a row group: user names drawn from 20,000 with a Zipf skew are
/// 52% distinct in 4,096 rows but 13% in a 131,072-row group, where their
/// dictionary and keys take a fifth of the plain strings' bytes (and a
/// scan reads them as dictionary arrays).
pub(super) fn mostly_unique_columns(schema: &Schema, batches: &[RecordBatch]) -> Vec<String> {
    let mut columns = Vec::new();
    for (idx, field) in schema.fields().iter().enumerate() {
        let mut sample = Sample::default();
        for batch in batches {
            let Some(column) = batch.columns().get(idx) else { break };
            if sample.sampled == SAMPLE_ROWS || !sample.add(column) {
                break;
            }
        }
        let distinct = sample.strings.len() + sample.primitives.len();
        if sample.sampled >= MIN_SAMPLE && distinct * 5 > sample.sampled * 3 {
            columns.push(field.name().clone());
        }
    }
    columns
}

/// The distinct values among the first [`SAMPLE_ROWS`] non-null values of a column.
#[derive(Default)]
struct Sample<'a> {
    sampled: usize,
    strings: HashSet<&'a [u8], foldhash::fast::RandomState>,
    /// Primitive values by their bits (the widest primitive is 16 bytes).
    primitives: HashSet<u128, foldhash::fast::RandomState>,
}

impl<'a> Sample<'a> {
    /// Adds the non-null values of `column` until the sample is full;
    /// false for types that are not sampled.
    fn add(&mut self, column: &'a ArrayRef) -> bool {
        let limit = SAMPLE_ROWS - self.sampled;
        let rows: Vec<usize> = (0..column.len()).filter(|row| column.is_valid(*row)).take(limit).collect();
        match column.data_type() {
            DataType::Utf8 => {
                let strings = column.as_string::<i32>();
                self.strings.extend(rows.iter().map(|row| strings.value(*row).as_bytes()));
            }
            DataType::LargeUtf8 => {
                let strings = column.as_string::<i64>();
                self.strings.extend(rows.iter().map(|row| strings.value(*row).as_bytes()));
            }
            data_type if data_type.is_primitive() => {
                let width = data_type.primitive_width().expect("primitive types have a width");
                let data = column.to_data();
                let Some(values) = data.buffers().first() else { return false };
                let (values, offset) = (values.as_slice(), data.offset());
                for row in &rows {
                    let at = (offset + row) * width;
                    let mut bits = [0u8; 16];
                    bits[..width].copy_from_slice(&values[at..at + width]);
                    self.primitives.insert(u128::from_le_bytes(bits));
                }
            }
            _ => return false,
        }
        self.sampled += rows.len();
        true
    }
}

/// The rows of one row group.
pub(super) enum RowGroup<'a> {
    /// Rows already in order: slices of the input batches, encoded as they are.
    Slices(Vec<RecordBatch>),
    /// `(batch, row)` positions of the rows in order, gathered per column.
    Gather(&'a [(usize, usize)]),
}

/// Splits the rows into row groups of at most `rows_per_group`: slices of
/// the input when `order` is `None` (they are in order), positions otherwise.
pub(super) fn row_groups<'a>(
    batches: &[RecordBatch],
    order: Option<&'a [(usize, usize)]>,
    rows_per_group: usize,
) -> Vec<RowGroup<'a>> {
    if let Some(order) = order {
        return order.chunks(rows_per_group).map(RowGroup::Gather).collect();
    }
    let mut groups = Vec::new();
    let (mut current, mut rows) = (Vec::new(), 0);
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (rows_per_group - rows).min(batch.num_rows() - offset);
            current.push(batch.slice(offset, take));
            (offset, rows) = (offset + take, rows + take);
            if rows == rows_per_group {
                groups.push(RowGroup::Slices(std::mem::take(&mut current)));
                rows = 0;
            }
        }
    }
    if rows > 0 {
        groups.push(RowGroup::Slices(current));
    }
    groups
}

/// What a worker returns: per field, its index and its column chunks.
type Encoded = Vec<(usize, Vec<ArrowColumnChunk>)>;

/// Encodes row groups of one segment.
pub(super) struct Encoder<'a> {
    schema: &'a SchemaRef,
    batches: &'a [RecordBatch],
    /// Worker threads per row group (one per core).
    workers: usize,
    /// The fields, largest first: workers take the next one when they are
    /// done with one, so a few heavy string columns do not leave a core idle.
    largest_first: Vec<usize>,
    /// Per field, its range of Parquet leaf columns.
    leaves: Vec<Range<usize>>,
    /// Per field, its term filters being built (string columns). Each
    /// field is encoded by one worker at a time: the locks never wait.
    terms: Vec<Option<Mutex<ColumnTerms>>>,
}

impl<'a> Encoder<'a> {
    pub(super) fn new(
        schema: &'a SchemaRef,
        batches: &'a [RecordBatch],
        parquet: &SchemaDescriptor,
        terms: Option<TermFilterBuilder>,
    ) -> Encoder<'a> {
        // Leaves are in schema order; a field's leaves are those whose path
        // starts with its name (more than one for nested types).
        let mut leaves = Vec::with_capacity(schema.fields().len());
        let mut next = 0;
        for field in schema.fields() {
            let start = next;
            while next < parquet.num_columns()
                && parquet.column(next).path().parts().first().is_some_and(|part| part == field.name())
            {
                next += 1;
            }
            leaves.push(start..next);
        }
        let workers = std::thread::available_parallelism().map_or(1, usize::from).min(schema.fields().len()).max(1);
        let mut sizes: Vec<(usize, usize)> = (0..schema.fields().len())
            .map(|idx| {
                let bytes = batches.iter().take(8).map(|batch| batch.column(idx).get_array_memory_size()).sum();
                (bytes, idx)
            })
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let largest_first = sizes.into_iter().map(|(_, idx)| idx).collect();
        let mut per_field: Vec<Option<Mutex<ColumnTerms>>> = (0..schema.fields().len()).map(|_| None).collect();
        for (idx, column) in terms.map(TermFilterBuilder::into_columns).unwrap_or_default() {
            per_field[idx] = Some(Mutex::new(column));
        }
        Encoder { schema, batches, workers, largest_first, leaves, terms: per_field }
    }

    /// The term filters built while encoding; `None` without string columns.
    pub(super) fn into_terms(self) -> Option<TermFilterBuilder> {
        let columns: Vec<(usize, ColumnTerms)> = self
            .terms
            .into_iter()
            .enumerate()
            .filter_map(|(idx, column)| Some((idx, column?.into_inner().expect("term filter lock poisoned"))))
            .collect();
        (!columns.is_empty()).then(|| TermFilterBuilder::from_columns(columns))
    }

    /// Encodes row group `index` (and adds its rows to the term filters);
    /// returns its column chunks in schema order.
    pub(super) fn encode(
        &self,
        factory: &ArrowRowGroupWriterFactory,
        index: usize,
        group: &RowGroup<'_>,
    ) -> StorageResult<Vec<ArrowColumnChunk>> {
        let mut writers: Vec<Option<ArrowColumnWriter>> =
            factory.create_column_writers(index).map_err(StorageError::parquet)?.into_iter().map(Some).collect();
        // Per field, the writers of its leaves, taken by the worker that encodes it.
        let fields: Vec<Mutex<Vec<ArrowColumnWriter>>> = self
            .leaves
            .iter()
            .map(|leaves| {
                Mutex::new(leaves.clone().map(|leaf| writers[leaf].take().expect("one leaf, one writer")).collect())
            })
            .collect();
        let next = AtomicUsize::new(0);
        let work = || self.encode_fields(group, &fields, &next);
        let results: Vec<StorageResult<Encoded>> = std::thread::scope(|scope| {
            let spawned: Vec<_> = (1..self.workers)
                .map(|_| std::thread::Builder::new().name("watchpost-encode".into()).spawn_scoped(scope, work))
                .collect();
            let mut results = vec![work()];
            for handle in spawned {
                match handle {
                    Ok(handle) => results.push(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
                    Err(err) => results.push(Err(StorageError::Io { path: "encoder thread".into(), source: err })),
                }
            }
            results
        });
        let mut encoded: Encoded = Vec::with_capacity(self.schema.fields().len());
        for result in results {
            encoded.extend(result?);
        }
        encoded.sort_unstable_by_key(|(field, _)| *field);
        Ok(encoded.into_iter().flat_map(|(_, chunks)| chunks).collect())
    }

    /// Takes the next field from [`Self::largest_first`] until none is
    /// left; gathers (when needed) and encodes each.
    fn encode_fields(
        &self,
        group: &RowGroup<'_>,
        fields: &[Mutex<Vec<ArrowColumnWriter>>],
        next: &AtomicUsize,
    ) -> StorageResult<Encoded> {
        let mut encoded = Vec::new();
        while let Some(&field_idx) = self.largest_first.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut writers = std::mem::take(&mut *fields[field_idx].lock().expect("writer lock poisoned"));
            let field = self.schema.field(field_idx);
            // Rows of this row group written so far: writes are cut where a
            // page must end, since a page closes only between writes.
            let mut position = 0usize;
            let mut write = |column: &ArrayRef| -> StorageResult<()> {
                let mut offset = 0;
                while offset < column.len() {
                    let take = (PAGE_ROWS - position % PAGE_ROWS).min(column.len() - offset);
                    let piece = column.slice(offset, take);
                    let leaves = compute_leaves(field, &piece).map_err(StorageError::parquet)?;
                    for (leaf, writer) in leaves.iter().zip(writers.iter_mut()) {
                        writer.write(leaf).map_err(StorageError::parquet)?;
                    }
                    offset += take;
                    position += take;
                }
                Ok(())
            };
            let mut terms =
                self.terms[field_idx].as_ref().map(|terms| terms.lock().expect("term filter lock poisoned"));
            match group {
                RowGroup::Slices(slices) => {
                    for slice in slices {
                        write(slice.column(field_idx))?;
                        if let Some(terms) = terms.as_mut() {
                            terms.push(slice.column(field_idx).as_ref());
                        }
                    }
                }
                RowGroup::Gather(order) => {
                    let columns: Vec<&dyn Array> =
                        self.batches.iter().map(|batch| batch.column(field_idx).as_ref()).collect();
                    let column = interleave(&columns, order).map_err(StorageError::arrow)?;
                    write(&column)?;
                    if let Some(terms) = terms.as_mut() {
                        terms.push(column.as_ref());
                    }
                }
            }
            let chunks = writers
                .into_iter()
                .map(|writer| writer.close().map_err(StorageError::parquet))
                .collect::<StorageResult<Vec<_>>>()?;
            encoded.push((field_idx, chunks));
        }
        Ok(encoded)
    }
}
