//! Calendar functions on UTC datetimes (nanoseconds since the epoch):
//! parts, start and end of periods, `datetime_diff`, `datetime_add`,
//! `format_datetime`, `format_timespan`, `make_datetime`, Unix times.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Timelike, Utc};
use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;

use super::kernel::{datetimes, ints, long_at, longs, nanos_at, real_at, strings, text_at, timespans, Invocation};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SECOND;
const NANOS_PER_TICK: i64 = 100;

/// A datetime as `tostring()` writes it: `2024-01-02T03:04:05Z`, with seven
/// fractional digits only when there is a fraction.
pub(crate) fn datetime_text(nanos: i64) -> String {
    let Some(time) = to_time(nanos) else {
        return String::new();
    };
    let fraction = nanos.rem_euclid(NANOS_PER_SECOND) / NANOS_PER_TICK;
    if fraction == 0 {
        format!("{}Z", time.format("%Y-%m-%dT%H:%M:%S"))
    } else {
        format!("{}.{fraction:07}Z", time.format("%Y-%m-%dT%H:%M:%S"))
    }
}

fn to_time(nanos: i64) -> Option<NaiveDateTime> {
    Some(DateTime::<Utc>::from_timestamp_nanos(nanos).naive_utc())
}

fn from_time(time: NaiveDateTime) -> Option<i64> {
    time.and_utc().timestamp_nanos_opt()
}

fn midnight(date: NaiveDate) -> Option<i64> {
    from_time(date.and_hms_opt(0, 0, 0)?)
}

/// The calendar parts `datetime_part` and `datetime_diff` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

fn part_named(name: &str) -> Option<Part> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "year" | "years" => Part::Year,
        "quarter" | "quarters" => Part::Quarter,
        "month" | "months" => Part::Month,
        "week" | "weeks" | "week_of_year" | "weekofyear" => Part::Week,
        "day" | "days" => Part::Day,
        "dayofyear" | "day_of_year" => Part::DayOfYear,
        "hour" | "hours" => Part::Hour,
        "minute" | "minutes" => Part::Minute,
        "second" | "seconds" => Part::Second,
        "millisecond" | "milliseconds" => Part::Millisecond,
        "microsecond" | "microseconds" => Part::Microsecond,
        "nanosecond" | "nanoseconds" => Part::Nanosecond,
        _ => return None,
    })
}

fn part_of(part: Part, nanos: i64) -> Option<i64> {
    let time = to_time(nanos)?;
    let sub_second = nanos.rem_euclid(NANOS_PER_SECOND);
    Some(match part {
        Part::Year => time.year().into(),
        Part::Quarter => (time.month0() / 3 + 1).into(),
        Part::Month => time.month().into(),
        Part::Week => time.iso_week().week().into(),
        Part::Day => time.day().into(),
        Part::DayOfYear => time.ordinal().into(),
        Part::Hour => time.hour().into(),
        Part::Minute => time.minute().into(),
        Part::Second => time.second().into(),
        Part::Millisecond => sub_second / 1_000_000,
        Part::Microsecond => sub_second / 1_000,
        Part::Nanosecond => sub_second,
    })
}

/// `datetime_part(part, datetime)`; `getyear()`, `getmonth()`... lower to it
/// with a constant part.
pub(crate) fn datetime_part(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(ints((0..call.n_rows).map(|row| {
        let part = part_named(text_at(&call.args[0], row)?)?;
        part_of(part, nanos_at(&call.args[1], row)?).map(|value| value as i32)
    })))
}

/// `dayofweek(datetime)`: the time since the preceding Sunday midnight.
pub(crate) fn day_of_week(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(timespans((0..call.n_rows).map(|row| {
        let time = to_time(nanos_at(&call.args[0], row)?)?;
        Some(i64::from(time.weekday().num_days_from_sunday()) * NANOS_PER_DAY)
    })))
}

/// The period `startof*` and `endof*` functions work on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Period {
    Day,
    Week,
    Month,
    Year,
}

/// The start of the period holding `nanos`, moved by `offset` periods.
fn start_of(period: Period, nanos: i64, offset: i64) -> Option<i64> {
    let date = to_time(nanos)?.date();
    let start = match period {
        Period::Day => date,
        Period::Week => date - Days::new(date.weekday().num_days_from_sunday().into()),
        Period::Month => date.with_day(1)?,
        Period::Year => date.with_day(1)?.with_month(1)?,
    };
    let moved = match period {
        Period::Day => shift_days(start, offset)?,
        Period::Week => shift_days(start, offset.checked_mul(7)?)?,
        Period::Month => shift_months(start, offset)?,
        Period::Year => shift_months(start, offset.checked_mul(12)?)?,
    };
    midnight(moved)
}

fn shift_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days as u64))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

fn shift_months(date: NaiveDate, months: i64) -> Option<NaiveDate> {
    let count = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        date.checked_add_months(count)
    } else {
        date.checked_sub_months(count)
    }
}

fn offset_at(call: &Invocation<'_>, row: usize) -> Option<i64> {
    match call.args.get(1) {
        Some(array) => long_at(array, row),
        None => Some(0),
    }
}

pub(crate) fn start_of_period(call: &Invocation<'_>, period: Period) -> Result<ArrayRef> {
    Ok(datetimes((0..call.n_rows).map(|row| start_of(period, nanos_at(&call.args[0], row)?, offset_at(call, row)?))))
}

/// The last tick of the period: the next period's start minus 100 ns.
pub(crate) fn end_of_period(call: &Invocation<'_>, period: Period) -> Result<ArrayRef> {
    Ok(datetimes((0..call.n_rows).map(|row| {
        let next = start_of(period, nanos_at(&call.args[0], row)?, offset_at(call, row)?.checked_add(1)?)?;
        Some(next - NANOS_PER_TICK)
    })))
}

/// `datetime_diff(part, datetime1, datetime2)`: how many `part` boundaries
/// lie between `datetime2` and `datetime1` (positive when `datetime1` is
/// later).
pub(crate) fn datetime_diff(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(longs((0..call.n_rows).map(|row| {
        let part = part_named(text_at(&call.args[0], row)?)?;
        let (later, earlier) = (nanos_at(&call.args[1], row)?, nanos_at(&call.args[2], row)?);
        let (a, b) = (to_time(later)?, to_time(earlier)?);
        let months = |t: &NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
        let floor_diff = |unit: i64| later.div_euclid(unit) - earlier.div_euclid(unit);
        Some(match part {
            Part::Year => i64::from(a.year() - b.year()),
            Part::Quarter => months(&a).div_euclid(3) - months(&b).div_euclid(3),
            Part::Month => months(&a) - months(&b),
            Part::Week => {
                (start_of(Period::Week, later, 0)? - start_of(Period::Week, earlier, 0)?) / (7 * NANOS_PER_DAY)
            }
            Part::Day | Part::DayOfYear => floor_diff(NANOS_PER_DAY),
            Part::Hour => floor_diff(3_600 * NANOS_PER_SECOND),
            Part::Minute => floor_diff(60 * NANOS_PER_SECOND),
            Part::Second => floor_diff(NANOS_PER_SECOND),
            Part::Millisecond => floor_diff(1_000_000),
            Part::Microsecond => floor_diff(1_000),
            Part::Nanosecond => later - earlier,
        })
    })))
}

/// `datetime_add(part, amount, datetime)`; months and years keep the day of
/// the month, clamped to the month's length.
pub(crate) fn datetime_add(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(datetimes((0..call.n_rows).map(|row| {
        let part = part_named(text_at(&call.args[0], row)?)?;
        let amount = long_at(&call.args[1], row)?;
        let nanos = nanos_at(&call.args[2], row)?;
        let calendar = |months: i64| {
            let time = to_time(nanos)?;
            let date = shift_months(time.date(), months)?;
            from_time(date.and_time(time.time()))
        };
        let fixed = |unit: i64| nanos.checked_add(amount.checked_mul(unit)?);
        match part {
            Part::Year => calendar(amount.checked_mul(12)?),
            Part::Quarter => calendar(amount.checked_mul(3)?),
            Part::Month => calendar(amount),
            Part::Week => fixed(7 * NANOS_PER_DAY),
            Part::Day | Part::DayOfYear => fixed(NANOS_PER_DAY),
            Part::Hour => fixed(3_600 * NANOS_PER_SECOND),
            Part::Minute => fixed(60 * NANOS_PER_SECOND),
            Part::Second => fixed(NANOS_PER_SECOND),
            Part::Millisecond => fixed(1_000_000),
            Part::Microsecond => fixed(1_000),
            Part::Nanosecond => fixed(1),
        }
    })))
}

/// `make_datetime(year, month, day [, hour, minute, second])`; the second
/// may have a fraction.
pub(crate) fn make_datetime(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(datetimes((0..call.n_rows).map(|row| {
        let part = |idx: usize| match call.args.get(idx) {
            Some(array) => long_at(array, row),
            None => Some(0),
        };
        let date = NaiveDate::from_ymd_opt(
            i32::try_from(part(0)?).ok()?,
            u32::try_from(part(1)?).ok()?,
            u32::try_from(part(2)?).ok()?,
        )?;
        let (hour, minute) = (u32::try_from(part(3)?).ok()?, u32::try_from(part(4)?).ok()?);
        let seconds = match call.args.get(5) {
            Some(array) => real_at(array, row)?,
            None => 0.0,
        };
        if !(0.0..60.0).contains(&seconds) {
            return None;
        }
        let base = from_time(date.and_hms_opt(hour, minute, 0)?)?;
        Some(base + (seconds * 1e9).round() as i64)
    })))
}

/// `unixtime_<unit>_todatetime(value)`, `nanos_per_unit` nanoseconds per
/// unit.
pub(crate) fn unixtime(call: &Invocation<'_>, nanos_per_unit: i64) -> Result<ArrayRef> {
    Ok(datetimes((0..call.n_rows).map(|row| {
        let value = real_at(&call.args[0], row)?;
        let nanos = value * nanos_per_unit as f64;
        (nanos.is_finite() && nanos.abs() < i64::MAX as f64).then(|| nanos.round() as i64)
    })))
}

/// `format_datetime(datetime, format)` with the .NET-style specifiers
/// Kusto documents: `yyyy`, `yy`, `MM`, `M`, `dd`, `d`, `HH`, `H`, `hh`,
/// `h`, `mm`, `m`, `ss`, `s`, `f`...`fffffff`, `F`..., `tt`; other
/// characters are copied.
pub(crate) fn format_datetime(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(strings((0..call.n_rows).map(|row| {
        let nanos = nanos_at(&call.args[0], row)?;
        let format = text_at(&call.args[1], row)?;
        let time = to_time(nanos)?;
        let ticks = nanos.rem_euclid(NANOS_PER_SECOND) / NANOS_PER_TICK;
        let mut out = String::new();
        for (letter, count) in runs(format) {
            let hour12 = if time.hour() % 12 == 0 { 12 } else { time.hour() % 12 };
            match (letter, count) {
                ('y', 1 | 2) => out.push_str(&pad(i64::from(time.year() % 100), count)),
                ('y', _) => out.push_str(&pad(time.year().into(), count.max(4))),
                ('M', _) => out.push_str(&pad(time.month().into(), count.min(2))),
                ('d', _) => out.push_str(&pad(time.day().into(), count.min(2))),
                ('H', _) => out.push_str(&pad(time.hour().into(), count.min(2))),
                ('h', _) => out.push_str(&pad(hour12.into(), count.min(2))),
                ('m', _) => out.push_str(&pad(time.minute().into(), count.min(2))),
                ('s', _) => out.push_str(&pad(time.second().into(), count.min(2))),
                ('f' | 'F', _) => out.push_str(&fraction(ticks, count.min(7), letter == 'F')),
                ('t', _) => out.push_str(if time.hour() < 12 { "AM" } else { "PM" }),
                (other, _) => (0..count).for_each(|_| out.push(other)),
            }
        }
        Some(out)
    })))
}

/// `format_timespan(timespan, format)`: `d`, `h`/`hh`, `H`/`HH`, `m`/`mm`,
/// `s`/`ss`, `f`...`fffffff`, `F`...; other characters are copied.
pub(crate) fn format_timespan(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(strings((0..call.n_rows).map(|row| {
        let nanos = nanos_at(&call.args[0], row)?;
        let format = text_at(&call.args[1], row)?;
        let magnitude = nanos.unsigned_abs() as i64;
        let seconds = magnitude / NANOS_PER_SECOND;
        let ticks = (magnitude % NANOS_PER_SECOND) / NANOS_PER_TICK;
        let mut out = String::from(if nanos < 0 { "-" } else { "" });
        for (letter, count) in runs(format) {
            match letter {
                'd' => out.push_str(&pad(seconds / 86_400, count)),
                'h' | 'H' => out.push_str(&pad((seconds / 3_600) % 24, count.min(2))),
                'm' => out.push_str(&pad((seconds / 60) % 60, count.min(2))),
                's' => out.push_str(&pad(seconds % 60, count.min(2))),
                'f' | 'F' => out.push_str(&fraction(ticks, count.min(7), letter == 'F')),
                other => (0..count).for_each(|_| out.push(other)),
            }
        }
        Some(out)
    })))
}

/// Splits a format into runs of one repeated character; a backslash or
/// quotes make the next characters literal.
fn runs(format: &str) -> Vec<(char, usize)> {
    let mut out: Vec<(char, usize)> = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(('\u{0}', 0));
                out.push((next, 1));
                out.push(('\u{0}', 0));
            }
            continue;
        }
        match out.last_mut() {
            Some((last, count)) if *last == c && c.is_ascii_alphabetic() => *count += 1,
            _ => out.push((c, 1)),
        }
    }
    out.retain(|(_, count)| *count > 0);
    out
}

fn pad(value: i64, width: usize) -> String {
    format!("{value:0width$}")
}

/// The first `digits` of a seven-digit tick fraction; `F` drops trailing
/// zeros.
fn fraction(ticks: i64, digits: usize, trim: bool) -> String {
    let text = format!("{ticks:07}");
    let text = &text[..digits];
    if trim {
        text.trim_end_matches('0').to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-15T13:47:12Z, a Friday.
    const T: i64 = 1_710_510_432_000_000_000;

    #[test]
    fn periods_start_on_sunday_and_the_first() {
        assert_eq!(datetime_text(start_of(Period::Week, T, 0).unwrap()), "2024-03-10T00:00:00Z");
        assert_eq!(datetime_text(start_of(Period::Month, T, 1).unwrap()), "2024-04-01T00:00:00Z");
        assert_eq!(datetime_text(start_of(Period::Year, T, -1).unwrap()), "2023-01-01T00:00:00Z");
        assert_eq!(datetime_text(T + 1_000), "2024-03-15T13:47:12.0000010Z");
    }

    #[test]
    fn splits_formats_into_runs() {
        assert_eq!(runs("yyyy-MM"), vec![('y', 4), ('-', 1), ('M', 2)]);
        assert_eq!(fraction(1_230_000, 3, false), "123");
        assert_eq!(fraction(1_000_000, 3, true), "1");
    }
}
