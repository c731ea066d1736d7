//! Reading a stored table: its Parquet segments (pruned by the query
//! window) unioned with its in-memory batches, filtered to the window.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{ident, ParquetReadOptions, SessionContext};
use watchpost_schema::TIME_GENERATED;
use watchpost_storage::TableSnapshot;

use crate::QueryStats;

/// A half-open time range `[start, end)` in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Builds the plan that reads `table`.
pub(crate) async fn scan_table(
    session: &SessionContext,
    table: &str,
    snapshot: Option<TableSnapshot>,
    window: Option<TimeWindow>,
    stats: &mut QueryStats,
) -> Result<LogicalPlan> {
    let Some(snapshot) = snapshot else {
        return Err(datafusion::error::DataFusionError::Plan(format!("table {table} disappeared")));
    };
    let arrow_schema = snapshot.schema.arrow_schema();
    let mut paths = Vec::new();
    for (path, meta) in &snapshot.segments {
        let overlaps = match (window, meta.min_time_ns, meta.max_time_ns) {
            (Some(window), Some(min), Some(max)) => max >= window.start_ns && min < window.end_ns,
            _ => true,
        };
        if overlaps {
            paths.push(path.to_string_lossy().into_owned());
        } else {
            stats.segments_pruned += 1;
        }
    }
    stats.segments_scanned += paths.len();
    let memory = memory_plan(session, &arrow_schema, snapshot.batches)?;
    let plan = if paths.is_empty() {
        memory
    } else {
        let options = ParquetReadOptions::default().schema(&arrow_schema);
        let segments = session.read_parquet(paths, options).await?.into_unoptimized_plan();
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

/// The in-memory batches, spread over two partitions so both cores work.
fn memory_plan(session: &SessionContext, schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<LogicalPlan> {
    let mut partitions = vec![Vec::new(), Vec::new()];
    for (idx, batch) in batches.into_iter().enumerate() {
        partitions[idx % 2].push(batch);
    }
    let table = MemTable::try_new(schema.clone(), partitions)?;
    Ok(session.read_table(Arc::new(table))?.into_unoptimized_plan())
}
