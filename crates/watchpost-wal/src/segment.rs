//! Segment files: naming, listing and validating scans.
//!
//! A segment is named after the LSN of its first record, zero-padded to 20 digits so that
//! lexical and numeric order agree: `00000000000000000001.wal`. Its records carry consecutive
//! LSNs starting at that number.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::frame::{Corruption, FrameHeader, HEADER_LEN};
use crate::{Lsn, Record, WalError, WalResult};

const SEGMENT_SUFFIX: &str = ".wal";
const SEGMENT_DIGITS: usize = 20;

/// One segment file and the LSN its first record has (or will have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

/// What a scan of one segment found.
pub struct Scan {
    /// Records of every valid frame before the first invalid one.
    pub records: Vec<Record>,
    /// Byte length of the valid prefix.
    pub valid_len: u64,
    /// The first invalid frame's offset and the reason it was rejected.
    pub corruption: Option<(u64, Corruption)>,
}

impl SegmentFile {
    /// Returns the segment of `dir` whose first record is `first_lsn`.
    pub fn new(dir: &Path, first_lsn: Lsn) -> SegmentFile {
        let path = dir.join(format!("{first_lsn:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS));
        SegmentFile { first_lsn, path }
    }
}

/// Lists the segment files of `dir` in LSN order, ignoring every other file.
pub fn list_segments(dir: &Path) -> WalResult<Vec<SegmentFile>> {
    let list_error = |source| WalError::ListDir { path: dir.to_owned(), source };
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let Some(first_lsn) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        if entry.file_type().map_err(list_error)?.is_file() {
            segments.push(SegmentFile { first_lsn, path: entry.path() });
        }
    }
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// Reads every valid frame of a segment, stopping at the first invalid one.
///
/// Frames must carry consecutive LSNs from `segment.first_lsn`, all below `next_segment` when
/// there is a next segment. I/O failures are errors; invalid bytes are reported in the
/// returned [`Scan`].
pub fn scan_segment(segment: &SegmentFile, next_segment: Option<Lsn>) -> WalResult<Scan> {
    let read_error = |source| WalError::ReadSegment { path: segment.path.clone(), source };
    let file = File::open(&segment.path).map_err(read_error)?;
    let file_len = file.metadata().map_err(read_error)?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut scan = Scan { records: Vec::new(), valid_len: 0, corruption: None };
    let mut expected = segment.first_lsn;
    while scan.valid_len < file_len {
        let available = file_len - scan.valid_len;
        match read_frame(&mut reader, available, expected, next_segment).map_err(read_error)? {
            Ok(payload) => {
                scan.valid_len += (HEADER_LEN + payload.len()) as u64;
                scan.records.push((expected, payload));
                expected += 1;
            }
            Err(reason) => {
                scan.corruption = Some((scan.valid_len, reason));
                break;
            }
        }
    }
    Ok(scan)
}

/// Reads and validates the frame at the reader's position, `available` bytes before the end.
fn read_frame(
    reader: &mut impl Read,
    available: u64,
    expected: Lsn,
    next_segment: Option<Lsn>,
) -> io::Result<Result<Vec<u8>, Corruption>> {
    if available < HEADER_LEN as u64 {
        return Ok(Err(Corruption::TornHeader { available }));
    }
    let mut header_bytes = [0; HEADER_LEN];
    reader.read_exact(&mut header_bytes)?;
    let header = match FrameHeader::parse(&header_bytes) {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    if header.lsn != expected {
        return Ok(Err(Corruption::UnexpectedLsn { expected, found: header.lsn }));
    }
    if let Some(next_segment) = next_segment.filter(|&next| header.lsn >= next) {
        return Ok(Err(Corruption::OverrunsNextSegment { lsn: header.lsn, next_segment }));
    }
    let payload_available = available - HEADER_LEN as u64;
    if u64::from(header.payload_len) > payload_available {
        let payload_len = header.payload_len;
        return Ok(Err(Corruption::TornPayload { payload_len, available: payload_available }));
    }
    let mut payload = vec![0; header.payload_len as usize];
    reader.read_exact(&mut payload)?;
    Ok(header.verify(&header_bytes, &payload).map(|()| payload))
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::frame::UnsealedFrame;

    fn write_segment(dir: &Path, first_lsn: Lsn, payloads: &[&[u8]]) -> SegmentFile {
        let segment = SegmentFile::new(dir, first_lsn);
        let mut file = File::create(&segment.path).unwrap();
        for (lsn, payload) in (first_lsn..).zip(payloads) {
            file.write_all(&UnsealedFrame::new(payload).unwrap().seal(lsn).bytes).unwrap();
        }
        segment
    }

    #[test]
    fn names_are_zero_padded_and_parse_back() {
        let segment = SegmentFile::new(Path::new("/x"), 1);
        assert_eq!(segment.path, Path::new("/x/00000000000000000001.wal"));
        assert_eq!(parse_segment_name("00000000000000000001.wal"), Some(1));
        assert_eq!(parse_segment_name("18446744073709551615.wal"), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000001.tmp"), None);
    }

    #[test]
    fn listing_sorts_by_lsn_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 10, &[]);
        write_segment(dir.path(), 2, &[]);
        File::create(dir.path().join("LOCK")).unwrap();
        fs::create_dir(dir.path().join("00000000000000000005.wal")).unwrap();
        let lsns: Vec<Lsn> = list_segments(dir.path()).unwrap().iter().map(|s| s.first_lsn).collect();
        assert_eq!(lsns, [2, 10]);
    }

    #[test]
    fn scan_returns_all_records_of_a_clean_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_segment(dir.path(), 5, &[b"a", b"", b"ccc"]);
        let scan = scan_segment(&segment, None).unwrap();
        assert_eq!(scan.records, [(5, b"a".to_vec()), (6, vec![]), (7, b"ccc".to_vec())]);
        assert_eq!(scan.valid_len, fs::metadata(&segment.path).unwrap().len());
        assert_eq!(scan.corruption, None);
    }

    #[test]
    fn scan_rejects_a_frame_with_the_wrong_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_segment(dir.path(), 5, &[b"a"]);
        let misnamed = SegmentFile::new(dir.path(), 6);
        fs::rename(&segment.path, &misnamed.path).unwrap();
        let scan = scan_segment(&misnamed, None).unwrap();
        assert!(scan.records.is_empty());
        assert_eq!(scan.corruption, Some((0, Corruption::UnexpectedLsn { expected: 6, found: 5 })));
    }

    #[test]
    fn scan_stops_at_records_belonging_to_the_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_segment(dir.path(), 1, &[b"a", b"b", b"c"]);
        let scan = scan_segment(&segment, Some(3)).unwrap();
        assert_eq!(scan.records.len(), 2);
        let offset = 2 * (HEADER_LEN as u64 + 1);
        assert_eq!(scan.corruption, Some((offset, Corruption::OverrunsNextSegment { lsn: 3, next_segment: 3 })));
    }

    #[test]
    fn scan_reports_a_torn_payload() {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_segment(dir.path(), 1, &[b"a", b"bbbb"]);
        let len = fs::metadata(&segment.path).unwrap().len();
        File::options().write(true).open(&segment.path).unwrap().set_len(len - 1).unwrap();
        let scan = scan_segment(&segment, None).unwrap();
        assert_eq!(scan.records, [(1, b"a".to_vec())]);
        assert_eq!(scan.valid_len, HEADER_LEN as u64 + 1);
        assert_eq!(
            scan.corruption.map(|(_, reason)| reason),
            Some(Corruption::TornPayload { payload_len: 4, available: 3 })
        );
    }
}
