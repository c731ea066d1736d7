//! The write side of the log: the active segment, rolling to new segments, and deleting old
//! ones.
//!
//! Only one thread uses the [`Writer`] at a time (the group-commit leader, or a truncation),
//! so it is plain `&mut self` code; the locking lives in [`crate::Wal`].

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use crate::direct::{self, Staging, BLOCK};
use crate::frame::SealedFrame;
use crate::segment::SegmentFile;
use crate::{Lsn, WalError, WalOptions, WalResult};

/// Owns the segment files of one log directory.
pub struct Writer {
    dir: PathBuf,
    options: WalOptions,
    /// Segments before the active one, oldest first.
    closed: VecDeque<SegmentFile>,
    active: ActiveSegment,
    #[cfg(test)]
    pub test_hooks: TestHooks,
}

/// Fault injection and counters for the crate's own tests.
#[cfg(test)]
#[derive(Default)]
pub struct TestHooks {
    pub fail_next_sync: bool,
    pub batches_written: usize,
}

struct ActiveSegment {
    segment: SegmentFile,
    file: File,
    /// Logical length: the end of the last frame written. With direct writes the file can
    /// be longer by the zero padding of its last block.
    len: u64,
    /// Set while the segment is written with direct I/O (`file` then has no `O_APPEND`).
    direct: Option<Staging>,
}

impl Writer {
    /// Creates the first segment of an empty log directory.
    pub fn create(dir: &Path, options: WalOptions, first_lsn: Lsn) -> WalResult<Writer> {
        let active = ActiveSegment::create(dir, options, SegmentFile::new(dir, first_lsn))?;
        Ok(Writer::with_active(dir, options, VecDeque::new(), active))
    }

    /// Continues writing at the end of `last`, whose valid prefix is `len` bytes long.
    pub fn resume(
        dir: &Path,
        options: WalOptions,
        closed: Vec<SegmentFile>,
        last: SegmentFile,
        len: u64,
    ) -> WalResult<Writer> {
        let file = File::options()
            .append(true)
            .open(&last.path)
            .map_err(|source| WalError::WriteSegment { path: last.path.clone(), source })?;
        let mut active = ActiveSegment { segment: last, file, len, direct: None };
        if options.direct_io {
            active.go_direct()?;
        }
        Ok(Writer::with_active(dir, options, closed.into(), active))
    }

    fn with_active(dir: &Path, options: WalOptions, closed: VecDeque<SegmentFile>, active: ActiveSegment) -> Writer {
        Writer {
            dir: dir.to_owned(),
            options,
            closed,
            active,
            #[cfg(test)]
            test_hooks: TestHooks::default(),
        }
    }

    /// Writes `frames` (consecutive LSNs) and makes them durable, rolling to a new segment
    /// before any frame that would push a non-empty segment past `segment_bytes`.
    ///
    /// On error the tail of the active segment is in an unknown state; the caller must stop
    /// writing (recovery on the next open cuts whatever is torn).
    pub fn write_batch(&mut self, frames: &[SealedFrame]) -> WalResult<()> {
        #[cfg(test)]
        {
            self.test_hooks.batches_written += 1;
        }
        let mut chunk_start = 0;
        let mut chunk_len = 0u64;
        for (index, frame) in frames.iter().enumerate() {
            let frame_len = frame.bytes.len() as u64;
            let used = self.active.len + chunk_len;
            if used > 0 && used + frame_len > self.options.segment_bytes {
                self.write_chunk(&frames[chunk_start..index])?;
                self.roll(frame.lsn)?;
                chunk_start = index;
                chunk_len = 0;
            }
            chunk_len += frame_len;
        }
        self.write_chunk(&frames[chunk_start..])
    }

    /// Deletes the closed segments whose every record has an LSN of at most `upto`.
    pub fn truncate_through(&mut self, upto: Lsn) -> WalResult<()> {
        let mut deleted = 0;
        while let Some(oldest) = self.closed.front() {
            let next_first_lsn = self.closed.get(1).map_or(self.active.segment.first_lsn, |next| next.first_lsn);
            if next_first_lsn - 1 > upto {
                break;
            }
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(WalError::DeleteSegment { path: oldest.path.clone(), source }),
            }
            tracing::debug!(path = %oldest.path.display(), upto, "deleted wal segment");
            self.closed.pop_front();
            deleted += 1;
        }
        if deleted > 0 && self.options.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Writes one run of frames to the active segment with vectored writes
    /// (no copy into one buffer) and a single sync.
    fn write_chunk(&mut self, frames: &[SealedFrame]) -> WalResult<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let active = &mut self.active;
        if active.direct.is_some() {
            match active.write_direct(frames) {
                Ok(()) => return self.sync_active(),
                // The file system took the direct open but not the write: continue buffered.
                Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
                    tracing::info!(path = %active.segment.path.display(), %error, "direct wal writes refused; writing through the page cache");
                    active.go_buffered()?;
                }
                Err(source) => return Err(WalError::WriteSegment { path: active.segment.path.clone(), source }),
            }
        }
        let path = &active.segment.path;
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|frame| IoSlice::new(&frame.bytes)).collect();
        let mut remaining = &mut slices[..];
        while !remaining.is_empty() {
            match active.file.write_vectored(remaining) {
                Ok(0) => {
                    let source = io::Error::new(io::ErrorKind::WriteZero, "the segment file accepted no bytes");
                    return Err(WalError::WriteSegment { path: path.clone(), source });
                }
                Ok(written) => {
                    active.len += written as u64;
                    IoSlice::advance_slices(&mut remaining, written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(WalError::WriteSegment { path: path.clone(), source }),
            }
        }
        self.sync_active()
    }

    /// Makes what was written to the active segment durable, when `fsync` is on.
    fn sync_active(&mut self) -> WalResult<()> {
        if !self.options.fsync {
            return Ok(());
        }
        let path = &self.active.segment.path;
        #[cfg(test)]
        if std::mem::take(&mut self.test_hooks.fail_next_sync) {
            let source = io::Error::other("injected sync failure");
            return Err(WalError::SyncSegment { path: path.clone(), source });
        }
        self.active.file.sync_data().map_err(|source| WalError::SyncSegment { path: path.clone(), source })
    }

    /// Starts a new active segment whose first record will be `first_lsn`.
    fn roll(&mut self, first_lsn: Lsn) -> WalResult<()> {
        self.active.cut_padding(self.options.fsync)?;
        let next = ActiveSegment::create(&self.dir, self.options, SegmentFile::new(&self.dir, first_lsn))?;
        let previous = std::mem::replace(&mut self.active, next);
        tracing::debug!(path = %previous.segment.path.display(), len = previous.len, "rolled wal segment");
        self.closed.push_back(previous.segment);
        Ok(())
    }
}

impl ActiveSegment {
    fn create(dir: &Path, options: WalOptions, segment: SegmentFile) -> WalResult<ActiveSegment> {
        let file = File::options()
            .append(true)
            .create_new(true)
            .open(&segment.path)
            .map_err(|source| WalError::CreateSegment { path: segment.path.clone(), source })?;
        if options.fsync {
            sync_dir(dir)?;
        }
        let mut active = ActiveSegment { segment, file, len: 0, direct: None };
        if options.direct_io {
            active.go_direct()?;
        }
        Ok(active)
    }

    /// Switches to direct writes if the file system allows them, reading the partial last
    /// block the next write must start with.
    fn go_direct(&mut self) -> WalResult<()> {
        let path = &self.segment.path;
        let file = match direct::open(path) {
            Ok(file) => file,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "no direct i/o for the wal; writing through the page cache");
                return Ok(());
            }
        };
        let tail_len = (self.len % BLOCK as u64) as usize;
        let mut tail = vec![0; tail_len];
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            File::open(path)
                .and_then(|reader| reader.read_exact_at(&mut tail, self.len - tail_len as u64))
                .map_err(|source| WalError::ReadSegment { path: path.clone(), source })?;
        }
        self.direct = Some(Staging::with_tail(&tail));
        self.file = file;
        Ok(())
    }

    /// Leaves direct writes: cuts the padding and reopens the file for appending.
    fn go_buffered(&mut self) -> WalResult<()> {
        self.cut_padding(false)?;
        let path = &self.segment.path;
        self.file = File::options()
            .append(true)
            .open(path)
            .map_err(|source| WalError::WriteSegment { path: path.clone(), source })?;
        self.direct = None;
        Ok(())
    }

    fn write_direct(&mut self, frames: &[SealedFrame]) -> io::Result<()> {
        let staging = self.direct.as_mut().expect("direct mode");
        let chunks: Vec<&[u8]> = frames.iter().map(|frame| &frame.bytes[..]).collect();
        staging.write(&self.file, self.len - staging.tail_len() as u64, &chunks)?;
        self.len += chunks.iter().map(|chunk| chunk.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Cuts the zero padding a direct write left after the last frame, so that a closed
    /// segment ends exactly at its last frame.
    fn cut_padding(&mut self, sync: bool) -> WalResult<()> {
        if self.direct.is_none() || self.len.is_multiple_of(BLOCK as u64) {
            return Ok(());
        }
        let path = &self.segment.path;
        let repair_error = |source| WalError::RepairSegment { path: path.clone(), offset: self.len, source };
        self.file.set_len(self.len).map_err(repair_error)?;
        if sync {
            self.file.sync_data().map_err(repair_error)?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    /// Leaves the active segment ending at its last frame, so a clean reopen finds no
    /// padding. Best effort: recovery cuts padding anyway.
    fn drop(&mut self) {
        let _ = self.active.cut_padding(false);
    }
}

/// Makes the creation or deletion of directory entries durable.
pub fn sync_dir(dir: &Path) -> WalResult<()> {
    let sync_error = |source| WalError::SyncDir { path: dir.to_owned(), source };
    #[cfg(unix)]
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(sync_error)?;
    #[cfg(not(unix))]
    let _ = sync_error;
    Ok(())
}
