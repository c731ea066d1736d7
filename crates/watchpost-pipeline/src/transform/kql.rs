//! The `kql` transform: a DCR-style `transformKql` (`where`, `extend`,
//! `project`, `parse`, ...) over events, run by the same engine and with
//! the same semantics as a data collection rule's transform.
//!
//! This crate does not link the KQL engine (the agent is built without
//! DataFusion), so the program that runs the query is given to
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
//! (with `on_failure = "tag"` it goes on with the null, as in a DCR).

use serde_json::{Map, Value as Json};
use watchpost_schema::{ColumnDef, KqlType};

use crate::event::Event;
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

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
    /// It could not be read into the declared columns; the reason.
    Failed(String),
}

/// Stream declaration types (the Logs Ingestion API's seven).
const COLUMN_TYPES: [(&str, KqlType); 7] = [
    ("string", KqlType::String),
    ("int", KqlType::Int),
    ("long", KqlType::Long),
    ("real", KqlType::Real),
    ("boolean", KqlType::Bool),
    ("dynamic", KqlType::Dynamic),
    ("datetime", KqlType::Datetime),
];

pub(crate) struct KqlTransform {
    program: Box<dyn KqlProgram>,
    columns: Vec<ColumnDef>,
    tag_on_failure: Vec<String>,
}

impl KqlTransform {
    pub(crate) fn compile(options: &mut Options, engine: Option<&dyn KqlEngine>) -> ConfigResult<KqlTransform> {
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
        Ok(KqlTransform { program, columns, tag_on_failure })
    }

    fn finish(&self, event: &mut Event, outcome: KqlOutcome) -> StepResult {
        match outcome {
            KqlOutcome::Row(row) => {
                for column in &self.columns {
                    if event.fields.remove(&column.name).is_none() {
                        let name = event.fields.keys().find(|name| name.eq_ignore_ascii_case(&column.name)).cloned();
                        if let Some(name) = name {
                            event.fields.remove(&name);
                        }
                    }
                }
                for (name, value) in row {
                    if !value.is_null() {
                        event.fields.insert(name, value);
                    }
                }
                StepResult::Continue
            }
            KqlOutcome::Filtered => StepResult::Drop("filtered out by the query".to_string()),
            KqlOutcome::Failed(reason) => {
                for tag in &self.tag_on_failure {
                    event.add_tag(tag);
                }
                StepResult::Failed(reason)
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
        let found = COLUMN_TYPES.iter().find(|(known, _)| known.eq_ignore_ascii_case(type_name));
        let Some((_, kql_type)) = found else {
            let known: Vec<&str> = COLUMN_TYPES.iter().map(|(name, _)| *name).collect();
            return Err(format!("column `{name}` has the type {type_name:?}; use one of {}", known.join(", ")));
        };
        if name.is_empty() {
            return Err("a column name is empty".to_string());
        }
        Ok(ColumnDef::new(name, *kql_type))
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
            self.program.run(&records)
        };
        match outcomes {
            Ok(outcomes) => {
                debug_assert_eq!(outcomes.len(), events.len());
                events.iter_mut().zip(outcomes).map(|(event, outcome)| self.finish(event, outcome)).collect()
            }
            Err(reason) => events
                .iter_mut()
                .map(|event| self.finish(event, KqlOutcome::Failed(format!("the query failed: {reason}"))))
                .collect(),
        }
    }
}
