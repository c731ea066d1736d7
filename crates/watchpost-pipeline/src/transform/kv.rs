//! The `kv` transform: `key=value` pairs in a field become fields.
//! `field_split` and `value_split` are sets of characters, as in Logstash;
//! a value in double or single quotes may contain separators.

use serde_json::Value as Json;

use crate::event::{Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct KvTransform {
    source: FieldRef,
    field_split: Vec<char>,
    value_split: Vec<char>,
    include_keys: Vec<String>,
    exclude_keys: Vec<String>,
    prefix: String,
    trim_key: Vec<char>,
    trim_value: Vec<char>,
    target: Option<FieldRef>,
    default_keys: Vec<(String, String)>,
    allow_duplicate_values: bool,
}

impl KvTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<KvTransform> {
        let source = FieldRef::parse(&options.string("source")?.unwrap_or_else(|| "message".into()))
            .map_err(|e| options.error(e))?;
        let target = match options.string("target")? {
            Some(text) => Some(FieldRef::parse(&text).map_err(|e| options.error(e))?),
            None => None,
        };
        for unsupported in ["field_split_pattern", "value_split_pattern", "include_brackets", "recursive"] {
            if options.take(unsupported).is_some() {
                return Err(options.error(format!("option `{unsupported}` is not supported")));
            }
        }
        let chars = |text: Option<String>, default: &str| {
            text.unwrap_or_else(|| default.to_string()).chars().collect::<Vec<_>>()
        };
        Ok(KvTransform {
            source,
            field_split: chars(options.string("field_split")?, " "),
            value_split: chars(options.string("value_split")?, "="),
            include_keys: options.strings("include_keys")?,
            exclude_keys: options.strings("exclude_keys")?,
            prefix: options.string("prefix")?.unwrap_or_default(),
            trim_key: chars(options.string("trim_key")?, ""),
            trim_value: chars(options.string("trim_value")?, ""),
            target,
            default_keys: options.string_map("default_keys")?,
            allow_duplicate_values: options.bool("allow_duplicate_values", true)?,
        })
    }

    fn pairs(&self, text: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start_matches(|c| self.field_split.contains(&c));
            let Some(split) = rest.find(|c| self.value_split.contains(&c)) else { break };
            let key_text = &rest[..split];
            // A key never holds a field separator: keep the last word.
            let key_start = key_text.rfind(|c| self.field_split.contains(&c)).map_or(0, |i| i + 1);
            let key = key_text[key_start..].trim_matches(|c| self.trim_key.contains(&c)).to_string();
            let after = &rest[split + 1..];
            let (value, next) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => match after[1..].find(quote) {
                    Some(end) => (&after[1..end + 1], &after[end + 2..]),
                    None => (&after[1..], ""),
                },
                _ => {
                    let end = after.find(|c| self.field_split.contains(&c)).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            if !key.is_empty() {
                pairs.push((key, value.trim_matches(|c| self.trim_value.contains(&c)).to_string()));
            }
            rest = next;
        }
        pairs
    }
}

impl Transform for KvTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let Some(Json::String(text)) = event.get(&self.source).cloned() else {
            return StepResult::Continue;
        };
        let mut found: Vec<(String, Json)> = Vec::new();
        for (key, value) in self.pairs(&text) {
            if (!self.include_keys.is_empty() && !self.include_keys.contains(&key)) || self.exclude_keys.contains(&key)
            {
                continue;
            }
            let name = format!("{}{key}", self.prefix);
            match found.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, existing)) => {
                    let mut items = match existing.take() {
                        Json::Array(items) => items,
                        other => vec![other],
                    };
                    if self.allow_duplicate_values || !items.contains(&Json::from(value.as_str())) {
                        items.push(Json::from(value));
                    }
                    *existing = if items.len() == 1 { items.remove(0) } else { Json::Array(items) };
                }
                None => found.push((name, Json::from(value))),
            }
        }
        for (key, value) in &self.default_keys {
            let name = format!("{}{key}", self.prefix);
            if !found.iter().any(|(existing, _)| *existing == name) {
                found.push((name, Json::from(value.as_str())));
            }
        }
        for (name, value) in found {
            let field = match &self.target {
                Some(target) => FieldRef { path: target.path.iter().cloned().chain([name]).collect() },
                None => FieldRef::single(&name),
            };
            event.set(&field, value);
        }
        StepResult::Continue
    }
}
