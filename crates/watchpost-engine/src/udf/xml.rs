//! `parse_xml(text)`: XML to a dynamic value, the way Kusto maps it. An
//! element with only text becomes that text, an empty one null; otherwise an
//! object with `@attribute` keys, a `#text` key for its (trimmed) text and
//! one key per child element name (an array when the name repeats). Only
//! elements, attributes and text count; declarations, comments and
//! processing instructions are skipped. Malformed XML gives null.

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;
use serde_json::{Map, Value as Json};

use super::kernel::{dynamics, text_at, Invocation};

/// Longer input gives null, as in Kusto.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// Elements nested deeper than this make the input malformed, so hostile
/// input cannot exhaust the stack.
const MAX_DEPTH: usize = 256;

pub(crate) fn parse_xml(call: &Invocation<'_>) -> Result<ArrayRef> {
    let values = (0..call.n_rows).map(|row| {
        let text = text_at(&call.args[0], row)?;
        (text.len() <= MAX_INPUT_BYTES).then(|| parse_document(text)).flatten()
    });
    Ok(dynamics(values.collect::<Vec<_>>()))
}

fn parse_document(text: &str) -> Option<Json> {
    let mut reader = Reader { text, pos: 0 };
    reader.skip_misc();
    let (name, value) = reader.element(0)?;
    reader.skip_misc();
    if reader.pos != text.len() {
        return None;
    }
    let mut document = Map::new();
    document.insert(name, value);
    Some(Json::Object(document))
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        let matched = self.rest().starts_with(prefix);
        if matched {
            self.pos += prefix.len();
        }
        matched
    }

    /// Moves past `end`, returning the text before it.
    fn until(&mut self, end: &str) -> Option<&'a str> {
        let found = self.rest().find(end)?;
        let start = self.pos;
        self.pos += found + end.len();
        Some(&self.text[start..start + found])
    }

    fn skip_whitespace(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Skips whitespace, declarations, comments and processing instructions.
    fn skip_misc(&mut self) {
        loop {
            self.skip_whitespace();
            let skipped = if self.eat("<?") {
                self.until("?>")
            } else if self.eat("<!--") {
                self.until("-->")
            } else if self.rest().starts_with("<!") && !self.rest().starts_with("<![CDATA[") {
                self.until(">")
            } else {
                return;
            };
            if skipped.is_none() {
                self.pos = self.text.len();
                return;
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        let rest = self.rest();
        let len = rest.find(|c: char| c.is_whitespace() || matches!(c, '>' | '/' | '=')).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(rest[..len].to_string())
    }

    /// Parses one element at `<` and returns its name and value.
    fn element(&mut self, depth: usize) -> Option<(String, Json)> {
        if depth > MAX_DEPTH || !self.eat("<") {
            return None;
        }
        let name = self.name()?;
        let mut object = Map::new();
        loop {
            self.skip_whitespace();
            if self.eat("/>") {
                return Some((name, finish(object, String::new())));
            }
            if self.eat(">") {
                break;
            }
            let attribute = self.name()?;
            self.skip_whitespace();
            if !self.eat("=") {
                return None;
            }
            self.skip_whitespace();
            let quote = if self.eat("\"") {
                "\""
            } else if self.eat("'") {
                "'"
            } else {
                return None;
            };
            let value = unescape(self.until(quote)?)?;
            object.insert(format!("@{attribute}"), Json::String(value));
        }
        let mut text = String::new();
        loop {
            if self.eat("</") {
                let closing = self.name()?;
                self.skip_whitespace();
                if closing != name || !self.eat(">") {
                    return None;
                }
                return Some((name, finish(object, text)));
            }
            if self.eat("<![CDATA[") {
                text.push_str(self.until("]]>")?);
            } else if self.eat("<!--") {
                self.until("-->")?;
            } else if self.eat("<?") {
                self.until("?>")?;
            } else if self.rest().starts_with('<') {
                let (child, value) = self.element(depth + 1)?;
                add_child(&mut object, child, value);
            } else {
                let end = self.rest().find('<')?;
                let chunk = &self.rest()[..end];
                text.push_str(&unescape(chunk)?);
                self.pos += end;
            }
        }
    }
}

/// Adds a child element's value under its name, turning repeats into an array.
fn add_child(object: &mut Map<String, Json>, name: String, value: Json) {
    match object.get_mut(&name) {
        None => {
            object.insert(name, value);
        }
        Some(Json::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Json::Array(vec![first, value]);
        }
    }
}

/// The value of an element with `object` (attributes and children) and `text`.
fn finish(mut object: Map<String, Json>, text: String) -> Json {
    let text = text.trim();
    if object.is_empty() {
        return if text.is_empty() { Json::Null } else { Json::String(text.to_string()) };
    }
    if !text.is_empty() {
        object.insert("#text".to_string(), Json::String(text.to_string()));
    }
    Json::Object(object)
}

/// Replaces the predefined entities and character references.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..].find(';')? + amp;
        let entity = &rest[amp + 1..semi];
        let character = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(character);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_document;

    fn check(xml: &str, expected: &str) {
        let parsed = parse_document(xml).map(|json| json.to_string());
        assert_eq!(parsed.as_deref(), Some(expected), "{xml}");
    }

    #[test]
    fn maps_elements_attributes_and_text() {
        check("<e/>", r#"{"e":null}"#);
        check("<e>text</e>", r#"{"e":"text"}"#);
        check(r#"<e name="value" />"#, r#"{"e":{"@name":"value"}}"#);
        check(r#"<e name='value'>text</e>"#, r##"{"e":{"#text":"text","@name":"value"}}"##);
        check("<e> <a>x</a> <b>y</b> </e>", r#"{"e":{"a":"x","b":"y"}}"#);
        check("<e> <a>x</a> <a>y</a> <a>z</a> </e>", r#"{"e":{"a":["x","y","z"]}}"#);
        check("<e> text <a>x</a> </e>", r##"{"e":{"#text":"text","a":"x"}}"##);
    }

    #[test]
    fn skips_prolog_comments_and_unescapes() {
        check(
            "<?xml version=\"1.0\"?>\n<!-- c --><e>a &amp; b &#65;&#x42;<![CDATA[<c>]]></e>",
            r#"{"e":"a & b AB<c>"}"#,
        );
    }

    #[test]
    fn malformed_input_is_null() {
        for xml in ["", "text", "<e>", "<e></f>", "<e a=1/>", "<e/><f/>", "<e>&bogus;</e>"] {
            assert_eq!(parse_document(xml), None, "{xml}");
        }
    }
}
