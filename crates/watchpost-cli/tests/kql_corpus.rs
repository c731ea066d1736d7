//! `watchpost kql check` over the hand-written Sentinel-style corpus in
//! `tests/kql-corpus`: every file must parse, and at least a floor of them
//! must bind against the corpus's `schemas.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Files that bind with `--schema` today. Raise it when more bind; never
/// lower it to make a failing change pass.
const BIND_FLOOR: usize = 73;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kql-corpus")
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_watchpost"))
        .args(["kql", "check"])
        .args(args)
        .output()
        .expect("the watchpost binary runs")
}

/// The files `kql check` reads in `dir`, recursively.
fn count_query_files(dir: &Path) -> usize {
    let mut n_files = 0;
    for entry in std::fs::read_dir(dir).expect("the corpus folder is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            n_files += count_query_files(&path);
        } else if matches!(path.extension().and_then(|ext| ext.to_str()), Some("kql" | "csl" | "yaml" | "yml")) {
            n_files += 1;
        }
    }
    n_files
}

/// Parses "N passed, M failed" from the last line of the output.
fn summary(output: &Output) -> (usize, usize) {
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    let line = text.lines().rev().find(|line| line.contains(" passed, ")).expect("a summary line");
    let numbers: Vec<usize> = line.split([' ', ',']).filter_map(|word| word.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[test]
fn every_corpus_file_parses() {
    let corpus = corpus_dir();
    let output = check(&[corpus.to_str().expect("a UTF-8 path")]);
    let n_files = count_query_files(&corpus);
    assert!(n_files > 0, "the corpus is empty");
    assert_eq!(
        summary(&output),
        (n_files, 0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success());
}

#[test]
fn corpus_binds_at_least_the_floor() {
    let corpus = corpus_dir();
    let schema = corpus.join("schemas.json");
    let output = check(&["--schema", schema.to_str().expect("a UTF-8 path"), corpus.to_str().expect("a UTF-8 path")]);
    let (n_passed, n_failed) = summary(&output);
    assert_eq!(n_passed + n_failed, count_query_files(&corpus));
    assert!(
        n_passed >= BIND_FLOOR,
        "only {n_passed} files bind, the floor is {BIND_FLOOR}:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_broken_file_reports_its_position_and_fails() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("broken.kql");
    std::fs::write(&path, "SecurityEvent\n| where EventID ==\n").expect("the file is written");
    let output = check(&[path.to_str().expect("a UTF-8 path")]);
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    let expected = format!("{}:2:19: expected an expression, found the end of the query", path.display());
    assert!(text.contains(&expected), "missing `{expected}` in:\n{text}");
    assert_eq!(summary(&output), (0, 1));
    assert_eq!(output.status.code(), Some(1));
}
