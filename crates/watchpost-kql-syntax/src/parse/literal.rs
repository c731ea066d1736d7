//! Typed literals whose contents are ordinary tokens: `int(5)`, `long(-1)`,
//! `real(1.5)`, `real(nan)`, `bool(true)` and the typed nulls `long(null)`.
//! (`datetime(...)` and the other raw-text literals are lexed whole.)

use watchpost_diagnostics::Diagnostic;

use super::Parser;
use crate::ast::{Expr, ExprKind, Literal};
use crate::lexer::TokenKind;

/// Whether `word(` starts a typed literal handled here.
pub(super) fn is_typed_literal(word: &str) -> bool {
    matches!(word, "int" | "long" | "real" | "double" | "bool" | "boolean")
}

impl Parser<'_> {
    /// Parses `type(value)` at a word for which [`is_typed_literal`] holds.
    pub(super) fn typed_literal(&mut self) -> Option<Expr> {
        let keyword = self.bump();
        let type_name = canonical_type(self.text_of(&keyword));
        self.bump();
        let value_start = self.start();
        let literal = if self.eat_word("null") {
            Some(Literal::Null(Some(type_name.to_string())))
        } else {
            match type_name {
                "int" | "long" => self.integer_value(type_name),
                "real" => self.real_value(),
                _ => self.bool_value(),
            }
        };
        let Some(literal) = literal else {
            self.bad_typed_literal(type_name, value_start);
            return None;
        };
        self.expect(&TokenKind::RParen, &format!("`)` to close `{type_name}(`"))?;
        Some(Expr { kind: ExprKind::Literal(literal), span: self.span_from(keyword.span.start as usize) })
    }

    /// Consumes an optional sign and returns whether it was `-`.
    fn sign(&mut self) -> bool {
        if self.eat(&TokenKind::Minus) {
            return true;
        }
        self.eat(&TokenKind::Plus);
        false
    }

    fn integer_value(&mut self, type_name: &str) -> Option<Literal> {
        let negative = self.sign();
        let TokenKind::Literal(Literal::Long(magnitude)) = self.peek().kind else {
            return None;
        };
        self.bump();
        let value = if negative { magnitude.checked_neg()? } else { magnitude };
        if type_name == "long" {
            return Some(Literal::Long(value));
        }
        i32::try_from(value).ok().map(Literal::Int)
    }

    fn real_value(&mut self) -> Option<Literal> {
        let negative = self.sign();
        let magnitude = match self.peek().kind {
            TokenKind::Literal(Literal::Long(value)) => value as f64,
            TokenKind::Literal(Literal::Real(value)) => value,
            TokenKind::Ident if self.at_word("nan") => f64::NAN,
            TokenKind::Ident if self.at_word("inf") => f64::INFINITY,
            _ => return None,
        };
        self.bump();
        Some(Literal::Real(if negative { -magnitude } else { magnitude }))
    }

    fn bool_value(&mut self) -> Option<Literal> {
        let value = if self.at_word("true") {
            true
        } else if self.at_word("false") {
            false
        } else {
            return None;
        };
        self.bump();
        Some(Literal::Bool(value))
    }

    fn bad_typed_literal(&mut self, type_name: &str, value_start: usize) {
        if self.at(&TokenKind::Error) {
            return;
        }
        let example = match type_name {
            "int" => "`int(5)`",
            "long" => "`long(-5)`",
            "real" => "`real(1.5)` or `real(nan)`",
            _ => "`bool(true)`",
        };
        let span = self.span_from(value_start).cover(self.peek().span);
        let message = format!("invalid `{type_name}` literal");
        let hint = format!(
            "write a constant such as {example}, or `{type_name}(null)`; to convert a value use `to{type_name}()`"
        );
        self.error(Diagnostic::syntax("KQL1017", span, message).with_hint(hint));
    }
}

/// Returns the type name a literal keyword stands for (`double` is `real`).
fn canonical_type(keyword: &str) -> &'static str {
    match keyword {
        "int" => "int",
        "long" => "long",
        "real" | "double" => "real",
        _ => "bool",
    }
}
