//! The error a Data Collector request is rejected with: an HTTP status, the
//! Azure error code and a message, rendered as Azure's JSON error body.

use serde::Serialize;

/// Error codes Azure's Data Collector API uses (spec section 1.7), plus the
/// Watchpost code for an oversized body.
pub mod codes {
    pub const INACTIVE_CUSTOMER: &str = "InactiveCustomer";
    pub const INVALID_API_VERSION: &str = "InvalidApiVersion";
    pub const INVALID_CUSTOMER_ID: &str = "InvalidCustomerId";
    pub const INVALID_DATA_FORMAT: &str = "InvalidDataFormat";
    pub const INVALID_LOG_TYPE: &str = "InvalidLogType";
    pub const MISSING_API_VERSION: &str = "MissingApiVersion";
    pub const MISSING_CONTENT_TYPE: &str = "MissingContentType";
    pub const MISSING_LOG_TYPE: &str = "MissingLogType";
    pub const UNSUPPORTED_CONTENT_TYPE: &str = "UnsupportedContentType";
    pub const INVALID_AUTHORIZATION: &str = "InvalidAuthorization";
    /// Watchpost's code for 413 (Azure answers 404 without a code).
    pub const REQUEST_TOO_LARGE: &str = "RequestTooLarge";
    pub const UNSPECIFIED_ERROR: &str = "UnspecifiedError";
}

/// A rejected Data Collector request.
///
/// `status` is the HTTP status to answer with; `code` is the Azure error
/// code (`None` for 404/405, which Azure answers without one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DataCollectorError {
    pub status: u16,
    pub code: Option<&'static str>,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(rename = "Message")]
    message: &'a str,
}

impl DataCollectorError {
    pub fn new(status: u16, code: Option<&'static str>, message: impl Into<String>) -> DataCollectorError {
        DataCollectorError { status, code, message: message.into() }
    }

    /// A 400 Bad Request with an Azure error code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> DataCollectorError {
        DataCollectorError::new(400, Some(code), message)
    }

    /// A 400 `InvalidDataFormat`.
    pub fn invalid_data_format(message: impl Into<String>) -> DataCollectorError {
        DataCollectorError::bad_request(codes::INVALID_DATA_FORMAT, message)
    }

    /// A 403 `InvalidAuthorization`.
    pub fn invalid_authorization(message: impl Into<String>) -> DataCollectorError {
        DataCollectorError::new(403, Some(codes::INVALID_AUTHORIZATION), message)
    }

    /// A 413 `RequestTooLarge`.
    pub fn too_large(message: impl Into<String>) -> DataCollectorError {
        DataCollectorError::new(413, Some(codes::REQUEST_TOO_LARGE), message)
    }

    /// A 500 `UnspecifiedError`.
    pub fn internal(message: impl Into<String>) -> DataCollectorError {
        DataCollectorError::new(500, Some(codes::UNSPECIFIED_ERROR), message)
    }

    /// Returns the Azure-style JSON body `{"Error":"<code>","Message":"<text>"}`.
    /// The `Error` key is left out when there is no code.
    pub fn body_json(&self) -> String {
        let body = ErrorBody { error: self.code, message: &self.message };
        serde_json::to_string(&body).expect("serialising two strings cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_json_has_azure_shape() {
        let error = DataCollectorError::bad_request(codes::MISSING_LOG_TYPE, "the \"Log-Type\" header is missing");
        assert_eq!(error.body_json(), r#"{"Error":"MissingLogType","Message":"the \"Log-Type\" header is missing"}"#);
        let error = DataCollectorError::new(404, None, "not found");
        assert_eq!(error.body_json(), r#"{"Message":"not found"}"#);
    }
}
