//! The `kql` transform: a DCR-style `transformKql` (`where`, `extend`,
//! `project`, `parse`, ...) over events, run by the same engine and with
//! the same semantics as a data collection rule's transform.
//!
//! This crate does not link the KQL engine (connectors must build without
//! DataFusion, target architecture), so the program that runs the query is
//! given to
//! [`crate::PipelineConfig::compile_with`] as a [`KqlEngine`]; the
//! `watchpost` binary gives it one. Events reach the engine in batches
//! (the runner collects them, [`crate::Pipeline::process_batch`]).
//!
//! A step declares the event fields the query reads, with their types, as
//! a DCR stream declares its columns. Each event is one row of `source`;
//! for each output row, the declared fields are taken off the event and
//! the row's columns put on it (a null column leaves its field absent).
//! Fields not declared pass through untouched. An event whose row a
//! `where` removes is dropped (counted, with the step as the reason); an
//! event with a value its declared type cannot hold fails the step, so by
//! default it becomes a dead letter rather than a row with a null in it
//! (with `on_failure = "tag"` it is tagged and goes on as a DCR would
//! have it: the query's row computed with the null, or dropped if the
//! query filtered that row out). A query that fails at run time (an
//! integer division by zero, say) fails only the events it fails on: the
//! batch is split until they are found.

use serde_json::{Map, Value as Json};
use watchpost_schema::{ColumnDef, KqlType};

use crate::event::Event;
use crate::options::{ConfigResult, Options};
use crate::transform::{OnFailure, StepResult, Transform};

/// Compiles `kql` steps: the binary's KQL engine.
pub trait KqlEngine: Send + Sync {
    /// Parses and binds `query` with `source` having `columns`; the error
    /// says where the query is wrong.
    fn compile(&self, query: &str, columns: &[ColumnDef]) -> Result<Box<dyn KqlProgram>, String>;
}

/// A compiled `kql` step.
pub trait KqlProgram: Send + Sync {
    /// Runs over records (an event's fields each), giving one outcome per
    /// record, in order. An error fails every record of the call.
    fn run(&self, records: &[&Map<String, Json>]) -> Result<Vec<KqlOutcome>, String>;
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum KqlOutcome {
    /// The output row: column → value (`Null` for a null).
    Row(Map<String, Json>),
    /// A `where` removed it.
    Filtered,
    /// It could not be read into the declared columns: why, and the row
    /// the query gave with nulls for what could not be read (`None` if it
    /// filtered that out).
    Failed { reason: String, row: Option<Map<String, Json>> },
}

pub(crate) struct KqlTransform {
    program: Box<dyn KqlProgram>,
    columns: Vec<ColumnDef>,
    tag_on_failure: Vec<String>,
    /// `on_failure = "tag"`: a failed event goes on as the DCR would have it.
    lenient: bool,
}

impl KqlTransform {
    pub(crate) fn compile(
        options: &mut Options,
        engine: Option<&dyn KqlEngine>,
        on_failure: OnFailure,
    ) -> ConfigResult<KqlTransform> {
        let query = options.string("query")?.ok_or_else(|| options.error("option `query` is required"))?;
        let columns = match options.take("columns") {
            None => {
                return Err(options.error(
                    "option `columns` is required: declare the fields the query reads and their types, \
                     as a DCR stream declares its columns, e.g. columns = { message = \"string\", status = \"int\" }",
                ))
            }
            Some(value) => parse_columns(value).map_err(|e| options.error(e))?,
        };
        let tag_on_failure = match options.take("tag_on_failure") {
            None => vec!["_kqlfailure".to_string()],
            Some(value) => {
                Options::new(toml::Table::from_iter([("v".to_string(), value)]), options.location()).strings("v")?
            }
        };
        let engine = engine.ok_or_else(|| {
            options.error("the kql transform needs the KQL engine, which this program was built without")
        })?;
        let program = engine.compile(&query, &columns).map_err(|e| options.error(e))?;
        Ok(KqlTransform { program, columns, tag_on_failure, lenient: on_failure == OnFailure::Tag })
    }

    fn finish(&self, event: &mut Event, outcome: KqlOutcome) -> StepResult {
        match outcome {
            KqlOutcome::Row(row) => {
                self.put_row(event, row);
                StepResult::Continue
            }
            KqlOutcome::Filtered => StepResult::Drop("filtered out by the query".to_string()),
            KqlOutcome::Failed { reason, row } => {
                for tag in &self.tag_on_failure {
                    event.add_tag(tag);
                }
                if !self.lenient {
                    return StepResult::Failed(reason);
                }
                match row {
                    Some(row) => {
                        self.put_row(event, row);
                        StepResult::Continue
                    }
                    None => StepResult::Drop(format!("filtered out by the query ({reason})")),
                }
            }
        }
    }

    /// Takes the declared fields off the event and puts the row's columns on.
    fn put_row(&self, event: &mut Event, row: Map<String, Json>) {
        for column in &self.columns {
            if event.fields.remove(&column.name).is_none() {
                let name = event.fields.keys().find(|name| name.eq_ignore_ascii_case(&column.name)).cloned();
                if let Some(name) = name {
                    event.fields.remove(&name);
                }
            }
        }
        for (name, value) in row {
            if value.is_null() {
                event.fields.remove(&name);
            } else {
                event.fields.insert(name, value);
            }
        }
    }

    /// Runs `records`; when the query fails on a batch, halves it until
    /// the failing records are alone, so the others go on.
    fn run(&self, records: &[&Map<String, Json>]) -> Vec<KqlOutcome> {
        let failed = |reason: &str| KqlOutcome::Failed { reason: reason.to_string(), row: None };
        match self.program.run(records) {
            Ok(outcomes) if outcomes.len() == records.len() => outcomes,
            Ok(outcomes) => {
                let reason = format!("the engine gave {} outcomes for {} events", outcomes.len(), records.len());
                records.iter().map(|_| failed(&reason)).collect()
            }
            Err(reason) if records.len() <= 1 => records.iter().map(|_| failed(&reason)).collect(),
            Err(_) => {
                let (left, right) = records.split_at(records.len() / 2);
                let mut outcomes = self.run(left);
                outcomes.extend(self.run(right));
                outcomes
            }
        }
    }
}

/// `columns` as a table (`{ name = "type" }`) or as a DCR stream's array
/// (`[{ name = "...", type = "..." }]`), which keeps the order.
fn parse_columns(value: toml::Value) -> Result<Vec<ColumnDef>, String> {
    let kql_type = |name: &str, type_name: &toml::Value| -> Result<ColumnDef, String> {
        let Some(type_name) = type_name.as_str() else {
            return Err(format!("the type of column `{name}` must be a string"));
        };
        let Some(kql_type) = KqlType::from_stream_name(type_name) else {
            return Err(format!("column `{name}` has the type {type_name:?}; use one of {}", KqlType::stream_names()));
        };
        if name.is_empty() {
            return Err("a column name is empty".to_string());
        }
        Ok(ColumnDef::new(name, kql_type))
    };
    let columns = match value {
        toml::Value::Table(table) => {
            table.iter().map(|(name, type_name)| kql_type(name, type_name)).collect::<Result<Vec<_>, _>>()?
        }
        toml::Value::Array(items) => items
            .iter()
            .map(|item| {
                let name = item.get("name").and_then(toml::Value::as_str);
                match (name, item.get("type")) {
                    (Some(name), Some(type_name)) => kql_type(name, type_name),
                    _ => Err("each element of `columns` needs a `name` and a `type`".to_string()),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("`columns` must be a table of name = type, or an array of {name, type}".to_string()),
    };
    if columns.is_empty() {
        return Err("`columns` declares no column".to_string());
    }
    for (index, column) in columns.iter().enumerate() {
        if columns[..index].iter().any(|other| other.name.eq_ignore_ascii_case(&column.name)) {
            return Err(format!("column `{}` is declared twice", column.name));
        }
    }
    Ok(columns)
}

impl Transform for KqlTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        self.apply_batch(&mut [event]).pop().expect("one outcome per event")
    }

    fn batched(&self) -> bool {
        true
    }

    fn apply_batch(&self, events: &mut [&mut Event]) -> Vec<StepResult> {
        let outcomes = {
            let records: Vec<&Map<String, Json>> = events.iter().map(|event| &event.fields).collect();
            self.run(&records)
        };
        events.iter_mut().zip(outcomes).map(|(event, outcome)| self.finish(event, outcome)).collect()
    }
}
