//! The write path of Watchpost.
//!
//! This crate owns the rules that turn what a client sends into rows of a
//! table: the HTTP Data Collector API ("custom logs v1",
//! [`data_collector`], including the Watchpost rule that writes a standard
//! table with `x-watchpost-standard-table: true`) and the Logs Ingestion
//! API ([`logs_ingestion`]). It deliberately does not speak HTTP types (the server
//! crate hands it plain request structs) and does no storage: it returns Arrow
//! record batches plus the columns the table must gain.
//!
//! Start reading at [`data_collector::validate`](fn@data_collector::validate) and
//! [`data_collector::decode`](fn@data_collector::decode). The normative contract is section 1 of
//! `spec/ingestion-api.md`.
//!
//! Invariants:
//! * a request is either accepted whole or rejected with the status and error
//!   code Azure uses; user input never panics;
//! * signatures are compared in constant time.

pub mod data_collector;
pub mod logs_ingestion;
