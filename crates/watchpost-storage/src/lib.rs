//! Durable, columnar storage of log rows.
//!
//! The write path: [`Store::append`] writes a record to the write-ahead log
//! (`watchpost-wal`, group-committed and fsynced), then adds the Arrow batch
//! to the table's in-memory buffer, where queries see it at once. A flush
//! ([`Store::flush`]) turns buffers into Parquet segments (`segment`), names
//! them in the catalogue (`catalog`) in one atomic write, and then trims the
//! WAL. Start-up replays the WAL records the catalogue does not cover.
//!
//! Readers take a [`TableSnapshot`]: the segment files plus the buffered
//! batches, all presented with the table's current schema (columns a batch
//! lacks read as nulls).
//!
//! Invariants: an append returns only after its record is durable; a segment
//! file is visible only once the catalogue names it, and its rows are
//! dropped from memory in the same step; the crate knows nothing of HTTP,
//! KQL or DataFusion.

mod catalog;
mod record;
mod segment;
mod store;
pub mod terms;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use watchpost_schema::KqlType;

pub use catalog::DEFAULT_RETENTION_DAYS;
pub use segment::{dictionary_hints, SegmentCodec, SegmentMeta};
pub use store::{align_batch, AppendOutcome, AppendRequest, FlushStats, Store, StoreOptions, TableInfo, TableSnapshot};

/// What an append stored: how many rows, and which columns they used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub rows: u64,
    pub columns: Vec<String>,
}

/// Storage failures. User mistakes never end up here; these are operational.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write-ahead log: {0}")]
    Wal(#[from] watchpost_wal::WalError),
    #[error("arrow: {0}")]
    Arrow(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("catalog is corrupt: {0}")]
    CorruptCatalog(String),
    #[error("WAL record is corrupt: {0}")]
    CorruptRecord(String),
    #[error("an append with the same idempotency key is still in flight")]
    DuplicateInFlight,
    #[error("the store is shut down")]
    ShutDown,
    /// A batch for a table with a declared schema has fields the table does
    /// not declare; nothing of the batch is stored.
    #[error("table `{table}` has no column{} {}; add the column to the table first", if columns.len() == 1 { "" } else { "s" }, columns.iter().map(|column| format!("`{column}`")).collect::<Vec<_>>().join(", "))]
    UndeclaredColumns { table: String, columns: Vec<String> },
    /// A column of a batch (or of a table change) has another type than the
    /// table declares.
    #[error("column `{column}` of table `{table}` is {declared}, not {found}")]
    ColumnTypeMismatch { table: String, column: String, declared: KqlType, found: KqlType },
}

/// Coarse classes of [`StorageError`], for status codes and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    Io,
    Corruption,
    Conflict,
    Unavailable,
    /// The caller's data does not fit the table; retrying will not help.
    InvalidInput,
}

impl StorageError {
    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::Io { .. } | StorageError::Wal(_) | StorageError::Arrow(_) | StorageError::Parquet(_) => {
                StorageErrorKind::Io
            }
            StorageError::CorruptCatalog(_) | StorageError::CorruptRecord(_) => StorageErrorKind::Corruption,
            StorageError::DuplicateInFlight => StorageErrorKind::Conflict,
            StorageError::ShutDown => StorageErrorKind::Unavailable,
            StorageError::UndeclaredColumns { .. } | StorageError::ColumnTypeMismatch { .. } => {
                StorageErrorKind::InvalidInput
            }
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn arrow(err: arrow::error::ArrowError) -> StorageError {
        StorageError::Arrow(err.to_string())
    }

    pub(crate) fn parquet(err: parquet::errors::ParquetError) -> StorageError {
        StorageError::Parquet(err.to_string())
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
