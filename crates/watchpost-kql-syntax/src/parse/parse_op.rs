//! `parse`, `parse-where` and `search`: operators over the text of rows.

use watchpost_diagnostics::Diagnostic;

use super::Parser;
use crate::ast::{Ident, Literal, OperatorKind, ParsePart};
use crate::lexer::TokenKind;

impl Parser<'_> {
    /// Parses the rest of `parse` or `parse-where`:
    /// `[kind=K] expr with part part ...`.
    pub(super) fn parse_op(&mut self, drops_unmatched: bool) -> Option<OperatorKind> {
        let kind = self.kind_param()?;
        let flags = if self.at_word("flags") && self.nth(1).kind == TokenKind::Assign {
            self.bump();
            self.bump();
            Some(self.ident("regex flags such as `i` or `Us`")?)
        } else {
            None
        };
        let source = self.expr()?;
        self.expect_word("with")?;
        let mut pattern = Vec::new();
        while !self.at_boundary() {
            pattern.push(self.parse_part()?);
        }
        if pattern.is_empty() {
            self.error_expected("a pattern of string constants and column names after `with`");
            return None;
        }
        Some(OperatorKind::Parse { kind, flags, drops_unmatched, source, pattern })
    }

    fn parse_part(&mut self) -> Option<ParsePart> {
        if let TokenKind::Literal(Literal::String(text)) = &self.peek().kind {
            let text = text.clone();
            self.bump();
            return Some(ParsePart::Literal(text));
        }
        if self.eat(&TokenKind::Star) {
            return Some(ParsePart::Wildcard);
        }
        if !self.at_ident() {
            let message =
                format!("expected a string constant, `*` or a column name, found {}", self.describe_current());
            let hint = "write a pattern such as `\"user=\" User \" id=\" Id:long`";
            self.error(Diagnostic::syntax("KQL1012", self.peek().span, message).with_hint(hint));
            return None;
        }
        let name = self.ident("a column name")?;
        let type_name = if self.eat(&TokenKind::Colon) { Some(self.ident("a type name")?) } else { None };
        Some(ParsePart::Column { name, type_name })
    }

    /// Parses the rest of `search`: `[kind=K] predicate`.
    pub(super) fn search(&mut self) -> Option<OperatorKind> {
        let kind = self.kind_param()?;
        self.in_search = true;
        let predicate = self.expr();
        self.in_search = false;
        Some(OperatorKind::Search { kind, predicate: predicate? })
    }

    /// Parses an optional leading `kind=value`.
    fn kind_param(&mut self) -> Option<Option<Ident>> {
        if !(self.at_word("kind") && self.nth(1).kind == TokenKind::Assign) {
            return Some(None);
        }
        self.bump();
        self.bump();
        Some(Some(self.ident("a kind")?))
    }
}
