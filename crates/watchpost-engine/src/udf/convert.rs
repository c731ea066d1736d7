//! Conversions the way KQL's `to<type>()` functions define them: from
//! dynamic values, from strings (`todatetime("2024-01-02")`,
//! `totimespan("1.02:03:04")`), and `tostring()` of every type in Kusto's
//! text forms. A value that does not convert gives null.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;
use serde_json::Value as Json;
use watchpost_schema::KqlType;

use super::datetime::datetime_text;
use super::kernel::{json_at, nanos_at, real_at, strings, text_at, typed_from_json, Invocation};
use crate::result::format_timespan;

const NANOS_PER_TICK: i64 = 100;

/// The name of the `tostring` kernel.
pub(crate) const TO_STRING: &str = "tostring";
/// The name of the `convert` kernel.
pub(crate) const CONVERT: &str = "convert";

/// `kql_to_<type>(value)`: converts a dynamic or string value to the return
/// type.
pub(crate) fn convert(call: &Invocation<'_>) -> Result<ArrayRef> {
    let (values, kql_type) = (&call.args[0], call.arg_types[0]);
    let jsons = (0..call.n_rows)
        .map(|row| match kql_type {
            // A string converts like a dynamic string scalar.
            KqlType::String | KqlType::Guid => text_at(values, row).map(|text| Json::String(text.into())),
            _ => Some(json_at(values, kql_type, row)).filter(|json| !json.is_null()),
        })
        .collect();
    Ok(typed_from_json(call.return_type, jsons))
}

/// `tostring(value)`: Kusto's text of any value; null gives "".
pub(crate) fn to_string(call: &Invocation<'_>) -> Result<ArrayRef> {
    let (values, kql_type) = (&call.args[0], call.arg_types[0]);
    Ok(strings((0..call.n_rows).map(|row| Some(text_of(values, kql_type, row).unwrap_or_default()))))
}

fn text_of(values: &ArrayRef, kql_type: KqlType, row: usize) -> Option<String> {
    Some(match kql_type {
        KqlType::String | KqlType::Guid => text_at(values, row)?.to_string(),
        KqlType::Dynamic => dynamic_text(text_at(values, row)?),
        KqlType::Datetime => datetime_text(nanos_at(values, row)?),
        KqlType::Timespan => format_timespan(nanos_at(values, row)?),
        KqlType::Real | KqlType::Decimal => real_text(real_at(values, row)?),
        _ => json_at(values, kql_type, row).to_string(),
    })
}

/// The text of a dynamic value: a string's own characters, otherwise the
/// JSON text.
pub(crate) fn dynamic_text(json_text: &str) -> String {
    if json_text.starts_with('"') {
        if let Ok(Json::String(text)) = serde_json::from_str::<Json>(json_text) {
            return text;
        }
    }
    json_text.to_string()
}

/// A real as Kusto prints it: the shortest round-trip digits, no trailing
/// `.0`.
pub(crate) fn real_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{value}")
    }
}

pub(crate) fn json_to_string(json: &Json) -> String {
    match json {
        Json::Null => String::new(),
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn json_to_long(json: &Json) -> Option<i64> {
    match json {
        Json::Number(number) => number.as_i64().or_else(|| number.as_f64().map(|value| value as i64)),
        Json::String(text) => {
            let text = text.trim();
            text.parse::<i64>().ok().or_else(|| text.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v as i64))
        }
        Json::Bool(flag) => Some(i64::from(*flag)),
        _ => None,
    }
}

pub(crate) fn json_to_real(json: &Json) -> Option<f64> {
    match json {
        Json::Number(number) => number.as_f64(),
        Json::String(text) => parse_real(text.trim()),
        Json::Bool(flag) => Some(f64::from(u8::from(*flag))),
        _ => None,
    }
}

fn parse_real(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok().filter(|value| value.is_finite()),
    }
}

pub(crate) fn json_to_bool(json: &Json) -> Option<bool> {
    match json {
        Json::Bool(flag) => Some(*flag),
        Json::Number(number) => number.as_f64().map(|value| value != 0.0),
        Json::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn json_to_nanos_datetime(json: &Json) -> Option<i64> {
    match json {
        Json::String(text) => parse_datetime(text),
        _ => None,
    }
}

pub(crate) fn json_to_nanos_timespan(json: &Json) -> Option<i64> {
    match json {
        Json::String(text) => parse_timespan(text),
        Json::Number(number) => number.as_i64().map(|ticks| ticks.saturating_mul(NANOS_PER_TICK)),
        _ => None,
    }
}

/// Parses the datetime texts `todatetime()` accepts: ISO 8601 with or
/// without a time, fraction and offset (no offset means UTC), and RFC 822 /
/// RFC 1123 forms.
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return time.timestamp_nanos_opt();
    }
    if let Ok(time) = DateTime::parse_from_rfc2822(text.replace("GMT", "+0000").replace("UTC", "+0000").as_str()) {
        return time.timestamp_nanos_opt();
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    for format in
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M:%S%.f"]
    {
        if let Ok(time) = NaiveDateTime::parse_from_str(naive, format) {
            return time.and_utc().timestamp_nanos_opt();
        }
    }
    for format in ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d"] {
        if let Ok(date) = NaiveDate::parse_from_str(naive, format) {
            return date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
        }
    }
    None
}

/// Parses a timespan text: Kusto's `[-][d.]hh:mm[:ss[.fffffff]]` form or a
/// literal such as `1d`, `1.5h`, `30m`, `10s`, `100ms`, `2microseconds`,
/// `5ticks`.
pub(crate) fn parse_timespan(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let nanos = if body.contains(':') { parse_clock(body)? } else { parse_unit_literal(body)? };
    Some(if negative { -nanos } else { nanos })
}

fn parse_clock(body: &str) -> Option<i64> {
    let (days, clock) = match body.split_once(':') {
        Some((head, _)) if head.contains('.') => {
            let (days, rest) = body.split_once('.')?;
            (days.parse::<i64>().ok()?, rest)
        }
        _ => (0, body),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match parts.as_slice() {
        [h, m] => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?, "0"),
        [h, m, s] => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?, *s),
        _ => return None,
    };
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    if fraction.len() > 7 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let fraction_nanos = format!("{fraction:0<9}").parse::<i64>().ok()?;
    let seconds_total = ((days * 24 + hours) * 60 + minutes) * 60 + whole.parse::<i64>().ok()?;
    seconds_total.checked_mul(1_000_000_000)?.checked_add(fraction_nanos)
}

fn parse_unit_literal(body: &str) -> Option<i64> {
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit_nanos: f64 = match unit.to_ascii_lowercase().as_str() {
        "d" | "day" | "days" => 86_400e9,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600e9,
        "m" | "min" | "minute" | "minutes" => 60e9,
        "s" | "sec" | "second" | "seconds" => 1e9,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1e6,
        "microsecond" | "microseconds" => 1e3,
        "tick" | "ticks" => 100.0,
        "" => 100.0,
        _ => return None,
    };
    Some((number * unit_nanos).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timespans_in_both_forms() {
        const SECOND: i64 = 1_000_000_000;
        assert_eq!(parse_timespan("1.02:03:04"), Some(((24 + 2) * 3600 + 3 * 60 + 4) * SECOND));
        assert_eq!(parse_timespan("00:00:00.5"), Some(SECOND / 2));
        assert_eq!(parse_timespan("-01:00:00"), Some(-3600 * SECOND));
        assert_eq!(parse_timespan("1.5h"), Some(5400 * SECOND));
        assert_eq!(parse_timespan("100ms"), Some(SECOND / 10));
        assert_eq!(parse_timespan("abc"), None);
    }

    #[test]
    fn parses_datetimes() {
        let day = parse_datetime("2024-01-02").unwrap();
        assert_eq!(day, 1_704_153_600_000_000_000);
        assert_eq!(parse_datetime("2024-01-02T00:00:00Z"), Some(day));
        assert_eq!(parse_datetime("2024-01-02 01:00:00"), Some(day + 3_600_000_000_000));
        assert_eq!(parse_datetime("Tue, 02 Jan 2024 00:00:00 GMT"), Some(day));
        assert_eq!(parse_datetime("not a date"), None);
    }

    #[test]
    fn prints_reals_like_kusto() {
        assert_eq!(real_text(1000.0), "1000");
        assert_eq!(real_text(2.5), "2.5");
        assert_eq!(real_text(f64::NAN), "NaN");
    }
}
