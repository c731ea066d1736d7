//! The error a Logs Ingestion request or a DCR definition is refused with.

/// Error codes, sent in the body and in `x-ms-error-code` (Azure's exact
/// strings are undocumented; the SDKs map by status only).
pub mod codes {
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const INVALID_API_VERSION: &str = "InvalidApiVersion";
    pub const INVALID_JSON: &str = "InvalidJson";
    pub const INVALID_TOKEN: &str = "InvalidToken";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const NOT_FOUND: &str = "NotFound";
    pub const CONTENT_LENGTH_LIMIT_EXCEEDED: &str = "ContentLengthLimitExceeded";
    pub const INVALID_DATA_COLLECTION_RULE: &str = "InvalidDataCollectionRule";
    pub const INVALID_TRANSFORM_QUERY: &str = "InvalidTransformQuery";
    pub const INTERNAL_ERROR: &str = "InternalServerError";
}

/// A refused request: HTTP status, error code and message, in the
/// Azure.Core error shape `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LogsIngestionError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl LogsIngestionError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> LogsIngestionError {
        LogsIngestionError { status, code, message: message.into() }
    }

    /// A 400 about a data collection rule definition.
    pub fn invalid_rule(message: impl Into<String>) -> LogsIngestionError {
        LogsIngestionError::new(400, codes::INVALID_DATA_COLLECTION_RULE, message)
    }

    /// The JSON error body.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}
