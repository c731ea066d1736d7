//! The `mutate` transform. Operations run in Logstash's fixed order, not
//! the order written: coerce, rename, update, replace, convert, gsub,
//! uppercase, capitalize, lowercase, strip, split, join, copy; then the
//! common `add_field`/`add_tag`/`remove_field`/`remove_tag`.

use regex::Regex;
use serde_json::Value as Json;

use crate::event::{value_text, Event, FieldRef};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct MutateTransform {
    coerce: Vec<(FieldRef, String)>,
    rename: Vec<(FieldRef, FieldRef)>,
    update: Vec<(FieldRef, String)>,
    replace: Vec<(FieldRef, String)>,
    convert: Vec<(FieldRef, Conversion)>,
    gsub: Vec<(FieldRef, Regex, String)>,
    uppercase: Vec<FieldRef>,
    capitalize: Vec<FieldRef>,
    lowercase: Vec<FieldRef>,
    strip: Vec<FieldRef>,
    split: Vec<(FieldRef, String)>,
    join: Vec<(FieldRef, String)>,
    copy: Vec<(FieldRef, FieldRef)>,
}

#[derive(Debug, Clone, Copy)]
enum Conversion {
    Integer,
    Float,
    String,
    Boolean,
}

fn field(options: &Options, text: &str) -> ConfigResult<FieldRef> {
    FieldRef::parse(text).map_err(|e| options.error(e))
}

fn fields(options: &mut Options, key: &str) -> ConfigResult<Vec<FieldRef>> {
    let names = options.strings(key)?;
    names.iter().map(|n| field(options, n)).collect()
}

fn field_values(options: &mut Options, key: &str) -> ConfigResult<Vec<(FieldRef, String)>> {
    let pairs = options.string_map(key)?;
    pairs.into_iter().map(|(k, v)| Ok((field(options, &k)?, v))).collect()
}

fn field_pairs(options: &mut Options, key: &str) -> ConfigResult<Vec<(FieldRef, FieldRef)>> {
    let pairs = options.string_map(key)?;
    pairs.into_iter().map(|(k, v)| Ok((field(options, &k)?, field(options, &v)?))).collect()
}

impl MutateTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<MutateTransform> {
        let convert = field_values(options, "convert")?
            .into_iter()
            .map(|(f, kind)| {
                let conversion = match kind.as_str() {
                    "integer" | "integer_eu" => Conversion::Integer,
                    "float" | "float_eu" => Conversion::Float,
                    "string" => Conversion::String,
                    "boolean" => Conversion::Boolean,
                    other => return Err(options.error(format!("convert: unknown type {other:?}"))),
                };
                Ok((f, conversion))
            })
            .collect::<ConfigResult<_>>()?;
        let gsub_spec = options.strings("gsub")?;
        if gsub_spec.len() % 3 != 0 {
            return Err(options.error("gsub takes triples: [field, regex, replacement, ...]"));
        }
        let mut gsub = Vec::new();
        for triple in gsub_spec.chunks(3) {
            let regex =
                Regex::new(&triple[1]).map_err(|e| options.error(format!("gsub regex {:?}: {e}", triple[1])))?;
            gsub.push((field(options, &triple[0])?, regex, triple[2].clone()));
        }
        for unsupported in ["merge"] {
            if options.take(unsupported).is_some() {
                return Err(options.error(format!("option `{unsupported}` is not supported")));
            }
        }
        Ok(MutateTransform {
            coerce: field_values(options, "coerce")?,
            rename: field_pairs(options, "rename")?,
            update: field_values(options, "update")?,
            replace: field_values(options, "replace")?,
            convert,
            gsub,
            uppercase: fields(options, "uppercase")?,
            capitalize: fields(options, "capitalize")?,
            lowercase: fields(options, "lowercase")?,
            strip: fields(options, "strip")?,
            split: field_values(options, "split")?,
            join: field_values(options, "join")?,
            copy: field_pairs(options, "copy")?,
        })
    }
}

/// Applies `f` to a string field, or to each string of an array field.
fn map_strings(event: &mut Event, field: &FieldRef, f: &dyn Fn(&str) -> String) {
    let Some(value) = event.get(field) else {
        return;
    };
    let mapped = match value {
        Json::String(text) => Json::String(f(text)),
        Json::Array(items) => {
            Json::Array(items.iter().map(|i| i.as_str().map_or_else(|| i.clone(), |t| Json::String(f(t)))).collect())
        }
        _ => return,
    };
    event.set(field, mapped);
}

impl Transform for MutateTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        for (f, default) in &self.coerce {
            if matches!(event.get(f), None | Some(Json::Null)) {
                event.set(f, Json::String(event.sprintf(default)));
            }
        }
        for (from, to) in &self.rename {
            if let Some(value) = event.remove(from) {
                event.set(to, value);
            }
        }
        for (f, value) in &self.update {
            if event.get(f).is_some() {
                event.set(f, Json::String(event.sprintf(value)));
            }
        }
        for (f, value) in &self.replace {
            event.set(f, Json::String(event.sprintf(value)));
        }
        for (f, conversion) in &self.convert {
            if let Some(value) = event.get(f) {
                let converted = match value {
                    Json::Array(items) => Json::Array(items.iter().map(|i| convert(i, *conversion)).collect()),
                    other => convert(other, *conversion),
                };
                event.set(f, converted);
            }
        }
        for (f, regex, replacement) in &self.gsub {
            map_strings(event, f, &|t| regex.replace_all(t, replacement.as_str()).into_owned());
        }
        for f in &self.uppercase {
            map_strings(event, f, &str::to_uppercase);
        }
        for f in &self.capitalize {
            map_strings(event, f, &|t| {
                let mut chars = t.chars();
                chars
                    .next()
                    .map_or_else(String::new, |c| c.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect())
            });
        }
        for f in &self.lowercase {
            map_strings(event, f, &str::to_lowercase);
        }
        for f in &self.strip {
            map_strings(event, f, &|t| t.trim().to_string());
        }
        for (f, separator) in &self.split {
            if let Some(Json::String(text)) = event.get(f) {
                let parts = text.split(separator.as_str()).map(|p| Json::String(p.to_string())).collect();
                event.set(f, Json::Array(parts));
            }
        }
        for (f, separator) in &self.join {
            if let Some(Json::Array(items)) = event.get(f) {
                let joined = items.iter().filter_map(value_text).collect::<Vec<_>>().join(separator);
                event.set(f, Json::String(joined));
            }
        }
        for (from, to) in &self.copy {
            if let Some(value) = event.get(from).cloned() {
                event.set(to, value);
            }
        }
        StepResult::Continue
    }
}

fn convert(value: &Json, conversion: Conversion) -> Json {
    let text = value_text(value).unwrap_or_default();
    match conversion {
        Conversion::String => Json::String(text),
        Conversion::Integer => match value {
            Json::Bool(b) => Json::from(i64::from(*b)),
            _ => text
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| text.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f.trunc() as i64))
                .map_or_else(|| value.clone(), Json::from),
        },
        Conversion::Float => match value {
            Json::Bool(b) => Json::from(if *b { 1.0 } else { 0.0 }),
            _ => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| value.clone(), Json::Number),
        },
        Conversion::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Json::Bool(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Json::Bool(false),
            _ => value.clone(),
        },
    }
}
