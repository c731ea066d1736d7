//! The HTTP Data Collector API ("custom logs v1"), spec section 1.
//!
//! Two phases, both pure:
//! 1. [`validate`](fn@validate) checks a [`DataCollectorRequest`] in the spec's order
//!    (api-version, Authorization, workspace, Content-Type, Log-Type,
//!    x-ms-date, signature, body size and encoding) and yields a
//!    [`ValidatedPost`] with the JSON body ready to parse;
//! 2. [`decode`](fn@decode) parses that body against the table's current columns,
//!    infers the `_s _d _b _t _g` columns and returns a [`DecodedBatch`]:
//!    an Arrow record batch with the standard columns first, plus the
//!    columns the table must gain.
//!
//! Watchpost rule: with [`STANDARD_TABLE_HEADER`]`: true`, `Log-Type` names
//! a standard table Watchpost ships (`Syslog`, `CommonSecurityLog`,
//! `Heartbeat`, ...) and the rows go into that table itself: each property
//! is the column of the same name, converted to its declared type, and a
//! property that names no column or a value that does not convert refuses
//! the whole body ([`TableKind::Standard`], `standard.rs`). Azure ignores
//! the header and writes `{Log-Type}_CL`.
//!
//! Storage, HTTP and key storage are the caller's business; keys come in
//! through the [`WorkspaceKeys`] trait.

mod auth;
mod columns;
mod decode;
mod error;
pub(crate) mod infer;
mod standard;
mod validate;

use std::borrow::Cow;

use arrow::record_batch::RecordBatch;
use watchpost_schema::ColumnDef;

pub use self::auth::{authorization, sign};
pub use self::decode::decode;
pub use self::error::{codes, DataCollectorError};
pub use self::validate::validate;

/// Largest accepted body, compressed or not: 30 MB (spec 1.6).
pub const MAX_BODY_BYTES: usize = 30 * 1024 * 1024;

/// Longest stored field value in bytes; longer values are truncated (spec 1.6).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Most columns a table may have; values for further columns are dropped
/// with a warning (spec 1.6).
pub const MAX_TABLE_COLUMNS: usize = 500;

/// Longest accepted property name, in characters (spec 1.4).
pub const MAX_PROPERTY_NAME_CHARS: usize = 500;

/// Longest accepted `Log-Type`, in characters (spec 1.2).
pub const MAX_LOG_TYPE_CHARS: usize = 100;

/// The only api-version the API defines.
pub const API_VERSION: &str = "2016-04-01";

/// Watchpost's request header asking for a standard table: with the value
/// `true`, `Log-Type` names the table itself (no `_CL`, no suffixes).
pub const STANDARD_TABLE_HEADER: &str = "x-watchpost-standard-table";

/// Which kind of table a post writes, and so how properties become columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// `{Log-Type}_CL`, columns inferred with Azure's `_s _d _b _t _g`
    /// suffixes (the API as Azure defines it).
    Custom,
    /// The standard table named by `Log-Type`, asked for with
    /// [`STANDARD_TABLE_HEADER`]: each property is the column of its name,
    /// with the column's declared type.
    Standard,
}

/// One Data Collector request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct DataCollectorRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The query string without the leading `?`.
    pub query: Option<&'a str>,
    /// Header names as received; lookups are case-insensitive and take the
    /// first header of a name.
    pub headers: &'a [(String, String)],
    /// The body bytes exactly as received (still compressed if
    /// `Content-Encoding: gzip`).
    pub body: &'a [u8],
}

/// The key state of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceKeyState {
    /// Decoded key bytes. An empty key never matches a signature.
    Active { primary: Vec<u8>, secondary: Vec<u8> },
    /// The workspace exists but is disabled or deleted.
    Inactive,
}

/// Where [`validate`](fn@validate) looks up workspace keys.
pub trait WorkspaceKeys {
    /// Returns the keys of `workspace_id`, or `None` if there is no such
    /// workspace. Workspace ids that are GUIDs arrive normalised to
    /// lower-case 8-4-4-4-12 form.
    fn keys(&self, workspace_id: &str) -> Option<WorkspaceKeyState>;
}

/// A request that passed every check before body parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedPost<'a> {
    /// The workspace from the Authorization header (normalised if a GUID).
    pub workspace_id: String,
    /// The target table: `Log-Type` + `_CL`, or `Log-Type` itself for a
    /// standard table.
    pub table: String,
    /// How the body's properties map to the table's columns.
    pub table_kind: TableKind,
    /// The `time-generated-field` header; `None` if absent or empty.
    pub time_generated_field: Option<String>,
    /// The `x-ms-AzureResourceId` header as sent; `None` if absent or empty.
    pub resource_id: Option<String>,
    /// The JSON body, decompressed if it arrived gzip-encoded.
    pub body: Cow<'a, [u8]>,
}

impl ValidatedPost<'_> {
    /// Returns a copy that owns its body, e.g. to move it to another thread.
    pub fn into_owned(self) -> ValidatedPost<'static> {
        ValidatedPost {
            workspace_id: self.workspace_id,
            table: self.table,
            table_kind: self.table_kind,
            time_generated_field: self.time_generated_field,
            resource_id: self.resource_id,
            body: Cow::Owned(self.body.into_owned()),
        }
    }
}

/// The rows of one request, ready to append to the table.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// The columns this batch uses: `TenantId`, `SourceSystem`,
    /// `TimeGenerated`, `_TimeReceived`, `Type`, `_ResourceId`, then the
    /// payload columns in order of first use. Fields carry `kql.type`
    /// metadata.
    pub batch: RecordBatch,
    /// Columns of the batch the table did not have, in batch order.
    pub new_columns: Vec<ColumnDef>,
    /// Things the client should know but that did not fail the request
    /// (dropped values beyond the column limit, truncated values).
    pub warnings: Vec<String>,
    pub n_rows: usize,
}
