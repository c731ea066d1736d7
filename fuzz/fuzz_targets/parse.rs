//! The parser never panics, and whatever it parses cleanly prints to text
//! that parses cleanly to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watchpost_kql_syntax::{dump_without_spans, parse, print};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (query, diagnostics) = parse(text);
    if !diagnostics.is_empty() {
        return;
    }
    let printed = print(&query);
    let (reparsed, reparse_diagnostics) = parse(&printed);
    assert!(reparse_diagnostics.is_empty(), "printed form does not parse:\n{printed}\n{reparse_diagnostics:?}");
    assert_eq!(dump_without_spans(&query), dump_without_spans(&reparsed), "round trip changed the tree:\n{printed}");
});
