//! The pipeline engine: the event model, conditions, transforms (grok,
//! date, mutate, json, csv, kv, geoip, kql, drop), multi-line record assembly, the event → row
//! mapping, batching and the `Sink` contract. No network or file I/O: the
//! connectors crate reads sources and delivers batches.

pub mod condition;
pub mod config;
pub mod decode;
pub mod event;
pub mod logstash_conf;
pub mod multiline;
pub mod options;
pub mod sink;
pub mod transform;

pub use config::{Pipeline, PipelineConfig, DEAD_LETTER_LOG_TYPE};
pub use event::{Event, FieldRef};
pub use options::{ConfigError, ConfigResult, Options};
pub use sink::{event_to_row, Batch, Batcher, Delivery, Sink, STANDARD_TIME_FIELD};
pub use transform::{KqlEngine, KqlOutcome, KqlProgram, OnFailure, Processed, Transforms};

#[cfg(test)]
mod tests;
