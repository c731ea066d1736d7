//! `GET /metrics` for `pipeline run` and `agent`: the pipeline's counters
//! in Prometheus text format, served by a small runtime on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use watchpost_connectors::stats::Stats;

/// Binds `listen` and serves the counters until the process exits.
pub(crate) fn serve(listen: &str, pipeline: String, stats: Arc<Stats>) -> anyhow::Result<SocketAddr> {
    let address: SocketAddr = listen.parse().with_context(|| format!("--metrics-listen {listen:?}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener =
        runtime.block_on(tokio::net::TcpListener::bind(address)).with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let text = stats.prometheus(&pipeline);
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        if let Err(err) = runtime.block_on(async move { axum::serve(listener, app).await }) {
            tracing::error!(error = %err, "MetricsEndpointFailed");
        }
    })?;
    tracing::info!(address = %bound, "MetricsListening");
    Ok(bound)
}
