//! The query API's `timespan`: an ISO 8601 duration (`PT12H`, `P1D`,
//! `PT259200.0S`), a `start/end` pair, `start/duration` or
//! `duration/end`; start and end are ISO date-times or dates.

use chrono::{DateTime, NaiveDate, Utc};
use watchpost_engine::TimeWindow;

/// Parses `text` into a window, with a lone duration ending at `now_us`.
pub(crate) fn parse_timespan(text: &str, now_us: i64) -> Result<TimeWindow, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not a valid timespan: expected an ISO 8601 duration or interval");
    match text.split_once('/') {
        None => {
            let duration = parse_duration(text).ok_or_else(bad)?;
            Ok(TimeWindow { start_us: now_us - duration, end_us: now_us })
        }
        Some((first, second)) => {
            let window = match (parse_instant(first), parse_instant(second)) {
                (Some(start), Some(end)) => TimeWindow { start_us: start, end_us: end },
                (Some(start), None) => {
                    let duration = parse_duration(second).ok_or_else(bad)?;
                    TimeWindow { start_us: start, end_us: start + duration }
                }
                (None, Some(end)) => {
                    let duration = parse_duration(first).ok_or_else(bad)?;
                    TimeWindow { start_us: end - duration, end_us: end }
                }
                (None, None) => return Err(bad()),
            };
            if window.end_us < window.start_us {
                return Err(format!("'{text}' ends before it starts"));
            }
            Ok(window)
        }
    }
}

fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc).timestamp_micros());
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(time.and_utc().timestamp_micros());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Parses `PnDTnHnMnS` (with `W` weeks and fractional parts) into
/// microseconds. Years and months are not fixed lengths and are refused.
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
    (number.is_empty() && seen_unit).then_some((total * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn durations_end_now() {
        assert_eq!(parse_timespan("PT12H", NOW).unwrap(), TimeWindow { start_us: NOW - 12 * HOUR, end_us: NOW });
        assert_eq!(parse_timespan("P1D", NOW).unwrap().start_us, NOW - 24 * HOUR);
        assert_eq!(parse_timespan("PT259200.0S", NOW).unwrap().start_us, NOW - 72 * HOUR);
        assert_eq!(parse_timespan("P1DT2H30M", NOW).unwrap().start_us, NOW - 26 * HOUR - HOUR / 2);
        assert!(parse_timespan("P1Y", NOW).is_err());
        assert!(parse_timespan("12h", NOW).is_err());
    }

    #[test]
    fn intervals_in_every_form() {
        let day = parse_timespan("2024-01-01/2024-01-02", NOW).unwrap();
        assert_eq!(day.end_us - day.start_us, 24 * HOUR);
        let exact = parse_timespan("2024-01-01T00:00:00Z/2024-01-01T01:00:00.5Z", NOW).unwrap();
        assert_eq!(exact.end_us - exact.start_us, HOUR + 500_000);
        let start_duration = parse_timespan("2024-01-01T00:00:00Z/PT1H", NOW).unwrap();
        assert_eq!(start_duration.end_us - start_duration.start_us, HOUR);
        let duration_end = parse_timespan("PT1H/2024-01-01T01:00:00Z", NOW).unwrap();
        assert_eq!(duration_end.start_us, start_duration.start_us);
        assert!(parse_timespan("2024-01-02/2024-01-01", NOW).is_err());
    }
}
