//! Crash recovery: torn tails at every byte offset, flipped bytes, damaged closed segments.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use watchpost_wal::{Lsn, Wal, WalOptions};

const HEADER_LEN: u64 = 20;

fn fast_options(segment_bytes: u64) -> WalOptions {
    WalOptions { segment_bytes, fsync: false, direct_io: true }
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    paths.sort();
    paths
}

fn numbered(records: &[Vec<u8>]) -> Vec<(Lsn, Vec<u8>)> {
    (1..).zip(records.iter().cloned()).collect()
}

/// Writes `records` into a fresh log in `dir` and returns the segment files in order.
fn write_log(dir: &Path, options: WalOptions, records: &[Vec<u8>]) -> Vec<PathBuf> {
    let (wal, recovered) = Wal::open(dir, options).unwrap();
    assert!(recovered.is_empty());
    for (expected, record) in (1..).zip(records) {
        assert_eq!(wal.append(record).unwrap(), expected);
    }
    segment_paths(dir)
}

/// Copies the log in `segments` into `target` as if the machine had crashed after its first
/// `cut` bytes (counted across the segments in order) reached the disk.
fn copy_cut_at(segments: &[PathBuf], target: &Path, cut: u64) {
    let mut remaining = cut;
    for (index, path) in segments.iter().enumerate() {
        let bytes = fs::read(path).unwrap();
        let keep = remaining.min(bytes.len() as u64);
        let exists_on_disk = index == 0 || remaining > 0;
        if !exists_on_disk {
            break;
        }
        fs::write(target.join(path.file_name().unwrap()), &bytes[..keep as usize]).unwrap();
        remaining -= keep;
    }
}

/// Asserts that the log cut at every byte offset recovers exactly the records whose frames
/// are complete, and that appending and reopening afterwards works.
fn check_every_cut(records: &[Vec<u8>], segment_bytes: u64) {
    let source = tempfile::tempdir().unwrap();
    let options = fast_options(segment_bytes);
    let segments = write_log(source.path(), options, records);
    let total: u64 = segments.iter().map(|path| fs::metadata(path).unwrap().len()).sum();
    let frame_ends: Vec<u64> = records
        .iter()
        .scan(0, |end, record| {
            *end += HEADER_LEN + record.len() as u64;
            Some(*end)
        })
        .collect();
    assert_eq!(frame_ends.last().copied().unwrap_or(0), total);

    for cut in 0..=total {
        let target = tempfile::tempdir().unwrap();
        copy_cut_at(&segments, target.path(), cut);
        let complete = frame_ends.iter().take_while(|&&end| end <= cut).count();
        let expected = numbered(&records[..complete]);

        let (wal, recovered) = Wal::open(target.path(), options).unwrap();
        assert_eq!(recovered, expected, "cut at {cut} of {total}");
        assert_eq!(wal.last_lsn(), complete as Lsn);
        let next = wal.append(b"after the crash").unwrap();
        assert_eq!(next, complete as Lsn + 1, "cut at {cut}");
        drop(wal);

        let (wal, recovered) = Wal::open(target.path(), options).unwrap();
        let mut expected = expected;
        expected.push((next, b"after the crash".to_vec()));
        assert_eq!(recovered, expected, "reopen after cut at {cut}");
        assert_eq!(wal.last_lsn(), next);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_cut_offset_recovers_exactly_a_prefix(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..10),
        segment_bytes in prop_oneof![Just(1u64 << 20), 1u64..160],
    ) {
        check_every_cut(&records, segment_bytes);
    }
}

#[test]
fn every_cut_offset_of_a_fixed_log_recovers_exactly_a_prefix() {
    let records: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; usize::from(i) * 7]).collect();
    check_every_cut(&records, 1 << 20);
    check_every_cut(&records, 64);
}

#[test]
fn a_flipped_byte_anywhere_in_the_tail_frame_cuts_only_that_frame() {
    let records: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
    let source = tempfile::tempdir().unwrap();
    let options = fast_options(1 << 20);
    let segments = write_log(source.path(), options, &records);
    let original = fs::read(&segments[0]).unwrap();
    let tail_start = 4 * (HEADER_LEN as usize + 10);

    for position in tail_start..original.len() {
        let target = tempfile::tempdir().unwrap();
        let path = target.path().join(segments[0].file_name().unwrap());
        let mut bytes = original.clone();
        bytes[position] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let (wal, recovered) = Wal::open(target.path(), options).unwrap();
        assert_eq!(recovered, numbered(&records[..4]), "flip at {position}");
        assert_eq!(fs::metadata(&path).unwrap().len(), tail_start as u64, "tail cut off");
        assert_eq!(wal.append(b"replacement").unwrap(), 5);
        drop(wal);

        let (_wal, recovered) = Wal::open(target.path(), options).unwrap();
        assert_eq!(recovered.len(), 5);
        assert_eq!(recovered[4], (5, b"replacement".to_vec()));
    }
}

#[test]
fn damage_inside_a_closed_segment_skips_only_the_rest_of_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    // 30-byte frames, three per segment: lsns 1-3, 4-6, 7-9, 10.
    let options = fast_options(90);
    let records: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10]).collect();
    let segments = write_log(dir.path(), options, &records);
    assert_eq!(segments.len(), 4);
    let damaged = &segments[1];
    let mut bytes = fs::read(damaged).unwrap();
    bytes[30 + 25] ^= 0xff; // payload of lsn 5
    fs::write(damaged, &bytes).unwrap();

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    let lsns: Vec<Lsn> = recovered.iter().map(|(lsn, _)| *lsn).collect();
    assert_eq!(lsns, [1, 2, 3, 4, 7, 8, 9, 10]);
    assert_eq!(fs::read(damaged).unwrap(), bytes, "a closed segment is never rewritten");
    assert_eq!(wal.append(b"next").unwrap(), 11);
}

#[test]
fn an_empty_last_segment_keeps_the_lsn_its_name_promises() {
    let dir = tempfile::tempdir().unwrap();
    let options = fast_options(1 << 20);
    write_log(dir.path(), options, &[b"one".to_vec(), b"two".to_vec()]);
    // A crash right after rolling: the new segment exists but holds nothing yet.
    fs::write(dir.path().join("00000000000000000003.wal"), b"").unwrap();

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered.len(), 2);
    assert_eq!(wal.last_lsn(), 2);
    assert_eq!(wal.append(b"three").unwrap(), 3);
    assert_eq!(segment_paths(dir.path()).len(), 2);
}

#[test]
fn garbage_after_the_last_frame_is_cut_and_appends_follow_valid_data() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let segments = write_log(dir.path(), options, &[b"kept".to_vec()]);
    let valid_len = fs::metadata(&segments[0]).unwrap().len();
    let mut bytes = fs::read(&segments[0]).unwrap();
    bytes.extend_from_slice(b"WPLF\xff\xff\xff\x7fgarbage that claims to be a huge frame");
    fs::write(&segments[0], &bytes).unwrap();

    let (wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered, [(1, b"kept".to_vec())]);
    assert_eq!(fs::metadata(&segments[0]).unwrap().len(), valid_len);
    assert_eq!(wal.append(b"next").unwrap(), 2);
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), options).unwrap();
    assert_eq!(recovered, [(1, b"kept".to_vec()), (2, b"next".to_vec())]);
}

#[test]
fn a_crash_that_leaves_direct_write_padding_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_bytes: 64 << 20, fsync: true, direct_io: true };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let records: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i + 1; 1000 + 777 * i as usize]).collect();
    for record in &records {
        wal.append(record).unwrap();
    }
    // Copy the files while the log is open, as a crash would leave them: the last block of
    // a direct write is padded with zeros past the last frame.
    let crashed = tempfile::tempdir().unwrap();
    for path in segment_paths(dir.path()) {
        fs::copy(&path, crashed.path().join(path.file_name().unwrap())).unwrap();
    }
    drop(wal);

    let (wal, recovered) = Wal::open(crashed.path(), options).unwrap();
    assert_eq!(recovered, numbered(&records));
    assert_eq!(wal.append(b"after the crash").unwrap(), 8);
    drop(wal);
    let (_wal, recovered) = Wal::open(crashed.path(), options).unwrap();
    let mut expected = records.clone();
    expected.push(b"after the crash".to_vec());
    assert_eq!(recovered, numbered(&expected));
}
