//! `percentile()` by nearest rank: the values of a group are collected with
//! `array_agg`, and this kernel picks, from each sorted list, the smallest
//! value with at least `p` percent of the values at or below it.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::{cast, sort_to_indices, take};
use datafusion::error::Result;

use super::kernel::{real_at, Invocation};

/// `(list of values, percent) → value`.
pub(crate) fn nearest_rank(call: &Invocation<'_>) -> Result<ArrayRef> {
    let target = call.return_type.arrow_type();
    let Some(lists) = call.args[0].as_list_opt::<i32>() else {
        return Ok(new_null_array(&target, call.n_rows));
    };
    let offsets = lists.value_offsets();
    let mut picks = Vec::with_capacity(call.n_rows);
    for (row, &offset) in offsets.iter().enumerate().take(call.n_rows) {
        let n_values = if lists.is_null(row) { 0 } else { lists.value_length(row) as usize };
        let percent = real_at(&call.args[1], row).unwrap_or(50.0);
        if n_values == 0 {
            picks.push(None);
            continue;
        }
        let rank = ((percent / 100.0) * n_values as f64).ceil().clamp(1.0, n_values as f64) as usize;
        let sorted = sort_to_indices(&lists.value(row), None, None)?;
        picks.push(Some(offset as u32 + sorted.value(rank - 1)));
    }
    let picked = take(lists.values().as_ref(), &UInt32Array::from(picks), None)?;
    if picked.data_type() == &target {
        return Ok(picked);
    }
    Ok(Arc::new(cast(&picked, &target)?))
}
