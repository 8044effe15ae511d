//! The middleware every route runs under: tracing, metrics, panic catching
//! and the request timeout. [`crate::app::layered`] applies them in one
//! place so tests that add routes get exactly the production stack.

use std::{any::Any, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{metrics::HttpMetrics, problem::ApiError};

/// Answers a request that did not finish within `timeout` with a
/// problem+json 503. The handler's future is dropped, so an open transaction
/// rolls back and nothing it did is committed.
pub async fn timeout(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis(), "request timed out");
            ApiError::Timeout {
                timeout_ms: timeout.as_millis(),
            }
            .into_response()
        }
    }
}

/// Turns a panic below it into a problem+json 500 (instead of a dropped
/// connection) and counts it in `taskflow_http_panics_total`.
pub fn catch_panic(
    metrics: HttpMetrics,
) -> CatchPanicLayer<impl Fn(Box<dyn Any + Send + 'static>) -> Response + Clone> {
    CatchPanicLayer::custom(move |payload: Box<dyn Any + Send + 'static>| {
        metrics.record_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_owned());
        ApiError::Internal(format!("handler panicked: {message}")).into_response()
    })
}
