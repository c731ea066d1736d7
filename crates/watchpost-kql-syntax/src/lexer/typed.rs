//! Literals written as `keyword(raw text)` whose raw text is not made of
//! ordinary tokens: `datetime(2024-01-01 10:00)`, `time(1.02:03:04)`,
//! `guid(74be27de-...)` and `dynamic({"a": [1, 2]})`.
//!
//! Literals with ordinary contents (`long(5)`, `real(null)`) are left to the
//! parser.

use watchpost_diagnostics::{Diagnostic, Span};

use super::{Lexer, TokenKind};
use crate::ast::Literal;
use crate::calendar;

const RAW_LITERALS: [&str; 6] = ["datetime", "date", "time", "timespan", "guid", "dynamic"];

impl Lexer<'_> {
    /// Lexes a raw literal when the word at `start..self.pos` is one of the
    /// raw literal keywords and `(` follows; returns whether it did.
    pub(super) fn typed_literal(&mut self, start: usize) -> bool {
        let keyword = &self.text[start..self.pos];
        if !RAW_LITERALS.contains(&keyword) {
            return false;
        }
        let open = self.pos + self.text[self.pos..].len() - self.text[self.pos..].trim_start_matches([' ', '\t']).len();
        if self.byte_at(open) != Some(b'(') {
            return false;
        }
        let content_start = open + 1;
        let close = if keyword == "dynamic" {
            self.balanced_close(content_start)
        } else {
            self.text[content_start..].find([')', '\n']).map(|offset| content_start + offset)
        };
        match close.filter(|&close| self.byte_at(close) == Some(b')')) {
            Some(close) => self.raw_literal(start, keyword, content_start, close),
            None => self.unterminated_literal(start, keyword, content_start),
        }
        true
    }

    fn raw_literal(&mut self, start: usize, keyword: &str, content_start: usize, close: usize) {
        self.pos = close + 1;
        let raw = &self.text[content_start..close];
        let content = raw.trim();
        let content_offset = content_start + (raw.len() - raw.trim_start().len());
        let content_span = Span::new(content_offset, content_offset + content.len());
        match decode(keyword, content) {
            Ok(literal) => self.push(TokenKind::Literal(literal), start),
            Err((code, message, hint)) => {
                self.error(Diagnostic::syntax(code, content_span, message).with_hint(hint));
                self.push(TokenKind::Error, start);
            }
        }
    }

    fn unterminated_literal(&mut self, start: usize, keyword: &str, content_start: usize) {
        let rest = &self.text[content_start..];
        let line_end = if keyword == "dynamic" { rest.len() } else { rest.find('\n').unwrap_or(rest.len()) };
        self.pos = content_start + line_end;
        let message = format!("unterminated `{keyword}(` literal");
        let diagnostic = Diagnostic::syntax("KQL1007", Span::new(start, self.pos), message);
        self.error(diagnostic.with_hint("add the closing `)`"));
        self.push(TokenKind::Error, start);
    }

    /// Finds the `)` closing a `dynamic(` whose contents start at `from`,
    /// skipping nested brackets and JSON strings.
    fn balanced_close(&self, from: usize) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        let mut pos = from;
        while let Some(&byte) = bytes.get(pos) {
            match byte {
                b'(' | b'[' | b'{' => depth += 1,
                b')' if depth == 0 => return Some(pos),
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b'"' | b'\'' => pos = skip_quoted(bytes, pos),
                _ => {}
            }
            pos += 1;
        }
        None
    }
}

/// Returns the position of the quote closing the string opened at `open`
/// (or the last byte when it is unterminated).
fn skip_quoted(bytes: &[u8], open: usize) -> usize {
    let quote = bytes[open];
    let mut pos = open + 1;
    while let Some(&byte) = bytes.get(pos) {
        match byte {
            b'\\' => pos += 1,
            _ if byte == quote => return pos,
            _ => {}
        }
        pos += 1;
    }
    bytes.len().saturating_sub(1)
}

type DecodeError = (&'static str, String, &'static str);

fn decode(keyword: &str, content: &str) -> Result<Literal, DecodeError> {
    match keyword {
        "datetime" | "date" if content == "null" => Ok(Literal::Null(Some("datetime".to_string()))),
        "datetime" | "date" => calendar::parse_datetime(content).map(Literal::Datetime).map_err(|message| {
            let hint = "write datetimes as `datetime(2024-01-31)` or `datetime(2024-01-31T10:00:00Z)`";
            ("KQL1004", format!("invalid datetime literal: {message}"), hint)
        }),
        "time" | "timespan" if content == "null" => Ok(Literal::Null(Some("timespan".to_string()))),
        "time" | "timespan" => calendar::parse_time(content).map(Literal::Timespan).map_err(|message| {
            let hint = "write timespans as `time(1.02:03:04)` or `timespan(2d)`";
            ("KQL1005", format!("invalid timespan literal: {message}"), hint)
        }),
        "guid" if content == "null" => Ok(Literal::Null(Some("guid".to_string()))),
        "guid" => decode_guid(content),
        _ if content == "null" => Ok(Literal::Null(None)),
        _ if content.is_empty() => Err((
            "KQL1007",
            "empty `dynamic()` literal".to_string(),
            "write `dynamic(null)`, `dynamic([])` or `dynamic({})`",
        )),
        _ => Ok(Literal::Dynamic(content.to_string())),
    }
}

fn decode_guid(content: &str) -> Result<Literal, DecodeError> {
    let groups: Vec<&str> = content.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let all_hex = content.bytes().all(|byte| byte.is_ascii_hexdigit() || byte == b'-');
    if all_hex && lengths == [8, 4, 4, 4, 12] {
        return Ok(Literal::Guid(content.to_ascii_lowercase()));
    }
    let message = format!("invalid guid literal `{content}`");
    Err(("KQL1006", message, "a guid has 32 hex digits grouped 8-4-4-4-12"))
}
