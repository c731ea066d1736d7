//! A pipeline document: TOML with `[[source]]`, `[[transform]]` and
//! `[[sink]]` tables. Sources and sinks are kept as tables for the
//! connectors to read (they do the I/O); transforms are compiled here.

use serde_json::{Map, Value as Json};
use toml::Value;

use crate::event::{format_timestamp, Event};
use crate::options::{ConfigError, ConfigResult};
use crate::transform::{KqlEngine, OnFailure, Processed, Transforms};

/// The table dead letters go to (`WatchpostDeadLetter_CL`).
pub const DEAD_LETTER_LOG_TYPE: &str = "WatchpostDeadLetter";

/// A parsed pipeline document.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub name: String,
    /// Checkpoints and the disk buffer live here.
    pub data_dir: Option<String>,
    pub sources: Vec<toml::Table>,
    pub transforms: Vec<Value>,
    pub sinks: Vec<toml::Table>,
    /// What a failing transform does unless the step says otherwise.
    pub on_failure: OnFailure,
}

impl PipelineConfig {
    /// Parses TOML. Failing transforms go to the dead-letter table unless
    /// `on_failure` says otherwise.
    pub fn from_toml(text: &str) -> ConfigResult<PipelineConfig> {
        let mut document: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new("pipeline", e.to_string()))?;
        let name = match document.remove("name") {
            None => "pipeline".to_string(),
            Some(Value::String(name)) => name,
            Some(_) => return Err(ConfigError::new("pipeline", "`name` must be a string")),
        };
        let data_dir = match document.remove("data_dir") {
            None => None,
            Some(Value::String(dir)) => Some(dir),
            Some(_) => return Err(ConfigError::new("pipeline", "`data_dir` must be a string")),
        };
        let on_failure = match document.remove("on_failure") {
            None => OnFailure::DeadLetter,
            Some(Value::String(text)) if text == "dead_letter" => OnFailure::DeadLetter,
            Some(Value::String(text)) if text == "tag" => OnFailure::Tag,
            Some(Value::String(text)) if text == "drop" => OnFailure::Drop,
            Some(_) => return Err(ConfigError::new("pipeline", "`on_failure` must be dead_letter, tag or drop")),
        };
        let tables = |document: &mut toml::Table, key: &str| -> ConfigResult<Vec<toml::Table>> {
            match document.remove(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::Table(table) => Ok(table),
                        _ => Err(ConfigError::new(format!("{key}[{i}]"), "must be a table")),
                    })
                    .collect(),
                Some(_) => Err(ConfigError::new("pipeline", format!("`{key}` must be an array of tables ([[{key}]])"))),
            }
        };
        let sources = tables(&mut document, "source")?;
        let transforms = tables(&mut document, "transform")?.into_iter().map(Value::Table).collect();
        let sinks = tables(&mut document, "sink")?;
        if let Some(key) = document.keys().next() {
            return Err(ConfigError::new(
                "pipeline",
                format!("unsupported key `{key}` (expected name, data_dir, on_failure, [[source]], [[transform]], [[sink]])"),
            ));
        }
        Ok(PipelineConfig { name, data_dir, sources, transforms, sinks, on_failure })
    }

    /// Compiles the transforms; a `kql` step is a configuration error
    /// (see [`PipelineConfig::compile_with`]).
    pub fn compile(&self) -> ConfigResult<Pipeline> {
        self.compile_with(None)
    }

    /// Compiles the transforms, `kql` steps with `kql`.
    pub fn compile_with(&self, kql: Option<&dyn KqlEngine>) -> ConfigResult<Pipeline> {
        let transforms = Transforms::compile(&self.transforms, "transform", self.on_failure, kql)?;
        Ok(Pipeline { name: self.name.clone(), transforms })
    }
}

/// A compiled pipeline: its name and its transforms.
pub struct Pipeline {
    pub name: String,
    pub transforms: Transforms,
}

impl Pipeline {
    pub fn process(&self, event: Event) -> Processed {
        self.transforms.process(event)
    }

    /// Whether events should be collected and run through
    /// [`Pipeline::process_batch`] (a `kql` step needs many at once).
    pub fn batched(&self) -> bool {
        self.transforms.batched()
    }

    /// One result per event, in order.
    pub fn process_batch(&self, events: Vec<Event>) -> Vec<Processed> {
        self.transforms.process_batch(events)
    }

    /// The dead-letter row for an event: the raw record, the pipeline, the
    /// step and the reason, plus the event as it was when it failed.
    pub fn dead_letter_row(&self, raw: &str, event: Option<&Event>, step: &str, reason: &str) -> Map<String, Json> {
        let mut row = Map::new();
        row.insert("RawEvent".to_string(), Json::String(raw.to_string()));
        row.insert("Pipeline".to_string(), Json::String(self.name.clone()));
        row.insert("Step".to_string(), Json::String(step.to_string()));
        row.insert("Reason".to_string(), Json::String(reason.to_string()));
        if let Some(event) = event {
            row.insert("Event".to_string(), Json::String(Json::Object(event.fields.clone()).to_string()));
        }
        row.insert("FailedAt".to_string(), Json::String(format_timestamp(chrono::Utc::now())));
        row
    }
}
