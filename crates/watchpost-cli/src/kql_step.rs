//! The pipeline's `kql` step on the workspace's own engine: events become
//! a batch the way the Logs Ingestion API converts a stream's records
//! (`watchpost_ingest::logs_ingestion::project_records`), the DCR transform
//! (`watchpost_engine::transform`) runs over it, and each output row goes
//! back to the event it came from. The pipeline crate does not link the
//! engine; this is what the binary hands it.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use serde_json::{Map, Value as Json};
use watchpost_engine::transform::{value_json, Transform};
use watchpost_ingest::logs_ingestion::project_records;
use watchpost_pipeline::{KqlEngine, KqlOutcome, KqlProgram};
use watchpost_schema::{ColumnDef, KqlType, TableSchema};

/// The hidden column that says which event an output row belongs to; every
/// `project` keeps it (`Transform::compile_tracked`).
const ROW_COLUMN: &str = "__watchpost_row";

/// Compiles `kql` steps with the engine.
pub(crate) struct EngineKql;

impl KqlEngine for EngineKql {
    fn compile(&self, query: &str, columns: &[ColumnDef]) -> Result<Box<dyn KqlProgram>, String> {
        let reserved = |text: &str| text.to_ascii_lowercase().contains(ROW_COLUMN);
        if columns.iter().any(|column| reserved(&column.name)) || reserved(query) {
            return Err(format!("the name {ROW_COLUMN} is reserved for the step's own use"));
        }
        let mut input = columns.to_vec();
        input.push(ColumnDef::new(ROW_COLUMN, KqlType::Long));
        let input = TableSchema::new(input);
        let transform = Transform::compile_tracked(query, &input, Some(ROW_COLUMN))
            .map_err(|diagnostics| format!("in the query at {}", diagnostics[0].render(query)))?;
        let output = transform.output_schema();
        let row_index = output
            .columns
            .iter()
            .position(|column| column.name == ROW_COLUMN && column.kql_type == KqlType::Long)
            .ok_or_else(|| {
                "the query must give rows of `source`: each output row goes back on the event it came from \
                 (`print` and `datatable` are not possible here, nor a `project-away` wildcard such as `*` or `_*`)"
                    .to_string()
            })?;
        let outputs = output
            .columns
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != row_index)
            .map(|(index, column)| (index, column.name.clone(), column.kql_type))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|err| format!("starting the query runtime: {err}"))?;
        let schema = input.arrow_schema();
        Ok(Box::new(EngineProgram { transform, columns: columns.to_vec(), schema, row_index, outputs, runtime }))
    }
}

struct EngineProgram {
    transform: Transform,
    columns: Vec<ColumnDef>,
    /// The declared columns and the row column.
    schema: arrow::datatypes::SchemaRef,
    row_index: usize,
    /// Output column index, name and type, without the row column.
    outputs: Vec<(usize, String, KqlType)>,
    /// DataFusion runs on tokio; the pipeline's main loop is a plain thread.
    runtime: tokio::runtime::Runtime,
}

impl KqlProgram for EngineProgram {
    fn run(&self, records: &[&Map<String, Json>]) -> Result<Vec<KqlOutcome>, String> {
        let (batch, unconvertible) = project_records(records, &self.columns);
        let mut arrays = batch.columns().to_vec();
        arrays.push(Arc::new(Int64Array::from_iter_values(0..records.len() as i64)));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|err| err.to_string())?;
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let output = self
            .runtime
            .block_on(self.transform.apply(batch, now_ns))
            .map_err(|err| format!("the query failed: {err}"))?;
        let mut outcomes = vec![KqlOutcome::Filtered; records.len()];
        for batch in &output {
            let rows = batch.column(self.row_index).as_primitive::<Int64Type>();
            for position in 0..batch.num_rows() {
                let mut row = Map::with_capacity(self.outputs.len());
                for (index, name, kql_type) in &self.outputs {
                    row.insert(name.clone(), value_json(batch.column(*index), *kql_type, position));
                }
                if let Some(slot) = usize::try_from(rows.value(position)).ok().and_then(|at| outcomes.get_mut(at)) {
                    *slot = KqlOutcome::Row(row);
                }
            }
        }
        // The first value of a record that could not be converted names
        // the failure; the row computed with the null goes with it.
        for failure in unconvertible.iter().rev() {
            let column = &self.columns[failure.column];
            let reason = format!(
                "the value of `{}` ({}) cannot be converted to {}",
                column.name,
                failure.value,
                column.kql_type.stream_name()
            );
            let row = match std::mem::replace(&mut outcomes[failure.row], KqlOutcome::Filtered) {
                KqlOutcome::Row(row) => Some(row),
                KqlOutcome::Failed { row, .. } => row,
                KqlOutcome::Filtered => None,
            };
            outcomes[failure.row] = KqlOutcome::Failed { reason, row };
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use watchpost_pipeline::{Event, PipelineConfig, Processed};

    use super::*;

    fn pipeline(transforms: &str) -> Result<watchpost_pipeline::Pipeline, String> {
        let text = format!("{transforms}\n[[sink]]\ntype = \"stdout\"\n");
        let config = PipelineConfig::from_toml(&text).map_err(|e| e.to_string())?;
        config.compile_with(Some(&EngineKql)).map_err(|e| e.to_string())
    }

    fn event(fields: Json) -> Event {
        let mut event = Event::from_message("m", Utc::now());
        for (key, value) in fields.as_object().unwrap() {
            event.fields.insert(key.clone(), value.clone());
        }
        event
    }

    #[test]
    fn rows_go_back_on_their_events_and_filtered_ones_are_dropped() {
        let pipeline = pipeline(
            r#"
[[transform]]
type = "kql"
query = """source
  | parse message with 'user=' User ' status=' Status:int
  | where Status >= 400
  | extend Severity = iff(Status >= 500, 'high', 'low'), Seen = bytes * 2
  | project-away message"""
columns = { message = "string", bytes = "long" }
"#,
        )
        .unwrap();
        assert!(pipeline.batched());
        let events = vec![
            event(serde_json::json!({"message": "user=ann status=503", "bytes": 10, "host": "h1"})),
            event(serde_json::json!({"message": "user=bob status=200", "bytes": 1, "host": "h2"})),
            event(serde_json::json!({"message": "user=cy status=404", "host": "h3"})),
        ];
        let out = pipeline.process_batch(events);
        let Processed::Event(first) = &out[0] else { panic!("{:?}", out[0]) };
        assert_eq!(first.fields["User"], "ann");
        assert_eq!(first.fields["Status"], 503);
        assert_eq!(first.fields["Severity"], "high");
        assert_eq!(first.fields["Seen"], 20);
        // Undeclared fields pass through; project-away took the declared one.
        assert_eq!(first.fields["host"], "h1");
        assert!(first.fields.get("message").is_none());
        assert!(first.fields.contains_key("@timestamp"));
        assert!(first.fields.get(ROW_COLUMN).is_none());
        let Processed::Dropped { reason, .. } = &out[1] else { panic!("{:?}", out[1]) };
        assert!(reason.contains("filtered out"), "{reason}");
        let Processed::Event(third) = &out[2] else { panic!("{:?}", out[2]) };
        assert_eq!(third.fields["Severity"], "low");
        // A null output leaves the field absent.
        assert!(third.fields.get("bytes").is_none() && third.fields.get("Seen").is_none());
        assert_eq!(third.fields["host"], "h3");
    }

    #[test]
    fn project_keeps_the_rows_and_values_that_do_not_convert_fail_the_step() {
        let pipeline = pipeline(
            r#"
[[transform]]
type = "kql"
query = "source | project Code = toupper(code), Count = count + 1, When = when, Bag = bag.a"
columns = [{ name = "code", type = "string" }, { name = "count", type = "int" }, { name = "when", type = "datetime" }, { name = "bag", type = "dynamic" }]
"#,
        )
        .unwrap();
        let events = vec![
            event(serde_json::json!({"code": "ab", "count": "41", "when": "2026-11-30T01:02:03Z", "bag": {"a": [1]}})),
            event(serde_json::json!({"code": "cd", "count": "many"})),
        ];
        let out = pipeline.process_batch(events);
        let Processed::Event(first) = &out[0] else { panic!("{:?}", out[0]) };
        assert_eq!(first.fields["Code"], "AB");
        assert_eq!(first.fields["Count"], 42);
        assert!(first.fields["When"].as_str().unwrap().starts_with("2026-11-30T01:02:03"), "{}", first.fields["When"]);
        assert_eq!(first.fields["Bag"], serde_json::json!([1]));
        assert!(first.fields.get("code").is_none());
        let Processed::DeadLetter { reason, event, .. } = &out[1] else { panic!("{:?}", out[1]) };
        assert_eq!(reason, "the value of `count` (\"many\") cannot be converted to int");
        assert!(event.has_tag("_kqlfailure"));
    }

    #[test]
    fn with_on_failure_tag_a_failed_event_goes_on_as_a_dcr_would_store_it() {
        let pipeline = pipeline(
            r#"
[[transform]]
type = "kql"
on_failure = "tag"
query = "source | where isnull(n) or n > 1 | extend Twice = n * 2, Name = toupper(name)"
columns = { n = "int", name = "string" }
"#,
        )
        .unwrap();
        let out = pipeline.process_batch(vec![
            event(serde_json::json!({"n": "many", "name": "ann"})),
            event(serde_json::json!({"n": 1, "name": "bob"})),
        ]);
        // The unconvertible `n` is null in the row; the event is tagged.
        let Processed::Event(first) = &out[0] else { panic!("{:?}", out[0]) };
        assert_eq!(first.fields["Name"], "ANN");
        assert!(first.fields.get("n").is_none() && first.fields.get("Twice").is_none());
        assert!(first.has_tag("_kqlfailure"));
        assert!(matches!(&out[1], Processed::Dropped { .. }), "{:?}", out[1]);
    }

    #[test]
    fn a_query_that_fails_at_run_time_fails_only_its_events() {
        let pipeline = pipeline(
            r#"
[[transform]]
type = "kql"
query = "source | extend Share = 100 / n"
columns = { n = "long" }
"#,
        )
        .unwrap();
        let events = [4, 0, 5, 10, 0, 20].map(|n| event(serde_json::json!({ "n": n })));
        let out = pipeline.process_batch(events.to_vec());
        let shares: Vec<String> = out
            .iter()
            .map(|processed| match processed {
                Processed::Event(event) => event.fields["Share"].to_string(),
                Processed::DeadLetter { reason, .. } => format!("failed: {}", reason.contains("the query failed")),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shares, ["25", "failed: true", "20", "10", "failed: true", "5"]);
    }

    #[test]
    fn queries_are_checked_when_the_pipeline_is_compiled() {
        let step = |query: &str| {
            format!("[[transform]]\ntype = \"kql\"\nquery = '''{query}'''\ncolumns = {{ message = \"string\" }}\n")
        };
        let err = pipeline(&step("source | summarize count() by message")).err().unwrap();
        assert!(err.contains("in the query at 1:10") && err.contains("`summarize`"), "{err}");
        let err = pipeline(&step("source | where nope == 1")).err().unwrap();
        assert!(err.contains("nope"), "{err}");
        let err = pipeline(&step("print x = 1")).err().unwrap();
        assert!(err.contains("rows of `source`"), "{err}");
        let err = pipeline(&step("source | project-away *")).err().unwrap();
        assert!(err.contains("rows of `source`"), "{err}");
        let err = pipeline(&step("source | extend __watchpost_row = 0")).err().unwrap();
        assert!(err.contains("reserved"), "{err}");
        // The row column survives `let`, parentheses and `project-rename`.
        let kept = "let s = source | project message; (s) | project-rename Text = message | project Text";
        assert!(pipeline(&step(kept)).is_ok());
        let err = pipeline("[[transform]]\ntype = \"kql\"\nquery = \"source\"\n").err().unwrap();
        assert!(err.contains("`columns` is required"), "{err}");
        let err =
            pipeline("[[transform]]\ntype = \"kql\"\nquery = \"source\"\ncolumns = { a = \"text\" }\n").err().unwrap();
        assert!(err.contains("use one of string, int"), "{err}");
        // Without the engine, the step is refused by name.
        let config = PipelineConfig::from_toml(&format!("{}\n[[sink]]\ntype = \"stdout\"\n", step("source"))).unwrap();
        let err = config.compile().err().unwrap().to_string();
        assert!(err.contains("needs the KQL engine"), "{err}");
    }
}
