//! TLS for listening sources (syslog over TLS, RFC 5425): a rustls server
//! configuration from PEM files, loaded when the pipeline is compiled so
//! that `pipeline validate` reports a missing or unreadable certificate
//! before anything listens.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// A server configuration presenting `cert` (a PEM chain, leaf first) with
/// `key`; with `client_ca`, clients must present a certificate that CA
/// issued (mutual TLS).
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = read_certs(cert)?;
    let bytes = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|err| format!("{}: no PEM private key ({err})", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(path)? {
                roots.add(ca).map_err(|err| format!("{}: {err}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| format!("{}: {err}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| format!("{}: {err}", cert.display()))?;
    // No TLS 1.3 session tickets: they are the only thing the server writes
    // after the handshake, and a sender that sends its messages and closes
    // without reading leaves them unread, so its kernel answers with a
    // reset that can discard messages not yet read on this side.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}
