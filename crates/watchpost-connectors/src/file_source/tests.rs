use std::fs::OpenOptions;
use std::io::Write;

use super::*;

fn config(dir: &Path, pattern: &str, record_start: &str) -> FileSourceConfig {
    FileSourceConfig {
        id: "s".into(),
        paths: vec![dir.join(pattern).display().to_string()],
        exclude: vec![glob::Pattern::new("*.gz").unwrap()],
        read_from: ReadFrom::Beginning,
        record_start: RecordStart::parse(record_start).unwrap(),
        multiline_timeout: Duration::from_millis(200),
        max_line_bytes: 1024,
        rotate_wait: Duration::from_millis(100),
        glob_interval: Duration::ZERO,
        table: None,
    }
}

fn append(path: &Path, lines: std::ops::Range<u32>) {
    let mut file = OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in lines {
        writeln!(file, "line {i}").unwrap();
    }
}

fn drain(source: &mut FileSource, polls: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..polls {
        source.poll(&mut out, 1 << 20).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    out.into_iter().map(|r| r.text).collect()
}

fn expected(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

#[test]
fn rename_rotation_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, 0..100);
    let mut source = FileSource::new(config(dir.path(), "app.log", "newline"), Vec::new());
    let mut got = drain(&mut source, 1);
    // The writer still holds the old file: lines land after the rename too.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    for i in 100..150 {
        writeln!(writer, "line {i}").unwrap();
    }
    drop(writer);
    append(&log, 150..200);
    got.extend(drain(&mut source, 12));
    got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
    assert_eq!(got, expected(0..200));
    // The rotated file was closed after rotate_wait.
    assert_eq!(source.checkpoints().len(), 1);
}

#[test]
fn rotated_name_that_still_matches_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, 0..10);
    let mut source = FileSource::new(config(dir.path(), "app.log*", "newline"), Vec::new());
    let mut got = drain(&mut source, 1);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, 10..20);
    got.extend(drain(&mut source, 5));
    got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
    assert_eq!(got, expected(0..20));
}

#[test]
fn copy_truncate_restarts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, 0..50);
    let mut source = FileSource::new(config(dir.path(), "*.log", "newline"), Vec::new());
    assert_eq!(drain(&mut source, 1), expected(0..50));
    // Shorter than before when we look.
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    append(&log, 50..60);
    assert_eq!(drain(&mut source, 1), expected(50..60));
    // Longer than before when we look: the first bytes changed.
    OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    append(&log, 1000..1100);
    assert_eq!(drain(&mut source, 1), expected(1000..1100));
    assert_eq!(source.truncations, 2);
}

#[test]
fn checkpoints_resume_without_duplicates_and_new_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    append(&log, 0..10);
    std::fs::write(dir.path().join("old.log.gz"), b"not text\n").unwrap();
    let mut source = FileSource::new(config(dir.path(), "*.log*", "newline"), Vec::new());
    assert_eq!(drain(&mut source, 1), expected(0..10));
    let checkpoints = source.checkpoints();
    drop(source);
    append(&log, 10..15);
    append(&dir.path().join("b.log"), 100..102);
    let mut source = FileSource::new(config(dir.path(), "*.log*", "newline"), checkpoints);
    let mut got = drain(&mut source, 1);
    got.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
    assert_eq!(got, [expected(10..15), expected(100..102)].concat());
}

#[test]
fn multiline_records_commit_only_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("java.log");
    let text = "2024-10-29 18:28:34 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n2024-10-29 18:28:35 INFO next\n";
    std::fs::write(&log, text).unwrap();
    let mut cfg = config(dir.path(), "java.log", "timestamp");
    cfg.multiline_timeout = Duration::from_secs(60);
    let mut source = FileSource::new(cfg.clone(), Vec::new());
    let mut out = Vec::new();
    source.poll(&mut out, 1 << 20).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].text.lines().count(), 4);
    // The second record is pending: the checkpoint stops at its start.
    let start_of_second = text.find("2024-10-29 18:28:35").unwrap() as u64;
    assert_eq!(source.checkpoints()[0].offset, start_of_second);
    // After a restart the pending record is read again, whole.
    let mut restarted = FileSource::new(cfg, source.checkpoints());
    let mut out = Vec::new();
    restarted.poll(&mut out, 1 << 20).unwrap();
    assert!(out.is_empty());
    assert_eq!(
        restarted.files.values_mut().next().unwrap().assembler.take_pending().unwrap().text,
        "2024-10-29 18:28:35 INFO next"
    );
}

#[test]
fn multiline_timeout_flushes_the_last_record_and_long_lines_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.log");
    std::fs::write(&log, format!("2024-10-29 18:28:34 a\n b\n{}\n", "y".repeat(5000))).unwrap();
    let mut source = FileSource::new(config(dir.path(), "x.log", "timestamp"), Vec::new());
    let got = drain(&mut source, 10);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("2024-10-29 18:28:34 a\n b\ny"));
    assert!(got[0].len() <= 1024);
    assert_eq!(source.checkpoints()[0].offset, std::fs::metadata(&log).unwrap().len());
}
