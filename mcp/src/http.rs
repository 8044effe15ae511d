//! The streamable HTTP transport: `POST/GET/DELETE /mcp` behind a check
//! that the request carries a bearer token (401 with `WWW-Authenticate`
//! otherwise, before any MCP processing). The token itself is verified by
//! the API on each tool call, so a revoked token fails on its next call.

use std::net::SocketAddr;

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::{bearer, TaskflowMcp};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

async fn require_bearer(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if bearer(&parts).is_none() {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"missing Authorization: Bearer <token> (a Taskflow personal access token)"}"#,
        )
            .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The router serving `handler` at `/mcp`.
pub fn router(
    handler: TaskflowMcp,
    allowed_hosts: Vec<String>,
    shutdown: CancellationToken,
) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .with_cancellation_token(shutdown);
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn(require_bearer))
}

/// A bound HTTP server; [`McpHttp::port`] is known before serving (tests
/// bind port 0).
pub struct McpHttp {
    listener: TcpListener,
    router: Router,
}

impl std::fmt::Debug for McpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHttp").finish_non_exhaustive()
    }
}

impl McpHttp {
    pub async fn bind(addr: SocketAddr, router: Router) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(Self { listener, router })
    }

    pub fn port(&self) -> Option<u16> {
        self.listener.local_addr().ok().map(|a| a.port())
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), HttpError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(HttpError::Serve)
    }
}
