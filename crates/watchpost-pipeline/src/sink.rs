//! The sink contract: batches of rows for one table, delivered or not.
//! Also the event → row mapping and the per-table batcher, which are pure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::event::{Event, METADATA, TIMESTAMP};

/// Column names the Data Collector API refuses in a payload.
const RESERVED: [&str; 3] = ["TimeGenerated", "RawData", "tenant"];

/// The property that carries `@timestamp` in rows for a standard table
/// (`Syslog`, `CommonSecurityLog`, `Heartbeat`, ...), named by the
/// `time-generated-field` header so that it becomes `TimeGenerated`.
/// `TimeGenerated` itself is a name the Data Collector API refuses, and
/// `EventTime` is a `Syslog` column of its own (the header's time), so the
/// time travels as `TimeCollected`: a `Syslog` and `SecurityEvent` column
/// meaning just that, and a property Watchpost only uses for
/// `TimeGenerated` in tables without it.
pub const STANDARD_TIME_FIELD: &str = "TimeCollected";

/// Rows for one table, encoded as the JSON array a POST carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The log type (table without `_CL`).
    pub table: String,
    pub rows: usize,
    pub body: Vec<u8>,
    /// Sent with the batch so the receiver stores it once across retries.
    pub idempotency_key: String,
}

/// What a sink made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Try again later (receiver down, throttled, 5xx).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Refused for good: the rows go to the dead-letter table.
    Refused {
        reason: String,
    },
}

/// Where batches go. Implementations do the I/O (HTTP, stdout, files).
pub trait Sink: Send {
    fn name(&self) -> &str;
    fn deliver(&mut self, batch: &Batch) -> Delivery;
}

/// Maps an event to a row: `@metadata` and `@version` are left out,
/// `@timestamp` goes to `time_field`, nested objects are flattened with
/// `_` (`[source][address]` → `source_address`), and names the API
/// reserves get a trailing `_`.
pub fn event_to_row(event: &Event, time_field: &str) -> Map<String, Json> {
    let mut row = Map::new();
    for (name, value) in &event.fields {
        match name.as_str() {
            METADATA | "@version" => {}
            TIMESTAMP => {
                row.insert(time_field.to_string(), value.clone());
            }
            _ => flatten_into(&mut row, name, value),
        }
    }
    row
}

fn flatten_into(row: &mut Map<String, Json>, name: &str, value: &Json) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                flatten_into(row, &format!("{name}_{key}"), inner);
            }
        }
        _ => {
            let name = if RESERVED.contains(&name) { format!("{name}_") } else { name.to_string() };
            row.insert(name, value.clone());
        }
    }
}

/// Collects rows per table into bodies no larger than `max_bytes` and no
/// longer than `max_rows`.
#[derive(Debug)]
pub struct Batcher {
    max_bytes: usize,
    max_rows: usize,
    open: BTreeMap<String, (Vec<u8>, usize)>,
}

impl Batcher {
    pub fn new(max_bytes: usize, max_rows: usize) -> Batcher {
        Batcher { max_bytes, max_rows, open: BTreeMap::new() }
    }

    /// Adds a row; returns the batch it closed, if adding it would have
    /// overflowed one. A single row larger than `max_bytes` is refused.
    pub fn add(&mut self, table: &str, row: &Map<String, Json>) -> Result<Option<(String, Vec<u8>, usize)>, String> {
        let encoded = serde_json::to_vec(row).expect("a JSON map always serialises");
        if encoded.len() + 2 > self.max_bytes {
            return Err(format!("the row is {} bytes, more than a batch may hold ({})", encoded.len(), self.max_bytes));
        }
        let mut closed = None;
        if let Some((body, rows)) = self.open.get(table) {
            if body.len() + encoded.len() + 2 > self.max_bytes || *rows >= self.max_rows {
                let (body, rows) = self.open.remove(table).expect("present");
                closed = Some((table.to_string(), finish(body), rows));
            }
        }
        let (body, rows) = self.open.entry(table.to_string()).or_insert_with(|| (Vec::with_capacity(64 << 10), 0));
        body.push(if body.is_empty() { b'[' } else { b',' });
        body.extend_from_slice(&encoded);
        *rows += 1;
        Ok(closed)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub fn buffered_rows(&self) -> usize {
        self.open.values().map(|(_, rows)| rows).sum()
    }

    /// Closes every open batch.
    pub fn drain(&mut self) -> Vec<(String, Vec<u8>, usize)> {
        std::mem::take(&mut self.open).into_iter().map(|(table, (body, rows))| (table, finish(body), rows)).collect()
    }
}

fn finish(mut body: Vec<u8>) -> Vec<u8> {
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::event::FieldRef;

    #[test]
    fn rows_are_flat_and_avoid_reserved_names() {
        let mut event = Event::from_message("x", Utc::now());
        event.set(&FieldRef::parse("[source][address]").unwrap(), Json::from("10.0.0.1"));
        event.set(&FieldRef::parse("[@metadata][secret]").unwrap(), Json::from(1));
        event.set(&FieldRef::single("RawData"), Json::from("r"));
        let row = event_to_row(&event, "EventTime");
        let mut names: Vec<&String> = row.keys().collect();
        names.sort();
        assert_eq!(names, ["EventTime", "RawData_", "message", "source_address"]);
    }

    #[test]
    fn batcher_splits_by_rows_and_bytes() {
        let mut batcher = Batcher::new(64, 2);
        let row: Map<String, Json> = serde_json::from_str(r#"{"a":"0123456789"}"#).unwrap();
        assert!(batcher.add("T", &row).unwrap().is_none());
        assert!(batcher.add("T", &row).unwrap().is_none());
        let (table, body, rows) = batcher.add("T", &row).unwrap().unwrap();
        assert_eq!((table.as_str(), rows), ("T", 2));
        assert_eq!(serde_json::from_slice::<Json>(&body).unwrap().as_array().unwrap().len(), 2);
        let big: Map<String, Json> = serde_json::from_str(&format!(r#"{{"a":"{}"}}"#, "x".repeat(100))).unwrap();
        assert!(batcher.add("T", &big).is_err());
        assert_eq!(batcher.drain().len(), 1);
    }
}
