//! Reading a stored table: its Parquet segments (pruned by the query
//! window, and at scan time by their term filters: `segments`, `terms`)
//! unioned with its in-memory batches, filtered to the window.

mod segments;
pub(crate) mod terms;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::path::PathBuf;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{ident, SessionContext};
use watchpost_schema::{KqlType, TableSchema, TIME_GENERATED};
use watchpost_storage::{dictionary_hints, SegmentMeta, TableSnapshot};

use crate::QueryStats;

/// A half-open time range `[start, end)` in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Builds the plan that reads `table`.
pub(crate) fn scan_table(
    session: &SessionContext,
    table: &str,
    snapshot: Option<TableSnapshot>,
    window: Option<TimeWindow>,
    stats: &mut QueryStats,
    pruning: &Arc<TermPruning>,
) -> Result<LogicalPlan> {
    let Some(snapshot) = snapshot else {
        return Err(datafusion::error::DataFusionError::Plan(format!("table {table} disappeared")));
    };
    let arrow_schema = snapshot.schema.arrow_schema();
    let mut paths = Vec::new();
    for (path, meta) in snapshot.segments {
        let overlaps = match (window, meta.min_time_ns, meta.max_time_ns) {
            (Some(window), Some(min), Some(max)) => max >= window.start_ns && min < window.end_ns,
            _ => true,
        };
        if overlaps {
            let terms = meta.terms.as_ref().map(|_| path.with_extension("terms"));
            paths.push((path, meta, terms));
        } else {
            stats.segments_pruned += 1;
        }
    }
    stats.segments_scanned += paths.len();
    let arrow_schema = dictionary_columns(&snapshot.schema, &arrow_schema, &paths);
    let memory = memory_plan(session, &arrow_schema, snapshot.batches)?;
    let plan = if paths.is_empty() {
        memory
    } else {
        let table = segments::SegmentTable::new(arrow_schema.clone(), paths, pruning.clone());
        let segments = session.read_table(Arc::new(table))?.into_unoptimized_plan();
        LogicalPlanBuilder::from(segments).union(memory)?.build()?
    };
    let has_time = snapshot.schema.column(TIME_GENERATED).is_some();
    match window {
        Some(window) if has_time => {
            let at = crate::lower::datetime_literal;
            let predicate =
                ident(TIME_GENERATED).gt_eq(at(window.start_ns)).and(ident(TIME_GENERATED).lt(at(window.end_ns)));
            LogicalPlanBuilder::from(plan).filter(predicate)?.build()
        }
        _ => Ok(plan),
    }
}

/// `schema` with the string columns that every scanned segment stores as
/// dictionaries typed `Dictionary(Int32, Utf8)`: their values are then read
/// as the keys of the segment's dictionary, without building a string per
/// row, and a summarize by one of them groups by key (`DictionaryGroups`).
/// Other string columns, and any column some segment stores plainly, are
/// read as `Utf8`. Only KQL `string` columns qualify; functions expand
/// dictionaries they are given (`udf::kernel::without_dictionary`).
fn dictionary_columns(
    table: &TableSchema,
    schema: &SchemaRef,
    segments: &[(PathBuf, SegmentMeta, Option<PathBuf>)],
) -> SchemaRef {
    if segments.is_empty() {
        return schema.clone();
    }
    let dictionary: Vec<String> = schema
        .fields()
        .iter()
        .filter(|field| {
            let string = table.column(field.name()).is_some_and(|column| column.kql_type == KqlType::String);
            let everywhere =
                segments.iter().all(|(_, meta, _)| meta.dictionary.iter().any(|name| name == field.name()));
            string && everywhere && field.data_type() == &DataType::Utf8
        })
        .map(|field| field.name().clone())
        .collect();
    Arc::new(dictionary_hints(schema, &dictionary))
}

/// What term filters saved, counted while plans are built.
#[derive(Debug, Default)]
pub(crate) struct TermPruning {
    pub segments: AtomicUsize,
    pub blocks: AtomicUsize,
}

impl TermPruning {
    pub(crate) fn add_to(&self, stats: &mut QueryStats) {
        let segments = self.segments.load(Ordering::Relaxed);
        stats.segments_pruned += segments;
        stats.segments_scanned = stats.segments_scanned.saturating_sub(segments);
        stats.blocks_skipped += self.blocks.load(Ordering::Relaxed);
    }
}

/// The in-memory batches, spread over two partitions so both cores work.
fn memory_plan(session: &SessionContext, schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<LogicalPlan> {
    let mut partitions = vec![Vec::new(), Vec::new()];
    for (idx, batch) in batches.into_iter().enumerate() {
        let batch = if batch.schema().fields() == schema.fields() {
            batch
        } else {
            // Columns the segments hold as dictionaries.
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| Ok(arrow::compute::cast(column, field.data_type())?))
                .collect::<Result<Vec<_>>>()?;
            RecordBatch::try_new(schema.clone(), columns)?
        };
        partitions[idx % 2].push(batch);
    }
    let table = MemTable::try_new(schema.clone(), partitions)?;
    Ok(session.read_table(Arc::new(table))?.into_unoptimized_plan())
}
