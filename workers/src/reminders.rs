//! The reminders worker: durable reminder timers in PostgreSQL, each fired once as
//! `ReminderDue`.
//!
//! Consumer group `taskflow-reminders`, topic `taskflow.task-events`; it publishes
//! `ReminderDue` to `taskflow.reminders` through the outbox. Two parts run in one process:
//!
//! * the **consumer** applies every task event to the task's timers
//!   ([`store::ReminderStore::apply`], the decision in [`plan::reconcile`]): create arms,
//!   a due or reminder change reschedules, complete/delete cancels, reopen re-arms what is
//!   still ahead, a snooze re-arms at the new instant;
//! * the **firing loop** ([`firing`]) sleeps until the earliest pending timer and fires
//!   what is due ([`store::ReminderStore::fire_due`]).
//!
//! # Guarantee: each (reminder, scheduled instant) fires at most once; every pending timer
//! fires
//!
//! *Applying events.* The runtime delivers every message at least once and commits its
//! offset only after the handler returned `Ok`, i.e. after the apply transaction committed.
//! That transaction first moves `reminder_tasks.version` forward, and only if the event's
//! version is newer than the one applied: a redelivered, replayed or late older event is a
//! no-op, so it can neither resurrect a cancelled timer nor move a timer back. The upsert
//! also locks the task's row, so two replicas briefly owning one partition during a
//! rebalance serialise on it.
//!
//! *Firing.* A due timer is fired in one transaction that locks it (`FOR UPDATE SKIP
//! LOCKED`: replicas split the due timers and never take the same one), writes its
//! `ReminderDue` to the outbox and sets it `fired`. Either both happen or neither: a crash
//! before the commit leaves it pending and a restarted (or another) replica fires it; after
//! the commit it is fired and never selected again. Only a change of the instant re-arms a
//! fired timer ([`plan::reconcile`]), so one instant never fires twice. The relay then
//! publishes the row at least once (per-task order kept); consumers dedupe by `event_id` or
//! by `reminder_key` (`<reminder id>@<instant>`).
//!
//! *Against the task as it is now.* The firing transaction reads the task's row: a task
//! completed or deleted since the worker last heard of it (its consumer was down, or is
//! behind) does not fire, and a reminder moved by an event not yet applied follows the
//! task ([`plan::decide`]). So after downtime, overdue timers fire at once, oldest first,
//! each once, with their lateness recorded, and none of a task completed meanwhile.
//!
//! *On time.* Sub-second: the loop sleeps until the earliest instant and is woken when an
//! earlier timer is armed (see [`firing`]). Lateness = commit of the outbox row minus the
//! scheduled instant, in `taskflow_reminder_lateness_seconds`.
//!
//! What this rests on: the worker and the API share the database (the task row is read at
//! firing time); the API never reuses a reminder id within a task; the clocks of the
//! replicas agree to well under a second.

pub mod firing;
pub mod plan;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sqlx::PgPool;
use taskflow_infra::config::{env_or, ConfigError, KafkaSettings};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_schemas::{topics, Codec};
use tokio_util::sync::CancellationToken;

use crate::runtime::{
    self, Decoded, Decoder, Handler, HandlerError, RuntimeError, RuntimeSettings, SettingsError,
    WorkerHandle,
};
pub use firing::{AgendaWaker, Clock, FiringSettings, AGENDA_CHANNEL};
use plan::TaskView;
pub use store::{Applied, Fired, ReminderStore, ReminderStoreError};

pub const GROUP_ID: &str = "taskflow-reminders";

/// The worker's own metrics (bounded labels: outcome).
#[derive(Clone)]
pub struct ReminderMetrics {
    pending: IntGauge,
    fired: IntCounter,
    skipped: IntCounterVec,
    lateness: Histogram,
    batch: Histogram,
    applied: IntCounterVec,
    loop_errors: IntCounter,
}

impl ReminderMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let pending = IntGauge::new(
            "taskflow_reminders_pending",
            "Reminder timers armed and not yet fired (refreshed every 5 s; put off by up to a minute while a burst is firing).",
        )?;
        let fired = IntCounter::new(
            "taskflow_reminders_fired_total",
            "Reminders fired: ReminderDue written to the outbox and the timer marked fired, committed.",
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "taskflow_reminders_not_fired_total",
                "Due timers not fired because the task changed first: cancelled (completed or deleted), removed (reminder gone), moved (rescheduled).",
            ),
            &["outcome"],
        )?;
        let lateness = Histogram::with_opts(
            HistogramOpts::new(
                "taskflow_reminder_lateness_seconds",
                "Commit of a reminder's ReminderDue outbox row minus the instant it was scheduled for.",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
                0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
            ]),
        )?;
        let batch = Histogram::with_opts(
            HistogramOpts::new(
                "taskflow_reminders_batch_seconds",
                "Duration of one firing transaction (lock the due timers, write their ReminderDue rows, mark them fired, commit).",
            )
            .buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 5.0,
            ]),
        )?;
        let applied = IntCounterVec::new(
            Opts::new(
                "taskflow_reminders_events_applied_total",
                "Task events applied to timers (applied) or skipped as older than the version already applied (stale).",
            ),
            &["outcome"],
        )?;
        let loop_errors = IntCounter::new(
            "taskflow_reminders_firing_errors_total",
            "Firing passes that failed (database unavailable); retried with backoff.",
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(fired.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(lateness.clone()))?;
        registry.register(Box::new(batch.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(loop_errors.clone()))?;
        Ok(Self {
            pending,
            fired,
            skipped,
            lateness,
            batch,
            applied,
            loop_errors,
        })
    }

    fn record_firing(&self, f: &Fired, committed: DateTime<Utc>) {
        for at in &f.fired {
            let late = (committed - *at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            self.lateness.observe(late.max(0.0));
        }
        self.fired.inc_by(f.fired.len() as u64);
        for (outcome, n) in [
            ("cancelled", f.cancelled),
            ("removed", f.removed),
            ("moved", f.moved),
        ] {
            if n > 0 {
                self.skipped.with_label_values(&[outcome]).inc_by(n as u64);
            }
        }
    }
}

/// The consumer's [`Handler`]: a thin adapter over [`ReminderStore::apply`].
pub struct ReminderHandler {
    store: Arc<ReminderStore>,
    metrics: ReminderMetrics,
    agenda: AgendaWaker,
}

impl Handler for ReminderHandler {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        let Some(view) = TaskView::of(&msg.event) else {
            return Ok(());
        };
        let applied = self.store.apply(&view).await?;
        match &applied {
            Applied::Stale => self.metrics.applied.with_label_values(&["stale"]).inc(),
            Applied::Applied { earliest_armed, .. } => {
                self.metrics.applied.with_label_values(&["applied"]).inc();
                if earliest_armed.is_some() {
                    self.agenda.armed();
                }
            }
        }
        tracing::debug!(?applied, task = %view.task_id, version = view.version, "task event applied");
        Ok(())
    }
}

impl From<ReminderStoreError> for HandlerError {
    fn from(e: ReminderStoreError) -> Self {
        e.class.handler_error(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TASKFLOW_REMINDERS_BATCH must be between 1 and 10000, got {0}")]
    Batch(i64),
    #[error("the firing loop ended abnormally: {0}")]
    FiringLoop(String),
}

/// Kafka connection, consumer settings, topics and the firing loop's pacing.
#[derive(Debug, Clone)]
pub struct ReminderSettings {
    pub kafka: KafkaSettings,
    pub runtime: RuntimeSettings,
    /// `TASKFLOW_TOPIC_TASK_EVENTS`: the topic consumed.
    pub topic_task_events: String,
    /// `TASKFLOW_TOPIC_REMINDERS`: where `ReminderDue` is published (through the outbox).
    pub topic_reminders: String,
    /// `TASKFLOW_REMINDERS_BATCH` (default 500), `TASKFLOW_REMINDERS_MAX_IDLE_MS` (default
    /// 60000) and `TASKFLOW_REMINDERS_FIRING_LOOPS` (default 1, 1 to 16).
    pub firing: FiringSettings,
    /// The system clock, unless a test shifts it.
    pub clock: Clock,
}

impl ReminderSettings {
    pub fn from_env() -> Result<Self, ReminderError> {
        let topic: String = env_or("TASKFLOW_TOPIC_TASK_EVENTS", topics::TASK_EVENTS.to_owned())?;
        let d = FiringSettings::default();
        let batch: i64 = env_or("TASKFLOW_REMINDERS_BATCH", d.batch)?;
        if !(1..=10_000).contains(&batch) {
            return Err(ReminderError::Batch(batch));
        }
        let max_idle_ms: u64 = env_or(
            "TASKFLOW_REMINDERS_MAX_IDLE_MS",
            d.max_idle.as_millis() as u64,
        )?;
        let loops: usize = env_or("TASKFLOW_REMINDERS_FIRING_LOOPS", d.loops)?;
        Ok(Self {
            kafka: KafkaSettings::from_env(GROUP_ID)?,
            runtime: RuntimeSettings::from_env(GROUP_ID, &[topic.as_str()])?,
            topic_task_events: topic,
            topic_reminders: env_or("TASKFLOW_TOPIC_REMINDERS", topics::REMINDERS.to_owned())?,
            firing: FiringSettings {
                batch,
                max_idle: Duration::from_millis(max_idle_ms.max(1)),
                loops: loops.clamp(1, 16),
            },
            clock: Clock::system(),
        })
    }

    /// For tests: the given brokers, group and topics, defaults for the rest.
    pub fn new(brokers: &str, group_id: &str, task_events: &str, reminders: &str) -> Self {
        Self {
            kafka: KafkaSettings::new(brokers, group_id),
            runtime: RuntimeSettings::new(group_id, &[task_events]),
            topic_task_events: task_events.to_owned(),
            topic_reminders: reminders.to_owned(),
            firing: FiringSettings::default(),
            clock: Clock::system(),
        }
    }
}

/// The running worker: its consumer and its firing loop.
pub struct RemindersWorker {
    pub consumer: WorkerHandle,
    firing: tokio::task::JoinHandle<Result<(), String>>,
    pending: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

impl RemindersWorker {
    /// Waits until both parts have stopped: after the shutdown token given to
    /// [`spawn_reminders_worker`] is cancelled, or as soon as either part fails (then the
    /// other is stopped too). The consumer's error, or the loop's panic, is the result.
    pub async fn join(self) -> Result<(), ReminderError> {
        let Self {
            consumer,
            mut firing,
            pending,
            shutdown,
        } = self;
        let consumer_task = consumer.join();
        tokio::pin!(consumer_task);
        let (consumer_result, firing_result) = tokio::select! {
            r = &mut consumer_task => {
                shutdown.cancel();
                (r, (&mut firing).await)
            }
            f = &mut firing => {
                // The loops return only on shutdown; anything else is a panic.
                shutdown.cancel();
                (consumer_task.await, f)
            }
        };
        pending.abort();
        consumer_result?;
        firing_result
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(ReminderError::FiringLoop)
    }
}

/// Starts the reminders worker (consumer + firing loop) and returns at once. `relay` is the
/// process's outbox waker (give the same one to the process's relay).
pub fn spawn_reminders_worker<D: Decoder>(
    settings: ReminderSettings,
    pool: PgPool,
    relay: OutboxWaker,
    decoder: D,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<RemindersWorker, ReminderError> {
    let store = Arc::new(ReminderStore::new(
        pool.clone(),
        settings.topic_reminders.clone(),
    ));
    let metrics = ReminderMetrics::register(registry)?;
    let agenda = AgendaWaker::new(pool.clone());
    let handler = ReminderHandler {
        store: store.clone(),
        metrics: metrics.clone(),
        agenda: agenda.clone(),
    };
    let consumer = runtime::spawn(
        settings.kafka.client_config(),
        settings.runtime,
        decoder,
        handler,
        registry,
        shutdown.clone(),
    )?;
    let firing_loop = firing::FiringLoop {
        store: store.clone(),
        pool,
        clock: settings.clock,
        settings: settings.firing,
        agenda,
        relay,
        metrics: metrics.clone(),
    };
    // A panic in a loop ends its task; the first one ends this task with its error, `join`
    // reports it and the binary exits non-zero.
    let loops: Vec<_> = (0..settings.firing.loops.max(1))
        .map(|_| tokio::spawn(firing_loop.clone().run(shutdown.clone())))
        .collect();
    let firing = tokio::spawn(async move {
        futures::future::try_join_all(loops)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let pending = tokio::spawn(refresh_pending(store, metrics, shutdown.clone()));
    Ok(RemindersWorker {
        consumer,
        firing,
        pending,
        shutdown,
    })
}

/// Keeps the pending gauge current without putting a count on the firing path: every
/// 5 s, except while this process is firing a burst, when the count (a scan of the whole
/// agenda) would take CPU from the firing itself; it is put off then, by at most a minute.
async fn refresh_pending(
    store: Arc<ReminderStore>,
    metrics: ReminderMetrics,
    shutdown: CancellationToken,
) {
    const EVERY: Duration = Duration::from_secs(5);
    const DEFER_AT_MOST: Duration = Duration::from_secs(60);
    let mut counted = tokio::time::Instant::now();
    loop {
        let stale = counted.elapsed() >= DEFER_AT_MOST;
        if stale || !store.firing_recently(Duration::from_secs(1)) {
            if let Ok(n) = store.pending().await {
                metrics.pending.set(n);
            }
            counted = tokio::time::Instant::now();
        }
        let wait = EVERY
            .saturating_sub(counted.elapsed())
            .max(Duration::from_millis(500));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// [`spawn_reminders_worker`] with the production decoder, until it stops.
pub async fn run_reminders_worker(
    settings: ReminderSettings,
    pool: PgPool,
    relay: OutboxWaker,
    codec: Codec,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), ReminderError> {
    spawn_reminders_worker(settings, pool, relay, codec, registry, shutdown)?
        .join()
        .await
}
