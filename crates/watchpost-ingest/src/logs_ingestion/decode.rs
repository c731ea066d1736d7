//! Body → Arrow batch of a stream's declared columns (spec 2.4).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};
use watchpost_schema::{ColumnDef, KqlType};

use super::{codes, LogsIngestionError};
use crate::data_collector::infer::parse_iso_datetime;

/// Properties a batch carried that its stream does not declare: property
/// name → number of records that had it.
pub type DroppedColumns = BTreeMap<String, u64>;

/// The rows of one request, projected onto the declared columns.
#[derive(Debug, Clone)]
pub struct DecodedStream {
    /// One column per declared column, in declaration order, with
    /// `kql.type` metadata.
    pub batch: RecordBatch,
    /// Undeclared properties, which are not stored.
    pub dropped: DroppedColumns,
    /// Declared column → number of values that could not be coerced to its
    /// type and were stored as null.
    pub coercion_failures: BTreeMap<String, u64>,
}

/// Decompresses a gzip body, refusing more than `limit` decompressed bytes
/// (413), so a small compressed body cannot expand without bound.
pub fn gunzip_limited(body: &[u8], limit: usize) -> Result<Vec<u8>, LogsIngestionError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out).map_err(|err| {
        LogsIngestionError::new(400, codes::INVALID_REQUEST, format!("the gzip body cannot be decompressed: {err}"))
    })?;
    if out.len() > limit {
        return Err(LogsIngestionError::new(
            413,
            codes::CONTENT_LENGTH_LIMIT_EXCEEDED,
            format!("the decompressed body is larger than the limit of {limit} bytes"),
        ));
    }
    Ok(out)
}

/// What is wrong with a body that [`json_records`] refuses; each API words
/// it in its own error type.
pub(crate) enum RecordsError {
    Json(serde_json::Error),
    /// Neither an array nor an object.
    Shape,
    /// The record at this index is not an object.
    Record(usize),
}

/// A body's records: a JSON array of objects, or one object.
pub(crate) fn json_records(body: &[u8]) -> Result<Vec<Map<String, Value>>, RecordsError> {
    let records = match serde_json::from_slice(body).map_err(RecordsError::Json)? {
        Value::Array(records) => records,
        object @ Value::Object(_) => vec![object],
        _ => return Err(RecordsError::Shape),
    };
    records
        .into_iter()
        .enumerate()
        .map(|(idx, record)| match record {
            Value::Object(object) => Ok(object),
            _ => Err(RecordsError::Record(idx)),
        })
        .collect()
}

/// Parses a JSON array of objects (or one object) and projects every
/// record onto `columns`: a declared column missing from a record is null,
/// a value that cannot be coerced is null (and counted), a property not
/// declared is counted in [`DecodedStream::dropped`] and not stored.
/// Property names match column names exactly, then case-insensitively.
pub fn decode_stream(body: &[u8], columns: &[ColumnDef]) -> Result<DecodedStream, LogsIngestionError> {
    let records = json_records(body).map_err(|err| {
        let message = match err {
            RecordsError::Json(err) => format!("the body is not valid JSON: {err}"),
            RecordsError::Shape => "the body must be a JSON array of objects".to_string(),
            RecordsError::Record(idx) => format!("record {idx} of the body is not a JSON object"),
        };
        LogsIngestionError::new(400, codes::INVALID_JSON, message)
    })?;
    let mut builders: Vec<Builder> =
        columns.iter().map(|column| Builder::new(column.kql_type, records.len())).collect();
    let mut dropped = DroppedColumns::new();
    let mut failures = vec![0_u64; columns.len()];
    let mut row_values: Vec<Option<&Value>> = vec![None; columns.len()];
    for record in &records {
        row_values.iter_mut().for_each(|slot| *slot = None);
        for (name, value) in record {
            let position = columns
                .iter()
                .position(|column| &column.name == name)
                .or_else(|| columns.iter().position(|column| column.name.eq_ignore_ascii_case(name)));
            match position {
                Some(position) => row_values[position] = Some(value),
                None => *dropped.entry(name.clone()).or_insert(0) += 1,
            }
        }
        for ((builder, value), failed) in builders.iter_mut().zip(&row_values).zip(failures.iter_mut()) {
            if !builder.push(*value) {
                *failed += 1;
            }
        }
    }
    let batch = finish_batch(columns, builders, records.len());
    let coercion_failures = columns
        .iter()
        .zip(failures)
        .filter(|(_, count)| *count > 0)
        .map(|(column, count)| (column.name.clone(), count))
        .collect();
    Ok(DecodedStream { batch, dropped, coercion_failures })
}

fn finish_batch(columns: &[ColumnDef], builders: Vec<Builder>, rows: usize) -> RecordBatch {
    let fields: Vec<_> = columns.iter().map(ColumnDef::arrow_field).collect();
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .expect("builders match the declared fields")
}

/// A value [`project_records`] could not convert to its column's type.
#[derive(Debug, Clone, PartialEq)]
pub struct Unconvertible {
    pub row: usize,
    pub column: usize,
    pub value: Value,
}

/// Records already parsed (the pipeline's events) onto `columns`, as
/// [`decode_stream`] converts a body's records: a missing value is null,
/// names match exactly and then case-insensitively, and a value that
/// cannot be converted is null and reported, so the caller decides what
/// becomes of its record. Properties not declared are not read.
pub fn project_records(records: &[&Map<String, Value>], columns: &[ColumnDef]) -> (RecordBatch, Vec<Unconvertible>) {
    let mut builders: Vec<Builder> =
        columns.iter().map(|column| Builder::new(column.kql_type, records.len())).collect();
    let mut failures = Vec::new();
    for (row, record) in records.iter().enumerate() {
        for (column, (def, builder)) in columns.iter().zip(&mut builders).enumerate() {
            let value = record.get(&def.name).or_else(|| {
                record.iter().find(|(name, _)| name.eq_ignore_ascii_case(&def.name)).map(|(_, value)| value)
            });
            if !builder.push(value) {
                let value = value.cloned().unwrap_or(Value::Null);
                failures.push(Unconvertible { row, column, value });
            }
        }
    }
    (finish_batch(columns, builders, records.len()), failures)
}

/// A column under construction. `push` returns false when a present value
/// could not be coerced (it is stored as null). The Data Collector API's
/// standard-table rows reuse it (`data_collector::standard`), so both APIs
/// convert values alike.
pub(crate) enum Builder {
    String(StringBuilder),
    Dynamic(StringBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Real(Float64Builder),
    Bool(BooleanBuilder),
    Datetime(TimestampNanosecondBuilder),
}

impl Builder {
    pub(crate) fn new(kql_type: KqlType, rows: usize) -> Builder {
        match kql_type {
            KqlType::Int => Builder::Int(Int32Builder::with_capacity(rows)),
            KqlType::Long => Builder::Long(Int64Builder::with_capacity(rows)),
            KqlType::Real => Builder::Real(Float64Builder::with_capacity(rows)),
            KqlType::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            KqlType::Datetime => {
                Builder::Datetime(TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            KqlType::Dynamic => Builder::Dynamic(StringBuilder::with_capacity(rows, rows * 16)),
            // Stream declarations only allow the seven types above; any
            // other type is kept as text.
            _ => Builder::String(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    pub(crate) fn push(&mut self, value: Option<&Value>) -> bool {
        let value = match value {
            None | Some(Value::Null) => {
                self.push_null();
                return true;
            }
            Some(value) => value,
        };
        let ok = match self {
            Builder::String(builder) => {
                match value {
                    Value::String(text) => builder.append_value(text),
                    other => builder.append_value(other.to_string()),
                }
                true
            }
            Builder::Dynamic(builder) => {
                builder.append_value(value.to_string());
                true
            }
            Builder::Int(builder) => {
                let parsed = as_i64(value).and_then(|number| i32::try_from(number).ok());
                builder.append_option(parsed);
                parsed.is_some()
            }
            Builder::Long(builder) => {
                let parsed = as_i64(value);
                builder.append_option(parsed);
                parsed.is_some()
            }
            Builder::Real(builder) => {
                let parsed = match value {
                    Value::Number(number) => number.as_f64(),
                    Value::String(text) => text.trim().parse::<f64>().ok(),
                    _ => None,
                };
                builder.append_option(parsed);
                parsed.is_some()
            }
            Builder::Bool(builder) => {
                let parsed = match value {
                    Value::Bool(flag) => Some(*flag),
                    Value::String(text) if text.trim().eq_ignore_ascii_case("true") => Some(true),
                    Value::String(text) if text.trim().eq_ignore_ascii_case("false") => Some(false),
                    _ => None,
                };
                builder.append_option(parsed);
                parsed.is_some()
            }
            Builder::Datetime(builder) => {
                let parsed = value.as_str().and_then(parse_datetime);
                builder.append_option(parsed);
                parsed.is_some()
            }
        };
        ok
    }

    fn push_null(&mut self) {
        match self {
            Builder::String(builder) | Builder::Dynamic(builder) => builder.append_null(),
            Builder::Int(builder) => builder.append_null(),
            Builder::Long(builder) => builder.append_null(),
            Builder::Real(builder) => builder.append_null(),
            Builder::Bool(builder) => builder.append_null(),
            Builder::Datetime(builder) => builder.append_null(),
        }
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            Builder::String(mut builder) | Builder::Dynamic(mut builder) => Arc::new(builder.finish()),
            Builder::Int(mut builder) => Arc::new(builder.finish()),
            Builder::Long(mut builder) => Arc::new(builder.finish()),
            Builder::Real(mut builder) => Arc::new(builder.finish()),
            Builder::Bool(mut builder) => Arc::new(builder.finish()),
            Builder::Datetime(mut builder) => Arc::new(builder.finish()),
        }
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number.as_f64().filter(|real| real.fract() == 0.0 && real.abs() < 9.2e18).map(|real| real as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Gives a transformed (or pass-through) batch a `TimeGenerated`: rows
/// without one get the time the request was received; a batch without the
/// column gains it (Azure refuses such a rule at creation; Watchpost is
/// lenient, spec 2.4).
pub fn stamp_time_generated(batch: RecordBatch, received_ns: i64) -> RecordBatch {
    use arrow::array::{Array, AsArray, TimestampNanosecondArray};
    use arrow::datatypes::TimestampNanosecondType;
    let time_field = ColumnDef::new(watchpost_schema::TIME_GENERATED, KqlType::Datetime).arrow_field();
    let schema = batch.schema();
    let position = schema.index_of(watchpost_schema::TIME_GENERATED).ok();
    match position {
        Some(idx) => {
            let column = batch.column(idx);
            let Some(times) = column.as_primitive_opt::<TimestampNanosecondType>() else { return batch };
            if times.null_count() == 0 {
                return batch;
            }
            let filled: TimestampNanosecondArray =
                times.iter().map(|time| Some(time.unwrap_or(received_ns))).collect::<TimestampNanosecondArray>();
            let filled = filled.with_timezone_opt(times.timezone().map(str::to_string));
            let mut columns = batch.columns().to_vec();
            columns[idx] = Arc::new(filled);
            RecordBatch::try_new(schema, columns).expect("same schema, same lengths")
        }
        None => {
            let times = TimestampNanosecondArray::from(vec![received_ns; batch.num_rows()]).with_timezone("UTC");
            let mut fields: Vec<_> = schema.fields().iter().map(|field| field.as_ref().clone()).collect();
            fields.insert(0, time_field);
            let mut columns = batch.columns().to_vec();
            columns.insert(0, Arc::new(times));
            let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
                .expect("one more column of the same length")
        }
    }
}

/// ISO 8601 with or without an offset (none means UTC) and with `T` or a
/// space between date and time, as the DCR docs' own examples send.
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    parse_iso_datetime(text).or_else(|| parse_iso_datetime(&format!("{text}Z")))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};

    use super::*;

    fn columns() -> Vec<ColumnDef> {
        vec![
            ColumnDef::new("TimeGenerated", KqlType::Datetime),
            ColumnDef::new("Computer", KqlType::String),
            ColumnDef::new("Count", KqlType::Int),
            ColumnDef::new("Bytes", KqlType::Long),
            ColumnDef::new("Ok", KqlType::Bool),
            ColumnDef::new("Props", KqlType::Dynamic),
        ]
    }

    #[test]
    fn projects_onto_declared_columns_and_reports_what_it_drops() {
        let body = br#"[
            {"TimeGenerated": "2023-11-14 15:10:02", "Computer": "a", "Count": "7", "Bytes": 12, "Ok": true, "Props": {"k": [1]}, "Extra": 1},
            {"TimeGenerated": "2024-01-01T00:00:00.5Z", "computer": "b", "Count": "x", "Extra": 2, "Other": null}
        ]"#;
        let decoded = decode_stream(body, &columns()).unwrap();
        let batch = &decoded.batch;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 6);
        let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(time.value(0), 1_699_974_602_000_000_000);
        assert_eq!(time.value(1), 1_704_067_200_500_000_000);
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "b");
        let count = batch.column(2).as_primitive::<Int32Type>();
        assert_eq!(count.value(0), 7);
        assert!(count.is_null(1));
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(0), 12);
        assert!(batch.column(3).is_null(1));
        assert_eq!(batch.column(5).as_string::<i32>().value(0), r#"{"k":[1]}"#);
        assert_eq!(decoded.dropped, BTreeMap::from([("Extra".to_string(), 2), ("Other".to_string(), 1)]));
        assert_eq!(decoded.coercion_failures, BTreeMap::from([("Count".to_string(), 1)]));
    }

    #[test]
    fn refuses_what_is_not_an_array_of_objects() {
        for body in [&b"[1]"[..], b"\"x\"", b"[{"] {
            let err = decode_stream(body, &columns()).unwrap_err();
            assert_eq!((err.status, err.code), (400, codes::INVALID_JSON), "{err}");
        }
        assert_eq!(decode_stream(br#"{"Computer": "x"}"#, &columns()).unwrap().batch.num_rows(), 1);
    }

    #[test]
    fn time_generated_is_filled_or_added() {
        let body = br#"[{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "a"}, {"Computer": "b"}]"#;
        let decoded = decode_stream(body, &columns()).unwrap();
        let stamped = stamp_time_generated(decoded.batch.clone(), 42);
        let times = stamped.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!((times.value(0), times.value(1)), (1_704_067_200_000_000_000, 42));
        let without = decoded.batch.project(&[1]).unwrap();
        let stamped = stamp_time_generated(without, 7);
        assert_eq!(stamped.schema().field(0).name(), "TimeGenerated");
        assert_eq!(stamped.column(0).as_primitive::<TimestampNanosecondType>().value(1), 7);
        assert_eq!(stamped.num_columns(), 2);
    }

    #[test]
    fn gunzip_is_bounded() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![b' '; 10_000]).unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(gunzip_limited(&gz, 10_000).unwrap().len(), 10_000);
        assert_eq!(gunzip_limited(&gz, 9_999).unwrap_err().status, 413);
        assert_eq!(gunzip_limited(b"not gzip", 100).unwrap_err().status, 400);
    }
}
