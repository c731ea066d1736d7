//! A table's Parquet segments as one DataFusion table whose scan reads only
//! the rows the pushed-down filters can keep according to the segments'
//! term filters: a segment none of whose blocks may match is left out, and
//! one with some is read with a row selection, so Parquet skips the pages
//! of the other blocks (segments are written with pages of at most one
//! block). Segments without term filters are read whole.
//!
//! Skipping pages needs each file's page index (where every page starts),
//! which DataFusion loads only for predicates it can prune with page
//! statistics; a term filter's selection is not one. Scans with a selection
//! (or with filters evaluated while decoding) therefore read through
//! [`PageIndexReaders`], which always asks for the
//! page index (kept in the shared metadata cache), so only the selected
//! pages are read from disk and decompressed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::Statistics;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result as ParquetResult;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::{BoxFuture, FutureExt};
use watchpost_storage::terms::TermFilters;
use watchpost_storage::SegmentMeta;

use super::terms::TermCheck;
use super::TermPruning;

#[derive(Debug)]
pub(crate) struct SegmentTable {
    schema: SchemaRef,
    /// Segment file, its catalogue entry, and the path of its term filters.
    segments: Vec<(PathBuf, SegmentMeta, Option<PathBuf>)>,
    pruning: Arc<TermPruning>,
}

impl SegmentTable {
    pub(crate) fn new(
        schema: SchemaRef,
        segments: Vec<(PathBuf, SegmentMeta, Option<PathBuf>)>,
        pruning: Arc<TermPruning>,
    ) -> SegmentTable {
        SegmentTable { schema, segments, pruning }
    }
}

/// What to read of one segment.
#[derive(Debug, PartialEq)]
pub(crate) enum Access {
    All,
    Nothing,
    /// These rows; the second field counts the blocks left out.
    Rows(RowSelection, usize),
}

/// What `check` leaves to read of a segment of `n_rows` rows whose term
/// filters are at `terms`.
pub(crate) fn segment_access(check: &TermCheck, n_rows: u64, terms: Option<&PathBuf>) -> Access {
    let Some(path) = terms else { return Access::All };
    if *check == TermCheck::Unknown {
        return Access::All;
    }
    let filters = match TermFilters::open(path) {
        Ok(filters) => filters,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "could not open term filters; scanning the whole segment");
            return Access::All;
        }
    };
    if filters.n_rows() as u64 != n_rows {
        return Access::All;
    }
    let Some(blocks) = check.blocks(&filters) else { return Access::All };
    if blocks.iter().all(|maybe| *maybe) {
        return Access::All;
    }
    if !blocks.iter().any(|maybe| *maybe) {
        return Access::Nothing;
    }
    let block_rows = filters.block_rows();
    let mut selectors: Vec<RowSelector> = Vec::new();
    for (idx, maybe) in blocks.iter().enumerate() {
        let rows = block_rows.min(n_rows as usize - idx * block_rows);
        match selectors.last_mut() {
            Some(last) if last.skip != *maybe => last.row_count += rows,
            _ => selectors.push(if *maybe { RowSelector::select(rows) } else { RowSelector::skip(rows) }),
        }
    }
    let skipped = blocks.iter().filter(|maybe| !**maybe).count();
    Access::Rows(RowSelection::from(selectors), skipped)
}

#[async_trait]
impl TableProvider for SegmentTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the filters still run above the scan; here they only
        // decide which rows are worth reading.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let check = TermCheck::of_filters(filters);
        let mut files = Vec::new();
        let mut selective = false;
        for (path, meta, terms) in &self.segments {
            let file = PartitionedFile::new(path.to_string_lossy().into_owned(), meta.bytes);
            let file = match segment_access(&check, meta.n_rows, terms.as_ref()) {
                Access::Nothing => {
                    self.pruning.segments.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Access::All => file,
                Access::Rows(selection, skipped) => {
                    self.pruning.blocks.fetch_add(skipped, Ordering::Relaxed);
                    selective = true;
                    file.with_extension(ParquetRowSelection::new(selection))
                }
            };
            let statistics =
                Statistics::new_unknown(&self.schema).with_num_rows(Precision::Inexact(meta.n_rows as usize));
            files.push(file.with_statistics(Arc::new(statistics)));
        }
        if files.is_empty() {
            let schema = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Spread the files over the partitions, largest first onto the
        // least loaded; DataFusion may split large files further.
        let n_groups = state.config().target_partitions().max(1).min(files.len());
        files.sort_by_key(|file| std::cmp::Reverse(file.object_meta.size));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n_groups).map(|_| (0, Vec::new())).collect();
        for file in files {
            let group = groups.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
            group.0 += file.object_meta.size;
            group.1.push(file);
        }
        let groups: Vec<FileGroup> = groups.into_iter().map(|(_, files)| FileGroup::new(files)).collect();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        // A selection, or filters evaluated while decoding (which the
        // late-read `arg_max` turns on), reads only some pages: the page
        // index says where they are.
        let page_index = selective || state.config().options().execution.parquet.pushdown_filters;
        let source = if page_index {
            // Built here: `ParquetFormat::create_physical_plan` would put
            // its own reader factory in place of this one.
            let runtime = state.runtime_env();
            let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
            let cached = CachedParquetFileReaderFactory::new(store, runtime.cache_manager.get_file_metadata_cache());
            Arc::new(
                ParquetSource::new(self.schema.clone())
                    .with_table_parquet_options(state.table_options().parquet.clone())
                    .with_parquet_file_reader_factory(Arc::new(PageIndexReaders(cached))),
            )
        } else {
            format.file_source(self.schema.clone().into())
        };
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        if page_index {
            return Ok(DataSourceExec::from_data_source(config));
        }
        format.create_physical_plan(state, config).await
    }
}

/// Readers whose metadata always carries the page index (see the module
/// documentation).
#[derive(Debug)]
struct PageIndexReaders(CachedParquetFileReaderFactory);

impl ParquetFileReaderFactory for PageIndexReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self.0.create_reader(partition_index, partitioned_file, metadata_size_hint, metrics)?;
        Ok(Box::new(PageIndexReader(inner)))
    }
}

struct PageIndexReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for PageIndexReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(&mut self, ranges: Vec<std::ops::Range<u64>>) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
