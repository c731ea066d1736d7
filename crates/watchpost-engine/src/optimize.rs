//! Plan rewrites of our own: dynamic property paths read JSON text
//! directly wherever the plan lets them.
//!
//! A query such as
//!
//! ```text
//! T | extend AF = parse_json(Text) | where tostring(AF.Level) == "high"
//!   | summarize count() by tostring(AF.User.Name)
//! ```
//!
//! lowers to paths over a column holding `parse_json(Text)`. Lowering fuses
//! what one expression shows ([`fuse_paths`]); the rule [`DynamicPathFusion`]
//! fuses what the optimizer exposes later: DataFusion's filter push-down
//! puts `parse_json(Text)` inside the predicate, and an aggregate or
//! projection that reads `AF` only through paths lets the projection below
//! it pass `Text` on unparsed. Each fusion relies on two facts about the
//! kernels: a path on a string gives what it gives on `parse_json` of that
//! string, and a path with a string result gives `tostring()` of the path.
//!
//! One physical rule too: [`DictionaryGroups`] groups by a dictionary
//! column's keys.

mod dictionary_groups;

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};
use watchpost_schema::KqlType;

pub(crate) use dictionary_groups::DictionaryGroups;

use crate::udf::kernel::{kernel_call, KernelCall};
use crate::udf::{convert, dynamic};

/// DataFusion's optimizer rules with [`DynamicPathFusion`] right after
/// filter push-down: later rules (common subexpression elimination) would
/// otherwise pull a `parse_json` shared by two predicates out into a
/// projection of its own, out of the fusion's reach.
pub(crate) fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let after_push_down =
        rules.iter().position(|rule| rule.name() == "push_down_filter").map_or(rules.len(), |idx| idx + 1);
    rules.insert(after_push_down, Arc::new(DynamicPathFusion));
    rules
}

/// Fuses the call `expr` (not its arguments) with the call below it:
///
/// * `dynamic_get(parse_json(s), keys)` with a string `s` becomes
///   `dynamic_get(s, keys)`, and likewise for `dynamic_get_text`;
/// * `tostring(dynamic_get(d, keys))`, and the dynamic-to-string
///   `convert` that comparisons use, become `dynamic_get_text(d, keys)`.
pub(crate) fn fuse_paths(expr: Expr) -> Expr {
    fuse_path_call(expr).data
}

fn fuse_path_call(expr: Expr) -> Transformed<Expr> {
    let fused = kernel_call(&expr).and_then(|call| {
        let inner = kernel_call(call.args.first()?)?;
        if is_path(&call) && inner.name == dynamic::PARSE_JSON && inner.arg_types == [KqlType::String] {
            let mut args = call.args.to_vec();
            args[0] = inner.args[0].clone();
            return Some(call.with_args(args, source_as_text(call.arg_types)));
        }
        let to_text = matches!(call.name, convert::TO_STRING | convert::CONVERT)
            && call.arg_types == [KqlType::Dynamic]
            && call.return_type == KqlType::String;
        if to_text && inner.name == dynamic::GET_PATH {
            let args = inner.args.to_vec();
            let arg_types = inner.arg_types.to_vec();
            return Some(crate::udf::kernel::call(
                dynamic::GET_PATH_TEXT,
                dynamic::get_path,
                args,
                arg_types,
                KqlType::String,
            ));
        }
        None
    });
    match fused {
        Some(fused) => Transformed::yes(fused),
        None => Transformed::no(expr),
    }
}

fn is_path(call: &KernelCall<'_>) -> bool {
    matches!(call.name, dynamic::GET_PATH | dynamic::GET_PATH_TEXT)
}

/// The argument types of a path call whose source becomes a string.
fn source_as_text(arg_types: &[KqlType]) -> Vec<KqlType> {
    let mut arg_types = arg_types.to_vec();
    arg_types[0] = KqlType::String;
    arg_types
}

/// Fuses dynamic paths with `parse_json` and `tostring` after the
/// optimizer has moved expressions around; see the module docs.
#[derive(Debug)]
pub(crate) struct DynamicPathFusion;

impl OptimizerRule for DynamicPathFusion {
    fn name(&self) -> &str {
        "kql_dynamic_path_fusion"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let names = NamePreserver::new(&plan);
        let plan = plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let fused = expr.transform_up(|expr| Ok(fuse_path_call(expr)))?;
            Ok(fused.update_data(|expr| name.restore(expr)))
        })?;
        plan.transform_data(unparse_path_sources)
    }
}

/// An aggregate or projection over a projection that computes
/// `c = parse_json(s)`, where the upper node reads `c` only as the source of
/// paths: the projection passes `s` on as `c`, and the paths read it as a
/// string.
fn unparse_path_sources(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    if !matches!(plan, LogicalPlan::Aggregate(_) | LogicalPlan::Projection(_)) {
        return Ok(Transformed::no(plan));
    }
    let Some(LogicalPlan::Projection(projection)) = plan.inputs().first().copied() else {
        return Ok(Transformed::no(plan));
    };
    let exprs = plan.expressions();
    let mut unparsed = Vec::new();
    for (idx, projected) in projection.expr.iter().enumerate() {
        let Expr::Alias(alias) = projected else { continue };
        let parses = kernel_call(&alias.expr)
            .is_some_and(|call| call.name == dynamic::PARSE_JSON && call.arg_types == [KqlType::String]);
        if parses && read_only_as_path_source(&exprs, &projection.schema, idx)? {
            unparsed.push(idx);
        }
    }
    if unparsed.is_empty() {
        return Ok(Transformed::no(plan));
    }
    let mut projected = projection.expr.clone();
    for &idx in &unparsed {
        if let Expr::Alias(alias) = &mut projected[idx] {
            let source = kernel_call(&alias.expr).map(|call| call.args[0].clone());
            *alias.expr = source.expect("a parse_json call was found here");
        }
    }
    let schema = projection.schema.clone();
    let new_input = LogicalPlan::Projection(Projection::try_new(projected, projection.input.clone())?);
    let exprs = exprs
        .into_iter()
        .map(|expr| expr.transform_up(|expr| Ok(read_source_as_text(expr, &schema, &unparsed))).map(|fused| fused.data))
        .collect::<Result<Vec<_>>>()?;
    Ok(Transformed::yes(plan.with_new_exprs(exprs, vec![new_input])?))
}

/// Whether `exprs` read column `idx` of `schema`, and only as the source of
/// a path.
fn read_only_as_path_source(exprs: &[Expr], schema: &DFSchema, idx: usize) -> Result<bool> {
    let (mut n_reads, mut n_path_sources) = (0, 0);
    for expr in exprs {
        expr.apply(|node| {
            if let Expr::Column(column) = node {
                n_reads += usize::from(refers_to(column, schema, &[idx]));
            }
            if path_source_in(node, schema, &[idx]) {
                n_path_sources += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    Ok(n_reads > 0 && n_reads == n_path_sources)
}

/// Whether `node` is a path on a dynamic column that is one of `columns`
/// of `schema`.
fn path_source_in(node: &Expr, schema: &DFSchema, columns: &[usize]) -> bool {
    kernel_call(node).is_some_and(|call| {
        is_path(&call)
            && call.arg_types[0] == KqlType::Dynamic
            && matches!(&call.args[0], Expr::Column(column) if refers_to(column, schema, columns))
    })
}

fn refers_to(column: &Column, schema: &DFSchema, columns: &[usize]) -> bool {
    schema.maybe_index_of_column(column).is_some_and(|idx| columns.contains(&idx))
}

/// A path on one of the `unparsed` columns, now strings, reads them as
/// such.
fn read_source_as_text(expr: Expr, schema: &DFSchema, unparsed: &[usize]) -> Transformed<Expr> {
    if !path_source_in(&expr, schema, unparsed) {
        return Transformed::no(expr);
    }
    let call = kernel_call(&expr).expect("a path call was found here");
    Transformed::yes(call.with_args(call.args.to_vec(), source_as_text(call.arg_types)))
}
