//! `watchpost serve`: opens the data directory, replays the WAL, and serves
//! the HTTP APIs until SIGTERM or Ctrl-C, then flushes buffers to segments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use watchpost_engine::{EngineOptions, QueryEngine};
use watchpost_metastore::Metastore;
use watchpost_server::tokens::TokenIssuer;
use watchpost_server::{router, AppState, ServerOptions};
use watchpost_storage::{Store, StoreOptions};

use crate::config::{parse_listen, parse_workspace_flag, FileConfig, ServeConfig, TlsMode};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory [default: ./watchpost-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Creates the workspace if absent and sets its primary key (repeatable).
    #[arg(long = "workspace", value_name = "ID=BASE64KEY")]
    workspaces: Vec<String>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Serve https with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve https with a generated certificate; clients trust DATA_DIR/tls/ca.pem.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Largest Logs Ingestion request body in MiB [default: 30].
    #[arg(long, value_name = "MIB")]
    max_body_mib: Option<u64>,
    /// MaxMind City database (GeoLite2-City.mmdb) that geo_info_from_ip_address
    /// and geo_location look up in; without one they answer {}.
    #[arg(long, value_name = "MMDB")]
    geoip_db: Option<PathBuf>,
    /// How new segments are compressed: lz4 (faster queries) or zstd (smaller files) [default: lz4].
    #[arg(long, value_name = "CODEC")]
    segment_compression: Option<String>,
}

impl ServeArgs {
    fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let listen = self.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let mut workspaces = file.workspaces.into_iter().map(|entry| (entry.id, entry.key)).collect::<Vec<_>>();
        for flag in &self.workspaces {
            workspaces.push(parse_workspace_flag(flag)?);
        }
        let log_format = self.log_format.or(file.log_format).unwrap_or_else(|| "text".to_string());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("log_format must be `text` or `json`, got `{log_format}`");
        }
        let tls = match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            (None, None) if self.tls_self_signed || file.tls_self_signed.unwrap_or(false) => TlsMode::SelfSigned,
            (None, None) => TlsMode::Off,
            _ => anyhow::bail!("tls_cert and tls_key must be given together"),
        };
        let max_body_mib = self.max_body_mib.or(file.logs_ingestion_max_body_mib).unwrap_or(30);
        if max_body_mib == 0 {
            anyhow::bail!("the Logs Ingestion body limit must be at least 1 MiB");
        }
        let codec_name = self.segment_compression.or(file.segment_compression).unwrap_or_else(|| "lz4".to_string());
        let Some(segment_codec) = watchpost_storage::SegmentCodec::parse(&codec_name) else {
            anyhow::bail!("segment_compression must be `lz4` or `zstd`, got `{codec_name}`");
        };
        Ok(ServeConfig {
            segment_codec,
            tls,
            max_ingestion_body_bytes: usize::try_from(max_body_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX),
            listen: parse_listen(&listen)?,
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(crate::default_data_dir),
            json_logs: log_format == "json",
            date_window_seconds: file.date_window_seconds.unwrap_or(15 * 60),
            flush_buffer_bytes: file.flush_buffer_mib.unwrap_or(256) * 1024 * 1024,
            flush_interval_seconds: file.flush_interval_seconds.unwrap_or(60),
            wal_fsync: file.wal_fsync.unwrap_or(true),
            workspaces,
            geoip_db: self.geoip_db.or(file.geoip_db),
        })
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WATCHPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    init_logging(config.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let metastore = Arc::new(Metastore::open(&config.data_dir).context("opening the metastore")?);
    for (id, key) in &config.workspaces {
        metastore.ensure_workspace(Some(id), Some(key)).with_context(|| format!("configuring workspace {id}"))?;
    }
    if metastore.workspaces().is_empty() {
        let workspace = metastore.ensure_workspace(None, None)?;
        println!("Created workspace {}", workspace.id);
        println!("  Workspace ID: {}", workspace.id);
        println!("  Primary key:  {}", workspace.primary_key);
        println!("  (send events with the HTTP Data Collector API; query with `watchpost query`)");
    }
    let store_options = StoreOptions {
        wal_fsync: config.wal_fsync,
        // Three flush thresholds: ingest keeps running during a flush and
        // waits only when flushing falls two whole buffers behind, so a
        // burst is absorbed in memory (about 1.3 GB of RSS at the default
        // threshold) and flushed as the burst eases.
        max_buffered_bytes: Some(config.flush_buffer_bytes.saturating_mul(3)),
        segment_codec: config.segment_codec,
        ..StoreOptions::default()
    };
    let data_dir = config.data_dir.clone();
    let store =
        tokio::task::spawn_blocking(move || Store::open(&data_dir, store_options)).await?.context("opening storage")?;
    let store = Arc::new(store);
    let geo = match &config.geoip_db {
        Some(path) => {
            let db = watchpost_geo::GeoDb::open(path)?;
            println!("GeoIP database: {} ({})", path.display(), db.database_type());
            Some(Arc::new(db))
        }
        None => None,
    };
    let engine = QueryEngine::new(store.clone(), EngineOptions { geo, ..EngineOptions::default() });
    let date_window = (config.date_window_seconds > 0).then(|| Duration::from_secs(config.date_window_seconds));
    let tls_config = match &config.tls {
        TlsMode::Off => None,
        TlsMode::Files { cert, key } => Some(watchpost_server::tls::server_config(cert, key)?),
        TlsMode::SelfSigned => {
            let extra = vec![config.listen.ip().to_string()];
            let paths = watchpost_server::tls::ensure_self_signed(&config.data_dir, &extra)?;
            println!("TLS CA certificate: {}", paths.ca_cert.display());
            Some(watchpost_server::tls::server_config(&paths.server_cert, &paths.server_key)?)
        }
    };
    let options = ServerOptions {
        date_window,
        https: tls_config.is_some(),
        max_ingestion_body_bytes: config.max_ingestion_body_bytes,
        ..ServerOptions::default()
    };
    let issuer = Arc::new(TokenIssuer::open(&config.data_dir)?);
    let tenant = metastore.tenant_id()?;
    let state = AppState::new(metastore.clone(), store.clone(), engine, options).with_tokens(issuer);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    for workspace in metastore.workspaces() {
        tracing::info!(workspace = %workspace.id, "workspace ready");
    }
    let scheme = if tls_config.is_some() { "https" } else { "http" };
    println!("Tenant id (token endpoint {scheme}://{address}/{tenant}/oauth2/v2.0/token): {tenant}");
    println!("Watchpost is listening on {scheme}://{address}");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "ServerStarted");
    let stop = Arc::new(AtomicBool::new(false));
    let maintenance = spawn_maintenance(store.clone(), state.clone(), config.clone(), stop.clone());
    match tls_config {
        None => axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?,
        Some(tls) => {
            let listener = watchpost_server::tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?
        }
    }
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || maintenance.join()).await?.ok();
    tracing::info!("shutting down: flushing buffers");
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await?.context("final flush")?;
    tracing::info!(rows = flushed.rows_written, segments = flushed.segments_written, "ServerStopped");
    Ok(())
}

/// Flushes buffers when they grow past the threshold or age past the
/// interval, enforces retention hourly, and saves the data collection
/// rules' health records every 5 s and once more when stopped (so a restart
/// keeps them), on a thread of its own.
///
/// On Linux the thread runs at a lower CPU priority (nice 10): Parquet
/// encoding then yields the two cores to request decoding during a burst
/// and catches up when ingest calms down. Memory stays bounded because a
/// flush always runs once buffers pass the threshold; it only runs slower
/// while requests compete for the CPU.
fn spawn_maintenance(
    store: Arc<Store>,
    state: AppState,
    config: ServeConfig,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let save_health = move || {
        if let Err(err) = state.save_rule_health() {
            tracing::error!(error = %err, "DcrHealthSaveError");
        }
    };
    std::thread::Builder::new()
        .name("watchpost-maintenance".into())
        .spawn(move || {
            lower_thread_priority();
            let mut last_flush = Instant::now();
            let mut last_retention: Option<Instant> = None;
            let mut last_health_save = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let buffered = store.buffered_bytes();
                let interval = Duration::from_secs(config.flush_interval_seconds);
                if buffered >= config.flush_buffer_bytes || (buffered > 0 && last_flush.elapsed() >= interval) {
                    if let Err(err) = store.flush() {
                        tracing::error!(error = %err, "SegmentFlushError");
                    }
                    last_flush = Instant::now();
                }
                if last_retention.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                    let now_ns = chrono::Utc::now().timestamp_nanos_opt().expect("the clock is before 2262");
                    if let Err(err) = store.enforce_retention(now_ns) {
                        tracing::error!(error = %err, "RetentionError");
                    }
                    last_retention = Some(Instant::now());
                }
                if last_health_save.elapsed() >= Duration::from_secs(5) {
                    save_health();
                    last_health_save = Instant::now();
                }
            }
            save_health();
        })
        .expect("spawning the maintenance thread")
}

/// Lowers the calling thread's CPU priority. Linux gives each thread its own
/// nice value, so this affects the maintenance thread only.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions; `0` names
        // the calling thread.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if result != 0 {
            tracing::debug!("could not lower the maintenance thread's priority");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
