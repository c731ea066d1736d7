//! A validating JSON scanner made for the Data Collector decoder.
//!
//! Written by hand because no JSON crate does this job in one pass: the
//! decoder wants each value once, in body order, straight into a column
//! buffer, and most of its work is strings. `jiter` (used before) and
//! `serde_json` decode every string and every key through a general string
//! decoder; here the common cases are cut short:
//! * a string without escapes is found with a word-at-a-time search for the
//!   quote, the backslash and control bytes, and handed out borrowed from
//!   the body;
//! * a key is first compared byte for byte with the key the same position
//!   held in the previous record, so the usual record costs no key decoding.
//!
//! The scanner still checks the whole JSON grammar (strings, escapes,
//! numbers, literals, nesting), so a malformed body is refused with the line
//! and column of the fault. The body has been checked to be UTF-8 before it
//! gets here, so values are sliced out of it as `str`s without a second check.

use std::fmt;

/// Deepest nesting of objects and arrays inside one value.
const MAX_DEPTH: usize = 128;

/// A fault in the JSON text, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScanError {
    pub(super) what: &'static str,
    pub(super) offset: usize,
}

impl ScanError {
    /// The message with a 1-based line and column.
    pub(super) fn describe(&self, body: &[u8]) -> String {
        let (line, column) = line_column(body, self.offset);
        format!("{} at line {line} column {column}", self.what)
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(super) fn line_column(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line_start = before.iter().rposition(|&byte| byte == b'\n').map_or(0, |idx| idx + 1);
    let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = 1 + before[line_start..].iter().filter(|&&byte| byte & 0b1100_0000 != 0b1000_0000).count();
    (line, column)
}

pub(super) type ScanResult<T> = Result<T, ScanError>;

/// The kind of the next value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    String,
    Number,
    True,
    False,
    Null,
    Object,
    Array,
}

pub(super) struct Scanner<'b> {
    /// The body as text, for slicing out values without re-checking UTF-8
    /// (slices are cut at ASCII delimiters, so always at char boundaries).
    text: &'b str,
    body: &'b [u8],
    pos: usize,
}

impl<'b> Scanner<'b> {
    /// A scanner over `text` (the body, checked to be UTF-8 once).
    pub(super) fn new(text: &'b str) -> Self {
        Scanner { text, body: text.as_bytes(), pos: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn fail<T>(&self, what: &'static str) -> ScanResult<T> {
        Err(ScanError { what, offset: self.pos })
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(&byte) = self.body.get(self.pos) {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The first byte of the next token, after whitespace.
    #[inline]
    fn peek_byte(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.body.get(self.pos).copied()
    }

    /// The kind of the next value.
    #[inline]
    pub(super) fn peek(&mut self) -> ScanResult<Next> {
        match self.peek_byte() {
            Some(b'"') => Ok(Next::String),
            Some(b'{') => Ok(Next::Object),
            Some(b'[') => Ok(Next::Array),
            Some(b't') => Ok(Next::True),
            Some(b'f') => Ok(Next::False),
            Some(b'n') => Ok(Next::Null),
            Some(b'-' | b'0'..=b'9') => Ok(Next::Number),
            Some(_) => self.fail("expected a value"),
            None => self.fail("EOF while parsing a value"),
        }
    }

    /// Consumes `{` and returns whether the object has a first member.
    pub(super) fn enter_object(&mut self) -> ScanResult<bool> {
        debug_assert_eq!(self.peek_byte(), Some(b'{'));
        self.pos += 1;
        match self.peek_byte() {
            Some(b'}') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b'"') => Ok(true),
            Some(_) => self.fail("expected a property name"),
            None => self.fail("EOF while parsing an object"),
        }
    }

    /// After a member's value: consumes `,` (true: another member follows)
    /// or `}` (false).
    pub(super) fn next_member(&mut self) -> ScanResult<bool> {
        match self.peek_byte() {
            Some(b',') => {
                self.pos += 1;
                if self.peek_byte() == Some(b'"') {
                    Ok(true)
                } else {
                    self.fail("expected a property name")
                }
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => self.fail("expected `,` or `}` after an object value"),
            None => self.fail("EOF while parsing an object"),
        }
    }

    /// Consumes `[` and returns whether the array has a first element.
    pub(super) fn enter_array(&mut self) -> ScanResult<bool> {
        debug_assert_eq!(self.peek_byte(), Some(b'['));
        self.pos += 1;
        match self.peek_byte() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => Ok(true),
            None => self.fail("EOF while parsing a list"),
        }
    }

    /// After an element: consumes `,` (true) or `]` (false).
    pub(super) fn next_element(&mut self) -> ScanResult<bool> {
        match self.peek_byte() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => self.fail("expected `,` or `]` after a list element"),
            None => self.fail("EOF while parsing a list"),
        }
    }

    /// Checks that nothing but whitespace is left.
    pub(super) fn finish(&mut self) -> ScanResult<()> {
        match self.peek_byte() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// If the next key is exactly `key` (written without escapes), consumes
    /// it and its colon and returns true. Otherwise consumes nothing.
    #[inline]
    pub(super) fn key_is(&mut self, key: &str) -> bool {
        let start = self.pos + 1;
        let end = start + key.len();
        if self.body.get(end) != Some(&b'"') || &self.body[start..end] != key.as_bytes() {
            return false;
        }
        let after = end + 1;
        if self.body.get(after) == Some(&b':') {
            self.pos = after + 1;
            return true;
        }
        self.pos = after;
        if self.peek_byte() == Some(b':') {
            self.pos += 1;
            true
        } else {
            self.pos = start - 1;
            false
        }
    }

    /// Reads a key and its colon. `scratch` holds the key if it had escapes.
    pub(super) fn key<'s>(&mut self, scratch: &'s mut String) -> ScanResult<&'s str>
    where
        'b: 's,
    {
        let key = self.string(scratch)?;
        if self.peek_byte() != Some(b':') {
            return self.fail("expected `:` after a property name");
        }
        self.pos += 1;
        Ok(key)
    }

    /// Reads a string value; the scanner stands at its opening quote.
    /// Returns it borrowed from the body when it has no escapes, else
    /// unescaped into `scratch`.
    #[inline]
    pub(super) fn string<'s>(&mut self, scratch: &'s mut String) -> ScanResult<&'s str>
    where
        'b: 's,
    {
        let start = self.pos + 1;
        let stop = start + find_special(&self.body[start..]);
        match self.body.get(stop) {
            Some(b'"') => {
                self.pos = stop + 1;
                Ok(&self.text[start..stop])
            }
            Some(b'\\') => {
                scratch.clear();
                scratch.push_str(&self.text[start..stop]);
                self.pos = stop;
                self.unescape_rest(scratch)?;
                Ok(scratch)
            }
            Some(_) => {
                self.pos = stop;
                self.fail("control character in a string")
            }
            None => {
                self.pos = self.body.len();
                self.fail("EOF while parsing a string")
            }
        }
    }

    /// Continues a string at a backslash, appending the unescaped text to
    /// `out`, and consumes the closing quote.
    fn unescape_rest(&mut self, out: &mut String) -> ScanResult<()> {
        loop {
            match self.body.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.unescape_one(out)?,
                Some(_) => return self.fail("control character in a string"),
                None => return self.fail("EOF while parsing a string"),
            }
            let run = find_special(&self.body[self.pos..]);
            out.push_str(&self.text[self.pos..self.pos + run]);
            self.pos += run;
        }
    }

    /// Decodes the escape at the scanner's backslash.
    fn unescape_one(&mut self, out: &mut String) -> ScanResult<()> {
        let Some(&kind) = self.body.get(self.pos + 1) else {
            self.pos = self.body.len();
            return self.fail("EOF while parsing a string");
        };
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.pos += 2;
                let unit = self.hex4()?;
                let ch = if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate wants a low one right after it.
                    if self.body.get(self.pos) == Some(&b'\\') && self.body.get(self.pos + 1) == Some(&b'u') {
                        let saved = self.pos;
                        self.pos += 2;
                        let low = self.hex4()?;
                        if (0xDC00..0xE000).contains(&low) {
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        } else {
                            self.pos = saved;
                            None
                        }
                    } else {
                        None
                    }
                } else {
                    char::from_u32(unit)
                };
                // A lone surrogate cannot be UTF-8: keep the text, mark the spot.
                out.push(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(());
            }
            _ => {
                self.pos += 1;
                return self.fail("invalid escape");
            }
        };
        out.push(simple);
        self.pos += 2;
        Ok(())
    }

    fn hex4(&mut self) -> ScanResult<u32> {
        let Some(digits) = self.body.get(self.pos..self.pos + 4) else {
            self.pos = self.body.len();
            return self.fail("EOF while parsing a string");
        };
        let mut value = 0u32;
        for &digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return self.fail("invalid \\u escape"),
            };
            value = value << 4 | u32::from(nibble);
        }
        self.pos += 4;
        Ok(value)
    }

    /// Reads a number and returns its JSON text.
    pub(super) fn number(&mut self) -> ScanResult<&'b str> {
        let start = self.pos;
        let body = self.body;
        let mut at = start;
        if body.get(at) == Some(&b'-') {
            at += 1;
        }
        match body.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at += digits(&body[at..]),
            _ => {
                self.pos = at;
                return self.fail("invalid number");
            }
        }
        if body.get(at) == Some(&b'.') {
            let n = digits(&body[at + 1..]);
            if n == 0 {
                self.pos = at + 1;
                return self.fail("invalid number");
            }
            at += 1 + n;
        }
        if matches!(body.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(body.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let n = digits(&body[at..]);
            if n == 0 {
                self.pos = at;
                return self.fail("invalid number");
            }
            at += n;
        }
        self.pos = at;
        Ok(&self.text[start..at])
    }

    /// Reads `true`, `false` or `null` as announced by `next`.
    pub(super) fn literal(&mut self, next: Next) -> ScanResult<()> {
        let word: &[u8] = match next {
            Next::True => b"true",
            Next::False => b"false",
            _ => b"null",
        };
        if self.body[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.fail("expected a value")
        }
    }

    /// Reads an object or array and returns its JSON text, checked.
    pub(super) fn nested(&mut self, scratch: &mut String) -> ScanResult<&'b str> {
        let start = self.pos;
        self.skip_value(scratch, 0)?;
        Ok(&self.text[start..self.pos])
    }

    fn skip_value(&mut self, scratch: &mut String, depth: usize) -> ScanResult<()> {
        match self.peek()? {
            Next::String => self.string(scratch).map(drop),
            Next::Number => self.number().map(drop),
            next @ (Next::True | Next::False | Next::Null) => self.literal(next),
            Next::Object => {
                if depth >= MAX_DEPTH {
                    return self.fail("nested too deeply");
                }
                let mut more = self.enter_object()?;
                while more {
                    self.key(scratch)?;
                    self.skip_value(scratch, depth + 1)?;
                    more = self.next_member()?;
                }
                Ok(())
            }
            Next::Array => {
                if depth >= MAX_DEPTH {
                    return self.fail("nested too deeply");
                }
                let mut more = self.enter_array()?;
                while more {
                    self.skip_value(scratch, depth + 1)?;
                    more = self.next_element()?;
                }
                Ok(())
            }
        }
    }
}

/// Length of the leading run of decimal digits.
fn digits(bytes: &[u8]) -> usize {
    bytes.iter().position(|byte| !byte.is_ascii_digit()).unwrap_or(bytes.len())
}

/// Index of the first `"`, `\` or control byte (< 0x20), or the length.
///
/// Eight bytes at a time: for each byte `b`, `(b ^ c) - 1` borrows into the
/// top bit only when `b == c`, and `b - 0x20` does when `b < 0x20`; masking
/// with `!b` drops bytes that had their top bit set already (non-ASCII).
#[inline]
fn find_special(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut idx = 0;
    while idx + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[idx..idx + 8].try_into().expect("eight bytes"));
        let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        let control = word.wrapping_sub(ONES * 0x20);
        let hits = (quote | backslash | control) & !word & HIGH;
        if hits != 0 {
            // The lowest flagged byte is a true hit: borrows only run upwards.
            return idx + (hits.trailing_zeros() / 8) as usize;
        }
        idx += 8;
    }
    while idx < bytes.len() {
        let byte = bytes[idx];
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return idx;
        }
        idx += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_of(json: &str) -> ScanResult<String> {
        let mut scratch = String::new();
        let mut scanner = Scanner::new(json);
        let text = scanner.string(&mut scratch)?.to_string();
        scanner.finish()?;
        Ok(text)
    }

    #[test]
    fn finds_special_bytes_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1F] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(find_special(&bytes), at, "len {len} at {at} byte {special:#x}");
                }
            }
            assert_eq!(find_special(&vec![b'a'; len]), len);
        }
        // Non-ASCII bytes and the bytes around the specials are not hits.
        let text = "é€ 😀 !#[]~\u{7f}".repeat(3);
        assert_eq!(find_special(text.as_bytes()), text.len());
    }

    #[test]
    fn decodes_strings() {
        assert_eq!(string_of(r#""plain text""#).unwrap(), "plain text");
        assert_eq!(string_of(r#""""#).unwrap(), "");
        assert_eq!(string_of(r#""a\"b\\c\/d\n\t\r\b\f""#).unwrap(), "a\"b\\c/d\n\t\r\u{8}\u{c}");
        assert_eq!(string_of(r#""caf\u00e9 \u20AC""#).unwrap(), "café €");
        assert_eq!(string_of(r#""\ud83d\ude00!""#).unwrap(), "😀!");
        assert_eq!(string_of(r#""lone \ud83d here""#).unwrap(), "lone \u{FFFD} here");
        assert_eq!(string_of(r#""lone \ude00""#).unwrap(), "lone \u{FFFD}");
        assert_eq!(
            string_of("\"héllo wörld, long enough to take the word path\"").unwrap(),
            "héllo wörld, long enough to take the word path"
        );
    }

    #[test]
    fn rejects_bad_strings() {
        for (json, what) in [
            ("\"abc", "EOF while parsing a string"),
            ("\"a\\", "EOF while parsing a string"),
            ("\"a\\x\"", "invalid escape"),
            ("\"a\\u12G4\"", "invalid \\u escape"),
            ("\"a\\u12", "EOF while parsing a string"),
            ("\"tab\there\"", "control character in a string"),
            ("\"new\\n and \nraw\"", "control character in a string"),
        ] {
            assert_eq!(string_of(json).unwrap_err().what, what, "{json:?}");
        }
    }

    #[test]
    fn reads_numbers_by_the_grammar() {
        for json in ["0", "-0", "12", "-12.5", "1e9", "1E+9", "2.5e-3", "123456789012345678901234567890"] {
            let mut scanner = Scanner::new(json);
            assert_eq!(scanner.number().unwrap(), json);
            scanner.finish().unwrap();
        }
        for json in ["-", "1.", ".5", "1e", "1e+", "-a"] {
            let mut scanner = Scanner::new(json);
            let result = scanner.number().and_then(|_| scanner.finish());
            assert!(result.is_err(), "{json:?}");
        }
        // A leading zero ends the number; what follows is left over.
        let mut scanner = Scanner::new("012");
        assert_eq!(scanner.number().unwrap(), "0");
        assert!(scanner.finish().is_err());
    }

    #[test]
    fn nested_values_come_back_as_their_text() {
        let json = r#"{ "a": [1, {"b": "x\"y"}, true, null], "c": {} }"#;
        let mut scanner = Scanner::new(json);
        assert_eq!(scanner.nested(&mut String::new()).unwrap(), json);
        scanner.finish().unwrap();
        for bad in ["{\"a\" 1}", "[1 2]", "{\"a\":1,}", "[1,]", "{1:2}", "[tru]", "{\"a\":nul}"] {
            let mut scanner = Scanner::new(bad);
            assert!(scanner.nested(&mut String::new()).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let error = Scanner::new(&deep).nested(&mut String::new()).unwrap_err();
        assert_eq!(error.what, "nested too deeply");
    }

    #[test]
    fn matches_cached_keys_without_decoding() {
        let mut scanner = Scanner::new(r#""Computer" : "x""#);
        assert!(!scanner.key_is("Comp"));
        assert!(!scanner.key_is("Computers"));
        assert_eq!(scanner.position(), 0);
        assert!(scanner.key_is("Computer"));
        assert_eq!(scanner.peek().unwrap(), Next::String);
        // A key with an escape never matches raw bytes; `key` decodes it.
        let mut scanner = Scanner::new(r#""na\u006de":1"#);
        assert!(!scanner.key_is("name"));
        assert_eq!(scanner.key(&mut String::new()).unwrap(), "name");
        assert_eq!(scanner.peek().unwrap(), Next::Number);
    }

    #[test]
    fn errors_give_line_and_column() {
        let body = "[{\"a\":1},\n é, 3]";
        assert_eq!(line_column(body.as_bytes(), 0), (1, 1));
        let at = body.find('3').unwrap();
        assert_eq!(line_column(body.as_bytes(), at), (2, 5));
        let error = ScanError { what: "expected an object", offset: at };
        assert_eq!(error.describe(body.as_bytes()), "expected an object at line 2 column 5");
    }
}
