//! The query engine: runs KQL over a workspace's stored tables on
//! DataFusion.
//!
//! A query goes text → [`watchpost_kql_syntax::parse`] → binder
//! ([`watchpost_kql_binder::bind`]) → lowering to a DataFusion
//! `LogicalPlan` (`lower`) → execution over the storage snapshot (`scan`)
//! → Arrow batches with KQL types, which [`result`] encodes as the query
//! API's cells.
//!
//! Invariants: this crate and `watchpost-engine-functions` (today the `udf`
//! module) are the only places that know DataFusion; a user's mistake is a
//! [`Diagnostic`] from the front end, never a DataFusion message; every
//! query runs with a memory limit, a timeout and a row cap.
//!
//! Start reading at [`QueryEngine::run`].

mod lower;
mod optimize;
mod render;
pub mod result;
mod scan;
pub mod transform;
mod udf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::config::ConfigOptions;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use watchpost_diagnostics::Diagnostic;
pub use watchpost_kql_binder::StoredFunction;
use watchpost_kql_binder::TableCatalog;
use watchpost_schema::{ColumnDef, TableSchema};
use watchpost_storage::Store;

pub use render::Render;
pub use scan::TimeWindow;

/// Most `bag_unpack()` plugins one query may use; each runs its input once
/// more to read the bag keys.
const MAX_BAG_PROBES: usize = 8;

/// Bytes of Parquet metadata kept between queries.
const METADATA_CACHE_BYTES: usize = 64 << 20;

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory one query may use for joins, sorts and aggregations.
    pub memory_limit_bytes: usize,
    /// Rows returned at most; more makes a partial result.
    pub max_rows: usize,
    pub target_partitions: usize,
    /// The IP geolocation database (`geo_info_from_ip_address`); `None`
    /// answers `{}` for every address.
    pub geo: Option<Arc<watchpost_geo::GeoDb>>,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions { memory_limit_bytes: 1 << 30, max_rows: 500_000, target_partitions: 2, geo: None }
    }
}

/// One query to run.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub workspace: String,
    pub text: String,
    /// Restricts `TimeGenerated` of every table read.
    pub window: Option<TimeWindow>,
    /// The query's "now" (nanoseconds since the epoch): `now()` and `ago()`
    /// evaluate against it, so callers such as rule runs and tests can fix it.
    pub now_ns: i64,
    pub timeout: Duration,
}

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub columns: Vec<ColumnDef>,
    pub batches: Vec<RecordBatch>,
    /// The row cap was reached and rows were left out.
    pub truncated: bool,
    pub stats: QueryStats,
    /// The `render` that ends the query, if any.
    pub render: Option<Render>,
}

impl QueryOutput {
    /// Every row as the query API's JSON cells, batch after batch.
    pub fn json_rows(&self) -> Vec<Vec<serde_json::Value>> {
        let mut rows = Vec::with_capacity(self.stats.rows);
        for batch in &self.batches {
            let arrays: Vec<_> = self
                .columns
                .iter()
                .zip(batch.columns())
                .map(|(column, array)| (column.kql_type, array.clone()))
                .collect();
            result::encode_rows(&arrays, batch.num_rows(), &mut rows);
        }
        rows
    }
}

/// Figures reported with `Prefer: include-statistics=true`.
#[derive(Debug, Clone, Default)]
pub struct QueryStats {
    pub execution_time: Duration,
    pub rows: usize,
    pub segments_scanned: usize,
    /// Segments left unread, by the query window or by term filters.
    pub segments_pruned: usize,
    /// Blocks of rows in read segments that term filters left unread.
    pub blocks_skipped: usize,
}

/// Why a query produced no result.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query text is wrong; the diagnostics say where and why.
    #[error("the query is not valid")]
    Invalid { diagnostics: Vec<Diagnostic> },
    #[error("the query ran longer than {0:?}")]
    Timeout(Duration),
    /// The engine failed; the message is for logs, not for users.
    #[error("query execution failed: {0}")]
    Execution(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(err: datafusion::error::DataFusionError) -> QueryError {
        QueryError::Execution(err.to_string())
    }
}

/// Where the engine finds a workspace's stored functions (the metastore in
/// the server). Kept as a trait so the engine does not depend on where
/// control-plane state lives.
pub trait FunctionSource: Send + Sync + std::fmt::Debug {
    /// The stored function `name` of `workspace`, if any.
    fn function(&self, workspace: &str, name: &str) -> Option<StoredFunction>;
}

/// Runs queries against one store.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    store: Arc<Store>,
    options: EngineOptions,
    functions: Option<Arc<dyn FunctionSource>>,
    /// Parquet footers and page indexes of the segments, shared by every
    /// query's session (segments never change once written, and a cached
    /// entry is checked against the file's size and modification time).
    metadata_cache: Arc<FileMetadataCache>,
    /// DataFusion's settings: its defaults, then any `DATAFUSION_*`
    /// environment variables (DataFusion's own names, for example
    /// `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true`), read once.
    datafusion_options: ConfigOptions,
}

impl QueryEngine {
    pub fn new(store: Arc<Store>, options: EngineOptions) -> QueryEngine {
        let metadata_cache = Arc::new(DefaultCache::new(METADATA_CACHE_BYTES).with_name("watchpost-segment-metadata"));
        let mut datafusion_options = ConfigOptions::from_env().unwrap_or_else(|err| {
            tracing::warn!(error = %err, "ignoring the DATAFUSION_* environment variables");
            ConfigOptions::new()
        });
        // Joins build one hash table from their left side and stream the
        // right side past it from every partition (`CollectLeft`), as
        // Kusto broadcasts the left side it asks to be the smaller. Without
        // statistics DataFusion would otherwise repartition both sides by
        // hash, copying every probe row once more: q06 (a few thousand
        // failure windows joined with 9M successes) 1.65 s against 1.39 s;
        // the late-read `arg_max` 1.25 s against 0.86 s. The variable can
        // still turn repartitioned joins back on.
        if std::env::var_os("DATAFUSION_OPTIMIZER_REPARTITION_JOINS").is_none() {
            datafusion_options.optimizer.repartition_joins = false;
        }
        QueryEngine { store, options, functions: None, metadata_cache, datafusion_options }
    }

    /// Makes the workspaces' stored functions callable from queries.
    pub fn with_functions(mut self, functions: Arc<dyn FunctionSource>) -> QueryEngine {
        self.functions = Some(functions);
        self
    }

    fn catalog<'a>(&'a self, workspace: &'a str) -> StoreCatalog<'a> {
        StoreCatalog { store: &self.store, workspace, functions: self.functions.as_deref() }
    }

    /// The IP geolocation database queries look up in, if any.
    pub fn geo(&self) -> Option<&Arc<watchpost_geo::GeoDb>> {
        self.options.geo.as_ref()
    }

    /// The row cap of every query.
    pub fn max_rows(&self) -> usize {
        self.options.max_rows
    }

    /// Parses and binds `text` against the workspace's tables without
    /// running it.
    pub fn check(&self, workspace: &str, text: &str) -> Result<watchpost_kql_binder::bound::BoundTabular, QueryError> {
        let (query, syntax_errors) = watchpost_kql_syntax::parse(text);
        if !syntax_errors.is_empty() {
            return Err(QueryError::Invalid { diagnostics: syntax_errors });
        }
        let catalog = self.catalog(workspace);
        let (bound, diagnostics) = watchpost_kql_binder::bind(&query, &catalog);
        match bound {
            Some(bound) if diagnostics.is_empty() => Ok(bound),
            _ => Err(QueryError::Invalid { diagnostics }),
        }
    }

    /// Runs a query to completion, within the request's timeout.
    pub async fn run(&self, request: &QueryRequest) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let (query, syntax_errors) = watchpost_kql_syntax::parse(&request.text);
        if !syntax_errors.is_empty() {
            return Err(QueryError::Invalid { diagnostics: syntax_errors });
        }
        let execution = async {
            let bound = self.bind_reading_bags(&query, request, started).await?;
            let mut output = self.execute(bound, request, started).await?;
            output.render = render::render_of(&query);
            Ok(output)
        };
        match tokio::time::timeout(request.timeout, execution).await {
            Ok(result) => result,
            Err(_) => Err(QueryError::Timeout(request.timeout)),
        }
    }

    /// Binds `query`, first running the inputs of any `bag_unpack()` to learn
    /// the keys that become its columns.
    async fn bind_reading_bags(
        &self,
        query: &watchpost_kql_syntax::ast::Query,
        request: &QueryRequest,
        started: Instant,
    ) -> Result<watchpost_kql_binder::bound::BoundTabular, QueryError> {
        let catalog = self.catalog(&request.workspace);
        let mut bag_keys = watchpost_kql_binder::BagKeys::new();
        loop {
            let binding = watchpost_kql_binder::bind_with_bag_keys(query, &catalog, &bag_keys);
            let Some(probe) = binding.probe else {
                return match binding.tabular {
                    Some(bound) if binding.diagnostics.is_empty() => Ok(bound),
                    _ => Err(QueryError::Invalid { diagnostics: binding.diagnostics }),
                };
            };
            if bag_keys.len() >= MAX_BAG_PROBES {
                let message = format!("a query may use at most {MAX_BAG_PROBES} bag_unpack() plugins");
                let diagnostic = Diagnostic::semantic("KQL3001", probe.span, message);
                return Err(QueryError::Invalid { diagnostics: vec![diagnostic] });
            }
            let keys = self.read_bag_keys(&probe, request, started).await?;
            bag_keys.insert(probe.span, keys);
        }
    }

    /// The distinct keys of the bags in the probe's column, in the order
    /// they first appear.
    async fn read_bag_keys(
        &self,
        probe: &watchpost_kql_binder::BagProbe,
        request: &QueryRequest,
        started: Instant,
    ) -> Result<Vec<String>, QueryError> {
        use watchpost_kql_binder::bound::{BoundExpr, BoundTabular, ExprKind, TabularKind};
        let column = BoundExpr { kind: ExprKind::Column(probe.column.clone()), ty: watchpost_schema::KqlType::Dynamic };
        let schema = TableSchema::new(vec![ColumnDef::new(&probe.column, watchpost_schema::KqlType::Dynamic)]);
        let kind = TabularKind::Project {
            input: Box::new(probe.input.clone()),
            columns: vec![(probe.column.clone(), column)],
        };
        let output = self.execute(BoundTabular { kind, schema }, request, started).await?;
        let mut keys: Vec<String> = Vec::new();
        for batch in &output.batches {
            let bags = batch.column(0);
            for row in 0..batch.num_rows() {
                let Some(text) = udf::kernel::text_at(bags, row) else { continue };
                let Ok(serde_json::Value::Object(bag)) = serde_json::from_str::<serde_json::Value>(text) else {
                    continue;
                };
                for key in bag.keys() {
                    if !keys.contains(key) {
                        keys.push(key.clone());
                    }
                }
            }
        }
        Ok(keys)
    }

    async fn execute(
        &self,
        bound: watchpost_kql_binder::bound::BoundTabular,
        request: &QueryRequest,
        started: Instant,
    ) -> Result<QueryOutput, QueryError> {
        let session = self.session()?;
        let mut stats = QueryStats::default();
        let pruning = Arc::new(scan::TermPruning::default());
        let plan = self.lowered_plan(&session, &bound, request, &mut stats, &pruning)?;
        let frame = session.execute_logical_plan(plan).await?;
        let mut stream = frame.execute_stream().await?;
        let mut batches = Vec::new();
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let room = self.options.max_rows - stats.rows;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                stats.rows += room;
                truncated = true;
                break;
            }
            stats.rows += batch.num_rows();
            batches.push(batch);
        }
        pruning.add_to(&mut stats);
        stats.execution_time = started.elapsed();
        Ok(QueryOutput { columns: bound.schema.columns, batches, truncated, stats, render: None })
    }

    /// Prepares the scans of the tables `bound` reads and lowers it to a
    /// DataFusion plan over them.
    fn lowered_plan(
        &self,
        session: &SessionContext,
        bound: &watchpost_kql_binder::bound::BoundTabular,
        request: &QueryRequest,
        stats: &mut QueryStats,
        pruning: &Arc<scan::TermPruning>,
    ) -> Result<datafusion::logical_expr::LogicalPlan, QueryError> {
        let mut scans = HashMap::new();
        for table in bound.source_tables() {
            if scans.contains_key(&table) {
                continue;
            }
            let snapshot = self.store.snapshot(&request.workspace, &table);
            let scan = scan::scan_table(session, &table, snapshot, request.window, stats, pruning)?;
            scans.insert(table, scan);
        }
        let scan_fn = |name: &str| {
            scans
                .get(name)
                .cloned()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("table {name} was not prepared")))
        };
        let context =
            lower::LowerContext { session, now_ns: request.now_ns, geo: self.options.geo.as_ref(), scan: &scan_fn };
        Ok(lower::lower_query(bound, &context)?)
    }

    fn session(&self) -> Result<SessionContext, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.options.memory_limit_bytes)))
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(self.metadata_cache.clone()))
                    .with_metadata_cache_limit(METADATA_CACHE_BYTES),
            )
            .build_arc()?;
        let config = SessionConfig::from(self.datafusion_options.clone())
            .with_target_partitions(self.options.target_partitions)
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_optimizer_rules(optimize::optimizer_rules())
            .with_physical_optimizer_rule(Arc::new(optimize::DictionaryGroups))
            .build();
        Ok(SessionContext::new_with_state(state))
    }
}

/// The binder's view of a workspace's tables.
struct StoreCatalog<'a> {
    store: &'a Store,
    workspace: &'a str,
    functions: Option<&'a dyn FunctionSource>,
}

impl TableCatalog for StoreCatalog<'_> {
    fn table(&self, name: &str) -> Option<TableSchema> {
        self.store.table_schema(self.workspace, name)
    }

    fn table_names(&self) -> Vec<String> {
        self.store.tables(self.workspace)
    }

    fn function(&self, name: &str) -> Option<StoredFunction> {
        self.functions?.function(self.workspace, name)
    }
}

#[cfg(test)]
mod tests;
