//! Pipe operators: everything between one `|` and the next.

use watchpost_diagnostics::{Diagnostic, Span};

use super::Parser;
use crate::ast::{
    Expr, Ident, JoinKey, NamedExpr, NullsOrder, Operator, OperatorKind, SortKey, SortOrder, TabularExpr,
    TabularSource, TopNestedLevel,
};
use crate::lexer::TokenKind;

/// The operators this parser knows, for "did you mean" hints.
const SUPPORTED_OPERATORS: [&str; 32] = [
    "where",
    "filter",
    "project",
    "project-away",
    "project-rename",
    "extend",
    "summarize",
    "sort",
    "order",
    "take",
    "limit",
    "top",
    "count",
    "distinct",
    "project-keep",
    "project-reorder",
    "join",
    "lookup",
    "union",
    "as",
    "getschema",
    "serialize",
    "mv-expand",
    "mv-apply",
    "parse",
    "parse-where",
    "search",
    "make-series",
    "top-nested",
    "evaluate",
    "render",
    "invoke",
];

/// KQL operators that exist but are not supported yet.
const UNSUPPORTED_OPERATORS: [&str; 7] =
    ["parse-kv", "sample", "sample-distinct", "find", "top-hitters", "facet", "fork"];

const OPERATOR_HINT: &str = "for example `where`, `project`, `extend`, `summarize`, `sort by` or `take`";

impl Parser<'_> {
    /// Parses the operator after the `|` at `pipe`.
    pub(super) fn operator(&mut self, pipe: Span) -> Option<Operator> {
        if !self.at(&TokenKind::Ident) {
            self.missing_operator(pipe);
            return None;
        }
        let keyword = self.bump();
        let kind = match self.text_of(&keyword) {
            "where" | "filter" => OperatorKind::Where(self.expr()?),
            "project" => OperatorKind::Project(self.named_exprs()?),
            "project-away" => OperatorKind::ProjectAway(self.comma_list(Self::column_pattern)?),
            "project-rename" => OperatorKind::ProjectRename(self.comma_list(Self::rename)?),
            "extend" => OperatorKind::Extend(self.named_exprs()?),
            "summarize" => self.summarize(keyword.span)?,
            "sort" | "order" => self.sort(self.text_of(&keyword))?,
            "take" | "limit" => OperatorKind::Take(self.expr()?),
            "top" => self.top()?,
            "count" => OperatorKind::Count,
            "distinct" => OperatorKind::Distinct(self.comma_list(Self::expr)?),
            "project-keep" => OperatorKind::ProjectKeep(self.comma_list(Self::column_pattern)?),
            "project-reorder" => OperatorKind::ProjectReorder(self.comma_list(Self::column_pattern)?),
            "join" => self.join(false)?,
            "lookup" => self.join(true)?,
            "union" => self.union()?,
            "as" => {
                if self.at_word("hint") && self.nth(1).kind == TokenKind::Dot {
                    // `as hint.materialized=true Name`: the hint is accepted and ignored.
                    self.bump();
                    self.bump();
                    self.ident("a hint name")?;
                    self.expect(&TokenKind::Assign, "`=` after the hint name")?;
                    self.bump();
                }
                OperatorKind::As(self.ident("a name for the tabular value")?)
            }
            "getschema" => OperatorKind::GetSchema,
            "serialize" => {
                let columns = if self.at_boundary() { Vec::new() } else { self.named_exprs()? };
                OperatorKind::Serialize(columns)
            }
            "mv-expand" => self.mv_expand()?,
            "mv-apply" => self.mv_apply()?,
            "parse" => self.parse_op(false)?,
            "parse-where" => self.parse_op(true)?,
            "search" => self.search()?,
            "make-series" => self.make_series()?,
            "top-nested" => OperatorKind::TopNested(self.top_nested()?),
            "evaluate" => self.evaluate()?,
            "render" => self.render()?,
            "invoke" => {
                if !(self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::LParen) {
                    self.error_expected("a function call after `invoke`, as in `invoke f(10)`");
                    return None;
                }
                OperatorKind::Invoke(self.call()?)
            }
            name => {
                self.unknown_operator(name, keyword.span);
                return None;
            }
        };
        Some(Operator { kind, span: self.span_from(keyword.span.start as usize) })
    }

    fn missing_operator(&mut self, pipe: Span) {
        if self.at(&TokenKind::Error) {
            return;
        }
        let message = format!("expected an operator after `|`, found {}", self.describe_current());
        self.error(Diagnostic::syntax("KQL1010", pipe, message).with_hint(OPERATOR_HINT));
    }

    fn unknown_operator(&mut self, name: &str, span: Span) {
        if UNSUPPORTED_OPERATORS.contains(&name) {
            let message = format!("the `{name}` operator is not supported yet");
            self.error(Diagnostic::syntax("KQL3001", span, message));
            return;
        }
        let message = format!("unknown operator `{name}`");
        let hint = match closest_operator(name) {
            Some(close) if close.eq_ignore_ascii_case(name) => format!("operator names are lower-case: `{close}`"),
            Some(close) => format!("did you mean `{close}`?"),
            None => OPERATOR_HINT.to_string(),
        };
        self.error(Diagnostic::syntax("KQL1011", span, message).with_hint(hint));
    }

    /// Parses `item, item, ...` where each item is `name = expr` or `expr`.
    pub(super) fn named_exprs(&mut self) -> Option<Vec<NamedExpr>> {
        self.comma_list(Self::named_expr)
    }

    pub(super) fn named_expr(&mut self) -> Option<NamedExpr> {
        let start = self.start();
        if self.at_tuple_names() {
            self.bump();
            let tuple = self.comma_list(|parser| parser.ident("a column name"))?;
            self.expect(&TokenKind::RParen, "`,` or `)` after the column names")?;
            self.expect(&TokenKind::Assign, "`=` after the column names")?;
            let expr = self.expr()?;
            return Some(NamedExpr { name: None, tuple, expr, span: self.span_from(start) });
        }
        let name_len = if self.at(&TokenKind::Ident) { 1 } else { 3 };
        let name = if self.at_ident() && self.nth(name_len).kind == TokenKind::Assign {
            let name = self.ident("a name")?;
            self.bump();
            Some(name)
        } else {
            None
        };
        let expr = self.expr()?;
        Some(NamedExpr { name, tuple: Vec::new(), expr, span: self.span_from(start) })
    }

    /// Parses a column name or a wildcard pattern such as `*_s` or
    /// `DeviceCustom*` (a name whose `*`s match any text).
    fn column_pattern(&mut self) -> Option<Ident> {
        let is_pattern =
            self.at(&TokenKind::Star) || (self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::Star);
        if !is_pattern {
            return self.ident("a column name");
        }
        let start = self.start();
        let mut pattern = String::new();
        loop {
            let token = self.bump();
            pattern.push_str(self.text_of(&token));
            let next = self.peek();
            let adjacent = next.span.start as usize == self.prev_end;
            if !adjacent || !matches!(next.kind, TokenKind::Star | TokenKind::Ident) {
                break;
            }
        }
        Some(Ident { name: pattern, span: self.span_from(start) })
    }

    /// Whether `(A, B, ...) =` starts here: the names of a tuple assignment.
    fn at_tuple_names(&self) -> bool {
        if !self.at(&TokenKind::LParen) {
            return false;
        }
        let mut ahead = 1;
        loop {
            if self.nth(ahead).kind != TokenKind::Ident {
                return false;
            }
            match self.nth(ahead + 1).kind {
                TokenKind::Comma => ahead += 2,
                TokenKind::RParen => return self.nth(ahead + 2).kind == TokenKind::Assign,
                _ => return false,
            }
        }
    }

    /// Parses `visualization [with (name = value [, value...], ...)]` after `render`.
    fn render(&mut self) -> Option<OperatorKind> {
        let visualization = self.ident("a visualization such as `timechart` or `barchart`")?;
        let mut properties: Vec<(Ident, Vec<Expr>)> = Vec::new();
        if self.eat_word("with") {
            let open = self.expect(&TokenKind::LParen, "`(` and the properties after `with`")?;
            loop {
                if self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::Assign {
                    let name = self.ident("a property name")?;
                    self.bump();
                    properties.push((name, vec![self.expr()?]));
                } else if let Some((_, values)) = properties.last_mut() {
                    // `ycolumns = A, B`: further values of the last property.
                    values.push(self.expr()?);
                } else {
                    self.error_expected("a property such as `title = \"...\"`");
                    return None;
                }
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
            if !self.at(&TokenKind::RParen) {
                self.unclosed(open, "`,` or `)` after the properties");
                return None;
            }
            self.bump();
        }
        Some(OperatorKind::Render { visualization, properties })
    }

    /// Parses `new = old` in `project-rename`.
    fn rename(&mut self) -> Option<(Ident, Ident)> {
        let new_name = self.ident("the new column name")?;
        self.expect(&TokenKind::Assign, "`=` between the new and the old name")?;
        let old_name = self.ident("the column to rename")?;
        Some((new_name, old_name))
    }

    /// Parses the rest of `join` or `lookup`: parameters, the right side
    /// and the `on` keys.
    fn join(&mut self, is_lookup: bool) -> Option<OperatorKind> {
        let mut kind = None;
        loop {
            if self.at_word("kind") && self.nth(1).kind == TokenKind::Assign {
                self.bump();
                self.bump();
                kind = Some(self.ident("a join kind such as `inner` or `leftouter`")?);
            } else if self.at_word("hint") && self.nth(1).kind == TokenKind::Dot {
                // `hint.strategy=shuffle` and friends: accepted and ignored.
                self.bump();
                self.bump();
                self.ident("a hint name")?;
                self.expect(&TokenKind::Assign, "`=` after the hint name")?;
                self.bump();
            } else {
                break;
            }
        }
        let right = self.operand_table("the right side of the join")?;
        self.expect_word("on")?;
        let on = self.comma_list(Self::join_key)?;
        Some(OperatorKind::Join { is_lookup, kind, right: Box::new(right), on })
    }

    /// A table name or a parenthesized query, as `join` and `union` take.
    fn operand_table(&mut self, what: &str) -> Option<TabularExpr> {
        let start = self.start();
        if self.eat(&TokenKind::LParen) {
            let inner = self.tabular_expr()?;
            self.expect(&TokenKind::RParen, "`)` to close the query")?;
            return Some(inner);
        }
        if self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::LParen {
            let call = self.call()?;
            let span = call.span;
            return Some(TabularExpr { source: TabularSource::FunctionCall(call), operators: Vec::new(), span });
        }
        let name = self.ident(what)?;
        Some(TabularExpr { source: TabularSource::Table(name), operators: Vec::new(), span: self.span_from(start) })
    }

    fn join_key(&mut self) -> Option<JoinKey> {
        if !self.at_word("$left") && !self.at_word("$right") {
            return self.ident("a column name or `$left.Column == $right.Column`").map(JoinKey::Column);
        }
        let (first_side, first) = self.side_column()?;
        self.expect(&TokenKind::EqEq, "`==` between the two sides")?;
        let (second_side, second) = self.side_column()?;
        if first_side == second_side {
            let message = "a join condition compares `$left.Column` with `$right.Column`";
            self.error(Diagnostic::syntax("KQL1019", first.span.cover(second.span), message));
            return None;
        }
        Some(if first_side == "$left" {
            JoinKey::Pair { left: first, right: second }
        } else {
            JoinKey::Pair { left: second, right: first }
        })
    }

    /// Parses `$left.Column` or `$right.Column`.
    fn side_column(&mut self) -> Option<(String, Ident)> {
        if !self.at_word("$left") && !self.at_word("$right") {
            self.error_expected("`$left.Column` or `$right.Column`");
            return None;
        }
        let side = self.bump();
        let side = self.text_of(&side).to_string();
        self.expect(&TokenKind::Dot, "`.` and a column name")?;
        Some((side, self.ident("a column name")?))
    }

    /// Parses the rest of `union`: parameters, then the tables.
    pub(super) fn union(&mut self) -> Option<OperatorKind> {
        let mut params = Vec::new();
        while self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::Assign {
            let name = self.ident("a parameter name")?;
            self.bump();
            if self.at_boundary() {
                self.error_expected("a parameter value");
                return None;
            }
            let value = self.bump();
            params.push((name, Ident { name: self.text_of(&value).to_string(), span: value.span }));
        }
        let tables = self.comma_list(|parser| parser.operand_table("a table to union"))?;
        Some(OperatorKind::Union { params, tables })
    }

    /// Parses `summarize [aggregates] [by keys]`.
    fn summarize(&mut self, keyword: Span) -> Option<OperatorKind> {
        let aggregates = if self.at_word("by") || self.at_boundary() { Vec::new() } else { self.named_exprs()? };
        let by = if self.eat_word("by") { self.named_exprs()? } else { Vec::new() };
        if aggregates.is_empty() && by.is_empty() {
            let message = "`summarize` needs an aggregation, a `by` clause or both";
            let hint = "for example `summarize count() by Computer`";
            self.error(Diagnostic::syntax("KQL1016", keyword, message).with_hint(hint));
            return None;
        }
        Some(OperatorKind::Summarize { aggregates, by })
    }

    /// Parses `by key, ...` after `sort` or `order`.
    fn sort(&mut self, keyword: &str) -> Option<OperatorKind> {
        if !self.at_word("by") {
            let message = format!("expected `by` after `{keyword}`, found {}", self.describe_current());
            let hint = format!("write `{keyword} by Column [asc|desc] [nulls first|last], ...`");
            self.error(Diagnostic::syntax("KQL1012", self.peek().span, message).with_hint(hint));
            return None;
        }
        self.bump();
        Some(OperatorKind::Sort(self.comma_list(Self::sort_key)?))
    }

    /// Parses the rest of `evaluate`: `plugin(args)`.
    fn evaluate(&mut self) -> Option<OperatorKind> {
        let plugin = self.ident("a plugin name such as `bag_unpack`")?;
        self.expect(&TokenKind::LParen, "`(` after the plugin name")?;
        let args = if self.at(&TokenKind::RParen) { Vec::new() } else { self.comma_list(Self::expr)? };
        self.expect(&TokenKind::RParen, "`,` or `)` in the plugin arguments")?;
        Some(OperatorKind::Evaluate { plugin, args })
    }

    /// Parses the levels of `top-nested`, the first keyword already read.
    fn top_nested(&mut self) -> Option<Vec<TopNestedLevel>> {
        let mut levels = vec![self.top_nested_level()?];
        while self.at(&TokenKind::Comma) && self.at_nested_keyword() {
            // `top-nested` after a comma lexes as `top`, `-`, `nested`.
            for _ in 0..4 {
                self.bump();
            }
            levels.push(self.top_nested_level()?);
        }
        Some(levels)
    }

    /// Whether `top-nested`, written without spaces, follows the current token.
    fn at_nested_keyword(&self) -> bool {
        let (top, minus, nested) = (self.nth(1), self.nth(2), self.nth(3));
        self.nth_is_word(1, "top")
            && minus.kind == TokenKind::Minus
            && self.nth_is_word(3, "nested")
            && top.span.end == minus.span.start
            && minus.span.end == nested.span.start
    }

    fn top_nested_level(&mut self) -> Option<TopNestedLevel> {
        let count = if self.at_word("of") { None } else { Some(self.expr()?) };
        self.expect_word("of")?;
        let of = self.named_expr()?;
        let others = if self.eat_word("with") {
            self.expect_word("others")?;
            self.expect(&TokenKind::Assign, "`=` after `with others`")?;
            Some(self.expr()?)
        } else {
            None
        };
        self.expect_word("by")?;
        let by = self.named_expr()?;
        let order = if self.eat_word("asc") {
            Some(SortOrder::Ascending)
        } else if self.eat_word("desc") {
            Some(SortOrder::Descending)
        } else {
            None
        };
        Some(TopNestedLevel { count, of, others, by, order })
    }

    /// Parses `top n by key [asc|desc] [nulls first|last]`.
    fn top(&mut self) -> Option<OperatorKind> {
        let count = self.expr()?;
        self.expect_word("by")?;
        let key = self.sort_key()?;
        Some(OperatorKind::Top { count, key })
    }

    fn sort_key(&mut self) -> Option<SortKey> {
        let expr = self.expr()?;
        let order = if self.eat_word("asc") {
            Some(SortOrder::Ascending)
        } else if self.eat_word("desc") {
            Some(SortOrder::Descending)
        } else {
            None
        };
        let nulls = if self.eat_word("nulls") { Some(self.nulls_order()?) } else { None };
        Some(SortKey { expr, order, nulls })
    }

    fn nulls_order(&mut self) -> Option<NullsOrder> {
        if self.eat_word("first") {
            return Some(NullsOrder::First);
        }
        if self.eat_word("last") {
            return Some(NullsOrder::Last);
        }
        self.error_expected("`first` or `last` after `nulls`");
        None
    }
}

/// Returns the supported operator closest to `name` when it looks like a typo.
fn closest_operator(name: &str) -> Option<&'static str> {
    let lower_case = name.to_ascii_lowercase();
    if let Some(operator) = SUPPORTED_OPERATORS.iter().find(|&&operator| operator == lower_case) {
        return Some(operator);
    }
    let candidates = SUPPORTED_OPERATORS.iter();
    let (distance, closest) = candidates.map(|&operator| (edit_distance(name, operator), operator)).min()?;
    (distance <= 2 && distance < name.len()).then_some(closest)
}

/// Levenshtein distance between two short words.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (left_idx, left_char) in left.chars().enumerate() {
        let mut current = vec![left_idx + 1];
        for (right_idx, &right_char) in right.iter().enumerate() {
            let substitution = previous[right_idx] + usize::from(left_char != right_char);
            current.push(substitution.min(previous[right_idx + 1] + 1).min(current[right_idx] + 1));
        }
        previous = current;
    }
    previous[right.len()]
}
