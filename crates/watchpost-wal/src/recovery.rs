//! Recovery on open: replaying every segment and repairing a torn tail.
//!
//! Two kinds of damage are told apart by where they are:
//!
//! - **The tail of the last segment** is where a crash leaves a partly written group. The
//!   first invalid frame there and everything after it are cut off (with a warning), so new
//!   appends follow valid data. Those bytes were never acknowledged when `fsync` is on,
//!   because a group is acknowledged only after its sync. Any invalid frame of the last
//!   segment counts as its tail: without a reliable way to resynchronise on frame boundaries
//!   we recover to the last consistent point (point-in-time recovery).
//! - **A non-last segment** was complete and synced before the log rolled past it, so damage
//!   there is media corruption, not a crash. Replay of that segment stops at the damage (with
//!   an error log) and continues with the next segment, whose records were acknowledged and
//!   are still valid; the caller sees the gap in LSNs. The damaged file is left untouched for
//!   inspection until `truncate_through` deletes it.

use std::fs::File;
use std::path::Path;

use crate::segment::{list_segments, scan_segment, SegmentFile};
use crate::writer::Writer;
use crate::{Lsn, Record, WalError, WalOptions, WalResult};

/// The state of a log directory after recovery.
pub struct Recovered {
    pub writer: Writer,
    pub records: Vec<Record>,
    pub next_lsn: Lsn,
}

/// Replays every segment of `dir`, repairs the last one and returns a writer positioned after
/// the last valid frame.
pub fn recover(dir: &Path, options: WalOptions) -> WalResult<Recovered> {
    let mut segments = list_segments(dir)?;
    let Some(last) = segments.pop() else {
        let writer = Writer::create(dir, options, 1)?;
        return Ok(Recovered { writer, records: Vec::new(), next_lsn: 1 });
    };
    let mut records = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let next_first_lsn = segments.get(index + 1).map_or(last.first_lsn, |next| next.first_lsn);
        let scan = scan_segment(segment, Some(next_first_lsn))?;
        if let Some((offset, reason)) = scan.corruption {
            tracing::error!(
                path = %segment.path.display(),
                offset,
                %reason,
                skipped_bytes = file_len(segment)?.saturating_sub(offset),
                "corrupt frame inside a closed wal segment; replay of this segment stops here",
            );
        }
        records.extend(scan.records);
    }
    let scan = scan_segment(&last, None)?;
    if let Some((offset, reason)) = scan.corruption {
        let padding = crate::direct::is_padding(&last.path, offset)
            .map_err(|source| WalError::ReadSegment { path: last.path.clone(), source })?;
        if padding {
            tracing::debug!(path = %last.path.display(), offset, "cutting the zero padding of a direct write");
        } else {
            tracing::warn!(
                path = %last.path.display(),
                offset,
                %reason,
                cut_bytes = file_len(&last)?.saturating_sub(offset),
                "torn or corrupt tail in the last wal segment; cutting it off",
            );
        }
        cut_tail(&last, offset, options)?;
    }
    records.extend(scan.records);
    let after_last_record = records.last().map_or(1, |(lsn, _)| lsn + 1);
    let next_lsn = after_last_record.max(last.first_lsn);
    tracing::info!(dir = %dir.display(), records = records.len(), next_lsn, "recovered wal");
    let writer = Writer::resume(dir, options, segments, last, scan.valid_len)?;
    Ok(Recovered { writer, records, next_lsn })
}

fn file_len(segment: &SegmentFile) -> WalResult<u64> {
    std::fs::metadata(&segment.path)
        .map(|metadata| metadata.len())
        .map_err(|source| WalError::ReadSegment { path: segment.path.clone(), source })
}

/// Truncates `segment` to `len` bytes so that new appends follow valid data.
///
/// The cut is synced when `fsync` is on: otherwise a power loss could bring the garbage back
/// in front of records appended (and acknowledged) after it.
fn cut_tail(segment: &SegmentFile, len: u64, options: WalOptions) -> WalResult<()> {
    let repair_error = |source| WalError::RepairSegment { path: segment.path.clone(), offset: len, source };
    let file = File::options().write(true).open(&segment.path).map_err(repair_error)?;
    file.set_len(len).map_err(repair_error)?;
    if options.fsync {
        file.sync_all().map_err(repair_error)?;
    }
    Ok(())
}
