//! The Logs Ingestion API (DCR based), spec section 2.
//!
//! Two pure pieces:
//! * [`DcrDefinition::parse`] reads a data collection rule in Azure's JSON
//!   shape (`streamDeclarations`, `destinations`, `dataFlows`) and checks
//!   what it can without a query engine (names, column types, flows that
//!   name declared streams, output streams of the form `Custom-X_CL` or
//!   `Microsoft-X`). Checking `transformKql` is the engine's job.
//! * [`decode_stream`] turns a request body (JSON array of objects, gzip or
//!   not) into an Arrow batch of exactly the stream's declared columns,
//!   values coerced to the declared types, and reports the properties it
//!   dropped because the stream does not declare them, so the server can
//!   say so instead of dropping them silently as Azure does.
//!
//! Watchpost absorbs the limits Azure pushes onto clients: a body may be up
//! to a configurable size (not 1 MB) and span any time range.

mod decode;
mod definition;
mod error;

pub use self::decode::{
    decode_stream, gunzip_limited, project_records, stamp_time_generated, DecodedStream, DroppedColumns, Unconvertible,
};
pub(crate) use self::decode::{json_records, parse_datetime, Builder as ColumnBuilder, RecordsError};
pub use self::definition::{DataFlow, DcrDefinition, Destination, StreamDeclaration};
pub use self::error::{codes, LogsIngestionError};

/// Default largest body, compressed or not: 30 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 30 * 1024 * 1024;

/// api-versions the ingestion endpoint accepts.
pub const API_VERSIONS: [&str; 2] = ["2023-01-01", "2021-11-01-preview"];
