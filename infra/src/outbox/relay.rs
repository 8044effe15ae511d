//! The outbox relay: publishes outbox rows to Kafka and deletes them once the
//! broker has acknowledged them.
//!
//! # Guarantees, and the conditions they rest on
//!
//! **At least once.** A row is deleted only after its delivery report says the
//! broker has it (`acks=all`, idempotent producer), so a crash at any point
//! republishes rather than loses. Consumers dedupe by `event_id`.
//!
//! **Per-task order, absolute.** A pass sends only the head (lowest id) of each
//! outbox key (topic + task id) and deletes it on acknowledgement; the task's
//! next row becomes a head only then. So version N+1 is never handed to a
//! producer while N is unacknowledged, whatever the producer does with
//! retries, timeouts or a restart. Rows of one task have increasing ids in
//! version order because every task write locks the task row before it
//! inserts its outbox row; a transaction that commits late is simply not
//! visible yet, and the rows selected are whatever is left, never "id greater
//! than the last seen". A row that fails stays the head of its task (waiting
//! `not_before`, or parked), which holds back that task and no other: the
//! selection skips blocked keys with one index probe per row, so other tasks
//! flow at full rate whatever sits at the lowest ids. The rule is
//! [`super::plan::select_heads`], property-tested there.
//!
//! **Parked, never lost or skipped.** A row this binary can never encode (its
//! payload does not decode, or does not fit its schema) is parked at once; a
//! row the registry refuses (409/422) is retried with backoff and parked after
//! `park_after` attempts. Parked rows stay in the table with their reason,
//! count in `taskflow_outbox_parked_rows`, and wait for `taskflow-admin outbox
//! retry`. Transient failures (registry or broker unavailable) are retried
//! forever and never park.
//!
//! **One publisher, fenced.** Candidates race for a PostgreSQL session
//! advisory lock; the winner takes the `outbox_leader` row (only if its
//! previous holder's session is gone) and bumps the epoch, and every batch
//! runs in a transaction on the lock's connection that first locks that row
//! and checks the epoch is still its own. So two relays never publish in the
//! same moment, and with two lock keys configured by mistake the second one
//! stands by instead of taking turns. Losing the
//! lock (the connection dies: failover, `pg_terminate_backend`, idle timeout)
//! is noticed by a heartbeat on that connection while delivery reports are
//! awaited; the relay then purges its producer and stops. What may still be
//! in flight from a deposed leader is fenced, by [`Fencing`]:
//! - [`Fencing::Transactions`] (Redpanda, Kafka): one `transactional.id` per
//!   database; the new leader's `init_transactions` fences the old producer
//!   at the broker, and each batch is one transaction, so a `read_committed`
//!   consumer never sees a deposed leader's late records.
//! - [`Fencing::MessageTimeout`] (any broker; tansu 0.6.0 accepts
//!   `init_transactions` but cannot commit): the producer has a bounded
//!   `message.timeout.ms`. Before every hand-over the leader commits
//!   `outbox_send_fence.send_deadline = now + message timeout`, then confirms
//!   on the lock connection that it still leads, then sends. A new leader
//!   waits until that deadline plus `fence_margin` before its first send. So
//!   every message of the old leader has landed or failed before the new
//!   leader sends anything, provided (a) the old process was not paused for
//!   longer than `fence_margin` between confirming and handing over (a pause
//!   that long is detected after the fact and ends the term), and (b) the
//!   broker processes a produce request within `fence_margin` of receiving
//!   it. Even outside (a) and (b), a late record can only be a duplicate of
//!   a task's head, never of an older version after a newer one: the new
//!   leader sends the same head first and the next version only after the
//!   head's acknowledgement.
//!
//! **Shutdown.** Outstanding delivery reports are awaited up to
//! `drain_timeout`; unacknowledged rows stay and are republished later.

use std::{
    future::Future,
    str::FromStr,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer, PurgeConfig},
};
use sqlx::{postgres::PgListener, Connection, PgConnection, PgPool};
use taskflow_schemas::{Codec, CodecError, Event};
use tokio_util::sync::CancellationToken;

use crate::{backoff::Backoff, config::KafkaSettings};

use super::{
    plan::{disposition, Disposition, RowFailure},
    OutboxWaker, NOTIFY_CHANNEL,
};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the relay lock connection did not answer: leadership is lost")]
    LockLost,
    #[error("another relay took over (epoch {current}, ours {ours})")]
    Deposed { ours: i64, current: i64 },
    #[error("{0:?} passed between confirming leadership and handing the batch over")]
    Stalled(Duration),
    #[error("the producer failed fatally: {0}")]
    ProducerFatal(String),
    #[error("unknown fencing mode {0:?} (expected \"timeout\" or \"transactions\")")]
    UnknownFencing(String),
}

/// How a deposed leader's in-flight messages are kept off the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// Bounded message timeout and a wait before a new leader's first send.
    MessageTimeout,
    /// Kafka transactions: one `transactional.id` per database.
    Transactions,
}

impl FromStr for Fencing {
    type Err = RelayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "timeout" | "message-timeout" => Ok(Fencing::MessageTimeout),
            "transactions" => Ok(Fencing::Transactions),
            other => Err(RelayError::UnknownFencing(other.to_owned())),
        }
    }
}

/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `TASKFLOW_OUTBOX_BATCH_SIZE` | 500 | most task heads published per pass |
/// | `TASKFLOW_OUTBOX_IDLE_POLL_MS` | 1000 | re-check interval when nothing wakes the relay (safety net) |
/// | `TASKFLOW_OUTBOX_LINGER_MS` | 1 | producer `linger.ms` |
/// | `TASKFLOW_OUTBOX_LOCK_KEY` | 7_310_041 | advisory lock electing the one active relay |
/// | `TASKFLOW_OUTBOX_DRAIN_TIMEOUT_MS` | 10000 | on shutdown, how long to wait for outstanding delivery reports |
/// | `TASKFLOW_OUTBOX_FENCING` | `timeout` | `timeout` (any broker) or `transactions` (Redpanda/Kafka) |
/// | `TASKFLOW_OUTBOX_MESSAGE_TIMEOUT_MS` | 10000 | producer `message.timeout.ms`: how long a handed-over message may still land |
/// | `TASKFLOW_OUTBOX_FENCE_MARGIN_MS` | 2000 | added to the wait before a new leader's first send |
/// | `TASKFLOW_OUTBOX_HEARTBEAT_MS` | 500 | lock-connection check while delivery reports are awaited |
/// | `TASKFLOW_OUTBOX_PARK_AFTER` | 10 | attempts after which a row the registry refuses is parked |
/// | `TASKFLOW_OUTBOX_RETRY_MAX_MS` | 60000 | longest wait before a failed row is retried |
/// | `TASKFLOW_OUTBOX_TRANSACTIONAL_ID` | `taskflow-outbox-relay` | with `transactions`: one per database |
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch_size: i64,
    pub idle_poll: Duration,
    pub linger_ms: u32,
    pub lock_key: i64,
    /// How long shutdown waits for outstanding delivery reports; rows not
    /// acknowledged by then stay in the outbox and are republished later.
    pub drain_timeout: Duration,
    pub fencing: Fencing,
    pub message_timeout: Duration,
    pub fence_margin: Duration,
    pub heartbeat: Duration,
    pub park_after: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub transactional_id: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll: Duration::from_millis(1000),
            linger_ms: 1,
            lock_key: 7_310_041,
            drain_timeout: Duration::from_secs(10),
            fencing: Fencing::MessageTimeout,
            message_timeout: Duration::from_secs(10),
            fence_margin: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
            park_after: 10,
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(60),
            transactional_id: "taskflow-outbox-relay".to_owned(),
        }
    }
}

impl RelayConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::env_or;
        let d = Self::default();
        let ms = |name: &str, default: Duration| -> Result<Duration, crate::config::ConfigError> {
            Ok(Duration::from_millis(env_or(
                name,
                default.as_millis() as u64,
            )?))
        };
        Ok(Self {
            batch_size: env_or("TASKFLOW_OUTBOX_BATCH_SIZE", d.batch_size)?,
            idle_poll: ms("TASKFLOW_OUTBOX_IDLE_POLL_MS", d.idle_poll)?,
            linger_ms: env_or("TASKFLOW_OUTBOX_LINGER_MS", d.linger_ms)?,
            lock_key: env_or("TASKFLOW_OUTBOX_LOCK_KEY", d.lock_key)?,
            drain_timeout: ms("TASKFLOW_OUTBOX_DRAIN_TIMEOUT_MS", d.drain_timeout)?,
            fencing: env_or("TASKFLOW_OUTBOX_FENCING", d.fencing)?,
            message_timeout: ms("TASKFLOW_OUTBOX_MESSAGE_TIMEOUT_MS", d.message_timeout)?,
            fence_margin: ms("TASKFLOW_OUTBOX_FENCE_MARGIN_MS", d.fence_margin)?,
            heartbeat: ms("TASKFLOW_OUTBOX_HEARTBEAT_MS", d.heartbeat)?,
            park_after: env_or("TASKFLOW_OUTBOX_PARK_AFTER", d.park_after)?,
            retry_initial: d.retry_initial,
            retry_max: ms("TASKFLOW_OUTBOX_RETRY_MAX_MS", d.retry_max)?,
            transactional_id: env_or("TASKFLOW_OUTBOX_TRANSACTIONAL_ID", d.transactional_id)?,
        })
    }
}

#[derive(Clone)]
struct RelayMetrics {
    published: IntCounterVec,
    failures: IntCounterVec,
    backlog: IntGauge,
    parked: IntGauge,
    active: IntGauge,
    latency: Histogram,
    batch: Histogram,
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
                    "Outbox failures: stage relay (a leadership term ended) or row \
                     (class transient, refused, unencodable)",
                ),
                &["stage", "class"],
            )?,
            backlog: IntGauge::new(
                "taskflow_outbox_backlog",
                "Outbox rows not yet acknowledged by the broker, parked rows excluded",
            )?,
            parked: IntGauge::new(
                "taskflow_outbox_parked_rows",
                "Outbox rows set aside because they cannot be published; \
                 each holds back the later events of its task",
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
            batch: Histogram::with_opts(
                HistogramOpts::new(
                    "taskflow_outbox_batch_rows",
                    "Rows handed to the producer per relay pass: the broker's cost is per \
                     request as well as per record, so full batches are cheaper per event",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.parked.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.batch.clone()))?;
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
    attempts: i32,
}

struct Encoded {
    row: Row,
    event_id: String,
    bytes: Vec<u8>,
}

/// The heads of the outbox keys, as [`super::plan::select_heads`] defines
/// them: a row with no earlier row of its key (parked or waiting rows
/// included), itself neither parked nor waiting. Scanning in id order with an
/// index probe per row keeps blocked keys from starving the rest.
pub const SELECT_HEADS: &str = "
    SELECT o.id, o.topic, o.partition_key, o.event_type, o.payload, o.traceparent,
           o.created_at, o.attempts
    FROM outbox o
    WHERE o.parked_at IS NULL
      AND (o.not_before IS NULL OR o.not_before <= now())
      AND NOT EXISTS (
          SELECT 1 FROM outbox e
          WHERE e.topic = o.topic AND e.partition_key = o.partition_key AND e.id < o.id)
    ORDER BY o.id
    LIMIT $1";

/// What a pass found.
enum Pass {
    /// Rows were sent: there may be more heads already (the next versions).
    Progress,
    /// Nothing to send; the earliest retry is due in this long, if any.
    Idle(Option<Duration>),
}

pub struct Relay {
    pool: PgPool,
    kafka: KafkaSettings,
    codec: Codec,
    config: RelayConfig,
    metrics: RelayMetrics,
    waker: Option<OutboxWaker>,
    retry: Backoff,
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
            retry: Backoff::new(config.retry_initial, config.retry_max),
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
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.term(&shutdown).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics
                        .failures
                        .with_label_values(&["relay", "term"])
                        .inc();
                    tracing::warn!(error = %e, "outbox relay term ended; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay(failures)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.metrics.active.set(0);
    }

    /// One leadership term: wait for the lock, fence, publish until shutdown
    /// or until leadership is lost.
    async fn term(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut lock_conn = self.pool.acquire().await?.detach();
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.config.lock_key)
                .fetch_one(&mut lock_conn)
                .await?;
            if locked {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.idle_poll) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        // Waits for a deposed leader's batch transaction to end (it holds the
        // row), then makes that leader's next batch fail its epoch check. A
        // holder whose session is still alive leads under another lock key:
        // stand by rather than take turns with it.
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE outbox_leader
             SET epoch = epoch + 1, holder = $1, since = now(),
                 holder_pid = pg_backend_pid(),
                 holder_started = (SELECT backend_start FROM pg_stat_activity
                                   WHERE pid = pg_backend_pid())
             WHERE holder_pid IS NULL
                OR holder_pid = pg_backend_pid()
                OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                               WHERE a.pid = outbox_leader.holder_pid
                                 AND a.backend_start = outbox_leader.holder_started)
             RETURNING epoch",
        )
        .bind(holder_name())
        .fetch_optional(&mut lock_conn)
        .await?;
        let Some(epoch) = epoch else {
            tracing::warn!(
                lock_key = self.config.lock_key,
                "another relay leads this database under a different TASKFLOW_OUTBOX_LOCK_KEY; standing by"
            );
            let _ = lock_conn.close().await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.idle_poll) => {}
                _ = shutdown.cancelled() => {}
            }
            return Ok(());
        };
        self.set_active(true);
        tracing::info!(epoch, fencing = ?self.config.fencing, "outbox relay active");
        let result = self.lead(&mut lock_conn, epoch, shutdown).await;
        self.set_active(false);
        // Closing the session releases the advisory lock at once.
        let _ = lock_conn.close().await;
        result
    }

    fn set_active(&self, active: bool) {
        self.metrics.active.set(i64::from(active));
        if let Some(w) = &self.waker {
            w.set_leader_here(active);
        }
    }

    fn producer(&self) -> Result<FutureProducer, RelayError> {
        let mut config = self.kafka.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                self.config.message_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.config.linger_ms.to_string());
        if self.config.fencing == Fencing::Transactions {
            config
                .set("transactional.id", &self.config.transactional_id)
                .set(
                    "transaction.timeout.ms",
                    self.config.message_timeout.as_millis().to_string(),
                );
        }
        let producer: FutureProducer = config.create()?;
        if self.config.fencing == Fencing::Transactions {
            // Bumps the producer epoch at the transaction coordinator: any
            // earlier producer with this id is fenced from here on.
            producer.init_transactions(self.config.message_timeout * 3)?;
        }
        Ok(producer)
    }

    async fn lead(
        &self,
        lock_conn: &mut PgConnection,
        epoch: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut fence_conn = self.pool.acquire().await?.detach();
        if self.config.fencing == Fencing::MessageTimeout {
            self.wait_out_previous_leader(lock_conn, &mut fence_conn, shutdown)
                .await?;
        }
        let producer = self.producer()?;
        let mut listener = self.listen().await;
        let result = async {
            while !shutdown.is_cancelled() {
                let next_retry = match self
                    .publish_batch(lock_conn, &mut fence_conn, epoch, &producer, shutdown)
                    .await?
                {
                    Pass::Progress => continue,
                    Pass::Idle(next) => next,
                };
                self.wait_for_work(listener.as_mut(), next_retry, shutdown)
                    .await;
            }
            Ok(())
        }
        .await;
        let _ = fence_conn.close().await;
        if result.is_err() {
            // Nothing of a term that ended in doubt may still go out. Tearing
            // the client down can block while a broker stalls: off the runtime,
            // and not awaited, so the relay stands by at once.
            producer.purge(PurgeConfig::default().queue().inflight());
            tokio::task::spawn_blocking(move || drop(producer));
        } else {
            let drain = self.config.drain_timeout;
            let _ = tokio::task::spawn_blocking(move || {
                let _ = producer.flush(drain);
            })
            .await;
        }
        result
    }

    /// Waits until no message of an earlier leader can still land, checking
    /// meanwhile that the lock is still ours.
    async fn wait_out_previous_leader(
        &self,
        lock_conn: &mut PgConnection,
        fence_conn: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let remaining_ms: Option<f64> = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM (send_deadline - now())) * 1000)::float8
             FROM outbox_send_fence",
        )
        .fetch_one(&mut *fence_conn)
        .await?;
        let Some(remaining_ms) = remaining_ms else {
            return Ok(());
        };
        let wait = Duration::from_secs_f64((remaining_ms.max(0.0)) / 1000.0);
        if remaining_ms < -(self.config.fence_margin.as_millis() as f64) {
            return Ok(());
        }
        let until = Instant::now() + wait + self.config.fence_margin;
        tracing::info!(
            wait_ms = (wait + self.config.fence_margin).as_millis() as u64,
            "waiting out the previous relay's in-flight messages"
        );
        while Instant::now() < until {
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat.min(until - Instant::now())) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            self.confirm(lock_conn).await?;
        }
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| tracing::warn!(error = %e, "outbox LISTEN failed; polling instead"))
            .ok()?;
        l.listen(NOTIFY_CHANNEL)
            .await
            .map_err(|e| tracing::warn!(error = %e, "outbox LISTEN failed; polling instead"))
            .ok()?;
        Some(l)
    }

    /// Sleeps until a commit is announced (in-process or by NOTIFY), a
    /// retry falls due, the idle poll passes, or shutdown.
    async fn wait_for_work(
        &self,
        listener: Option<&mut PgListener>,
        next_retry: Option<Duration>,
        shutdown: &CancellationToken,
    ) {
        let remote = async {
            match listener {
                Some(l) => {
                    if let Err(e) = l.recv().await {
                        tracing::debug!(error = %e, "outbox listener interrupted");
                        tokio::time::sleep(self.config.idle_poll).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let local = async {
            match &self.waker {
                Some(w) => w.woken().await,
                None => std::future::pending().await,
            }
        };
        let timer = next_retry
            .unwrap_or(self.config.idle_poll)
            .min(self.config.idle_poll);
        tokio::select! {
            _ = remote => {}
            _ = local => {}
            _ = tokio::time::sleep(timer) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    /// A round trip on the lock's connection, bounded: if it does not answer,
    /// the lock may be gone, and this relay must not hand anything over.
    async fn confirm(&self, conn: &mut PgConnection) -> Result<(), RelayError> {
        let bound = self.config.heartbeat * 4;
        match tokio::time::timeout(bound, sqlx::query("SELECT 1").execute(conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox relay lock connection failed");
                Err(RelayError::LockLost)
            }
            Err(_) => Err(RelayError::LockLost),
        }
    }

    /// One pass: select the heads, encode, fence, send, await every report
    /// (heart-beating the lock), delete what was acknowledged and record
    /// what failed.
    async fn publish_batch(
        &self,
        lock_conn: &mut PgConnection,
        fence_conn: &mut PgConnection,
        epoch: i64,
        producer: &FutureProducer,
        shutdown: &CancellationToken,
    ) -> Result<Pass, RelayError> {
        let mut tx = lock_conn.begin().await?;
        let current: i64 = sqlx::query_scalar("SELECT epoch FROM outbox_leader FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        if current != epoch {
            return Err(RelayError::Deposed {
                ours: epoch,
                current,
            });
        }
        let rows: Vec<Row> = sqlx::query_as(SELECT_HEADS)
            .bind(self.config.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            let next_ms: Option<f64> = sqlx::query_scalar(
                "SELECT (EXTRACT(EPOCH FROM (min(not_before) - now())) * 1000)::float8
                 FROM outbox WHERE parked_at IS NULL AND not_before > now()",
            )
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Pass::Idle(
                next_ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
            ));
        }

        let mut encoded = Vec::with_capacity(rows.len());
        let mut failed: Vec<(i64, i32, RowFailure)> = Vec::new();
        for row in rows {
            match self.encode(&row).await {
                Ok((event_id, bytes)) => encoded.push(Encoded {
                    row,
                    event_id,
                    bytes,
                }),
                Err(f) => failed.push((row.id, row.attempts, f)),
            }
        }

        let mut delivered: Vec<i64> = Vec::with_capacity(encoded.len());
        if !encoded.is_empty() {
            self.metrics.batch.observe(encoded.len() as f64);
            let outcome = self
                .send_all(&mut tx, fence_conn, producer, &encoded, shutdown)
                .await?;
            let Some(reports) = outcome else {
                // Shutdown before every report came: the rows stay.
                tx.rollback().await?;
                return Ok(Pass::Progress);
            };
            let now = Utc::now();
            for (enc, report) in encoded.iter().zip(reports) {
                match report {
                    Ok(()) => {
                        delivered.push(enc.row.id);
                        self.metrics
                            .published
                            .with_label_values(&[enc.row.topic.as_str()])
                            .inc();
                        let latency = (now - enc.row.created_at).num_microseconds().unwrap_or(0);
                        self.metrics.latency.observe(latency.max(0) as f64 / 1e6);
                    }
                    Err(e) => failed.push((
                        enc.row.id,
                        enc.row.attempts,
                        RowFailure::Transient(format!("delivery: {e}")),
                    )),
                }
            }
        }

        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&delivered)
            .execute(&mut *tx)
            .await?;
        for (id, attempts, failure) in &failed {
            self.record_failure(&mut tx, *id, *attempts, failure)
                .await?;
        }
        tx.commit().await?;
        if let Some(fatal) = producer.client().fatal_error() {
            return Err(RelayError::ProducerFatal(fatal.1));
        }
        Ok(Pass::Progress)
    }

    async fn encode(&self, row: &Row) -> Result<(String, Vec<u8>), RowFailure> {
        // Deserialised from the borrowed tree: no deep copy of every payload.
        let event = <Event as serde::Deserialize>::deserialize(&row.payload)
            .map_err(|e| RowFailure::Unencodable(format!("payload: {e}")))?;
        let bytes = self
            .codec
            .encode(&row.topic, &event)
            .await
            .map_err(classify)?;
        Ok((event.metadata().event_id.to_string(), bytes))
    }

    /// Fences, hands every row to the producer, and awaits every report while
    /// checking the lock. `None` when shutdown cut the wait short.
    async fn send_all(
        &self,
        tx: &mut PgConnection,
        fence_conn: &mut PgConnection,
        producer: &FutureProducer,
        encoded: &[Encoded],
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Result<(), String>>>, RelayError> {
        let transactional = self.config.fencing == Fencing::Transactions;
        // The deadline below is `now() + message_timeout` as of the UPDATE; a
        // message handed over later lives longer than that by the gap, which
        // must stay well inside the margin a successor adds.
        let fenced_at = Instant::now();
        if !transactional {
            // Committed before anything is handed over, so a successor knows
            // how long this batch's messages may still land.
            sqlx::query(
                "UPDATE outbox_send_fence
                 SET send_deadline = greatest(coalesce(send_deadline, now()), now() + $1)",
            )
            .bind(self.config.message_timeout)
            .execute(&mut *fence_conn)
            .await?;
        }
        self.confirm(&mut *tx).await?;
        if transactional {
            producer.begin_transaction()?;
        }
        let futures: Vec<_> = encoded
            .iter()
            .map(|enc| {
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
                // Every send is enqueued before any is awaited: awaiting one at
                // a time costs a full linger per message (rust-rdkafka #464).
                producer.send_result(record).map_err(|(e, _)| e)
            })
            .collect();
        let handed_over = fenced_at.elapsed();
        if !transactional && handed_over > self.config.fence_margin / 2 {
            producer.purge(PurgeConfig::default().queue().inflight());
            return Err(RelayError::Stalled(handed_over));
        }

        let reports = join_all(futures.into_iter().map(|f| async move {
            match f {
                Err(e) => Err(format!("enqueue: {e}")),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("producer dropped the message".to_owned()),
                },
            }
        }));
        let Some(mut reports) = self
            .await_with_heartbeat(tx, reports, shutdown, producer)
            .await?
        else {
            return Ok(None);
        };
        if transactional {
            if let Err(e) = producer.commit_transaction(self.config.message_timeout) {
                tracing::warn!(error = %e, "outbox transaction not committed; aborting");
                let _ = producer.abort_transaction(self.config.message_timeout);
                // Records of an aborted transaction are invisible to
                // read_committed consumers: none of them counts as published.
                for r in &mut reports {
                    if r.is_ok() {
                        *r = Err(format!("transaction: {e}"));
                    }
                }
            }
        }
        Ok(Some(reports))
    }

    /// Awaits `reports`, confirming the lock every heartbeat. Losing it
    /// purges the producer: nothing of this batch may be retried by a relay
    /// that no longer leads.
    async fn await_with_heartbeat<F, T>(
        &self,
        conn: &mut PgConnection,
        reports: F,
        shutdown: &CancellationToken,
        producer: &FutureProducer,
    ) -> Result<Option<T>, RelayError>
    where
        F: Future<Output = T>,
    {
        tokio::pin!(reports);
        let mut beat = tokio::time::interval(self.config.heartbeat);
        beat.tick().await;
        let drain = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.config.drain_timeout).await;
        };
        tokio::pin!(drain);
        loop {
            tokio::select! {
                r = &mut reports => return Ok(Some(r)),
                _ = &mut drain => return Ok(None),
                _ = beat.tick() => {
                    if let Err(e) = self.confirm(&mut *conn).await {
                        producer.purge(PurgeConfig::default().queue().inflight());
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn record_failure(
        &self,
        conn: &mut PgConnection,
        id: i64,
        attempts: i32,
        failure: &RowFailure,
    ) -> Result<(), RelayError> {
        let attempts = attempts.saturating_add(1);
        let disposition = disposition(
            failure,
            u32::try_from(attempts).unwrap_or(u32::MAX),
            self.config.park_after,
            &self.retry,
        );
        self.metrics
            .failures
            .with_label_values(&["row", failure.class()])
            .inc();
        let (not_before, parked) = match disposition {
            Disposition::RetryAfter(d) => {
                tracing::warn!(
                    outbox_id = id,
                    attempts,
                    retry_in_ms = d.as_millis() as u64,
                    error = failure.reason(),
                    "outbox row not published; its task waits"
                );
                (
                    Some(Utc::now() + chrono::Duration::from_std(d).unwrap_or_default()),
                    false,
                )
            }
            Disposition::Park => {
                tracing::error!(
                    outbox_id = id,
                    attempts,
                    error = failure.reason(),
                    "outbox row parked; its task waits for `taskflow-admin outbox retry`"
                );
                (None, true)
            }
        };
        sqlx::query(
            "UPDATE outbox SET attempts = $2, last_error = $3, not_before = $4,
                    parked_at = CASE WHEN $5 THEN now() END
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(failure.reason())
        .bind(not_before)
        .bind(parked)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Codec errors as row failures (see [`RowFailure`]).
fn classify(e: CodecError) -> RowFailure {
    if e.is_transient() {
        return RowFailure::Transient(format!("encode: {e}"));
    }
    match e {
        CodecError::RegistryRejected { .. } | CodecError::UnknownSchemaId(_) => {
            RowFailure::Refused(format!("encode: {e}"))
        }
        other => RowFailure::Unencodable(format!("encode: {other}")),
    }
}

fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}

async fn report_backlog(pool: PgPool, metrics: RelayMetrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                    count(*) FILTER (WHERE parked_at IS NOT NULL)
             FROM outbox",
        )
        .fetch_one(&pool)
        .await
        {
            Ok((backlog, parked)) => {
                metrics.backlog.set(backlog);
                metrics.parked.set(parked);
            }
            Err(e) => tracing::debug!(error = %e, "outbox backlog not measured"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_parses() {
        assert_eq!(
            "timeout".parse::<Fencing>().ok(),
            Some(Fencing::MessageTimeout)
        );
        assert_eq!(
            " Transactions ".parse::<Fencing>().ok(),
            Some(Fencing::Transactions)
        );
        assert!("none".parse::<Fencing>().is_err());
    }

    #[test]
    fn codec_errors_are_classed() {
        assert!(matches!(
            classify(CodecError::RegistryUnavailable("503".into())),
            RowFailure::Transient(_)
        ));
        assert!(matches!(
            classify(CodecError::RegistryRejected {
                status: 409,
                message: "incompatible".into()
            }),
            RowFailure::Refused(_)
        ));
        assert!(matches!(
            classify(CodecError::UnknownRecordName("x".into())),
            RowFailure::Unencodable(_)
        ));
    }
}
