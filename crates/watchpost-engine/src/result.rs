//! Encoding of result cells the way the Log Analytics query API writes
//! them: datetimes as ISO 8601 UTC with seven fractional digits, timespans
//! as `[-][d.]hh:mm:ss[.fffffff]`, reals' special values as strings,
//! dynamic values as their JSON text, nulls as JSON null.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, DurationNanosecondType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampNanosecondType,
};
use serde_json::Value as Json;
use watchpost_schema::KqlType;

/// Encodes every row of `columns` (arrays of the KQL types' Arrow types).
pub fn encode_rows(columns: &[(KqlType, ArrayRef)], n_rows: usize, out: &mut Vec<Vec<Json>>) {
    for row in 0..n_rows {
        out.push(columns.iter().map(|(kql_type, array)| encode_cell(*kql_type, array, row)).collect());
    }
}

/// Encodes one cell.
pub fn encode_cell(kql_type: KqlType, array: &ArrayRef, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    match (kql_type, array.data_type()) {
        (KqlType::Bool, DataType::Boolean) => Json::Bool(array.as_boolean().value(row)),
        (_, DataType::Int32) => Json::from(array.as_primitive::<Int32Type>().value(row)),
        (_, DataType::Int64) => Json::from(array.as_primitive::<Int64Type>().value(row)),
        (_, DataType::Float64) => encode_real(array.as_primitive::<Float64Type>().value(row)),
        (KqlType::Datetime, DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
            Json::String(format_datetime(array.as_primitive::<TimestampNanosecondType>().value(row)))
        }
        (KqlType::Timespan, DataType::Duration(TimeUnit::Nanosecond)) => {
            Json::String(format_timespan(array.as_primitive::<DurationNanosecondType>().value(row)))
        }
        (_, DataType::Utf8) => Json::String(array.as_string::<i32>().value(row).to_string()),
        _ => match arrow::util::display::array_value_to_string(array, row) {
            Ok(text) => Json::String(text),
            Err(_) => Json::Null,
        },
    }
}

fn encode_real(value: f64) -> Json {
    if value.is_nan() {
        Json::String("NaN".into())
    } else if value.is_infinite() {
        Json::String(if value > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(value).map(Json::Number).unwrap_or(Json::Null)
    }
}

/// Formats nanoseconds since the epoch as `2024-05-01T10:00:00.0000000Z`.
pub fn format_datetime(nanos: i64) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    match chrono::DateTime::from_timestamp(seconds, 0) {
        Some(time) => format!("{}.{:07}Z", time.format("%Y-%m-%dT%H:%M:%S"), fraction / 100),
        None => String::new(),
    }
}

/// Formats a nanosecond duration as `[-][d.]hh:mm:ss[.fffffff]`.
pub fn format_timespan(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let nanos = nanos.unsigned_abs();
    let total_seconds = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000;
    let (days, hours) = (total_seconds / 86_400, (total_seconds / 3600) % 24);
    let (minutes, seconds) = ((total_seconds / 60) % 60, total_seconds % 60);
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{hours:02}:{minutes:02}:{seconds:02}"));
    if fraction > 0 {
        out.push_str(&format!(".{:07}", fraction / 100));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_log_analytics() {
        assert_eq!(format_datetime(1_714_557_600_000_000_000), "2024-05-01T10:00:00.0000000Z");
        assert_eq!(format_datetime(1_714_557_600_123_456_700), "2024-05-01T10:00:00.1234567Z");
        assert_eq!(format_timespan(90 * 60 * 1_000_000_000), "01:30:00");
        assert_eq!(format_timespan((86_400 + 61) * 1_000_000_000 + 500), "1.00:01:01.0000005");
        assert_eq!(format_timespan(-1_000_000_000), "-00:00:01");
        assert_eq!(encode_real(f64::NAN), Json::String("NaN".into()));
        assert_eq!(encode_real(1.5), Json::from(1.5));
    }
}
