//! The query API's `timespan`: an ISO 8601 duration (`PT12H`, `P1D`,
//! `PT259200.0S`), a `start/end` pair, `start/duration` or
//! `duration/end`; start and end are ISO date-times or dates.

use chrono::{DateTime, NaiveDate, Utc};
use watchpost_engine::TimeWindow;

/// Parses `text` into a window, with a lone duration ending at `now_ns`.
pub(crate) fn parse_timespan(text: &str, now_ns: i64) -> Result<TimeWindow, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not a valid timespan: expected an ISO 8601 duration or interval");
    match text.split_once('/') {
        None => {
            let duration = parse_duration(text).ok_or_else(bad)?;
            Ok(TimeWindow { start_ns: now_ns - duration, end_ns: now_ns })
        }
        Some((first, second)) => {
            let window = match (parse_instant(first), parse_instant(second)) {
                (Some(start), Some(end)) => TimeWindow { start_ns: start, end_ns: end },
                (Some(start), None) => {
                    let duration = parse_duration(second).ok_or_else(bad)?;
                    TimeWindow { start_ns: start, end_ns: start + duration }
                }
                (None, Some(end)) => {
                    let duration = parse_duration(first).ok_or_else(bad)?;
                    TimeWindow { start_ns: end - duration, end_ns: end }
                }
                (None, None) => return Err(bad()),
            };
            if window.end_ns < window.start_ns {
                return Err(format!("'{text}' ends before it starts"));
            }
            Ok(window)
        }
    }
}

fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return time.with_timezone(&Utc).timestamp_nanos_opt();
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return time.and_utc().timestamp_nanos_opt();
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

/// Parses `PnDTnHnMnS` (with `W` weeks and fractional parts) into
/// nanoseconds. Years and months are not fixed lengths and are refused.
fn parse_duration(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P').or_else(|| text.strip_prefix('p'))?;
    let mut total = 0f64;
    let mut in_time = false;
    let mut number = String::new();
    let mut seen_unit = false;
    for ch in rest.chars() {
        match ch {
            'T' | 't' if number.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if ch == ',' { '.' } else { ch }),
            unit => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                let seconds = match (unit.to_ascii_uppercase(), in_time) {
                    ('W', false) => 7.0 * 86_400.0,
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return None,
                };
                total += value * seconds;
                seen_unit = true;
            }
        }
    }
    (number.is_empty() && seen_unit).then_some((total * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn durations_end_now() {
        assert_eq!(parse_timespan("PT12H", NOW).unwrap(), TimeWindow { start_ns: NOW - 12 * HOUR, end_ns: NOW });
        assert_eq!(parse_timespan("P1D", NOW).unwrap().start_ns, NOW - 24 * HOUR);
        assert_eq!(parse_timespan("PT259200.0S", NOW).unwrap().start_ns, NOW - 72 * HOUR);
        assert_eq!(parse_timespan("P1DT2H30M", NOW).unwrap().start_ns, NOW - 26 * HOUR - HOUR / 2);
        assert!(parse_timespan("P1Y", NOW).is_err());
        assert!(parse_timespan("12h", NOW).is_err());
    }

    #[test]
    fn intervals_in_every_form() {
        let day = parse_timespan("2024-01-01/2024-01-02", NOW).unwrap();
        assert_eq!(day.end_ns - day.start_ns, 24 * HOUR);
        let exact = parse_timespan("2024-01-01T00:00:00Z/2024-01-01T01:00:00.5Z", NOW).unwrap();
        assert_eq!(exact.end_ns - exact.start_ns, HOUR + 500_000_000);
        let start_duration = parse_timespan("2024-01-01T00:00:00Z/PT1H", NOW).unwrap();
        assert_eq!(start_duration.end_ns - start_duration.start_ns, HOUR);
        let duration_end = parse_timespan("PT1H/2024-01-01T01:00:00Z", NOW).unwrap();
        assert_eq!(duration_end.start_ns, start_duration.start_ns);
        assert!(parse_timespan("2024-01-02/2024-01-01", NOW).is_err());
    }
}
