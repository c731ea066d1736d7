//! The `.kqlt` logic-test runner (style guide 7.3): files of records, each a
//! query with its expected rows or its expected error, run against a fresh
//! engine over an empty store.
//!
//! Records are separated by blank lines; `#` lines are comments.
//!
//! ```text
//! set now 2024-01-01T00:00:00Z
//!
//! query s,l rowsort
//! datatable(A:string, B:long)["x", 1]
//! ----
//! x  1
//!
//! error KQL2002
//! print x = NoSuchColumn
//! ```
//!
//! `query` takes one type code per column (`b dt dyn g i l r s ts dec`) and
//! optionally `rowsort` (compare sorted rows) or `nosort` (the default).
//! Values are separated by two or more spaces; nulls print `null`, empty
//! strings `(empty)`, reals with up to 6 decimals, dynamic as compact JSON.
//! `error CODE` passes when the query is refused with that diagnostic code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use watchpost_engine::{EngineOptions, QueryEngine, QueryError, QueryRequest};
use watchpost_schema::KqlType;
use watchpost_storage::{Store, StoreOptions};

const WORKSPACE: &str = "00000000-0000-0000-0000-00000000c0de";

/// One failed record: where, and what differed.
#[derive(Debug)]
pub struct Failure {
    pub line: usize,
    pub message: String,
}

/// Runs every record of `text`; returns the failures.
pub async fn run_file(text: &str) -> Vec<Failure> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path(), StoreOptions { wal_fsync: false, ..StoreOptions::default() })
        .expect("opening an empty store");
    let engine = QueryEngine::new(Arc::new(store), EngineOptions::default());
    let mut now_ns = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .expect("constant date")
        .timestamp_nanos_opt()
        .expect("in range");
    let mut failures = Vec::new();
    for record in records(text) {
        let fail = |message: String| Failure { line: record.line, message };
        let mut words = record.header.split_whitespace();
        match words.next() {
            Some("set") => match (words.next(), words.next()) {
                (Some("now"), Some(value)) => match chrono::DateTime::parse_from_rfc3339(value) {
                    Ok(now) => now_ns = now.timestamp_nanos_opt().expect("in range"),
                    Err(err) => failures.push(fail(format!("bad `set now` value: {err}"))),
                },
                _ => failures.push(fail(format!("unknown setting: {}", record.header))),
            },
            Some("query") => {
                let types = words.next().unwrap_or("");
                let sort = words.next().unwrap_or("nosort");
                if let Err(message) = check_query(&engine, now_ns, &record, types, sort).await {
                    failures.push(fail(message));
                }
            }
            Some("error") => {
                let code = words.next().unwrap_or("");
                match run(&engine, now_ns, &record.query).await {
                    Ok(_) => failures.push(fail(format!("expected error {code}, the query succeeded"))),
                    Err(QueryError::Invalid { diagnostics }) => {
                        if !diagnostics.iter().any(|diagnostic| diagnostic.code == code) {
                            let got: Vec<&str> = diagnostics.iter().map(|diagnostic| diagnostic.code).collect();
                            failures.push(fail(format!("expected error {code}, got {got:?}")));
                        }
                    }
                    Err(other) if code == "execution" => drop(other),
                    Err(other) => failures.push(fail(format!("expected error {code}, got {other}"))),
                }
            }
            _ => failures.push(fail(format!("unknown record: {}", record.header))),
        }
    }
    failures
}

/// Runs every `.kqlt` file under `dir`; returns `(file, failure)` pairs and
/// the number of files run.
pub async fn run_dir(dir: &Path) -> (Vec<(String, Failure)>, usize) {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("reading a .kqlt file");
        for failure in run_file(&text).await {
            failures.push((file.display().to_string(), failure));
        }
    }
    (failures, files.len())
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "kqlt") {
            out.push(path);
        }
    }
}

struct Record {
    line: usize,
    header: String,
    query: String,
    expected: Vec<String>,
}

fn records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((idx, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut record =
            Record { line: idx + 1, header: line.trim().to_string(), query: String::new(), expected: Vec::new() };
        let mut in_expected = false;
        while let Some((_, line)) = lines.peek() {
            if line.trim().is_empty() {
                break;
            }
            let (_, line) = lines.next().expect("peeked");
            if line == "----" {
                in_expected = true;
            } else if in_expected {
                record.expected.push(line.trim_end().to_string());
            } else {
                record.query.push_str(line);
                record.query.push('\n');
            }
        }
        out.push(record);
    }
    out
}

async fn run(engine: &QueryEngine, now_ns: i64, query: &str) -> Result<watchpost_engine::QueryOutput, QueryError> {
    let request = QueryRequest {
        workspace: WORKSPACE.to_string(),
        text: query.to_string(),
        window: None,
        now_ns,
        timeout: Duration::from_secs(60),
    };
    engine.run(&request).await
}

async fn check_query(
    engine: &QueryEngine,
    now_ns: i64,
    record: &Record,
    types: &str,
    sort: &str,
) -> Result<(), String> {
    let output = run(engine, now_ns, &record.query).await.map_err(|err| match err {
        QueryError::Invalid { diagnostics } => {
            let messages: Vec<String> = diagnostics.iter().map(|d| format!("{}: {}", d.code, d.message)).collect();
            format!("the query failed: {}", messages.join("; "))
        }
        other => format!("the query failed: {other}"),
    })?;
    let expected_types: Vec<&str> = types.split(',').filter(|code| !code.is_empty()).collect();
    let actual_types: Vec<&str> = output.columns.iter().map(|column| type_code(column.kql_type)).collect();
    if expected_types != actual_types {
        return Err(format!("column types: expected {expected_types:?}, got {actual_types:?}"));
    }
    let rows = output.json_rows();
    let mut actual: Vec<String> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&output.columns)
                .map(|(cell, column)| cell_text(cell, column.kql_type))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect();
    let mut expected: Vec<String> = record.expected.iter().map(|line| split_cells(line).join("  ")).collect();
    if sort == "rowsort" {
        actual.sort();
        expected.sort();
    }
    if actual != expected {
        return Err(format!("rows differ\nexpected:\n  {}\nactual:\n  {}", expected.join("\n  "), actual.join("\n  ")));
    }
    Ok(())
}

fn split_cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).map(str::to_string).collect()
}

fn type_code(kql_type: KqlType) -> &'static str {
    match kql_type {
        KqlType::Bool => "b",
        KqlType::Datetime => "dt",
        KqlType::Dynamic => "dyn",
        KqlType::Guid => "g",
        KqlType::Int => "i",
        KqlType::Long => "l",
        KqlType::Real => "r",
        KqlType::String => "s",
        KqlType::Timespan => "ts",
        KqlType::Decimal => "dec",
    }
}

fn cell_text(cell: &Json, kql_type: KqlType) -> String {
    match cell {
        Json::Null => "null".to_string(),
        Json::String(text) if text.is_empty() => "(empty)".to_string(),
        Json::String(text) => text.clone(),
        Json::Number(number) if kql_type == KqlType::Real => {
            let value = number.as_f64().unwrap_or(f64::NAN);
            let text = format!("{value:.6}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => other.to_string(),
    }
}
