//! The crate's operational error type and its coarse classification.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Lsn;

/// Result alias used by every fallible function of this crate.
pub type WalResult<T> = Result<T, WalError>;

/// Coarse classification of a failure, used for retry decisions and status codes.
///
/// Mirrors the workspace-wide kind set of the style guide (section 4.3); it moves to the shared
/// crate once one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    Unauthorized,
    Forbidden,
    Conflict,
    Throttled,
    Unavailable,
    Timeout,
    Internal,
}

/// Everything that can go wrong while opening, appending to or truncating a log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("failed to create wal directory `{path}`")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock wal directory `{path}`")]
    LockDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("wal directory `{path}` is already open in another `Wal`")]
    DirInUse { path: PathBuf },
    #[error("failed to list wal directory `{path}`")]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to sync wal directory `{path}`")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read wal segment `{path}`")]
    ReadSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to cut the corrupt tail of wal segment `{path}` at offset {offset}")]
    RepairSegment {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("failed to create wal segment `{path}`")]
    CreateSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write wal segment `{path}`")]
    WriteSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to sync wal segment `{path}`")]
    SyncSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to delete wal segment `{path}`")]
    DeleteSegment {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// The group commit carrying record `lsn` failed; every caller of that group gets this.
    #[error("group commit of record {lsn} failed")]
    CommitFailed {
        lsn: Lsn,
        #[source]
        source: Arc<WalError>,
    },
    /// An earlier commit failed, so the on-disk state is unknown; reopen the log to recover.
    #[error("wal is unusable after an earlier commit failure; reopen it to recover")]
    Poisoned {
        #[source]
        source: Arc<WalError>,
    },
}

impl WalError {
    /// Returns the coarse classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::RecordTooLarge { .. } => ErrorKind::InvalidInput,
            WalError::DirInUse { .. } => ErrorKind::Conflict,
            WalError::CreateDir { .. }
            | WalError::LockDir { .. }
            | WalError::ListDir { .. }
            | WalError::SyncDir { .. }
            | WalError::ReadSegment { .. }
            | WalError::RepairSegment { .. }
            | WalError::CreateSegment { .. }
            | WalError::WriteSegment { .. }
            | WalError::SyncSegment { .. }
            | WalError::DeleteSegment { .. }
            | WalError::CommitFailed { .. }
            | WalError::Poisoned { .. } => ErrorKind::Unavailable,
        }
    }
}
