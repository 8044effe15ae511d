//! The admin port every binary serves: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer).
//! It is a separate listener so probes and scrapes never queue behind API
//! traffic and the metrics are not exposed on the public port.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use futures::future::BoxFuture;
use prometheus::{Encoder, TextEncoder};
use tokio_util::sync::CancellationToken;

/// Answers whether the component can do its work right now (database
/// reachable, consumer assigned, ...). `Err` carries the reason for `/readyz`.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A check that is always ready, for components without dependencies.
pub fn always_ready() -> ReadyCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

#[derive(Clone)]
struct AdminState {
    registry: prometheus::Registry,
    ready: ReadyCheck,
}

pub fn router(registry: prometheus::Registry, ready: ReadyCheck) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, ready })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, ready))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds `addr` and serves the admin routes on a task of their own until `shutdown`; the bind
/// happens before this returns, so a port in use fails start-up rather than the task.
pub async fn spawn(
    addr: std::net::SocketAddr,
    registry: prometheus::Registry,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "admin server listening");
    Ok(tokio::spawn(serve(listener, registry, ready, shutdown)))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", prometheus::TEXT_FORMAT)],
            buf,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match (state.ready)().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
