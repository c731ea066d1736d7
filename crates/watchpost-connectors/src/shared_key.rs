//! SharedKey signing for the HTTP Data Collector API (ingestion spec 1.3).
//!
//! Written here rather than shared with `watchpost-ingest`: connectors must
//! not depend on the ingest crate (style guide 1.3), and the client side is a
//! dozen lines.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A workspace id and its decoded shared key.
#[derive(Clone)]
pub struct SharedKey {
    pub workspace_id: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never appears in logs or debug output.
        f.debug_struct("SharedKey").field("workspace_id", &self.workspace_id).finish_non_exhaustive()
    }
}

impl SharedKey {
    /// Decodes a base64 workspace key.
    pub fn new(workspace_id: &str, base64_key: &str) -> Result<SharedKey, String> {
        let key = BASE64.decode(base64_key.trim()).map_err(|_| "the workspace key is not valid base64".to_string())?;
        if workspace_id.trim().is_empty() {
            return Err("the workspace id is empty".to_string());
        }
        Ok(SharedKey { workspace_id: workspace_id.trim().to_string(), key })
    }

    /// Returns the `Authorization` header value for a POST of
    /// `content_length` bytes sent at `date` (RFC 1123).
    pub fn authorization(&self, content_length: usize, content_type: &str, date: &str) -> String {
        let string_to_sign = format!("POST\n{content_length}\n{content_type}\nx-ms-date:{date}\n/api/logs");
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(string_to_sign.as_bytes());
        let signature = BASE64.encode(mac.finalize().into_bytes());
        format!("SharedKey {}:{signature}", self.workspace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vector() {
        // ingestion-api.md 1.3: the azure-data-collector package's vector.
        let key = SharedKey::new("customer_id", "c2hhcmVkX2tleQ==").unwrap();
        assert_eq!(
            key.authorization(1, "application/json", "Sat, 01 Jan 2000 01:01:01 GMT"),
            "SharedKey customer_id:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE="
        );
    }

    #[test]
    fn bad_key_is_an_error() {
        assert!(SharedKey::new("ws", "not base64!").is_err());
        assert!(SharedKey::new("", "c2hhcmVkX2tleQ==").is_err());
    }
}
