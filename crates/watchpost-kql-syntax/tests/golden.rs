//! Golden tests over `test_data/` (style guide 7.2).
//!
//! - `parser/ok/*.kql`: no diagnostics; `.ast` holds the tree dump and the
//!   printed form; the printed form must parse back to the same tree.
//! - `parser/err/*.kql`: at least one diagnostic; `.ast` holds the recovered
//!   tree and `.diag` the rendered diagnostics.
//! - `lexer/*.kql`: `.tokens` holds one token per line.
//!
//! A missing expectation file is created; `UPDATE_EXPECT=1` rewrites the
//! files that differ.

use std::fs;
use std::path::{Path, PathBuf};

use watchpost_kql_syntax::{dump, dump_without_spans, parse, print, tokenize};

#[test]
fn golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let mut failures = Vec::new();
    let mut n_cases = 0;
    for input in kql_files(&root.join("parser/ok")) {
        n_cases += 1;
        check_ok_case(&input, &mut failures);
    }
    for input in kql_files(&root.join("parser/err")) {
        n_cases += 1;
        check_err_case(&input, &mut failures);
    }
    for input in kql_files(&root.join("lexer")) {
        n_cases += 1;
        check_lexer_case(&input, &mut failures);
    }
    assert!(n_cases > 0, "no test cases found under {}", root.display());
    assert!(failures.is_empty(), "{} golden failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

fn kql_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "kql"))
        .collect();
    files.sort();
    files
}

fn check_ok_case(input: &Path, failures: &mut Vec<String>) {
    let text = fs::read_to_string(input).expect("readable test input");
    let (query, diagnostics) = parse(&text);
    if !diagnostics.is_empty() {
        let rendered: Vec<String> = diagnostics.iter().map(|diagnostic| diagnostic.render(&text)).collect();
        failures.push(format!("{}: unexpected diagnostics:\n{}", input.display(), rendered.join("\n")));
    }
    let printed = print(&query);
    let (reparsed, reparse_diagnostics) = parse(&printed);
    if !reparse_diagnostics.is_empty() {
        let rendered: Vec<String> = reparse_diagnostics.iter().map(|diagnostic| diagnostic.render(&printed)).collect();
        failures.push(format!("{}: printed form does not parse:\n{printed}\n{}", input.display(), rendered.join("\n")));
    }
    if dump_without_spans(&query) != dump_without_spans(&reparsed) {
        failures.push(format!(
            "{}: round trip changed the tree; printed:\n{printed}\nbefore:\n{}after:\n{}",
            input.display(),
            dump_without_spans(&query),
            dump_without_spans(&reparsed)
        ));
    }
    if print(&reparsed) != printed {
        failures.push(format!(
            "{}: printing is not idempotent:\n{printed}\n---\n{}",
            input.display(),
            print(&reparsed)
        ));
    }
    let expected = format!("{}--- printed ---\n{printed}\n", dump(&query));
    check_expectation(&input.with_extension("ast"), &expected, failures);
}

fn check_err_case(input: &Path, failures: &mut Vec<String>) {
    let text = fs::read_to_string(input).expect("readable test input");
    let (query, diagnostics) = parse(&text);
    if diagnostics.is_empty() {
        failures.push(format!("{}: expected at least one diagnostic", input.display()));
    }
    let rendered: String = diagnostics.iter().map(|diagnostic| diagnostic.render(&text) + "\n").collect();
    check_expectation(&input.with_extension("ast"), &dump(&query), failures);
    check_expectation(&input.with_extension("diag"), &rendered, failures);
}

fn check_lexer_case(input: &Path, failures: &mut Vec<String>) {
    let text = fs::read_to_string(input).expect("readable test input");
    let (tokens, diagnostics) = tokenize(&text);
    let mut rendered = String::new();
    for token in &tokens {
        rendered.push_str(&format!("{:?} {:?} {}\n", token.kind, token.span.text(&text), token.span));
    }
    for diagnostic in &diagnostics {
        rendered.push_str(&format!("error: {}\n", diagnostic.render(&text)));
    }
    check_expectation(&input.with_extension("tokens"), &rendered, failures);
}

/// Compares `actual` with the file at `path`, creating or (with
/// `UPDATE_EXPECT=1`) rewriting it.
fn check_expectation(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1");
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(_) if !update => failures.push(format!(
            "{}: differs from the expectation (rerun with UPDATE_EXPECT=1 to accept):\n{actual}",
            path.display()
        )),
        _ => fs::write(path, actual).expect("writable expectation file"),
    }
}
