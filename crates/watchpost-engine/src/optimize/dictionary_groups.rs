//! Grouping by a dictionary column by its keys.
//!
//! Stored string columns that every segment keeps dictionary-encoded are
//! read as `Dictionary(Int32, Utf8)` (`scan::dictionary_columns`), and a
//! summarize by one such column keeps it that way (`lower`). DataFusion
//! groups a dictionary column by its values, row by row, as it would plain
//! strings: hashing and comparing every row's text. A dictionary already
//! numbers its distinct values, so [`DictionaryGroupsExec`] takes the place
//! of the first (partial) aggregation step: each dictionary value used by
//! a batch is looked up once, every row's group is then its key's, and the
//! aggregates' own group accumulators do the rest. Its output is exactly
//! the partial step's (group values, then each aggregate's state), so the
//! final step above is untouched.
//!
//! DataFusion offers no way to plug a grouping strategy into its
//! `AggregateExec`, hence this operator; it covers what summarize needs
//! most (one key, aggregates with group accumulators, optional filters)
//! and leaves every other shape to DataFusion.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{apply_expression_roots, Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::InputOrderMode;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties};
use futures::StreamExt;

/// The physical optimizer rule putting [`DictionaryGroupsExec`] in place of
/// partial aggregations it can do.
#[derive(Debug, Default)]
pub(crate) struct DictionaryGroups;

impl PhysicalOptimizerRule for DictionaryGroups {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match DictionaryGroupsExec::replacing(aggregate)? {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "dictionary_groups"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The partial step of a one-key aggregation whose key is a
/// `Dictionary(Int32, Utf8)`: see the module documentation.
#[derive(Debug)]
pub(crate) struct DictionaryGroupsExec {
    input: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

fn dictionary_of_strings() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

impl DictionaryGroupsExec {
    /// The operator doing `aggregate`'s work, when it can.
    fn replacing(aggregate: &AggregateExec) -> Result<Option<DictionaryGroupsExec>> {
        let group_by = aggregate.group_expr();
        if *aggregate.mode() != AggregateMode::Partial
            || !group_by.is_single()
            || group_by.expr().len() != 1
            || aggregate.limit_options().is_some()
            // A streaming aggregation over sorted input promises an output
            // order to the operators above; this one emits at the end.
            || *aggregate.input_order_mode() != InputOrderMode::Linear
        {
            return Ok(None);
        }
        let key = group_by.expr()[0].0.clone();
        if key.data_type(&aggregate.input_schema())? != dictionary_of_strings() {
            return Ok(None);
        }
        let plain = |function: &Arc<AggregateFunctionExpr>| {
            function.groups_accumulator_supported() && function.order_bys().is_empty() && !function.is_distinct()
        };
        if !aggregate.aggr_expr().iter().all(plain) {
            return Ok(None);
        }
        Ok(Some(DictionaryGroupsExec {
            input: aggregate.input().clone(),
            key,
            aggregates: aggregate.aggr_expr().to_vec(),
            filters: aggregate.filter_expr().to_vec(),
            schema: aggregate.schema(),
            properties: properties(&aggregate.schema(), aggregate.input()),
        }))
    }
}

/// One output partition per input partition, with all groups at the end.
fn properties(schema: &SchemaRef, input: &Arc<dyn ExecutionPlan>) -> Arc<PlanProperties> {
    let partitions = input.output_partitioning().partition_count();
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

impl DisplayAs for DictionaryGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.aggregates.iter().map(|function| function.name()).collect();
        write!(f, "DictionaryGroupsExec: key={}, aggr=[{}]", self.key, names.join(", "))
    }
}

impl ExecutionPlan for DictionaryGroupsExec {
    fn name(&self) -> &str {
        "DictionaryGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let arguments: Vec<Arc<dyn PhysicalExpr>> =
            self.aggregates.iter().flat_map(|function| function.expressions()).collect();
        let filters = self.filters.iter().flatten();
        apply_expression_roots(std::iter::once(&self.key).chain(arguments.iter()).chain(filters), f)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("DictionaryGroupsExec takes one input".into()))?;
        Ok(Arc::new(DictionaryGroupsExec {
            properties: properties(&self.schema, &input),
            input,
            key: self.key.clone(),
            aggregates: self.aggregates.clone(),
            filters: self.filters.clone(),
            schema: self.schema.clone(),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context.clone())?;
        let accumulators =
            self.aggregates.iter().map(|function| function.create_groups_accumulator()).collect::<Result<Vec<_>>>()?;
        let reservation =
            MemoryConsumer::new(format!("DictionaryGroupsExec[{partition}]")).register(context.memory_pool());
        let mut groups = Groups {
            key: self.key.clone(),
            aggregates: self.aggregates.clone(),
            filters: self.filters.clone(),
            accumulators,
            names: HashMap::default(),
            values: Vec::new(),
            null_group: None,
            text_bytes: 0,
            reservation,
            by_value: Vec::new(),
            indices: Vec::new(),
            histogram: Vec::new(),
            dictionary: None,
            counts: self
                .aggregates
                .iter()
                .zip(&self.filters)
                .map(|(function, filter)| Ok(counts_rows(function, filter)?.then(Vec::new)))
                .collect::<Result<Vec<_>>>()?,
        };
        let schema = self.schema.clone();
        let batch_size = context.session_config().batch_size();
        let output = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                groups.add(&batch?)?;
            }
            groups.finish(&schema, batch_size)
        })
        .map(|batches: Result<Vec<RecordBatch>>| match batches {
            Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
            Err(err) => futures::stream::once(async move { Err(err) }).boxed(),
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), output)))
    }
}

/// One partition's groups and accumulators.
struct Groups {
    key: Arc<dyn PhysicalExpr>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Group index by key text.
    names: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
    /// Key text by group index (`None`: the null key).
    values: Vec<Option<Box<str>>>,
    null_group: Option<usize>,
    text_bytes: usize,
    reservation: MemoryReservation,
    /// Each value's group in `dictionary` ([`UNSEEN`] until used).
    by_value: Vec<usize>,
    /// Buffers reused from batch to batch: each row's group; the row
    /// counts per key of [`Groups::count_keys`].
    indices: Vec<usize>,
    histogram: Vec<usize>,
    /// The dictionary `by_value` belongs to.
    dictionary: Option<ArrayRef>,
    /// Per aggregate, when it is a `count` of a constant without a filter:
    /// the rows of each group, counted here rather than by the
    /// accumulator (which tests every row for null), and merged into it
    /// as partial counts at the end.
    counts: Vec<Option<Vec<i64>>>,
}

/// Whether `function` (with `filter`) counts every row: `count` of a
/// non-null constant, whose partial state is one `Int64` count.
fn counts_rows(function: &AggregateFunctionExpr, filter: &Option<Arc<dyn PhysicalExpr>>) -> Result<bool> {
    let constant = function
        .expressions()
        .iter()
        .all(|expr| expr.downcast_ref::<Literal>().is_some_and(|literal| !literal.value().is_null()));
    let state = function.state_fields()?;
    Ok(function.fun().name() == "count"
        && filter.is_none()
        && constant
        && state.len() == 1
        && state[0].data_type() == &DataType::Int64)
}

/// A dictionary value this batch has not looked up yet.
const UNSEEN: usize = usize::MAX;

impl Groups {
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let n_rows = batch.num_rows();
        if n_rows == 0 {
            return Ok(());
        }
        let key = self.key.evaluate(batch)?.into_array(n_rows)?;
        let dictionary = key
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| DataFusionError::Internal(format!("dictionary key expected, got {}", key.data_type())))?;
        let texts = dictionary.values().as_string_opt::<i32>().ok_or_else(|| {
            DataFusionError::Internal(format!("string dictionary expected, got {}", dictionary.values().data_type()))
        })?;
        // The group of each dictionary value, looked up at its first use
        // (values no row uses must not become groups) and kept while the
        // batches share the dictionary, as a column chunk's batches do.
        let same_dictionary = self.dictionary.as_ref().is_some_and(|known| Arc::ptr_eq(known, dictionary.values()));
        if !same_dictionary {
            self.dictionary = Some(dictionary.values().clone());
            self.by_value.clear();
            self.by_value.resize(texts.len(), UNSEEN);
        }
        let keys = dictionary.keys();
        if keys.null_count() == 0 && self.counts.iter().all(Option::is_some) {
            self.count_keys(keys.values(), texts);
            return self.reserve();
        }
        let mut by_value = std::mem::take(&mut self.by_value);
        let mut indices = std::mem::take(&mut self.indices);
        indices.clear();
        indices.resize(n_rows, 0);
        for (row, (slot, &key)) in indices.iter_mut().zip(keys.values()).enumerate() {
            if keys.is_null(row) {
                *slot = self.null_group();
                continue;
            }
            let value = key as usize;
            let mut group = by_value[value];
            if group == UNSEEN {
                group = self.first_use(texts, value);
                by_value[value] = group;
            }
            *slot = group;
        }
        let n_groups = self.values.len();
        for (idx, (function, filter)) in self.aggregates.iter().zip(&self.filters).enumerate() {
            if let Some(counts) = &mut self.counts[idx] {
                counts.resize(n_groups, 0);
                for &group in &indices {
                    counts[group] += 1;
                }
                continue;
            }
            let args = function
                .expressions()
                .iter()
                .map(|expr| expr.evaluate(batch)?.into_array(n_rows))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let accumulator = &mut self.accumulators[idx];
            let filter = match filter {
                Some(filter) => Some(filter.evaluate(batch)?.into_array(n_rows)?),
                None => None,
            };
            let filter = filter.as_ref().map(|filter| filter.as_boolean()).cloned();
            accumulator.update_batch(&args, &indices, filter.as_ref(), n_groups)?;
        }
        self.by_value = by_value;
        self.indices = indices;
        self.reserve()
    }

    /// Only counts to keep, and no null keys: the rows of each dictionary
    /// value are counted (four interleaved counters per value, so that
    /// consecutive rows with the same key do not wait on one another's
    /// increment), then added to the value's group.
    fn count_keys(&mut self, keys: &[i32], texts: &StringArray) {
        const LANES: usize = 4;
        let mut histogram = std::mem::take(&mut self.histogram);
        histogram.clear();
        histogram.resize(texts.len() * LANES, 0);
        let mut chunks = keys.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &key) in chunk.iter().enumerate() {
                histogram[key as usize * LANES + lane] += 1;
            }
        }
        for &key in chunks.remainder() {
            histogram[key as usize * LANES] += 1;
        }
        for value in 0..texts.len() {
            let rows: usize = histogram[value * LANES..(value + 1) * LANES].iter().sum();
            if rows == 0 {
                continue;
            }
            let mut group = self.by_value[value];
            if group == UNSEEN {
                group = self.first_use(texts, value);
                self.by_value[value] = group;
            }
            for counts in self.counts.iter_mut().flatten() {
                if counts.len() <= group {
                    counts.resize(group + 1, 0);
                }
                counts[group] += rows as i64;
            }
        }
        self.histogram = histogram;
    }

    /// Grows the memory reservation to the groups and states held.
    fn reserve(&mut self) -> Result<()> {
        let text_bytes = self.text_bytes;
        let state_bytes: usize = self.accumulators.iter().map(|accumulator| accumulator.size()).sum::<usize>()
            + self.counts.iter().flatten().map(|counts| counts.len() * 8).sum::<usize>();
        self.reservation.try_resize(text_bytes + state_bytes)
    }

    /// The group of dictionary value `value`, seen for the first time in
    /// this batch.
    #[cold]
    fn first_use(&mut self, texts: &StringArray, value: usize) -> usize {
        if texts.is_null(value) {
            self.null_group()
        } else {
            self.group_of(texts.value(value))
        }
    }

    fn group_of(&mut self, text: &str) -> usize {
        if let Some(group) = self.names.get(text) {
            return *group;
        }
        let group = self.values.len();
        // The text twice (map key and group value) and their overheads.
        self.text_bytes += 2 * text.len() + 48;
        self.values.push(Some(text.into()));
        self.names.insert(text.into(), group);
        group
    }

    fn null_group(&mut self) -> usize {
        *self.null_group.get_or_insert_with(|| {
            self.values.push(None);
            self.values.len() - 1
        })
    }

    /// The groups' keys and the aggregates' states, in batches of at most
    /// `batch_size` rows.
    fn finish(mut self, schema: &SchemaRef, batch_size: usize) -> Result<Vec<RecordBatch>> {
        if self.values.is_empty() {
            return Ok(Vec::new());
        }
        let texts: StringArray = self.values.iter().map(|value| value.as_deref()).collect();
        let key = arrow::compute::cast(&texts, schema.field(0).data_type())?;
        let mut columns = vec![key];
        let n_groups = self.values.len();
        for (accumulator, counts) in self.accumulators.iter_mut().zip(&mut self.counts) {
            if let Some(counts) = counts.take() {
                // Counted rows enter the accumulator as a partial count each.
                let mut counts = counts;
                counts.resize(n_groups, 0);
                let groups: Vec<usize> = (0..n_groups).collect();
                accumulator.merge_batch(&[Arc::new(Int64Array::from(counts))], &groups, n_groups)?;
            }
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let batch_size = batch_size.max(1);
        Ok((0..batch.num_rows())
            .step_by(batch_size)
            .map(|start| batch.slice(start, batch_size.min(batch.num_rows() - start)))
            .collect())
    }
}
