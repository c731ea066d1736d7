//! Scalar expressions, by KQL precedence from lowest to highest: `or`;
//! `and`; the non-associative comparisons and string operators (`==`, `has`,
//! `in (...)`, `between (.. )`); `+ -`; `* / %`; unary `- +`; postfix
//! `.member` and `[index]`; primaries (literals, names, calls, `( ... )`).

use watchpost_diagnostics::{Diagnostic, LineCol, Span};

use super::Parser;
use crate::ast::{BinaryOp, Expr, ExprKind, Ident, ListOp, UnaryOp};
use crate::lexer::TokenKind;

/// An operator at the comparison level.
#[derive(Debug, Clone, Copy)]
enum Comparison {
    Binary(BinaryOp),
    List(ListOp),
    Between { negated: bool },
}

type Operand<'a> = fn(&mut Parser<'a>) -> Option<Expr>;
type OperatorAt<'a> = fn(&Parser<'a>) -> Option<BinaryOp>;

impl<'a> Parser<'a> {
    /// Parses a scalar expression.
    pub(super) fn expr(&mut self) -> Option<Expr> {
        self.or_expr()
    }

    fn or_expr(&mut self) -> Option<Expr> {
        self.left_assoc(Self::and_expr, |parser| parser.at_word("or").then_some(BinaryOp::Or))
    }

    fn and_expr(&mut self) -> Option<Expr> {
        self.left_assoc(Self::comparison_expr, |parser| parser.at_word("and").then_some(BinaryOp::And))
    }

    fn additive_expr(&mut self) -> Option<Expr> {
        self.left_assoc(Self::multiplicative_expr, |parser| match parser.peek().kind {
            TokenKind::Plus => Some(BinaryOp::Add),
            TokenKind::Minus => Some(BinaryOp::Sub),
            _ => None,
        })
    }

    fn multiplicative_expr(&mut self) -> Option<Expr> {
        self.left_assoc(Self::unary_expr, |parser| match parser.peek().kind {
            TokenKind::Star => Some(BinaryOp::Mul),
            TokenKind::Slash => Some(BinaryOp::Div),
            TokenKind::Percent => Some(BinaryOp::Mod),
            _ => None,
        })
    }

    /// Parses `operand (op operand)*` for one left-associative level whose
    /// operators are single tokens.
    fn left_assoc(&mut self, operand: Operand<'a>, operator_at: OperatorAt<'a>) -> Option<Expr> {
        let mut left = operand(self)?;
        while let Some(op) = operator_at(self) {
            self.bump();
            let right = operand(self)?;
            let span = left.span.cover(right.span);
            left = Expr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, span };
        }
        Some(left)
    }

    /// Parses `additive [comparison additive]`; comparisons do not chain.
    fn comparison_expr(&mut self) -> Option<Expr> {
        let left = self.additive_expr()?;
        let Some((comparison, n_tokens)) = self.comparison_at() else {
            return Some(left);
        };
        for _ in 0..n_tokens {
            self.bump();
        }
        let expr = match comparison {
            Comparison::Binary(op) => {
                let right = self.additive_expr()?;
                let span = left.span.cover(right.span);
                Expr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, span }
            }
            Comparison::List(op) => self.in_list(op, left)?,
            Comparison::Between { negated } => self.between(negated, left)?,
        };
        if self.comparison_at().is_some() {
            self.chained_comparison();
            return None;
        }
        Some(expr)
    }

    fn chained_comparison(&mut self) {
        let message =
            format!("comparison operators do not chain; found {} after a comparison", self.describe_current());
        let hint = "add parentheses, as in `(a == b) == c`, or combine with `and`";
        self.error(Diagnostic::syntax("KQL1015", self.peek().span, message).with_hint(hint));
    }

    /// Returns the comparison-level operator at the cursor and how many
    /// tokens it spans.
    fn comparison_at(&self) -> Option<(Comparison, usize)> {
        let op = match self.peek().kind {
            TokenKind::EqEq => BinaryOp::Eq,
            TokenKind::NotEq => BinaryOp::NotEq,
            TokenKind::Lt => BinaryOp::Lt,
            TokenKind::Le => BinaryOp::Le,
            TokenKind::Gt => BinaryOp::Gt,
            TokenKind::Ge => BinaryOp::Ge,
            TokenKind::EqTilde => BinaryOp::EqTilde,
            TokenKind::NotTilde => BinaryOp::NotEqTilde,
            TokenKind::Ident | TokenKind::BangWord => return self.word_comparison_at(),
            _ => return None,
        };
        Some((Comparison::Binary(op), 1))
    }

    fn word_comparison_at(&self) -> Option<(Comparison, usize)> {
        let word = self.text_of(self.peek());
        let tilde = self.nth(1);
        let tilde_follows = tilde.kind == TokenKind::Tilde && tilde.span.start == self.peek().span.end;
        let comparison = match word {
            "in" if tilde_follows => return Some((Comparison::List(ListOp::InCi), 2)),
            "!in" if tilde_follows => return Some((Comparison::List(ListOp::NotInCi), 2)),
            "matches" if self.nth_is_word(1, "regex") => return Some((Comparison::Binary(BinaryOp::MatchesRegex), 2)),
            "in" => Comparison::List(ListOp::In),
            "!in" => Comparison::List(ListOp::NotIn),
            "has_any" => Comparison::List(ListOp::HasAny),
            "has_all" => Comparison::List(ListOp::HasAll),
            "between" => Comparison::Between { negated: false },
            "!between" => Comparison::Between { negated: true },
            _ => Comparison::Binary(string_operator(word)?),
        };
        Some((comparison, 1))
    }

    /// Parses `( value, ... )` after `in`, `has_any` and friends.
    fn in_list(&mut self, op: ListOp, expr: Expr) -> Option<Expr> {
        let open = self.expect(&TokenKind::LParen, &format!("`(` and a list of values after `{}`", op.as_str()))?;
        if self.at_parenthesized_query() {
            let tabular = self.tabular_expr()?;
            if !self.at(&TokenKind::RParen) {
                self.unclosed(open, "`)` after the query");
                return None;
            }
            self.bump();
            let span = self.span_from(expr.span.start as usize);
            return Some(Expr {
                kind: ExprKind::InTabular { op, expr: Box::new(expr), tabular: Box::new(tabular) },
                span,
            });
        }
        let list = self.comma_list(Self::expr)?;
        self.expect(&TokenKind::RParen, "`,` or `)` in the list of values")?;
        let span = self.span_from(expr.span.start as usize);
        Some(Expr { kind: ExprKind::InList { op, expr: Box::new(expr), list }, span })
    }

    /// Parses `( low .. high )` after `between`.
    fn between(&mut self, negated: bool, expr: Expr) -> Option<Expr> {
        self.expect(&TokenKind::LParen, "`(` after `between`, as in `between (1 .. 10)`")?;
        let low = self.expr()?;
        self.expect(&TokenKind::DotDot, "`..` between the two bounds")?;
        let high = self.expr()?;
        self.expect(&TokenKind::RParen, "`)` after the upper bound")?;
        let span = self.span_from(expr.span.start as usize);
        let kind = ExprKind::Between { expr: Box::new(expr), low: Box::new(low), high: Box::new(high), negated };
        Some(Expr { kind, span })
    }

    fn unary_expr(&mut self) -> Option<Expr> {
        let op = match self.peek().kind {
            TokenKind::Minus => UnaryOp::Neg,
            TokenKind::Plus => UnaryOp::Plus,
            _ => return self.postfix_expr(),
        };
        let start = self.bump().span.start as usize;
        let operand = self.unary_expr()?;
        Some(Expr { kind: ExprKind::Unary { op, operand: Box::new(operand) }, span: self.span_from(start) })
    }

    /// Parses a primary followed by any `.member` and `[index]` suffixes.
    fn postfix_expr(&mut self) -> Option<Expr> {
        let mut expr = self.primary_expr()?;
        loop {
            let start = expr.span.start as usize;
            let kind = if self.eat(&TokenKind::Dot) {
                let name = self.ident("a property name after `.`")?;
                ExprKind::Member { expr: Box::new(expr), name }
            } else if self.eat(&TokenKind::LBracket) {
                let index = self.expr()?;
                self.expect(&TokenKind::RBracket, "`]` after the index")?;
                ExprKind::Index { expr: Box::new(expr), index: Box::new(index) }
            } else {
                return Some(expr);
            };
            expr = Expr { kind, span: self.span_from(start) };
        }
    }

    fn primary_expr(&mut self) -> Option<Expr> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Literal(literal) => {
                self.bump();
                Some(Expr { kind: ExprKind::Literal(literal), span: token.span })
            }
            TokenKind::Ident if self.in_search && self.nth(1).kind == TokenKind::Colon => self.search_column_term(),
            TokenKind::Ident => self.word_expr(),
            TokenKind::LParen => self.paren_expr(),
            TokenKind::Star
                if matches!(
                    self.nth(1).kind,
                    TokenKind::RParen | TokenKind::Comma | TokenKind::Pipe | TokenKind::Semi | TokenKind::Eof
                ) =>
            {
                self.bump();
                Some(Expr { kind: ExprKind::Star, span: token.span })
            }
            TokenKind::LBracket if self.at_bracketed_ident() => {
                let ident = self.ident("a name")?;
                Some(Expr { span: ident.span, kind: ExprKind::Name(ident) })
            }
            _ => {
                self.expected_expression();
                None
            }
        }
    }

    fn expected_expression(&mut self) {
        if self.at(&TokenKind::Error) {
            return;
        }
        let message = format!("expected an expression, found {}", self.describe_current());
        let mut diagnostic = Diagnostic::syntax("KQL1013", self.peek().span, message);
        if self.at(&TokenKind::BangWord) {
            diagnostic = diagnostic.with_hint("negate a condition with `not(...)`");
        }
        self.error(diagnostic);
    }

    /// Parses an expression starting with a word: `true`, a typed literal
    /// (`long(5)`), a call or a name.
    fn word_expr(&mut self) -> Option<Expr> {
        let token = self.peek().clone();
        let word = self.text_of(&token);
        let call_follows = self.nth(1).kind == TokenKind::LParen;
        let kind = match word {
            "true" | "false" if !call_follows => {
                self.bump();
                ExprKind::Literal(crate::ast::Literal::Bool(word == "true"))
            }
            _ if call_follows && super::literal::is_typed_literal(word) => return self.typed_literal(),
            "toscalar" if call_follows => return self.toscalar_call(),
            _ if call_follows => return self.call(),
            _ => {
                let ident = self.ident("a name")?;
                ExprKind::Name(ident)
            }
        };
        Some(Expr { kind, span: token.span })
    }

    /// Parses `Column:term` in a `search` predicate, which means
    /// `Column has term`.
    fn search_column_term(&mut self) -> Option<Expr> {
        let name = self.ident("a column name")?;
        self.bump();
        let term = self.postfix_expr()?;
        let span = name.span.cover(term.span);
        let column = Expr { span: name.span, kind: ExprKind::Name(name) };
        Some(Expr { kind: ExprKind::Binary { op: BinaryOp::Has, left: Box::new(column), right: Box::new(term) }, span })
    }

    /// Parses `name(args)`.
    pub(super) fn call(&mut self) -> Option<Expr> {
        let name: Ident = self.ident("a function name")?;
        let open = self.bump().span;
        let args = if self.at(&TokenKind::RParen) { Vec::new() } else { self.comma_list(Self::argument)? };
        if !self.at(&TokenKind::RParen) {
            self.unclosed(open, "`,` or `)` in the argument list");
            return None;
        }
        self.bump();
        let span = self.span_from(name.span.start as usize);
        Some(Expr { kind: ExprKind::Call { name, args }, span })
    }

    /// Parses a call argument: `expr` or `name = expr`.
    fn argument(&mut self) -> Option<Expr> {
        if !(self.at(&TokenKind::Ident) && self.nth(1).kind == TokenKind::Assign) {
            return self.expr();
        }
        let name = self.ident("a parameter name")?;
        self.bump();
        let value = self.expr()?;
        let span = self.span_from(name.span.start as usize);
        Some(Expr { kind: ExprKind::NamedArg { name, value: Box::new(value) }, span })
    }

    /// Whether the text after a `(` is a query up to its `)`: it starts with
    /// a source keyword or has a `|` outside nested brackets.
    fn at_parenthesized_query(&self) -> bool {
        if self.at_source_keyword() {
            return true;
        }
        let mut depth = 0usize;
        for token in &self.tokens[self.pos..] {
            match token.kind {
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RParen if depth == 0 => return false,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => depth = depth.saturating_sub(1),
                TokenKind::Pipe if depth == 0 => return true,
                TokenKind::Semi | TokenKind::Eof => return false,
                _ => {}
            }
        }
        false
    }

    /// Parses `toscalar(tabular)`.
    fn toscalar_call(&mut self) -> Option<Expr> {
        let start = self.bump().span.start as usize;
        let open = self.bump().span;
        let tabular = self.tabular_expr()?;
        if !self.at(&TokenKind::RParen) {
            self.unclosed(open, "`)` after the query");
            return None;
        }
        self.bump();
        Some(Expr { kind: ExprKind::ToScalar(Box::new(tabular)), span: self.span_from(start) })
    }

    fn paren_expr(&mut self) -> Option<Expr> {
        let open = self.bump().span;
        let inner = self.expr()?;
        if !self.at(&TokenKind::RParen) {
            self.unclosed(open, "`)`");
            return None;
        }
        self.bump();
        Some(Expr { kind: ExprKind::Paren(Box::new(inner)), span: self.span_from(open.start as usize) })
    }

    /// Reports a missing closing `)` for the `(` at `open`.
    pub(super) fn unclosed(&mut self, open: Span, what: &str) {
        if self.at(&TokenKind::Error) {
            return;
        }
        let message = format!("expected {what}, found {}", self.describe_current());
        let position = LineCol::locate(self.text, open.start as usize);
        let hint = format!("the `(` at line {}, column {} is not closed", position.line, position.column);
        self.error(Diagnostic::syntax("KQL1012", self.peek().span, message).with_hint(hint));
    }
}

/// Maps a word operator (`has`, `!contains_cs`...) to its [`BinaryOp`].
fn string_operator(word: &str) -> Option<BinaryOp> {
    let op = match word {
        "has" => BinaryOp::Has,
        "!has" => BinaryOp::NotHas,
        "has_cs" => BinaryOp::HasCs,
        "!has_cs" => BinaryOp::NotHasCs,
        "contains" => BinaryOp::Contains,
        "!contains" => BinaryOp::NotContains,
        "contains_cs" => BinaryOp::ContainsCs,
        "!contains_cs" => BinaryOp::NotContainsCs,
        "startswith" => BinaryOp::StartsWith,
        "!startswith" => BinaryOp::NotStartsWith,
        "startswith_cs" => BinaryOp::StartsWithCs,
        "!startswith_cs" => BinaryOp::NotStartsWithCs,
        "endswith" => BinaryOp::EndsWith,
        "!endswith" => BinaryOp::NotEndsWith,
        "endswith_cs" => BinaryOp::EndsWithCs,
        "!endswith_cs" => BinaryOp::NotEndsWithCs,
        "hasprefix" => BinaryOp::HasPrefix,
        "hassuffix" => BinaryOp::HasSuffix,
        _ => return None,
    };
    Some(op)
}
