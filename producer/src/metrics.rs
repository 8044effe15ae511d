//! HTTP request metrics, registered into the registry the caller passes (never
//! the process-global one, so several apps can share a test process).
//!
//! Labels are bounded: `route` is the matched route template (`/tasks/{id}`,
//! never an id) or `unmatched`; `method` is one of the standard methods or
//! `other`; `status` is the numeric code. `taskflow_http_panics_total` has no
//! labels: a panic is a bug to find in the logs, the counter is for alerting.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    panics: IntCounter,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests handled, by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to produce the HTTP response, by route and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )?;
        let panics = IntCounter::new(
            "taskflow_http_panics_total",
            "Requests whose handler panicked (answered with a problem+json 500)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(panics.clone()))?;
        Ok(Self {
            requests,
            duration,
            panics,
        })
    }

    pub fn record_panic(&self) {
        self.panics.inc();
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: `Router::layer` wraps each route (and the fallback) after
/// routing, so `MatchedPath` is present here for every matched request.
pub async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics
        .duration
        .with_label_values(&[route.as_str(), method])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method, resp.status().as_str()])
        .inc();
    resp
}

/// Metrics of the live streams (`GET /feed/stream`). `kind` is one of [`STREAM_KINDS`] or
/// `other`, never a value taken from a row unchecked.
#[derive(Clone)]
pub struct StreamMetrics {
    open: IntGauge,
    pushed: IntCounterVec,
    lag: Histogram,
}

/// The feed kinds the `kind` label names; anything else is counted as `other`.
pub const STREAM_KINDS: [&str; 8] = [
    "TaskCreated",
    "TaskUpdated",
    "TaskCompleted",
    "TaskReopened",
    "TaskDeleted",
    "ReminderSnoozed",
    "ReminderDue",
    "NotificationRead",
];

impl std::fmt::Debug for StreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamMetrics")
    }
}

impl StreamMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGauge::new(
            "taskflow_streams_open",
            "Live feed streams (Server-Sent Events) open on this API process",
        )?;
        let pushed = IntCounterVec::new(
            Opts::new(
                "taskflow_stream_events_pushed_total",
                "Feed entries written to live streams, by feed kind",
            ),
            &["kind"],
        )?;
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "taskflow_stream_push_lag_seconds",
                "From an entry's occurred_at to its write on a live stream (entries that \
                 arrived while the stream was open; a resumed stream's backlog is not counted)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(pushed.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self { open, pushed, lag })
    }

    /// Counts a stream as open until the returned guard is dropped (with the stream's body,
    /// however the stream ends: client gone, credential ended, shutdown).
    pub fn open_stream(&self) -> OpenStream {
        self.open.inc();
        OpenStream(self.open.clone())
    }

    /// An entry written to a stream; `lag` is `None` for replayed backlog.
    pub fn pushed(&self, kind: &str, lag: Option<f64>) {
        let label = STREAM_KINDS
            .iter()
            .find(|k| **k == kind)
            .copied()
            .unwrap_or("other");
        self.pushed.with_label_values(&[label]).inc();
        if let Some(lag) = lag {
            self.lag.observe(lag.max(0.0));
        }
    }
}

/// See [`StreamMetrics::open_stream`].
#[derive(Debug)]
pub struct OpenStream(IntGauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}
