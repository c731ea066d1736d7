//! Binding of `parse`, `parse-where` and `search`.
//!
//! `parse` becomes one regular expression with a capture group per column
//! and an `extract()` per column, under an `extend`; `parse-where` first
//! keeps only the rows the expression matches. `search` becomes a `where`
//! whose bare string terms match any column.

use watchpost_diagnostics::{Diagnostic, Span};
use watchpost_kql_syntax::ast::{BinaryOp, Expr, ExprKind as Ast, Ident, Literal, ParsePart};
use watchpost_schema::KqlType;

use crate::bound::{BoundExpr, BoundTabular, ExprKind, ScalarFunction, TabularKind, Value};
use crate::tabular::{column_ref, project};
use crate::Binder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseKind {
    /// Plain string delimiters; every typed column must match its type.
    Simple,
    /// Delimiters are regular expressions.
    Regex,
    /// Like `Simple`, but a column that does not convert is null instead of
    /// failing the row.
    Relaxed,
}

/// The parameters of `parse` and `parse-where`.
pub(crate) struct ParseOptions<'a> {
    pub kind: Option<&'a Ident>,
    pub flags: Option<&'a Ident>,
    pub drops_unmatched: bool,
}

impl Binder<'_> {
    pub(crate) fn bind_parse(
        &mut self,
        input: BoundTabular,
        options: ParseOptions<'_>,
        source: &Expr,
        pattern: &[ParsePart],
        span: Span,
    ) -> Option<BoundTabular> {
        let ParseOptions { kind, flags, drops_unmatched } = options;
        let parse_kind = match kind.map(|kind| kind.name.as_str()) {
            None | Some("simple") => ParseKind::Simple,
            Some("regex") => ParseKind::Regex,
            Some("relaxed") if !drops_unmatched => ParseKind::Relaxed,
            Some(other) => {
                let kinds = if drops_unmatched { "`simple` or `regex`" } else { "`simple`, `regex` or `relaxed`" };
                let message = format!("unknown parse kind `{other}`; expected {kinds}");
                let kind_span = kind.map_or(span, |kind| kind.span);
                self.report(Diagnostic::semantic("KQL2011", kind_span, message));
                return None;
            }
        };
        let text = self.bind_expr(source, &input.schema)?;
        let text = match text.ty {
            KqlType::String => text,
            _ => BoundExpr {
                kind: ExprKind::Call { function: ScalarFunction::ToString, args: vec![text] },
                ty: KqlType::String,
            },
        };
        let mut regex = String::new();
        if let Some(flags) = flags {
            if parse_kind != ParseKind::Regex
                || flags.name.is_empty()
                || !flags.name.chars().all(|c| "Umsi".contains(c))
            {
                let message = "flags= needs kind=regex and only the regex flags U, m, s and i";
                self.report(Diagnostic::semantic("KQL2011", flags.span, message));
                return None;
            }
            regex.push_str(&format!("(?{})", flags.name));
        }
        regex.push('^');
        let mut columns = Vec::new();
        for (idx, part) in pattern.iter().enumerate() {
            match part {
                ParsePart::Literal(literal) if parse_kind == ParseKind::Regex => {
                    regex.push_str(&format!("(?:{literal})"))
                }
                ParsePart::Literal(literal) => regex.push_str(&escape_regex(literal)),
                ParsePart::Wildcard => regex.push_str(".*?"),
                ParsePart::Column { name, type_name } => {
                    let ty = match type_name {
                        Some(type_name) => self.type_named(type_name)?,
                        None => KqlType::String,
                    };
                    let is_last = idx + 1 == pattern.len();
                    regex.push_str(&capture_group(ty, parse_kind, is_last));
                    columns.push((name.name.clone(), ty, columns.len() + 1));
                }
            }
        }
        if columns.is_empty() {
            self.report(Diagnostic::semantic("KQL2011", span, "the parse pattern names no column to extract"));
            return None;
        }
        let regex_literal = string_literal(&regex);
        let mut input = input;
        if drops_unmatched {
            let predicate = BoundExpr {
                kind: ExprKind::Binary {
                    op: BinaryOp::MatchesRegex,
                    left: Box::new(text.clone()),
                    right: Box::new(regex_literal.clone()),
                },
                ty: KqlType::Bool,
            };
            let schema = input.schema.clone();
            input = BoundTabular { kind: TabularKind::Filter { input: Box::new(input), predicate }, schema };
        }
        let extracted = columns
            .into_iter()
            .map(|(name, ty, group)| {
                let mut args = vec![
                    regex_literal.clone(),
                    BoundExpr { kind: ExprKind::Literal(Value::Long(group as i64)), ty: KqlType::Long },
                    text.clone(),
                ];
                if ty != KqlType::String {
                    args.push(string_literal(ty.name()));
                }
                (name, BoundExpr { kind: ExprKind::Call { function: ScalarFunction::Extract, args }, ty })
            })
            .collect();
        Some(extend_with(input, extracted))
    }

    /// `search [kind=...] predicate`: a `where` in which each bare string
    /// term matches when any column has it.
    pub(crate) fn bind_search(
        &mut self,
        input: BoundTabular,
        kind: Option<&Ident>,
        predicate: &Expr,
    ) -> Option<BoundTabular> {
        let case_sensitive = match kind.map(|kind| kind.name.as_str()) {
            None | Some("case_insensitive") => false,
            Some("case_sensitive") => true,
            Some(other) => {
                let message = format!("unknown search kind `{other}`; expected `case_sensitive` or `case_insensitive`");
                self.report(Diagnostic::semantic("KQL2011", kind.map_or(predicate.span, |kind| kind.span), message));
                return None;
            }
        };
        let span = predicate.span;
        let predicate = self.bind_search_predicate(predicate, &input, case_sensitive)?;
        if predicate.ty != KqlType::Bool {
            let message = format!("search expects a string term or a bool predicate, got {}", predicate.ty);
            self.report(Diagnostic::semantic("KQL2005", span, message));
            return None;
        }
        let schema = input.schema.clone();
        Some(BoundTabular { kind: TabularKind::Filter { input: Box::new(input), predicate }, schema })
    }

    fn bind_search_predicate(&mut self, expr: &Expr, input: &BoundTabular, case_sensitive: bool) -> Option<BoundExpr> {
        match &expr.kind {
            Ast::Literal(Literal::String(term)) => Some(any_column_has(input, term, case_sensitive)),
            Ast::Paren(inner) => self.bind_search_predicate(inner, input, case_sensitive),
            Ast::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), left, right } => {
                let left = self.bind_search_predicate(left, input, case_sensitive);
                let right = self.bind_search_predicate(right, input, case_sensitive);
                let (left, right) = (left?, right?);
                let kind = ExprKind::Binary { op: *op, left: Box::new(left), right: Box::new(right) };
                Some(BoundExpr { kind, ty: KqlType::Bool })
            }
            _ => self.bind_expr(expr, &input.schema),
        }
    }
}

/// `input` with `columns` added the way `extend` adds them.
fn extend_with(input: BoundTabular, columns: Vec<(String, BoundExpr)>) -> BoundTabular {
    let mut all: Vec<_> = input
        .schema
        .columns
        .iter()
        .filter(|column| !columns.iter().any(|(name, _)| *name == column.name))
        .map(|column| (column.name.clone(), column_ref(column)))
        .collect();
    all.extend(columns);
    project(input, all)
}

/// True when some column of `input`, as text, has `term`. A `*` at the end
/// of the term matches the start of a term, at the start the end of one,
/// at both ends any substring.
fn any_column_has(input: &BoundTabular, term: &str, case_sensitive: bool) -> BoundExpr {
    let (starts_wild, ends_wild) = (term.len() > 1 && term.starts_with('*'), term.len() > 1 && term.ends_with('*'));
    let bare = term.trim_matches('*');
    let case = if case_sensitive { "" } else { "(?i)" };
    let (op, needle) = match (starts_wild, ends_wild) {
        (true, true) if case_sensitive => (BinaryOp::ContainsCs, bare.to_string()),
        (true, true) => (BinaryOp::Contains, bare.to_string()),
        (false, true) => (BinaryOp::MatchesRegex, format!(r"{case}(?:^|\W){}", escape_regex(bare))),
        (true, false) => (BinaryOp::MatchesRegex, format!(r"{case}{}(?:$|\W)", escape_regex(bare))),
        (false, false) if case_sensitive => (BinaryOp::HasCs, bare.to_string()),
        (false, false) => (BinaryOp::Has, bare.to_string()),
    };
    let needle = string_literal(&needle);
    let matches = input.schema.columns.iter().map(|column| BoundExpr {
        kind: ExprKind::Binary { op, left: Box::new(column_ref(column)), right: Box::new(needle.clone()) },
        ty: KqlType::Bool,
    });
    let any = matches.reduce(|left, right| BoundExpr {
        kind: ExprKind::Binary { op: BinaryOp::Or, left: Box::new(left), right: Box::new(right) },
        ty: KqlType::Bool,
    });
    any.unwrap_or(BoundExpr { kind: ExprKind::Literal(Value::Bool(false)), ty: KqlType::Bool })
}

fn string_literal(text: &str) -> BoundExpr {
    BoundExpr { kind: ExprKind::Literal(Value::String(text.to_string())), ty: KqlType::String }
}

/// The capture group of a column: numbers must look like numbers unless the
/// parse is relaxed; text is as short as possible, except at the end.
fn capture_group(ty: KqlType, kind: ParseKind, is_last: bool) -> String {
    let strict = kind != ParseKind::Relaxed;
    let group = match ty {
        KqlType::Int | KqlType::Long if strict => r"(-?\d+)",
        KqlType::Real | KqlType::Decimal if strict => r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)",
        _ if is_last => "(.*)",
        _ => "(.*?)",
    };
    group.to_string()
}

/// `text` with the regular expression metacharacters escaped.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if "\\.+*?()|[]{}^$".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}
