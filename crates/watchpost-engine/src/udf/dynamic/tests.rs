//! `parse_json` and `get_path` over arrays: the fused forms lowering and
//! the optimizer make (`get_path` straight on a string, with a string
//! result) against the unfused chain of kernels and against `serde_json`
//! trees.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};

use super::*;
use crate::udf::convert;
use crate::udf::kernel::Kernel;

fn invoke(kernel: Kernel, args: Vec<ArrayRef>, arg_types: Vec<KqlType>, return_type: KqlType) -> ArrayRef {
    let n_rows = args[0].len();
    kernel(&Invocation { args: &args, arg_types: &arg_types, n_rows, return_type }).unwrap()
}

fn texts(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn cells(array: &ArrayRef) -> Vec<Option<String>> {
    let strings = array.as_string::<i32>();
    (0..strings.len()).map(|row| strings.is_valid(row).then(|| strings.value(row).to_string())).collect()
}

/// One key of a path, repeated for every row.
#[derive(Clone, Copy, Debug)]
enum Key {
    Name(&'static str),
    Index(i64),
    /// A dynamic key: JSON text.
    Dynamic(&'static str),
}

fn key_column(key: Key, n_rows: usize) -> (ArrayRef, KqlType) {
    match key {
        Key::Name(name) => (Arc::new(StringArray::from(vec![name; n_rows])), KqlType::String),
        Key::Index(index) => (Arc::new(Int64Array::from(vec![index; n_rows])), KqlType::Long),
        Key::Dynamic(json) => (Arc::new(StringArray::from(vec![json; n_rows])), KqlType::Dynamic),
    }
}

/// `get_path(source, keys...)` with the given source and return types.
fn path(source: &ArrayRef, source_type: KqlType, keys: &[Key], return_type: KqlType) -> ArrayRef {
    let (mut args, mut arg_types) = (vec![source.clone()], vec![source_type]);
    for key in keys {
        let (column, key_type) = key_column(*key, source.len());
        args.push(column);
        arg_types.push(key_type);
    }
    invoke(get_path, args, arg_types, return_type)
}

/// The value `serde_json` finds: parse (text that is not JSON is a string),
/// then take each step.
fn tree_path(text: &str, keys: &[Key]) -> Option<Json> {
    let mut value = parse_or_string(text);
    for key in keys {
        let key = match key {
            Key::Name(name) => Json::String(name.to_string()),
            Key::Index(index) => Json::from(*index),
            Key::Dynamic(json) => parse_or_string(json),
        };
        value = match (value, key) {
            (Json::Object(mut map), Json::String(name)) => map.remove(&name)?,
            (Json::Array(mut items), Json::Number(number)) => {
                let len = items.len() as i64;
                let index = number.as_i64()?;
                let index = if index < 0 { len + index } else { index };
                if !(0..len).contains(&index) {
                    return None;
                }
                items.swap_remove(index as usize)
            }
            _ => return None,
        };
    }
    Some(value).filter(|json| !json.is_null())
}

const TEXTS: &[Option<&str>] = &[
    Some(r#"{"Device":{"OS":"Windows"},"Authentication":{"Method":"Password"},"RiskLevel":"high"}"#),
    Some(r#"{"a":{"b":[10,"x",{"c":1.50}]},"s":"tab\there","n":-0,"big":18446744073709551616}"#),
    Some(r#" { "a" : { "b" : [ true , null ] } } "#),
    Some(r#"{"a":1,"a":{"b":"last"}}"#),
    Some(r#"{"k\"q":"v","\u00e9":"\u00e9\u0001","esc\/":"\/"}"#),
    Some(r#"{"a":{"b":["\ud83d\ude00"]},"s":"\ud83d\ude00"}"#),
    Some(r#"[{"a":"first"},{"a":"last"}]"#),
    Some(r#""a string""#),
    Some("not json"),
    Some(r#"{"a":{"b":"x"}"#),
    Some(""),
    Some("null"),
    None,
];

const PATHS: &[&[Key]] = &[
    &[Key::Name("RiskLevel")],
    &[Key::Name("Device"), Key::Name("OS")],
    &[Key::Name("Device")],
    &[Key::Name("a")],
    &[Key::Name("a"), Key::Name("b")],
    &[Key::Name("a"), Key::Name("b"), Key::Index(0)],
    &[Key::Name("a"), Key::Name("b"), Key::Index(-1)],
    &[Key::Name("a"), Key::Name("b"), Key::Index(2), Key::Name("c")],
    &[Key::Name("s")],
    &[Key::Name("n")],
    &[Key::Name("big")],
    &[Key::Name("k\"q")],
    &[Key::Name("é")],
    &[Key::Name("esc/")],
    &[Key::Index(-1), Key::Name("a")],
    &[Key::Index(0)],
    &[Key::Dynamic(r#""a""#), Key::Dynamic(r#""b""#)],
    &[Key::Dynamic("[1]")],
    &[Key::Name("missing")],
];

#[test]
fn parse_json_writes_what_serde_json_writes() {
    let source = texts(TEXTS);
    let parsed = invoke(parse_json, vec![source], vec![KqlType::String], KqlType::Dynamic);
    let expected: Vec<Option<String>> = TEXTS
        .iter()
        .map(|text| text.map(parse_or_string).filter(|json| !json.is_null()).map(|json| json.to_string()))
        .collect();
    assert_eq!(cells(&parsed), expected);
}

#[test]
fn parse_json_passes_text_in_the_dynamic_form_through() {
    let canonical = texts(&[Some(r#"{"a":[1,"x"],"b":{"c":true}}"#), None, Some("[]"), Some(r#""s""#)]);
    let parsed = invoke(parse_json, vec![canonical.clone()], vec![KqlType::String], KqlType::Dynamic);
    assert!(Arc::ptr_eq(&parsed, &canonical), "the input array is the result");
    let mixed = texts(&[Some(r#"{"a":1}"#), Some(r#"{"b":1,"a":2}"#), None, Some("null"), Some("x")]);
    let parsed = invoke(parse_json, vec![mixed], vec![KqlType::String], KqlType::Dynamic);
    let expected = [Some(r#"{"a":1}"#), Some(r#"{"a":2,"b":1}"#), None, None, Some(r#""x""#)];
    assert_eq!(cells(&parsed), expected.map(|cell| cell.map(String::from)));
}

#[test]
fn paths_on_text_equal_paths_on_parsed_values() {
    let source = texts(TEXTS);
    let parsed = invoke(parse_json, vec![source.clone()], vec![KqlType::String], KqlType::Dynamic);
    for keys in PATHS {
        let unfused = path(&parsed, KqlType::Dynamic, keys, KqlType::Dynamic);
        let fused = path(&source, KqlType::String, keys, KqlType::Dynamic);
        let expected: Vec<Option<String>> =
            TEXTS.iter().map(|text| text.and_then(|text| tree_path(text, keys)).map(|json| json.to_string())).collect();
        assert_eq!(cells(&unfused), expected, "{keys:?}");
        assert_eq!(cells(&fused), expected, "{keys:?}");
    }
}

#[test]
fn tostring_of_a_path_equals_the_unfused_tostring() {
    let source = texts(TEXTS);
    let parsed = invoke(parse_json, vec![source.clone()], vec![KqlType::String], KqlType::Dynamic);
    for keys in PATHS {
        let value = path(&parsed, KqlType::Dynamic, keys, KqlType::Dynamic);
        let unfused = invoke(convert::to_string, vec![value.clone()], vec![KqlType::Dynamic], KqlType::String);
        let converted = invoke(convert::convert, vec![value], vec![KqlType::Dynamic], KqlType::String);
        let fused_on_dynamic = path(&parsed, KqlType::Dynamic, keys, KqlType::String);
        let fused_on_text = path(&source, KqlType::String, keys, KqlType::String);
        assert_eq!(cells(&fused_on_dynamic), cells(&unfused), "{keys:?}");
        assert_eq!(cells(&fused_on_text), cells(&unfused), "{keys:?}");
        assert_eq!(cells(&converted), cells(&unfused), "{keys:?}");
    }
}

#[test]
fn tostring_of_path_values_follows_kql() {
    let source = texts(&[Some(r#"{"s":"a\"b","n":1.50,"t":true,"o":{"y":1,"x":[2]},"z":null}"#)]);
    let text_of = |name: &'static str| cells(&path(&source, KqlType::String, &[Key::Name(name)], KqlType::String));
    assert_eq!(text_of("s"), [Some("a\"b".to_string())]);
    assert_eq!(text_of("n"), [Some("1.5".to_string())]);
    assert_eq!(text_of("t"), [Some("true".to_string())]);
    assert_eq!(text_of("o"), [Some(r#"{"x":[2],"y":1}"#.to_string())]);
    assert_eq!(text_of("z"), [Some(String::new())]);
    assert_eq!(text_of("missing"), [Some(String::new())]);
}

#[test]
fn null_keys_and_null_sources_give_null() {
    let source = texts(&[Some(r#"{"a":1}"#), None]);
    let names: ArrayRef = Arc::new(StringArray::from(vec![None, Some("a")]));
    let args = vec![source, names];
    let found = invoke(get_path, args.clone(), vec![KqlType::Dynamic, KqlType::String], KqlType::Dynamic);
    assert_eq!(cells(&found), [None, None]);
    let text = invoke(get_path, args, vec![KqlType::Dynamic, KqlType::String], KqlType::String);
    assert_eq!(cells(&text), [Some(String::new()), Some(String::new())]);
}
