//! The recurrence worker: when an instance of a recurring task is completed, it creates the
//! next instance of its series.
//!
//! Consumer group `taskflow-recurrence`, topic `taskflow.task-events`. Only `TaskCompleted`
//! of a task that belongs to a series has an effect; every other event is acknowledged as is.
//!
//! # Guarantee: at most one instance per occurrence, and exactly one per completion
//!
//! The runtime delivers every message at least once and commits its offset only after the
//! handler returned `Ok`, i.e. after the effect's transaction committed. The effect is one
//! PostgreSQL transaction ([`store::RecurrenceStore::apply`]):
//!
//! 1. lock the series row (`FOR UPDATE`): completions of one series, and `DELETE
//!    ?scope=series` (which ends the series under the same lock), are serialised;
//! 2. if the series has ended, do nothing;
//! 3. compute the next occurrence ([`plan`], pure) and insert the new task with `ON CONFLICT
//!    DO NOTHING` on two unique keys: `(series_id, occurrence)` (one instance per scheduled
//!    instant) and `previous_task_id` (one successor per instance);
//! 4. only if a row was inserted, write its `TaskCreated` outbox row (causation = the
//!    completion's event id, correlation = the completion's); commit.
//!
//! So a redelivered completion (crash between commit and offset commit, rebalance), two
//! workers racing on one completion, or complete → reopen → complete all find the key taken
//! and create nothing: the task and its event exist together, once. What this rests on: the
//! two unique indexes (`migrations/20261122000007_recurrence_series.sql`) cover deleted rows
//! too, and the API takes the same series lock when it ends a series; an ended series is
//! never reopened. A worker killed after its insert and before its commit (the failpoint
//! below) leaves nothing: the transaction dies with its connection and the redelivery
//! creates the instance.
//!
//! Errors: a database that cannot be reached is transient (retried, never dead-lettered); a
//! constraint or data error is permanent (dead-lettered). A rule the calendar cannot evaluate
//! (it passed the API's validation, so only an older binary's rule) ends the series with
//! reason `invalid_rule` rather than dead-lettering every completion.
//!
//! # Test hook
//!
//! `TASKFLOW_RECURRENCE_FAILPOINT=abort_before_commit` aborts the process after the insert
//! and the outbox row, before the commit; `abort_after_commit` after the commit, before the
//! offset is committed. The kill tests use them; unset (production) they cost one branch.

pub mod store;

use chrono::{DateTime, SubsecRound, Utc};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use sqlx::PgPool;
use taskflow_calendar::{Completed, Mode, Rule, Schedule, Series};
use taskflow_infra::config::{ConfigError, KafkaSettings};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_schemas::{
    topics, Codec, Event, EventMetadata, RecurrenceMode, ReminderSpec, TaskCompleted, TaskCreated,
    TaskSnapshot, TaskStatus,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{
    self, Decoded, Decoder, Handler, HandlerError, RuntimeError, RuntimeSettings, SettingsError,
    WorkerHandle,
};
pub use store::{Applied, RecurrenceStore, RecurrenceStoreError, SeriesState};

pub const GROUP_ID: &str = "taskflow-recurrence";

/// Where the process stops on purpose (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    AbortBeforeCommit,
    AbortAfterCommit,
}

impl Failpoint {
    /// `TASKFLOW_RECURRENCE_FAILPOINT`; unset or empty is none.
    pub fn from_env() -> Result<Option<Self>, RecurrenceError> {
        match std::env::var("TASKFLOW_RECURRENCE_FAILPOINT")
            .ok()
            .as_deref()
        {
            None | Some("") => Ok(None),
            Some("abort_before_commit") => Ok(Some(Self::AbortBeforeCommit)),
            Some("abort_after_commit") => Ok(Some(Self::AbortAfterCommit)),
            Some(other) => Err(RecurrenceError::Failpoint(other.to_owned())),
        }
    }
}

/// Why a completion ends its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// COUNT or UNTIL reached.
    RuleEnded,
    /// The stored rule or zone does not evaluate.
    InvalidRule,
}

impl EndReason {
    /// The `series.end_reason` value and the metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::RuleEnded => "rule_ended",
            EndReason::InvalidRule => "invalid_rule",
        }
    }
}

/// The next instance of a series, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NextInstance {
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub series_id: Uuid,
    pub occurrence: DateTime<Utc>,
    pub series_index: i32,
    pub previous_task_id: Uuid,
    /// The completion's event id.
    pub spawned_by: Uuid,
    pub snapshot: TaskSnapshot,
    /// Its `TaskCreated`, written to the outbox in the same transaction.
    pub event: Event,
}

/// What a completion asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing to do (not a completion of a series instance).
    Ignore,
    /// The series has ended (deleted, recurrence removed, exhausted): nothing is created.
    SeriesEnded,
    /// The rule has no further occurrence, or cannot be evaluated: end the series.
    End(EndReason),
    Create(Box<NextInstance>),
}

/// The series and instance a completion belongs to, if it is one of a recurring task.
pub fn series_of(event: &Event) -> Option<(&TaskCompleted, Uuid)> {
    match event {
        Event::TaskCompleted(c) if c.task.recurrence.is_some() => {
            c.task.series_id.map(|series| (c, series))
        }
        _ => None,
    }
}

/// Decides what completion `c` does to its series. Pure: `new_id`, `event_id` and `now` are
/// inputs, so the same inputs give the same plan.
///
/// `previous_index` is the completed instance's `series_index`; `series` the locked row.
pub fn plan(
    c: &TaskCompleted,
    series: &SeriesState,
    previous_index: i32,
    now: DateTime<Utc>,
    new_id: Uuid,
    event_id: Uuid,
) -> Plan {
    let Some(recurrence) = &c.task.recurrence else {
        return Plan::Ignore;
    };
    if series.ended {
        return Plan::SeriesEnded;
    }
    let (Ok(rule), Ok(zone)) = (
        Rule::parse(&recurrence.rrule),
        taskflow_calendar::zone(&recurrence.tz),
    ) else {
        return Plan::End(EndReason::InvalidRule);
    };
    let mode = match recurrence.mode {
        RecurrenceMode::FromDue => Mode::FromDue,
        RecurrenceMode::FromCompletion => Mode::FromCompletion,
    };
    let occurrence = c
        .task
        .occurrence
        .or(c.task.due_at)
        .unwrap_or(series.dtstart);
    let s = Series {
        schedule: Schedule {
            rule: &rule,
            zone,
            dtstart: series.dtstart,
            exdates: &recurrence.exdates,
        },
        mode,
    };
    let done = Completed {
        occurrence,
        index: u32::try_from(previous_index).unwrap_or(0),
        completed_at: c.completed_at,
    };
    let next = match s.next_instance(&done, now) {
        Ok(Some(next)) => next,
        Ok(None) => return Plan::End(EndReason::RuleEnded),
        Err(_) => return Plan::End(EndReason::InvalidRule),
    };
    let snapshot = TaskSnapshot {
        title: c.task.title.clone(),
        description: c.task.description.clone(),
        status: TaskStatus::Open,
        due_at: Some(next),
        priority: c.task.priority,
        tags: c.task.tags.clone(),
        recurrence: Some(recurrence.clone()),
        // Offsets before due carry over; an absolute reminder belonged to the old instance.
        reminders: c
            .task
            .reminders
            .iter()
            .filter(|r| r.before_seconds.is_some())
            // Same id: the reminder of the series keeps its identity; a snooze was of the
            // completed instance only.
            .map(|r| ReminderSpec {
                snoozed_until: None,
                ..r.clone()
            })
            .collect(),
        completed_at: None,
        created_at: now,
        updated_at: now,
        series_id: Some(series.id),
        occurrence: Some(next),
    };
    let event = Event::TaskCreated(TaskCreated {
        metadata: EventMetadata {
            event_id,
            occurred_at: now,
            user_id: c.metadata.user_id,
            task_id: new_id,
            version: 1,
            correlation_id: c.metadata.correlation_id.clone(),
            causation_id: Some(c.metadata.event_id.hyphenated().to_string()),
        },
        task: snapshot.clone(),
    });
    Plan::Create(Box::new(NextInstance {
        task_id: new_id,
        user_id: c.metadata.user_id,
        series_id: series.id,
        occurrence: next,
        series_index: previous_index.saturating_add(1),
        previous_task_id: c.metadata.task_id,
        spawned_by: c.metadata.event_id,
        snapshot,
        event,
    }))
}

/// The worker's own metrics (bounded labels: mode, reason).
#[derive(Clone)]
pub struct RecurrenceMetrics {
    created: IntCounterVec,
    duplicates: IntCounter,
    ended: IntCounterVec,
    after_end: IntCounter,
}

impl RecurrenceMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let created = IntCounterVec::new(
            Opts::new(
                "taskflow_recurrence_instances_created_total",
                "Next instances created (task + TaskCreated outbox row committed), by mode.",
            ),
            &["mode"],
        )?;
        let duplicates = IntCounter::new(
            "taskflow_recurrence_duplicates_skipped_total",
            "Completions whose next instance already existed (redelivery, race, complete-reopen-complete): nothing created.",
        )?;
        let ended = IntCounterVec::new(
            Opts::new(
                "taskflow_recurrence_series_ended_total",
                "Series ended by the worker: rule_ended (COUNT/UNTIL), invalid_rule.",
            ),
            &["reason"],
        )?;
        let after_end = IntCounter::new(
            "taskflow_recurrence_completions_after_end_total",
            "Completions of a series already ended (deleted with scope=series, recurrence removed, exhausted): nothing created.",
        )?;
        registry.register(Box::new(created.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        registry.register(Box::new(ended.clone()))?;
        registry.register(Box::new(after_end.clone()))?;
        Ok(Self {
            created,
            duplicates,
            ended,
            after_end,
        })
    }

    fn record(&self, applied: &Applied) {
        match applied {
            Applied::Ignored => {}
            Applied::Created { mode } => self.created.with_label_values(&[mode]).inc(),
            Applied::Duplicate => self.duplicates.inc(),
            Applied::SeriesEnded => self.after_end.inc(),
            Applied::Ended(reason) => self.ended.with_label_values(&[reason.as_str()]).inc(),
        }
    }
}

/// The recurrence worker's [`Handler`]: a thin adapter over [`RecurrenceStore::apply`].
pub struct RecurrenceHandler {
    store: RecurrenceStore,
    metrics: RecurrenceMetrics,
    waker: OutboxWaker,
}

impl Handler for RecurrenceHandler {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        let Some((completed, series_id)) = series_of(&msg.event) else {
            return Ok(());
        };
        let now = Utc::now().trunc_subsecs(6);
        let applied = self.store.apply(completed, series_id, now).await?;
        if matches!(applied, Applied::Created { .. }) {
            self.waker.wake();
        }
        tracing::debug!(?applied, series = %series_id, "completion handled");
        self.metrics.record(&applied);
        Ok(())
    }
}

impl From<RecurrenceStoreError> for HandlerError {
    fn from(e: RecurrenceStoreError) -> Self {
        e.class.handler_error(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecurrenceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(
        "TASKFLOW_RECURRENCE_FAILPOINT={0:?}: expected abort_before_commit or abort_after_commit"
    )]
    Failpoint(String),
}

/// Kafka connection, consumer settings, and the topic new instances' events go to.
#[derive(Debug, Clone)]
pub struct RecurrenceSettings {
    pub kafka: KafkaSettings,
    pub runtime: RuntimeSettings,
    /// `TASKFLOW_TOPIC_TASK_EVENTS`: where the `TaskCreated` of a new instance is published
    /// (through the outbox), and by default the topic consumed.
    pub topic_task_events: String,
    pub failpoint: Option<Failpoint>,
}

impl RecurrenceSettings {
    pub fn from_env() -> Result<Self, RecurrenceError> {
        let topic: String = taskflow_infra::config::env_or(
            "TASKFLOW_TOPIC_TASK_EVENTS",
            topics::TASK_EVENTS.to_owned(),
        )?;
        Ok(Self {
            kafka: KafkaSettings::from_env(GROUP_ID)?,
            runtime: RuntimeSettings::from_env(GROUP_ID, &[topic.as_str()])?,
            topic_task_events: topic,
            failpoint: Failpoint::from_env()?,
        })
    }

    /// For tests: the given brokers, group and topic, defaults for the rest.
    pub fn new(brokers: &str, group_id: &str, topic: &str) -> Self {
        Self {
            kafka: KafkaSettings::new(brokers, group_id),
            runtime: RuntimeSettings::new(group_id, &[topic]),
            topic_task_events: topic.to_owned(),
            failpoint: None,
        }
    }
}

/// Starts the recurrence worker and returns its handle at once. `waker` is the process's
/// outbox waker (give the same one to the process's relay).
pub fn spawn_recurrence_worker<D: Decoder>(
    settings: RecurrenceSettings,
    pool: PgPool,
    waker: OutboxWaker,
    decoder: D,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, RecurrenceError> {
    let handler = RecurrenceHandler {
        store: RecurrenceStore::new(pool, settings.topic_task_events.clone(), settings.failpoint),
        metrics: RecurrenceMetrics::register(registry)?,
        waker,
    };
    Ok(runtime::spawn(
        settings.kafka.client_config(),
        settings.runtime,
        decoder,
        handler,
        registry,
        shutdown,
    )?)
}

/// [`spawn_recurrence_worker`] with the production decoder, until it stops.
pub async fn run_recurrence_worker(
    settings: RecurrenceSettings,
    pool: PgPool,
    waker: OutboxWaker,
    codec: Codec,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), RecurrenceError> {
    Ok(
        spawn_recurrence_worker(settings, pool, waker, codec, registry, shutdown)?
            .join()
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use taskflow_schemas::{Priority, Recurrence};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn completion(rrule: &str, mode: RecurrenceMode, due: &str, completed: &str) -> TaskCompleted {
        let due = at(due);
        TaskCompleted {
            metadata: EventMetadata {
                event_id: Uuid::now_v7(),
                occurred_at: at(completed),
                user_id: Uuid::now_v7(),
                task_id: Uuid::now_v7(),
                version: 2,
                correlation_id: "corr-7".to_owned(),
                causation_id: None,
            },
            completed_at: at(completed),
            task: TaskSnapshot {
                title: "Water the plants".to_owned(),
                description: Some("balcony".to_owned()),
                status: TaskStatus::Completed,
                due_at: Some(due),
                priority: Priority::High,
                tags: vec!["home".to_owned()],
                recurrence: Some(Recurrence {
                    rrule: rrule.to_owned(),
                    tz: "Europe/Berlin".to_owned(),
                    mode,
                    exdates: vec![],
                }),
                reminders: vec![ReminderSpec::before(900), ReminderSpec::at(due)],
                completed_at: Some(at(completed)),
                created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                updated_at: at(completed),
                series_id: Some(Uuid::from_u128(7)),
                occurrence: Some(due),
            },
        }
    }

    fn series(dtstart: &str) -> SeriesState {
        SeriesState {
            id: Uuid::from_u128(7),
            dtstart: at(dtstart),
            ended: false,
        }
    }

    #[test]
    fn a_daily_completion_creates_the_next_day_with_carried_fields_and_causation() {
        let c = completion(
            "FREQ=DAILY",
            RecurrenceMode::FromDue,
            "2026-12-01T09:00:00+01:00",
            "2026-12-01T08:00:00+01:00",
        );
        let now = at("2026-12-01T08:00:01+01:00");
        let (id, ev) = (Uuid::now_v7(), Uuid::now_v7());
        let Plan::Create(next) = plan(&c, &series("2026-12-01T09:00:00+01:00"), 0, now, id, ev)
        else {
            panic!("expected a new instance")
        };
        assert_eq!(next.occurrence, at("2026-12-02T09:00:00+01:00"));
        assert_eq!(next.snapshot.due_at, Some(next.occurrence));
        assert_eq!(next.series_index, 1);
        assert_eq!(next.previous_task_id, c.metadata.task_id);
        assert_eq!(next.snapshot.title, "Water the plants");
        assert_eq!(next.snapshot.tags, ["home"]);
        assert_eq!(next.snapshot.priority, Priority::High);
        assert_eq!(next.snapshot.status, TaskStatus::Open);
        // The relative reminder carries over, the absolute one does not.
        assert_eq!(next.snapshot.reminders.len(), 1);
        assert_eq!(next.snapshot.reminders[0].before_seconds, Some(900));
        let meta = next.event.metadata();
        assert_eq!(meta.task_id, id);
        assert_eq!(meta.event_id, ev);
        assert_eq!(meta.version, 1);
        assert_eq!(meta.correlation_id, "corr-7");
        let cause = c.metadata.event_id.hyphenated().to_string();
        assert_eq!(meta.causation_id.as_deref(), Some(cause.as_str()));
    }

    #[test]
    fn the_same_completion_plans_the_same_occurrence() {
        let c = completion(
            "FREQ=WEEKLY;BYDAY=MO",
            RecurrenceMode::FromDue,
            "2026-11-30T09:00:00+01:00",
            "2026-11-30T10:00:00+01:00",
        );
        let s = series("2026-11-30T09:00:00+01:00");
        let now = at("2026-11-30T10:00:00+01:00");
        let occ = |p: Plan| match p {
            Plan::Create(n) => n.occurrence,
            other => panic!("{other:?}"),
        };
        let a = occ(plan(&c, &s, 0, now, Uuid::now_v7(), Uuid::now_v7()));
        let b = occ(plan(&c, &s, 0, now, Uuid::now_v7(), Uuid::now_v7()));
        assert_eq!(a, b);
        assert_eq!(a, at("2026-12-07T09:00:00+01:00"));
    }

    #[test]
    fn ended_series_exhausted_rules_and_bad_rules() {
        let c = completion(
            "FREQ=DAILY;COUNT=1",
            RecurrenceMode::FromDue,
            "2026-12-01T09:00:00+01:00",
            "2026-12-01T10:00:00+01:00",
        );
        let now = at("2026-12-01T10:00:00+01:00");
        let mut s = series("2026-12-01T09:00:00+01:00");
        let ids = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            plan(&c, &s, 0, now, ids.0, ids.1),
            Plan::End(EndReason::RuleEnded)
        );
        s.ended = true;
        assert_eq!(plan(&c, &s, 0, now, ids.0, ids.1), Plan::SeriesEnded);
        let bad = completion(
            "FREQ=SOMETIMES",
            RecurrenceMode::FromDue,
            "2026-12-01T09:00:00+01:00",
            "2026-12-01T10:00:00+01:00",
        );
        assert_eq!(
            plan(
                &bad,
                &series("2026-12-01T09:00:00+01:00"),
                0,
                now,
                ids.0,
                ids.1
            ),
            Plan::End(EndReason::InvalidRule)
        );
    }

    #[test]
    fn from_completion_follows_the_completion() {
        let c = completion(
            "FREQ=DAILY;INTERVAL=2",
            RecurrenceMode::FromCompletion,
            "2026-12-01T09:00:00+01:00",
            "2026-12-05T18:00:00+01:00",
        );
        let now = at("2026-12-05T18:00:01+01:00");
        let Plan::Create(next) = plan(
            &c,
            &series("2026-12-01T09:00:00+01:00"),
            0,
            now,
            Uuid::now_v7(),
            Uuid::now_v7(),
        ) else {
            panic!("expected a new instance")
        };
        assert_eq!(next.occurrence, at("2026-12-07T09:00:00+01:00"));
    }

    #[test]
    fn only_completions_of_series_instances_count() {
        let c = completion(
            "FREQ=DAILY",
            RecurrenceMode::FromDue,
            "2026-12-01T09:00:00+01:00",
            "2026-12-01T10:00:00+01:00",
        );
        assert!(series_of(&Event::TaskCompleted(c.clone())).is_some());
        let mut plain = c.clone();
        plain.task.recurrence = None;
        assert!(series_of(&Event::TaskCompleted(plain)).is_none());
        let mut legacy = c.clone();
        legacy.task.series_id = None;
        assert!(series_of(&Event::TaskCompleted(legacy)).is_none());
        let reopened = Event::TaskReopened(taskflow_schemas::TaskReopened {
            metadata: c.metadata.clone(),
            task: c.task.clone(),
        });
        assert!(series_of(&reopened).is_none());
    }
}
