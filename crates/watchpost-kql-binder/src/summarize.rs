//! Binding of `summarize`: its group keys and its aggregates, including the
//! aggregates that give several columns (`arg_max(T, *)`,
//! `percentiles(X, 50, 95)`) and Kusto's names for unnamed aggregates.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{Expr, ExprKind as Ast, Ident, NamedExpr};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{AggregateFunction, BoundAggregate, BoundExpr, BoundTabular, ExprKind, TabularKind, Value};
use crate::tabular::{column_ref, dedupe_names, project, NamingStyle};
use crate::{functions, Binder};

/// Output columns of one aggregate call, in order.
pub(crate) type AggregateColumns = Vec<(String, BoundAggregate)>;

/// One item of `summarize`: an aggregate call, or an expression over
/// aggregates (rewritten to read the hidden `__aggN` columns).
enum SummarizeOutput {
    Aggregate(NamedExpr),
    Computed { name: String, expr: Expr },
}

fn is_aggregate_name(name: &str) -> bool {
    functions::aggregate(name).is_some() || functions::is_special_aggregate(name)
}

fn is_aggregate_call(expr: &Expr) -> bool {
    matches!(&expr.kind, Ast::Call { name, .. } if is_aggregate_name(&name.name))
}

/// Whether an aggregate call appears anywhere in `expr`.
fn contains_aggregate(expr: &Expr) -> bool {
    let mut lifted = Vec::new();
    lift_aggregates(expr, &mut lifted);
    !lifted.is_empty()
}

/// `expr` with each aggregate call replaced by a name `__aggN`, the calls
/// appended to `hidden` under those names.
fn lift_aggregates(expr: &Expr, hidden: &mut Vec<NamedExpr>) -> Expr {
    if is_aggregate_call(expr) {
        let name = Ident { name: format!("__agg{}", hidden.len()), span: expr.span };
        hidden.push(NamedExpr { name: Some(name.clone()), tuple: Vec::new(), expr: expr.clone(), span: expr.span });
        return Expr { kind: Ast::Name(name), span: expr.span };
    }
    let mut lift = |inner: &Expr| Box::new(lift_aggregates(inner, hidden));
    let kind = match &expr.kind {
        Ast::Call { name, args } => Ast::Call { name: name.clone(), args: args.iter().map(|arg| *lift(arg)).collect() },
        Ast::Unary { op, operand } => Ast::Unary { op: *op, operand: lift(operand) },
        Ast::Binary { op, left, right } => Ast::Binary { op: *op, left: lift(left), right: lift(right) },
        Ast::Paren(inner) => Ast::Paren(lift(inner)),
        Ast::Between { expr: value, low, high, negated } => {
            Ast::Between { expr: lift(value), low: lift(low), high: lift(high), negated: *negated }
        }
        Ast::InList { op, expr: value, list } => {
            Ast::InList { op: *op, expr: lift(value), list: list.iter().map(|item| *lift(item)).collect() }
        }
        Ast::Member { expr: value, name } => Ast::Member { expr: lift(value), name: name.clone() },
        Ast::Index { expr: value, index } => Ast::Index { expr: lift(value), index: lift(index) },
        other => other.clone(),
    };
    Expr { kind, span: expr.span }
}

impl Binder<'_> {
    pub(crate) fn bind_summarize(
        &mut self,
        input: BoundTabular,
        aggregates: &[NamedExpr],
        by: &[NamedExpr],
        span: Span,
    ) -> Option<BoundTabular> {
        let group_by = self.bind_named_list(by, &input.schema, NamingStyle::Column)?;
        // `round(avg(x), 1)`: the aggregates inside become hidden columns and
        // the expression is computed over them after the aggregation.
        let mut hidden = Vec::new();
        let mut outputs = Vec::new();
        let mut n_computed = 0;
        for named in aggregates {
            if is_aggregate_call(&named.expr) || !contains_aggregate(&named.expr) {
                outputs.push(SummarizeOutput::Aggregate(named.clone()));
                continue;
            }
            let expr = lift_aggregates(&named.expr, &mut hidden);
            n_computed += 1;
            let name = named.name.as_ref().map_or_else(|| format!("Column{n_computed}"), |name| name.name.clone());
            outputs.push(SummarizeOutput::Computed { name, expr });
        }
        let mut bound_aggregates = Vec::new();
        let mut n_columns_per_output = Vec::new();
        for output in &outputs {
            let SummarizeOutput::Aggregate(named) = output else { continue };
            let columns = self.bind_aggregate_item(named, &input, &group_by)?;
            let columns = self.name_tuple(named, columns)?;
            n_columns_per_output.push(columns.len());
            bound_aggregates.extend(columns);
        }
        for named in &hidden {
            bound_aggregates.extend(self.bind_aggregate_item(named, &input, &group_by)?);
        }
        if bound_aggregates.is_empty() && group_by.is_empty() {
            self.report(Diagnostic::syntax("KQL1010", span, "summarize needs an aggregate or a by clause"));
            return None;
        }
        let n_keys = group_by.len();
        let mut columns: Vec<ColumnDef> = group_by.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect();
        columns.extend(bound_aggregates.iter().map(|(name, aggregate)| ColumnDef::new(name, aggregate.ty)));
        let schema = TableSchema::new(dedupe_names(columns));
        let aggregated = BoundTabular {
            kind: TabularKind::Aggregate { input: Box::new(input), group_by, aggregates: bound_aggregates },
            schema,
        };
        if n_computed == 0 {
            return Some(aggregated);
        }
        self.compute_after_aggregation(aggregated, n_keys, &outputs, &n_columns_per_output)
    }

    /// `(A, B) = arg_max(T, x)`: the names replace those of the first
    /// columns of the aggregate, in order.
    fn name_tuple(&mut self, named: &NamedExpr, mut columns: AggregateColumns) -> Option<AggregateColumns> {
        if named.tuple.len() > columns.len() {
            let message = format!("{} names for an aggregate with {} columns", named.tuple.len(), columns.len());
            self.report(Diagnostic::semantic("KQL2011", named.span, message));
            return None;
        }
        for (column, name) in columns.iter_mut().zip(&named.tuple) {
            column.0 = name.name.clone();
        }
        Some(columns)
    }

    /// Projects the keys and, in the written order, the aggregate columns
    /// and the expressions computed over the hidden aggregates.
    fn compute_after_aggregation(
        &mut self,
        aggregated: BoundTabular,
        n_keys: usize,
        outputs: &[SummarizeOutput],
        n_columns_per_output: &[usize],
    ) -> Option<BoundTabular> {
        let all: Vec<ColumnDef> = aggregated.schema.columns.clone();
        let mut projected: Vec<(String, BoundExpr)> =
            all[..n_keys].iter().map(|column| (column.name.clone(), column_ref(column))).collect();
        let mut next_column = n_keys;
        let mut n_columns = n_columns_per_output.iter();
        for output in outputs {
            match output {
                SummarizeOutput::Aggregate(_) => {
                    let count = n_columns.next().copied().unwrap_or(0);
                    for column in &all[next_column..next_column + count] {
                        projected.push((column.name.clone(), column_ref(column)));
                    }
                    next_column += count;
                }
                SummarizeOutput::Computed { name, expr } => {
                    let bound = self.bind_expr(expr, &aggregated.schema)?;
                    projected.push((name.clone(), bound));
                }
            }
        }
        let names = dedupe_names(projected.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect());
        let projected = names.into_iter().zip(projected).map(|(column, (_, expr))| (column.name, expr)).collect();
        Some(project(aggregated, projected))
    }

    /// Binds one aggregate call of `summarize` (or `make-series`) to its
    /// output columns.
    pub(crate) fn bind_aggregate_item(
        &mut self,
        named: &NamedExpr,
        input: &BoundTabular,
        group_by: &[(String, BoundExpr)],
    ) -> Option<AggregateColumns> {
        let Ast::Call { name, args } = &named.expr.kind else {
            self.report(
                Diagnostic::semantic("KQL2011", named.expr.span, "expected an aggregate function call")
                    .with_hint("for example count(), sum(Bytes) or dcount(UserPrincipalName)"),
            );
            return None;
        };
        match name.name.as_str() {
            "arg_max" | "argmax" => self.bind_arg_extreme(AggregateFunction::ArgMax, named, args, input, group_by),
            "arg_min" | "argmin" => self.bind_arg_extreme(AggregateFunction::ArgMin, named, args, input, group_by),
            "percentile" | "percentiles" => self.bind_percentiles(named, name, args, &input.schema),
            _ => self.bind_plain_aggregate(named, name, args, &input.schema),
        }
    }

    fn bind_plain_aggregate(
        &mut self,
        named: &NamedExpr,
        name: &Ident,
        args: &[Expr],
        input: &TableSchema,
    ) -> Option<AggregateColumns> {
        let Some(function) = functions::aggregate(&name.name) else {
            self.report(Diagnostic::semantic(
                "KQL2003",
                name.span,
                format!("Unknown aggregate function: '{}'", name.name),
            ));
            return None;
        };
        let (min, max) = functions::aggregate_arity(function);
        if args.len() < min || args.len() > max {
            self.report(Diagnostic::semantic(
                "KQL2007",
                named.expr.span,
                format!("aggregate '{}' expects {min} to {max} argument(s), got {}", name.name, args.len()),
            ));
            return None;
        }
        let bound_args = self.bind_args(args, input)?;
        let size_at = match function {
            AggregateFunction::MakeList | AggregateFunction::MakeSet => Some(1),
            AggregateFunction::MakeListIf | AggregateFunction::MakeSetIf => Some(2),
            _ => None,
        };
        if let Some(size) = size_at.and_then(|idx| bound_args.get(idx)) {
            if !matches!(size.kind, ExprKind::Literal(Value::Long(_) | Value::Int(_))) {
                let message = format!("the maximum size of '{}' must be an integer constant", name.name);
                self.report(Diagnostic::semantic("KQL2009", args[size_at.unwrap_or(1)].span, message));
                return None;
            }
        }
        if matches!(
            function,
            AggregateFunction::MakeListIf
                | AggregateFunction::MakeSetIf
                | AggregateFunction::TakeAnyIf
                | AggregateFunction::DCountIf
        ) && !matches!(bound_args[1].ty, KqlType::Bool | KqlType::Dynamic)
        {
            let message = format!("the predicate of '{}' must be a bool, got {}", name.name, bound_args[1].ty);
            self.report(Diagnostic::semantic("KQL2005", args[1].span, message));
            return None;
        }
        let ty = functions::aggregate_return_type(function, bound_args.first().map(|arg| arg.ty));
        let column_name = match &named.name {
            Some(ident) => ident.name.clone(),
            None => format!("{}_{}", functions::aggregate_prefix(function), column_suffix(args.first())),
        };
        Some(vec![(column_name, BoundAggregate { function, args: bound_args, ty })])
    }

    /// `arg_max(key, * | value, ...)` and `arg_min`: the key column, then one
    /// column per returned value; `*` returns every input column that is
    /// neither a group key nor the key itself.
    fn bind_arg_extreme(
        &mut self,
        function: AggregateFunction,
        named: &NamedExpr,
        args: &[Expr],
        input: &BoundTabular,
        group_by: &[(String, BoundExpr)],
    ) -> Option<AggregateColumns> {
        let prefix = if function == AggregateFunction::ArgMax { "max" } else { "min" };
        if args.len() < 2 {
            let message = format!("arg_{prefix}() expects the expression to optimize and at least one value to return");
            let hint = format!("for example arg_{prefix}(TimeGenerated, *) or arg_{prefix}(TimeGenerated, Account)");
            self.report(Diagnostic::semantic("KQL2007", named.expr.span, message).with_hint(hint));
            return None;
        }
        let key = self.bind_expr(&args[0], &input.schema)?;
        let key_name = match (&named.name, &args[0].kind) {
            (Some(ident), _) => ident.name.clone(),
            (None, Ast::Name(ident)) => ident.name.clone(),
            (None, _) => format!("{prefix}_"),
        };
        let aggregate = |value: BoundExpr| BoundAggregate { function, ty: value.ty, args: vec![key.clone(), value] };
        let mut columns = vec![(key_name.clone(), aggregate(key.clone()))];
        let mut unnamed = 0;
        for arg in &args[1..] {
            if arg.kind == Ast::Star {
                for column in &input.schema.columns {
                    let taken = column.name == key_name
                        || group_by.iter().any(|(name, _)| *name == column.name)
                        || columns.iter().any(|(name, _)| *name == column.name);
                    if !taken {
                        columns.push((column.name.clone(), aggregate(column_ref(column))));
                    }
                }
                continue;
            }
            let value = self.bind_expr(arg, &input.schema)?;
            let name = match &arg.kind {
                Ast::Name(ident) => ident.name.clone(),
                _ => {
                    unnamed += 1;
                    format!("Column{unnamed}")
                }
            };
            columns.push((name, aggregate(value)));
        }
        Some(columns)
    }

    /// `percentile(value, p)` and `percentiles(value, p1, p2, ...)`: one
    /// column per percentile, named `percentile_value_p`.
    fn bind_percentiles(
        &mut self,
        named: &NamedExpr,
        name: &Ident,
        args: &[Expr],
        input: &TableSchema,
    ) -> Option<AggregateColumns> {
        let single = name.name == "percentile";
        if args.len() < 2 || (single && args.len() != 2) {
            let expected = if single { "a value and one percentile" } else { "a value and at least one percentile" };
            let message = format!("{}() expects {expected}", name.name);
            self.report(Diagnostic::semantic("KQL2007", named.expr.span, message));
            return None;
        }
        if named.name.is_some() && args.len() > 2 {
            let message = "a single name cannot name several percentiles";
            let hint = "leave the percentiles unnamed, or rename them with project-rename";
            self.report(Diagnostic::semantic("KQL2011", named.expr.span, message).with_hint(hint));
            return None;
        }
        let value = self.bind_expr(&args[0], input)?;
        if !matches!(
            value.ty,
            KqlType::Int | KqlType::Long | KqlType::Real | KqlType::Decimal | KqlType::Datetime | KqlType::Timespan
        ) {
            let message = format!("{}() expects a number, a datetime or a timespan, got {}", name.name, value.ty);
            self.report(Diagnostic::semantic("KQL2004", args[0].span, message));
            return None;
        }
        let mut columns = Vec::new();
        for arg in &args[1..] {
            let Some(percent) = self.percent_constant(arg) else {
                let message = "a percentile must be a constant number from 0 to 100";
                self.report(Diagnostic::semantic("KQL2004", arg.span, message));
                return None;
            };
            let column_name = match &named.name {
                Some(ident) => ident.name.clone(),
                None => format!("percentile_{}_{}", column_suffix(args.first()), percent_text(percent)),
            };
            let percent = BoundExpr { kind: ExprKind::Literal(Value::Real(percent)), ty: KqlType::Real };
            let aggregate = BoundAggregate {
                function: AggregateFunction::Percentile,
                args: vec![value.clone(), percent],
                ty: value.ty,
            };
            columns.push((column_name, aggregate));
        }
        Some(columns)
    }

    fn percent_constant(&mut self, expr: &Expr) -> Option<f64> {
        let bound = self.bind_expr(expr, &TableSchema::default())?;
        let percent = match bound.kind {
            ExprKind::Literal(Value::Long(value)) => value as f64,
            ExprKind::Literal(Value::Int(value)) => f64::from(value),
            ExprKind::Literal(Value::Real(value)) => value,
            _ => return None,
        };
        (0.0..=100.0).contains(&percent).then_some(percent)
    }

    fn bind_args(&mut self, args: &[Expr], input: &TableSchema) -> Option<Vec<BoundExpr>> {
        let bound: Vec<_> = args.iter().map(|arg| self.bind_expr(arg, input)).collect();
        bound.into_iter().collect()
    }
}

/// The part of an unnamed aggregate's column name that comes from its first
/// argument: the column name, or nothing for other expressions.
fn column_suffix(first: Option<&Expr>) -> String {
    match first.map(|arg| &arg.kind) {
        Some(Ast::Name(ident)) => ident.name.clone(),
        _ => String::new(),
    }
}

/// `50` for 50, `99_5` for 99.5, as Kusto writes a percentile in a name.
fn percent_text(percent: f64) -> String {
    if percent.fract() == 0.0 {
        return format!("{}", percent as i64);
    }
    format!("{percent}").replace('.', "_")
}
