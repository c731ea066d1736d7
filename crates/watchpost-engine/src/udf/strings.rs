//! String functions DataFusion has no equivalent for: regex extraction and
//! replacement with Kusto's rewrite syntax, `split` into a dynamic array,
//! `indexof`, `countof`, regex `trim`, `strrep`, base64 and hashes.

use base64::Engine as _;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::error::{DataFusionError, Result};
use regex::{Captures, Regex};
use serde_json::Value as Json;
use sha2::Digest as _;

use super::kernel::{broadcast_row, dynamics, json_at, long_at, longs, strings, text_at, Invocation};

/// The last compiled pattern, so a constant regex compiles once per batch.
#[derive(Default)]
struct RegexCache {
    /// The pattern, its regex, and capture slots for it.
    last: Option<(String, Regex, regex::CaptureLocations)>,
}

impl RegexCache {
    fn get(&mut self, pattern: &str) -> Result<&Regex> {
        Ok(self.get_with_slots(pattern)?.0)
    }

    /// The regex and reusable capture slots of `pattern`.
    fn get_with_slots(&mut self, pattern: &str) -> Result<(&Regex, &mut regex::CaptureLocations)> {
        let stale = self.last.as_ref().is_none_or(|(text, _, _)| text != pattern);
        if stale {
            let regex = Regex::new(pattern)
                .map_err(|err| DataFusionError::Execution(format!("invalid regular expression '{pattern}': {err}")))?;
            let slots = regex.capture_locations();
            self.last = Some((pattern.to_string(), regex, slots));
        }
        let (_, regex, slots) = self.last.as_mut().expect("just filled");
        Ok((regex, slots))
    }
}

/// The text of argument `idx` at `row`, constant arguments passed as
/// one-row arrays included (see `BROADCAST_KERNELS`).
fn text<'a>(call: &'a Invocation<'_>, idx: usize, row: usize) -> Option<&'a str> {
    let array = &call.args[idx];
    text_at(array, broadcast_row(array, row))
}

/// `split(source, delimiter [, index])`: the parts, empty ones kept; with an
/// index, an array holding only that part (empty when out of range).
pub(crate) fn split(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(dynamics((0..call.n_rows).map(|row| {
        let (source, delimiter) = (text(call, 0, row)?, text(call, 1, row)?);
        let parts: Vec<Json> = if delimiter.is_empty() {
            vec![Json::String(source.to_string())]
        } else {
            source.split(delimiter).map(|part| Json::String(part.to_string())).collect()
        };
        let Some(index) = call.args.get(2) else {
            return Some(Json::Array(parts));
        };
        let index = long_at(index, row)?;
        let picked = usize::try_from(index).ok().and_then(|index| parts.get(index).cloned());
        Some(Json::Array(picked.into_iter().collect()))
    })))
}

/// `replace_regex(source, regex, rewrite)`: `\N` and `$N` in the rewrite
/// stand for capture group N (`\0` is the whole match).
pub(crate) fn replace_regex(call: &Invocation<'_>) -> Result<ArrayRef> {
    let mut cache = RegexCache::default();
    let mut out = Vec::with_capacity(call.n_rows);
    for row in 0..call.n_rows {
        let (Some(source), Some(pattern), Some(rewrite)) = (text(call, 0, row), text(call, 1, row), text(call, 2, row))
        else {
            out.push(None);
            continue;
        };
        let regex = cache.get(pattern)?;
        out.push(Some(regex.replace_all(source, |caps: &Captures<'_>| expand(rewrite, caps)).into_owned()));
    }
    Ok(strings(out))
}

fn expand(rewrite: &str, caps: &Captures<'_>) -> String {
    let mut out = String::with_capacity(rewrite.len());
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        let group = match (c, chars.peek()) {
            ('\\' | '$', Some(next)) if next.is_ascii_digit() => next.to_digit(10),
            _ => None,
        };
        match group {
            Some(group) => {
                chars.next();
                out.push_str(caps.get(group as usize).map_or("", |found| found.as_str()));
            }
            None => out.push(c),
        }
    }
    out
}

/// `extract(regex, group, source [, typeof(T)])`: the text of capture
/// group `group` of the first match, null when nothing matches. Lowering
/// converts the text to `T`.
///
/// The pattern and group are usually constants, passed as one-row arrays
/// (`BROADCAST_KERNELS`); the match is found with the cached pattern's
/// reused capture slots and copied straight into the result.
pub(crate) fn extract(call: &Invocation<'_>) -> Result<ArrayRef> {
    let groups = &call.args[1];
    let mut cache = RegexCache::default();
    let mut out = StringBuilder::with_capacity(call.n_rows, 0);
    for row in 0..call.n_rows {
        let (Some(pattern), Some(group), Some(source)) =
            (text(call, 0, row), long_at(groups, broadcast_row(groups, row)), text(call, 2, row))
        else {
            out.append_null();
            continue;
        };
        let (regex, locations) = cache.get_with_slots(pattern)?;
        let found = usize::try_from(group)
            .ok()
            .and_then(|group| regex.captures_read(locations, source).and_then(|_| locations.get(group)));
        match found {
            Some((start, end)) => out.append_value(&source[start..end]),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `extract_all(regex, [groups,] source)`: every match's capture groups;
/// one selected group gives an array of strings, several an array of
/// arrays. No match gives null.
pub(crate) fn extract_all(call: &Invocation<'_>) -> Result<ArrayRef> {
    let source_idx = call.args.len() - 1;
    let mut cache = RegexCache::default();
    let mut out = Vec::with_capacity(call.n_rows);
    for row in 0..call.n_rows {
        let (Some(pattern), Some(source)) = (text(call, 0, row), text(call, source_idx, row)) else {
            out.push(None);
            continue;
        };
        let regex = cache.get(pattern)?;
        let groups: Vec<usize> = match call.args.len() {
            3 => match json_at(&call.args[1], call.arg_types[1], broadcast_row(&call.args[1], row)) {
                Json::Array(items) => items.iter().filter_map(|item| item.as_u64()).map(|g| g as usize).collect(),
                _ => Vec::new(),
            },
            _ if regex.captures_len() > 1 => (1..regex.captures_len()).collect(),
            _ => vec![0],
        };
        let group_text = |caps: &Captures<'_>, group: usize| {
            caps.get(group).map_or(Json::String(String::new()), |found| Json::String(found.as_str().to_string()))
        };
        let matches: Vec<Json> = regex
            .captures_iter(source)
            .map(|caps| match groups.as_slice() {
                [single] => group_text(&caps, *single),
                many => Json::Array(many.iter().map(|group| group_text(&caps, *group)).collect()),
            })
            .collect();
        out.push((!matches.is_empty()).then_some(Json::Array(matches)));
    }
    Ok(dynamics(out))
}

/// `indexof(source, lookup [, start [, length [, occurrence]]])`: the
/// character position of the `occurrence`-th match at or after `start`
/// within `length` characters, -1 when absent.
pub(crate) fn indexof(call: &Invocation<'_>) -> Result<ArrayRef> {
    let optional = |idx: usize, row: usize, default: i64| match call.args.get(idx) {
        Some(array) => long_at(array, row),
        None => Some(default),
    };
    Ok(longs((0..call.n_rows).map(|row| {
        let (source, lookup) = (text(call, 0, row)?, text(call, 1, row)?);
        let (start, length, occurrence) = (optional(2, row, 0)?, optional(3, row, -1)?, optional(4, row, 1)?);
        if start < 0 || occurrence < 1 {
            return None;
        }
        let chars: Vec<char> = source.chars().collect();
        if start as usize > chars.len() {
            return Some(-1);
        }
        let end = if length < 0 { chars.len() } else { (start as usize + length as usize).min(chars.len()) };
        let window: String = chars[start as usize..end].iter().collect();
        let lookup_chars = lookup.chars().count();
        let mut from = 0;
        let mut seen = 0;
        while let Some(found) = window[from..].find(lookup) {
            let byte_idx = from + found;
            seen += 1;
            if seen == occurrence {
                return Some(start + window[..byte_idx].chars().count() as i64);
            }
            from = byte_idx + window[byte_idx..].chars().next().map_or(1, char::len_utf8);
            if lookup_chars == 0 && from > window.len() {
                break;
            }
        }
        Some(-1)
    })))
}

/// `countof(source, search [, kind])`: "normal" counts overlapping
/// occurrences of the text, "regex" counts regex matches.
pub(crate) fn countof(call: &Invocation<'_>) -> Result<ArrayRef> {
    let mut cache = RegexCache::default();
    let mut out = Vec::with_capacity(call.n_rows);
    for row in 0..call.n_rows {
        let (Some(source), Some(search)) = (text(call, 0, row), text(call, 1, row)) else {
            out.push(None);
            continue;
        };
        let kind = call.args.get(2).and_then(|kind| text_at(kind, row)).unwrap_or("normal");
        let count = if kind.eq_ignore_ascii_case("regex") {
            cache.get(search)?.find_iter(source).count()
        } else if search.is_empty() {
            0
        } else {
            (0..source.len()).filter(|idx| source.is_char_boundary(*idx) && source[*idx..].starts_with(search)).count()
        };
        out.push(Some(count as i64));
    }
    Ok(longs(out))
}

/// `trim(regex, source)`, `trim_start`, `trim_end`: removes leading and/or
/// trailing matches of the regex.
pub(crate) fn trim(call: &Invocation<'_>) -> Result<ArrayRef> {
    trim_with(call, true, true)
}

pub(crate) fn trim_start(call: &Invocation<'_>) -> Result<ArrayRef> {
    trim_with(call, true, false)
}

pub(crate) fn trim_end(call: &Invocation<'_>) -> Result<ArrayRef> {
    trim_with(call, false, true)
}

fn trim_with(call: &Invocation<'_>, start: bool, end: bool) -> Result<ArrayRef> {
    let (mut leading, mut trailing) = (RegexCache::default(), RegexCache::default());
    let mut out = Vec::with_capacity(call.n_rows);
    for row in 0..call.n_rows {
        let (Some(pattern), Some(source)) = (text(call, 0, row), text(call, 1, row)) else {
            out.push(None);
            continue;
        };
        let mut trimmed = source.to_string();
        if start {
            trimmed = leading.get(&format!("^(?:{pattern})+"))?.replace(&trimmed, "").into_owned();
        }
        if end {
            trimmed = trailing.get(&format!("(?:{pattern})+$"))?.replace(&trimmed, "").into_owned();
        }
        out.push(Some(trimmed));
    }
    Ok(strings(out))
}

/// `strrep(value, multiplier [, delimiter])`.
pub(crate) fn strrep(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(strings((0..call.n_rows).map(|row| {
        let value = text(call, 0, row)?;
        let times = long_at(&call.args[1], row)?.clamp(0, 1024) as usize;
        let delimiter = call.args.get(2).and_then(|array| text_at(array, row)).unwrap_or("");
        Some(vec![value; times].join(delimiter))
    })))
}

/// `base64_encode_tostring(text)`: base64 of the UTF-8 bytes.
pub(crate) fn base64_encode(call: &Invocation<'_>) -> Result<ArrayRef> {
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(strings((0..call.n_rows).map(|row| text(call, 0, row).map(|value| engine.encode(value)))))
}

/// `base64_decode_tostring(text)`: null when the text is not base64 of
/// UTF-8.
pub(crate) fn base64_decode(call: &Invocation<'_>) -> Result<ArrayRef> {
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(strings((0..call.n_rows).map(|row| {
        let bytes = engine.decode(text(call, 0, row)?.trim()).ok()?;
        String::from_utf8(bytes).ok()
    })))
}

/// `hash_sha256(value)`, lower-case hex of the UTF-8 text of the value.
pub(crate) fn hash_sha256(call: &Invocation<'_>) -> Result<ArrayRef> {
    hash_with(call, |bytes| hex(&sha2::Sha256::digest(bytes)))
}

pub(crate) fn hash_sha1(call: &Invocation<'_>) -> Result<ArrayRef> {
    hash_with(call, |bytes| hex(&sha1::Sha1::digest(bytes)))
}

pub(crate) fn hash_md5(call: &Invocation<'_>) -> Result<ArrayRef> {
    hash_with(call, |bytes| hex(&md5::Md5::digest(bytes)))
}

fn hash_with(call: &Invocation<'_>, digest: fn(&[u8]) -> String) -> Result<ArrayRef> {
    Ok(strings((0..call.n_rows).map(|row| text(call, 0, row).map(|value| digest(value.as_bytes())))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `url_decode(text)`: `%XX` escapes become bytes and `+` a space; a `%`
/// not followed by two hex digits stays as written. Bytes that are not
/// UTF-8 become U+FFFD.
pub(crate) fn url_decode(call: &Invocation<'_>) -> Result<ArrayRef> {
    Ok(strings((0..call.n_rows).map(|row| text_at(&call.args[0], row).map(percent_decode))))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let escaped = (bytes[idx] == b'%')
            .then(|| bytes.get(idx + 1..idx + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[idx], escaped) {
            (_, Some(byte)) => {
                decoded.push(byte);
                idx += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                idx += 1;
            }
            (byte, None) => {
                decoded.push(byte);
                idx += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::expand;

    #[test]
    fn rewrite_references_groups_both_ways() {
        let regex = Regex::new(r"(\d+)-(\d+)").unwrap();
        let caps = regex.captures("12-34").unwrap();
        assert_eq!(expand(r"\2/\1", &caps), "34/12");
        assert_eq!(expand("$2:$1 costs $", &caps), "34:12 costs $");
    }
}
