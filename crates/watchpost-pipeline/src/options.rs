//! Typed access to one plugin's options (a TOML table, whether it came
//! from a TOML pipeline or from a Logstash `.conf` block), with an error
//! naming any option nobody asked for.

use std::collections::BTreeMap;

use toml::Value;

/// A configuration mistake, located by its path in the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    /// For example `transform[2] (grok)` or `line 7: filter grok`.
    pub location: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { location: location.into(), message: message.into() }
    }
}

pub type ConfigResult<T> = Result<T, ConfigError>;

/// One plugin's options, consumed key by key.
#[derive(Debug)]
pub struct Options {
    table: toml::Table,
    location: String,
}

impl Options {
    pub fn new(table: toml::Table, location: impl Into<String>) -> Options {
        Options { table, location: location.into() }
    }

    /// The options not consumed yet.
    pub fn into_table(self) -> toml::Table {
        self.table
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.location.clone(), message)
    }

    fn wrong_type(&self, key: &str, expected: &str) -> ConfigError {
        self.error(format!("option `{key}` must be {expected}"))
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    pub fn string(&mut self, key: &str) -> ConfigResult<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    /// A secret given as `key` itself or as the name of an environment
    /// variable in `<key>_env` (so config files need not hold it); `key`
    /// wins when both are given.
    pub fn secret(&mut self, key: &str) -> ConfigResult<Option<String>> {
        let env_key = format!("{key}_env");
        match (self.string(key)?, self.string(&env_key)?) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(var)) => std::env::var(&var)
                .map(Some)
                .map_err(|_| self.error(format!("environment variable {var} ({env_key}) is not set"))),
            (None, None) => Ok(None),
        }
    }

    pub fn bool(&mut self, key: &str, default: bool) -> ConfigResult<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Boolean(value)) => Ok(value),
            Some(Value::String(text)) if text == "true" || text == "false" => Ok(text == "true"),
            Some(_) => Err(self.wrong_type(key, "true or false")),
        }
    }

    pub fn u64(&mut self, key: &str, default: u64) -> ConfigResult<u64> {
        match self.take(key) {
            None => Ok(default),
            Some(Value::Integer(value)) if value >= 0 => Ok(value as u64),
            Some(Value::String(text)) if text.parse::<u64>().is_ok() => Ok(text.parse().expect("checked")),
            Some(_) => Err(self.wrong_type(key, "a non-negative integer")),
        }
    }

    /// A string or an array of strings.
    pub fn strings(&mut self, key: &str) -> ConfigResult<Vec<String>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(value) => strings_of(value).ok_or_else(|| self.wrong_type(key, "a string or an array of strings")),
        }
    }

    /// A table of string values (`{ a = "x" }`), or a flat array of pairs
    /// (`["a", "x", "b", "y"]`, Logstash's older hash form).
    pub fn string_map(&mut self, key: &str) -> ConfigResult<Vec<(String, String)>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Table(table)) => table
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(text) => Ok((k, text)),
                    other => Ok((k, scalar_text(&other).ok_or_else(|| self.wrong_type(key, "a table of strings"))?)),
                })
                .collect(),
            Some(Value::Array(items)) if items.len() % 2 == 0 => {
                let texts =
                    strings_of(Value::Array(items)).ok_or_else(|| self.wrong_type(key, "a table of strings"))?;
                Ok(texts.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
            }
            Some(_) => Err(self.wrong_type(key, "a table of strings")),
        }
    }

    /// A table whose values are strings or arrays of strings.
    pub fn strings_map(&mut self, key: &str) -> ConfigResult<Vec<(String, Vec<String>)>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Table(table)) => table
                .into_iter()
                .map(|(k, v)| strings_of(v).map(|v| (k, v)).ok_or_else(|| self.wrong_type(key, "a table of strings")))
                .collect(),
            Some(Value::Array(items)) if items.len() % 2 == 0 => {
                let texts =
                    strings_of(Value::Array(items)).ok_or_else(|| self.wrong_type(key, "a table of strings"))?;
                Ok(texts.chunks(2).map(|pair| (pair[0].clone(), vec![pair[1].clone()])).collect())
            }
            Some(_) => Err(self.wrong_type(key, "a table of strings or arrays")),
        }
    }

    /// Fails on any option not consumed, naming it.
    pub fn finish(self) -> ConfigResult<()> {
        let unknown: Vec<&String> = self.table.keys().collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let names = unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        Err(ConfigError::new(self.location, format!("unsupported option {names}")))
    }
}

fn strings_of(value: Value) -> Option<Vec<String>> {
    match value {
        Value::String(text) => Some(vec![text]),
        Value::Array(items) => items.iter().map(scalar_text).collect(),
        other => scalar_text(&other).map(|t| vec![t]),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Options every transform accepts (grok spec 3, "common to every filter").
#[derive(Debug, Clone, Default)]
pub struct CommonOptions {
    pub id: Option<String>,
    pub add_field: Vec<(String, String)>,
    pub add_tag: Vec<String>,
    pub remove_field: Vec<String>,
    pub remove_tag: Vec<String>,
}

impl CommonOptions {
    pub fn take(options: &mut Options) -> ConfigResult<CommonOptions> {
        let common = CommonOptions {
            id: options.string("id")?,
            add_field: options.string_map("add_field")?,
            add_tag: options.strings("add_tag")?,
            remove_field: options.strings("remove_field")?,
            remove_tag: options.strings("remove_tag")?,
        };
        // Accepted for compatibility; they change nothing here.
        for ignored in ["enable_metric", "periodic_flush"] {
            options.take(ignored);
        }
        Ok(common)
    }
}

/// Keeps only the keys of `map` in order; helper for deterministic output.
pub fn sorted<V>(items: Vec<(String, V)>) -> BTreeMap<String, V> {
    items.into_iter().collect()
}
