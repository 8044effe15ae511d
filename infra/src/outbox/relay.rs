//! The outbox relay: publishes outbox rows to Kafka and deletes them once the
//! broker has acknowledged them.
//!
//! Guarantee: at-least-once publication in per-task order.
//! - A row is deleted only after its delivery report says the broker has it
//!   (`acks=all`), so a crash at any point republishes rather than loses;
//!   consumers dedupe by `event_id`.
//! - Rows are selected in id order, whatever is left, never "id greater than
//!   the last seen": a transaction that commits late is picked up next pass.
//! - Events of one task have increasing ids in commit order because every
//!   task write locks the task row before inserting its outbox row. One relay
//!   per database publishes (a session advisory lock; other replicas stand
//!   by), the producer is idempotent with an infinite message timeout, so
//!   librdkafka retries through a broker outage without reordering or
//!   duplicating, and the next batch starts only after the previous one is
//!   acknowledged. The batch's select, sends and delete run on the one
//!   connection that holds the lock: if that connection dies, the lock and the
//!   batch go together and the stand-by takes over from the undeleted rows.
//! - Every row of a batch is encoded before any is sent, so a registry outage
//!   aborts the batch without sending a prefix that would be sent again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use sqlx::{postgres::PgListener, Connection, PgConnection, PgPool};
use taskflow_schemas::{Codec, CodecError, Event};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;

use super::{OutboxWaker, NOTIFY_CHANNEL};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] CodecError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0} outbox rows failed to publish; restarting the producer")]
    Undelivered(usize),
}

/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `TASKFLOW_OUTBOX_BATCH_SIZE` | 500 | rows published per round trip |
/// | `TASKFLOW_OUTBOX_IDLE_POLL_MS` | 1000 | re-check interval when no NOTIFY arrives (safety net) |
/// | `TASKFLOW_OUTBOX_LINGER_MS` | 5 | producer `linger.ms` |
/// | `TASKFLOW_OUTBOX_LOCK_KEY` | 7_310_041 | advisory lock electing the one active relay |
/// | `TASKFLOW_OUTBOX_DRAIN_TIMEOUT_MS` | 10000 | on shutdown, how long to wait for outstanding delivery reports |
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch_size: i64,
    pub idle_poll: Duration,
    pub linger_ms: u32,
    pub lock_key: i64,
    /// How long shutdown waits for outstanding delivery reports; rows not
    /// acknowledged by then stay in the outbox and are republished later.
    pub drain_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll: Duration::from_millis(1000),
            linger_ms: 5,
            lock_key: 7_310_041,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl RelayConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::env_or;
        let d = Self::default();
        Ok(Self {
            batch_size: env_or("TASKFLOW_OUTBOX_BATCH_SIZE", d.batch_size)?,
            idle_poll: Duration::from_millis(env_or("TASKFLOW_OUTBOX_IDLE_POLL_MS", 1000u64)?),
            linger_ms: env_or("TASKFLOW_OUTBOX_LINGER_MS", d.linger_ms)?,
            lock_key: env_or("TASKFLOW_OUTBOX_LOCK_KEY", d.lock_key)?,
            drain_timeout: Duration::from_millis(env_or(
                "TASKFLOW_OUTBOX_DRAIN_TIMEOUT_MS",
                10_000u64,
            )?),
        })
    }
}

#[derive(Clone)]
struct RelayMetrics {
    published: IntCounterVec,
    failures: IntCounterVec,
    backlog: IntGauge,
    active: IntGauge,
    latency: Histogram,
}

impl RelayMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            published: IntCounterVec::new(
                Opts::new(
                    "taskflow_outbox_published_total",
                    "Outbox events acknowledged by the broker",
                ),
                &["topic"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "taskflow_outbox_failures_total",
                    "Outbox publish attempts that failed, by stage",
                ),
                &["stage"],
            )?,
            backlog: IntGauge::new(
                "taskflow_outbox_backlog",
                "Outbox rows not yet acknowledged by the broker",
            )?,
            active: IntGauge::new(
                "taskflow_outbox_relay_active",
                "1 while this process holds the relay lock",
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "taskflow_outbox_publish_latency_seconds",
                    "From the outbox insert to the broker's delivery report",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        Ok(m)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    partition_key: String,
    event_type: String,
    payload: serde_json::Value,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
}

struct Encoded {
    row: Row,
    event_id: String,
    bytes: Vec<u8>,
}

pub struct Relay {
    pool: PgPool,
    kafka: KafkaSettings,
    codec: Codec,
    config: RelayConfig,
    metrics: RelayMetrics,
    waker: Option<OutboxWaker>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        kafka: &KafkaSettings,
        codec: Codec,
        config: RelayConfig,
        registry: &Registry,
    ) -> Result<Self, RelayError> {
        Ok(Self {
            pool,
            kafka: kafka.clone(),
            codec,
            config,
            metrics: RelayMetrics::register(registry)?,
            waker: None,
        })
    }

    /// Wakes on this process's commits in-process (see [`OutboxWaker`]).
    pub fn with_waker(mut self, waker: OutboxWaker) -> Self {
        self.waker = Some(waker);
        self
    }

    /// Publishes until `shutdown` fires. Errors are logged, counted and
    /// retried with backoff; only shutdown ends the loop.
    pub async fn run(self, shutdown: CancellationToken) {
        // The backlog is measured apart from publishing: a batch waiting out a
        // broker outage must not freeze the gauge that should reveal it, and
        // stand-by replicas report the same database-wide figure.
        tokio::spawn(report_backlog(
            self.pool.clone(),
            self.metrics.backlog.clone(),
            shutdown.clone(),
        ));
        let mut backoff = Backoff::new();
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    self.metrics.active.set(0);
                    self.metrics.failures.with_label_values(&["relay"]).inc();
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.metrics.active.set(0);
    }

    /// A producer per leadership term: after a failed delivery (for example a
    /// fatal idempotence error when a broker lost its producer state) the
    /// term ends and the next one starts with a fresh producer.
    fn producer(&self) -> Result<FutureProducer, RelayError> {
        Ok(self
            .kafka
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // 0 = never give up: through a broker outage librdkafka keeps the
            // messages and retries in order instead of failing a prefix and
            // forcing a reordering resend.
            .set("message.timeout.ms", "0")
            .set("linger.ms", self.config.linger_ms.to_string())
            .create()?)
    }

    /// Waits to become the active relay, then publishes until shutdown or
    /// until the lock connection fails.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut conn = self.pool.acquire().await?.detach();
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.config.lock_key)
                .fetch_one(&mut conn)
                .await?;
            if locked {
                break;
            }
            self.metrics.active.set(0);
            tokio::select! {
                _ = tokio::time::sleep(self.config.idle_poll) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        self.metrics.active.set(1);
        tracing::info!("outbox relay active");
        let producer = self.producer()?;

        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox LISTEN failed; polling instead");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "outbox LISTEN failed; polling instead");
                None
            }
        };
        while !shutdown.is_cancelled() {
            let published = self.publish_batch(&mut conn, &producer, shutdown).await?;
            if published as i64 >= self.config.batch_size {
                continue;
            }
            // Wait for a commit notification, with polling as a safety net for
            // a lost listener connection.
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        if let Err(e) = l.recv().await {
                            tracing::debug!(error = %e, "outbox listener interrupted");
                            tokio::time::sleep(self.config.idle_poll).await;
                        }
                    }
                    None => tokio::time::sleep(self.config.idle_poll).await,
                }
            };
            let local = async {
                match &self.waker {
                    Some(w) => w.woken().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = local => {}
                _ = tokio::time::sleep(self.config.idle_poll) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let _ = producer.flush(self.config.drain_timeout);
        let _ = conn.close().await;
        Ok(())
    }

    /// One pass: select, encode all, send all, await every delivery report,
    /// delete the acknowledged rows. Returns the number of rows published.
    async fn publish_batch(
        &self,
        conn: &mut PgConnection,
        producer: &FutureProducer,
        shutdown: &CancellationToken,
    ) -> Result<usize, RelayError> {
        let mut tx = conn.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, topic, partition_key, event_type, payload, traceparent, created_at
             FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }

        let mut encoded = Vec::with_capacity(rows.len());
        let mut poisoned: Vec<(i64, String)> = Vec::new();
        for row in rows {
            match serde_json::from_value::<Event>(row.payload.clone()) {
                Ok(event) => {
                    // A transient registry failure aborts the whole batch before
                    // anything is sent (the `?`), so nothing is sent twice.
                    match self.codec.encode(&row.topic, &event).await {
                        Ok(bytes) => encoded.push(Encoded {
                            event_id: event.metadata().event_id.to_string(),
                            row,
                            bytes,
                        }),
                        Err(e) if e.is_transient() => return Err(e.into()),
                        Err(e) => poisoned.push((row.id, format!("encode: {e}"))),
                    }
                }
                Err(e) => poisoned.push((row.id, format!("payload: {e}"))),
            }
        }

        let sends = encoded.iter().map(|enc| {
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_type",
                    value: Some(enc.row.event_type.as_str()),
                })
                .insert(Header {
                    key: "event_id",
                    value: Some(enc.event_id.as_str()),
                });
            if let Some(tp) = &enc.row.traceparent {
                headers = headers.insert(Header {
                    key: "traceparent",
                    value: Some(tp.as_str()),
                });
            }
            let record = FutureRecord::to(&enc.row.topic)
                .key(enc.row.partition_key.as_bytes())
                .payload(&enc.bytes)
                .headers(headers);
            // Enqueue every send before awaiting any: awaiting one at a time
            // costs a full linger per message (rust-rdkafka #464).
            producer.send_result(record).map_err(|(e, _)| e)
        });
        let futures: Vec<_> = sends.collect();
        let mut delivered = Vec::with_capacity(encoded.len());
        // Rows the broker did not take: the producer may be unusable (a fatal
        // idempotence error), so the term ends after this batch.
        let mut undelivered: Vec<(i64, String)> = Vec::new();
        let mut pending = Vec::new();
        for (enc, fut) in encoded.iter().zip(futures) {
            match fut {
                Ok(f) => pending.push((enc, f)),
                Err(e) => undelivered.push((enc.row.id, format!("enqueue: {e}"))),
            }
        }
        let reports = {
            let all = join_all(pending.iter_mut().map(|(_, f)| f));
            tokio::select! {
                r = all => r,
                _ = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(self.config.drain_timeout).await;
                } => {
                    // Unacknowledged rows stay; the next relay republishes them.
                    tx.rollback().await?;
                    return Ok(0);
                }
            }
        };
        let now = Utc::now();
        for ((enc, _), report) in pending.iter().zip(reports) {
            match report {
                Ok(Ok(_)) => {
                    delivered.push(enc.row.id);
                    self.metrics
                        .published
                        .with_label_values(&[enc.row.topic.as_str()])
                        .inc();
                    let latency = (now - enc.row.created_at).num_microseconds().unwrap_or(0);
                    self.metrics.latency.observe(latency.max(0) as f64 / 1e6);
                }
                Ok(Err((e, _))) => undelivered.push((enc.row.id, format!("delivery: {e}"))),
                Err(_) => undelivered.push((enc.row.id, "delivery: producer dropped".to_owned())),
            }
        }

        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&delivered)
            .execute(&mut *tx)
            .await?;
        for (id, error) in poisoned.iter().chain(&undelivered) {
            // Kept, not dropped: the row stays for the next pass and the error
            // is visible to an operator in `last_error`.
            self.metrics.failures.with_label_values(&["publish"]).inc();
            tracing::error!(outbox_id = id, %error, "outbox row not published");
            sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
                .bind(id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if undelivered.is_empty() {
            Ok(delivered.len())
        } else {
            Err(RelayError::Undelivered(undelivered.len()))
        }
    }
}

async fn report_backlog(pool: PgPool, gauge: IntGauge, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
        {
            Ok(n) => gauge.set(n),
            Err(e) => tracing::debug!(error = %e, "outbox backlog not measured"),
        }
    }
}

/// Capped exponential backoff: 100 ms doubling to 30 s.
struct Backoff {
    current: Duration,
}

impl Backoff {
    const START: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self {
            current: Self::START,
        }
    }

    fn reset(&mut self) {
        self.current = Self::START;
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(Self::MAX);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new();
        let first: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(first, vec![100, 200, 400, 800]);
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Backoff::MAX);
        b.reset();
        assert_eq!(b.next_delay(), Backoff::START);
    }
}
