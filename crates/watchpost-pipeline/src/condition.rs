//! Conditions in Logstash's expression language: `[type] == "apache" and
//! "web" in [tags]`, `[message] =~ /^\{/`, `!([a] > 3)`. Hand-written
//! recursive descent: the grammar is small and the errors must name the
//! column where parsing stopped.
//!
//! Precedence (Logstash leaves it to its grammar; Watchpost documents it):
//! `!` binds tightest, then comparisons, then `and`/`nand`, then
//! `or`/`xor`; parentheses group.

use regex::Regex;
use serde_json::Value as Json;

use crate::event::{Event, FieldRef};

/// A parsed condition.
#[derive(Debug, Clone)]
pub enum Condition {
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Nand(Box<Condition>, Box<Condition>),
    Xor(Box<Condition>, Box<Condition>),
    Compare(Operand, CompareOp, Operand),
    Matches(Operand, Regex, bool),
    In(Operand, Operand, bool),
    Truthy(Operand),
}

#[derive(Debug, Clone)]
pub enum Operand {
    Field(FieldRef),
    Literal(Json),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Condition {
    /// Parses a condition; the error names the character offset.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut parser = Parser { text, pos: 0 };
        let condition = parser.or_expr()?;
        parser.skip_space();
        if parser.pos < text.len() {
            return Err(parser.error("unexpected text"));
        }
        Ok(condition)
    }

    pub fn eval(&self, event: &Event) -> bool {
        match self {
            Condition::Not(inner) => !inner.eval(event),
            Condition::And(a, b) => a.eval(event) && b.eval(event),
            Condition::Or(a, b) => a.eval(event) || b.eval(event),
            Condition::Nand(a, b) => !(a.eval(event) && b.eval(event)),
            Condition::Xor(a, b) => a.eval(event) != b.eval(event),
            Condition::Compare(left, op, right) => compare(left.value(event), *op, right.value(event)),
            Condition::Matches(operand, regex, negated) => {
                let matched =
                    operand.value(event).and_then(crate::event::value_text).is_some_and(|t| regex.is_match(&t));
                matched != *negated
            }
            Condition::In(needle, haystack, negated) => {
                contains(haystack.value(event), needle.value(event)) != *negated
            }
            Condition::Truthy(operand) => {
                !matches!(operand.value(event), None | Some(Json::Null) | Some(Json::Bool(false)))
            }
        }
    }
}

impl Operand {
    fn value<'a>(&'a self, event: &'a Event) -> Option<&'a Json> {
        match self {
            Operand::Field(field) => event.get(field),
            Operand::Literal(value) => Some(value),
        }
    }
}

fn compare(left: Option<&Json>, op: CompareOp, right: Option<&Json>) -> bool {
    use std::cmp::Ordering;
    let ordering = match (left, right) {
        (Some(Json::Number(a)), Some(Json::Number(b))) => {
            a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b))
        }
        (Some(Json::String(a)), Some(Json::String(b))) => Some(a.cmp(b)),
        (Some(a), Some(b)) if a == b => Some(Ordering::Equal),
        (None, None) => Some(Ordering::Equal),
        _ => None,
    };
    match op {
        CompareOp::Eq => ordering == Some(Ordering::Equal),
        CompareOp::Ne => ordering != Some(Ordering::Equal),
        CompareOp::Lt => ordering == Some(Ordering::Less),
        CompareOp::Gt => ordering == Some(Ordering::Greater),
        CompareOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// `needle in haystack`: array membership, or substring for strings.
fn contains(haystack: Option<&Json>, needle: Option<&Json>) -> bool {
    let Some(needle) = needle else {
        return false;
    };
    match haystack {
        Some(Json::Array(items)) => items.iter().any(|item| item == needle),
        Some(Json::String(text)) => needle.as_str().is_some_and(|n| text.contains(n)),
        Some(Json::Object(map)) => needle.as_str().is_some_and(|n| map.contains_key(n)),
        _ => false,
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at offset {} of condition {:?}", self.pos, self.text)
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Consumes a keyword that is not the prefix of a longer word.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        let boundary =
            rest[word.len().min(rest.len())..].chars().next().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if rest.starts_with(word) && boundary {
            self.pos += word.len();
            return true;
        }
        false
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(symbol) {
            self.pos += symbol.len();
            return true;
        }
        false
    }

    fn or_expr(&mut self) -> Result<Condition, String> {
        let mut left = self.and_expr()?;
        loop {
            if self.keyword("or") {
                left = Condition::Or(Box::new(left), Box::new(self.and_expr()?));
            } else if self.keyword("xor") {
                left = Condition::Xor(Box::new(left), Box::new(self.and_expr()?));
            } else {
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        loop {
            if self.keyword("and") {
                left = Condition::And(Box::new(left), Box::new(self.unary()?));
            } else if self.keyword("nand") {
                left = Condition::Nand(Box::new(left), Box::new(self.unary()?));
            } else {
                return Ok(left);
            }
        }
    }

    fn unary(&mut self) -> Result<Condition, String> {
        self.skip_space();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") && !self.rest().starts_with("!~") {
            self.pos += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.symbol("(") {
            let inner = self.or_expr()?;
            if !self.symbol(")") {
                return Err(self.error("expected ')'"));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Condition, String> {
        let left = self.operand()?;
        for (symbol, op) in [
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<=", CompareOp::Le),
            (">=", CompareOp::Ge),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ] {
            if self.symbol(symbol) {
                return Ok(Condition::Compare(left, op, self.operand()?));
            }
        }
        for (symbol, negated) in [("=~", false), ("!~", true)] {
            if self.symbol(symbol) {
                self.skip_space();
                let regex = self.regex_literal()?;
                return Ok(Condition::Matches(left, regex, negated));
            }
        }
        if self.keyword("not") {
            if !self.keyword("in") {
                return Err(self.error("expected 'in' after 'not'"));
            }
            return Ok(Condition::In(left, self.operand()?, true));
        }
        if self.keyword("in") {
            return Ok(Condition::In(left, self.operand()?, false));
        }
        Ok(Condition::Truthy(left))
    }

    fn regex_literal(&mut self) -> Result<Regex, String> {
        let rest = self.rest();
        if !rest.starts_with('/') {
            return Err(self.error("expected a /regex/"));
        }
        let mut escaped = false;
        for (index, c) in rest.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '/' if !escaped => {
                    // `\/` inside a Logstash regex literal is a plain slash.
                    let source = rest[1..index].replace("\\/", "/");
                    self.pos += index + 1;
                    return Regex::new(&source).map_err(|e| format!("bad regex /{source}/: {e}"));
                }
                _ => escaped = false,
            }
        }
        Err(self.error("unclosed /regex/"))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_space();
        let rest = self.rest();
        let Some(first) = rest.chars().next() else {
            return Err(self.error("expected a value"));
        };
        match first {
            '"' | '\'' => Ok(Operand::Literal(Json::String(self.string_literal()?))),
            '[' => {
                let after = rest[1..].trim_start();
                if after.starts_with(['"', '\'', ']']) || after.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                    self.array_literal()
                } else {
                    self.field_ref()
                }
            }
            c if c.is_ascii_digit() || c == '-' => self.number_literal(),
            _ => {
                if self.keyword("true") {
                    return Ok(Operand::Literal(Json::Bool(true)));
                }
                if self.keyword("false") {
                    return Ok(Operand::Literal(Json::Bool(false)));
                }
                Err(self.error("expected a field reference, string, number or array"))
            }
        }
    }

    fn field_ref(&mut self) -> Result<Operand, String> {
        let rest = self.rest();
        let mut end = 0;
        while rest[end..].starts_with('[') {
            let close = rest[end..].find(']').ok_or_else(|| self.error("unclosed '['"))?;
            end += close + 1;
        }
        let field = FieldRef::parse(&rest[..end]).map_err(|e| self.error(&e))?;
        self.pos += end;
        Ok(Operand::Field(field))
    }

    fn string_literal(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let quote = rest.chars().next().expect("caller saw a quote");
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((index, c)) = chars.next() {
            if c == '\\' {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
                continue;
            }
            if c == quote {
                self.pos += index + 1;
                return Ok(out);
            }
            out.push(c);
        }
        Err(self.error("unclosed string"))
    }

    fn number_literal(&mut self) -> Result<Operand, String> {
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
            .map_or(rest.len(), |(i, _)| i);
        let text = &rest[..end];
        let value: Json = if let Ok(integer) = text.parse::<i64>() {
            integer.into()
        } else {
            text.parse::<f64>().map_err(|_| self.error("bad number"))?.into()
        };
        self.pos += end;
        Ok(Operand::Literal(value))
    }

    fn array_literal(&mut self) -> Result<Operand, String> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.symbol("]") {
                return Ok(Operand::Literal(Json::Array(items)));
            }
            if !items.is_empty() && !self.symbol(",") {
                return Err(self.error("expected ',' or ']'"));
            }
            match self.operand()? {
                Operand::Literal(value) => items.push(value),
                Operand::Field(_) => return Err(self.error("array literals hold only literals")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event() -> Event {
        let mut event = Event::from_message("{\"a\":1}", Utc::now());
        event.set(&FieldRef::single("type"), Json::from("apache"));
        event.set(&FieldRef::parse("[http][status]").unwrap(), Json::from(404));
        event.add_tag("web");
        event
    }

    fn check(text: &str) -> bool {
        Condition::parse(text).unwrap_or_else(|e| panic!("{e}")).eval(&event())
    }

    #[test]
    fn comparisons_and_booleans() {
        assert!(check(r#"[type] == "apache""#));
        assert!(!check(r#"[type] != "apache""#));
        assert!(check(r#"[http][status] >= 400 and [http][status] < 500"#));
        assert!(check(r#"[type] == "nginx" or "web" in [tags]"#));
        assert!(check(r#""mobile" not in [tags]"#));
        assert!(check(r#"[message] =~ /^\{/"#));
        assert!(check(r#"[message] !~ /^x/"#));
        assert!(check(r#"!([type] == "x")"#));
        assert!(check(r#"[http]"#));
        assert!(!check(r#"[nope]"#));
        assert!(check(r#"[type] in ["apache", "nginx"]"#));
        assert!(check(r#""pac" in [type]"#));
        assert!(check(r#"[type] == "x" xor [type] == "apache""#));
        assert!(!check(r#"[type] == "apache" nand [http]"#));
        // and binds tighter than or.
        assert!(check(r#"[type] == "apache" or [nope] and [nope]"#));
    }

    #[test]
    fn errors_name_the_offset() {
        let err = Condition::parse(r#"[type] == "#).unwrap_err();
        assert!(err.contains("offset 10"), "{err}");
        assert!(Condition::parse(r#"[type] =~ "x""#).unwrap_err().contains("regex"));
        assert!(Condition::parse(r#"([a] == 1"#).unwrap_err().contains("')'"));
    }
}
