//! The recursive-descent parser: tokens in, [`Query`] and diagnostics out.
//!
//! Every `parse_*`-like method returns `Option`: `None` means a diagnostic was
//! already reported and the caller should give up on the construct. Pipe
//! operators and statements then resynchronize at the next `|` or `;`, so one
//! mistake does not hide the next. Constructs are split by module: statements
//! here and in `let_stmt`, sources in `tabular`, pipe operators in
//! `operator`, expressions in `expr` and typed literals in `literal`.

mod expand;
mod expr;
mod let_stmt;
mod literal;
mod operator;
mod parse_op;
mod tabular;

use watchpost_diagnostics::{Diagnostic, Span};

use crate::ast::{Ident, Literal, Query, Statement};
use crate::lexer::{tokenize, Token, TokenKind};

/// Parses `text` into a query. Never fails: problems are returned as
/// diagnostics (sorted by position) next to the tree recovered around them.
pub fn parse(text: &str) -> (Query, Vec<Diagnostic>) {
    let (tokens, mut diagnostics) = tokenize(text);
    let mut parser = Parser { text, tokens, pos: 0, prev_end: 0, in_search: false, diagnostics: Vec::new() };
    let statements = parser.statements();
    diagnostics.append(&mut parser.diagnostics);
    diagnostics.sort_by_key(|diagnostic| diagnostic.span.start);
    (Query { statements, span: Span::new(0, text.len()) }, diagnostics)
}

/// The parser's state: the tokens, a cursor and the diagnostics so far.
struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// The end of the last consumed token, where node spans end.
    prev_end: usize,
    /// Inside a `search` predicate, where `Column:"term"` means `Column has "term"`.
    in_search: bool,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    fn statements(&mut self) -> Vec<Statement> {
        let mut statements = Vec::new();
        loop {
            while self.eat(&TokenKind::Semi) {}
            if self.at(&TokenKind::Eof) {
                return statements;
            }
            let statement =
                if self.at_word("let") { self.let_stmt().map(Statement::Let) } else { self.tabular_statement() };
            match statement {
                Some(statement) => {
                    statements.push(statement);
                    self.expect_statement_end();
                }
                None => self.skip_statement(),
            }
        }
    }

    fn tabular_statement(&mut self) -> Option<Statement> {
        self.tabular_expr().map(Statement::Tabular)
    }

    /// Reports anything but `;` or the end after a complete statement.
    fn expect_statement_end(&mut self) {
        if self.at(&TokenKind::Semi) || self.at(&TokenKind::Eof) {
            return;
        }
        let found = self.describe_current();
        let message = format!("expected `;` or the end of the query, found {found}");
        let hint = "separate statements with `;` and pipe operators with `|`";
        self.error(Diagnostic::syntax("KQL1014", self.peek().span, message).with_hint(hint));
        self.skip_statement();
    }

    /// Skips to the next `;` (or the end), consuming at least one token.
    fn skip_statement(&mut self) {
        while !self.at(&TokenKind::Semi) && !self.at(&TokenKind::Eof) {
            self.bump();
        }
    }

    /// Skips to the next `|`, `;`, unmatched `)` or `}` or the end, so the caller
    /// can continue with the next pipe operator.
    fn skip_to_boundary(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.peek().kind {
                TokenKind::Eof | TokenKind::Semi => return,
                TokenKind::Pipe if depth == 0 => return,
                TokenKind::RParen | TokenKind::RBrace if depth == 0 => return,
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    /// Whether the current token ends a pipe operator.
    fn at_boundary(&self) -> bool {
        matches!(
            self.peek().kind,
            TokenKind::Pipe | TokenKind::Semi | TokenKind::RParen | TokenKind::RBrace | TokenKind::Eof
        )
    }

    fn nth(&self, ahead: usize) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)]
    }

    fn peek(&self) -> &Token {
        self.nth(0)
    }

    fn at(&self, kind: &TokenKind) -> bool {
        &self.peek().kind == kind
    }

    /// Whether the current token is the word `word`.
    fn at_word(&self, word: &str) -> bool {
        self.nth_is_word(0, word)
    }

    fn nth_is_word(&self, ahead: usize, word: &str) -> bool {
        let token = self.nth(ahead);
        token.kind == TokenKind::Ident && token.span.text(self.text) == word
    }

    fn text_of(&self, token: &Token) -> &'a str {
        token.span.text(self.text)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.pos += 1;
            self.prev_end = token.span.end as usize;
        }
        token
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let matched = self.at(kind);
        if matched {
            self.bump();
        }
        matched
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let matched = self.at_word(word);
        if matched {
            self.bump();
        }
        matched
    }

    /// Consumes a `kind` token or reports "expected {what}".
    fn expect(&mut self, kind: &TokenKind, what: &str) -> Option<Span> {
        if self.at(kind) {
            return Some(self.bump().span);
        }
        self.error_expected(what);
        None
    }

    /// Consumes the word `word` or reports that it is missing.
    fn expect_word(&mut self, word: &str) -> Option<Span> {
        if self.at_word(word) {
            return Some(self.bump().span);
        }
        self.error_expected(&format!("`{word}`"));
        None
    }

    /// Reports "expected {what}, found ..." at the current token, unless the
    /// lexer already reported it.
    fn error_expected(&mut self, what: &str) {
        if self.at(&TokenKind::Error) {
            return;
        }
        let message = format!("expected {what}, found {}", self.describe_current());
        self.error(Diagnostic::syntax("KQL1012", self.peek().span, message));
    }

    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Describes the current token for a message: "`where`", "end of input".
    fn describe_current(&self) -> String {
        let token = self.peek();
        match &token.kind {
            TokenKind::Eof => "the end of the query".to_string(),
            TokenKind::Literal(_) => format!("the literal `{}`", self.text_of(token)),
            _ => format!("`{}`", self.text_of(token)),
        }
    }

    /// The offset where the next node starts.
    fn start(&self) -> usize {
        self.peek().span.start as usize
    }

    /// The span from `start` to the end of the last consumed token.
    fn span_from(&self, start: usize) -> Span {
        Span::new(start, self.prev_end.max(start))
    }

    /// Whether a name (plain or bracketed) starts at the current token.
    fn at_ident(&self) -> bool {
        self.at(&TokenKind::Ident) || self.at_bracketed_ident()
    }

    /// Whether `['name']` starts at the current token.
    fn at_bracketed_ident(&self) -> bool {
        self.at(&TokenKind::LBracket)
            && matches!(self.nth(1).kind, TokenKind::Literal(Literal::String(_)))
            && self.nth(2).kind == TokenKind::RBracket
    }

    /// Parses a plain or bracketed name, or reports "expected {what}".
    fn ident(&mut self, what: &str) -> Option<Ident> {
        if self.at(&TokenKind::Ident) {
            let token = self.bump();
            return Some(Ident { name: self.text_of(&token).to_string(), span: token.span });
        }
        if !self.at_bracketed_ident() {
            self.error_expected(what);
            return None;
        }
        let open = self.bump();
        let name_token = self.bump();
        let close = self.bump();
        let TokenKind::Literal(Literal::String(name)) = name_token.kind else {
            debug_assert!(false, "at_bracketed_ident checked the string");
            return None;
        };
        Some(Ident { name, span: open.span.cover(close.span) })
    }

    /// Parses `item (, item)*`, at least one item.
    fn comma_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.eat(&TokenKind::Comma) {
            items.push(item(self)?);
        }
        Some(items)
    }
}
