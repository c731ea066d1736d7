//! Lowering of window functions (`row_number()`, `prev()`, `next()`) to
//! DataFusion window expressions over the rows in their current order.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_window::expr_fn as window_fn;
use datafusion::logical_expr::expr::WindowFunction as WindowFunctionExpr;
use datafusion::logical_expr::{
    cast, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, WindowFrame, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition,
};
use watchpost_kql_binder::bound::{BoundExpr, BoundSortKey, BoundTabular, BoundWindow, ExprKind, WindowFunction};

use super::{column_at, lower, lower_expr, scalar_of, LowerContext};

/// The input's columns, then one column per window function, cast to the
/// window's KQL type.
pub(super) fn lower_window(
    input: &BoundTabular,
    columns: &[(String, BoundWindow)],
    order: &[BoundSortKey],
    partition: &[BoundExpr],
    context: &LowerContext<'_>,
) -> Result<LogicalPlan> {
    let plan = lower(input, context)?;
    let n_inputs = input.schema.columns.len();
    // DataFusion keeps a sort only where something needs its order, so the
    // windows restate the order of the rows they number.
    let order_by = order
        .iter()
        .map(|key| Ok(lower_expr(&key.expr, context)?.sort(!key.descending, key.nulls_first)))
        .collect::<Result<Vec<_>>>()?;
    let partition_by = partition.iter().map(|expr| lower_expr(expr, context)).collect::<Result<Vec<_>>>()?;
    let windows = columns
        .iter()
        .map(|(name, window)| {
            let expr = window_expr(window, context)?;
            let expr = if window.function == WindowFunction::RowCumsum {
                // A running total: every row so far, not the peers of the last one.
                let frame = WindowFrame::new_bounds(
                    WindowFrameUnits::Rows,
                    WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                    WindowFrameBound::CurrentRow,
                );
                expr.order_by(order_by.clone()).partition_by(partition_by.clone()).window_frame(frame).build()?
            } else if order_by.is_empty() && partition_by.is_empty() {
                expr
            } else {
                expr.order_by(order_by.clone()).partition_by(partition_by.clone()).build()?
            };
            Ok(expr.alias(name))
        })
        .collect::<Result<Vec<_>>>()?;
    let windowed = LogicalPlanBuilder::from(plan).window(windows)?.build()?;
    let mut outputs: Vec<Expr> = (0..n_inputs).map(|idx| column_at(&windowed, idx)).collect();
    for (offset, (name, window)) in columns.iter().enumerate() {
        outputs.push(cast(column_at(&windowed, n_inputs + offset), window.ty.arrow_type()).alias(name));
    }
    LogicalPlanBuilder::from(windowed).project(outputs)?.build()
}

fn window_expr(window: &BoundWindow, context: &LowerContext<'_>) -> Result<Expr> {
    match window.function {
        WindowFunction::RowNumber => Ok(window_fn::row_number()),
        WindowFunction::RowCumsum => {
            let value = lower_expr(&window.args[0], context)?;
            let sum = datafusion::functions_aggregate::sum::sum_udaf();
            Ok(Expr::WindowFunction(Box::new(WindowFunctionExpr::new(
                WindowFunctionDefinition::AggregateUDF(sum),
                vec![value],
            ))))
        }
        WindowFunction::Prev | WindowFunction::Next => {
            let value = lower_expr(&window.args[0], context)?;
            let offset = window.args.get(1).map(constant_long).transpose()?.unwrap_or(1);
            let target = window.ty.arrow_type();
            let default = window.args.get(2).map(|arg| constant_scalar(arg, &target)).transpose()?;
            Ok(if window.function == WindowFunction::Prev {
                window_fn::lag(value, Some(offset), default)
            } else {
                window_fn::lead(value, Some(offset), default)
            })
        }
    }
}

fn constant_long(expr: &BoundExpr) -> Result<i64> {
    match constant_scalar(expr, &DataType::Int64)? {
        ScalarValue::Int64(Some(value)) => Ok(value),
        _ => Err(DataFusionError::Plan("the offset of prev() and next() must be a constant".into())),
    }
}

fn constant_scalar(expr: &BoundExpr, target: &DataType) -> Result<ScalarValue> {
    match &expr.kind {
        ExprKind::Literal(value) => scalar_of(value, target),
        ExprKind::Negate(inner) => constant_scalar(inner, target)?.arithmetic_negate(),
        _ => Err(DataFusionError::Plan("window function arguments must be constants".into())),
    }
}
