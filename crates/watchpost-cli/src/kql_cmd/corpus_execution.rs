//! Every corpus query that binds also runs: each table of `schemas.json`
//! holds one row (a `TimeGenerated` an hour before the query's "now",
//! nulls elsewhere) and every query must execute without an error, so a
//! function or operator the binder accepts cannot be missing from lowering.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{new_null_array, ArrayRef, RecordBatch, TimestampNanosecondArray};
use watchpost_engine::{EngineOptions, QueryEngine, QueryRequest};
use watchpost_schema::{ColumnDef, KqlType, TableSchema, TIME_RECEIVED};
use watchpost_storage::{AppendRequest, Store, StoreOptions};

use super::{collect_files, extension, yaml_query, Extracted, SchemaCatalog};

const WORKSPACE: &str = "00000000-0000-0000-0000-00000000c0c0";
/// 2024-06-03T00:00:00Z, the query's "now".
const NOW_NS: i64 = 1_717_372_800_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

fn one_row(schema: &TableSchema) -> RecordBatch {
    let mut columns = schema.columns.clone();
    if schema.column(TIME_RECEIVED).is_none() {
        columns.push(ColumnDef::new(TIME_RECEIVED, KqlType::Datetime));
    }
    let schema = TableSchema::new(columns);
    let arrays: Vec<ArrayRef> = schema
        .columns
        .iter()
        .map(|column| -> ArrayRef {
            if column.name == "TimeGenerated" || column.name == TIME_RECEIVED {
                Arc::new(TimestampNanosecondArray::from(vec![NOW_NS - HOUR_NS]).with_timezone("UTC"))
            } else {
                new_null_array(&column.kql_type.arrow_type(), 1)
            }
        })
        .collect();
    RecordBatch::try_new(schema.arrow_schema(), arrays).expect("the batch matches its schema")
}

#[test]
fn every_corpus_query_executes() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kql-corpus");
    let catalog = SchemaCatalog::load(&corpus.join("schemas.json")).expect("the corpus schemas load");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Arc::new(
        Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() }).expect("a store"),
    );
    for (table, schema) in &catalog.tables {
        let request = AppendRequest {
            workspace: WORKSPACE.into(),
            table: table.clone(),
            idempotency_key: None,
            received_ns: NOW_NS,
            batch: one_row(schema),
        };
        store.append(request).expect("the row is stored");
    }
    let engine = QueryEngine::new(store, EngineOptions::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let mut files = Vec::new();
    collect_files(&corpus, &mut files).expect("the corpus is readable");
    let mut failures = Vec::new();
    let mut n_run = 0;
    for path in &files {
        let source = std::fs::read_to_string(path).expect("a corpus file");
        let extracted = if matches!(extension(path).as_str(), "yaml" | "yml") {
            match yaml_query(&source).expect("corpus YAML parses") {
                Some(extracted) => extracted,
                None => continue,
            }
        } else {
            Extracted { text: source, prelude: String::new(), first_line: 0, indent: 0 }
        };
        let request = QueryRequest {
            workspace: WORKSPACE.into(),
            text: format!("{}{}", extracted.prelude, extracted.text),
            window: None,
            now_ns: NOW_NS,
            timeout: Duration::from_secs(60),
        };
        n_run += 1;
        if let Err(error) = runtime.block_on(engine.run(&request)) {
            failures.push(format!("{}: {error:?}", path.display()));
        }
    }
    assert!(n_run >= 70, "only {n_run} corpus queries found");
    assert!(failures.is_empty(), "{} corpus queries failed:\n{}", failures.len(), failures.join("\n"));
}
