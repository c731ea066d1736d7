//! Binding of `top-nested`, rewritten into operators the engine has.
//!
//! Level 1 aggregates the input by its key and keeps the top `n` groups.
//! Each further level aggregates the input by all keys so far, keeps the
//! groups whose earlier keys survived (a lookup against the previous result)
//! and ranks them within those keys, keeping the top `n` of each.

use watchpost_diagnostics::Diagnostic;
use watchpost_kql_syntax::ast::{NamedExpr, SortOrder, TopNestedLevel};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{
    BoundExpr, BoundSortKey, BoundTabular, BoundWindow, ExprKind, JoinKind, TabularKind, Value, WindowFunction,
};
use crate::join::join_schema;
use crate::tabular::{column_ref, project, NamingStyle};
use crate::Binder;

const RANK_COLUMN: &str = "$rank";

impl Binder<'_> {
    pub(crate) fn bind_top_nested(&mut self, input: BoundTabular, levels: &[TopNestedLevel]) -> Option<BoundTabular> {
        let mut keys: Vec<(String, BoundExpr)> = Vec::new();
        let mut result: Option<BoundTabular> = None;
        for level in levels {
            if let Some(others) = &level.others {
                let message = "`with others` in top-nested is not supported yet";
                self.report(Diagnostic::semantic("KQL3001", others.span, message));
                return None;
            }
            let count = match &level.count {
                Some(count) => Some(self.constant_count(count)?),
                None => None,
            };
            let key = self.bind_named_list(std::slice::from_ref(&level.of), &input.schema, NamingStyle::Column)?;
            let mut group_by = keys.clone();
            group_by.extend(key.iter().cloned());
            let aggregate = self.bind_level_aggregate(&level.by, &input, &group_by, &key[0].0)?;
            let descending = level.order != Some(SortOrder::Ascending);
            let level_result = top_level(&input, group_by, aggregate, result.take(), keys.len(), count, descending);
            result = Some(level_result);
            keys.extend(key);
        }
        result
    }

    /// The one aggregate of a level, named `aggregated_<key>` unless named.
    fn bind_level_aggregate(
        &mut self,
        by: &NamedExpr,
        input: &BoundTabular,
        group_by: &[(String, BoundExpr)],
        key_name: &str,
    ) -> Option<(String, crate::bound::BoundAggregate)> {
        let mut columns = self.bind_aggregate_item(by, input, group_by)?;
        if columns.len() != 1 {
            let message = "each top-nested level takes one aggregate with one result";
            self.report(Diagnostic::semantic("KQL2011", by.expr.span, message));
            return None;
        }
        let (mut name, aggregate) = columns.remove(0);
        if by.name.is_none() {
            name = format!("aggregated_{key_name}");
        }
        Some((name, aggregate))
    }
}

/// One level: the aggregate by `group_by`, restricted to the groups of
/// `previous` (whose first `n_previous_keys` keys are matched), ranked
/// within those keys by the aggregate, and cut to `count`.
#[allow(clippy::too_many_arguments)] // One private step of one operator; a struct would only rename the list.
fn top_level(
    input: &BoundTabular,
    group_by: Vec<(String, BoundExpr)>,
    aggregate: (String, crate::bound::BoundAggregate),
    previous: Option<BoundTabular>,
    n_previous_keys: usize,
    count: Option<u64>,
    descending: bool,
) -> BoundTabular {
    let mut columns: Vec<ColumnDef> = group_by.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect();
    columns.push(ColumnDef::new(&aggregate.0, aggregate.1.ty));
    let aggregated = BoundTabular {
        kind: TabularKind::Aggregate { input: Box::new(input.clone()), group_by, aggregates: vec![aggregate] },
        schema: TableSchema::new(columns),
    };
    let joined = match previous {
        None => aggregated,
        Some(previous) => {
            // The previous result alternates keys and aggregates.
            let join_keys: Vec<(usize, usize)> = (0..n_previous_keys).map(|idx| (2 * idx, idx)).collect();
            let schema = join_schema(JoinKind::LookupInner, &previous.schema, &aggregated.schema, &join_keys);
            let kind = TabularKind::Join {
                left: Box::new(previous),
                right: Box::new(aggregated),
                kind: JoinKind::LookupInner,
                keys: join_keys,
            };
            BoundTabular { kind, schema }
        }
    };
    let Some(count) = count else {
        return joined;
    };
    let n_columns = joined.schema.columns.len();
    let value = column_ref(&joined.schema.columns[n_columns - 1]);
    let partition = (0..n_previous_keys).map(|idx| column_ref(&joined.schema.columns[2 * idx])).collect();
    let order = vec![BoundSortKey { expr: value, descending, nulls_first: false }];
    let rank = BoundWindow { function: WindowFunction::RowNumber, args: Vec::new(), ty: KqlType::Long };
    let mut schema = joined.schema.clone();
    schema.columns.push(ColumnDef::new(RANK_COLUMN, KqlType::Long));
    let outputs: Vec<_> =
        joined.schema.columns.iter().map(|column| (column.name.clone(), column_ref(column))).collect();
    let kind = TabularKind::Window {
        input: Box::new(joined),
        columns: vec![(RANK_COLUMN.to_string(), rank)],
        order,
        partition,
    };
    let ranked = BoundTabular { kind, schema };
    let predicate = BoundExpr {
        kind: ExprKind::Binary {
            op: watchpost_kql_syntax::ast::BinaryOp::Le,
            left: Box::new(BoundExpr { kind: ExprKind::Column(RANK_COLUMN.to_string()), ty: KqlType::Long }),
            right: Box::new(BoundExpr { kind: ExprKind::Literal(Value::Long(count as i64)), ty: KqlType::Long }),
        },
        ty: KqlType::Bool,
    };
    let schema = ranked.schema.clone();
    let kept = BoundTabular { kind: TabularKind::Filter { input: Box::new(ranked), predicate }, schema };
    project(kept, outputs)
}
