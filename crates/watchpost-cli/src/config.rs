//! `watchpost serve` configuration: the TOML file's shape, merged with flags
//! (flags win), then validated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    /// `x-ms-date` tolerance in seconds; 0 turns the check off.
    pub date_window_seconds: Option<u64>,
    /// Flush buffers to Parquet once they hold this many MiB.
    pub flush_buffer_mib: Option<u64>,
    /// Flush buffers at least this often, in seconds.
    pub flush_interval_seconds: Option<u64>,
    /// Turn off WAL fsync (benchmarks of the in-memory path only).
    pub wal_fsync: Option<bool>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceEntry>,
    /// PEM certificate chain and key to serve https with.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve https with a certificate made and kept in `<data-dir>/tls/`.
    pub tls_self_signed: Option<bool>,
    /// Largest Logs Ingestion request body in MiB (wire and decompressed).
    pub logs_ingestion_max_body_mib: Option<u64>,
    /// MaxMind City database (`.mmdb`) for `geo_info_from_ip_address` and
    /// DCR transforms' `geo_location`.
    pub geoip_db: Option<PathBuf>,
    /// How new segments are compressed: `lz4` (default) or `zstd`.
    pub segment_compression: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkspaceEntry {
    pub id: String,
    pub key: String,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub json_logs: bool,
    pub date_window_seconds: u64,
    pub flush_buffer_bytes: u64,
    pub flush_interval_seconds: u64,
    pub wal_fsync: bool,
    /// `(id, base64 key)` pairs to create or update at start-up.
    pub workspaces: Vec<(String, String)>,
    pub tls: TlsMode,
    pub max_ingestion_body_bytes: usize,
    pub geoip_db: Option<PathBuf>,
    pub segment_codec: watchpost_storage::SegmentCodec,
}

/// How the server speaks TLS.
#[derive(Debug, Clone)]
pub(crate) enum TlsMode {
    Off,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// Splits `ID=BASE64KEY` at the first `=` (keys end in `=` padding).
pub(crate) fn parse_workspace_flag(text: &str) -> anyhow::Result<(String, String)> {
    let Some((id, key)) = text.split_once('=') else {
        bail!("--workspace expects ID=BASE64KEY, got `{text}`");
    };
    if id.trim().is_empty() || key.trim().is_empty() {
        bail!("--workspace expects ID=BASE64KEY, got `{text}`");
    }
    Ok((id.trim().to_string(), key.trim().to_string()))
}

/// Validates a listen address.
pub(crate) fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| format!("`{text}` is not a valid listen address (expected IP:PORT)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_flag_splits_at_first_equals() {
        let (id, key) = parse_workspace_flag("8f2b3c4d-0000-4000-8000-000000000001=c2hhcmVkX2tleQ==").unwrap();
        assert_eq!(id, "8f2b3c4d-0000-4000-8000-000000000001");
        assert_eq!(key, "c2hhcmVkX2tleQ==");
        assert!(parse_workspace_flag("no-key").is_err());
    }

    #[test]
    fn file_config_rejects_unknown_keys() {
        let parsed: Result<FileConfig, _> = toml::from_str("listen = \"127.0.0.1:1\"\nbogus = 1\n");
        assert!(parsed.is_err());
        let parsed: FileConfig =
            toml::from_str("listen = \"127.0.0.1:9\"\n[[workspaces]]\nid = \"x\"\nkey = \"eQ==\"\n").unwrap();
        assert_eq!(parsed.workspaces.len(), 1);
    }
}
