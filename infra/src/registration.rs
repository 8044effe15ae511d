//! Start-up schema registration for every binary that produces Avro events.
//!
//! Registering lazily, on the first publish, surfaces a subject the registry refuses (an
//! incompatible schema, a key without write permission) only after the API has acknowledged
//! writes whose events can then not be published. Instead, a producing binary registers every
//! subject it will write at start-up and reports not ready (`/readyz`) until that succeeded.
//! Failures are retried in the background with backoff (the registry may start after us, or
//! a credential may be rotated in): the process never crashes for them, and each failure is
//! counted (`taskflow_schema_registration_failures_total{reason}`) and logged so it alerts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use taskflow_schemas::{Codec, EventType};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// What a binary writes: a topic and the event types it produces there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    pub topic: String,
    pub event_types: Vec<EventType>,
}

impl Subjects {
    pub fn new(topic: impl Into<String>, event_types: &[EventType]) -> Self {
        Self {
            topic: topic.into(),
            event_types: event_types.to_vec(),
        }
    }
}

#[derive(Default)]
struct State {
    registered: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The state of a background registration; cheap to clone into a readiness check.
#[derive(Clone)]
pub struct SchemaRegistration {
    state: Arc<State>,
}

impl SchemaRegistration {
    /// Starts registering `subjects` on the current tokio runtime, retrying with `backoff`
    /// until it succeeds or `shutdown` is cancelled.
    pub fn spawn(
        codec: Codec,
        subjects: Vec<Subjects>,
        backoff: Backoff,
        metrics: &Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, prometheus::Error> {
        let failures = IntCounterVec::new(
            Opts::new(
                "taskflow_schema_registration_failures_total",
                "Failed start-up registrations of this binary's schemas, by reason (registry_unavailable, registry_unauthorized, permanent). Retried with backoff; the binary is not ready meanwhile.",
            ),
            &["reason"],
        )?;
        let registered_gauge = IntGauge::new(
            "taskflow_schemas_registered",
            "1 once every schema this binary produces is registered (it is not ready before).",
        )?;
        metrics.register(Box::new(failures.clone()))?;
        metrics.register(Box::new(registered_gauge.clone()))?;
        let this = Self {
            state: Arc::default(),
        };
        let state = this.state.clone();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let result = register(&codec, &subjects).await;
                match result {
                    Ok(()) => {
                        state.registered.store(true, Ordering::Release);
                        *lock(&state.last_error) = None;
                        registered_gauge.set(1);
                        tracing::info!(?subjects, "schemas registered");
                        return;
                    }
                    Err(error) => {
                        attempt += 1;
                        failures.with_label_values(&[error.metric_reason()]).inc();
                        tracing::error!(%error, attempt, reason = error.metric_reason(), "registering schemas failed; not ready, retrying");
                        *lock(&state.last_error) = Some(error.to_string());
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay(attempt)) => {}
                }
            }
        });
        Ok(this)
    }

    /// A registration that is already complete (binaries that produce no Avro).
    pub fn done() -> Self {
        let state = State::default();
        state.registered.store(true, Ordering::Release);
        Self {
            state: Arc::new(state),
        }
    }

    pub fn is_registered(&self) -> bool {
        self.state.registered.load(Ordering::Acquire)
    }

    /// For `/readyz`: `Err` names why the schemas are not registered yet.
    pub fn check(&self) -> Result<(), String> {
        if self.is_registered() {
            return Ok(());
        }
        Err(match lock(&self.state.last_error).as_deref() {
            Some(error) => format!("schemas not registered: {error}"),
            None => "schemas not registered yet".to_owned(),
        })
    }
}

/// Default backoff of the start-up registration: 200 ms doubling to 30 s.
pub fn default_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
}

async fn register(
    codec: &Codec,
    subjects: &[Subjects],
) -> Result<(), taskflow_schemas::CodecError> {
    for s in subjects {
        codec.register_all(&s.topic, &s.event_types).await?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_ready_until_registered_and_retries_without_crashing() {
        // Nothing listens on port 9: every attempt fails (transient), and keeps being retried.
        let codec = Codec::new("http://127.0.0.1:9");
        let metrics = Registry::new();
        let shutdown = CancellationToken::new();
        let r = SchemaRegistration::spawn(
            codec,
            vec![Subjects::new("t", &EventType::TASK_LIFECYCLE)],
            Backoff::new(Duration::from_millis(5), Duration::from_millis(10)),
            &metrics,
            shutdown.clone(),
        )
        .expect("metrics");
        let failures = || {
            metrics
                .gather()
                .iter()
                .filter(|f| f.name() == "taskflow_schema_registration_failures_total")
                .flat_map(|f| f.get_metric().iter())
                .map(|m| m.get_counter().get_value())
                .sum::<f64>()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while failures() < 2.0 {
            assert!(tokio::time::Instant::now() < deadline, "no retries");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reason = r.check().expect_err("not ready");
        assert!(reason.contains("schema registry unavailable"), "{reason}");
        assert!(!r.is_registered());
        shutdown.cancel();
        assert!(SchemaRegistration::done().check().is_ok());
    }
}
