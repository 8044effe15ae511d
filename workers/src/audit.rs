//! The audit worker: every task event and reminder becomes one immutable row of `audit_log`.
//!
//! Consumer group `taskflow-audit`, topics `taskflow.task-events` and `taskflow.reminders`.
//!
//! # Guarantee
//!
//! Each event is recorded exactly once. The runtime delivers every message at least once and
//! commits its offset only after [`AuditHandler`] returned, i.e. after the row's insert
//! committed. The insert is idempotent (`UNIQUE (event_id, occurred_at)`, `ON CONFLICT DO
//! NOTHING`; `occurred_at` is part of the immutable event, so the pair identifies the event),
//! so a redelivery after a crash or rebalance, or a [`replay`], adds nothing. The database
//! refuses UPDATE, DELETE and TRUNCATE of the log (triggers in
//! `migrations/20261122000002_audit.sql`).
//!
//! Errors: a database that cannot be reached (connection, pool timeout, shutdown, deadlock,
//! serialisation failure, missing table) is transient, retried with backoff, never
//! dead-lettered; a constraint or data error is permanent and dead-lettered with the reason.

pub mod replay;
pub mod store;

use chrono::{DateTime, Utc};
use prometheus::Registry;
use sqlx::PgPool;
use taskflow_infra::config::{ConfigError, KafkaSettings};
use taskflow_schemas::{topics, Codec};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{
    self, Decoded, Decoder, Handler, HandlerError, RuntimeError, RuntimeSettings, SettingsError,
    WorkerHandle,
};
pub use store::{AuditStore, AuditStoreError, ErrorClass, Inserted};

pub const GROUP_ID: &str = "taskflow-audit";
pub const TOPICS: [&str; 2] = [topics::TASK_EVENTS, topics::REMINDERS];

/// One `audit_log` row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub event_id: Uuid,
    pub event_type: String,
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub version: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// The whole event in its JSON form (`{"type": ..., "event": {...}}`, as in the outbox).
    pub payload: serde_json::Value,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

/// Maps a decoded message to its audit row. Pure: no I/O, same input, same row.
pub fn audit_row(msg: &Decoded) -> Result<AuditRow, serde_json::Error> {
    let meta = msg.event.metadata();
    Ok(AuditRow {
        event_id: meta.event_id,
        event_type: msg.event.event_type().as_str().to_owned(),
        task_id: meta.task_id,
        user_id: meta.user_id,
        occurred_at: meta.occurred_at,
        version: meta.version,
        correlation_id: meta.correlation_id.clone(),
        causation_id: meta.causation_id.clone(),
        payload: serde_json::to_value(&msg.event)?,
        source_topic: msg.topic.clone(),
        source_partition: msg.partition,
        source_offset: msg.offset,
    })
}

/// The audit worker's [`Handler`]: map, then insert idempotently.
pub struct AuditHandler {
    store: AuditStore,
}

impl AuditHandler {
    pub fn new(store: AuditStore) -> Self {
        Self { store }
    }
}

impl Handler for AuditHandler {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        let row = audit_row(msg)
            .map_err(|e| HandlerError::Permanent(format!("event does not serialise: {e}")))?;
        match self.store.insert(&row).await {
            Ok(Inserted::New) => Ok(()),
            Ok(Inserted::Duplicate) => {
                tracing::debug!(event_id = %row.event_id, "event already recorded");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl From<AuditStoreError> for HandlerError {
    fn from(e: AuditStoreError) -> Self {
        e.class.handler_error(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Kafka connection plus consumer settings of the audit worker.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub kafka: KafkaSettings,
    pub runtime: RuntimeSettings,
}

impl AuditSettings {
    /// `TASKFLOW_KAFKA_*` and `TASKFLOW_CONSUMER_*` variables, defaulting to group
    /// `taskflow-audit` and the audit topics.
    pub fn from_env() -> Result<Self, AuditError> {
        Ok(Self {
            kafka: KafkaSettings::from_env(GROUP_ID)?,
            runtime: RuntimeSettings::from_env(GROUP_ID, &TOPICS)?,
        })
    }

    /// For tests: the given brokers, group and topics, defaults for the rest.
    pub fn new(brokers: &str, group_id: &str, topics: &[&str]) -> Self {
        Self {
            kafka: KafkaSettings::new(brokers, group_id),
            runtime: RuntimeSettings::new(group_id, topics),
        }
    }
}

/// The shared database migrations (the audit table among them).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Applies [`MIGRATOR`] over `pool` (which must connect as the owner).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Starts the audit worker with any [`Decoder`] and returns its handle at once (tests use
/// this with their own decoder or with a `Codec` pointed at a registry stand-in).
pub fn spawn_audit_worker<D: Decoder>(
    settings: AuditSettings,
    pool: PgPool,
    decoder: D,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, AuditError> {
    let handler = AuditHandler::new(AuditStore::new(pool));
    Ok(runtime::spawn(
        settings.kafka.client_config(),
        settings.runtime,
        decoder,
        handler,
        registry,
        shutdown,
    )?)
}

/// Runs the audit worker until `shutdown` is cancelled (then drains and commits) or a fatal
/// error. Migrations are not applied here; see [`migrate`].
pub async fn run_audit_worker(
    settings: AuditSettings,
    pool: PgPool,
    codec: Codec,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), AuditError> {
    Ok(
        spawn_audit_worker(settings, pool, codec, registry, shutdown)?
            .join()
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use taskflow_schemas::{
        Event, EventMetadata, Priority, ReminderDue, TaskCompleted, TaskSnapshot, TaskStatus,
    };

    pub(crate) fn metadata(version: i64) -> EventMetadata {
        EventMetadata {
            event_id: Uuid::now_v7(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap(),
            user_id: Uuid::now_v7(),
            task_id: Uuid::now_v7(),
            version,
            correlation_id: "corr-1".to_owned(),
            causation_id: Some("cause-1".to_owned()),
        }
    }

    fn snapshot() -> TaskSnapshot {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        TaskSnapshot {
            title: "Write the audit worker".to_owned(),
            description: None,
            status: TaskStatus::Completed,
            due_at: None,
            priority: Priority::High,
            tags: vec!["work".to_owned()],
            recurrence: None,
            reminders: vec![],
            completed_at: Some(at),
            created_at: at,
            updated_at: at,
            series_id: None,
            occurrence: None,
        }
    }

    fn decoded(event: Event, topic: &str) -> Decoded {
        Decoded {
            event,
            topic: topic.to_owned(),
            partition: 2,
            offset: 41,
            key: None,
            headers: vec![],
            timestamp_millis: None,
        }
    }

    #[test]
    fn maps_metadata_and_source_position() {
        let meta = metadata(3);
        let event = Event::TaskCompleted(TaskCompleted {
            metadata: meta.clone(),
            completed_at: meta.occurred_at,
            task: snapshot(),
        });
        let row = audit_row(&decoded(event.clone(), topics::TASK_EVENTS)).unwrap();
        assert_eq!(row.event_id, meta.event_id);
        assert_eq!(row.event_type, "TaskCompleted");
        assert_eq!(row.task_id, meta.task_id);
        assert_eq!(row.user_id, meta.user_id);
        assert_eq!(row.occurred_at, meta.occurred_at);
        assert_eq!(row.version, 3);
        assert_eq!(row.correlation_id, "corr-1");
        assert_eq!(row.causation_id.as_deref(), Some("cause-1"));
        assert_eq!(row.source_topic, topics::TASK_EVENTS);
        assert_eq!(row.source_partition, 2);
        assert_eq!(row.source_offset, 41);
        // The payload is the event's JSON form and reads back as the same event.
        assert_eq!(row.payload["type"], "TaskCompleted");
        let back: Event = serde_json::from_value(row.payload.clone()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn maps_reminders_too() {
        let meta = metadata(1);
        let event = Event::ReminderDue(ReminderDue {
            metadata: meta.clone(),
            reminder_key: "r1".to_owned(),
            fire_at: meta.occurred_at,
            due_at: None,
            title: "t".to_owned(),
            reminder_id: None,
            fired_at: None,
        });
        let row = audit_row(&decoded(event, topics::REMINDERS)).unwrap();
        assert_eq!(row.event_type, "ReminderDue");
        assert_eq!(row.source_topic, topics::REMINDERS);
    }

    #[test]
    fn the_same_message_maps_to_the_same_row() {
        let event = Event::TaskCompleted(TaskCompleted {
            metadata: metadata(1),
            completed_at: Utc::now(),
            task: snapshot(),
        });
        let msg = decoded(event, topics::TASK_EVENTS);
        assert_eq!(audit_row(&msg).unwrap(), audit_row(&msg).unwrap());
    }

    #[test]
    fn store_errors_map_to_handler_errors_by_class() {
        let transient = AuditStoreError {
            class: ErrorClass::Transient,
            source: sqlx::Error::PoolTimedOut,
        };
        assert!(matches!(
            HandlerError::from(transient),
            HandlerError::Transient(_)
        ));
        let permanent = AuditStoreError {
            class: ErrorClass::Permanent,
            source: sqlx::Error::RowNotFound,
        };
        assert!(matches!(
            HandlerError::from(permanent),
            HandlerError::Permanent(_)
        ));
    }

    #[test]
    fn settings_for_tests() {
        let s = AuditSettings::new("127.0.0.1:9092", "g", &["a"]);
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(s.runtime.group_id, "g");
        assert_eq!(s.runtime.topics, vec!["a".to_owned()]);
    }
}
