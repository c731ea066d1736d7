//! `mv-expand` and `mv-apply`, which turn the elements of dynamic arrays
//! and bags into rows, and `make-series`, which builds such arrays.

use super::Parser;
use crate::ast::{Ident, MakeSeries, MvExpand, MvExpandItem, OperatorKind, SeriesAggregate};
use crate::lexer::{Token, TokenKind};

/// The `name=value` parameters `mv-expand` and `mv-apply` accept before
/// their columns.
const EXPAND_PARAMS: [&str; 3] = ["bagexpansion", "kind", "with_itemindex"];

impl Parser<'_> {
    /// Parses the rest of `mv-expand`.
    pub(super) fn mv_expand(&mut self) -> Option<OperatorKind> {
        Some(OperatorKind::MvExpand(self.expand_clause()?))
    }

    /// Parses the rest of `mv-apply`: the expansion, then
    /// `on (operator | operator ...)`.
    pub(super) fn mv_apply(&mut self) -> Option<OperatorKind> {
        let expand = self.expand_clause()?;
        self.expect_word("on")?;
        self.expect(&TokenKind::LParen, "`(` and the operators to apply")?;
        let mut subquery = Vec::new();
        self.glue_dashed_word();
        loop {
            let at = self.peek().span;
            subquery.push(self.operator(at)?);
            if !self.eat(&TokenKind::Pipe) {
                break;
            }
        }
        self.expect(&TokenKind::RParen, "`|` or `)` after the applied operators")?;
        Some(OperatorKind::MvApply { expand, subquery })
    }

    fn expand_clause(&mut self) -> Option<MvExpand> {
        let mut params = Vec::new();
        while self.nth(1).kind == TokenKind::Assign && EXPAND_PARAMS.iter().any(|param| self.at_word(param)) {
            let name = self.ident("a parameter name")?;
            self.bump();
            let value = self.ident("a parameter value")?;
            params.push((name, value));
        }
        let items = self.comma_list(Self::expand_item)?;
        let limit = if self.eat_word("limit") { Some(self.expr()?) } else { None };
        Some(MvExpand { params, items, limit })
    }

    fn expand_item(&mut self) -> Option<MvExpandItem> {
        let expr = self.named_expr()?;
        let to_type = if self.eat_word("to") { Some(self.typeof_name()?) } else { None };
        Some(MvExpandItem { expr, to_type })
    }

    /// Parses the rest of `make-series`.
    pub(super) fn make_series(&mut self) -> Option<OperatorKind> {
        let aggregates = self.comma_list(Self::series_aggregate)?;
        self.expect_word("on")?;
        let axis = self.ident("the axis column")?;
        let (from, to, step) = if self.eat_word("in") {
            // The older `in range(from, to, step)` form.
            self.expect_word("range")?;
            self.expect(&TokenKind::LParen, "`(` after `range`")?;
            let from = self.expr()?;
            self.expect(&TokenKind::Comma, "`,` after the start")?;
            let to = self.expr()?;
            self.expect(&TokenKind::Comma, "`,` after the end")?;
            let step = self.expr()?;
            self.expect(&TokenKind::RParen, "`)` after the step")?;
            (Some(from), Some(to), step)
        } else {
            let from = if self.eat_word("from") { Some(self.expr()?) } else { None };
            let to = if self.eat_word("to") { Some(self.expr()?) } else { None };
            self.expect_word("step")?;
            (from, to, self.expr()?)
        };
        let by = if self.eat_word("by") { self.named_exprs()? } else { Vec::new() };
        Some(OperatorKind::MakeSeries(MakeSeries { aggregates, axis, from, to, step, by }))
    }

    fn series_aggregate(&mut self) -> Option<SeriesAggregate> {
        let aggregate = self.named_expr()?;
        let default = if self.at_word("default") && self.nth(1).kind == TokenKind::Assign {
            self.bump();
            self.bump();
            Some(self.expr()?)
        } else {
            None
        };
        Some(SeriesAggregate { aggregate, default })
    }

    /// Joins `mv`, `-`, `apply` written without spaces into one word, as the
    /// lexer does after `|`, for an operator that follows `(`.
    fn glue_dashed_word(&mut self) {
        while self.at(&TokenKind::Ident)
            && self.nth(1).kind == TokenKind::Minus
            && self.nth(2).kind == TokenKind::Ident
            && self.nth(0).span.end == self.nth(1).span.start
            && self.nth(1).span.end == self.nth(2).span.start
        {
            let span = self.nth(0).span.cover(self.nth(2).span);
            let word = Token { kind: TokenKind::Ident, span };
            self.tokens.splice(self.pos..self.pos + 3, [word]);
        }
    }

    /// Parses `typeof(name)` and returns the type name.
    pub(super) fn typeof_name(&mut self) -> Option<Ident> {
        self.expect_word("typeof")?;
        self.expect(&TokenKind::LParen, "`(` after `typeof`")?;
        let name = self.ident("a type name such as `long` or `string`")?;
        self.expect(&TokenKind::RParen, "`)` after the type name")?;
        Some(name)
    }
}
