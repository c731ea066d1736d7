//! SharedKey signing and verification (spec section 1.3).
//!
//! The string to sign is
//! `POST\n{content-length}\n{content-type}\nx-ms-date:{date}\n/api/logs` and
//! the signature is the base64 HMAC-SHA256 of it under the decoded workspace
//! key. Verification compares in constant time.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 signature in bytes.
const SIGNATURE_LEN: usize = 32;

/// Returns the base64 SharedKey signature of a Data Collector request.
///
/// `key` is the decoded workspace key (not its base64 text).
pub fn sign(key: &[u8], content_length: usize, content_type: &str, date: &str) -> String {
    BASE64.encode(signature_bytes(key, content_length, content_type, date))
}

/// Returns the whole `Authorization` header value,
/// `SharedKey {workspace_id}:{signature}`.
pub fn authorization(workspace_id: &str, key: &[u8], content_length: usize, content_type: &str, date: &str) -> String {
    format!("SharedKey {workspace_id}:{}", sign(key, content_length, content_type, date))
}

fn signature_bytes(key: &[u8], content_length: usize, content_type: &str, date: &str) -> [u8; SIGNATURE_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(b"POST\n");
    mac.update(content_length.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(content_type.as_bytes());
    mac.update(b"\nx-ms-date:");
    mac.update(date.as_bytes());
    mac.update(b"\n/api/logs");
    mac.finalize().into_bytes().into()
}

/// A parsed `Authorization: SharedKey {workspace}:{signature}` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedKeyAuthorization<'a> {
    pub(crate) workspace_id: &'a str,
    pub(crate) signature: [u8; SIGNATURE_LEN],
}

/// Parses an `Authorization` header value. Returns `None` unless it is
/// `SharedKey` (scheme compared case-insensitively), a non-empty workspace
/// id, `:` and a base64 signature of 32 bytes.
pub(crate) fn parse_authorization(value: &str) -> Option<SharedKeyAuthorization<'_>> {
    let value = value.trim();
    let (scheme, credentials) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("SharedKey") {
        return None;
    }
    let (workspace_id, signature_text) = credentials.trim().rsplit_once(':')?;
    if workspace_id.is_empty() || signature_text.is_empty() {
        return None;
    }
    let decoded = BASE64.decode(signature_text).ok()?;
    let signature: [u8; SIGNATURE_LEN] = decoded.try_into().ok()?;
    Some(SharedKeyAuthorization { workspace_id, signature })
}

/// What a signature is checked against: the signed header values as
/// received and every Content-Length the client may have signed.
pub(crate) struct SignedRequest<'a> {
    pub(crate) content_type: &'a str,
    pub(crate) date: &'a str,
    /// Received byte count first, then (if different) the character count.
    pub(crate) content_lengths: &'a [usize],
}

/// Returns whether `signature` was made with one of `keys` over `request`.
/// Empty keys never match (an empty secondary key means "no key").
pub(crate) fn verify(signature: &[u8; SIGNATURE_LEN], keys: &[&[u8]], request: &SignedRequest<'_>) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in keys.iter().filter(|key| !key.is_empty()) {
        for &content_length in request.content_lengths {
            let expected = signature_bytes(key, content_length, request.content_type, request.date);
            matched |= expected.ct_eq(signature);
        }
    }
    matched.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vector() {
        let key = BASE64.decode("c2hhcmVkX2tleQ==").unwrap();
        assert_eq!(key, b"shared_key");
        let date = "Sat, 01 Jan 2000 01:01:01 GMT";
        assert_eq!(sign(&key, 1, "application/json", date), "p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=");
        assert_eq!(
            authorization("customer_id", &key, 1, "application/json", date),
            "SharedKey customer_id:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE="
        );
    }

    #[test]
    fn parses_authorization_header() {
        let parsed = parse_authorization("SharedKey customer_id:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=").unwrap();
        assert_eq!(parsed.workspace_id, "customer_id");
        assert_eq!(
            parse_authorization("sharedkey  ws:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=").unwrap().workspace_id,
            "ws"
        );
        for bad in [
            "",
            "SharedKey",
            "Bearer ws:p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=",
            "SharedKey ws",
            "SharedKey :p9rltWgAbXzQtX8iV4P1E95fvA3n7imvysp16fPUXKE=",
            "SharedKey ws:",
            "SharedKey ws:not base64!",
            "SharedKey ws:c2hvcnQ=",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn verify_accepts_either_key_and_rejects_empty_keys() {
        let date = "Sat, 01 Jan 2000 01:01:01 GMT";
        let signature_text = sign(b"second", 10, "application/json", date);
        let signature: [u8; 32] = BASE64.decode(signature_text).unwrap().try_into().unwrap();
        let request = SignedRequest { content_type: "application/json", date, content_lengths: &[10] };
        assert!(verify(&signature, &[b"first", b"second"], &request));
        assert!(!verify(&signature, &[b"first"], &request));
        let empty_key_signature: [u8; 32] =
            BASE64.decode(sign(b"", 10, "application/json", date)).unwrap().try_into().unwrap();
        assert!(!verify(&empty_key_signature, &[b"first", b""], &request));
    }
}
