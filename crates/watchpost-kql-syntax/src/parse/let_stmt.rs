//! `let name = value;` statements, whose value is a scalar expression or a
//! tabular expression.

use super::Parser;
use crate::ast::{Expr, ExprKind, Ident, LetStmt, LetValue, TabularExpr, TabularSource};
use crate::lexer::TokenKind;

impl Parser<'_> {
    /// Parses a `let` statement at the `let` keyword.
    pub(super) fn let_stmt(&mut self) -> Option<LetStmt> {
        let start = self.bump().span.start as usize;
        let name = self.ident("a name after `let`")?;
        self.expect(&TokenKind::Assign, &format!("`=` after `let {}`", name.name))?;
        let value = if self.let_value_is_tabular() {
            let tabular = self.tabular_expr()?;
            // After recovery (`let t = T | <broken>`) a bare name is left;
            // read it like `let t = T;` so the tree prints unambiguously.
            match bare_table(&tabular) {
                Some(name) => LetValue::Scalar(Expr { span: name.span, kind: ExprKind::Name(name.clone()) }),
                None => LetValue::Tabular(tabular),
            }
        } else {
            LetValue::Scalar(self.expr()?)
        };
        Some(LetStmt { name, value, span: self.span_from(start) })
    }

    /// Decides whether the value starting at the cursor is tabular: it starts
    /// with `print`, `datatable` or `range`, or contains a `|` before the
    /// statement's `;`. A bare name (`let t = T;`) is read as a scalar
    /// `Name`; the binder resolves what it refers to.
    fn let_value_is_tabular(&self) -> bool {
        if self.at_source_keyword() {
            return true;
        }
        let rest = &self.tokens[self.pos..];
        let statement = rest.iter().take_while(|token| !matches!(token.kind, TokenKind::Semi | TokenKind::Eof));
        statement.into_iter().any(|token| token.kind == TokenKind::Pipe)
    }
}

/// Returns the table name when `tabular` is just a (parenthesized) name
/// with no operators.
fn bare_table(tabular: &TabularExpr) -> Option<&Ident> {
    if !tabular.operators.is_empty() {
        return None;
    }
    match &tabular.source {
        TabularSource::Table(name) => Some(name),
        TabularSource::Parenthesized(inner) => bare_table(inner),
        _ => None,
    }
}
