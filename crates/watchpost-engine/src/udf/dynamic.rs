//! Dynamic values: `parse_json`, property access, and the array and
//! property-bag functions. A dynamic value is the compact JSON text of the
//! value in a UTF-8 array (null when the value is null or missing), as
//! `serde_json` writes it.
//!
//! `parse_json` and property paths work on the text with
//! [`json_scan`](super::json_scan): a text already in the dynamic form
//! passes through, and a path is followed without building a tree. Only
//! what the scanner leaves undecided goes through `serde_json`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use serde_json::{Map, Value as Json};
use watchpost_schema::KqlType;

use super::convert::json_to_string;
use super::json_scan::{self, Fault, Kind, Step};
use super::kernel::{dynamics, json_at, long_at, longs, text_at, Invocation};

/// The name of the `parse_json` kernel.
pub(crate) const PARSE_JSON: &str = "parse_json";
/// The name of `get_path` returning a dynamic value.
pub(crate) const GET_PATH: &str = "dynamic_get";
/// The name of `get_path` returning text: `tostring(d.a.b)`.
pub(crate) const GET_PATH_TEXT: &str = "dynamic_get_text";

/// Parses JSON text; text that is not JSON becomes a dynamic string holding
/// it, as `parse_json` of a plain string does.
pub(crate) fn parse_or_string(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string()))
}

/// A dynamic argument's value at `row`; SQL null and JSON null are both
/// `None`.
fn dynamic_at(call: &Invocation<'_>, idx: usize, row: usize) -> Option<Json> {
    Some(json_at(&call.args[idx], call.arg_types[idx], row)).filter(|json| !json.is_null())
}

fn map_rows(call: &Invocation<'_>, each: impl Fn(usize) -> Option<Json>) -> ArrayRef {
    dynamics((0..call.n_rows).map(each))
}

/// `parse_json(text)` / `todynamic(text)`; a dynamic argument passes through.
///
/// A text already in the dynamic form is kept as it is (the input array
/// itself when every row is); other JSON is rewritten in that form, and a
/// text that is not JSON becomes a dynamic string.
pub(crate) fn parse_json(call: &Invocation<'_>) -> Result<ArrayRef> {
    if !matches!(call.arg_types[0], KqlType::String | KqlType::Dynamic) {
        return Ok(map_rows(call, |row| dynamic_at(call, 0, row)));
    }
    let texts = &call.args[0];
    let new_builder = || StringBuilder::with_capacity(call.n_rows, texts.get_array_memory_size());
    // Until a row differs from its input, the input may be the result.
    let mut builder = (texts.data_type() != &DataType::Utf8).then(new_builder);
    let mut out = String::new();
    for row in 0..call.n_rows {
        let Some(text) = text_at(texts, row) else {
            if let Some(builder) = builder.as_mut() {
                builder.append_null();
            }
            continue;
        };
        let parsed = parse_text(text, &mut out);
        if builder.is_none() && parsed != Parsed::Same {
            let mut started = new_builder();
            (0..row).for_each(|earlier| started.append_option(text_at(texts, earlier)));
            builder = Some(started);
        }
        let Some(builder) = builder.as_mut() else { continue };
        match parsed {
            Parsed::Null => builder.append_null(),
            Parsed::Same => builder.append_value(text),
            Parsed::Written => builder.append_value(&out),
        }
    }
    Ok(match builder {
        Some(mut builder) => Arc::new(builder.finish()),
        None => texts.clone(),
    })
}

/// What `parse_json` makes of one text.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// JSON null.
    Null,
    /// The text itself: it is in the dynamic form already.
    Same,
    /// The dynamic text written to the output buffer.
    Written,
}

fn parse_text(text: &str, out: &mut String) -> Parsed {
    out.clear();
    match json_scan::check(text) {
        Ok((Kind::Null, _)) => Parsed::Null,
        Ok((_, true)) => Parsed::Same,
        Err(Fault::Invalid) => {
            json_scan::write_json_string(text, out);
            Parsed::Written
        }
        Ok((_, false)) | Err(Fault::Unsure) => match parse_or_string(text) {
            Json::Null => Parsed::Null,
            json => {
                write!(out, "{json}").expect("writing to a String cannot fail");
                Parsed::Written
            }
        },
    }
}

/// `d.a.b[1]`: follows the keys and indexes in arguments 1.. from the
/// value in argument 0. A missing step gives null; a negative index counts
/// from the end of an array.
///
/// Argument 0 is a dynamic value, or a string read as `parse_json` reads
/// it (which is the same thing: both are JSON text, and text that is not
/// JSON is a string without properties). With a string return type the
/// kernel is `tostring(d.a.b[1])`: a string's characters, other values'
/// JSON text, "" for null.
pub(crate) fn get_path(call: &Invocation<'_>) -> Result<ArrayRef> {
    let as_text = call.return_type == KqlType::String;
    let mut builder = StringBuilder::with_capacity(call.n_rows, call.n_rows * 16);
    let mut path = PathScratch { steps: Vec::with_capacity(call.args.len()), key_buffer: String::new() };
    let mut out = String::new();
    for row in 0..call.n_rows {
        out.clear();
        let found = path_at(call, row, &mut path, &mut out, as_text);
        match (found, as_text) {
            (true, _) => builder.append_value(&out),
            (false, true) => builder.append_value(""),
            (false, false) => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Buffers `get_path` reuses from row to row.
struct PathScratch<'a> {
    steps: Vec<Step<'a>>,
    key_buffer: String,
}

/// Writes the value of the path at `row` to `out` (as text with
/// `as_text`); false when it is null.
fn path_at<'a>(
    call: &'a Invocation<'a>,
    row: usize,
    path: &mut PathScratch<'a>,
    out: &mut String,
    as_text: bool,
) -> bool {
    let scannable = matches!(call.arg_types[0], KqlType::Dynamic | KqlType::String) && call.args.len() > 1;
    if !scannable {
        return write_reference(call, row, out, as_text);
    }
    let Some(text) = text_at(&call.args[0], row) else { return false };
    path.steps.clear();
    for idx in 1..call.args.len() {
        let key = &call.args[idx];
        let step = match call.arg_types[idx] {
            KqlType::Int | KqlType::Long => long_at(key, row).map(Step::Index),
            // A dynamic key is JSON text; serde_json reads it.
            KqlType::Dynamic => return write_reference(call, row, out, as_text),
            _ => text_at(key, row).map(Step::Key),
        };
        let Some(step) = step else { return false };
        path.steps.push(step);
    }
    match json_scan::follow(text, &path.steps, &mut path.key_buffer) {
        Ok(Some(found)) if found.kind != Kind::Null => {
            if as_text {
                json_scan::write_text(text, &found, out);
            } else {
                json_scan::write_dynamic(text, &found, out);
            }
            true
        }
        Ok(_) | Err(Fault::Invalid) => false,
        Err(Fault::Unsure) => write_reference(call, row, out, as_text),
    }
}

/// `get_path` of one row on a `serde_json` tree.
fn write_reference(call: &Invocation<'_>, row: usize, out: &mut String, as_text: bool) -> bool {
    let Some(json) = reference_path(call, row) else { return false };
    if as_text {
        out.push_str(&json_to_string(&json));
    } else {
        write!(out, "{json}").expect("writing to a String cannot fail");
    }
    true
}

fn reference_path(call: &Invocation<'_>, row: usize) -> Option<Json> {
    let mut value = match call.arg_types[0] {
        KqlType::String => text_at(&call.args[0], row).map(parse_or_string).filter(|json| !json.is_null())?,
        _ => dynamic_at(call, 0, row)?,
    };
    for idx in 1..call.args.len() {
        value = step(value, &call.args[idx], call.arg_types[idx], row)?;
    }
    Some(value).filter(|json| !json.is_null())
}

fn step(value: Json, key: &ArrayRef, key_type: KqlType, row: usize) -> Option<Json> {
    let key = match key_type {
        KqlType::Dynamic => json_at(key, key_type, row),
        KqlType::Int | KqlType::Long => Json::from(long_at(key, row)?),
        _ => Json::String(text_at(key, row)?.to_string()),
    };
    match (value, key) {
        (Json::Object(mut map), Json::String(name)) => map.remove(&name),
        (Json::Array(mut items), Json::Number(number)) => {
            let index = number.as_i64()?;
            let len = items.len() as i64;
            let index = if index < 0 { len + index } else { index };
            (0..len).contains(&index).then(|| items.swap_remove(index as usize))
        }
        _ => None,
    }
}

fn array_arg(call: &Invocation<'_>, idx: usize, row: usize) -> Option<Vec<Json>> {
    match dynamic_at(call, idx, row)? {
        Json::Array(items) => Some(items),
        _ => None,
    }
}

/// `array_length(a)`: the number of elements, null for a non-array.
pub(crate) fn array_length(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(longs((0..call.n_rows).map(|row| array_arg(call, 0, row).map(|items| items.len() as i64))))
}

/// `bag_keys(b)`: the keys of a property bag, null for a non-bag.
pub(crate) fn bag_keys(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| match dynamic_at(call, 0, row)? {
        Json::Object(map) => Some(Json::Array(map.into_iter().map(|(key, _)| Json::String(key)).collect())),
        _ => None,
    }))
}

/// `bag_pack(k1, v1, k2, v2, ...)`.
pub(crate) fn bag_pack(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        let mut map = Map::new();
        for pair in (0..call.args.len()).step_by(2) {
            let key = json_to_string(&json_at(&call.args[pair], call.arg_types[pair], row));
            map.insert(key, json_at(&call.args[pair + 1], call.arg_types[pair + 1], row));
        }
        Some(Json::Object(map))
    }))
}

/// `pack_array(v1, v2, ...)`.
pub(crate) fn pack_array(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        Some(Json::Array((0..call.args.len()).map(|idx| json_at(&call.args[idx], call.arg_types[idx], row)).collect()))
    }))
}

/// All array arguments at `row`, or `None` when one is not an array.
fn all_arrays(call: &Invocation<'_>, row: usize) -> Option<Vec<Vec<Json>>> {
    (0..call.args.len()).map(|idx| array_arg(call, idx, row)).collect()
}

/// `array_concat(a1, a2, ...)`.
pub(crate) fn array_concat(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| Some(Json::Array(all_arrays(call, row)?.concat()))))
}

/// `set_union(a1, a2, ...)`: distinct elements, in order of first
/// appearance.
pub(crate) fn set_union(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| Some(Json::Array(distinct(all_arrays(call, row)?.concat())))))
}

/// `set_intersect(a1, a2, ...)`: distinct elements of `a1` found in every
/// other array.
pub(crate) fn set_intersect(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        let arrays = all_arrays(call, row)?;
        let others: Vec<HashSet<String>> = arrays[1..].iter().map(|items| key_set(items)).collect();
        let kept = arrays[0].iter().filter(|item| others.iter().all(|set| set.contains(&item.to_string())));
        Some(Json::Array(distinct(kept.cloned().collect())))
    }))
}

/// `set_difference(a1, a2, ...)`: distinct elements of `a1` found in no
/// other array.
pub(crate) fn set_difference(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        let arrays = all_arrays(call, row)?;
        let others: Vec<HashSet<String>> = arrays[1..].iter().map(|items| key_set(items)).collect();
        let kept = arrays[0].iter().filter(|item| !others.iter().any(|set| set.contains(&item.to_string())));
        Some(Json::Array(distinct(kept.cloned().collect())))
    }))
}

fn key_set(items: &[Json]) -> HashSet<String> {
    items.iter().map(Json::to_string).collect()
}

fn distinct(items: Vec<Json>) -> Vec<Json> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|item| seen.insert(item.to_string())).collect()
}

/// `array_slice(a, start, end)`: elements `start..=end`; negative positions
/// count from the end, positions past either end are clipped.
pub(crate) fn array_slice(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        let items = array_arg(call, 0, row)?;
        let len = items.len() as i64;
        let resolve = |position: i64| if position < 0 { len + position } else { position };
        let start = resolve(long_at(&call.args[1], row)?).max(0);
        let end = resolve(long_at(&call.args[2], row)?).min(len - 1);
        if start > end {
            return Some(Json::Array(Vec::new()));
        }
        Some(Json::Array(items[start as usize..=end as usize].to_vec()))
    }))
}

/// `array_sort_asc(a [, nulls_last])`.
pub(crate) fn array_sort_asc(call: &Invocation<'_>) -> Result<ArrayRef> {
    sort(call, false)
}

/// `array_sort_desc(a [, nulls_last])`.
pub(crate) fn array_sort_desc(call: &Invocation<'_>) -> Result<ArrayRef> {
    sort(call, true)
}

fn sort(call: &Invocation<'_>, descending: bool) -> Result<ArrayRef> {
    Ok(map_rows(call, |row| {
        let items = array_arg(call, 0, row)?;
        let nulls_last = match call.args.get(1) {
            Some(flag) => json_at(flag, call.arg_types[1], row).as_bool().unwrap_or(true),
            None => true,
        };
        let (mut nulls, mut values): (Vec<Json>, Vec<Json>) = items.into_iter().partition(Json::is_null);
        values.sort_by(|a, b| if descending { compare(b, a) } else { compare(a, b) });
        if nulls_last {
            values.append(&mut nulls);
            return Some(Json::Array(values));
        }
        nulls.append(&mut values);
        Some(Json::Array(nulls))
    }))
}

/// Orders JSON values: booleans, then numbers, then strings, then the rest
/// by their text.
fn compare(a: &Json, b: &Json) -> Ordering {
    let rank = |json: &Json| match json {
        Json::Null => 0,
        Json::Bool(_) => 1,
        Json::Number(_) => 2,
        Json::String(_) => 3,
        _ => 4,
    };
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)).then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// `array_index_of(a, value)`: the first position of `value`, -1 when
/// absent, null for a non-array.
pub(crate) fn array_index_of(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(longs((0..call.n_rows).map(|row| {
        let items = array_arg(call, 0, row)?;
        let wanted = json_at(&call.args[1], call.arg_types[1], row);
        let position = items.iter().position(|item| compare(item, &wanted) == Ordering::Equal && item == &wanted);
        let position = position.or_else(|| items.iter().position(|item| same_number(item, &wanted)));
        Some(position.map_or(-1, |idx| idx as i64))
    })))
}

fn same_number(a: &Json, b: &Json) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// `set_has_element(a, value)`: whether the array holds `value` (numbers
/// compare by value), null for a non-array.
pub(crate) fn set_has_element(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(super::kernel::bools((0..call.n_rows).map(|row| {
        let items = array_arg(call, 0, row)?;
        let wanted = json_at(&call.args[1], call.arg_types[1], row);
        Some(items.iter().any(|item| item == &wanted || same_number(item, &wanted)))
    })))
}

/// `strcat_array(a, delimiter)`: the elements as text, joined; null for a
/// non-array.
pub(crate) fn strcat_array(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(super::kernel::strings((0..call.n_rows).map(|row| {
        let items = array_arg(call, 0, row)?;
        let delimiter = text_at(&call.args[1], row).unwrap_or_default();
        let texts: Vec<String> = items.iter().map(json_to_string).collect();
        Some(texts.join(delimiter))
    })))
}

#[cfg(test)]
mod tests;
