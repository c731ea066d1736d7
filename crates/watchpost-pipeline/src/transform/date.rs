//! The `date` transform: parses a field with Joda-style formats (as
//! Logstash writes them) or the specials `ISO8601`, `UNIX`, `UNIX_MS`, and
//! stores the result in `@timestamp` (which becomes `TimeGenerated`).
//!
//! Joda patterns are translated to chrono's strftime items once at load
//! time; the translation covers the letters log formats use (y, M, d, H, h,
//! m, s, S, a, E, Z) and quoted literals, and rejects the rest by name.

use chrono::format::{parse, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::Value as Json;

use crate::event::{format_timestamp, Event, FieldRef, TIMESTAMP};
use crate::options::{ConfigResult, Options};
use crate::transform::{StepResult, Transform};

pub(crate) struct DateTransform {
    field: FieldRef,
    formats: Vec<DateFormat>,
    target: FieldRef,
    timezone: FixedOffset,
    tag_on_failure: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum DateFormat {
    Iso8601,
    Unix,
    UnixMs,
    /// chrono strftime text, and whether `,` must become `.` first.
    Pattern {
        strftime: String,
        comma_fraction: bool,
    },
}

impl DateTransform {
    pub(crate) fn compile(options: &mut Options) -> ConfigResult<DateTransform> {
        let spec = options.strings("match")?;
        let Some((field, formats)) = spec.split_first().filter(|(_, f)| !f.is_empty()) else {
            return Err(
                options.error("option `match` needs a field and at least one format: [\"field\", \"format\", ...]")
            );
        };
        let field = FieldRef::parse(field).map_err(|e| options.error(e))?;
        let formats = formats
            .iter()
            .map(|f| DateFormat::compile(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| options.error(e))?;
        let target = FieldRef::parse(&options.string("target")?.unwrap_or_else(|| TIMESTAMP.to_string()))
            .map_err(|e| options.error(e))?;
        let timezone = match options.string("timezone")? {
            None => FixedOffset::east_opt(0).expect("zero offset"),
            Some(zone) => parse_zone(&zone).ok_or_else(|| {
                options.error(format!("timezone {zone:?} is not supported: use UTC or a fixed offset such as +02:00"))
            })?,
        };
        options.string("locale")?;
        let tag_on_failure = match options.take("tag_on_failure") {
            None => vec!["_dateparsefailure".to_string()],
            Some(value) => {
                Options::new(toml::Table::from_iter([("v".to_string(), value)]), options.location()).strings("v")?
            }
        };
        Ok(DateTransform { field, formats, target, timezone, tag_on_failure })
    }
}

fn parse_zone(zone: &str) -> Option<FixedOffset> {
    if matches!(zone, "UTC" | "Etc/UTC" | "GMT" | "Z") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl Transform for DateTransform {
    fn apply(&self, event: &mut Event) -> StepResult {
        let Some(text) = event.get(&self.field).and_then(crate::event::value_text) else {
            // Logstash leaves an event without the field alone.
            return StepResult::Continue;
        };
        let now = Utc::now();
        for format in &self.formats {
            if let Some(when) = format.parse(&text, self.timezone, now) {
                event.set(&self.target, Json::String(format_timestamp(when)));
                return StepResult::Continue;
            }
        }
        for tag in &self.tag_on_failure {
            event.add_tag(tag);
        }
        StepResult::Failed(format!("{} value {text:?} matches none of the date formats", self.field))
    }
}

impl DateFormat {
    pub fn compile(format: &str) -> Result<DateFormat, String> {
        match format {
            "ISO8601" => return Ok(DateFormat::Iso8601),
            "UNIX" => return Ok(DateFormat::Unix),
            "UNIX_MS" => return Ok(DateFormat::UnixMs),
            "TAI64N" => return Err("date format TAI64N is not supported".to_string()),
            _ => {}
        }
        let (strftime, comma_fraction) = joda_to_strftime(format)?;
        if StrftimeItems::new(&strftime).any(|item| matches!(item, chrono::format::Item::Error)) {
            return Err(format!("date format {format:?} could not be translated"));
        }
        Ok(DateFormat::Pattern { strftime, comma_fraction })
    }

    /// Parses `text`; a zoneless value is in `zone`; a missing year is the
    /// current one, or the previous one if that would be more than a day
    /// in the future (December lines read in January).
    pub fn parse(&self, text: &str, zone: FixedOffset, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let text = text.trim();
        match self {
            DateFormat::Unix => unix(text, 1e9),
            DateFormat::UnixMs => unix(text, 1e6),
            DateFormat::Iso8601 => iso8601(text, zone),
            DateFormat::Pattern { strftime, comma_fraction } => {
                let normalized;
                let text = if *comma_fraction {
                    normalized = text.replace(',', ".");
                    normalized.as_str()
                } else {
                    text
                };
                let mut parsed = Parsed::new();
                parse(&mut parsed, text, StrftimeItems::new(strftime)).ok()?;
                let guess_year = parsed.year().is_none() && parsed.year_mod_100().is_none();
                if guess_year {
                    parsed.set_year(i64::from(now.year())).ok()?;
                }
                let offset = parsed.offset().map_or(zone, |secs| FixedOffset::east_opt(secs).unwrap_or(zone));
                if parsed.hour_div_12().is_none() && parsed.hour_mod_12().is_none() {
                    parsed.set_hour(0).ok()?;
                    parsed.set_minute(0).ok()?;
                }
                let naive = parsed.to_naive_datetime_with_offset(0).ok()?;
                let mut when = offset.from_local_datetime(&naive).single()?.with_timezone(&Utc);
                if guess_year && when > now + chrono::Duration::days(1) {
                    let previous = naive.with_year(naive.year() - 1)?;
                    when = offset.from_local_datetime(&previous).single()?.with_timezone(&Utc);
                }
                Some(when)
            }
        }
    }
}

fn unix(text: &str, nanos_per_unit: f64) -> Option<DateTime<Utc>> {
    let value: f64 = text.parse().ok()?;
    let nanos = value * nanos_per_unit;
    if !nanos.is_finite() || nanos.abs() > 9.2e18 {
        return None;
    }
    Some(DateTime::from_timestamp_nanos(nanos as i64))
}

fn iso8601(text: &str, zone: FixedOffset) -> Option<DateTime<Utc>> {
    if let Ok(when) = DateTime::parse_from_rfc3339(text) {
        return Some(when.with_timezone(&Utc));
    }
    let with_t = text.replacen(' ', "T", 1);
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(when) = DateTime::parse_from_str(&with_t, format) {
            return Some(when.with_timezone(&Utc));
        }
    }
    let trimmed = with_t.trim_end_matches('Z');
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(trimmed, format) {
            let zone = if with_t.ends_with('Z') { FixedOffset::east_opt(0)? } else { zone };
            return zone.from_local_datetime(&naive).single().map(|w| w.with_timezone(&Utc));
        }
    }
    None
}

/// Translates a Joda-Time pattern to chrono strftime text.
fn joda_to_strftime(format: &str) -> Result<(String, bool), String> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut comma_fraction = false;
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c == '\'' {
            let close = chars[index + 1..].iter().position(|&q| q == '\'').ok_or("unclosed quote in date format")?;
            let literal: String = chars[index + 1..index + 1 + close].iter().collect();
            out.push_str(&if literal.is_empty() { "'".to_string() } else { literal.replace('%', "%%") });
            index += close + 2;
            continue;
        }
        let run = chars[index..].iter().take_while(|&&d| d == c).count();
        index += run;
        if !c.is_ascii_alphabetic() {
            for _ in 0..run {
                if c == '%' {
                    out.push_str("%%");
                } else {
                    out.push(c);
                }
            }
            continue;
        }
        let item = match (c, run) {
            ('y' | 'Y' | 'u', 2) => "%y",
            ('y' | 'Y' | 'u', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => {
                // Fraction digits follow a '.' or ',' that %.f consumes.
                match out.pop() {
                    Some('.') => {}
                    Some(',') => comma_fraction = true,
                    Some(other) => return Err(format!("fraction `S` must follow '.' or ',' (found {other:?})")),
                    None => return Err("fraction `S` must follow seconds".to_string()),
                }
                "%.f"
            }
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', 1) => "%z",
            ('Z', 2) => "%:z",
            ('X', _) => "%#z",
            _ => return Err(format!("date format letter `{}` is not supported", c.to_string().repeat(run))),
        };
        out.push_str(item);
    }
    Ok((out, comma_fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(format: &str, text: &str) -> Option<String> {
        let now = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z").unwrap().with_timezone(&Utc);
        let zone = FixedOffset::east_opt(0).unwrap();
        DateFormat::compile(format).unwrap().parse(text, zone, now).map(format_timestamp)
    }

    #[test]
    fn joda_formats() {
        assert_eq!(at("dd/MMM/yyyy:HH:mm:ss Z", "10/Oct/2000:13:55:36 -0700").unwrap(), "2000-10-10T20:55:36Z");
        assert_eq!(at("yyyy-MM-dd HH:mm:ss,SSS", "2024-03-01 12:00:01,250").unwrap(), "2024-03-01T12:00:01.250Z");
        assert_eq!(
            at("yyyy-MM-dd'T'HH:mm:ss.SSSZZ", "2024-03-01T12:00:01.5+02:00").unwrap(),
            "2024-03-01T10:00:01.500Z"
        );
        assert_eq!(at("M/d/yyyy h:mm:ss a", "10/29/2024 6:28:34 PM").unwrap(), "2024-10-29T18:28:34Z");
        // No year: this year, or last year when that would be in the future.
        assert_eq!(at("MMM dd HH:mm:ss", "Jan  3 08:00:00").unwrap(), "2026-01-03T08:00:00Z");
        assert_eq!(at("MMM d HH:mm:ss", "Dec 31 23:59:59").unwrap(), "2025-12-31T23:59:59Z");
        assert_eq!(at("yyyy-MM-dd", "2024-02-03").unwrap(), "2024-02-03T00:00:00Z");
        assert_eq!(at("yyyy-MM-dd", "nope"), None);
    }

    #[test]
    fn specials() {
        assert_eq!(at("ISO8601", "2024-01-02T03:04:05.123Z").unwrap(), "2024-01-02T03:04:05.123Z");
        assert_eq!(at("ISO8601", "2024-01-02 03:04:05").unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(at("ISO8601", "2024-01-02T03:04:05+0100").unwrap(), "2024-01-02T02:04:05Z");
        assert_eq!(at("UNIX", "1700000000.5").unwrap(), "2023-11-14T22:13:20.500Z");
        assert_eq!(at("UNIX_MS", "1700000000500").unwrap(), "2023-11-14T22:13:20.500Z");
        assert!(DateFormat::compile("TAI64N").is_err());
        assert!(DateFormat::compile("yyyy QQ").unwrap_err().contains("QQ"));
    }
}
