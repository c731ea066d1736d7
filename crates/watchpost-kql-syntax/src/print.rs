//! The pretty printer: renders a tree in canonical KQL.
//!
//! Canonical form: each `let` ends with `;` and a newline; a query's source
//! is followed by one `| operator` per line (indented inside `let`, on one
//! line inside parentheses); spacing is normalized. Parenthesized
//! expressions print as written ([`ExprKind::Paren`](crate::ast::ExprKind)),
//! and parentheses are added wherever precedence needs them, so the output
//! parses back to the same tree.

mod expr;

use crate::ast::{
    Expr, FunctionBody, FunctionDef, Ident, JoinKey, LetStmt, LetValue, Literal, MakeSeries, MvExpand, NamedExpr,
    NullsOrder, Operator, OperatorKind, ParamType, ParsePart, Query, SortKey, SortOrder, Statement, TabularExpr,
    TabularSource,
};
use expr::{expr_text, ident_text, literal_text};

/// Renders `query` as canonical KQL text.
pub fn print(query: &Query) -> String {
    let mut out = String::new();
    let n_statements = query.statements.len();
    for (statement_idx, statement) in query.statements.iter().enumerate() {
        match statement {
            Statement::Let(let_stmt) => {
                out.push_str(&let_text(let_stmt));
                out.push_str(";\n");
            }
            Statement::Tabular(tabular) => {
                out.push_str(&tabular_text(tabular, "\n"));
                if statement_idx + 1 < n_statements {
                    out.push_str(";\n");
                }
            }
        }
    }
    out
}

fn let_text(let_stmt: &LetStmt) -> String {
    let value = match &let_stmt.value {
        LetValue::Scalar(expr) => expr_text(expr),
        LetValue::Tabular(tabular) => tabular_text(tabular, "\n    "),
        LetValue::Function(function) => function_text(function),
    };
    format!("let {} = {value}", ident_text(&let_stmt.name.name))
}

/// Renders a pipeline with `separator` before each `|`.
fn tabular_text(tabular: &TabularExpr, separator: &str) -> String {
    let mut out = source_text(&tabular.source);
    for operator in &tabular.operators {
        out.push_str(separator);
        out.push_str("| ");
        out.push_str(&operator_text(operator));
    }
    out
}

fn source_text(source: &TabularSource) -> String {
    match source {
        TabularSource::Table(name) => ident_text(&name.name),
        TabularSource::Union { params, tables, .. } => union_text(params, tables),
        TabularSource::Print(items) => format!("print {}", named_list(items)),
        TabularSource::Datatable { columns, values, .. } => {
            let columns: Vec<String> = columns
                .iter()
                .map(|column| format!("{}: {}", ident_text(&column.name.name), column.type_name.name))
                .collect();
            let values: Vec<String> = values.iter().map(expr_text).collect();
            format!("datatable({}) [{}]", columns.join(", "), values.join(", "))
        }
        TabularSource::Range { column, from, to, step, .. } => format!(
            "range {} from {} to {} step {}",
            ident_text(&column.name),
            expr_text(from),
            expr_text(to),
            expr_text(step)
        ),
        TabularSource::Parenthesized(inner) => format!("({})", tabular_text(inner, " ")),
        TabularSource::FunctionCall(call) => expr_text(call),
    }
}

fn operator_text(operator: &Operator) -> String {
    match &operator.kind {
        OperatorKind::Where(predicate) => format!("where {}", expr_text(predicate)),
        OperatorKind::Project(items) => format!("project {}", named_list(items)),
        OperatorKind::ProjectAway(names) => format!("project-away {}", ident_list(names)),
        OperatorKind::ProjectRename(pairs) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(new_name, old_name)| format!("{} = {}", ident_text(&new_name.name), ident_text(&old_name.name)))
                .collect();
            format!("project-rename {}", pairs.join(", "))
        }
        OperatorKind::Extend(items) => format!("extend {}", named_list(items)),
        OperatorKind::Summarize { aggregates, by } => summarize_text(aggregates, by),
        OperatorKind::Sort(keys) => {
            let keys: Vec<String> = keys.iter().map(sort_key_text).collect();
            format!("sort by {}", keys.join(", "))
        }
        OperatorKind::Take(count) => format!("take {}", expr_text(count)),
        OperatorKind::Top { count, key } => format!("top {} by {}", expr_text(count), sort_key_text(key)),
        OperatorKind::Count => "count".to_string(),
        OperatorKind::Distinct(exprs) => {
            let exprs: Vec<String> = exprs.iter().map(expr_text).collect();
            format!("distinct {}", exprs.join(", "))
        }
        OperatorKind::ProjectKeep(names) => format!("project-keep {}", ident_list(names)),
        OperatorKind::ProjectReorder(names) => format!("project-reorder {}", ident_list(names)),
        OperatorKind::Join { is_lookup, kind, right, on } => {
            let mut out = if *is_lookup { "lookup".to_string() } else { "join".to_string() };
            if let Some(kind) = kind {
                out.push_str(&format!(" kind={}", kind.name));
            }
            let keys: Vec<String> = on
                .iter()
                .map(|key| match key {
                    JoinKey::Column(name) => ident_text(&name.name),
                    JoinKey::Pair { left, right } => {
                        format!("$left.{} == $right.{}", ident_text(&left.name), ident_text(&right.name))
                    }
                })
                .collect();
            format!("{out} ({}) on {}", tabular_text(right, " "), keys.join(", "))
        }
        OperatorKind::Union { params, tables } => union_text(params, tables),
        OperatorKind::As(name) => format!("as {}", ident_text(&name.name)),
        OperatorKind::GetSchema => "getschema".to_string(),
        OperatorKind::Serialize(columns) if columns.is_empty() => "serialize".to_string(),
        OperatorKind::Serialize(columns) => format!("serialize {}", named_list(columns)),
        OperatorKind::MvExpand(expand) => mv_expand_text("mv-expand", expand),
        OperatorKind::MvApply { expand, subquery } => {
            let operators: Vec<String> = subquery.iter().map(operator_text).collect();
            format!("{} on ({})", mv_expand_text("mv-apply", expand), operators.join(" | "))
        }
        OperatorKind::Parse { kind, flags, drops_unmatched, source, pattern } => {
            parse_text(kind.as_ref(), flags.as_ref(), *drops_unmatched, source, pattern)
        }
        OperatorKind::MakeSeries(series) => make_series_text(series),
        OperatorKind::Evaluate { plugin, args } => {
            let args: Vec<String> = args.iter().map(expr_text).collect();
            format!("evaluate {}({})", ident_text(&plugin.name), args.join(", "))
        }
        OperatorKind::TopNested(levels) => {
            let levels: Vec<String> = levels
                .iter()
                .map(|level| {
                    let mut out = "top-nested".to_string();
                    if let Some(count) = &level.count {
                        out.push_str(&format!(" {}", expr_text(count)));
                    }
                    out.push_str(&format!(" of {}", named_list(std::slice::from_ref(&level.of))));
                    if let Some(others) = &level.others {
                        out.push_str(&format!(" with others = {}", expr_text(others)));
                    }
                    out.push_str(&format!(" by {}", named_list(std::slice::from_ref(&level.by))));
                    match level.order {
                        Some(SortOrder::Ascending) => out.push_str(" asc"),
                        Some(SortOrder::Descending) => out.push_str(" desc"),
                        None => {}
                    }
                    out
                })
                .collect();
            levels.join(", ")
        }
        OperatorKind::Render { visualization, properties } => render_text(visualization, properties),
        OperatorKind::Invoke(call) => format!("invoke {}", expr_text(call)),
        OperatorKind::Search { kind, predicate } => match kind {
            Some(kind) => format!("search kind={} {}", kind.name, expr_text(predicate)),
            None => format!("search {}", expr_text(predicate)),
        },
    }
}

fn function_text(function: &FunctionDef) -> String {
    let params: Vec<String> = function
        .params
        .iter()
        .map(|param| {
            let mut text = format!("{}: {}", ident_text(&param.name.name), param_type_text(&param.param_type));
            if let Some(default) = &param.default {
                text.push_str(&format!(" = {}", expr_text(default)));
            }
            text
        })
        .collect();
    let body = match &function.body {
        FunctionBody::Scalar(expr) => expr_text(expr),
        FunctionBody::Tabular(tabular) => tabular_text(tabular, " "),
    };
    let lets: String = function.lets.iter().map(|let_stmt| format!("{}; ", let_text(let_stmt))).collect();
    format!("({}) {{ {lets}{body} }}", params.join(", "))
}

fn param_type_text(param_type: &ParamType) -> String {
    match param_type {
        ParamType::Scalar(type_name) => type_name.name.clone(),
        ParamType::Tabular { columns, any_columns } => {
            let mut parts: Vec<String> = columns
                .iter()
                .map(|column| format!("{}: {}", ident_text(&column.name.name), column.type_name.name))
                .collect();
            if *any_columns {
                parts.push("*".to_string());
            }
            format!("({})", parts.join(", "))
        }
    }
}

fn render_text(visualization: &Ident, properties: &[(Ident, Vec<Expr>)]) -> String {
    if properties.is_empty() {
        return format!("render {}", visualization.name);
    }
    let properties: Vec<String> = properties
        .iter()
        .map(|(name, values)| {
            let values: Vec<String> = values.iter().map(expr_text).collect();
            format!("{} = {}", name.name, values.join(", "))
        })
        .collect();
    format!("render {} with ({})", visualization.name, properties.join(", "))
}

fn mv_expand_text(keyword: &str, expand: &MvExpand) -> String {
    let mut out = keyword.to_string();
    for (name, value) in &expand.params {
        out.push_str(&format!(" {}={}", name.name, value.name));
    }
    let items: Vec<String> = expand
        .items
        .iter()
        .map(|item| {
            let mut text = named_list(std::slice::from_ref(&item.expr));
            if let Some(type_name) = &item.to_type {
                text.push_str(&format!(" to typeof({})", type_name.name));
            }
            text
        })
        .collect();
    out.push(' ');
    out.push_str(&items.join(", "));
    if let Some(limit) = &expand.limit {
        out.push_str(&format!(" limit {}", expr_text(limit)));
    }
    out
}

fn parse_text(
    kind: Option<&Ident>,
    flags: Option<&Ident>,
    drops_unmatched: bool,
    source: &Expr,
    pattern: &[ParsePart],
) -> String {
    let mut out = if drops_unmatched { "parse-where".to_string() } else { "parse".to_string() };
    if let Some(kind) = kind {
        out.push_str(&format!(" kind={}", kind.name));
    }
    if let Some(flags) = flags {
        out.push_str(&format!(" flags={}", flags.name));
    }
    out.push_str(&format!(" {} with", expr_text(source)));
    for part in pattern {
        out.push(' ');
        match part {
            ParsePart::Literal(text) => out.push_str(&literal_text(&Literal::String(text.clone()))),
            ParsePart::Wildcard => out.push('*'),
            ParsePart::Column { name, type_name } => {
                out.push_str(&ident_text(&name.name));
                if let Some(type_name) = type_name {
                    out.push_str(&format!(":{}", type_name.name));
                }
            }
        }
    }
    out
}

fn make_series_text(series: &MakeSeries) -> String {
    let aggregates: Vec<String> = series
        .aggregates
        .iter()
        .map(|item| {
            let mut text = named_list(std::slice::from_ref(&item.aggregate));
            if let Some(default) = &item.default {
                text.push_str(&format!(" default = {}", expr_text(default)));
            }
            text
        })
        .collect();
    let mut out = format!("make-series {} on {}", aggregates.join(", "), ident_text(&series.axis.name));
    if let Some(from) = &series.from {
        out.push_str(&format!(" from {}", expr_text(from)));
    }
    if let Some(to) = &series.to {
        out.push_str(&format!(" to {}", expr_text(to)));
    }
    out.push_str(&format!(" step {}", expr_text(&series.step)));
    if !series.by.is_empty() {
        out.push_str(&format!(" by {}", named_list(&series.by)));
    }
    out
}

fn union_text(params: &[(Ident, Ident)], tables: &[TabularExpr]) -> String {
    let mut out = "union".to_string();
    for (name, value) in params {
        out.push_str(&format!(" {}={}", name.name, value.name));
    }
    let tables: Vec<String> = tables.iter().map(|table| format!("({})", tabular_text(table, " "))).collect();
    format!("{out} {}", tables.join(", "))
}

/// Renders column names, and wildcard patterns (`*_s`) as written.
fn ident_list(names: &[Ident]) -> String {
    let names: Vec<String> = names
        .iter()
        .map(|name| {
            let is_pattern = name.name.contains('*')
                && name.name.bytes().all(|byte| byte == b'*' || byte == b'_' || byte.is_ascii_alphanumeric());
            if is_pattern {
                name.name.clone()
            } else {
                ident_text(&name.name)
            }
        })
        .collect();
    names.join(", ")
}

fn summarize_text(aggregates: &[NamedExpr], by: &[NamedExpr]) -> String {
    let mut out = "summarize".to_string();
    if !aggregates.is_empty() {
        out.push(' ');
        out.push_str(&named_list(aggregates));
    }
    if !by.is_empty() {
        out.push_str(" by ");
        out.push_str(&named_list(by));
    }
    out
}

fn sort_key_text(key: &SortKey) -> String {
    let mut out = expr_text(&key.expr);
    match key.order {
        Some(SortOrder::Ascending) => out.push_str(" asc"),
        Some(SortOrder::Descending) => out.push_str(" desc"),
        None => {}
    }
    match key.nulls {
        Some(NullsOrder::First) => out.push_str(" nulls first"),
        Some(NullsOrder::Last) => out.push_str(" nulls last"),
        None => {}
    }
    out
}

fn named_list(items: &[NamedExpr]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|item| match &item.name {
            Some(name) => format!("{} = {}", ident_text(&name.name), expr_text(&item.expr)),
            None if !item.tuple.is_empty() => {
                let names: Vec<String> = item.tuple.iter().map(|name| ident_text(&name.name)).collect();
                format!("({}) = {}", names.join(", "), expr_text(&item.expr))
            }
            None => expr_text(&item.expr),
        })
        .collect();
    items.join(", ")
}
