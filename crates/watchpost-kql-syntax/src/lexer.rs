//! The KQL lexer: turns text into [`Token`]s with spans, skipping whitespace
//! and `//` comments.
//!
//! Literals are fully decoded here (numbers, timespans, strings, and the
//! parenthesized literals `datetime(...)`, `time(...)`, `guid(...)`,
//! `dynamic(...)` whose contents are not ordinary tokens). Keywords are not:
//! a word is always [`TokenKind::Ident`] and the parser decides by position.
//! The one positional rule here is that right after `|` a word may contain
//! `-`, so `project-away` is one token there and `a-b` is a subtraction
//! elsewhere. Problems are reported as diagnostics and produce a
//! [`TokenKind::Error`] token, so lexing never stops early.

mod number;
mod string;
#[cfg(test)]
mod tests;
mod typed;

use watchpost_diagnostics::{Diagnostic, Span};

use crate::ast::Literal;

/// One token and the text it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A word: a name, a keyword or a word operator (`has`, `and`). The text
    /// is the token's span.
    Ident,
    /// `!` directly followed by a word: `!has`, `!in`, `!between`.
    BangWord,
    /// A decoded literal: number, timespan, string, `datetime(...)`, ...
    Literal(Literal),
    Pipe,
    Semi,
    Comma,
    Dot,
    DotDot,
    Colon,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    /// `=`
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~`
    EqTilde,
    /// `!~`
    NotTilde,
    /// `~`, as in `in~`.
    Tilde,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    /// Text the lexer could not make sense of; a diagnostic was reported.
    Error,
    /// The end of the text; always the last token.
    Eof,
}

/// Splits `text` into tokens, the last of which is [`TokenKind::Eof`], and
/// returns them with the problems found.
pub fn tokenize(text: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer { text, pos: 0, tokens: Vec::new(), diagnostics: Vec::new() };
    lexer.run();
    (lexer.tokens, lexer.diagnostics)
}

/// Whether `byte` may start a word.
pub(crate) fn is_word_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$'
}

/// Whether `byte` may continue a word.
pub(crate) fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    diagnostics: Vec<Diagnostic>,
}

impl Lexer<'_> {
    fn run(&mut self) {
        loop {
            self.skip_trivia();
            if self.pos >= self.text.len() {
                self.push(TokenKind::Eof, self.pos);
                return;
            }
            self.token();
        }
    }

    fn byte_at(&self, pos: usize) -> Option<u8> {
        self.text.as_bytes().get(pos).copied()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.byte_at(self.pos + ahead)
    }

    /// Pushes a token covering `start..self.pos`.
    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token { kind, span: Span::new(start, self.pos) });
    }

    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn skip_trivia(&mut self) {
        while let Some(byte) = self.peek(0) {
            if byte.is_ascii_whitespace() {
                self.pos += 1;
            } else if byte == b'/' && self.peek(1) == Some(b'/') {
                self.pos = self.text[self.pos..].find('\n').map_or(self.text.len(), |offset| self.pos + offset);
            } else {
                return;
            }
        }
    }

    fn token(&mut self) {
        let start = self.pos;
        let byte = self.peek(0).expect("called before the end of the text");
        match byte {
            b'"' | b'\'' => self.string(start),
            b'@' if matches!(self.peek(1), Some(b'"' | b'\'')) => self.verbatim_string(start),
            b'0'..=b'9' => self.number(start),
            b'!' if self.peek(1).is_some_and(is_word_start) => self.bang_word(start),
            _ if is_word_start(byte) => self.word(start),
            _ => self.punctuation(start),
        }
    }

    /// Lexes a word, or a literal that starts like one (`h"..."`,
    /// `datetime(...)`).
    fn word(&mut self, start: usize) {
        let quote_at = |ahead: usize| matches!(self.peek(ahead), Some(b'"' | b'\''));
        let obfuscated = quote_at(1) || (self.peek(1) == Some(b'@') && quote_at(2));
        if matches!(self.peek(0), Some(b'h' | b'H')) && obfuscated {
            self.obfuscated_string(start);
            return;
        }
        let after_pipe = matches!(self.tokens.last(), Some(Token { kind: TokenKind::Pipe, .. }));
        self.pos += 1;
        loop {
            while self.peek(0).is_some_and(is_word_byte) {
                self.pos += 1;
            }
            let dashed_word = self.peek(0) == Some(b'-') && self.peek(1).is_some_and(|b| b.is_ascii_alphabetic());
            if !(after_pipe && dashed_word) {
                break;
            }
            self.pos += 1;
        }
        if !self.typed_literal(start) {
            self.push(TokenKind::Ident, start);
        }
    }

    fn bang_word(&mut self, start: usize) {
        self.pos += 1;
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        self.push(TokenKind::BangWord, start);
    }

    fn punctuation(&mut self, start: usize) {
        let (kind, len) = match (self.peek(0).unwrap_or(0), self.peek(1).unwrap_or(0)) {
            (b'.', b'.') => (TokenKind::DotDot, 2),
            (b'=', b'=') => (TokenKind::EqEq, 2),
            (b'=', b'~') => (TokenKind::EqTilde, 2),
            (b'!', b'=') => (TokenKind::NotEq, 2),
            (b'!', b'~') => (TokenKind::NotTilde, 2),
            (b'<', b'=') => (TokenKind::Le, 2),
            (b'>', b'=') => (TokenKind::Ge, 2),
            (b'<', b'>') => (TokenKind::NotEq, 2),
            (b'|', _) => (TokenKind::Pipe, 1),
            (b';', _) => (TokenKind::Semi, 1),
            (b',', _) => (TokenKind::Comma, 1),
            (b'.', _) => (TokenKind::Dot, 1),
            (b':', _) => (TokenKind::Colon, 1),
            (b'(', _) => (TokenKind::LParen, 1),
            (b')', _) => (TokenKind::RParen, 1),
            (b'[', _) => (TokenKind::LBracket, 1),
            (b']', _) => (TokenKind::RBracket, 1),
            (b'{', _) => (TokenKind::LBrace, 1),
            (b'}', _) => (TokenKind::RBrace, 1),
            (b'=', _) => (TokenKind::Assign, 1),
            (b'<', _) => (TokenKind::Lt, 1),
            (b'>', _) => (TokenKind::Gt, 1),
            (b'~', _) => (TokenKind::Tilde, 1),
            (b'+', _) => (TokenKind::Plus, 1),
            (b'-', _) => (TokenKind::Minus, 1),
            (b'*', _) => (TokenKind::Star, 1),
            (b'/', _) => (TokenKind::Slash, 1),
            (b'%', _) => (TokenKind::Percent, 1),
            _ => return self.unexpected_char(start),
        };
        self.pos += len;
        self.push(kind, start);
    }

    fn unexpected_char(&mut self, start: usize) {
        let ch = self.text[start..].chars().next().expect("called before the end of the text");
        self.pos += ch.len_utf8();
        let span = Span::new(start, self.pos);
        let mut diagnostic = Diagnostic::syntax("KQL1001", span, format!("unexpected character `{ch}`"));
        if ch == '`' {
            diagnostic = diagnostic.with_hint("quote strings with `\"` or `'`");
        }
        self.error(diagnostic);
        self.push(TokenKind::Error, start);
    }
}
