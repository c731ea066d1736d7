//! A scanner over JSON text that follows a property path (`d.a.b[1]`) and
//! checks a text against the form dynamic values are kept in, without
//! building a `serde_json::Value` tree.
//!
//! A dynamic value is the JSON text `serde_json` writes for it (compact, the
//! keys of each object sorted and unique, numbers and escapes in one form),
//! and what a text means is what `serde_json::from_str` makes of it. The
//! scanner keeps to both contracts: it accepts exactly the texts
//! `serde_json` accepts, lets the last of duplicate keys win as a
//! `serde_json::Map` does, and writes found values as `serde_json` would.
//! Where checking that cheaply is not possible (an escaped UTF-16
//! surrogate, nesting deeper than [`MAX_DEPTH`]) it reports
//! [`Fault::Unsure`] and the caller asks `serde_json` itself.
//!
//! Skipping a value allocates nothing: strings are searched eight bytes at a
//! time for the quote, the backslash and control bytes, and only an object
//! key holding escapes is decoded (into a buffer the caller reuses).

use std::fmt::Write as _;
use std::ops::Range;

use serde_json::Value as Json;

/// Deepest nesting of objects and arrays the scanner follows itself;
/// deeper text is left to `serde_json`, whose own limit (127 levels) then
/// decides.
const MAX_DEPTH: usize = 100;

/// Numbers at most this long cannot overflow an `f64`, so `serde_json`
/// accepts them whenever their grammar is right.
const SAFE_NUMBER_LEN: usize = 300;

/// The kind of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
    Array,
}

/// A value found in a JSON text: its kind and where its text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub kind: Kind,
    pub range: Range<usize>,
}

/// Why a scan gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The text is not JSON as `serde_json` reads it.
    Invalid,
    /// The text holds an escaped UTF-16 surrogate or nests deeper than
    /// [`MAX_DEPTH`]; `serde_json` must decide.
    Unsure,
}

/// One step of a property path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<'k> {
    /// A property of an object.
    Key(&'k str),
    /// An element of an array; negative indexes count from the end.
    Index(i64),
}

/// Follows `steps` from the value `text` holds.
///
/// Returns the value the path leads to when `text` is valid JSON, `None`
/// when the path leads nowhere (then `text` may or may not be valid: either
/// way the answer is null). `key_buffer` holds decoded keys that had
/// escapes; passing the same buffer for every row saves allocations.
pub(crate) fn follow(text: &str, steps: &[Step<'_>], key_buffer: &mut String) -> Result<Option<Found>, Fault> {
    let mut scanner = Scanner::new(text, false);
    scanner.skip_whitespace();
    // A root that cannot hold the first step ends the search at once.
    let opening = match steps.first() {
        Some(Step::Key(_)) => Some(b'{'),
        Some(Step::Index(_)) => Some(b'['),
        None => None,
    };
    if opening.is_some_and(|opening| scanner.peek() != Some(opening)) {
        return Ok(None);
    }
    let found = scanner.follow_value(steps, key_buffer)?;
    scanner.finish()?;
    Ok(found)
}

/// Checks that `text` holds one JSON value; returns its kind and whether
/// `text` is already the form a dynamic value is kept in (what `serde_json`
/// writes back for it, byte for byte).
///
/// The form check is conservative: keys with escapes and any float whose
/// text differs from `serde_json`'s answer "no".
pub(crate) fn check(text: &str) -> Result<(Kind, bool), Fault> {
    let mut scanner = Scanner::new(text, true);
    let kind = scanner.skip_value()?;
    scanner.finish()?;
    Ok((kind, scanner.canonical))
}

/// Appends the text `tostring()` gives the value `found` in `text`: a
/// string's characters, the JSON text of anything else, nothing for null.
pub(crate) fn write_text(text: &str, found: &Found, out: &mut String) {
    let raw = &text[found.range.clone()];
    match found.kind {
        Kind::Null => {}
        Kind::String => unescape_into(&raw[1..raw.len() - 1], out),
        _ => write_dynamic(text, found, out),
    }
}

/// Appends the JSON text of the value `found` in `text`, as `serde_json`
/// writes it.
pub(crate) fn write_dynamic(text: &str, found: &Found, out: &mut String) {
    let raw = &text[found.range.clone()];
    match found.kind {
        Kind::Null | Kind::Bool => out.push_str(raw),
        Kind::Number => write_number(raw, out),
        Kind::String => {
            let contents = &raw[1..raw.len() - 1];
            if memchr::memchr(b'\\', contents.as_bytes()).is_none() {
                out.push_str(raw);
                return;
            }
            let start = out.len();
            unescape_into(contents, out);
            let decoded = out.split_off(start);
            write_json_string(&decoded, out);
        }
        Kind::Object | Kind::Array => match check(raw) {
            Ok((_, true)) => out.push_str(raw),
            _ => write_reparsed(raw, out),
        },
    }
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` escapes
/// it: `"` and `\`, and control characters (the short forms where JSON has
/// them, `\u00XX` in lowercase hex otherwise).
pub(crate) fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    let mut plain_from = 0;
    for (idx, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain_from..idx]);
        plain_from = idx + 1;
        if escape.is_empty() {
            write!(out, "\\u{byte:04x}").expect("writing to a String cannot fail");
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&text[plain_from..]);
    out.push('"');
}

/// Appends a number's text as `serde_json` writes the number: integers
/// that fit 64 bits as they are, everything else through `serde_json`.
fn write_number(raw: &str, out: &mut String) {
    if integer_is_canonical(raw) {
        out.push_str(raw);
        return;
    }
    write_reparsed(raw, out);
}

/// Appends what `serde_json` writes for the valid JSON `raw`.
fn write_reparsed(raw: &str, out: &mut String) {
    match serde_json::from_str::<Json>(raw) {
        Ok(json) => write!(out, "{json}").expect("writing to a String cannot fail"),
        Err(_) => {
            debug_assert!(false, "the scanner accepted JSON serde_json refuses: {raw}");
            out.push_str(raw);
        }
    }
}

/// Whether `raw`, a number token, is an integer `serde_json` keeps as one
/// and writes back unchanged: not `-0` (a float), and within `u64` (or
/// `i64` when negative).
fn integer_is_canonical(raw: &str) -> bool {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, raw),
    };
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return false;
    }
    if negative {
        digits != "0" && (digits.len() <= 18 || raw.parse::<i64>().is_ok())
    } else {
        digits.len() <= 19 || digits.parse::<u64>().is_ok()
    }
}

/// Appends the characters of the contents of a string literal that the
/// scanner has accepted (so every escape is well formed and none is a
/// surrogate).
fn unescape_into(contents: &str, out: &mut String) {
    let bytes = contents.as_bytes();
    let mut plain_from = 0;
    while let Some(offset) = memchr::memchr(b'\\', &bytes[plain_from..]) {
        let at = plain_from + offset;
        out.push_str(&contents[plain_from..at]);
        let (decoded, len) = match bytes[at + 1] {
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let unit = hex4(&bytes[at + 2..at + 6]).unwrap_or(u16::from(b'?'));
                (char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER), 6)
            }
            other => (char::from(other), 2),
        };
        out.push(decoded);
        plain_from = at + len;
    }
    out.push_str(&contents[plain_from..]);
}

/// The value of four hex digits.
fn hex4(digits: &[u8]) -> Option<u16> {
    let mut value = 0u16;
    for &digit in digits.get(..4)? {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | u16::from(nibble);
    }
    Some(value)
}

/// The first position at or after `pos` holding a quote, a backslash or a
/// control byte: the end of a string literal's plain run.
fn plain_run_end(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // `(x - ONES) & !x & HIGHS` flags the zero bytes of `x`, and
    // `(x - 0x20 * ONES) & !x & HIGHS` the bytes below 0x20; a borrow can
    // flag a byte wrongly only above a rightly flagged one, so the lowest
    // flag is exact.
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("a chunk of eight bytes"));
        let quotes = word ^ (ONES * u64::from(b'"'));
        let backslashes = word ^ (ONES * u64::from(b'\\'));
        let flags = ((quotes.wrapping_sub(ONES) & !quotes)
            | (backslashes.wrapping_sub(ONES) & !backslashes)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGHS;
        if flags != 0 {
            return pos + (flags.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(&byte) = bytes.get(pos) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        pos += 1;
    }
    pos
}

struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    depth: usize,
    /// Whether to check the text against the form `serde_json` writes.
    strict: bool,
    /// With `strict`, stays true while the text seen is in that form.
    canonical: bool,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str, strict: bool) -> Scanner<'t> {
        Scanner { text, bytes: text.as_bytes(), pos: 0, depth: 0, strict, canonical: true }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.pos += usize::from(next);
        next
    }

    fn expect(&mut self, byte: u8) -> Result<(), Fault> {
        if self.eat(byte) {
            return Ok(());
        }
        Err(Fault::Invalid)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
            self.canonical = false;
        }
    }

    /// Checks that only whitespace follows the value.
    fn finish(&mut self) -> Result<(), Fault> {
        self.skip_whitespace();
        if self.pos == self.bytes.len() {
            return Ok(());
        }
        Err(Fault::Invalid)
    }

    /// Consumes the opening bracket of an object or array.
    fn enter(&mut self) -> Result<(), Fault> {
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fault::Unsure);
        }
        Ok(())
    }

    /// Consumes the separator after a member or element: true for a comma,
    /// false for the closing bracket `close`.
    fn separator(&mut self, close: u8) -> Result<bool, Fault> {
        self.skip_whitespace();
        if self.eat(b',') {
            return Ok(true);
        }
        self.expect(close)?;
        self.depth -= 1;
        Ok(false)
    }

    /// Skips one value (and the whitespace before it).
    fn skip_value(&mut self) -> Result<Kind, Fault> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.skip_object().map(|()| Kind::Object),
            Some(b'[') => self.skip_array().map(|()| Kind::Array),
            Some(b'"') => self.skip_string().map(|_| Kind::String),
            Some(b't') => self.skip_literal("true").map(|()| Kind::Bool),
            Some(b'f') => self.skip_literal("false").map(|()| Kind::Bool),
            Some(b'n') => self.skip_literal("null").map(|()| Kind::Null),
            Some(b'-' | b'0'..=b'9') => self.skip_number().map(|()| Kind::Number),
            _ => Err(Fault::Invalid),
        }
    }

    fn skip_literal(&mut self, literal: &str) -> Result<(), Fault> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            return Ok(());
        }
        Err(Fault::Invalid)
    }

    fn skip_object(&mut self) -> Result<(), Fault> {
        self.enter()?;
        self.skip_whitespace();
        if self.eat(b'}') {
            self.depth -= 1;
            return Ok(());
        }
        let mut previous_key: Option<Range<usize>> = None;
        loop {
            self.skip_whitespace();
            let (key, escaped) = self.skip_string()?;
            if self.strict {
                self.check_key_order(&mut previous_key, key, escaped);
            }
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_value()?;
            if !self.separator(b'}')? {
                return Ok(());
            }
        }
    }

    /// Keys must come in ascending byte order, without duplicates, as a
    /// `serde_json::Map` writes them; a key with escapes is not compared.
    fn check_key_order(&mut self, previous_key: &mut Option<Range<usize>>, key: Range<usize>, escaped: bool) {
        let in_order = !escaped
            && previous_key.as_ref().is_none_or(|previous| self.bytes[previous.clone()] < self.bytes[key.clone()]);
        if !in_order {
            self.canonical = false;
        }
        *previous_key = Some(key);
    }

    fn skip_array(&mut self) -> Result<(), Fault> {
        self.enter()?;
        self.skip_whitespace();
        if self.eat(b']') {
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.skip_value()?;
            if !self.separator(b']')? {
                return Ok(());
            }
        }
    }

    /// Skips a string literal; returns the range of its contents (without
    /// the quotes) and whether they hold escapes.
    fn skip_string(&mut self) -> Result<(Range<usize>, bool), Fault> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.pos = plain_run_end(self.bytes, self.pos);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start..self.pos - 1, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.skip_escape()?;
                }
                // A control byte, or the end of the text.
                _ => return Err(Fault::Invalid),
            }
        }
    }

    fn skip_escape(&mut self) -> Result<(), Fault> {
        let code = self.bytes.get(self.pos + 1).copied();
        self.pos += 2;
        match code {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'/') => {
                self.canonical = false;
                Ok(())
            }
            Some(b'u') => {
                let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Fault::Invalid)?;
                let unit = hex4(digits).ok_or(Fault::Invalid)?;
                if (0xd800..=0xdfff).contains(&unit) {
                    return Err(Fault::Unsure);
                }
                // `serde_json` writes `\u00XX`, in lowercase, only for
                // control characters without a short escape.
                let short = matches!(unit, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                let lowercase = !digits.iter().any(u8::is_ascii_uppercase);
                if unit >= 0x20 || short || !lowercase {
                    self.canonical = false;
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(Fault::Invalid),
        }
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Skips a number: JSON's grammar, and for a number that could be out
    /// of an `f64`'s range, `serde_json`'s own verdict.
    fn skip_number(&mut self) -> Result<(), Fault> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => return Err(Fault::Invalid),
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if self.skip_digits() == 0 {
                return Err(Fault::Invalid);
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            integer = false;
            exponent = true;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.skip_digits() == 0 {
                return Err(Fault::Invalid);
            }
        }
        let raw = &self.text[start..self.pos];
        let strict_check = self.strict && self.canonical && !(integer && integer_is_canonical(raw));
        if !strict_check && !exponent && raw.len() <= SAFE_NUMBER_LEN {
            return Ok(());
        }
        let json = serde_json::from_str::<Json>(raw).map_err(|_| Fault::Invalid)?;
        if strict_check {
            // Compared as text: `Json == &str` would compare a JSON string.
            let written = json.to_string();
            self.canonical = written.as_str() == raw;
        }
        Ok(())
    }

    /// Follows `steps` from the value at the current position, consuming
    /// the whole value.
    fn follow_value(&mut self, steps: &[Step<'_>], key_buffer: &mut String) -> Result<Option<Found>, Fault> {
        self.skip_whitespace();
        let Some((step, rest)) = steps.split_first() else {
            let start = self.pos;
            let kind = self.skip_value()?;
            return Ok(Some(Found { kind, range: start..self.pos }));
        };
        match (step, self.peek()) {
            (Step::Key(key), Some(b'{')) => self.follow_member(key, rest, key_buffer),
            (Step::Index(index), Some(b'[')) if *index >= 0 => {
                self.follow_element(*index, rest, key_buffer).map(|(found, _)| found)
            }
            (Step::Index(index), Some(b'[')) => {
                let open = self.pos;
                let (_, n_elements) = self.follow_element(-1, rest, key_buffer)?;
                let position = n_elements as i64 + index;
                if position < 0 {
                    return Ok(None);
                }
                let end = self.pos;
                self.pos = open;
                let (found, _) = self.follow_element(position, rest, key_buffer)?;
                debug_assert_eq!(self.pos, end);
                Ok(found)
            }
            _ => self.skip_value().map(|_| None),
        }
    }

    /// Follows `rest` into the last member named `key` of the object at the
    /// current position.
    fn follow_member(&mut self, key: &str, rest: &[Step<'_>], key_buffer: &mut String) -> Result<Option<Found>, Fault> {
        self.enter()?;
        self.skip_whitespace();
        if self.eat(b'}') {
            self.depth -= 1;
            return Ok(None);
        }
        let mut found = None;
        loop {
            self.skip_whitespace();
            let (name, escaped) = self.skip_string()?;
            let matches = if escaped {
                key_buffer.clear();
                unescape_into(&self.text[name], key_buffer);
                key_buffer == key
            } else {
                &self.bytes[name] == key.as_bytes()
            };
            self.skip_whitespace();
            self.expect(b':')?;
            if matches {
                // A later duplicate replaces the value, as in a map.
                found = self.follow_value(rest, key_buffer)?;
            } else {
                self.skip_value()?;
            }
            if !self.separator(b'}')? {
                return Ok(found);
            }
        }
    }

    /// Follows `rest` into element `index` of the array at the current
    /// position; returns what was found and the number of elements.
    fn follow_element(
        &mut self,
        index: i64,
        rest: &[Step<'_>],
        key_buffer: &mut String,
    ) -> Result<(Option<Found>, usize), Fault> {
        self.enter()?;
        self.skip_whitespace();
        if self.eat(b']') {
            self.depth -= 1;
            return Ok((None, 0));
        }
        let mut found = None;
        let mut n_elements = 0usize;
        loop {
            if n_elements as i64 == index {
                found = self.follow_value(rest, key_buffer)?;
            } else {
                self.skip_value()?;
            }
            n_elements += 1;
            if !self.separator(b']')? {
                return Ok((found, n_elements));
            }
        }
    }
}

#[cfg(test)]
mod tests;
