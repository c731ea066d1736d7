//! Binding of `summarize`: its group keys and its aggregates, including the
//! aggregates that give several columns (`arg_max(T, *)`,
//! `percentiles(X, 50, 95)`) and Kusto's names for unnamed aggregates.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{Expr, ExprKind as Ast, Ident, NamedExpr};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

use crate::bound::{AggregateFunction, BoundAggregate, BoundExpr, BoundTabular, ExprKind, TabularKind, Value};
use crate::tabular::{column_ref, dedupe_names, NamingStyle};
use crate::{functions, Binder};

/// Output columns of one aggregate call, in order.
pub(crate) type AggregateColumns = Vec<(String, BoundAggregate)>;

impl Binder<'_> {
    pub(crate) fn bind_summarize(
        &mut self,
        input: BoundTabular,
        aggregates: &[NamedExpr],
        by: &[NamedExpr],
        span: Span,
    ) -> Option<BoundTabular> {
        let group_by = self.bind_named_list(by, &input.schema, NamingStyle::Column)?;
        let mut bound_aggregates = Vec::new();
        for named in aggregates {
            bound_aggregates.extend(self.bind_aggregate_item(named, &input, &group_by)?);
        }
        if bound_aggregates.is_empty() && group_by.is_empty() {
            self.report(Diagnostic::syntax("KQL1010", span, "summarize needs an aggregate or a by clause"));
            return None;
        }
        let mut columns: Vec<ColumnDef> = group_by.iter().map(|(name, expr)| ColumnDef::new(name, expr.ty)).collect();
        columns.extend(bound_aggregates.iter().map(|(name, aggregate)| ColumnDef::new(name, aggregate.ty)));
        let schema = TableSchema::new(dedupe_names(columns));
        Some(BoundTabular {
            kind: TabularKind::Aggregate { input: Box::new(input), group_by, aggregates: bound_aggregates },
            schema,
        })
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
        if matches!(function, AggregateFunction::MakeListIf | AggregateFunction::MakeSetIf | AggregateFunction::TakeAnyIf)
            && !matches!(bound_args[1].ty, KqlType::Bool | KqlType::Dynamic)
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
