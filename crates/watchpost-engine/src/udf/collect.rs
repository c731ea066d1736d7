//! The dynamic results of the collecting aggregates: `make_list` and
//! `make_set` gather values with DataFusion's `array_agg` into an Arrow list,
//! and these kernels turn each list into a KQL dynamic array (JSON text);
//! `make_bag` merges a list of property bags into one bag.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::error::Result;
use serde_json::{Map, Value as Json};

use super::kernel::{dynamics, json_at, long_at, Invocation};

/// The default maximum number of elements of `make_list` and `make_set`, as Kusto's.
pub(crate) const DEFAULT_MAX_SIZE: i64 = 1_048_576;

/// `(list, max size) → dynamic array` of at most that many elements;
/// `arg_types[0]` is the element type.
pub(crate) fn list_to_array(call: &Invocation<'_>) -> Result<ArrayRef> {
    let lists = call.args[0].as_list::<i32>();
    let element_type = call.arg_types[0];
    let values = (0..call.n_rows).map(|row| {
        if lists.is_null(row) {
            return Some(Json::Array(Vec::new()));
        }
        let items = lists.value(row);
        let max_size = long_at(&call.args[1], row).unwrap_or(DEFAULT_MAX_SIZE);
        let n_items = items.len().min(usize::try_from(max_size).unwrap_or(0));
        Some(Json::Array((0..n_items).map(|idx| json_at(&items, element_type, idx)).collect()))
    });
    Ok(dynamics(values.collect::<Vec<_>>()))
}

/// `list of bags → one bag`: later keys win; values that are not bags are
/// skipped, as Kusto's `make_bag` does.
pub(crate) fn list_to_bag(call: &Invocation<'_>) -> Result<ArrayRef> {
    let lists = call.args[0].as_list::<i32>();
    let element_type = call.arg_types[0];
    let values = (0..call.n_rows).map(|row| {
        let mut bag = Map::new();
        if !lists.is_null(row) {
            let items = lists.value(row);
            for idx in 0..items.len() {
                if let Json::Object(object) = json_at(&items, element_type, idx) {
                    bag.extend(object);
                }
            }
        }
        Some(Json::Object(bag))
    });
    Ok(dynamics(values.collect::<Vec<_>>()))
}
