//! Workspace management: saved functions (parsers) and table declarations,
//! reached through the REST API (`/v1/workspaces/{id}/functions/{name}`,
//! `/v1/workspaces/{id}/tables/{name}`) and through Kusto's control commands
//! (`.create function`, `.show tables`, ...) sent as query text.
//!
//! This crate holds the rules: what a valid function or table is, what each
//! command does, and what it answers. It speaks no HTTP; the server passes
//! it parsed JSON and query text and maps [`ControlError::kind`] to a status.
//!
//! Where the state lives, and why: saved functions are control-plane state
//! in the metastore (`metastore.json`), beside the workspaces they belong
//! to; they hold no rows and change rarely. Table declarations live in the
//! storage catalogue (`catalog.json`), because that is where each table's
//! schema and retention already are: the append path checks rows against
//! it, and a second copy elsewhere could disagree with it.
//!
//! Start reading at [`Control`], [`commands::parse_command`] and
//! [`functions::FunctionSpec`].

pub mod commands;
pub mod functions;
pub mod tables;

#[cfg(test)]
mod query_tests;

use std::sync::Arc;

use serde_json::Value as Json;
use watchpost_engine::{FunctionSource, StoredFunction};
use watchpost_metastore::{Metastore, MetastoreError};
use watchpost_schema::KqlType;
use watchpost_storage::{StorageError, StorageErrorKind, Store};

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's key may read but not change the workspace.
    #[error("{0}")]
    Forbidden(String),
    #[error("metastore: {0}")]
    Metastore(#[source] MetastoreError),
    #[error("storage: {0}")]
    Storage(#[source] StorageError),
}

/// Coarse classes of [`ControlError`], for status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlErrorKind {
    InvalidInput,
    NotFound,
    Conflict,
    Forbidden,
    Internal,
}

impl ControlError {
    pub fn kind(&self) -> ControlErrorKind {
        match self {
            ControlError::InvalidInput(_) => ControlErrorKind::InvalidInput,
            ControlError::NotFound(_) => ControlErrorKind::NotFound,
            ControlError::Conflict(_) => ControlErrorKind::Conflict,
            ControlError::Forbidden(_) => ControlErrorKind::Forbidden,
            ControlError::Metastore(err) => match err {
                MetastoreError::FunctionExists(_) => ControlErrorKind::Conflict,
                MetastoreError::UnknownFunction(_) | MetastoreError::UnknownWorkspace(_) => ControlErrorKind::NotFound,
                MetastoreError::InvalidWorkspaceId(_)
                | MetastoreError::InvalidKey(_)
                | MetastoreError::InvalidRuleName(_) => ControlErrorKind::InvalidInput,
                MetastoreError::Io { .. } | MetastoreError::Corrupt { .. } => ControlErrorKind::Internal,
            },
            ControlError::Storage(err) => match err.kind() {
                StorageErrorKind::InvalidInput => ControlErrorKind::InvalidInput,
                StorageErrorKind::Conflict => ControlErrorKind::Conflict,
                _ => ControlErrorKind::Internal,
            },
        }
    }
}

impl From<MetastoreError> for ControlError {
    fn from(err: MetastoreError) -> ControlError {
        ControlError::Metastore(err)
    }
}

impl From<StorageError> for ControlError {
    fn from(err: StorageError) -> ControlError {
        ControlError::Storage(err)
    }
}

pub type ControlResult<T> = Result<T, ControlError>;

/// What the caller's key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A query key: `.show` commands and reads only.
    ReadOnly,
    /// A shared key: everything.
    ReadWrite,
}

/// A control command's answer: one table, as Kusto answers commands.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub columns: Vec<(String, KqlType)>,
    pub rows: Vec<Vec<Json>>,
}

/// The management operations of one data directory.
#[derive(Debug, Clone)]
pub struct Control {
    pub metastore: Arc<Metastore>,
    pub store: Arc<Store>,
}

impl Control {
    pub fn new(metastore: Arc<Metastore>, store: Arc<Store>) -> Control {
        Control { metastore, store }
    }
}

/// The metastore's saved functions, as the query engine looks them up.
#[derive(Debug)]
pub struct MetastoreFunctions(pub Arc<Metastore>);

impl FunctionSource for MetastoreFunctions {
    fn function(&self, workspace: &str, name: &str) -> Option<StoredFunction> {
        let saved = self.0.function(workspace, name)?;
        Some(StoredFunction { parameters: saved.parameters, body: saved.body })
    }
}

/// Whether query text is a control command (it starts with a dot).
pub fn is_command(text: &str) -> bool {
    text.trim_start().starts_with('.')
}

fn require_write(access: Access, what: &str) -> ControlResult<()> {
    match access {
        Access::ReadWrite => Ok(()),
        Access::ReadOnly => {
            Err(ControlError::Forbidden(format!("a query key can read the workspace but not {what}; use a shared key")))
        }
    }
}

/// Whether `name` is a plain KQL identifier (letters, digits, `_`; not
/// starting with a digit), at most 256 characters.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    name.len() <= 256
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
