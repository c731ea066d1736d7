//! String literals: `"..."` and `'...'` with backslash escapes, verbatim
//! `@"..."` with doubled-quote escapes, and obfuscated `h"..."` (a plain
//! string whose value the service keeps out of logs). Strings end at the end
//! of their line.

use watchpost_diagnostics::{Diagnostic, Span};

use super::{Lexer, TokenKind};
use crate::ast::Literal;

impl Lexer<'_> {
    pub(super) fn string(&mut self, start: usize) {
        let quote = self.peek(0).expect("called at a quote");
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(ch) = self.text[self.pos..].chars().next().filter(|&ch| ch != '\n') else {
                return self.unterminated(start, quote);
            };
            self.pos += ch.len_utf8();
            match ch {
                _ if ch == char::from(quote) => break,
                '\\' => self.escape(&mut value),
                _ => value.push(ch),
            }
        }
        self.push(TokenKind::Literal(Literal::String(value)), start);
    }

    /// Decodes the escape after a `\` into `value`.
    fn escape(&mut self, value: &mut String) {
        let escape_start = self.pos - 1;
        let Some(ch) = self.text[self.pos..].chars().next().filter(|&ch| ch != '\n') else {
            return;
        };
        self.pos += ch.len_utf8();
        let decoded = match ch {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            '\\' | '\'' | '"' => ch,
            _ => {
                let span = Span::new(escape_start, self.pos);
                let message = format!("unknown escape sequence `\\{ch}`");
                let hint = "use `\\\\` for a backslash, or a verbatim string such as @\"C:\\Temp\"";
                self.error(Diagnostic::syntax("KQL1002", span, message).with_hint(hint));
                ch
            }
        };
        value.push(decoded);
    }

    pub(super) fn verbatim_string(&mut self, start: usize) {
        self.pos += 1;
        let quote = char::from(self.peek(0).expect("called at `@` and a quote"));
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(ch) = self.text[self.pos..].chars().next().filter(|&ch| ch != '\n') else {
                return self.unterminated(start, quote as u8);
            };
            self.pos += ch.len_utf8();
            if ch != quote {
                value.push(ch);
            } else if self.peek(0) == Some(quote as u8) {
                self.pos += 1;
                value.push(quote);
            } else {
                break;
            }
        }
        self.push(TokenKind::Literal(Literal::String(value)), start);
    }

    /// Lexes `h"..."`, `h'...'` or `h@"..."`, whose value is the plain string.
    pub(super) fn obfuscated_string(&mut self, start: usize) {
        self.pos += 1;
        let inner_start = self.pos;
        if self.peek(0) == Some(b'@') {
            self.verbatim_string(inner_start);
        } else {
            self.string(inner_start);
        }
        let token = self.tokens.last_mut().expect("a string token was just pushed");
        token.span = Span::new(start, token.span.end as usize);
    }

    fn unterminated(&mut self, start: usize, quote: u8) {
        let quote = char::from(quote);
        let span = Span::new(start, self.pos);
        let message = "unterminated string literal";
        let hint = format!("add a closing `{quote}` before the end of the line");
        self.error(Diagnostic::syntax("KQL1002", span, message).with_hint(hint));
        self.push(TokenKind::Error, start);
    }
}
