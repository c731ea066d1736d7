//! Lowering of the bound KQL tree to a DataFusion `LogicalPlan`.
//!
//! The binder has already checked every name and type, so a failure here is
//! a bug or an unsupported combination, reported as an internal error.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::core::expr_fn as core_fn;
use datafusion::functions::{datetime as dt_fn, math as math_fn, string as str_fn, unicode as uni_fn};
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{
    cast, when, Expr, ExprFunctionExt, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::prelude::{ident, lit, SessionContext};
use watchpost_geo::GeoDb;
use watchpost_kql_binder::bound::{
    AggregateFunction, BoundAggregate, BoundExpr, BoundTabular, ExprKind, JoinKind, TabularKind, UnionInput, Value,
};
use watchpost_kql_syntax::ast::{BinaryOp, ListOp};
use watchpost_schema::{KqlType, TableSchema};

use crate::udf;

mod call;
mod expand;
mod window;

use call::{as_text, convert_expr, lower_call};

/// What lowering needs from its surroundings.
pub(crate) struct LowerContext<'a> {
    pub session: &'a SessionContext,
    /// The query's "now", nanoseconds since the epoch.
    pub now_ns: i64,
    /// The database `geo_info_from_ip_address` and `geo_location` look up in.
    pub geo: Option<&'a Arc<GeoDb>>,
    /// Returns the scan of a stored table, already restricted to the query
    /// window.
    pub scan: &'a (dyn Fn(&str) -> Result<LogicalPlan> + Sync),
}

/// Lowers `tabular` and casts its output to the Arrow types of its KQL schema.
pub(crate) fn lower_query(tabular: &BoundTabular, context: &LowerContext<'_>) -> Result<LogicalPlan> {
    let plan = lower(tabular, context)?;
    let schema = plan.schema().clone();
    let outputs = tabular
        .schema
        .columns
        .iter()
        .enumerate()
        .map(|(idx, column)| {
            let field = schema.field(idx);
            let expr = column_at(&plan, idx);
            let target = column.kql_type.arrow_type();
            let expr = if field.data_type() == &target { expr } else { cast(expr, target) };
            expr.alias(&column.name)
        })
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(plan).project(outputs)?.build()
}

fn lower(tabular: &BoundTabular, context: &LowerContext<'_>) -> Result<LogicalPlan> {
    match &tabular.kind {
        TabularKind::Table { name } => (context.scan)(name),
        TabularKind::Values { rows } => lower_values(rows, &tabular.schema, context),
        TabularKind::Filter { input, predicate } => {
            let input = lower(input, context)?;
            LogicalPlanBuilder::from(input).filter(lower_predicate(predicate, context)?)?.build()
        }
        TabularKind::Project { input, columns } => {
            let input = lower(input, context)?;
            let exprs = columns
                .iter()
                .map(|(name, expr)| Ok(lower_expr(expr, context)?.alias(name)))
                .collect::<Result<Vec<_>>>()?;
            LogicalPlanBuilder::from(input).project(exprs)?.build()
        }
        TabularKind::Aggregate { input, group_by, aggregates } => {
            let input = lower(input, context)?;
            let input = match late_materialization(&input, group_by, aggregates, context)? {
                Some(winners_only) => winners_only,
                None => input,
            };
            // A single string key may stay a dictionary, which the
            // `DictionaryGroups` physical rule groups by its keys; several
            // keys are grouped as plain strings.
            let groups = group_by
                .iter()
                .map(|(name, expr)| {
                    let lowered =
                        if group_by.len() == 1 { lower_expr(expr, context)? } else { lower_plain(expr, context)? };
                    Ok(lowered.alias(name))
                })
                .collect::<Result<Vec<_>>>()?;
            let (lowered, outputs) = lower_aggregates(aggregates, context)?;
            let plan = LogicalPlanBuilder::from(input).aggregate(groups, lowered)?.build()?;
            let n_groups = group_by.len();
            let finished = tabular
                .schema
                .columns
                .iter()
                .enumerate()
                .map(|(idx, column)| {
                    let expr = match idx.checked_sub(n_groups).and_then(|a| aggregates.get(a).zip(outputs.get(a))) {
                        Some(((_, aggregate), output)) => {
                            let raw = column_at(&plan, n_groups + output.column);
                            let raw = match &output.field {
                                Some(field) => core_fn::get_field(raw, field.as_str()),
                                None => raw,
                            };
                            finish_aggregate(aggregate, raw)
                        }
                        None => column_at(&plan, idx),
                    };
                    expr.alias(&column.name)
                })
                .collect::<Vec<_>>();
            LogicalPlanBuilder::from(plan).project(finished)?.build()
        }
        TabularKind::Sort { input, keys } => {
            let input = lower(input, context)?;
            let sorts = keys
                .iter()
                .map(|key| Ok(lower_expr(&key.expr, context)?.sort(!key.descending, key.nulls_first)))
                .collect::<Result<Vec<_>>>()?;
            LogicalPlanBuilder::from(input).sort(sorts)?.build()
        }
        TabularKind::Limit { input, count } => {
            let input = lower(input, context)?;
            LogicalPlanBuilder::from(input).limit(0, Some(*count as usize))?.build()
        }
        TabularKind::Distinct { input } => {
            let input = lower(input, context)?;
            LogicalPlanBuilder::from(input).distinct()?.build()
        }
        TabularKind::Range { from, to, step } => lower_range(from, to, step, &tabular.schema, context),
        TabularKind::Join { left, right, kind, keys } => lower_join(left, right, *kind, keys, &tabular.schema, context),
        TabularKind::Union { inputs, source_column } => {
            lower_union(inputs, source_column.as_deref(), &tabular.schema, context)
        }
        TabularKind::Serialize { input } => lower(input, context),
        TabularKind::Window { input, columns, order, partition } => {
            window::lower_window(input, columns, order, partition, context)
        }
        TabularKind::MvExpand { input, columns, item_index, limit } => {
            expand::lower_mv_expand(input, columns, item_index.as_deref(), *limit, &tabular.schema, context)
        }
    }
}

/// Lowers a join to a DataFusion equi-join of the two sides (aliased so
/// equal names on both sides stay apart), then projects Kusto's columns.
fn lower_join(
    left: &BoundTabular,
    right: &BoundTabular,
    kind: JoinKind,
    keys: &[(usize, usize)],
    schema: &TableSchema,
    context: &LowerContext<'_>,
) -> Result<LogicalPlan> {
    let mut left_plan = lower(left, context)?;
    if kind == JoinKind::InnerUnique {
        // One row per key on the left, as Kusto's default join kind does.
        let on = keys.iter().map(|(idx, _)| column_at(&left_plan, *idx)).collect();
        let select = (0..left.schema.columns.len()).map(|idx| column_at(&left_plan, idx)).collect();
        left_plan = LogicalPlanBuilder::from(left_plan).distinct_on(on, select, None)?.build()?;
    }
    let left_plan = LogicalPlanBuilder::from(left_plan).alias("__left")?.build()?;
    let right_plan = LogicalPlanBuilder::from(lower(right, context)?).alias("__right")?.build()?;
    let join_type = match kind {
        JoinKind::InnerUnique | JoinKind::Inner | JoinKind::LookupInner => JoinType::Inner,
        JoinKind::LeftOuter | JoinKind::LookupLeftOuter => JoinType::Left,
        JoinKind::RightOuter => JoinType::Right,
        JoinKind::FullOuter => JoinType::Full,
        JoinKind::LeftAnti => JoinType::LeftAnti,
        JoinKind::RightAnti => JoinType::RightAnti,
        JoinKind::LeftSemi => JoinType::LeftSemi,
        JoinKind::RightSemi => JoinType::RightSemi,
    };
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    for (left_idx, right_idx) in keys {
        let (left_key, right_key) = (column_at(&left_plan, *left_idx), column_at(&right_plan, *right_idx));
        // Numbers of different widths meet as reals.
        let (left_ty, right_ty) = (left.schema.columns[*left_idx].kql_type, right.schema.columns[*right_idx].kql_type);
        if left_ty == right_ty {
            left_keys.push(left_key);
            right_keys.push(right_key);
        } else {
            left_keys.push(cast(left_key, DataType::Float64));
            right_keys.push(cast(right_key, DataType::Float64));
        }
    }
    let n_left = left.schema.columns.len();
    let joined = LogicalPlanBuilder::from(left_plan).join_on(
        right_plan,
        join_type,
        left_keys.into_iter().zip(right_keys).map(|(l, r)| l.eq(r)),
    )?;
    let joined = joined.build()?;
    let right_offset = match kind {
        JoinKind::RightAnti | JoinKind::RightSemi => 0,
        _ => n_left,
    };
    let outputs = watchpost_kql_binder::join_outputs(kind, &left.schema, &right.schema, keys)
        .into_iter()
        .zip(&schema.columns)
        .map(|((is_right, idx), column)| {
            let position = if is_right { right_offset + idx } else { idx };
            column_at(&joined, position).alias(&column.name)
        })
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(joined).project(outputs)?.build()
}

/// Lowers `union`: each input projected onto the output columns by name
/// (nulls where it lacks one), then a UNION ALL.
fn lower_union(
    inputs: &[UnionInput],
    source_column: Option<&str>,
    schema: &TableSchema,
    context: &LowerContext<'_>,
) -> Result<LogicalPlan> {
    let mut plans = Vec::new();
    for input in inputs {
        let plan = lower(&input.tabular, context)?;
        let exprs = schema
            .columns
            .iter()
            .enumerate()
            .map(|(position, column)| {
                let target = column.kql_type.arrow_type();
                let expr = if position == 0 && source_column == Some(column.name.as_str()) {
                    lit(input.source.as_str())
                } else {
                    match watchpost_kql_binder::union_source_index(&input.tabular.schema, column) {
                        Some(idx) => cast(column_at(&plan, idx), target),
                        None => cast(lit(ScalarValue::Null), target),
                    }
                };
                expr.alias(&column.name)
            })
            .collect::<Vec<_>>();
        plans.push(LogicalPlanBuilder::from(plan).project(exprs)?.build()?);
    }
    let mut plans = plans.into_iter();
    let first = plans.next().ok_or_else(|| DataFusionError::Plan("union of nothing".into()))?;
    let mut builder = LogicalPlanBuilder::from(first);
    for plan in plans {
        builder = builder.union(plan)?;
    }
    builder.build()
}

/// Most rows `range` may produce; a bigger sequence is refused rather than
/// allowed to exhaust memory.
const MAX_RANGE_ROWS: usize = 10_000_000;

/// Evaluates the constant bounds of `range` and materialises the sequence.
fn lower_range(
    from: &BoundExpr,
    to: &BoundExpr,
    step: &BoundExpr,
    schema: &TableSchema,
    context: &LowerContext<'_>,
) -> Result<LogicalPlan> {
    let target = schema.columns[0].kql_type.arrow_type();
    let numeric_target = match target {
        DataType::Float64 => DataType::Float64,
        _ => DataType::Int64,
    };
    let bound = |expr: &BoundExpr| -> Result<ScalarValue> {
        let value = const_eval(lower_expr(expr, context)?, context)?;
        let as_number = match value.data_type() {
            DataType::Timestamp(..) | DataType::Duration(..) => value.cast_to(&DataType::Int64)?,
            _ => value,
        };
        as_number.cast_to(&numeric_target)
    };
    let (from, to, step) = (bound(from)?, bound(to)?, bound(step)?);
    let refuse = |what: &str| DataFusionError::Plan(format!("range: {what}"));
    let array: arrow::array::ArrayRef = match (from, to, step) {
        (ScalarValue::Int64(Some(from)), ScalarValue::Int64(Some(to)), ScalarValue::Int64(Some(step))) => {
            if step == 0 {
                return Err(refuse("the step must not be zero"));
            }
            let span = if step > 0 { to.checked_sub(from) } else { from.checked_sub(to) };
            let n = match span {
                Some(span) if span >= 0 => (span / step.checked_abs().unwrap_or(i64::MAX)) as usize + 1,
                _ => 0,
            };
            if n > MAX_RANGE_ROWS {
                return Err(refuse(&format!("the sequence has more than {MAX_RANGE_ROWS} rows")));
            }
            Arc::new(arrow::array::Int64Array::from_iter_values((0..n as i64).map(|i| from + i * step)))
        }
        (ScalarValue::Float64(Some(from)), ScalarValue::Float64(Some(to)), ScalarValue::Float64(Some(step))) => {
            if step == 0.0 || !step.is_finite() {
                return Err(refuse("the step must be a non-zero number"));
            }
            let n = ((to - from) / step).floor();
            if n.is_nan() || n >= MAX_RANGE_ROWS as f64 {
                return Err(refuse(&format!("the sequence has more than {MAX_RANGE_ROWS} rows")));
            }
            let n = if n < 0.0 { 0 } else { n as usize + 1 };
            Arc::new(arrow::array::Float64Array::from_iter_values((0..n).map(|i| from + i as f64 * step)))
        }
        _ => return Err(refuse("the bounds and the step must not be null")),
    };
    let array = arrow::compute::cast(&array, &target)?;
    let arrow_schema = schema.arrow_schema();
    let batch = RecordBatch::try_new(arrow_schema.clone(), vec![array])?;
    let table = MemTable::try_new(arrow_schema, vec![vec![batch]])?;
    Ok(context.session.read_table(Arc::new(table))?.into_unoptimized_plan())
}

/// Evaluates an expression that uses no columns.
fn const_eval(expr: Expr, context: &LowerContext<'_>) -> Result<ScalarValue> {
    let schema = datafusion::common::DFSchema::empty();
    let physical = context.session.create_physical_expr(expr, &schema)?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match physical.evaluate(&batch)? {
        datafusion::logical_expr::ColumnarValue::Scalar(value) => Ok(value),
        datafusion::logical_expr::ColumnarValue::Array(array) => ScalarValue::try_from_array(&array, 0),
    }
}

/// The `idx`-th output column of `plan`, with its qualifier.
fn column_at(plan: &LogicalPlan, idx: usize) -> Expr {
    let (qualifier, field) = plan.schema().qualified_field(idx);
    Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name()))
}

/// A UTC datetime literal, nanoseconds since the epoch.
pub(crate) fn datetime_literal(nanos: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(Some(nanos), Some(Arc::from("UTC"))))
}

fn lower_values(rows: &[Vec<Value>], schema: &TableSchema, context: &LowerContext<'_>) -> Result<LogicalPlan> {
    if schema.columns.is_empty() {
        return LogicalPlanBuilder::empty(rows.len() == 1).build();
    }
    let arrow_schema = schema.arrow_schema();
    let mut columns = Vec::new();
    for (idx, column) in schema.columns.iter().enumerate() {
        let target = column.kql_type.arrow_type();
        let scalars = rows.iter().map(|row| scalar_of(&row[idx], &target)).collect::<Result<Vec<_>>>()?;
        let array = if scalars.is_empty() {
            arrow::array::new_empty_array(&target)
        } else {
            ScalarValue::iter_to_array(scalars)?
        };
        columns.push(array);
    }
    let batch = RecordBatch::try_new(arrow_schema.clone(), columns)?;
    let table = MemTable::try_new(arrow_schema, vec![vec![batch]])?;
    let frame = context.session.read_table(Arc::new(table))?;
    Ok(frame.into_unoptimized_plan())
}

fn scalar_of(value: &Value, target: &DataType) -> Result<ScalarValue> {
    let scalar = value_scalar(value);
    if scalar.data_type() == *target {
        return Ok(scalar);
    }
    scalar.cast_to(target)
}

/// The DataFusion scalar of a bound literal.
fn value_scalar(value: &Value) -> ScalarValue {
    let utc = Some(Arc::from("UTC"));
    match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(v) => ScalarValue::Boolean(Some(*v)),
        Value::Int(v) => ScalarValue::Int32(Some(*v)),
        Value::Long(v) => ScalarValue::Int64(Some(*v)),
        Value::Real(v) => ScalarValue::Float64(Some(*v)),
        Value::String(v) | Value::Guid(v) => ScalarValue::Utf8(Some(v.clone())),
        // Dynamic values travel as compact JSON text, whatever the spacing of the literal.
        Value::Dynamic(v) => ScalarValue::Utf8(Some(
            serde_json::from_str::<serde_json::Value>(v).map_or_else(|_| v.clone(), |json| json.to_string()),
        )),
        Value::Datetime(v) => ScalarValue::TimestampNanosecond(Some(*v), utc),
        Value::Timespan(v) => ScalarValue::DurationNanosecond(Some(*v)),
    }
}

fn lower_expr(expr: &BoundExpr, context: &LowerContext<'_>) -> Result<Expr> {
    Ok(match &expr.kind {
        ExprKind::Column(name) => ident(name),
        ExprKind::Literal(Value::Null) => lit(ScalarValue::try_from(&expr.ty.arrow_type())?),
        ExprKind::Literal(value) => lit(value_scalar(value)),
        ExprKind::Not(inner) => Expr::Not(Box::new(lower_expr(inner, context)?)),
        ExprKind::Negate(inner) => Expr::Negative(Box::new(lower_expr(inner, context)?)),
        ExprKind::Binary { op, left, right } => lower_binary(*op, left, right, context)?,
        ExprKind::InList { op, expr: value, list } => lower_in_list(*op, value, list, context)?,
        ExprKind::Between { expr: value, low, high, negated } => {
            let between = lower_expr(value, context)?.between(lower_expr(low, context)?, lower_expr(high, context)?);
            if *negated {
                Expr::Not(Box::new(between))
            } else {
                between
            }
        }
        ExprKind::Call { function, args } => lower_call(*function, args, expr.ty, context)?,
        ExprKind::Window(_) => {
            return Err(DataFusionError::Internal("a window function was not lifted by the binder".into()));
        }
        // Outside a `where` (see `lower_predicate`) DataFusion cannot plan an
        // `IN (subquery)`: the query's distinct values become one array and
        // each row looks its value up in it.
        ExprKind::InSubquery { negated, expr: value, tabular } => {
            let plan = lower_query(tabular, context)?;
            let first = column_at(&plan, 0);
            let element_type = tabular.schema.columns.first().map_or(KqlType::Dynamic, |column| column.kql_type);
            let values = agg::array_agg(first.clone()).distinct().filter(first.is_not_null()).build()?;
            let plan = LogicalPlanBuilder::from(plan).aggregate(Vec::<Expr>::new(), vec![values])?.build()?;
            let set = Expr::ScalarSubquery(datafusion::logical_expr::Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: Vec::new(),
                spans: datafusion::common::Spans::new(),
            });
            let array = udf::kernel::call(
                "make_set",
                udf::collect::list_to_array,
                // Every value counts: no make_set() size cap here.
                vec![set, lit(i64::MAX)],
                vec![element_type, KqlType::Long],
                KqlType::Dynamic,
            );
            let found = udf::kernel::call(
                "set_has_element",
                udf::dynamic::set_has_element,
                vec![array, lower_expr(value, context)?],
                vec![KqlType::Dynamic, value.ty],
                KqlType::Bool,
            );
            let found = core_fn::coalesce(vec![found, lit(false)]);
            if *negated {
                Expr::Not(Box::new(found))
            } else {
                found
            }
        }
        ExprKind::ScalarSubquery(tabular) => {
            let plan = lower_query(tabular, context)?;
            let first = column_at(&plan, 0);
            let plan = LogicalPlanBuilder::from(plan).project(vec![first])?.limit(0, Some(1))?.build()?;
            Expr::ScalarSubquery(datafusion::logical_expr::Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: Vec::new(),
                spans: datafusion::common::Spans::new(),
            })
        }
    })
}

/// Lowers a `where` predicate: an `in (query)` that is the predicate or one
/// of its `and`ed terms becomes DataFusion's `IN (subquery)`, which it plans
/// as a semi join; everything else lowers as any expression.
fn lower_predicate(predicate: &BoundExpr, context: &LowerContext<'_>) -> Result<Expr> {
    match &predicate.kind {
        ExprKind::Binary { op: BinaryOp::And, left, right } => {
            Ok(lower_predicate(left, context)?.and(lower_predicate(right, context)?))
        }
        ExprKind::InSubquery { negated, expr: value, tabular } => {
            let plan = lower_query(tabular, context)?;
            let first = column_at(&plan, 0);
            let plan = LogicalPlanBuilder::from(plan).project(vec![first])?.build()?;
            let subquery = datafusion::logical_expr::Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns: Vec::new(),
                spans: datafusion::common::Spans::new(),
            };
            Ok(Expr::InSubquery(datafusion::logical_expr::expr::InSubquery::new(
                Box::new(lower_expr(value, context)?),
                subquery,
                *negated,
            )))
        }
        _ => lower_expr(predicate, context),
    }
}

fn lower_binary(op: BinaryOp, left: &BoundExpr, right: &BoundExpr, context: &LowerContext<'_>) -> Result<Expr> {
    use BinaryOp::*;
    let arithmetic = |operator: Operator| -> Result<Expr> {
        let (left_expr, right_expr) = dynamic_operands(left, right, context)?;
        if let Some(scaled) =
            timespan_arithmetic(operator, (left.ty, left_expr.clone()), (right.ty, right_expr.clone()))
        {
            return Ok(scaled);
        }
        Ok(Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
            Box::new(left_expr),
            operator,
            Box::new(right_expr),
        )))
    };
    let text =
        |f: &dyn Fn(Expr, Expr) -> Expr| -> Result<Expr> { Ok(f(as_text(left, context)?, as_text(right, context)?)) };
    let lower_text = |expr: Expr| str_fn::lower().call(vec![expr]);
    let negate = |expr: Expr| Expr::Not(Box::new(expr));
    let contains = |hay: Expr, needle: Expr| uni_fn::strpos().call(vec![hay, needle]).gt(lit(0i32));
    Ok(match op {
        Or => lower_expr(left, context)?.or(lower_expr(right, context)?),
        And => lower_expr(left, context)?.and(lower_expr(right, context)?),
        Eq => arithmetic(Operator::Eq)?,
        NotEq => arithmetic(Operator::NotEq)?,
        Lt => arithmetic(Operator::Lt)?,
        Le => arithmetic(Operator::LtEq)?,
        Gt => arithmetic(Operator::Gt)?,
        Ge => arithmetic(Operator::GtEq)?,
        Add => arithmetic(Operator::Plus)?,
        Sub => arithmetic(Operator::Minus)?,
        Mul => arithmetic(Operator::Multiply)?,
        Div => arithmetic(Operator::Divide)?,
        Mod => arithmetic(Operator::Modulo)?,
        EqTilde => text(&|l, r| lower_text(l).eq(lower_text(r)))?,
        NotEqTilde => text(&|l, r| lower_text(l).not_eq(lower_text(r)))?,
        Has => text(&|l, r| udf::has().call(vec![l, r, lit(false)]))?,
        NotHas => text(&|l, r| negate(udf::has().call(vec![l, r, lit(false)])))?,
        HasCs => text(&|l, r| udf::has().call(vec![l, r, lit(true)]))?,
        NotHasCs => text(&|l, r| negate(udf::has().call(vec![l, r, lit(true)])))?,
        Contains => text(&|l, r| contains(lower_text(l), lower_text(r)))?,
        NotContains => text(&|l, r| negate(contains(lower_text(l), lower_text(r))))?,
        ContainsCs => text(&|l, r| contains(l, r))?,
        NotContainsCs => text(&|l, r| negate(contains(l, r)))?,
        StartsWith | HasPrefix => text(&|l, r| str_fn::starts_with().call(vec![lower_text(l), lower_text(r)]))?,
        NotStartsWith => text(&|l, r| negate(str_fn::starts_with().call(vec![lower_text(l), lower_text(r)])))?,
        StartsWithCs => text(&|l, r| str_fn::starts_with().call(vec![l, r]))?,
        NotStartsWithCs => text(&|l, r| negate(str_fn::starts_with().call(vec![l, r])))?,
        EndsWith | HasSuffix => text(&|l, r| str_fn::ends_with().call(vec![lower_text(l), lower_text(r)]))?,
        NotEndsWith => text(&|l, r| negate(str_fn::ends_with().call(vec![lower_text(l), lower_text(r)])))?,
        EndsWithCs => text(&|l, r| str_fn::ends_with().call(vec![l, r]))?,
        NotEndsWithCs => text(&|l, r| negate(str_fn::ends_with().call(vec![l, r])))?,
        MatchesRegex => text(&|l, r| {
            Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(Box::new(l), Operator::RegexMatch, Box::new(r)))
        })?,
    })
}

/// `timespan * number`, `number * timespan`, `timespan / number` and
/// `timespan / timespan`, which DataFusion's duration arithmetic lacks:
/// computed on nanosecond counts.
fn timespan_arithmetic(operator: Operator, left: (KqlType, Expr), right: (KqlType, Expr)) -> Option<Expr> {
    let nanos = |expr: Expr| cast(cast(expr, DataType::Int64), DataType::Float64);
    let number = |expr: Expr| cast(expr, DataType::Float64);
    let span = |expr: Expr| {
        let rounded = math_fn::round().call(vec![expr]);
        cast(cast(rounded, DataType::Int64), DataType::Duration(TimeUnit::Nanosecond))
    };
    let is_number = |ty: KqlType| matches!(ty, KqlType::Int | KqlType::Long | KqlType::Real);
    match (operator, left, right) {
        (Operator::Multiply, (KqlType::Timespan, l), (ty, r)) if is_number(ty) => Some(span(nanos(l) * number(r))),
        (Operator::Multiply, (ty, l), (KqlType::Timespan, r)) if is_number(ty) => Some(span(number(l) * nanos(r))),
        (Operator::Divide, (KqlType::Timespan, l), (ty, r)) if is_number(ty) => Some(span(nanos(l) / number(r))),
        (Operator::Divide, (KqlType::Timespan, l), (KqlType::Timespan, r)) => Some(nanos(l) / nanos(r)),
        _ => None,
    }
}

/// Lowers the operands of a comparison or arithmetic operator; a dynamic
/// operand is converted to the other operand's type (both dynamic: to real
/// for arithmetic), so `d.Status == "ok"` compares the string inside.
fn dynamic_operands(left: &BoundExpr, right: &BoundExpr, context: &LowerContext<'_>) -> Result<(Expr, Expr)> {
    let (lowered_left, lowered_right) = (lower_expr(left, context)?, lower_expr(right, context)?);
    Ok(match (left.ty, right.ty) {
        (KqlType::Dynamic, KqlType::Dynamic) => (lowered_left, lowered_right),
        (KqlType::Dynamic, other) => (convert_expr(lowered_left, KqlType::Dynamic, other), lowered_right),
        (other, KqlType::Dynamic) => (lowered_left, convert_expr(lowered_right, KqlType::Dynamic, other)),
        _ => (lowered_left, lowered_right),
    })
}

fn lower_in_list(op: ListOp, value: &BoundExpr, list: &[BoundExpr], context: &LowerContext<'_>) -> Result<Expr> {
    let lower_text = |expr: Expr| str_fn::lower().call(vec![expr]);
    match op {
        ListOp::In | ListOp::NotIn => {
            // A dynamic value is compared as the type of the listed values.
            let target = match (value.ty, list.first()) {
                (KqlType::Dynamic, Some(first)) => first.ty,
                (ty, _) => ty,
            };
            let items = list
                .iter()
                .map(|item| {
                    let lowered = lower_expr(item, context)?;
                    Ok(if item.ty == target { lowered } else { cast(lowered, target.arrow_type()) })
                })
                .collect::<Result<Vec<_>>>()?;
            let value = convert_expr(lower_expr(value, context)?, value.ty, target);
            Ok(value.in_list(items, op == ListOp::NotIn))
        }
        ListOp::InCi | ListOp::NotInCi => {
            let items = list.iter().map(|item| Ok(lower_text(as_text(item, context)?))).collect::<Result<Vec<_>>>()?;
            Ok(lower_text(as_text(value, context)?).in_list(items, op == ListOp::NotInCi))
        }
        ListOp::HasAny | ListOp::HasAll => {
            let haystack = as_text(value, context)?;
            let mut combined: Option<Expr> = None;
            for item in list {
                let term = udf::has().call(vec![haystack.clone(), as_text(item, context)?, lit(false)]);
                combined = Some(match combined {
                    None => term,
                    Some(acc) if op == ListOp::HasAny => acc.or(term),
                    Some(acc) => acc.and(term),
                });
            }
            Ok(combined.unwrap_or_else(|| lit(op == ListOp::HasAll)))
        }
    }
}

fn interval_of_nanos(nanos: i64) -> Expr {
    lit(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, nanos))))
}

fn now_literal(context: &LowerContext<'_>) -> Expr {
    datetime_literal(context.now_ns)
}

/// `bin(value, size)`: date_bin for datetimes, floor(value / size) * size
/// for numbers and timespans.
fn lower_bin(args: &[BoundExpr], context: &LowerContext<'_>) -> Result<Expr> {
    let value = lower_expr(&args[0], context)?;
    let size = &args[1];
    match (args[0].ty, &size.kind) {
        (KqlType::Datetime, ExprKind::Literal(Value::Timespan(nanos))) => {
            Ok(dt_fn::date_bin().call(vec![interval_of_nanos(*nanos), value, datetime_literal(0)]))
        }
        (KqlType::Datetime, _) => Err(DataFusionError::Plan("bin() of a datetime needs a constant timespan".into())),
        (KqlType::Timespan, _) => {
            let nanos = cast(value, DataType::Int64);
            let step = cast(lower_expr(size, context)?, DataType::Int64);
            let floored =
                math_fn::floor().call(vec![cast(nanos, DataType::Float64) / cast(step.clone(), DataType::Float64)]);
            Ok(cast(cast(floored, DataType::Int64) * step, DataType::Duration(TimeUnit::Nanosecond)))
        }
        (ty, _) => {
            let step = lower_expr(size, context)?;
            let floored =
                math_fn::floor().call(vec![cast(value, DataType::Float64) / cast(step.clone(), DataType::Float64)]);
            Ok(cast(floored * cast(step, DataType::Float64), ty.arrow_type()))
        }
    }
}

/// `summarize arg_max(T, *) by K` needs every column of a handful of rows,
/// yet a plain aggregate decodes every column of every row. When all the
/// aggregates are one `arg_max` (or `arg_min`) family returning several
/// columns, and `T` and the keys are columns, the input is first cut to
/// the rows holding their group's extreme: `K, max(T)` per group (two
/// columns read), then a semi join keeps the input rows matching one of
/// them. The join's dynamic filter (bounds of the winning keys) reaches the
/// scan; the query's Parquet reads then evaluate filters while decoding
/// (`pushdown_filters`), so the other columns are decoded only for rows
/// the filter keeps. Queries without this shape keep DataFusion's default,
/// which measured faster for plain selective scans such as q06. The join
/// is built once, as every join is (see `QueryEngine::new`).
/// Nulls compare equal in the join, so a group whose keys are all null
/// keeps its rows; ties keep all tied rows, and the aggregate above still
/// picks one. `None` when the shape does not apply.
fn late_materialization(
    input: &LogicalPlan,
    group_by: &[(String, BoundExpr)],
    aggregates: &[(String, BoundAggregate)],
    context: &LowerContext<'_>,
) -> Result<Option<LogicalPlan>> {
    const MIN_VALUES: usize = 4;
    let Some((_, first)) = aggregates.first() else { return Ok(None) };
    let function = first.function;
    if !matches!(function, AggregateFunction::ArgMax | AggregateFunction::ArgMin) || aggregates.len() < MIN_VALUES {
        return Ok(None);
    }
    let key = &first.args[0];
    if aggregates.iter().any(|(_, aggregate)| aggregate.function != function || aggregate.args[0] != *key) {
        return Ok(None);
    }
    let column_name = |expr: &BoundExpr| match &expr.kind {
        ExprKind::Column(name) => Some(name.clone()),
        _ => None,
    };
    if !reads_the_same_rows_twice(input)? {
        return Ok(None);
    }
    let Some(key_column) = column_name(key) else { return Ok(None) };
    let Some(group_columns) = group_by.iter().map(|(_, expr)| column_name(expr)).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let groups = group_columns.iter().enumerate().map(|(idx, name)| ident(name).alias(format!("__winner_{idx}")));
    let extreme =
        if function == AggregateFunction::ArgMax { agg::max(ident(&key_column)) } else { agg::min(ident(&key_column)) };
    let winners = LogicalPlanBuilder::from(input.clone())
        .aggregate(groups.collect::<Vec<_>>(), vec![extreme.alias("__winner_key")])?
        .build()?;
    let winner_columns = (0..group_columns.len())
        .map(|idx| datafusion::common::Column::from_name(format!("__winner_{idx}")))
        .chain([datafusion::common::Column::from_name("__winner_key")])
        .collect::<Vec<_>>();
    let input_columns = group_columns
        .iter()
        .chain([&key_column])
        .map(|name| datafusion::common::Column::from_name(name.clone()))
        .collect::<Vec<_>>();
    // The small side (the winners) is the left, built into the hash table;
    // the input streams past it as the right side of a right semi join.
    let plan = LogicalPlanBuilder::from(winners)
        .join_detailed(
            input.clone(),
            JoinType::RightSemi,
            (winner_columns, input_columns),
            None,
            datafusion::common::NullEquality::NullEqualsNull,
        )?
        .build()?;
    let state = context.session.state_ref();
    let mut state = state.write();
    state.table_options_mut().parquet.global.pushdown_filters = true;
    state.config_mut().options_mut().execution.parquet.pushdown_filters = true;
    Ok(Some(plan))
}

/// Whether running `plan` twice surely gives the same rows: only scans,
/// literal rows, projections, filters, unions and aliases, with no volatile expression.
/// A `take`, `sample` or `rand()` below a late-read `arg_max` could pick
/// different rows in its two passes.
fn reads_the_same_rows_twice(plan: &LogicalPlan) -> Result<bool> {
    use datafusion::common::tree_node::TreeNode;
    let unstable = plan.exists(|node| {
        let kind_ok = matches!(
            node,
            LogicalPlan::TableScan(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::SubqueryAlias(_)
        );
        Ok(!kind_ok || node.expressions().iter().any(Expr::is_volatile))
    })?;
    Ok(!unstable)
}

/// Where a bound aggregate's raw value is found in the aggregate's output:
/// a column, and for `arg_max`/`arg_min` a field of that column's struct.
struct AggregateOutput {
    column: usize,
    field: Option<String>,
}

/// Lowers a summarize's aggregates. `arg_max`/`arg_min` columns that share
/// a function and key (every column of one `arg_max(T, *)`) become one
/// aggregate over a struct of their values, so all of them come from the
/// same row and the input is walked once.
fn lower_aggregates(
    aggregates: &[(String, BoundAggregate)],
    context: &LowerContext<'_>,
) -> Result<(Vec<Expr>, Vec<AggregateOutput>)> {
    let mut lowered = Vec::new();
    let mut outputs = Vec::with_capacity(aggregates.len());
    // Per arg-extreme family: (function, key, its column, its values).
    let mut families: Vec<(AggregateFunction, &BoundExpr, usize, Vec<Expr>)> = Vec::new();
    for (name, aggregate) in aggregates {
        let function = aggregate.function;
        if matches!(function, AggregateFunction::ArgMax | AggregateFunction::ArgMin) {
            let key = &aggregate.args[0];
            let family = match families.iter().position(|(f, k, _, _)| *f == function && *k == key) {
                Some(family) => family,
                None => {
                    families.push((function, key, lowered.len(), Vec::new()));
                    lowered.push(lit(ScalarValue::Null)); // replaced below
                    families.len() - 1
                }
            };
            let (_, _, column, values) = &mut families[family];
            let field = format!("v{}", values.len());
            values.push(lower_plain(&aggregate.args[1], context)?);
            outputs.push(AggregateOutput { column: *column, field: Some(field) });
            continue;
        }
        outputs.push(AggregateOutput { column: lowered.len(), field: None });
        lowered.push(lower_aggregate(aggregate, context)?.alias(name));
    }
    for (idx, (function, key, column, values)) in families.into_iter().enumerate() {
        let extreme = if function == AggregateFunction::ArgMax {
            udf::arg_extreme::Extreme::Max
        } else {
            udf::arg_extreme::Extreme::Min
        };
        let fields =
            values.into_iter().enumerate().flat_map(|(idx, value)| [lit(format!("v{idx}")), value]).collect::<Vec<_>>();
        let packed = core_fn::named_struct(fields);
        let key = lower_expr(key, context)?;
        lowered[column] = udf::arg_extreme(extreme).call(vec![key, packed]).alias(format!("__arg_extreme_{idx}"));
    }
    Ok((lowered, outputs))
}

/// `expr` lowered, and cast to `Utf8` when it is a string: stored string
/// columns may be read as dictionaries (`scan::dictionary_columns`), which
/// group keys use as they are but aggregate functions take as plain
/// strings. The cast costs nothing on a column that is already `Utf8`.
fn lower_plain(expr: &BoundExpr, context: &LowerContext<'_>) -> Result<Expr> {
    let lowered = lower_expr(expr, context)?;
    Ok(if expr.ty == KqlType::String { cast(lowered, DataType::Utf8) } else { lowered })
}

fn lower_aggregate(aggregate: &BoundAggregate, context: &LowerContext<'_>) -> Result<Expr> {
    let arg = |idx: usize| lower_plain(&aggregate.args[idx], context);
    Ok(match aggregate.function {
        AggregateFunction::Count => agg::count(lit(1i64)),
        AggregateFunction::CountIf => agg::count(when(arg(0)?, lit(1i64)).end()?),
        AggregateFunction::Sum => agg::sum(arg(0)?),
        AggregateFunction::Avg => agg::avg(cast(arg(0)?, DataType::Float64)),
        AggregateFunction::Min => agg::min(arg(0)?),
        AggregateFunction::Max => agg::max(arg(0)?),
        AggregateFunction::DCount => udf::dcount().call(vec![arg(0)?]),
        AggregateFunction::DCountIf => udf::dcount().call(vec![arg(0)?]).filter(arg(1)?).build()?,
        AggregateFunction::Any => agg::first_value(arg(0)?, vec![]),
        AggregateFunction::SumIf => agg::sum(when(arg(1)?, arg(0)?).end()?),
        AggregateFunction::AvgIf => agg::avg(cast(when(arg(1)?, arg(0)?).end()?, DataType::Float64)),
        AggregateFunction::CountDistinct => agg::count_distinct(arg(0)?),
        AggregateFunction::Stdev => agg::stddev(cast(arg(0)?, DataType::Float64)),
        AggregateFunction::StdevP => agg::stddev_pop(cast(arg(0)?, DataType::Float64)),
        AggregateFunction::Variance => agg::var_sample(cast(arg(0)?, DataType::Float64)),
        AggregateFunction::VarianceP => agg::var_pop(cast(arg(0)?, DataType::Float64)),
        AggregateFunction::MakeList | AggregateFunction::MakeBag => {
            let value = arg(0)?;
            agg::array_agg(value.clone()).filter(value.is_not_null()).build()?
        }
        AggregateFunction::MakeSet => {
            let value = arg(0)?;
            agg::array_agg(value.clone()).distinct().filter(value.is_not_null()).build()?
        }
        AggregateFunction::MakeListIf => {
            let value = arg(0)?;
            agg::array_agg(value.clone()).filter(value.is_not_null().and(arg(1)?)).build()?
        }
        AggregateFunction::MakeSetIf => {
            let value = arg(0)?;
            agg::array_agg(value.clone()).distinct().filter(value.is_not_null().and(arg(1)?)).build()?
        }
        AggregateFunction::TakeAnyIf => agg::first_value(arg(0)?, vec![]).filter(arg(1)?).build()?,
        // Packed into one aggregate per key by `lower_aggregates`.
        AggregateFunction::ArgMax | AggregateFunction::ArgMin => {
            return Err(DataFusionError::Internal("arg_max/arg_min lowered outside lower_aggregates".into()))
        }
        AggregateFunction::Percentile => {
            let value = arg(0)?;
            agg::array_agg(value.clone()).filter(value.is_not_null()).build()?
        }
    })
}

/// The KQL value of an aggregate's raw result: collected lists become
/// dynamic arrays or bags; everything else is already in shape.
fn finish_aggregate(aggregate: &BoundAggregate, raw: Expr) -> Expr {
    let element_type = aggregate.args.first().map(|arg| arg.ty).unwrap_or(KqlType::Dynamic);
    match aggregate.function {
        AggregateFunction::MakeList
        | AggregateFunction::MakeSet
        | AggregateFunction::MakeListIf
        | AggregateFunction::MakeSetIf => {
            // The optional maximum size follows the value (and the predicate).
            let size_at = if matches!(aggregate.function, AggregateFunction::MakeList | AggregateFunction::MakeSet) {
                1
            } else {
                2
            };
            let max_size = match aggregate.args.get(size_at).map(|arg| &arg.kind) {
                Some(ExprKind::Literal(Value::Long(size))) => *size,
                Some(ExprKind::Literal(Value::Int(size))) => i64::from(*size),
                _ => udf::collect::DEFAULT_MAX_SIZE,
            };
            udf::kernel::call(
                "make_list",
                udf::collect::list_to_array,
                vec![raw, lit(max_size)],
                vec![element_type, KqlType::Long],
                KqlType::Dynamic,
            )
        }
        AggregateFunction::MakeBag => {
            udf::kernel::call("make_bag", udf::collect::list_to_bag, vec![raw], vec![element_type], KqlType::Dynamic)
        }
        AggregateFunction::Percentile => {
            let percent = match aggregate.args.get(1).map(|arg| &arg.kind) {
                Some(ExprKind::Literal(Value::Real(percent))) => *percent,
                _ => 50.0,
            };
            udf::kernel::call(
                "percentile",
                udf::percentile::nearest_rank,
                vec![raw, lit(percent)],
                vec![element_type, KqlType::Real],
                aggregate.ty,
            )
        }
        _ => raw,
    }
}
