//! A readable, one-node-per-line rendering of a tree for golden tests and
//! debugging: each line is a node kind, its details and its span, indented
//! under its parent.

use watchpost_diagnostics::Span;

use crate::ast::{
    Expr, ExprKind, FunctionBody, FunctionDef, Ident, JoinKey, LetStmt, LetValue, MvExpand, NamedExpr, Operator,
    OperatorKind, ParamType, ParsePart, Query, SortKey, Statement, TabularExpr, TabularSource,
};

/// Renders `query` one node per line, with spans.
pub fn dump(query: &Query) -> String {
    let mut dumper = Dumper { out: String::new(), depth: 0, with_spans: true };
    dumper.query(query);
    dumper.out
}

/// Renders `query` like [`dump`] but without spans, so two trees can be
/// compared structurally.
pub fn dump_without_spans(query: &Query) -> String {
    let mut dumper = Dumper { out: String::new(), depth: 0, with_spans: false };
    dumper.query(query);
    dumper.out
}

struct Dumper {
    out: String,
    depth: usize,
    with_spans: bool,
}

impl Dumper {
    /// Writes one line, then runs `children` one level deeper.
    fn node(&mut self, label: String, span: Option<Span>, children: impl FnOnce(&mut Self)) {
        self.out.push_str(&"  ".repeat(self.depth));
        self.out.push_str(&label);
        if let (Some(span), true) = (span, self.with_spans) {
            self.out.push_str(&format!(" {span}"));
        }
        self.out.push('\n');
        self.depth += 1;
        children(self);
        self.depth -= 1;
    }

    fn leaf(&mut self, label: String, span: Option<Span>) {
        self.node(label, span, |_| {});
    }

    fn ident(&self, ident: &Ident) -> String {
        match self.with_spans {
            true => format!("{:?}@{}", ident.name, ident.span),
            false => format!("{:?}", ident.name),
        }
    }

    fn query(&mut self, query: &Query) {
        self.node("Query".to_string(), Some(query.span), |dumper| {
            for statement in &query.statements {
                match statement {
                    Statement::Let(let_stmt) => dumper.let_stmt(let_stmt),
                    Statement::Tabular(tabular) => dumper.tabular(tabular),
                }
            }
        });
    }

    fn let_stmt(&mut self, let_stmt: &LetStmt) {
        let label = format!("Let {}", self.ident(&let_stmt.name));
        self.node(label, Some(let_stmt.span), |dumper| match &let_stmt.value {
            LetValue::Scalar(expr) => dumper.expr(expr),
            LetValue::Tabular(tabular) => dumper.tabular(tabular),
            LetValue::Function(function) => dumper.function(function),
        });
    }

    fn function(&mut self, function: &FunctionDef) {
        self.node("Function".to_string(), None, |dumper| {
            for param in &function.params {
                let label = format!("Param {}: {}", dumper.ident(&param.name), dumper.param_type(&param.param_type));
                dumper.node(label, None, |dumper| param.default.iter().for_each(|default| dumper.expr(default)));
            }
            for let_stmt in &function.lets {
                dumper.let_stmt(let_stmt);
            }
            match &function.body {
                FunctionBody::Scalar(expr) => dumper.expr(expr),
                FunctionBody::Tabular(tabular) => dumper.tabular(tabular),
            }
        });
    }

    fn param_type(&self, param_type: &ParamType) -> String {
        match param_type {
            ParamType::Scalar(type_name) => self.ident(type_name),
            ParamType::Tabular { columns, any_columns } => {
                let mut parts: Vec<String> = columns
                    .iter()
                    .map(|column| format!("{}: {}", self.ident(&column.name), self.ident(&column.type_name)))
                    .collect();
                if *any_columns {
                    parts.push("*".to_string());
                }
                format!("({})", parts.join(", "))
            }
        }
    }

    fn tabular(&mut self, tabular: &TabularExpr) {
        self.node("Tabular".to_string(), Some(tabular.span), |dumper| {
            dumper.source(&tabular.source);
            for operator in &tabular.operators {
                dumper.operator(operator);
            }
        });
    }

    fn source(&mut self, source: &TabularSource) {
        match source {
            TabularSource::Table(name) => self.leaf(format!("Table {}", self.ident(name)), None),
            TabularSource::Print(items) => self.node("Print".to_string(), None, |dumper| dumper.named_list(items)),
            TabularSource::Datatable { columns, values, span } => {
                self.node("Datatable".to_string(), Some(*span), |dumper| {
                    for column in columns {
                        let label =
                            format!("Column {}: {}", dumper.ident(&column.name), dumper.ident(&column.type_name));
                        dumper.leaf(label, None);
                    }
                    values.iter().for_each(|value| dumper.expr(value));
                })
            }
            TabularSource::Range { column, from, to, step, span } => {
                let label = format!("Range {}", self.ident(column));
                self.node(label, Some(*span), |dumper| [from, to, step].into_iter().for_each(|expr| dumper.expr(expr)));
            }
            TabularSource::Union { params, tables, span } => {
                let params: Vec<String> =
                    params.iter().map(|(name, value)| format!("{}={}", name.name, value.name)).collect();
                self.node(format!("Union {}", params.join(" ")), Some(*span), |dumper| {
                    tables.iter().for_each(|table| dumper.tabular(table))
                })
            }
            TabularSource::FunctionCall(call) => {
                self.node("FunctionCall".to_string(), None, |dumper| dumper.expr(call))
            }
            TabularSource::Parenthesized(inner) => {
                self.node("Parenthesized".to_string(), None, |dumper| dumper.tabular(inner))
            }
        }
    }

    fn operator(&mut self, operator: &Operator) {
        let span = Some(operator.span);
        match &operator.kind {
            OperatorKind::Where(predicate) => self.node("Where".to_string(), span, |dumper| dumper.expr(predicate)),
            OperatorKind::Project(items) => self.node("Project".to_string(), span, |dumper| dumper.named_list(items)),
            OperatorKind::ProjectAway(names) => self.node("ProjectAway".to_string(), span, |dumper| {
                names.iter().for_each(|name| dumper.leaf(format!("Column {}", dumper.ident(name)), None));
            }),
            OperatorKind::ProjectRename(pairs) => self.node("ProjectRename".to_string(), span, |dumper| {
                for (new_name, old_name) in pairs {
                    dumper.leaf(format!("Rename {} = {}", dumper.ident(new_name), dumper.ident(old_name)), None);
                }
            }),
            OperatorKind::Extend(items) => self.node("Extend".to_string(), span, |dumper| dumper.named_list(items)),
            OperatorKind::Summarize { aggregates, by } => self.node("Summarize".to_string(), span, |dumper| {
                dumper.node("Aggregates".to_string(), None, |dumper| dumper.named_list(aggregates));
                dumper.node("By".to_string(), None, |dumper| dumper.named_list(by));
            }),
            OperatorKind::Sort(keys) => {
                self.node("Sort".to_string(), span, |dumper| keys.iter().for_each(|key| dumper.sort_key(key)))
            }
            OperatorKind::Take(count) => self.node("Take".to_string(), span, |dumper| dumper.expr(count)),
            OperatorKind::Top { count, key } => self.node("Top".to_string(), span, |dumper| {
                dumper.expr(count);
                dumper.sort_key(key);
            }),
            OperatorKind::Count => self.leaf("Count".to_string(), span),
            OperatorKind::Distinct(exprs) => {
                self.node("Distinct".to_string(), span, |dumper| exprs.iter().for_each(|expr| dumper.expr(expr)))
            }
            OperatorKind::ProjectKeep(names) | OperatorKind::ProjectReorder(names) => {
                let label = if matches!(operator.kind, OperatorKind::ProjectKeep(_)) {
                    "ProjectKeep"
                } else {
                    "ProjectReorder"
                };
                self.node(label.to_string(), span, |dumper| {
                    names.iter().for_each(|name| dumper.leaf(format!("Column {}", dumper.ident(name)), None));
                })
            }
            OperatorKind::Join { is_lookup, kind, right, on } => {
                let kind = kind.as_ref().map(|kind| kind.name.as_str()).unwrap_or("default");
                let label = format!("{} kind={kind}", if *is_lookup { "Lookup" } else { "Join" });
                self.node(label, span, |dumper| {
                    dumper.tabular(right);
                    for key in on {
                        let text = match key {
                            JoinKey::Column(name) => format!("On {}", dumper.ident(name)),
                            JoinKey::Pair { left, right } => {
                                format!("On $left.{} == $right.{}", dumper.ident(left), dumper.ident(right))
                            }
                        };
                        dumper.leaf(text, None);
                    }
                })
            }
            OperatorKind::As(name) => self.leaf(format!("As {}", self.ident(name)), span),
            OperatorKind::GetSchema => self.leaf("GetSchema".to_string(), span),
            OperatorKind::Union { params, tables } => {
                let params: Vec<String> =
                    params.iter().map(|(name, value)| format!("{}={}", name.name, value.name)).collect();
                self.node(format!("Union {}", params.join(" ")), span, |dumper| {
                    tables.iter().for_each(|table| dumper.tabular(table))
                })
            }
            OperatorKind::Serialize(columns) => {
                self.node("Serialize".to_string(), span, |dumper| dumper.named_list(columns))
            }
            OperatorKind::MvExpand(expand) => self.node("MvExpand".to_string(), span, |dumper| dumper.expand(expand)),
            OperatorKind::MvApply { expand, subquery } => self.node("MvApply".to_string(), span, |dumper| {
                dumper.expand(expand);
                dumper.node("On".to_string(), None, |dumper| subquery.iter().for_each(|op| dumper.operator(op)));
            }),
            OperatorKind::Parse { kind, flags, drops_unmatched, source, pattern } => {
                let keyword = if *drops_unmatched { "ParseWhere" } else { "Parse" };
                let kind = kind.as_ref().map(|kind| kind.name.as_str()).unwrap_or("default");
                let flags = flags.as_ref().map(|flags| format!(" flags={}", flags.name)).unwrap_or_default();
                self.node(format!("{keyword} kind={kind}{flags}"), span, |dumper| {
                    dumper.expr(source);
                    for part in pattern {
                        let label = match part {
                            ParsePart::Literal(text) => format!("Literal {text:?}"),
                            ParsePart::Wildcard => "Wildcard".to_string(),
                            ParsePart::Column { name, type_name: Some(type_name) } => {
                                format!("Column {}: {}", dumper.ident(name), dumper.ident(type_name))
                            }
                            ParsePart::Column { name, type_name: None } => format!("Column {}", dumper.ident(name)),
                        };
                        dumper.leaf(label, None);
                    }
                })
            }
            OperatorKind::MakeSeries(series) => self.node("MakeSeries".to_string(), span, |dumper| {
                for item in &series.aggregates {
                    dumper.named_list(std::slice::from_ref(&item.aggregate));
                    if let Some(default) = &item.default {
                        dumper.node("Default".to_string(), None, |dumper| dumper.expr(default));
                    }
                }
                dumper.leaf(format!("On {}", dumper.ident(&series.axis)), None);
                for (label, bound) in [("From", &series.from), ("To", &series.to)] {
                    if let Some(bound) = bound {
                        dumper.node(label.to_string(), None, |dumper| dumper.expr(bound));
                    }
                }
                dumper.node("Step".to_string(), None, |dumper| dumper.expr(&series.step));
                dumper.node("By".to_string(), None, |dumper| dumper.named_list(&series.by));
            }),
            OperatorKind::TopNested(levels) => self.node("TopNested".to_string(), span, |dumper| {
                for level in levels {
                    dumper.node(format!("Level order={:?}", level.order), None, |dumper| {
                        if let Some(count) = &level.count {
                            dumper.node("Count".to_string(), None, |dumper| dumper.expr(count));
                        }
                        dumper.named_list(std::slice::from_ref(&level.of));
                        if let Some(others) = &level.others {
                            dumper.node("Others".to_string(), None, |dumper| dumper.expr(others));
                        }
                        dumper.named_list(std::slice::from_ref(&level.by));
                    });
                }
            }),
            OperatorKind::Evaluate { plugin, args } => {
                self.node(format!("Evaluate {}", self.ident(plugin)), span, |dumper| {
                    args.iter().for_each(|arg| dumper.expr(arg))
                })
            }
            OperatorKind::Invoke(call) => self.with_operands("Invoke".to_string(), span, &[call]),
            OperatorKind::Render { visualization, properties } => {
                self.node(format!("Render {}", self.ident(visualization)), span, |dumper| {
                    for (name, values) in properties {
                        let values: Vec<&Expr> = values.iter().collect();
                        dumper.with_operands(format!("Property {}", dumper.ident(name)), None, &values);
                    }
                })
            }
            OperatorKind::Search { kind, predicate } => {
                let kind = kind.as_ref().map(|kind| kind.name.as_str()).unwrap_or("default");
                self.node(format!("Search kind={kind}"), span, |dumper| dumper.expr(predicate))
            }
        }
    }

    fn expand(&mut self, expand: &MvExpand) {
        for (name, value) in &expand.params {
            self.leaf(format!("Param {}={}", name.name, value.name), None);
        }
        for item in &expand.items {
            let label = match &item.to_type {
                Some(type_name) => format!("Item to {}", self.ident(type_name)),
                None => "Item".to_string(),
            };
            self.node(label, None, |dumper| dumper.named_list(std::slice::from_ref(&item.expr)));
        }
        if let Some(limit) = &expand.limit {
            self.node("Limit".to_string(), None, |dumper| dumper.expr(limit));
        }
    }

    fn sort_key(&mut self, key: &SortKey) {
        let label = format!("SortKey order={:?} nulls={:?}", key.order, key.nulls);
        self.node(label, None, |dumper| dumper.expr(&key.expr));
    }

    fn named_list(&mut self, items: &[NamedExpr]) {
        for item in items {
            let label = match &item.name {
                Some(name) => format!("Named {}", self.ident(name)),
                None if !item.tuple.is_empty() => {
                    let names: Vec<String> = item.tuple.iter().map(|name| self.ident(name)).collect();
                    format!("Tuple {}", names.join(", "))
                }
                None => "Unnamed".to_string(),
            };
            self.node(label, Some(item.span), |dumper| dumper.expr(&item.expr));
        }
    }

    fn expr(&mut self, expr: &Expr) {
        let span = Some(expr.span);
        match &expr.kind {
            ExprKind::Literal(literal) => self.leaf(format!("Literal {literal:?}"), span),
            ExprKind::Name(name) => self.leaf(format!("Name {:?}", name.name), span),
            ExprKind::Call { name, args } => {
                let args: Vec<&Expr> = args.iter().collect();
                self.with_operands(format!("Call {}", self.ident(name)), span, &args);
            }
            ExprKind::Unary { op, operand } => self.with_operands(format!("Unary {op:?}"), span, &[operand]),
            ExprKind::Binary { op, left, right } => {
                self.with_operands(format!("Binary {}", op.as_str()), span, &[left, right])
            }
            ExprKind::InList { op, expr, list } => self.node(format!("InList {}", op.as_str()), span, |dumper| {
                dumper.expr(expr);
                let items: Vec<&Expr> = list.iter().collect();
                dumper.with_operands("List".to_string(), None, &items);
            }),
            ExprKind::Between { expr, low, high, negated } => {
                let label = if *negated { "Between negated" } else { "Between" };
                self.with_operands(label.to_string(), span, &[expr, low, high]);
            }
            ExprKind::Paren(inner) => self.with_operands("Paren".to_string(), span, &[inner]),
            ExprKind::Member { expr, name } => {
                self.with_operands(format!("Member {}", self.ident(name)), span, &[expr])
            }
            ExprKind::Index { expr, index } => self.with_operands("Index".to_string(), span, &[expr, index]),
            ExprKind::Star => self.leaf("Star".to_string(), span),
            ExprKind::ToScalar(tabular) => self.node("ToScalar".to_string(), span, |dumper| dumper.tabular(tabular)),
            ExprKind::InTabular { op, expr, tabular } => {
                self.node(format!("InTabular {}", op.as_str()), span, |dumper| {
                    dumper.expr(expr);
                    dumper.tabular(tabular);
                })
            }
            ExprKind::NamedArg { name, value } => {
                self.with_operands(format!("NamedArg {}", self.ident(name)), span, &[value])
            }
        }
    }

    /// Writes a node whose children are `operands`.
    fn with_operands(&mut self, label: String, span: Option<Span>, operands: &[&Expr]) {
        self.node(label, span, |dumper| operands.iter().for_each(|operand| dumper.expr(operand)));
    }
}
