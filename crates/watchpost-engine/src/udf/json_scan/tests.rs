//! The scanner against `serde_json`, which defines what a dynamic value's
//! text means: every answer the scanner gives must be the one a
//! `serde_json::Value` tree gives.

use serde_json::Value as Json;

use super::*;

/// What following `steps` gives on a `serde_json` tree: the value's JSON
/// text, or `None` for a missing value, JSON null or a text that is not
/// JSON.
fn reference(text: &str, steps: &[Step<'_>]) -> Option<Json> {
    let mut value = serde_json::from_str::<Json>(text).ok()?;
    for step in steps {
        value = match (value, step) {
            (Json::Object(mut map), Step::Key(key)) => map.remove(*key)?,
            (Json::Array(mut items), Step::Index(index)) => {
                let len = items.len() as i64;
                let position = if *index < 0 { len + index } else { *index };
                if !(0..len).contains(&position) {
                    return None;
                }
                items.swap_remove(position as usize)
            }
            _ => return None,
        };
    }
    Some(value).filter(|json| !json.is_null())
}

/// Follows `steps` with the scanner; returns the dynamic text and the
/// `tostring()` text, `None` for null, or the fault.
fn scanned(text: &str, steps: &[Step<'_>]) -> Result<Option<(String, String)>, Fault> {
    let mut key_buffer = String::new();
    let found = match follow(text, steps, &mut key_buffer) {
        Ok(Some(found)) if found.kind != Kind::Null => found,
        Ok(_) | Err(Fault::Invalid) => return Ok(None),
        Err(Fault::Unsure) => return Err(Fault::Unsure),
    };
    let (mut dynamic, mut plain) = (String::new(), String::new());
    write_dynamic(text, &found, &mut dynamic);
    write_text(text, &found, &mut plain);
    Ok(Some((dynamic, plain)))
}

fn text_of(json: &Json) -> String {
    match json {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Asserts the scanner agrees with `serde_json` on `text` and `steps`.
fn assert_agrees(text: &str, steps: &[Step<'_>]) {
    let expected = reference(text, steps).map(|json| (json.to_string(), text_of(&json)));
    match scanned(text, steps) {
        Ok(actual) => assert_eq!(actual, expected, "{text} {steps:?}"),
        Err(fault) => panic!("{text} {steps:?}: {fault:?}"),
    }
}

const DOCUMENTS: &[&str] = &[
    r#"{"Device":{"OS":"Windows","TrustType":"AzureAd","IsCompliant":true},"Authentication":{"Method":"Password"},"RiskLevel":"high"}"#,
    r#" { "a" : { "b" : [ 10 , 20 , { "c" : "deep" } ] } , "s" : "x" } "#,
    "{\n\t\"a\":\r\n{\"b\":[1,2,3]}}",
    r#"{"a":1,"a":{"b":2}}"#,
    r#"{"a":{"b":2},"a":3}"#,
    r#"{"a":{"b":2},"a":null}"#,
    r#"{"k\"q":"v1","k\\b":"v2","k\u0041":"v3","k\/s":"v4","é":"v5","\u00e9t\u00E9":"v6"}"#,
    r#"{"s":"line\nbreak\ttab \"quoted\" back\\slash \/ \u0001 \u001F \u00e9 é 日本"}"#,
    r#"{"n":[0,-1,1.5,-0,-0.0,1e3,1E-2,2.50,12345678901234567890,123456789012345678901,-9223372036854775808,-9223372036854775809,1.0e400]}"#,
    r#"{"n":[0,-1,1.5,1e3,18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809]}"#,
    r#"{"b":[true,false,null],"o":{},"e":[],"z":{"y":1,"x":[{"w":null}]}}"#,
    r#"{"arr":[[1,[2,[3]]],"x",{"a":[4,5]}]}"#,
    r#"[1,{"a":"first"},[2,3],"last"]"#,
    r#""just a string""#,
    "42",
    "null",
    "",
    "   ",
    "not json",
    r#"{"a":1"#,
    r#"{"a":1,}"#,
    r#"{"a":[1,2,]}"#,
    r#"{"a":01}"#,
    r#"{"a":1.}"#,
    r#"{"a":.5}"#,
    r#"{"a":+1}"#,
    r#"{"a":1e}"#,
    r#"{"a":tru}"#,
    r#"{"a":"x"} trailing"#,
    r#"{"a":"bad \x escape"}"#,
    r#"{"a":"\u12G4"}"#,
    "{\"a\":\"raw\ncontrol\"}",
    r#"{"a" 1}"#,
    r#"{a:1}"#,
    r#"{"a":1}{"a":2}"#,
    r#"{"a":NaN}"#,
    r#"{"a":1e400,"b":"found"}"#,
    r#"{"b":"found","a":-1e400}"#,
    r#"{"b":"found","a":[1,2"#,
];

const PATHS: &[&[Step<'static>]] = &[
    &[Step::Key("RiskLevel")],
    &[Step::Key("Device"), Step::Key("OS")],
    &[Step::Key("Device")],
    &[Step::Key("Authentication"), Step::Key("Missing")],
    &[Step::Key("a")],
    &[Step::Key("a"), Step::Key("b")],
    &[Step::Key("a"), Step::Key("b"), Step::Index(0)],
    &[Step::Key("a"), Step::Key("b"), Step::Index(2), Step::Key("c")],
    &[Step::Key("a"), Step::Key("b"), Step::Index(-1)],
    &[Step::Key("a"), Step::Key("b"), Step::Index(-3)],
    &[Step::Key("a"), Step::Key("b"), Step::Index(-4)],
    &[Step::Key("a"), Step::Key("b"), Step::Index(3)],
    &[Step::Key("a"), Step::Index(0)],
    &[Step::Key("s")],
    &[Step::Key("b")],
    &[Step::Key("b"), Step::Index(2)],
    &[Step::Key("o")],
    &[Step::Key("e")],
    &[Step::Key("z")],
    &[Step::Key("z"), Step::Key("x"), Step::Index(0), Step::Key("w")],
    &[Step::Key("k\"q")],
    &[Step::Key("k\\b")],
    &[Step::Key("kA")],
    &[Step::Key("k/s")],
    &[Step::Key("é")],
    &[Step::Key("été")],
    &[Step::Key("n"), Step::Index(0)],
    &[Step::Key("arr"), Step::Index(0), Step::Index(1), Step::Index(-1), Step::Index(0)],
    &[Step::Key("arr"), Step::Index(-1), Step::Key("a"), Step::Index(-1)],
    &[Step::Key("arr"), Step::Key("a")],
    &[Step::Index(0)],
    &[Step::Index(1), Step::Key("a")],
    &[Step::Index(-1)],
    &[Step::Index(-2), Step::Index(-1)],
    &[Step::Index(4)],
];

#[test]
fn follows_paths_as_serde_json_trees_do() {
    let mut n_found = 0;
    for text in DOCUMENTS {
        for steps in PATHS {
            assert_agrees(text, steps);
            n_found += usize::from(reference(text, steps).is_some());
        }
    }
    assert!(n_found > 30, "only {n_found} paths lead somewhere");
}

/// A small deterministic generator of JSON-like texts: random documents
/// with random spacing, then single-byte mutations of them.
struct Generator(u64);

impl Generator {
    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len())]
    }

    fn space(&mut self, out: &mut String) {
        out.push_str(self.pick(&["", "", "", " ", "\n ", "\t"]));
    }

    fn value(&mut self, depth: usize, out: &mut String) {
        self.space(out);
        match self.next(if depth > 3 { 3 } else { 6 }) {
            0 => {
                out.push_str(self.pick(&["0", "-1", "7", "1.5", "-0", "2.50", "1e2", "18446744073709551616", "1e400"]))
            }
            1 => out.push_str(self.pick(&[r#""v""#, r#""a\"b""#, r#""\u00e9\n""#, r#""\/""#, r#""日本""#, r#""""#])),
            2 => out.push_str(self.pick(&["true", "false", "null"])),
            3 | 4 => {
                out.push('{');
                for member in 0..self.next(4) {
                    if member > 0 {
                        out.push(',');
                    }
                    self.space(out);
                    out.push_str(self.pick(&[r#""a""#, r#""b""#, r#""c""#, r#""\u0061""#, r#""a\"""#]));
                    self.space(out);
                    out.push(':');
                    self.value(depth + 1, out);
                }
                self.space(out);
                out.push('}');
            }
            _ => {
                out.push('[');
                for element in 0..self.next(4) {
                    if element > 0 {
                        out.push(',');
                    }
                    self.value(depth + 1, out);
                }
                out.push(']');
            }
        }
        self.space(out);
    }

    fn mutate(&mut self, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        if bytes.is_empty() {
            return String::new();
        }
        let at = self.next(bytes.len());
        let noise = br#"{}[],:\"0-e. "#;
        match self.next(3) {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, noise[self.next(noise.len())]),
            _ => bytes[at] = noise[self.next(noise.len())],
        }
        String::from_utf8(bytes).unwrap_or_default()
    }
}

#[test]
fn agrees_with_serde_json_on_generated_texts() {
    let paths: &[&[Step<'static>]] = &[
        &[Step::Key("a")],
        &[Step::Key("a"), Step::Key("b")],
        &[Step::Key("a\"")],
        &[Step::Key("b"), Step::Index(0)],
        &[Step::Key("c"), Step::Index(-1)],
        &[Step::Index(1)],
        &[Step::Index(-2), Step::Key("a")],
    ];
    let mut generator = Generator(0x9e37_79b9_7f4a_7c15);
    let (mut n_found, mut n_invalid) = (0, 0);
    for _ in 0..4000 {
        let mut text = String::new();
        generator.value(0, &mut text);
        let mutated = generator.mutate(&text);
        for candidate in [text.as_str(), mutated.as_str()] {
            let parsed = serde_json::from_str::<Json>(candidate);
            n_invalid += usize::from(parsed.is_err());
            match check(candidate) {
                Ok((_, true)) => assert_eq!(parsed.unwrap().to_string(), candidate),
                Ok(_) => assert!(parsed.is_ok(), "{candidate}"),
                Err(fault) => assert!(parsed.is_err(), "{candidate}: {fault:?}"),
            }
            for steps in paths {
                assert_agrees(candidate, steps);
                n_found += usize::from(reference(candidate, steps).is_some());
            }
        }
    }
    assert!(n_found > 1000 && n_invalid > 1000, "found {n_found}, invalid {n_invalid}");
}

#[test]
fn numbers_are_written_as_serde_json_writes_them() {
    let text = r#"{"n":[0,-1,1.5,-0,-0.0,1e3,1E-2,2.50,12345678901234567890,123456789012345678901,-9223372036854775808,-9223372036854775809,18446744073709551615,18446744073709551616,0.1e1,5e-324,1.7976931348623157e308]}"#;
    for index in 0..17 {
        assert_agrees(text, &[Step::Key("n"), Step::Index(index)]);
    }
}

#[test]
fn escapes_in_keys_and_values_are_decoded() {
    let text = r#"{"k\"q":"a\"b","k\u0041":"\u00e9\n","plain":"x\/y"}"#;
    let found = scanned(text, &[Step::Key("k\"q")]).unwrap().unwrap();
    assert_eq!(found, (r#""a\"b""#.to_string(), "a\"b".to_string()));
    let found = scanned(text, &[Step::Key("kA")]).unwrap().unwrap();
    assert_eq!(found, ("\"é\\n\"".to_string(), "é\n".to_string()));
    let found = scanned(text, &[Step::Key("plain")]).unwrap().unwrap();
    assert_eq!(found, (r#""x/y""#.to_string(), "x/y".to_string()));
}

#[test]
fn the_last_duplicate_key_wins() {
    assert_eq!(scanned(r#"{"a":1,"a":2}"#, &[Step::Key("a")]), Ok(Some(("2".into(), "2".into()))));
    assert_eq!(scanned(r#"{"a":{"b":1},"a":{}}"#, &[Step::Key("a"), Step::Key("b")]), Ok(None));
    assert_eq!(
        scanned(r#"{"a":1,"a":{"b":"x"}}"#, &[Step::Key("a"), Step::Key("b")]),
        Ok(Some((r#""x""#.into(), "x".into())))
    );
}

#[test]
fn found_objects_are_written_in_the_dynamic_form() {
    let text = r#"{"o": {"b": 1, "a": [1.50, "x"], "b": 2}}"#;
    let found = scanned(text, &[Step::Key("o")]).unwrap().unwrap();
    assert_eq!(found.0, r#"{"a":[1.5,"x"],"b":2}"#);
    assert_eq!(found.1, found.0);
}

#[test]
fn a_malformed_text_gives_null_even_after_the_value() {
    for text in [r#"{"a":"found","b":"#, r#"{"a":"found"} x"#, r#"{"a":"found","a":1e999}"#] {
        assert_eq!(scanned(text, &[Step::Key("a")]), Ok(None), "{text}");
    }
}

#[test]
fn surrogate_escapes_and_deep_nesting_are_left_to_serde_json() {
    assert_eq!(scanned(r#"{"a":"\ud83d\ude00"}"#, &[Step::Key("a")]), Err(Fault::Unsure));
    assert_eq!(scanned(r#"{"b":"\udc00","a":1}"#, &[Step::Key("a")]), Err(Fault::Unsure));
    let deep = format!("{{\"a\":1,\"b\":{}{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert_eq!(scanned(&deep, &[Step::Key("a")]), Err(Fault::Unsure));
    let shallow = format!("{{\"a\":1,\"b\":{}{}}}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
    assert_eq!(scanned(&shallow, &[Step::Key("a")]), Ok(Some(("1".into(), "1".into()))));
}

#[test]
fn check_accepts_what_serde_json_accepts() {
    for text in DOCUMENTS {
        let parsed = serde_json::from_str::<Json>(text);
        match check(text) {
            Ok((_, canonical)) => {
                let json = parsed.unwrap_or_else(|err| panic!("{text}: serde_json refuses it: {err}"));
                if canonical {
                    assert_eq!(json.to_string(), *text);
                }
            }
            Err(Fault::Invalid) => assert!(parsed.is_err(), "{text}: serde_json accepts it"),
            Err(Fault::Unsure) => panic!("{text}: unsure"),
        }
    }
}

#[test]
fn check_knows_the_dynamic_form() {
    let canonical = [
        r#"{"Authentication":{"Method":"Password"},"Device":{"OS":"Windows"},"RiskLevel":"high"}"#,
        r#"{"a":[1,-2,1.5,true,null,"x\"\\\n\u0001"],"b":{}}"#,
        r#""text""#,
        "18446744073709551615",
        "[]",
    ];
    for text in canonical {
        assert_eq!(check(text), Ok((check(text).unwrap().0, true)), "{text}");
        assert_eq!(serde_json::from_str::<Json>(text).unwrap().to_string(), text);
    }
    let not_canonical = [
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"a": 1}"#,
        " 1",
        "1.50",
        "-0",
        "1e3",
        "18446744073709551616",
        r#""\/""#,
        r#""\u0041""#,
        r#""\u001F""#,
        r#""\u000a""#,
    ];
    for text in not_canonical {
        assert_eq!(check(text).map(|(_, canonical)| canonical), Ok(false), "{text}");
    }
    assert_eq!(check("null"), Ok((Kind::Null, true)));
    assert_eq!(check(" [1, 2] "), Ok((Kind::Array, false)));
}

#[test]
fn nesting_depth_follows_serde_json() {
    // Within the scanner's own limit the scanner decides, beyond it
    // serde_json does; both agree up to there.
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(check(&nested(MAX_DEPTH)).is_ok());
    assert!(serde_json::from_str::<Json>(&nested(MAX_DEPTH)).is_ok());
    assert_eq!(check(&nested(MAX_DEPTH + 1)), Err(Fault::Unsure));
}

#[test]
fn json_strings_are_escaped_as_serde_json_escapes_them() {
    let mut text: String = (0u8..0x80).map(char::from).collect();
    text.push_str("é日本\u{2028}😀");
    let mut written = String::new();
    write_json_string(&text, &mut written);
    assert_eq!(written, serde_json::to_string(&text).unwrap());
}

#[test]
fn plain_runs_stop_at_quotes_backslashes_and_control_bytes() {
    let text = "abcdefghijklmnop\"";
    for (offset, stop) in [(0, 16), (3, 16), (16, 16)] {
        assert_eq!(plain_run_end(text.as_bytes(), offset), stop);
    }
    for special in ['"', '\\', '\u{1}', '\u{1f}'] {
        for position in 0..20 {
            let mut text: Vec<u8> = "éxyzabcdefghijklmnopqrstuv".bytes().collect();
            text[position + 2] = special as u8;
            assert_eq!(plain_run_end(&text, 0), position + 2, "{special:?} at {position}");
        }
    }
    assert_eq!(plain_run_end("é\u{7f}abcdefgh".as_bytes(), 0), "é\u{7f}abcdefgh".len());
}
