//! An append-only, segmented, checksummed write-ahead log of opaque byte records.
//!
//! The crate owns durability of records between their arrival and the moment the caller has
//! persisted them elsewhere: appending with group commit, recovery after a crash, and deleting
//! segments that are no longer needed. It deliberately knows nothing about what a record
//! contains (no Arrow, tables or tenants).
//!
//! Start reading at [`Wal`]: [`Wal::open`] recovers and returns the records to replay,
//! [`Wal::append`] (or [`Wal::append_buf`], which copies nothing) makes one record durable, [`Wal::truncate_through`] drops old segments.
//! The on-disk frame format is described in the `frame` module, recovery rules in the
//! `recovery` module.
//!
//! # Invariants
//!
//! - LSNs start at 1 and increase by one per acknowledged record; an acknowledged LSN is
//!   never handed out again, also across reopens.
//! - A record is acknowledged only after it has been written and, when
//!   [`WalOptions::fsync`] is set, synced; records of one group are synced together.
//! - Each segment file is named after the LSN of its first record and holds consecutive
//!   LSNs; the last segment is the only one that is written to.
//! - After a failed commit the log refuses further appends until it is reopened, because the
//!   state of the file after a failed write or sync is unknown.

mod direct;
mod error;
mod frame;
mod recovery;
mod segment;
mod wal;
mod writer;

pub use error::{ErrorKind, WalError, WalResult};
pub use frame::{RecordBuf, MAX_RECORD_BYTES};
pub use wal::{Lsn, Record, Wal, WalOptions};
