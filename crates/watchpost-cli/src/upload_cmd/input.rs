//! Reading upload input: CSV (header row, RFC 4180 quoting, via the `csv`
//! crate), a JSON array, or NDJSON, from a file or stdin.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{Map, Value as Json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InputFormat {
    Auto,
    Csv,
    Json,
    Ndjson,
}

/// One input row, or why it is not one.
pub(crate) struct Record {
    /// `file:line` (CSV: the record's first line).
    pub source: String,
    /// The input text, kept for the reject file when the row is bad.
    pub raw: String,
    pub row: Result<Map<String, Json>, String>,
}

pub(crate) type Records = Box<dyn Iterator<Item = anyhow::Result<Record>>>;

/// Opens `path` (`-` is stdin) and returns its rows in order.
pub(crate) fn read(path: &Path, format: InputFormat) -> anyhow::Result<Records> {
    let is_stdin = path.as_os_str() == "-";
    let name = if is_stdin { "stdin".to_string() } else { path.display().to_string() };
    let reader: Box<dyn Read> = if is_stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {name}"))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let format = match format {
        InputFormat::Auto => detect(path, &mut reader)?,
        other => other,
    };
    Ok(match format {
        InputFormat::Csv => csv_records(name, reader),
        InputFormat::Ndjson => ndjson_records(name, reader),
        InputFormat::Json | InputFormat::Auto => json_records(name, reader)?,
    })
}

fn detect(path: &Path, reader: &mut BufReader<Box<dyn Read>>) -> anyhow::Result<InputFormat> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => return Ok(InputFormat::Csv),
        Some("ndjson" | "jsonl") => return Ok(InputFormat::Ndjson),
        Some("json") => return Ok(InputFormat::Json),
        _ => {}
    }
    let buffered = reader.fill_buf()?;
    let first = buffered.iter().copied().find(|byte| !byte.is_ascii_whitespace() && *byte != 0xEF);
    Ok(match first {
        Some(b'[') => InputFormat::Json,
        Some(b'{') => InputFormat::Ndjson,
        _ => InputFormat::Csv,
    })
}

fn csv_records(name: String, reader: BufReader<Box<dyn Read>>) -> Records {
    let mut csv_reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = match csv_reader.headers() {
        Ok(headers) => headers.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect::<Vec<_>>(),
        Err(err) => return Box::new(std::iter::once(Err(anyhow::anyhow!("{name}: reading the CSV header: {err}")))),
    };
    Box::new(csv_reader.into_records().map(move |result| {
        let record = match result {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line());
                return Ok(Record {
                    source: format!("{name}:{line}"),
                    raw: String::new(),
                    row: Err(format!("invalid CSV: {err}")),
                });
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let raw = record.iter().collect::<Vec<_>>().join(",");
        let row = if record.len() != headers.len() {
            Err(format!("the record has {} fields, the header {}", record.len(), headers.len()))
        } else {
            Ok(headers.iter().zip(record.iter()).map(|(h, v)| (h.clone(), Json::String(v.to_string()))).collect())
        };
        Ok(Record { source: format!("{name}:{line}"), raw, row })
    }))
}

fn ndjson_records(name: String, reader: BufReader<Box<dyn Read>>) -> Records {
    let lines = reader.lines().enumerate().filter_map(move |(index, line)| {
        let source = format!("{name}:{}", index + 1);
        let line = match line {
            Ok(line) => line,
            Err(err) => return Some(Err(anyhow::anyhow!("{source}: {err}"))),
        };
        let text = line.trim().trim_start_matches('\u{feff}');
        if text.is_empty() {
            return None;
        }
        let row = match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(map)) => Ok(map),
            Ok(_) => Err("the line is JSON but not an object".to_string()),
            Err(err) => Err(format!("invalid JSON: {err}")),
        };
        Some(Ok(Record { source, raw: line, row }))
    });
    Box::new(lines)
}

fn json_records(name: String, mut reader: BufReader<Box<dyn Read>>) -> anyhow::Result<Records> {
    let mut text = String::new();
    reader.read_to_string(&mut text).with_context(|| format!("reading {name}"))?;
    let value: Json = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{name} is not valid JSON (use --format ndjson for one object per line)"))?;
    let items = match value {
        Json::Array(items) => items,
        object @ Json::Object(_) => vec![object],
        _ => anyhow::bail!("{name} holds neither an array nor an object"),
    };
    Ok(Box::new(items.into_iter().enumerate().map(move |(index, item)| {
        let source = format!("{name}[{index}]");
        Ok(match item {
            Json::Object(map) => Record { source, raw: String::new(), row: Ok(map) },
            other => Record { source, raw: other.to_string(), row: Err("the array element is not an object".into()) },
        })
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, format: InputFormat, ext: &str) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("in.{ext}"));
        std::fs::write(&path, text).unwrap();
        read(&path, format).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn csv_with_quotes_and_a_short_record() {
        let text = "Name,Note\n\"Smith, J\",\"said \"\"hi\"\"\nthen left\"\nshort\n";
        let records = rows(text, InputFormat::Auto, "csv");
        assert_eq!(records.len(), 2);
        let first = records[0].row.as_ref().unwrap();
        assert_eq!(first["Name"], "Smith, J");
        assert_eq!(first["Note"], "said \"hi\"\nthen left");
        assert!(records[1].row.as_ref().unwrap_err().contains("1 fields"));
        assert_eq!(records[1].source.rsplit(':').next(), Some("4"));
    }

    #[test]
    fn ndjson_keeps_bad_lines_as_errors() {
        let records = rows("{\"a\":1}\n\n[1]\n{oops\n", InputFormat::Auto, "ndjson");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].row.as_ref().unwrap()["a"], 1);
        assert!(records[1].row.is_err());
        assert!(records[2].row.as_ref().unwrap_err().starts_with("invalid JSON"));
        assert_eq!(records[2].raw, "{oops");
    }

    #[test]
    fn json_array_and_content_detection() {
        let records = rows("  [{\"a\":\"x\"}, 3]", InputFormat::Auto, "txt");
        assert_eq!(records.len(), 2);
        assert!(records[0].row.is_ok());
        assert!(records[1].row.is_err());
        let records = rows("{\"a\":1}\n{\"a\":2}\n", InputFormat::Auto, "txt");
        assert_eq!(records.len(), 2);
    }
}
