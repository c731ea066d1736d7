//! The parser never panics, and whatever tree it recovers prints back to
//! text that parses to the same tree. Checked on every prefix of every test
//! input and on every input with one character removed.

use std::fs;
use std::path::Path;

use watchpost_kql_syntax::{dump_without_spans, parse, print};

fn inputs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let mut texts = Vec::new();
    for dir in ["parser/ok", "parser/err", "lexer"] {
        for entry in fs::read_dir(root.join(dir)).expect("test_data folder") {
            let path = entry.expect("readable directory entry").path();
            if path.extension().is_some_and(|ext| ext == "kql") {
                texts.push(fs::read_to_string(&path).expect("readable test input"));
            }
        }
    }
    texts
}

fn check(text: &str) {
    let (query, diagnostics) = parse(text);
    for diagnostic in &diagnostics {
        let span = diagnostic.span;
        assert!(span.start <= span.end && span.end as usize <= text.len(), "{text:?}: bad span {span}");
    }
    let printed = print(&query);
    let (reparsed, reparse_diagnostics) = parse(&printed);
    assert!(reparse_diagnostics.is_empty(), "{text:?} printed as {printed:?}: {reparse_diagnostics:?}");
    assert_eq!(dump_without_spans(&query), dump_without_spans(&reparsed), "{text:?} printed as {printed:?}");
}

#[test]
fn recovered_trees_round_trip_for_prefixes_and_deletions() {
    for text in inputs() {
        let boundaries: Vec<usize> = text.char_indices().map(|(idx, _)| idx).collect();
        for &end in &boundaries {
            check(&text[..end]);
        }
        for (position, &start) in boundaries.iter().enumerate() {
            let end = boundaries.get(position + 1).copied().unwrap_or(text.len());
            check(&format!("{}{}", &text[..start], &text[end..]));
        }
    }
}

#[test]
fn random_fragment_soups_round_trip() {
    const FRAGMENTS: [&str; 48] = [
        "T",
        " | ",
        "where ",
        "project ",
        "extend ",
        "summarize ",
        " by ",
        "sort ",
        "top ",
        "take ",
        "count",
        "distinct ",
        "project-away ",
        "project-rename ",
        "let ",
        " = ",
        "==",
        ";",
        ",",
        "(",
        ")",
        "[",
        "]",
        "'x'",
        "\"s",
        "\"",
        "datetime(2024-01-01)",
        "datetime(",
        "1d",
        "1.5",
        "0x1F",
        "..",
        " between ",
        " in ",
        "~",
        "!in",
        " has ",
        " and ",
        " or ",
        "-",
        "*",
        "print ",
        "datatable(a:long)",
        "range x from 1 to 2 step 1",
        "f(",
        "a",
        ".b",
        "\n",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..4000 {
        let n_fragments = 1 + next() % 12;
        let text: String = (0..n_fragments).map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize]).collect();
        check(&text);
    }
}
