//! Binding of tabular sources and pipe operators, including the column
//! naming rules Kusto applies (`count_`, `sum_X`, `Column1`, extend moving a
//! redefined column to the end).

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{
    Expr, ExprKind as Ast, NamedExpr, NullsOrder, Operator, OperatorKind, SortKey, SortOrder, TabularExpr,
    TabularSource,
};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{BoundAggregate, BoundExpr, BoundSortKey, BoundTabular, ExprKind, TabularKind, Value};
use crate::expr::literal_value;
use crate::parse_op::ParseOptions;
use crate::{closest, Binder};

impl Binder<'_> {
    pub(crate) fn bind_tabular(&mut self, tabular: &TabularExpr) -> Option<BoundTabular> {
        let mut current = self.bind_source(&tabular.source)?;
        // The `withsource` label of the value so far: its table or `as` name.
        let mut label = match &tabular.source {
            TabularSource::Table(name) => Some(name.name.clone()),
            _ => None,
        };
        let n_operators = tabular.operators.len();
        for (idx, operator) in tabular.operators.iter().enumerate() {
            if matches!(operator.kind, OperatorKind::Render { .. }) && idx + 1 < n_operators {
                let message = "`render` must be the last operator of the query";
                self.report(Diagnostic::semantic("KQL2011", operator.span, message));
                return None;
            }
            current = match &operator.kind {
                OperatorKind::As(name) => {
                    self.tabulars.insert(name.name.clone(), current.clone());
                    label = Some(name.name.clone());
                    current
                }
                OperatorKind::Union { params, tables } => {
                    let first = (label.take(), current);
                    self.bind_union(Some(first), params, tables, operator.span)?
                }
                _ => {
                    label = None;
                    self.bind_operator(current, operator)?
                }
            };
        }
        Some(current)
    }

    fn bind_source(&mut self, source: &TabularSource) -> Option<BoundTabular> {
        match source {
            TabularSource::Table(ident) => {
                if let Some(bound) = self.tabulars.get(&ident.name) {
                    return Some(bound.clone());
                }
                if let Some(schema) = self.catalog.table(&ident.name) {
                    return Some(BoundTabular { kind: TabularKind::Table { name: ident.name.clone() }, schema });
                }
                if self.has_function(&ident.name) {
                    // A function without arguments is used like a table: `Parser | count`.
                    let call = Expr { kind: Ast::Call { name: ident.clone(), args: Vec::new() }, span: ident.span };
                    return self.bind_function_source(&call);
                }
                let mut diagnostic = Diagnostic::semantic(
                    "KQL2001",
                    ident.span,
                    format!("Failed to resolve table or column expression named '{}'", ident.name),
                );
                let names = self.catalog.table_names();
                if let Some(similar) = closest(&ident.name, names.iter().map(String::as_str)) {
                    diagnostic = diagnostic.with_hint(format!("did you mean '{similar}'?"));
                }
                self.report(diagnostic);
                None
            }
            TabularSource::Parenthesized(inner) => self.bind_tabular(inner),
            TabularSource::FunctionCall(call) => self.bind_function_source(call),
            TabularSource::Union { params, tables, span } => self.bind_union(None, params, tables, *span),
            TabularSource::Print(columns) => {
                let unit = BoundTabular {
                    kind: TabularKind::Values { rows: vec![Vec::new()] },
                    schema: TableSchema::default(),
                };
                let bound = self.bind_named_list(columns, &unit.schema, NamingStyle::Print)?;
                let schema = schema_of(&bound);
                Some(BoundTabular { kind: TabularKind::Project { input: Box::new(unit), columns: bound }, schema })
            }
            TabularSource::Datatable { columns, values, span } => self.bind_datatable(columns, values, *span),
            TabularSource::Range { column, from, to, step, span } => self.bind_range(column, from, to, step, *span),
        }
    }

    fn bind_range(
        &mut self,
        column: &watchpost_kql_syntax::ast::Ident,
        from: &Expr,
        to: &Expr,
        step: &Expr,
        span: Span,
    ) -> Option<BoundTabular> {
        let empty = TableSchema::default();
        let from = self.bind_expr(from, &empty);
        let to = self.bind_expr(to, &empty);
        let step = self.bind_expr(step, &empty);
        let (from, to, step) = (from?, to?, step?);
        let numeric = |ty: KqlType| matches!(ty, KqlType::Int | KqlType::Long | KqlType::Real | KqlType::Decimal);
        let ty = match (from.ty, to.ty, step.ty) {
            (KqlType::Datetime, KqlType::Datetime, KqlType::Timespan) => KqlType::Datetime,
            (KqlType::Timespan, KqlType::Timespan, KqlType::Timespan) => KqlType::Timespan,
            (a, b, c) if numeric(a) && numeric(b) && numeric(c) => {
                if [a, b, c].iter().any(|ty| matches!(ty, KqlType::Real | KqlType::Decimal)) {
                    KqlType::Real
                } else {
                    KqlType::Long
                }
            }
            (a, b, c) => {
                let message = format!(
                    "range needs numbers, datetimes with a timespan step, or timespans; found {} to {} step {}",
                    a.name(),
                    b.name(),
                    c.name()
                );
                self.report(Diagnostic::semantic("KQL2011", span, message));
                return None;
            }
        };
        let schema = TableSchema::new(vec![ColumnDef::new(&column.name, ty)]);
        Some(BoundTabular { kind: TabularKind::Range { from, to, step }, schema })
    }

    fn bind_datatable(
        &mut self,
        columns: &[watchpost_kql_syntax::ast::ColumnDecl],
        values: &[Expr],
        span: Span,
    ) -> Option<BoundTabular> {
        let mut schema = TableSchema::default();
        for column in columns {
            let Some(ty) = KqlType::from_name(&column.type_name.name) else {
                self.report(Diagnostic::semantic(
                    "KQL2008",
                    column.type_name.span,
                    format!("unknown type '{}'", column.type_name.name),
                ));
                return None;
            };
            schema.columns.push(ColumnDef::new(&column.name.name, ty));
        }
        if schema.columns.is_empty() || !values.len().is_multiple_of(schema.columns.len()) {
            self.report(Diagnostic::semantic(
                "KQL2009",
                span,
                format!(
                    "datatable has {} values, not a multiple of its {} columns",
                    values.len(),
                    schema.columns.len()
                ),
            ));
            return None;
        }
        let mut rows = Vec::new();
        for chunk in values.chunks(schema.columns.len()) {
            let mut row = Vec::new();
            for (value, column) in chunk.iter().zip(&schema.columns) {
                row.push(self.constant_value(value, column.kql_type)?);
            }
            rows.push(row);
        }
        Some(BoundTabular { kind: TabularKind::Values { rows }, schema })
    }

    /// Evaluates a datatable cell: a literal, possibly negated.
    fn constant_value(&mut self, expr: &Expr, ty: KqlType) -> Option<Value> {
        let (value, _) = match &expr.kind {
            Ast::Literal(literal) => literal_value(literal),
            Ast::Unary { op: watchpost_kql_syntax::ast::UnaryOp::Neg, operand } => match &operand.kind {
                Ast::Literal(literal) => match literal_value(literal) {
                    (Value::Long(v), t) => (Value::Long(-v), t),
                    (Value::Int(v), t) => (Value::Int(-v), t),
                    (Value::Real(v), t) => (Value::Real(-v), t),
                    (Value::Timespan(v), t) => (Value::Timespan(-v), t),
                    other => other,
                },
                _ => return self.not_constant(expr),
            },
            _ => return self.not_constant(expr),
        };
        Some(coerce_value(value, ty))
    }

    fn not_constant(&mut self, expr: &Expr) -> Option<Value> {
        self.report(Diagnostic::semantic("KQL2009", expr.span, "datatable values must be literals"));
        None
    }

    pub(crate) fn bind_operator(&mut self, input: BoundTabular, operator: &Operator) -> Option<BoundTabular> {
        match &operator.kind {
            OperatorKind::Where(predicate) => {
                let predicate = self.bind_expr(predicate, &input.schema)?;
                if predicate.ty != KqlType::Bool && predicate.ty != KqlType::Dynamic {
                    self.report(Diagnostic::semantic(
                        "KQL2005",
                        operator.span,
                        format!("where expects a bool predicate, got {}", predicate.ty),
                    ));
                    return None;
                }
                let schema = input.schema.clone();
                Some(BoundTabular { kind: TabularKind::Filter { input: Box::new(input), predicate }, schema })
            }
            OperatorKind::Project(columns) => self.bind_project(input, columns, operator.span),
            OperatorKind::Extend(columns) => self.bind_extend(input, columns, operator.span),
            OperatorKind::Serialize(columns) => self.bind_serialize(input, columns, operator.span),
            OperatorKind::MvExpand(expand) => self.bind_mv_expand(input, expand, operator.span),
            OperatorKind::MvApply { expand, subquery } => self.bind_mv_apply(input, expand, subquery, operator.span),
            OperatorKind::Parse { kind, flags, drops_unmatched, source, pattern } => {
                let options =
                    ParseOptions { kind: kind.as_ref(), flags: flags.as_ref(), drops_unmatched: *drops_unmatched };
                self.bind_parse(input, options, source, pattern, operator.span)
            }
            OperatorKind::Search { kind, predicate } => self.bind_search(input, kind.as_ref(), predicate),
            OperatorKind::MakeSeries(series) => self.bind_make_series(input, series, operator.span),
            OperatorKind::TopNested(levels) => self.bind_top_nested(input, levels),
            OperatorKind::Evaluate { plugin, args } => self.bind_evaluate(input, plugin, args, operator.span),
            // `render` only tells the client how to chart the rows; the engine
            // reports it next to the result (see `watchpost_engine::Render`).
            OperatorKind::Render { .. } => Some(input),
            OperatorKind::Invoke(call) => self.bind_invoke(input, call),
            OperatorKind::ProjectAway(names) => self.select_columns(input, names, false),
            OperatorKind::ProjectRename(pairs) => {
                for (_, old) in pairs {
                    self.require_column(&input.schema, &old.name, old.span)?;
                }
                let renamed = input
                    .schema
                    .columns
                    .iter()
                    .map(|column| {
                        let new_name = pairs.iter().find(|(_, old)| old.name == column.name).map(|(new, _)| &new.name);
                        (new_name.unwrap_or(&column.name).clone(), column_ref(column))
                    })
                    .collect();
                Some(project(input, renamed))
            }
            OperatorKind::Summarize { aggregates, by } => self.bind_summarize(input, aggregates, by, operator.span),
            OperatorKind::Sort(keys) => {
                let keys = self.bind_sort_keys(keys, &input.schema)?;
                let schema = input.schema.clone();
                Some(BoundTabular { kind: TabularKind::Sort { input: Box::new(input), keys }, schema })
            }
            OperatorKind::Take(count) => {
                let count = self.constant_count(count)?;
                let schema = input.schema.clone();
                Some(BoundTabular { kind: TabularKind::Limit { input: Box::new(input), count }, schema })
            }
            OperatorKind::Top { count, key } => {
                let count = self.constant_count(count)?;
                let keys = self.bind_sort_keys(std::slice::from_ref(key), &input.schema)?;
                let schema = input.schema.clone();
                let sorted =
                    BoundTabular { kind: TabularKind::Sort { input: Box::new(input), keys }, schema: schema.clone() };
                Some(BoundTabular { kind: TabularKind::Limit { input: Box::new(sorted), count }, schema })
            }
            OperatorKind::Count => {
                let aggregate = BoundAggregate {
                    function: crate::bound::AggregateFunction::Count,
                    args: Vec::new(),
                    ty: KqlType::Long,
                };
                let schema = TableSchema::new(vec![ColumnDef::new("Count", KqlType::Long)]);
                Some(BoundTabular {
                    kind: TabularKind::Aggregate {
                        input: Box::new(input),
                        group_by: Vec::new(),
                        aggregates: vec![("Count".to_string(), aggregate)],
                    },
                    schema,
                })
            }
            OperatorKind::ProjectKeep(names) => self.select_columns(input, names, true),
            OperatorKind::ProjectReorder(names) => {
                for name in names.iter().filter(|name| !name.name.contains('*')) {
                    self.require_column(&input.schema, &name.name, name.span)?;
                }
                let mut ordered: Vec<(String, BoundExpr)> = Vec::new();
                for name in names {
                    for column in input.schema.columns.iter().filter(|column| matches_pattern(&name.name, &column.name))
                    {
                        if !ordered.iter().any(|(seen, _)| *seen == column.name) {
                            ordered.push((column.name.clone(), column_ref(column)));
                        }
                    }
                }
                for column in &input.schema.columns {
                    if !ordered.iter().any(|(name, _)| *name == column.name) {
                        ordered.push((column.name.clone(), column_ref(column)));
                    }
                }
                Some(project(input, ordered))
            }
            OperatorKind::Join { is_lookup, kind, right, on } => {
                self.bind_join(input, *is_lookup, kind.as_ref(), right, on, operator.span)
            }
            // `bind_tabular` handles these with the pipeline's labels; this is
            // the same binding without a label.
            OperatorKind::Union { params, tables } => {
                self.bind_union(Some((None, input)), params, tables, operator.span)
            }
            OperatorKind::As(name) => {
                self.tabulars.insert(name.name.clone(), input.clone());
                Some(input)
            }
            OperatorKind::GetSchema => {
                let rows = input
                    .schema
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(ordinal, column)| {
                        vec![
                            Value::String(column.name.clone()),
                            Value::Long(ordinal as i64),
                            Value::String(column.kql_type.dotnet_name().to_string()),
                            Value::String(column.kql_type.name().to_string()),
                        ]
                    })
                    .collect();
                let schema = TableSchema::new(vec![
                    ColumnDef::new("ColumnName", KqlType::String),
                    ColumnDef::new("ColumnOrdinal", KqlType::Long),
                    ColumnDef::new("DataType", KqlType::String),
                    ColumnDef::new("ColumnType", KqlType::String),
                ]);
                Some(BoundTabular { kind: TabularKind::Values { rows }, schema })
            }
            OperatorKind::Distinct(exprs) => {
                let named: Vec<NamedExpr> = exprs
                    .iter()
                    .map(|expr| NamedExpr { name: None, tuple: Vec::new(), expr: expr.clone(), span: expr.span })
                    .collect();
                let bound = self.bind_named_list(&named, &input.schema, NamingStyle::Column)?;
                let projected = project(input, bound);
                let schema = projected.schema.clone();
                Some(BoundTabular { kind: TabularKind::Distinct { input: Box::new(projected) }, schema })
            }
        }
    }

    pub(crate) fn bind_named_list(
        &mut self,
        items: &[NamedExpr],
        input: &TableSchema,
        style: NamingStyle,
    ) -> Option<Vec<(String, BoundExpr)>> {
        let mut out = Vec::new();
        let mut failed = false;
        let mut unnamed = 0;
        for (position, item) in items.iter().enumerate() {
            if !item.tuple.is_empty() {
                let message = "only `extend` and `summarize` assign several columns at once, as in `(A, B) = ...`";
                self.report(Diagnostic::semantic("KQL2011", item.span, message));
                failed = true;
                continue;
            }
            let Some(bound) = self.bind_expr(&item.expr, input) else {
                failed = true;
                continue;
            };
            let name = match (&item.name, &item.expr.kind) {
                (Some(ident), _) => ident.name.clone(),
                (None, Ast::Name(ident)) => ident.name.clone(),
                (None, Ast::Call { name, args }) if matches!(name.name.as_str(), "bin" | "floor") => {
                    match args.first().map(|arg| &arg.kind) {
                        Some(Ast::Name(ident)) => ident.name.clone(),
                        _ => generated_name(style, position, &mut unnamed),
                    }
                }
                _ => generated_name(style, position, &mut unnamed),
            };
            out.retain(|(existing, _)| *existing != name);
            out.push((name, bound));
        }
        (!failed).then_some(out)
    }

    pub(crate) fn bind_sort_keys(&mut self, keys: &[SortKey], input: &TableSchema) -> Option<Vec<BoundSortKey>> {
        let mut out = Vec::new();
        for key in keys {
            let expr = self.bind_expr(&key.expr, input)?;
            let descending = key.order != Some(SortOrder::Ascending);
            let nulls_first = match key.nulls {
                Some(NullsOrder::First) => true,
                Some(NullsOrder::Last) => false,
                None => !descending,
            };
            out.push(BoundSortKey { expr, descending, nulls_first });
        }
        Some(out)
    }

    pub(crate) fn constant_count(&mut self, expr: &Expr) -> Option<u64> {
        let value = match &expr.kind {
            Ast::Literal(literal) => literal_value(literal).0,
            Ast::Name(ident) => match self.param(&ident.name).or_else(|| self.scalars.get(&ident.name).cloned()) {
                Some(BoundExpr { kind: ExprKind::Literal(value), .. }) => value,
                _ => Value::Null,
            },
            _ => Value::Null,
        };
        match value {
            Value::Long(n) if n >= 0 => Some(n as u64),
            Value::Int(n) if n >= 0 => Some(n as u64),
            _ => {
                self.report(Diagnostic::semantic("KQL2012", expr.span, "expected a non-negative integer constant"));
                None
            }
        }
    }

    /// `project-keep` (`keep`) or `project-away` (not `keep`) of `names`,
    /// keeping the input's column order.
    fn select_columns(
        &mut self,
        input: BoundTabular,
        names: &[watchpost_kql_syntax::ast::Ident],
        keep: bool,
    ) -> Option<BoundTabular> {
        for name in names.iter().filter(|name| !name.name.contains('*')) {
            self.require_column(&input.schema, &name.name, name.span)?;
        }
        let selected = input
            .schema
            .columns
            .iter()
            .filter(|column| names.iter().any(|name| matches_pattern(&name.name, &column.name)) == keep)
            .map(|column| (column.name.clone(), column_ref(column)))
            .collect();
        Some(project(input, selected))
    }

    pub(crate) fn require_column(&mut self, schema: &TableSchema, name: &str, span: Span) -> Option<()> {
        if schema.column(name).is_some() {
            return Some(());
        }
        let mut diagnostic = Diagnostic::semantic("KQL2002", span, format!("Failed to resolve column named '{name}'"));
        if let Some(similar) = closest(name, schema.columns.iter().map(|column| column.name.as_str())) {
            diagnostic = diagnostic.with_hint(format!("did you mean '{similar}'?"));
        }
        self.report(diagnostic);
        None
    }
}

/// Whether the column `name` matches `pattern`, a name in which each `*`
/// stands for any text (`*_s`, `DeviceCustom*`).
pub(crate) fn matches_pattern(pattern: &str, name: &str) -> bool {
    let Some((prefix, rest)) = pattern.split_once('*') else { return pattern == name };
    let Some(mut remaining) = name.strip_prefix(prefix) else { return false };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let suffix = parts.pop().unwrap_or_default();
    for part in parts {
        match remaining.find(part) {
            Some(found) => remaining = &remaining[found + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= suffix.len() && remaining.ends_with(suffix)
}

#[derive(Clone, Copy)]
pub(crate) enum NamingStyle {
    /// `Column1`, `Column2`... as `extend` and `project` name expressions.
    Column,
    /// `print_0`, `print_1`... as `print` names its columns.
    Print,
}

fn generated_name(style: NamingStyle, position: usize, unnamed: &mut usize) -> String {
    *unnamed += 1;
    match style {
        NamingStyle::Column => format!("Column{unnamed}"),
        NamingStyle::Print => format!("print_{position}"),
    }
}

pub(crate) fn column_ref(column: &ColumnDef) -> BoundExpr {
    BoundExpr { kind: ExprKind::Column(column.name.clone()), ty: column.kql_type }
}

pub(crate) fn schema_of(columns: &[(String, BoundExpr)]) -> TableSchema {
    TableSchema::new(columns.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect())
}

pub(crate) fn project(input: BoundTabular, columns: Vec<(String, BoundExpr)>) -> BoundTabular {
    let schema = schema_of(&columns);
    BoundTabular { kind: TabularKind::Project { input: Box::new(input), columns }, schema }
}

/// Kusto suffixes a repeated output name with `1`, `2`...
pub(crate) fn dedupe_names(columns: Vec<ColumnDef>) -> Vec<ColumnDef> {
    let mut out: Vec<ColumnDef> = Vec::new();
    for mut column in columns {
        let base = column.name.clone();
        let mut n = 1;
        while out.iter().any(|existing| existing.name == column.name) {
            column.name = format!("{base}{n}");
            n += 1;
        }
        out.push(column);
    }
    out
}

/// Converts a literal to a column's declared type where KQL would.
fn coerce_value(value: Value, ty: KqlType) -> Value {
    match (value, ty) {
        (Value::Long(v), KqlType::Int) => Value::Int(v as i32),
        (Value::Long(v), KqlType::Real) => Value::Real(v as f64),
        (Value::Int(v), KqlType::Long) => Value::Long(i64::from(v)),
        (Value::Int(v), KqlType::Real) => Value::Real(f64::from(v)),
        (Value::String(text), KqlType::Guid) => Value::Guid(text),
        (Value::String(text), KqlType::Dynamic) => Value::Dynamic(text),
        (value, _) => value,
    }
}
