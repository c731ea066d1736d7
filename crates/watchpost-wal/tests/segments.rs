//! Appending, reopening, segment rollover and truncation.

use std::fs;
use std::path::Path;

use watchpost_wal::{Lsn, Wal, WalOptions};

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

fn name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

#[test]
fn a_new_log_starts_at_lsn_one_and_reopens_where_it_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovered) = Wal::open(&dir.path().join("nested/wal"), WalOptions::default()).unwrap();
    assert!(recovered.is_empty());
    assert_eq!(wal.last_lsn(), 0);
    assert_eq!(wal.append(b"first").unwrap(), 1);
    assert_eq!(wal.append(b"").unwrap(), 2);
    assert_eq!(wal.append(b"third").unwrap(), 3);
    assert_eq!(wal.last_lsn(), 3);
    drop(wal);

    let (wal, recovered) = Wal::open(&dir.path().join("nested/wal"), WalOptions::default()).unwrap();
    assert_eq!(recovered, [(1, b"first".to_vec()), (2, vec![]), (3, b"third".to_vec())]);
    assert_eq!(wal.last_lsn(), 3);
    assert_eq!(wal.append(b"fourth").unwrap(), 4);
    assert_eq!(segment_names(&dir.path().join("nested/wal")), [name(1)]);
}

#[test]
fn segments_roll_over_and_truncate_through_deletes_only_fully_covered_ones() {
    roll_and_truncate(true);
}

#[test]
fn buffered_segments_roll_over_and_truncate_the_same_way() {
    roll_and_truncate(false);
}

fn roll_and_truncate(direct_io: bool) {
    let dir = tempfile::tempdir().unwrap();
    // 50-byte frames, two per 100-byte segment.
    let options = WalOptions { segment_bytes: 100, fsync: true, direct_io };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    for i in 0..10u8 {
        wal.append(&[i; 30]).unwrap();
    }
    let names = segment_names(dir.path());
    assert_eq!(names, [name(1), name(3), name(5), name(7), name(9)]);
    // Closed segments end at their last frame; the active one may carry the zero padding
    // of a direct write until it closes.
    for segment in &names[..4] {
        assert_eq!(fs::metadata(dir.path().join(segment)).unwrap().len(), 100);
    }
    let active_len = fs::metadata(dir.path().join(&names[4])).unwrap().len();
    assert!(active_len == 100 || (direct_io && active_len == 4096), "active segment is {active_len} bytes");

    wal.truncate_through(4).unwrap();
    assert_eq!(segment_names(dir.path()), [name(5), name(7), name(9)]);
    wal.truncate_through(5).unwrap();
    assert_eq!(segment_names(dir.path()), [name(5), name(7), name(9)], "lsn 6 still needed");
    wal.truncate_through(1000).unwrap();
    assert_eq!(segment_names(dir.path()), [name(9)], "the active segment stays");
    drop(wal);

    assert_eq!(fs::metadata(dir.path().join(name(9))).unwrap().len(), 100, "a clean close cuts the padding");

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered, [(9, vec![8; 30]), (10, vec![9; 30])]);
    assert_eq!(wal.append(b"x").unwrap(), 11);
    drop(wal);
    let (_, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(
        recovered,
        [(9, vec![8; 30]), (10, vec![9; 30]), (11, b"x".to_vec())],
        "appends after a reopen keep the block they share"
    );
}

#[test]
fn truncating_everything_never_reuses_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 1, fsync: false, direct_io: true };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    for _ in 0..3 {
        wal.append(b"one frame per segment").unwrap();
    }
    wal.truncate_through(3).unwrap();
    assert_eq!(segment_names(dir.path()), [name(3)]);
    drop(wal);

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(wal.append(b"four").unwrap(), 4);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 100, fsync: true, direct_io: true };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let big = vec![7; 1000];
    wal.append(b"small").unwrap();
    wal.append(&big).unwrap();
    wal.append(b"small again").unwrap();
    assert_eq!(segment_names(dir.path()), [name(1), name(2), name(3)]);
    drop(wal);

    let (_wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered, [(1, b"small".to_vec()), (2, big), (3, b"small again".to_vec())]);
}

#[test]
fn a_large_record_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 1 << 20, fsync: false, direct_io: true };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let big: Vec<u8> = (0..(8 << 20)).map(|i: u32| (i % 251) as u8).collect();
    assert_eq!(wal.append(&big).unwrap(), 1);
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].1 == big);
}

#[test]
fn unrelated_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("README"), b"not a segment").unwrap();
    fs::write(dir.path().join("1.wal"), b"not a segment name either").unwrap();
    let (wal, recovered) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(recovered.is_empty());
    assert_eq!(wal.append(b"a").unwrap(), 1);
}
