//! Connectors: clients that ship events to a workspace, and the sources
//! that read them (file tailing), the disk buffer and the pipeline runner.
//! Sinks speak HTTP only as a client; this crate never depends on storage,
//! engine or ingest (style guide 1.3).

pub mod data_collector;
pub mod disk_buffer;
pub mod file_source;
pub mod framing;
pub mod host;
pub mod http_source;
pub mod process_sources;
pub mod runner;
pub mod shared_key;
pub mod sinks;
pub mod stats;
pub mod syslog_source;
pub mod tls;

pub use data_collector::{DataCollectorClient, PostOptions, PostOutcome, RetryPolicy};
pub use shared_key::SharedKey;
