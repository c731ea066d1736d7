//! Recognisers behind type inference (spec 1.4, 1.5): property-name
//! sanitising, ISO 8601 date-times, GUIDs, numeric and boolean text, compact
//! JSON.

use std::borrow::Cow;

use chrono::{Datelike as _, NaiveDate};

/// A GUID in lower-case 8-4-4-4-12 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guid([u8; 36]);

impl Guid {
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a normalised GUID is ASCII")
    }
}

/// Parses a GUID written with dashes (8-4-4-4-12) or as 32 hex digits,
/// any letter case.
pub(crate) fn parse_guid(text: &str) -> Option<Guid> {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    let bytes = text.as_bytes();
    let mut out = [b'-'; 36];
    match bytes.len() {
        36 => {
            for (idx, &byte) in bytes.iter().enumerate() {
                if DASHES.contains(&idx) {
                    if byte != b'-' {
                        return None;
                    }
                } else {
                    out[idx] = lower_hex_digit(byte)?;
                }
            }
        }
        32 => {
            let mut src = bytes.iter();
            for (idx, slot) in out.iter_mut().enumerate() {
                if !DASHES.contains(&idx) {
                    *slot = lower_hex_digit(*src.next().expect("32 digits fill 32 slots"))?;
                }
            }
        }
        _ => return None,
    }
    Some(Guid(out))
}

fn lower_hex_digit(byte: u8) -> Option<u8> {
    byte.is_ascii_hexdigit().then(|| byte.to_ascii_lowercase())
}

/// Parses `YYYY-MM-DDThh:mm[:ss[.f{1,9}]](Z|±hh:mm)` (also with a space or a
/// lower-case `t` instead of `T`, and `z` for `Z`) into nanoseconds since
/// the Unix epoch. Digits past the seventh (KQL's 100 ns ticks) are cut off. A date alone is not
/// a date-time.
pub(crate) fn parse_iso_datetime(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    // Shortest form: "YYYY-MM-DDThh:mmZ" (17 bytes).
    if bytes.len() < 17 || !bytes[0].is_ascii_digit() {
        return None;
    }
    let year = digits(bytes, 0, 4)?;
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    if bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') || bytes[13] != b':' {
        return None;
    }
    let hour = digits(bytes, 11, 2)?;
    let minute = digits(bytes, 14, 2)?;
    let mut pos = 16;
    let mut second = 0;
    let mut nanos = 0;
    if bytes.get(pos) == Some(&b':') {
        second = digits(bytes, pos + 1, 2)?;
        pos += 3;
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            let n_digits = pos - start;
            if n_digits == 0 || n_digits > 9 {
                return None;
            }
            // KQL keeps 100 ns ticks: digits past the seventh are dropped.
            let kept = n_digits.min(7);
            let value = digits(bytes, start, kept)?;
            nanos = value * 10_i64.pow(u32::try_from(9 - kept).expect("at most 9"));
        }
    }
    let offset_seconds = match bytes.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let offset_hours = digits(bytes, pos + 1, 2)?;
            let offset_minutes = digits(bytes, pos + 4, 2)?;
            if offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            let offset = offset_hours * 3600 + offset_minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date =
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, u32::try_from(month).ok()?, u32::try_from(day).ok()?)?;
    const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Reads `len` ASCII digits at `start` as a number.
fn digits(bytes: &[u8], start: usize, len: usize) -> Option<i64> {
    let slice = bytes.get(start..start + len)?;
    let mut value = 0_i64;
    for &byte in slice {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(value)
}

/// Parses text that is a decimal number (optional sign, digits, fraction,
/// exponent) into a finite `f64`. `inf`, `NaN`, hex and empty text are not
/// numbers.
pub(crate) fn parse_numeric_text(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    if !bytes.iter().any(u8::is_ascii_digit)
        || !bytes.iter().all(|byte| byte.is_ascii_digit() || matches!(byte, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Parses `true` / `false` in any letter case.
pub(crate) fn parse_bool_text(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Replaces every character other than ASCII letters, digits and `_` with
/// `_`. Borrows when nothing changes.
pub(crate) fn sanitise_name(name: &str) -> Cow<'_, str> {
    let is_kept = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if name.chars().all(is_kept) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.chars().map(|c| if is_kept(c) { c } else { '_' }).collect())
}

/// Appends `raw` (valid JSON text) to `out` without insignificant
/// whitespace.
pub(crate) fn push_compact_json(raw: &str, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = raw.as_bytes();
    // Copy runs between skipped bytes rather than byte by byte.
    let mut run_start = 0;
    for (idx, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(&bytes[run_start..idx]);
                run_start = idx + 1;
            }
            _ => {}
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_nanos_opt().unwrap()
    }

    #[test]
    fn iso_datetimes() {
        assert_eq!(parse_iso_datetime("2019-09-12T20:00:00.625Z"), Some(nanos("2019-09-12T20:00:00.625Z")));
        assert_eq!(parse_iso_datetime("2019-09-12T20:00Z"), Some(nanos("2019-09-12T20:00:00Z")));
        assert_eq!(parse_iso_datetime("2019-09-12 20:00:01+02:00"), Some(nanos("2019-09-12T18:00:01Z")));
        assert_eq!(parse_iso_datetime("2019-09-12t20:00:01-01:30"), Some(nanos("2019-09-12T21:30:01Z")));
        assert_eq!(parse_iso_datetime("2019-09-12T20:00:00.1234567Z"), Some(nanos("2019-09-12T20:00:00.1234567Z")));
        // Past KQL's 100 ns ticks, digits are dropped.
        assert_eq!(parse_iso_datetime("2019-09-12T20:00:00.123456789Z"), Some(nanos("2019-09-12T20:00:00.1234567Z")));
        assert_eq!(parse_iso_datetime("1969-12-31T23:59:59.5Z"), Some(-500_000_000));
        for not_datetime in [
            "2019-09-12",
            "2019-09-12T20:00:00",
            "2019-09-12T20:00:00.Z",
            "2019-02-30T20:00:00Z",
            "2019-09-12T24:00:00Z",
            "2019-09-12T20:00:00+0200",
            "2019-09-12T20:00:00Z ",
            "2019-09-12T20:00:00.1234567890Z",
            "hello world, hello",
            "2019/09/12T20:00:00Z",
        ] {
            assert_eq!(parse_iso_datetime(not_datetime), None, "{not_datetime}");
        }
    }

    #[test]
    fn guids() {
        let expected = "9909ed01-a74c-4874-8abf-d2678e3ae23d";
        assert_eq!(parse_guid("9909ED01-A74C-4874-8ABF-D2678E3AE23D").unwrap().as_str(), expected);
        assert_eq!(parse_guid("9909ED01A74C48748ABFD2678E3AE23D").unwrap().as_str(), expected);
        assert_eq!(parse_guid(expected).unwrap().as_str(), expected);
        for not_guid in [
            "9909ED01-A74C-4874-8ABF-D2678E3AE23",
            "9909ED01-A74C-4874-8ABF_D2678E3AE23D",
            "9909ED01-A74C-4874-8ABF-D2678E3AE23G",
            "{9909ED01-A74C-4874-8ABF-D2678E3AE23D}",
            "9909ED01A74C48748ABFD2678E3AE23DFF",
        ] {
            assert!(parse_guid(not_guid).is_none(), "{not_guid}");
        }
    }

    #[test]
    fn numeric_and_bool_text() {
        assert_eq!(parse_numeric_text("42"), Some(42.0));
        assert_eq!(parse_numeric_text("-1.5e3"), Some(-1500.0));
        for not_number in ["", "inf", "NaN", "0x10", "1e", "4 2", "--1", "1e999"] {
            assert_eq!(parse_numeric_text(not_number), None, "{not_number}");
        }
        assert_eq!(parse_bool_text("TRUE"), Some(true));
        assert_eq!(parse_bool_text("False"), Some(false));
        assert_eq!(parse_bool_text("yes"), None);
    }

    #[test]
    fn names_are_sanitised() {
        assert!(matches!(sanitise_name("Plain_Name1"), Cow::Borrowed("Plain_Name1")));
        assert_eq!(sanitise_name("a b.c-d/é"), "a_b_c_d__");
    }

    #[test]
    fn compact_json_keeps_strings() {
        let mut out = Vec::new();
        push_compact_json("{ \"a b\" : [1, 2,\n {\"c\\\" d\": \" x \"}] }", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a b":[1,2,{"c\" d":" x "}]}"#);
    }
}
