//! https: the server's certificate (given, or a self-signed CA and a server
//! certificate made with `rcgen` and kept in `<data-dir>/tls/`) and a TLS
//! listener for `axum::serve`.
//!
//! The Azure SDKs refuse to send bearer tokens over plain http, so the
//! Logs Ingestion and query APIs need https to be used with them.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("TLS file {path} holds no usable {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("generating the self-signed certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the self-signed files live in a data directory.
#[derive(Debug, Clone)]
pub struct SelfSignedPaths {
    pub dir: PathBuf,
    /// The CA certificate clients should trust.
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl SelfSignedPaths {
    pub fn in_data_dir(data_dir: &Path) -> SelfSignedPaths {
        let dir = data_dir.join("tls");
        SelfSignedPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            dir,
        }
    }
}

/// Makes (once) a CA and a server certificate for `localhost`,
/// `127.0.0.1`, `::1` and `extra_names`, signed by that CA, in
/// `<data-dir>/tls/`. Existing files are kept, so clients that trust
/// `ca.pem` keep trusting the server across restarts.
pub fn ensure_self_signed(data_dir: &Path, extra_names: &[String]) -> Result<SelfSignedPaths, TlsError> {
    let paths = SelfSignedPaths::in_data_dir(data_dir);
    if paths.ca_cert.exists() && paths.server_cert.exists() && paths.server_key.exists() {
        return Ok(paths);
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(&paths.dir).map_err(io_err(&paths.dir))?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Watchpost local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra_names.iter().filter(|name| !name.is_empty()).cloned());
    names.dedup();
    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(names)?;
    server_params.distinguished_name.push(DnType::CommonName, "watchpost");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    write_private(&paths.ca_key, ca_key.serialize_pem().as_bytes())?;
    write_private(&paths.server_key, server_key.serialize_pem().as_bytes())?;
    // The chain the server presents: its certificate, then the CA.
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());
    std::fs::write(&paths.server_cert, chain).map_err(io_err(&paths.server_cert))?;
    std::fs::write(&paths.ca_cert, ca_cert.pem()).map_err(io_err(&paths.ca_cert))?;
    Ok(paths)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })?;
    file.write_all(bytes).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

/// A rustls server configuration from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source });
    let cert_bytes = read(cert)?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_bytes).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Pem { path: cert.to_path_buf(), what: "certificate" });
    }
    let key_bytes = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|_| TlsError::Pem { path: key.to_path_buf(), what: "private key" })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS listener for `axum::serve`. Handshakes run in tasks of their own,
/// so a slow or broken client does not hold up others; failed handshakes
/// are logged and dropped.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::debug!(error = %err, "TcpAcceptFailed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TlsHandshakeFailed"),
                        Err(_) => tracing::debug!(%peer, "TlsHandshakeTimedOut"),
                    }
                });
            }
        });
        Ok(TlsListener { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_files_are_made_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ensure_self_signed(dir.path(), &["wp.example".to_string()]).unwrap();
        let ca = std::fs::read_to_string(&paths.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&paths.server_cert, &paths.server_key).unwrap();
        let again = ensure_self_signed(dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&again.ca_cert).unwrap(), ca);
        assert!(matches!(server_config(&paths.ca_cert, &paths.ca_cert), Err(TlsError::Pem { .. })));
    }
}
