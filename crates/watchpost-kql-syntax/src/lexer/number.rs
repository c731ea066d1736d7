//! Numbers: `42`, `0x2A`, `1.5`, `2.`, `1e3`, and timespans, which are a
//! number directly followed by a unit (`1d`, `1.5h`, `100ms`).

use watchpost_diagnostics::{Diagnostic, Span};

use super::{is_word_byte, Lexer, TokenKind};
use crate::ast::Literal;
use crate::calendar;

const UNIT_HINT: &str = "timespan units are d, h, m, s, ms, microsecond and tick, as in `1d` or `30m`";

impl Lexer<'_> {
    pub(super) fn number(&mut self, start: usize) {
        if self.peek(0) == Some(b'0') && matches!(self.peek(1), Some(b'x' | b'X')) {
            self.hex_number(start);
            return;
        }
        let is_real = self.decimal_digits();
        let number_end = self.pos;
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        let number = &self.text[start..number_end];
        let suffix = &self.text[number_end..self.pos];
        let literal = match suffix {
            "" if is_real => number.parse::<f64>().ok().map(Literal::Real),
            "" => number.parse::<i64>().ok().map(Literal::Long),
            _ => return self.timespan(start, number_end),
        };
        match literal {
            Some(literal) => self.push(TokenKind::Literal(literal), start),
            None => self.bad_number(start, format!("`{number}` is out of range for a long"), None),
        }
    }

    /// Consumes digits with an optional fraction and exponent; returns
    /// whether the number is real.
    fn decimal_digits(&mut self) -> bool {
        self.skip_digits();
        let mut is_real = false;
        // `1..10` is a range, not `1.` followed by `.10`.
        if self.peek(0) == Some(b'.') && self.peek(1) != Some(b'.') {
            is_real = true;
            self.pos += 1;
            self.skip_digits();
        }
        let exponent_digit = match self.peek(1) {
            Some(b'+' | b'-') => self.peek(2),
            other => other,
        };
        if matches!(self.peek(0), Some(b'e' | b'E')) && exponent_digit.is_some_and(|b| b.is_ascii_digit()) {
            is_real = true;
            self.pos += 2;
            self.skip_digits();
        }
        is_real
    }

    fn skip_digits(&mut self) {
        while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn hex_number(&mut self, start: usize) {
        self.pos += 2;
        while self.peek(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        let digits = &self.text[start + 2..self.pos];
        // Hex literals denote the bits of a long, so 0xFFFFFFFFFFFFFFFF is -1.
        match u64::from_str_radix(digits, 16) {
            Ok(value) => self.push(TokenKind::Literal(Literal::Long(value as i64)), start),
            Err(_) => {
                let text = &self.text[start..self.pos];
                self.bad_number(start, format!("`{text}` is not a valid hexadecimal number"), None)
            }
        }
    }

    fn timespan(&mut self, start: usize, number_end: usize) {
        let number = &self.text[start..number_end];
        let suffix = &self.text[number_end..self.pos];
        let Some(unit) = calendar::unit_ticks(suffix) else {
            let message = format!("`{suffix}` is not a timespan unit in `{}`", &self.text[start..self.pos]);
            return self.bad_number(start, message, Some(UNIT_HINT));
        };
        match calendar::scaled_ticks(number, unit) {
            Some(ticks) => self.push(TokenKind::Literal(Literal::Timespan(ticks)), start),
            None => {
                let message = format!("the timespan `{}` is out of range", &self.text[start..self.pos]);
                self.bad_number(start, message, None)
            }
        }
    }

    fn bad_number(&mut self, start: usize, message: String, hint: Option<&str>) {
        let mut diagnostic = Diagnostic::syntax("KQL1003", Span::new(start, self.pos), message);
        if let Some(hint) = hint {
            diagnostic = diagnostic.with_hint(hint);
        }
        self.error(diagnostic);
        self.push(TokenKind::Error, start);
    }
}
