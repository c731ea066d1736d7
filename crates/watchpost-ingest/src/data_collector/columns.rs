//! Column buffers for one batch: growable Arrow-layout vectors that can
//! replace the current row's value (duplicate properties: the last wins)
//! and pad skipped rows with nulls.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use watchpost_schema::KqlType;

use super::infer::{push_compact_json, Guid};
use super::MAX_VALUE_BYTES;

/// One value ready to store.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'v> {
    Text(&'v str),
    /// Valid JSON text, stored compacted.
    Json(&'v str),
    Guid(Guid),
    Real(f64),
    Bool(bool),
    /// Nanoseconds since the Unix epoch.
    Micros(i64),
}

/// The values of one column, in Arrow layout.
#[derive(Debug)]
pub(crate) enum ColumnData {
    Utf8 { offsets: Vec<i32>, data: Vec<u8>, validity: Vec<bool> },
    Float64 { values: Vec<f64>, validity: Vec<bool> },
    Boolean { values: Vec<bool>, validity: Vec<bool> },
    Timestamp { values: Vec<i64>, validity: Vec<bool> },
}

impl ColumnData {
    /// Returns an empty buffer for a column of `kql_type`, or `None` for the
    /// types the Data Collector API never writes.
    pub(crate) fn for_type(kql_type: KqlType) -> Option<ColumnData> {
        Some(match kql_type {
            KqlType::String | KqlType::Guid => {
                ColumnData::Utf8 { offsets: vec![0], data: Vec::new(), validity: Vec::new() }
            }
            KqlType::Real => ColumnData::Float64 { values: Vec::new(), validity: Vec::new() },
            KqlType::Bool => ColumnData::Boolean { values: Vec::new(), validity: Vec::new() },
            KqlType::Datetime => ColumnData::Timestamp { values: Vec::new(), validity: Vec::new() },
            _ => return None,
        })
    }

    /// Makes room for `rows` more values and, for text, `text_bytes` more
    /// bytes, so a batch's buffers grow once instead of by doubling.
    pub(crate) fn reserve(&mut self, rows: usize, text_bytes: usize) {
        match self {
            ColumnData::Utf8 { offsets, data, validity } => {
                offsets.reserve(rows);
                data.reserve(text_bytes);
                validity.reserve(rows);
            }
            ColumnData::Float64 { values, validity } => {
                values.reserve(rows);
                validity.reserve(rows);
            }
            ColumnData::Boolean { values, validity } => {
                values.reserve(rows);
                validity.reserve(rows);
            }
            ColumnData::Timestamp { values, validity } => {
                values.reserve(rows);
                validity.reserve(rows);
            }
        }
    }

    /// Bytes of text held (0 for other layouts).
    pub(crate) fn text_len(&self) -> usize {
        match self {
            ColumnData::Utf8 { data, .. } => data.len(),
            _ => 0,
        }
    }

    fn validity(&self) -> &Vec<bool> {
        match self {
            ColumnData::Utf8 { validity, .. }
            | ColumnData::Float64 { validity, .. }
            | ColumnData::Boolean { validity, .. }
            | ColumnData::Timestamp { validity, .. } => validity,
        }
    }

    fn len(&self) -> usize {
        self.validity().len()
    }

    /// Appends nulls until the column has `n_rows` values.
    pub(crate) fn pad_to(&mut self, n_rows: usize) {
        let missing = n_rows.saturating_sub(self.len());
        if missing == 0 {
            return;
        }
        match self {
            ColumnData::Utf8 { offsets, data, validity } => {
                let end = offset(data.len());
                offsets.extend(std::iter::repeat_n(end, missing));
                validity.resize(n_rows, false);
            }
            ColumnData::Float64 { values, validity } => {
                values.resize(n_rows, 0.0);
                validity.resize(n_rows, false);
            }
            ColumnData::Boolean { values, validity } => {
                values.resize(n_rows, false);
                validity.resize(n_rows, false);
            }
            ColumnData::Timestamp { values, validity } => {
                values.resize(n_rows, 0);
                validity.resize(n_rows, false);
            }
        }
    }

    /// Drops the value of row `row` if the column already has one.
    fn clear_row(&mut self, row: usize) {
        if self.len() != row + 1 {
            return;
        }
        match self {
            ColumnData::Utf8 { offsets, data, validity } => {
                offsets.pop();
                let start = usize::try_from(*offsets.last().expect("offsets start with 0")).expect("offsets are >= 0");
                data.truncate(start);
                validity.pop();
            }
            ColumnData::Float64 { values, validity } => {
                values.pop();
                validity.pop();
            }
            ColumnData::Boolean { values, validity } => {
                values.pop();
                validity.pop();
            }
            ColumnData::Timestamp { values, validity } => {
                values.pop();
                validity.pop();
            }
        }
    }

    /// Stores `cell` as the value of row `row`, replacing an earlier value of
    /// that row. Returns whether the value was truncated to
    /// [`MAX_VALUE_BYTES`], or `None` if `cell` does not fit this column (a
    /// bug in the caller's conversion).
    pub(crate) fn set(&mut self, row: usize, cell: Cell<'_>) -> Option<bool> {
        self.clear_row(row);
        self.pad_to(row);
        let mut truncated = false;
        match (self, cell) {
            (ColumnData::Utf8 { offsets, data, validity }, cell) => {
                let start = data.len();
                match cell {
                    Cell::Text(text) => data.extend_from_slice(text.as_bytes()),
                    Cell::Json(raw) => push_compact_json(raw, data),
                    Cell::Guid(guid) => data.extend_from_slice(guid.as_str().as_bytes()),
                    _ => return None,
                }
                truncated = truncate_utf8_tail(data, start);
                offsets.push(offset(data.len()));
                validity.push(true);
            }
            (ColumnData::Float64 { values, validity }, Cell::Real(value)) => {
                values.push(value);
                validity.push(true);
            }
            (ColumnData::Boolean { values, validity }, Cell::Bool(value)) => {
                values.push(value);
                validity.push(true);
            }
            (ColumnData::Timestamp { values, validity }, Cell::Micros(value)) => {
                values.push(value);
                validity.push(true);
            }
            _ => return None,
        }
        Some(truncated)
    }

    /// Pads to `n_rows` and returns the Arrow array.
    pub(crate) fn finish(mut self, n_rows: usize) -> ArrayRef {
        self.pad_to(n_rows);
        match self {
            ColumnData::Utf8 { offsets, data, validity } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(StringArray::new(offsets, Buffer::from_vec(data), nulls(validity)))
            }
            ColumnData::Float64 { values, validity } => Arc::new(Float64Array::new(values.into(), nulls(validity))),
            ColumnData::Boolean { values, validity } => Arc::new(BooleanArray::new(values.into(), nulls(validity))),
            ColumnData::Timestamp { values, validity } => {
                Arc::new(TimestampNanosecondArray::new(values.into(), nulls(validity)).with_timezone("UTC"))
            }
        }
    }
}

/// Converts a byte length into an Arrow offset. Bodies are capped at
/// 30 MB and a column never holds more than about twice the body, so this
/// cannot overflow.
fn offset(len: usize) -> i32 {
    i32::try_from(len).expect("column data is bounded by twice MAX_BODY_BYTES")
}

fn nulls(validity: Vec<bool>) -> Option<NullBuffer> {
    if validity.iter().all(|&valid| valid) {
        return None;
    }
    Some(NullBuffer::from(validity))
}

/// Cuts `data[start..]` to at most [`MAX_VALUE_BYTES`] bytes on a UTF-8
/// character boundary. Returns whether anything was cut.
fn truncate_utf8_tail(data: &mut Vec<u8>, start: usize) -> bool {
    if data.len() - start <= MAX_VALUE_BYTES {
        return false;
    }
    let mut end = start + MAX_VALUE_BYTES;
    // A UTF-8 continuation byte looks like 0b10xx_xxxx.
    while end > start && (data[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    data.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    #[test]
    fn pads_replaces_and_finishes() {
        let mut column = ColumnData::for_type(KqlType::String).unwrap();
        column.set(1, Cell::Text("first")).unwrap();
        column.set(1, Cell::Text("second")).unwrap();
        column.set(3, Cell::Json("{ \"a\": 1 }")).unwrap();
        let array = column.finish(5);
        let array = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(array.len(), 5);
        assert!(array.is_null(0) && array.is_null(2) && array.is_null(4));
        assert_eq!(array.value(1), "second");
        assert_eq!(array.value(3), r#"{"a":1}"#);
    }

    #[test]
    fn truncates_long_text_on_char_boundary() {
        let mut column = ColumnData::for_type(KqlType::String).unwrap();
        let long = format!("{}é", "a".repeat(MAX_VALUE_BYTES - 1));
        assert_eq!(column.set(0, Cell::Text(&long)), Some(true));
        assert_eq!(column.set(1, Cell::Text("short")), Some(false));
        let array = column.finish(2);
        let array = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(array.value(0).len(), MAX_VALUE_BYTES - 1);
        assert_eq!(array.value(1), "short");
    }

    #[test]
    fn rejects_cells_of_another_type() {
        let mut column = ColumnData::for_type(KqlType::Real).unwrap();
        assert_eq!(column.set(0, Cell::Text("x")), None);
        assert!(ColumnData::for_type(KqlType::Long).is_none());
    }
}
