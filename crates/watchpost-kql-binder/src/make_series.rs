//! Binding of `make-series`, rewritten into operators the engine already
//! has: keep the rows inside `[from, to)`, aggregate per group and axis bin,
//! collect each group's `[bin, value]` pairs, then fill the dense arrays
//! (`SeriesFill`) and build the axis (`SeriesAxis`).

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{BinaryOp, MakeSeries};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{
    AggregateFunction, BoundAggregate, BoundExpr, BoundTabular, ExprKind, ScalarFunction, TabularKind, Value,
};
use crate::expr::is_numeric;
use crate::tabular::{column_ref, project, NamingStyle};
use crate::Binder;

/// The column holding each row's axis bin between the two aggregations.
const BIN_COLUMN: &str = "$bin";

impl Binder<'_> {
    pub(crate) fn bind_make_series(
        &mut self,
        input: BoundTabular,
        series: &MakeSeries,
        span: Span,
    ) -> Option<BoundTabular> {
        self.require_column(&input.schema, &series.axis.name, series.axis.span)?;
        let axis = column_ref(input.schema.column(&series.axis.name)?);
        let empty = TableSchema::default();
        let step = self.bind_expr(&series.step, &empty)?;
        // Without bounds the series spans the data: from its smallest axis
        // value through the bin of its largest.
        let from = match &series.from {
            Some(from) => self.bind_expr(from, &empty)?,
            None => extreme(&input, &axis, AggregateFunction::Min),
        };
        let to = match &series.to {
            Some(to) => self.bind_expr(to, &empty)?,
            None => end_after(&from, extreme(&input, &axis, AggregateFunction::Max), &step),
        };
        let axis_ok = match axis.ty {
            KqlType::Datetime => {
                from.ty == KqlType::Datetime && to.ty == KqlType::Datetime && step.ty == KqlType::Timespan
            }
            ty => is_numeric(ty) && is_numeric(from.ty) && is_numeric(to.ty) && is_numeric(step.ty),
        };
        if !axis_ok {
            let message = format!(
                "make-series needs a numeric axis with numeric bounds and step, or a datetime axis with datetime \
                 bounds and a timespan step; got a {} axis from {} to {} step {}",
                axis.ty, from.ty, to.ty, step.ty
            );
            self.report(Diagnostic::semantic("KQL2006", span, message));
            return None;
        }
        let group_by = self.bind_named_list(&series.by, &input.schema, NamingStyle::Column)?;
        let filtered = in_range(input, &axis, &from, &to);
        let mut binned_groups = group_by.clone();
        binned_groups.push((BIN_COLUMN.to_string(), bin_index(&axis, &from, &step)));
        let mut aggregates = Vec::new();
        let mut defaults = Vec::new();
        for item in &series.aggregates {
            let columns = self.bind_aggregate_item(&item.aggregate, &filtered, &group_by)?;
            let default = match &item.default {
                Some(default) => self.bind_expr(default, &empty)?,
                None => BoundExpr { kind: ExprKind::Literal(Value::Long(0)), ty: KqlType::Long },
            };
            defaults.extend(columns.iter().map(|_| default.clone()));
            aggregates.extend(columns);
        }
        let binned = aggregate(filtered, binned_groups, aggregates.clone());
        let collected_groups = group_by.iter().map(|(name, expr)| (name.clone(), column(name, expr.ty))).collect();
        let collected = aggregates
            .iter()
            .map(|(name, bound)| {
                let pair =
                    call(ScalarFunction::PackArray, vec![column(BIN_COLUMN, KqlType::Long), column(name, bound.ty)]);
                let list =
                    BoundAggregate { function: AggregateFunction::MakeList, args: vec![pair], ty: KqlType::Dynamic };
                (name.clone(), list)
            })
            .collect();
        let collected = aggregate(binned, collected_groups, collected);
        let mut outputs: Vec<_> = group_by.iter().map(|(name, expr)| (name.clone(), column(name, expr.ty))).collect();
        for ((name, _), default) in aggregates.iter().zip(defaults) {
            let args = vec![column(name, KqlType::Dynamic), from.clone(), to.clone(), step.clone(), default];
            outputs.push((name.clone(), call(ScalarFunction::SeriesFill, args)));
        }
        let axis_values = call(ScalarFunction::SeriesAxis, vec![from, to, step]);
        outputs.push((series.axis.name.clone(), axis_values));
        Some(project(collected, outputs))
    }
}

/// `toscalar(input | summarize min(axis))` (or `max`).
fn extreme(input: &BoundTabular, axis: &BoundExpr, function: AggregateFunction) -> BoundExpr {
    let extreme = BoundAggregate { function, args: vec![axis.clone()], ty: axis.ty };
    let summary = aggregate(input.clone(), Vec::new(), vec![("extreme".to_string(), extreme)]);
    BoundExpr { kind: ExprKind::ScalarSubquery(Box::new(summary)), ty: axis.ty }
}

/// `from + (floor((last - from) / step) + 1) * step`: the end of the bin
/// that holds `last`.
fn end_after(from: &BoundExpr, last: BoundExpr, step: &BoundExpr) -> BoundExpr {
    let datetime = from.ty == KqlType::Datetime;
    let bins_before = bin_index(&last, from, step);
    let one = BoundExpr { kind: ExprKind::Literal(Value::Long(1)), ty: KqlType::Long };
    let n_bins = binary(BinaryOp::Add, bins_before, one, KqlType::Long);
    let step_ty = if datetime { KqlType::Timespan } else { KqlType::Real };
    let step = if datetime { step.clone() } else { to_real_unless_span(step.clone()) };
    let span = binary(BinaryOp::Mul, n_bins, step, step_ty);
    let from = if datetime { from.clone() } else { to_real_unless_span(from.clone()) };
    binary(BinaryOp::Add, from, span, if datetime { KqlType::Datetime } else { KqlType::Real })
}

/// The rows of `input` whose axis value is in `[from, to)`.
fn in_range(input: BoundTabular, axis: &BoundExpr, from: &BoundExpr, to: &BoundExpr) -> BoundTabular {
    let at_least = binary(BinaryOp::Ge, axis.clone(), from.clone(), KqlType::Bool);
    let below = binary(BinaryOp::Lt, axis.clone(), to.clone(), KqlType::Bool);
    let predicate = binary(BinaryOp::And, at_least, below, KqlType::Bool);
    let schema = input.schema.clone();
    BoundTabular { kind: TabularKind::Filter { input: Box::new(input), predicate }, schema }
}

/// `tolong(floor(real(axis - from) / real(step)))`: the bin of the axis value.
fn bin_index(axis: &BoundExpr, from: &BoundExpr, step: &BoundExpr) -> BoundExpr {
    let difference_type = if axis.ty == KqlType::Datetime { KqlType::Timespan } else { KqlType::Real };
    let to_real = |expr: BoundExpr| BoundExpr {
        kind: ExprKind::Call { function: ScalarFunction::ToReal, args: vec![expr] },
        ty: KqlType::Real,
    };
    let difference =
        binary(BinaryOp::Sub, to_real_unless_span(axis.clone()), to_real_unless_span(from.clone()), difference_type);
    let ratio = binary(BinaryOp::Div, to_real(difference), to_real(step.clone()), KqlType::Real);
    let one = BoundExpr { kind: ExprKind::Literal(Value::Real(1.0)), ty: KqlType::Real };
    let floored =
        BoundExpr { kind: ExprKind::Call { function: ScalarFunction::Bin, args: vec![ratio, one] }, ty: KqlType::Real };
    BoundExpr { kind: ExprKind::Call { function: ScalarFunction::ToLong, args: vec![floored] }, ty: KqlType::Long }
}

/// Numbers become reals so their difference is exact; datetimes stay.
fn to_real_unless_span(expr: BoundExpr) -> BoundExpr {
    if expr.ty == KqlType::Datetime || expr.ty == KqlType::Real {
        return expr;
    }
    BoundExpr { kind: ExprKind::Call { function: ScalarFunction::ToReal, args: vec![expr] }, ty: KqlType::Real }
}

fn aggregate(
    input: BoundTabular,
    group_by: Vec<(String, BoundExpr)>,
    aggregates: Vec<(String, BoundAggregate)>,
) -> BoundTabular {
    let mut columns: Vec<ColumnDef> = group_by.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect();
    columns.extend(aggregates.iter().map(|(name, aggregate)| ColumnDef::new(name, aggregate.ty)));
    let schema = TableSchema::new(columns);
    BoundTabular { kind: TabularKind::Aggregate { input: Box::new(input), group_by, aggregates }, schema }
}

fn column(name: &str, ty: KqlType) -> BoundExpr {
    BoundExpr { kind: ExprKind::Column(name.to_string()), ty }
}

fn call(function: ScalarFunction, args: Vec<BoundExpr>) -> BoundExpr {
    BoundExpr { kind: ExprKind::Call { function, args }, ty: KqlType::Dynamic }
}

fn binary(op: BinaryOp, left: BoundExpr, right: BoundExpr, ty: KqlType) -> BoundExpr {
    BoundExpr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, ty }
}
