//! Lowering of `mv-expand`: each expanded value becomes a list column
//! (`udf::expand`), DataFusion's `unnest` zips the lists into rows, and a
//! projection converts the elements and restores the column order.

use datafusion::common::{Column, UnnestOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::lit;
use watchpost_kql_binder::bound::{BoundTabular, ExpandColumn};
use watchpost_schema::{KqlType, TableSchema};

use super::call::convert_expr;
use super::{column_at, lower, lower_expr, LowerContext};
use crate::udf;

const INDEX_COLUMN: &str = "$mv_index";

pub(super) fn lower_mv_expand(
    input: &BoundTabular,
    columns: &[ExpandColumn],
    item_index: Option<&str>,
    limit: Option<u64>,
    schema: &TableSchema,
    context: &LowerContext<'_>,
) -> Result<LogicalPlan> {
    let plan = lower(input, context)?;
    let n_inputs = input.schema.columns.len();
    let mut exprs: Vec<Expr> = (0..n_inputs).map(|idx| column_at(&plan, idx)).collect();
    let list_names: Vec<String> = (0..columns.len()).map(|idx| format!("$mv_{idx}")).collect();
    for (column, list_name) in columns.iter().zip(&list_names) {
        exprs
            .push(udf::expand::expand_list(lower_expr(&column.expr, context)?, column.bags_as_arrays).alias(list_name));
    }
    let lists = LogicalPlanBuilder::from(plan).project(exprs)?.build()?;
    let list_refs = (0..columns.len()).map(|idx| column_at(&lists, n_inputs + idx)).collect::<Vec<_>>();
    let mut with_index: Vec<Expr> = (0..n_inputs + columns.len()).map(|idx| column_at(&lists, idx)).collect();
    with_index.push(udf::expand::expand_index(list_refs).alias(INDEX_COLUMN));
    let indexed = LogicalPlanBuilder::from(lists).project(with_index)?.build()?;
    let mut unnest: Vec<Column> = list_names.iter().map(|name| Column::from_name(name.as_str())).collect();
    unnest.push(Column::from_name(INDEX_COLUMN));
    let options = UnnestOptions::new().with_preserve_nulls(false);
    let mut builder = LogicalPlanBuilder::from(indexed).unnest_columns_with_options(unnest, options)?;
    if let Some(limit) = limit {
        let index = column_at(builder.plan(), n_inputs + columns.len());
        builder = builder.filter(index.lt(lit(limit as i64)))?;
    }
    let expanded = builder.build()?;
    let outputs = schema
        .columns
        .iter()
        .map(|output| {
            let expr = if let Some(idx) = columns.iter().position(|column| column.name == output.name) {
                convert_expr(column_at(&expanded, n_inputs + idx), KqlType::Dynamic, columns[idx].ty)
            } else if item_index == Some(output.name.as_str()) {
                column_at(&expanded, n_inputs + columns.len())
            } else {
                let idx = input.schema.columns.iter().position(|column| column.name == output.name);
                let idx = idx.ok_or_else(|| DataFusionError::Internal(format!("mv-expand lost {}", output.name)))?;
                column_at(&expanded, idx)
            };
            Ok(expr.alias(&output.name))
        })
        .collect::<Result<Vec<_>>>()?;
    LogicalPlanBuilder::from(expanded).project(outputs)?.build()
}
