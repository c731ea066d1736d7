//! The event model: a JSON object with Logstash's conventions (`message`,
//! `@timestamp`, `tags`, `@metadata`) and field references (`[a][b]`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

/// Field holding the raw text of the record.
pub const MESSAGE: &str = "message";
/// Field holding the event time (RFC 3339, UTC); becomes `TimeGenerated`.
pub const TIMESTAMP: &str = "@timestamp";
/// Field holding the tag array.
pub const TAGS: &str = "tags";
/// Field holding data that is never sent to a sink.
pub const METADATA: &str = "@metadata";

/// One event flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub fields: Map<String, Json>,
}

/// A parsed field reference: `[a][b]` or a bare name `a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub path: Vec<String>,
}

impl FieldRef {
    /// Parses `[a][b]`, `[a]` or a bare name (taken whole, dots included,
    /// as Logstash does).
    pub fn parse(text: &str) -> Result<FieldRef, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty field reference".to_string());
        }
        if !text.starts_with('[') {
            return Ok(FieldRef { path: vec![text.to_string()] });
        }
        let mut path = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[').ok_or_else(|| format!("bad field reference {text:?}"))?;
            let end = inner.find(']').ok_or_else(|| format!("unclosed '[' in field reference {text:?}"))?;
            let name = &inner[..end];
            if name.is_empty() || name.contains('[') {
                return Err(format!("bad field reference {text:?}"));
            }
            path.push(name.to_string());
            rest = &inner[end + 1..];
        }
        Ok(FieldRef { path })
    }

    pub fn single(name: &str) -> FieldRef {
        FieldRef { path: vec![name.to_string()] }
    }

    /// The flat column name: segments joined by `_` (grok spec 2.3).
    pub fn column_name(&self) -> String {
        self.path.join("_")
    }
}

impl std::fmt::Display for FieldRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for segment in &self.path {
            write!(f, "[{segment}]")?;
        }
        Ok(())
    }
}

impl Event {
    /// An event for one raw record, stamped with `now`.
    pub fn from_message(message: &str, now: DateTime<Utc>) -> Event {
        let mut fields = Map::new();
        fields.insert(MESSAGE.to_string(), Json::String(message.to_string()));
        fields.insert(TIMESTAMP.to_string(), Json::String(format_timestamp(now)));
        Event { fields }
    }

    pub fn get(&self, field: &FieldRef) -> Option<&Json> {
        let (first, rest) = field.path.split_first()?;
        let mut value = self.fields.get(first)?;
        for segment in rest {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }

    /// The value as text: strings as they are, other scalars as JSON.
    pub fn get_text(&self, field: &FieldRef) -> Option<String> {
        self.get(field).and_then(value_text)
    }

    /// Sets a field, creating (or replacing non-object) parents.
    pub fn set(&mut self, field: &FieldRef, value: Json) {
        let Some((last, parents)) = field.path.split_last() else {
            return;
        };
        let mut map = &mut self.fields;
        for segment in parents {
            let entry = map.entry(segment.clone()).or_insert_with(|| Json::Object(Map::new()));
            if !entry.is_object() {
                *entry = Json::Object(Map::new());
            }
            map = entry.as_object_mut().expect("made an object above");
        }
        map.insert(last.clone(), value);
    }

    pub fn remove(&mut self, field: &FieldRef) -> Option<Json> {
        let (last, parents) = field.path.split_last()?;
        let mut map = &mut self.fields;
        for segment in parents {
            map = map.get_mut(segment)?.as_object_mut()?;
        }
        map.remove(last)
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.fields.get(TAGS).and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().any(|t| t == tag)
    }

    /// Adds a tag once.
    pub fn add_tag(&mut self, tag: &str) {
        if self.has_tag(tag) {
            return;
        }
        let tags = self.fields.entry(TAGS.to_string()).or_insert_with(|| Json::Array(Vec::new()));
        if let Json::String(single) = tags {
            *tags = Json::Array(vec![Json::String(std::mem::take(single))]);
        }
        if let Json::Array(items) = tags {
            items.push(Json::String(tag.to_string()));
        }
    }

    pub fn remove_tag(&mut self, tag: &str) {
        if let Some(Json::Array(items)) = self.fields.get_mut(TAGS) {
            items.retain(|item| item.as_str() != Some(tag));
        }
    }

    pub fn set_timestamp(&mut self, when: DateTime<Utc>) {
        self.fields.insert(TIMESTAMP.to_string(), Json::String(format_timestamp(when)));
    }

    /// Expands `%{[field]}` / `%{field}` references; a missing field stays
    /// as written (Logstash's behaviour).
    pub fn sprintf(&self, template: &str) -> String {
        if !template.contains("%{") {
            return template.to_string();
        }
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("%{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let reference = &after[..end];
            match FieldRef::parse(reference).ok().and_then(|field| self.get_text(&field)) {
                Some(text) => out.push_str(&text),
                None => out.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Text of a value: strings unquoted, numbers and booleans as JSON,
/// arrays and objects as compact JSON, null as none.
pub fn value_text(value: &Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

pub fn format_timestamp(when: DateTime<Utc>) -> String {
    when.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_refs() {
        assert_eq!(FieldRef::parse("[a][b]").unwrap().path, ["a", "b"]);
        assert_eq!(FieldRef::parse("a.b").unwrap().path, ["a.b"]);
        assert!(FieldRef::parse("[a").is_err());
        assert!(FieldRef::parse("[a]x").is_err());
        assert_eq!(FieldRef::parse("[source][address]").unwrap().column_name(), "source_address");
    }

    #[test]
    fn set_get_remove_nested_and_sprintf() {
        let mut event = Event::from_message("hi", Utc::now());
        let field = FieldRef::parse("[http][status]").unwrap();
        event.set(&field, Json::from(200));
        assert_eq!(event.get(&field), Some(&Json::from(200)));
        assert_eq!(event.sprintf("code=%{[http][status]} msg=%{message} %{missing}"), "code=200 msg=hi %{missing}");
        assert_eq!(event.remove(&field), Some(Json::from(200)));
        assert_eq!(event.get(&field), None);
        event.add_tag("a");
        event.add_tag("a");
        event.add_tag("b");
        assert_eq!(event.tags().collect::<Vec<_>>(), ["a", "b"]);
        event.remove_tag("a");
        assert!(!event.has_tag("a"));
    }
}
