//! `let name = value;` statements, whose value is a scalar expression or a
//! tabular expression.

use super::Parser;
use crate::ast::{
    ColumnDecl, Expr, ExprKind, FunctionBody, FunctionDef, FunctionParam, Ident, LetStmt, LetValue, ParamType,
    TabularExpr, TabularSource,
};
use crate::lexer::TokenKind;

impl Parser<'_> {
    /// Parses a `let` statement at the `let` keyword.
    pub(super) fn let_stmt(&mut self) -> Option<LetStmt> {
        let start = self.bump().span.start as usize;
        let name = self.ident("a name after `let`")?;
        self.expect(&TokenKind::Assign, &format!("`=` after `let {}`", name.name))?;
        let value = if self.at_function_def() {
            LetValue::Function(self.function_def()?)
        } else if self.let_value_is_tabular() {
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

    /// Whether a function definition, `(params) { body }`, starts here.
    fn at_function_def(&self) -> bool {
        if !self.at(&TokenKind::LParen) {
            return false;
        }
        let empty_params = self.nth(1).kind == TokenKind::RParen && self.nth(2).kind == TokenKind::LBrace;
        empty_params || (self.nth(1).kind == TokenKind::Ident && self.nth(2).kind == TokenKind::Colon)
    }

    /// Parses `(name: type [= default], ...) { expr }`.
    fn function_def(&mut self) -> Option<FunctionDef> {
        self.bump();
        let params = if self.at(&TokenKind::RParen) { Vec::new() } else { self.comma_list(Self::function_param)? };
        self.expect(&TokenKind::RParen, "`,` or `)` after the parameters")?;
        self.expect(&TokenKind::LBrace, "`{` and the function body")?;
        let mut lets = Vec::new();
        while self.at_word("let") {
            lets.push(self.let_stmt()?);
            self.expect(&TokenKind::Semi, "`;` after the `let` statement")?;
            while self.eat(&TokenKind::Semi) {}
        }
        let body = if self.function_body_is_tabular() {
            let tabular = self.tabular_expr()?;
            // As for `let`: a recovered `{ T | <broken> }` reads as `{ T }`.
            match bare_table(&tabular) {
                Some(name) => FunctionBody::Scalar(Expr { span: name.span, kind: ExprKind::Name(name.clone()) }),
                None => FunctionBody::Tabular(tabular),
            }
        } else {
            FunctionBody::Scalar(self.expr()?)
        };
        self.expect(&TokenKind::RBrace, "`}` after the function body")?;
        Some(FunctionDef { params, lets, body })
    }

    /// Whether the body at the cursor is a query: it starts with a source
    /// keyword or has a `|` outside parentheses before its closing `}`.
    fn function_body_is_tabular(&self) -> bool {
        // `datatable(...)`, or `(datatable(...))` as `materialize(...)` of
        // one prints.
        if self.at_source_keyword() || (self.at(&TokenKind::LParen) && self.source_keyword_at(1)) {
            return true;
        }
        let mut depth = 0usize;
        for token in &self.tokens[self.pos..] {
            match token.kind {
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RBrace if depth == 0 => return false,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => depth = depth.saturating_sub(1),
                TokenKind::Pipe if depth == 0 => return true,
                TokenKind::Semi | TokenKind::Eof => return false,
                _ => {}
            }
        }
        false
    }

    fn function_param(&mut self) -> Option<FunctionParam> {
        let name = self.ident("a parameter name")?;
        self.expect(&TokenKind::Colon, "`:` and a type after the parameter name")?;
        let param_type = if self.at(&TokenKind::LParen) {
            self.tabular_param_type()?
        } else {
            ParamType::Scalar(self.ident("a type name such as `long` or `string`")?)
        };
        let default = if self.eat(&TokenKind::Assign) { Some(self.expr()?) } else { None };
        Some(FunctionParam { name, param_type, default })
    }

    /// Parses `(Col: type, ..., *)` or `(*)`, the schema of a tabular parameter.
    fn tabular_param_type(&mut self) -> Option<ParamType> {
        let open = self.bump().span;
        let mut columns = Vec::new();
        let mut any_columns = false;
        loop {
            if self.eat(&TokenKind::Star) {
                any_columns = true;
            } else {
                let name = self.ident("a column name, or `*`")?;
                self.expect(&TokenKind::Colon, "`:` and a type after the column name")?;
                let type_name = self.ident("a type name such as `long` or `string`")?;
                columns.push(ColumnDecl { name, type_name });
            }
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        if !self.at(&TokenKind::RParen) {
            self.unclosed(open, "`,` or `)` after the table's columns");
            return None;
        }
        self.bump();
        Some(ParamType::Tabular { columns, any_columns })
    }

    /// Decides whether the value starting at the cursor is tabular: it starts
    /// with `print`, `datatable` or `range`, or contains a `|` before the
    /// statement's `;` outside the parentheses of a call. A bare name (`let t = T;`) is read as a scalar
    /// `Name`; the binder resolves what it refers to.
    fn let_value_is_tabular(&self) -> bool {
        // `datatable(...)`, or `(datatable(...))` as `materialize(...)` of
        // one prints.
        if self.at_source_keyword() || (self.at(&TokenKind::LParen) && self.source_keyword_at(1)) {
            return true;
        }
        // A `|` inside a call's parentheses (`toscalar(T | count)`) belongs
        // to a nested query; one inside a leading `(` makes the value tabular.
        let rest = &self.tokens[self.pos..];
        let mut in_leading_parens = self.at(&TokenKind::LParen);
        let mut depth = 0usize;
        for token in rest.iter().take_while(|token| !matches!(token.kind, TokenKind::Semi | TokenKind::Eof)) {
            match token.kind {
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => {
                    depth = depth.saturating_sub(1);
                    in_leading_parens &= depth > 0;
                }
                TokenKind::Pipe if depth == 0 || (depth == 1 && in_leading_parens) => return true,
                _ => {}
            }
        }
        false
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
