//! Binding of `mv-expand` (which dynamic values are expanded, to which
//! types, and where the expanded columns sit in the output) and of
//! `mv-apply`, which runs operators over each row's expanded values.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{
    BinaryOp, Expr, ExprKind as AstExpr, Ident, MvExpand, NamedExpr, Operator, OperatorKind,
};
use watchpost_schema::{ColumnDef, KqlType};

use crate::bound::{
    BoundExpr, BoundSortKey, BoundTabular, BoundWindow, ExpandColumn, ExprKind, TabularKind, Value, WindowFunction,
};
use crate::tabular::{column_ref, project, NamingStyle};
use crate::Binder;

impl Binder<'_> {
    /// `mv-expand`: an expanded column keeps its place when it replaces an
    /// input column and goes last otherwise; the item index column follows.
    pub(crate) fn bind_mv_expand(
        &mut self,
        input: BoundTabular,
        expand: &MvExpand,
        span: Span,
    ) -> Option<BoundTabular> {
        let mut bags_as_arrays = false;
        let mut item_index = None;
        for (name, value) in &expand.params {
            match (name.name.as_str(), value.name.as_str()) {
                ("bagexpansion" | "kind", "bag") => bags_as_arrays = false,
                ("bagexpansion" | "kind", "array") => bags_as_arrays = true,
                ("with_itemindex", _) => item_index = Some(value.name.clone()),
                _ => {
                    let message = format!("unknown mv-expand parameter value `{}={}`", name.name, value.name);
                    let hint = "use `bagexpansion=bag`, `bagexpansion=array` or `with_itemindex=Name`";
                    self.report(Diagnostic::semantic("KQL2011", name.span.cover(value.span), message).with_hint(hint));
                    return None;
                }
            }
        }
        let named: Vec<_> = expand.items.iter().map(|item| item.expr.clone()).collect();
        let bound = self.bind_named_list(&named, &input.schema, NamingStyle::Column)?;
        let mut columns = Vec::new();
        for ((name, expr), item) in bound.into_iter().zip(&expand.items) {
            if expr.ty != KqlType::Dynamic {
                let message = format!("mv-expand expects a dynamic array or property bag, got {}", expr.ty);
                let hint = "convert the value first, for example with parse_json() or split()";
                self.report(Diagnostic::semantic("KQL2004", item.expr.span, message).with_hint(hint));
                return None;
            }
            let ty = match &item.to_type {
                Some(type_name) => self.type_named(type_name)?,
                None => KqlType::Dynamic,
            };
            columns.push(ExpandColumn { name, expr, bags_as_arrays, ty });
        }
        let limit = match &expand.limit {
            Some(limit) => Some(self.constant_count(limit)?),
            None => None,
        };
        let mut schema = input.schema.clone();
        for column in &columns {
            match schema.columns.iter_mut().find(|existing| existing.name == column.name) {
                Some(existing) => existing.kql_type = column.ty,
                None => schema.columns.push(ColumnDef::new(&column.name, column.ty)),
            }
        }
        if let Some(index_name) = &item_index {
            if schema.column(index_name).is_some() {
                let message = format!("the item index column '{index_name}' already exists");
                self.report(Diagnostic::semantic("KQL2011", span, message));
                return None;
            }
            schema.columns.push(ColumnDef::new(index_name, KqlType::Long));
        }
        Some(BoundTabular {
            kind: TabularKind::MvExpand { input: Box::new(input), columns, item_index, limit },
            schema,
        })
    }

    /// The type called `name`, or a reported error.
    pub(crate) fn type_named(&mut self, name: &Ident) -> Option<KqlType> {
        let ty = KqlType::from_name(&name.name);
        if ty.is_none() {
            self.report(Diagnostic::semantic("KQL2008", name.span, format!("unknown type '{}'", name.name)));
        }
        ty
    }
}

/// The internal number of each input row of `mv-apply`.
const ROW_COLUMN: &str = "$row";
/// The internal rank of a value within its row, for `take` and `top`.
const RANK_COLUMN: &str = "$rank";

impl Binder<'_> {
    /// `mv-apply`: numbers the input rows, expands them, and runs each
    /// applied operator per input row (`summarize` groups by the row,
    /// `take` and `top` rank within it); the input row's other columns stay.
    pub(crate) fn bind_mv_apply(
        &mut self,
        input: BoundTabular,
        expand: &MvExpand,
        subquery: &[Operator],
        span: Span,
    ) -> Option<BoundTabular> {
        let expanded_names: Vec<&str> = expand.items.iter().filter_map(|item| key_name(&item.expr)).collect();
        let mut outer: Vec<String> = input
            .schema
            .columns
            .iter()
            .map(|column| column.name.clone())
            .filter(|name| !expanded_names.contains(&name.as_str()))
            .collect();
        outer.push(ROW_COLUMN.to_string());
        let numbered = with_row_numbers(input);
        let mut current = self.bind_mv_expand(numbered, expand, span)?;
        let mut order: Vec<BoundSortKey> = Vec::new();
        for operator in subquery {
            current = match &operator.kind {
                OperatorKind::Summarize { aggregates, by } => {
                    outer.retain(|name| by.iter().all(|key| key_name(key) != Some(name.as_str())));
                    let mut keys: Vec<NamedExpr> = outer.iter().map(|name| name_expr(name, operator.span)).collect();
                    keys.extend(by.iter().cloned());
                    self.bind_summarize(current, aggregates, &keys, operator.span)?
                }
                OperatorKind::Project(items) => {
                    let extended = self.bind_extend(current, items, operator.span)?;
                    let mut keep: Vec<String> = outer.clone();
                    for item in items {
                        let name = key_name(item).map(str::to_string);
                        keep.extend(name.filter(|name| !keep.contains(name)));
                    }
                    keep_columns(extended, &keep)
                }
                OperatorKind::Sort(keys) => {
                    order = self.bind_sort_keys(keys, &current.schema)?;
                    current
                }
                OperatorKind::Take(count) => {
                    let count = self.constant_count(count)?;
                    rank_within_rows(current, std::mem::take(&mut order), count)
                }
                OperatorKind::Top { count, key } => {
                    let count = self.constant_count(count)?;
                    let keys = self.bind_sort_keys(std::slice::from_ref(key), &current.schema)?;
                    rank_within_rows(current, keys, count)
                }
                OperatorKind::Where(_)
                | OperatorKind::Extend(_)
                | OperatorKind::Parse { .. }
                | OperatorKind::MvExpand(_)
                | OperatorKind::ProjectAway(_)
                | OperatorKind::ProjectRename(_)
                | OperatorKind::Search { .. } => self.bind_operator(current, operator)?,
                _ => {
                    let message = "mv-apply supports where, extend, project, project-away, project-rename, parse, \
                                   mv-expand, search, summarize, sort, take and top in its subquery";
                    self.report(Diagnostic::semantic("KQL3001", operator.span, message));
                    return None;
                }
            };
        }
        let keep: Vec<String> =
            current.schema.columns.iter().map(|column| column.name.clone()).filter(|name| name != ROW_COLUMN).collect();
        Some(keep_columns(current, &keep))
    }
}

/// The name a `name = expr` or bare column item gives its column.
fn key_name(item: &NamedExpr) -> Option<&str> {
    match (&item.name, &item.expr.kind) {
        (Some(name), _) => Some(name.name.as_str()),
        (None, AstExpr::Name(name)) => Some(name.name.as_str()),
        _ => None,
    }
}

fn name_expr(name: &str, span: Span) -> NamedExpr {
    let ident = Ident { name: name.to_string(), span };
    NamedExpr { name: None, tuple: Vec::new(), expr: Expr { kind: AstExpr::Name(ident), span }, span }
}

/// `input` with a `$row` column numbering its rows.
fn with_row_numbers(input: BoundTabular) -> BoundTabular {
    let mut schema = input.schema.clone();
    schema.columns.push(ColumnDef::new(ROW_COLUMN, KqlType::Long));
    let number = BoundWindow { function: WindowFunction::RowNumber, args: Vec::new(), ty: KqlType::Long };
    let kind = TabularKind::Window {
        input: Box::new(input),
        columns: vec![(ROW_COLUMN.to_string(), number)],
        order: Vec::new(),
        partition: Vec::new(),
    };
    BoundTabular { kind, schema }
}

/// The first `count` rows of each input row's values, in `order`.
fn rank_within_rows(input: BoundTabular, order: Vec<BoundSortKey>, count: u64) -> BoundTabular {
    let columns: Vec<String> = input.schema.columns.iter().map(|column| column.name.clone()).collect();
    let mut schema = input.schema.clone();
    schema.columns.push(ColumnDef::new(RANK_COLUMN, KqlType::Long));
    let row = BoundExpr { kind: ExprKind::Column(ROW_COLUMN.to_string()), ty: KqlType::Long };
    let rank = BoundWindow { function: WindowFunction::RowNumber, args: Vec::new(), ty: KqlType::Long };
    let kind = TabularKind::Window {
        input: Box::new(input),
        columns: vec![(RANK_COLUMN.to_string(), rank)],
        order,
        partition: vec![row],
    };
    let ranked = BoundTabular { kind, schema };
    let predicate = BoundExpr {
        kind: ExprKind::Binary {
            op: BinaryOp::Le,
            left: Box::new(BoundExpr { kind: ExprKind::Column(RANK_COLUMN.to_string()), ty: KqlType::Long }),
            right: Box::new(BoundExpr { kind: ExprKind::Literal(Value::Long(count as i64)), ty: KqlType::Long }),
        },
        ty: KqlType::Bool,
    };
    let schema = ranked.schema.clone();
    let kept = BoundTabular { kind: TabularKind::Filter { input: Box::new(ranked), predicate }, schema };
    keep_columns(kept, &columns)
}

/// The columns of `input` named in `names`, in that order (unknown names
/// are skipped).
fn keep_columns(input: BoundTabular, names: &[String]) -> BoundTabular {
    let columns = names
        .iter()
        .filter_map(|name| input.schema.column(name))
        .map(|column| (column.name.clone(), column_ref(column)))
        .collect();
    project(input, columns)
}
