//! The [`Wal`] handle and its group commit.
//!
//! Callers seal their frame (assign the next LSN) and queue it under one mutex. When no
//! commit is in flight, the caller becomes the leader: it takes every queued frame, writes
//! them with one write and one sync, publishes the new durable LSN and wakes everybody.
//! Callers that arrive while a leader is busy wait on a condition variable and are carried by
//! the next leader, so one sync covers everything that queued up during the previous one.

use std::fs::{self, File, TryLockError};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::frame::{RecordBuf, SealedFrame, UnsealedFrame};
use crate::recovery::recover;
use crate::writer::{sync_dir, Writer};
use crate::{WalError, WalResult};

/// Log sequence number: 1 for the first record ever appended, then increasing by one.
pub type Lsn = u64;

/// A record returned by recovery for replay: its LSN and its payload.
pub type Record = (Lsn, Vec<u8>);

/// Tuning knobs of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A new segment is started before a record that would push a non-empty segment past this
    /// many bytes; a single larger record gets a segment of its own.
    pub segment_bytes: u64,
    /// Whether appends wait for `fdatasync` (and segment creation for a directory sync).
    /// Without it an acknowledged record survives a process crash but not a power loss.
    pub fsync: bool,
    /// Write segments with `O_DIRECT` where the file system allows it (Linux). The kernel
    /// then moves the bytes to the device without copying them into the page cache, which
    /// on the machines we measured cost more CPU than encoding the records (see the
    /// `direct` module). Falls back to buffered writes where direct I/O is refused.
    pub direct_io: bool,
}

/// A write-ahead log in one directory. It is `Send + Sync`; share it through an `Arc`.
pub struct Wal {
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled whenever a leader finishes a commit, successful or not.
    committed: Condvar,
    /// Used by one leader at a time, and by truncation; never locked while holding `state`.
    writer: Mutex<Writer>,
    /// Holds the advisory lock that keeps a second `Wal` out of the directory.
    _dir_lock: File,
}

struct State {
    next_lsn: Lsn,
    /// Every record with an LSN up to this one is durable.
    durable_lsn: Lsn,
    /// Sealed frames waiting for the next leader, in LSN order.
    pending: Vec<SealedFrame>,
    leader_active: bool,
    /// The first commit failure; once set, the log accepts no more appends.
    failure: Option<Arc<WalError>>,
}

const LOCK_FILE: &str = "LOCK";

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions { segment_bytes: 64 << 20, fsync: true, direct_io: true }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).field("last_lsn", &self.last_lsn()).finish()
    }
}

impl Wal {
    /// Opens the log in `dir`, creating the directory if needed, and recovers it.
    ///
    /// Returns the log and every valid record in LSN order, for the caller to replay. A torn
    /// or corrupt tail of the last segment is cut off; damage inside an older segment skips
    /// the rest of that segment (see the `recovery` module for the reasoning). Fails with
    /// [`WalError::DirInUse`] when another `Wal` has the directory open.
    pub fn open(dir: &Path, options: WalOptions) -> WalResult<(Wal, Vec<Record>)> {
        fs::create_dir_all(dir).map_err(|source| WalError::CreateDir { path: dir.to_owned(), source })?;
        let dir_lock = lock_dir(dir)?;
        if options.fsync {
            // The directory itself may be new.
            sync_dir(dir)?;
        }
        let recovered = recover(dir, options)?;
        let state = State {
            next_lsn: recovered.next_lsn,
            durable_lsn: recovered.next_lsn - 1,
            pending: Vec::new(),
            leader_active: false,
            failure: None,
        };
        let wal = Wal {
            dir: dir.to_owned(),
            state: Mutex::new(state),
            committed: Condvar::new(),
            writer: Mutex::new(recovered.writer),
            _dir_lock: dir_lock,
        };
        Ok((wal, recovered.records))
    }

    /// Appends one record and returns its LSN once the record is durable.
    ///
    /// Blocks; many threads may call it at once and are group-committed. If the commit that
    /// carries the record fails, every caller of that group gets [`WalError::CommitFailed`]
    /// and later calls get [`WalError::Poisoned`] until the log is reopened.
    pub fn append(&self, record: &[u8]) -> WalResult<Lsn> {
        self.append_frame(UnsealedFrame::new(record)?)
    }

    /// Like [`Wal::append`], for a record built in a [`RecordBuf`]: its
    /// buffer becomes the frame without a copy.
    pub fn append_buf(&self, record: RecordBuf) -> WalResult<Lsn> {
        self.append_frame(UnsealedFrame::from_buf(record)?)
    }

    fn append_frame(&self, frame: UnsealedFrame) -> WalResult<Lsn> {
        let mut state = self.lock_state();
        if let Some(source) = &state.failure {
            return Err(WalError::Poisoned { source: Arc::clone(source) });
        }
        let lsn = state.next_lsn;
        state.next_lsn += 1;
        state.pending.push(frame.seal(lsn));
        loop {
            if state.durable_lsn >= lsn {
                return Ok(lsn);
            }
            if let Some(source) = &state.failure {
                return Err(WalError::CommitFailed { lsn, source: Arc::clone(source) });
            }
            state = if state.leader_active {
                self.committed.wait(state).expect("wal state lock poisoned")
            } else {
                self.lead_commit(state)
            };
        }
    }

    /// Deletes every closed segment whose records all have an LSN of at most `upto`.
    ///
    /// The active segment is never deleted, so the records it holds are replayed again on
    /// the next open even when they are at most `upto`.
    pub fn truncate_through(&self, upto: Lsn) -> WalResult<()> {
        self.writer.lock().expect("wal writer lock poisoned").truncate_through(upto)
    }

    /// Returns the LSN of the last durable record, or of the last one recovered on open
    /// (0 when the log never held a record).
    pub fn last_lsn(&self) -> Lsn {
        self.lock_state().durable_lsn
    }

    /// Returns the directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes every pending frame as one group and publishes the outcome.
    ///
    /// Called with the state lock held and no leader active; releases the lock for the I/O.
    fn lead_commit<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.leader_active = true;
        let batch = mem::take(&mut state.pending);
        drop(state);
        let outcome = self.writer.lock().expect("wal writer lock poisoned").write_batch(&batch);
        let mut state = self.lock_state();
        state.leader_active = false;
        match outcome {
            Ok(()) => {
                if let Some(last) = batch.last() {
                    debug_assert!(last.lsn > state.durable_lsn, "groups are committed in lsn order");
                    state.durable_lsn = last.lsn;
                }
            }
            Err(error) => {
                tracing::error!(error = %error, records = batch.len(), "wal group commit failed");
                state.failure = Some(Arc::new(error));
            }
        }
        self.committed.notify_all();
        state
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("wal state lock poisoned")
    }
}

/// Takes an exclusive advisory lock on the directory's lock file.
fn lock_dir(dir: &Path) -> WalResult<File> {
    let path = dir.join(LOCK_FILE);
    let lock_error = |source| WalError::LockDir { path: path.clone(), source };
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::DirInUse { path: dir.to_owned() }),
        Err(TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::ErrorKind;

    fn open(dir: &Path) -> (Arc<Wal>, Vec<Record>) {
        let (wal, records) = Wal::open(dir, WalOptions::default()).unwrap();
        (Arc::new(wal), records)
    }

    fn wait_until(mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not reached in time");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Holds the writer while `callers` threads append, so that one of them leads with its own
    /// record and the rest queue up behind it; returns once that shape is reached.
    fn queue_behind_blocked_leader(wal: &Arc<Wal>, callers: usize) -> Vec<thread::JoinHandle<WalResult<Lsn>>> {
        let handles = (0..callers)
            .map(|caller| {
                let wal = Arc::clone(wal);
                thread::spawn(move || wal.append(format!("record {caller}").as_bytes()))
            })
            .collect();
        wait_until(|| {
            let state = wal.lock_state();
            state.leader_active && state.pending.len() == callers - 1
        });
        handles
    }

    #[test]
    fn callers_queued_behind_a_leader_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        let writer = wal.writer.lock().unwrap();
        let handles = queue_behind_blocked_leader(&wal, 4);
        drop(writer);
        let mut lsns: Vec<Lsn> = handles.into_iter().map(|handle| handle.join().unwrap().unwrap()).collect();
        lsns.sort_unstable();
        assert_eq!(lsns, [1, 2, 3, 4]);
        // The blocked leader's own record, then the three queued ones together.
        assert_eq!(wal.writer.lock().unwrap().test_hooks.batches_written, 2);
        assert_eq!(wal.last_lsn(), 4);
    }

    #[test]
    fn a_failed_sync_fails_every_caller_and_poisons_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path());
        assert_eq!(wal.append(b"before").unwrap(), 1);
        let mut writer = wal.writer.lock().unwrap();
        writer.test_hooks.fail_next_sync = true;
        let handles = queue_behind_blocked_leader(&wal, 4);
        drop(writer);
        for handle in handles {
            let error = handle.join().unwrap().unwrap_err();
            assert!(matches!(error, WalError::CommitFailed { .. }), "{error:?}");
            assert_eq!(error.kind(), ErrorKind::Unavailable);
        }
        let error = wal.append(b"after").unwrap_err();
        assert!(matches!(error, WalError::Poisoned { .. }), "{error:?}");
        assert_eq!(wal.last_lsn(), 1);

        drop(wal);
        let (wal, records) = open(dir.path());
        // The failed group was written but not synced: it may or may not survive.
        assert_eq!(records[0], (1, b"before".to_vec()));
        assert!(records.len() <= 2, "only the leader's own record was written");
        assert_eq!(wal.append(b"again").unwrap(), records.len() as Lsn + 1);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_wal, _) = open(dir.path());
        let error = Wal::open(dir.path(), WalOptions::default()).err().unwrap();
        assert!(matches!(error, WalError::DirInUse { .. }), "{error:?}");
        assert_eq!(error.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn wal_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Wal>();
    }
}
