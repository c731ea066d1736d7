//! Tabular expressions: a source (`T`, `print`, `datatable`, `range`,
//! `( ... )`) followed by `| operator`s.

use watchpost_diagnostics::Diagnostic;

use super::Parser;
use crate::ast::{ColumnDecl, Expr, Operator, OperatorKind, TabularExpr, TabularSource};
use crate::lexer::TokenKind;

impl Parser<'_> {
    /// Parses `source | op | op ...`. Returns `None` when the source is
    /// broken, after still checking the operators for more problems.
    pub(super) fn tabular_expr(&mut self) -> Option<TabularExpr> {
        let start = self.start();
        let source = self.tabular_source();
        match source {
            Some(_) => self.expect_pipe_after("the source"),
            None => self.skip_to_boundary(),
        }
        let operators = self.pipe_operators();
        Some(TabularExpr { source: source?, operators, span: self.span_from(start) })
    }

    fn pipe_operators(&mut self) -> Vec<Operator> {
        let mut operators = Vec::new();
        while self.at(&TokenKind::Pipe) {
            let pipe = self.bump();
            let what = format!("the `{}` operator", self.text_of(self.peek()));
            let Some(operator) = self.operator(pipe.span) else {
                self.skip_to_boundary();
                continue;
            };
            operators.push(operator);
            self.expect_pipe_after(&what);
        }
        operators
    }

    /// Reports stray tokens after `what` (a source or an operator) and skips
    /// to the next `|`.
    fn expect_pipe_after(&mut self, what: &str) {
        if self.at_boundary() || self.at(&TokenKind::Error) {
            if self.at(&TokenKind::Error) {
                self.skip_to_boundary();
            }
            return;
        }
        let found = self.describe_current();
        let message = format!("unexpected {found} after {what}");
        let mut diagnostic = Diagnostic::syntax("KQL1014", self.peek().span, message);
        if self.at(&TokenKind::Ident) {
            diagnostic = diagnostic.with_hint(format!("did you forget a `|` before {found}?"));
        }
        self.error(diagnostic);
        self.skip_to_boundary();
    }

    /// Whether the cursor is at `print`, `datatable` or `range` used as a
    /// source keyword rather than as a table name.
    pub(super) fn at_source_keyword(&self) -> bool {
        self.source_keyword_at(0)
    }

    /// Whether a source keyword (see [`Self::at_source_keyword`]) starts
    /// `ahead` tokens after the cursor.
    pub(super) fn source_keyword_at(&self, ahead: usize) -> bool {
        let next = &self.nth(ahead + 1).kind;
        let next_is_boundary = matches!(next, TokenKind::Pipe | TokenKind::Semi | TokenKind::Eof);
        let is = |word: &str| self.nth_is_word(ahead, word);
        ((is("print") || is("union")) && !next_is_boundary)
            || (is("datatable") && *next == TokenKind::LParen)
            || (is("range") && *next == TokenKind::Ident)
            || (is("materialize") && *next == TokenKind::LParen)
    }

    fn tabular_source(&mut self) -> Option<TabularSource> {
        if !self.at_source_keyword() {
            return self.plain_source();
        }
        if self.at_word("print") {
            self.bump();
            return self.named_exprs().map(TabularSource::Print);
        }
        if self.at_word("datatable") {
            return self.datatable();
        }
        if self.at_word("materialize") {
            // `materialize(q)` caches `q` for reuse; evaluating it again gives
            // the same rows here, so it reads as `(q)`.
            self.bump();
            return self.plain_source();
        }
        if self.at_word("union") {
            let start = self.start();
            self.bump();
            let OperatorKind::Union { params, tables } = self.union()? else { return None };
            return Some(TabularSource::Union { params, tables, span: self.span_from(start) });
        }
        self.range()
    }

    /// Parses a table name or a parenthesized query.
    fn plain_source(&mut self) -> Option<TabularSource> {
        if self.eat(&TokenKind::LParen) {
            let Some(inner) = self.tabular_expr() else {
                // The inner query ends at a boundary; its problems are reported.
                self.eat(&TokenKind::RParen);
                return None;
            };
            self.expect(&TokenKind::RParen, "`)` to close the parenthesized query")?;
            return Some(TabularSource::Parenthesized(Box::new(inner)));
        }
        if self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::LParen {
            return self.call().map(TabularSource::FunctionCall);
        }
        if self.at_ident() {
            return self.ident("a table name").map(TabularSource::Table);
        }
        if !self.at(&TokenKind::Error) {
            let message = format!("expected a table name or a tabular expression, found {}", self.describe_current());
            let hint = "a query starts with a table (`SigninLogs`), `print`, `datatable`, `range` or `let`";
            self.error(Diagnostic::syntax("KQL1018", self.peek().span, message).with_hint(hint));
        }
        None
    }

    /// Parses `datatable(Col: type, ...) [ value, ... ]`.
    fn datatable(&mut self) -> Option<TabularSource> {
        let start = self.start();
        self.bump();
        self.expect(&TokenKind::LParen, "`(`")?;
        let columns = self.comma_list(Self::column_decl)?;
        self.expect(&TokenKind::RParen, "`)` after the column list")?;
        self.expect(&TokenKind::LBracket, "`[` before the datatable values")?;
        let values = self.datatable_values()?;
        self.expect(&TokenKind::RBracket, "`,` or `]` in the datatable values")?;
        Some(TabularSource::Datatable { columns, values, span: self.span_from(start) })
    }

    fn column_decl(&mut self) -> Option<ColumnDecl> {
        let name = self.ident("a column name")?;
        self.expect(&TokenKind::Colon, "`:` and a type after the column name")?;
        let type_name = self.ident("a type name such as `string` or `long`")?;
        Some(ColumnDecl { name, type_name })
    }

    /// Parses the comma-separated values, allowing an empty list and a
    /// trailing comma.
    fn datatable_values(&mut self) -> Option<Vec<Expr>> {
        let mut values = Vec::new();
        while !self.at(&TokenKind::RBracket) {
            values.push(self.expr()?);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        Some(values)
    }

    /// Parses `range Col from start to stop step step`.
    fn range(&mut self) -> Option<TabularSource> {
        let start = self.start();
        self.bump();
        let column = self.ident("a column name after `range`")?;
        self.expect_word("from")?;
        let from = self.expr()?;
        self.expect_word("to")?;
        let to = self.expr()?;
        self.expect_word("step")?;
        let step = self.expr()?;
        Some(TabularSource::Range { column, from, to, step, span: self.span_from(start) })
    }
}
