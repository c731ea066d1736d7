//! The array builders of `make-series`: `series_fill` turns a group's
//! collected `[bin, value]` pairs into the dense series, and `series_axis`
//! lists the axis values of the bins.

use datafusion::arrow::array::ArrayRef;
use datafusion::error::Result;
use serde_json::Value as Json;
use watchpost_schema::KqlType;

use super::kernel::{dynamics, json_at, nanos_at, real_at, text_at, Invocation};

/// The most bins one series may have; a larger range is refused with null.
const MAX_BINS: usize = 1_000_000;

/// `(pairs, from, to, step, default) → dynamic array`.
pub(crate) fn series_fill(call: &Invocation<'_>) -> Result<ArrayRef> {
    let values = (0..call.n_rows).map(|row| {
        let n_bins = bin_count(call, 1, row)?;
        let default = json_at(&call.args[4], call.arg_types[4], row);
        let mut series = vec![default; n_bins];
        let pairs = text_at(&call.args[0], row).map(super::dynamic::parse_or_string);
        for pair in pairs.as_ref().and_then(Json::as_array).into_iter().flatten() {
            let (Some(bin), Some(value)) = (pair.get(0).and_then(Json::as_u64), pair.get(1)) else {
                continue;
            };
            if let Some(slot) = usize::try_from(bin).ok().and_then(|bin| series.get_mut(bin)) {
                if !value.is_null() {
                    *slot = value.clone();
                }
            }
        }
        Some(Json::Array(series))
    });
    Ok(dynamics(values.collect::<Vec<_>>()))
}

/// `(from, to, step) → dynamic array of the axis values`.
pub(crate) fn series_axis(call: &Invocation<'_>) -> Result<ArrayRef> {
    let values = (0..call.n_rows).map(|row| {
        let n_bins = bin_count(call, 0, row)?;
        let axis = (0..n_bins).map(|bin| axis_value(call, row, bin)).collect::<Option<Vec<_>>>()?;
        Some(Json::Array(axis))
    });
    Ok(dynamics(values.collect::<Vec<_>>()))
}

/// `ceil((to - from) / step)` from the arguments starting at `first`.
fn bin_count(call: &Invocation<'_>, first: usize, row: usize) -> Option<usize> {
    let (from, to, step) = (number(call, first, row)?, number(call, first + 1, row)?, number(call, first + 2, row)?);
    if step <= 0.0 || to <= from {
        return Some(0);
    }
    let n_bins = ((to - from) / step).ceil();
    (n_bins.is_finite() && n_bins <= MAX_BINS as f64).then_some(n_bins as usize)
}

/// The argument at `idx` as a number: nanoseconds for datetimes and
/// timespans, the value for numbers.
fn number(call: &Invocation<'_>, idx: usize, row: usize) -> Option<f64> {
    match call.arg_types[idx] {
        KqlType::Datetime | KqlType::Timespan => nanos_at(&call.args[idx], row).map(|nanos| nanos as f64),
        _ => real_at(&call.args[idx], row),
    }
}

/// The axis value of bin `bin`: `from + bin * step`, as a datetime text,
/// an integer or a real like the bounds.
fn axis_value(call: &Invocation<'_>, row: usize, bin: usize) -> Option<Json> {
    let bin = bin as i64;
    match call.arg_types[0] {
        KqlType::Datetime => {
            let (from, step) = (nanos_at(&call.args[0], row)?, nanos_at(&call.args[2], row)?);
            Some(Json::String(super::datetime::datetime_text(from + bin * step)))
        }
        _ if [0, 2].iter().all(|&idx| matches!(call.arg_types[idx], KqlType::Int | KqlType::Long)) => {
            let (from, step) = (real_at(&call.args[0], row)? as i64, real_at(&call.args[2], row)? as i64);
            Some(Json::from(from + bin * step))
        }
        _ => {
            let (from, step) = (real_at(&call.args[0], row)?, real_at(&call.args[2], row)?);
            serde_json::Number::from_f64(from + bin as f64 * step).map(Json::Number)
        }
    }
}
