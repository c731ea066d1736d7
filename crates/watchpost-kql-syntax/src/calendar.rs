//! Calendar and clock arithmetic for `datetime` and `timespan` literals.
//!
//! Both are counted in 100 ns ticks (Kusto's unit); datetimes from the Unix
//! epoch in the proleptic Gregorian calendar, with no time zones (a trailing
//! `Z` is accepted and means UTC, the only zone KQL literals have).

pub(crate) const TICKS_PER_MICROSECOND: i64 = 10;
pub(crate) const TICKS_PER_MILLISECOND: i64 = 10_000;
pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;
pub(crate) const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;
pub(crate) const TICKS_PER_HOUR: i64 = 60 * TICKS_PER_MINUTE;
pub(crate) const TICKS_PER_DAY: i64 = 24 * TICKS_PER_HOUR;

/// Units the printer uses, largest first, with their canonical suffix.
const PRINT_UNITS: [(i64, &str); 7] = [
    (TICKS_PER_DAY, "d"),
    (TICKS_PER_HOUR, "h"),
    (TICKS_PER_MINUTE, "m"),
    (TICKS_PER_SECOND, "s"),
    (TICKS_PER_MILLISECOND, "ms"),
    (TICKS_PER_MICROSECOND, "microsecond"),
    (1, "tick"),
];

/// Returns the number of ticks in one `unit` (`d`, `h`, `min`, `seconds`...),
/// or `None` when `unit` is not a timespan suffix.
pub(crate) fn unit_ticks(unit: &str) -> Option<i64> {
    let ticks = match unit {
        "d" | "day" | "days" => TICKS_PER_DAY,
        "h" | "hr" | "hrs" | "hour" | "hours" => TICKS_PER_HOUR,
        "m" | "min" | "minute" | "minutes" => TICKS_PER_MINUTE,
        "s" | "sec" | "second" | "seconds" => TICKS_PER_SECOND,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => TICKS_PER_MILLISECOND,
        "microsecond" | "microseconds" => TICKS_PER_MICROSECOND,
        "tick" | "ticks" => 1,
        _ => return None,
    };
    Some(ticks)
}

/// Returns `number` (digits, optionally with a fraction or an exponent)
/// times `unit` ticks, or `None` on overflow or a malformed number.
pub(crate) fn scaled_ticks(number: &str, unit: i64) -> Option<i64> {
    if number.contains(['e', 'E']) {
        let value = number.parse::<f64>().ok()? * unit as f64;
        let in_range = value.is_finite() && value.abs() < i64::MAX as f64;
        return in_range.then(|| value.round() as i64);
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut ticks = whole.checked_mul(unit as i128)?;
    if !fraction.is_empty() {
        // Fractions finer than a tick are dropped, like Kusto does.
        let digits = &fraction[..fraction.len().min(18)];
        let numerator: i128 = digits.parse().ok()?;
        ticks += numerator * unit as i128 / 10i128.pow(digits.len() as u32);
    }
    i64::try_from(ticks).ok()
}

/// Returns the days since 1970-01-01 of a proleptic Gregorian date
/// (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Returns `(year, month, day)` for a count of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses the text of `datetime(...)`: `YYYY-MM-DD`, optionally followed by
/// `T` or a space and `hh:mm[:ss[.fffffff]]`, optionally ending in `Z`.
/// Returns ticks since the Unix epoch or a message saying what is wrong.
pub(crate) fn parse_datetime(text: &str) -> Result<i64, String> {
    let mut cursor = Cursor { bytes: text.as_bytes(), pos: 0 };
    let date = cursor.date().ok_or("expected a date as `YYYY-MM-DD`")?;
    let (year, month, day) = date;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("day {day} is out of range for {year:04}-{month:02}"));
    }
    let mut ticks = days_from_civil(year, month, day) * TICKS_PER_DAY;
    if cursor.eat(b'T') || cursor.eat(b' ') {
        let clock = cursor.clock().ok_or("expected a time of day as `hh:mm[:ss[.fffffff]]`")?;
        if clock >= TICKS_PER_DAY {
            return Err("the time of day is out of range".to_string());
        }
        ticks += clock;
    }
    cursor.eat(b'Z');
    match cursor.rest() {
        "" => Ok(ticks),
        rest => Err(format!("unexpected `{rest}` after the date")),
    }
}

/// Parses the text of `time(...)` / `timespan(...)`: either a clock form
/// `[-][d.]hh:mm[:ss[.fffffff]]` or a number with an optional unit suffix
/// (`2d`, `1.5h`; a bare number counts days).
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body.trim_start()),
        None => (false, text),
    };
    let ticks = if body.contains(':') { parse_clock_span(body)? } else { parse_unit_span(body)? };
    Ok(if negative { -ticks } else { ticks })
}

fn parse_unit_span(body: &str) -> Result<i64, String> {
    let unit_start = body.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E').unwrap_or(body.len());
    let (number, unit) = body.split_at(unit_start);
    let unit =
        if unit.is_empty() { TICKS_PER_DAY } else { unit_ticks(unit).ok_or(format!("unknown unit `{unit}`"))? };
    if number.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err("expected a timespan such as `2d`, `1.5h` or `1.02:03:04`".to_string());
    }
    scaled_ticks(number, unit).ok_or_else(|| format!("`{body}` is not a valid timespan"))
}

fn parse_clock_span(body: &str) -> Result<i64, String> {
    let malformed = || format!("`{body}` is not a valid `[d.]hh:mm[:ss[.fffffff]]` timespan");
    let (days, clock) = match body.split_once('.') {
        Some((days, clock)) if clock.contains(':') => (days.parse::<i64>().map_err(|_| malformed())?, clock),
        _ => (0, body),
    };
    let mut cursor = Cursor { bytes: clock.as_bytes(), pos: 0 };
    let clock_ticks = cursor.clock().ok_or_else(malformed)?;
    if !cursor.rest().is_empty() {
        return Err(malformed());
    }
    days.checked_mul(TICKS_PER_DAY).and_then(|ticks| ticks.checked_add(clock_ticks)).ok_or_else(malformed)
}

/// Formats ticks since the epoch as the text of a `datetime(...)` literal.
pub(crate) fn format_datetime(ticks: i64) -> String {
    let days = ticks.div_euclid(TICKS_PER_DAY);
    let time_of_day = ticks.rem_euclid(TICKS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let date = format!("{year:04}-{month:02}-{day:02}");
    if time_of_day == 0 {
        return date;
    }
    let hours = time_of_day / TICKS_PER_HOUR;
    let minutes = time_of_day % TICKS_PER_HOUR / TICKS_PER_MINUTE;
    let seconds = time_of_day % TICKS_PER_MINUTE / TICKS_PER_SECOND;
    let fraction = time_of_day % TICKS_PER_SECOND;
    let mut text = format!("{date}T{hours:02}:{minutes:02}:{seconds:02}");
    if fraction != 0 {
        let digits = format!("{fraction:07}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Formats a non-negative tick count as a timespan literal in the largest
/// unit that divides it exactly (`90m`, `1d`, `15tick`).
pub(crate) fn format_timespan(ticks: i64) -> String {
    debug_assert!(ticks >= 0, "negative timespans are printed by the caller");
    if ticks == 0 {
        return "0s".to_string();
    }
    let (unit, suffix) = PRINT_UNITS.iter().find(|(unit, _)| ticks % unit == 0).copied().unwrap_or((1, "tick"));
    format!("{}{suffix}", ticks / unit)
}

/// A byte cursor over the text of a datetime or clock literal.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.bytes.get(self.pos) == Some(&byte);
        self.pos += usize::from(matched);
        matched
    }

    /// Reads exactly `count` decimal digits.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + count)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += count;
        Some(digits.iter().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
    }

    fn rest(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.pos..]).unwrap_or("?")
    }

    fn date(&mut self) -> Option<(i64, u32, u32)> {
        let year = self.digits(4)?;
        let month = self.eat(b'-').then(|| self.digits(2))??;
        let day = self.eat(b'-').then(|| self.digits(2))??;
        Some((i64::from(year), month, day))
    }

    /// Reads `hh:mm[:ss[.fffffff]]` and returns its ticks.
    fn clock(&mut self) -> Option<i64> {
        let hours = i64::from(self.digits(2)?);
        let minutes = i64::from(self.eat(b':').then(|| self.digits(2))??);
        let seconds = if self.eat(b':') { i64::from(self.digits(2)?) } else { 0 };
        if minutes > 59 || seconds > 59 {
            return None;
        }
        let fraction = if self.eat(b'.') { self.fraction()? } else { 0 };
        Some(hours * TICKS_PER_HOUR + minutes * TICKS_PER_MINUTE + seconds * TICKS_PER_SECOND + fraction)
    }

    /// Reads the digits after a `.` as ticks (up to seven are significant).
    fn fraction(&mut self) -> Option<i64> {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = &self.bytes[start..self.pos];
        if digits.is_empty() {
            return None;
        }
        let significant = &digits[..digits.len().min(7)];
        let value = significant.iter().fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'));
        Some(value * 10i64.pow(7 - significant.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_civil_dates_both_ways() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in [-800_000, -1, 0, 59, 19_723, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn parses_and_formats_datetimes() {
        let ticks = parse_datetime("2024-01-01T10:00:00Z").unwrap();
        assert_eq!(ticks, 19_723 * TICKS_PER_DAY + 10 * TICKS_PER_HOUR);
        assert_eq!(parse_datetime("2024-01-01 10:00:00"), Ok(ticks));
        assert_eq!(parse_datetime("2024-01-01T10:00"), Ok(ticks));
        assert_eq!(format_datetime(ticks), "2024-01-01T10:00:00Z");
        let fractional = parse_datetime("2024-01-01 10:00:00.123").unwrap();
        assert_eq!(format_datetime(fractional), "2024-01-01T10:00:00.123Z");
        assert_eq!(format_datetime(parse_datetime("2024-02-29").unwrap()), "2024-02-29");
        assert!(parse_datetime("2023-02-29").is_err());
        assert!(parse_datetime("2024-13-01").is_err());
        assert!(parse_datetime("2024-01-01T25:00").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn parses_and_formats_timespans() {
        assert_eq!(
            parse_time("1.02:03:04"),
            Ok(TICKS_PER_DAY + 2 * TICKS_PER_HOUR + 3 * TICKS_PER_MINUTE + 4 * TICKS_PER_SECOND)
        );
        assert_eq!(parse_time("2d"), Ok(2 * TICKS_PER_DAY));
        assert_eq!(parse_time("-1.5h"), Ok(-90 * TICKS_PER_MINUTE));
        assert_eq!(parse_time("3"), Ok(3 * TICKS_PER_DAY));
        assert!(parse_time("soon").is_err());
        assert_eq!(format_timespan(90 * TICKS_PER_MINUTE), "90m");
        assert_eq!(format_timespan(TICKS_PER_DAY), "1d");
        assert_eq!(format_timespan(15), "15tick");
        assert_eq!(scaled_ticks("1e3", TICKS_PER_MILLISECOND), Some(TICKS_PER_SECOND));
    }
}
