//! The notifier: every task event and every reminder becomes an entry of the owning user's
//! feed (what the API's live streams tail), and every reminder a notification in the user's
//! inbox.
//!
//! Consumer group `taskflow-notifier`, topics `taskflow.task-events` and `taskflow.reminders`.
//!
//! # Guarantee: each event is in its user's feed exactly once, in a single order per user
//!
//! The runtime delivers every message at least once and commits its offset only after the
//! handler returned `Ok`, i.e. after the effect's transaction committed. The effect is one
//! transaction ([`NotifierStore::apply`]): append the feed entry (unique per user and event
//! id: a redelivery appends nothing) and, for `ReminderDue`, insert the notification (unique
//! per user and event id too); commit; then notify the user's streams. So a crash before the
//! commit leaves nothing and the redelivery writes it; a crash after the commit and before
//! the offset commit makes the redelivery a no-op. A stream therefore never sees an event
//! twice or misses one: entries have per-user sequence numbers that become visible in order
//! (see `taskflow_infra::feed`), and streams resume by sequence.
//!
//! Order: a task's events are in one partition and handled in order, so they enter the feed
//! in version order; entries of different tasks are in the order their transactions
//! committed, the same for every reader of the feed.
//!
//! Errors: a database that cannot be reached is transient (retried, never dead-lettered); a
//! constraint or data error is permanent (dead-lettered with the reason).
//!
//! Each event is also planned as a webhook delivery to each of the user's enabled endpoints,
//! and each reminder (when SMTP is configured) as a mail to the owner's address, in the same
//! transaction, and sent by the sender that runs beside the consumer (see
//! [`crate::delivery`] and [`crate::delivery::email`] for their guarantees).
//!
//! The user's preferences (`taskflow_infra::preferences`) decide, per kind of event, which
//! of the feed, the inbox, the webhooks and email it reaches, read in the same transaction.
//! With the feed off for a kind, idempotency rests on the inbox's and the deliveries' own
//! unique keys. Quiet hours hold the webhook and email deliveries planned inside them until
//! the window ends (reminders of urgent tasks excepted); mails released together go out as
//! one digest.

pub mod store;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prometheus::{IntCounterVec, Opts, Registry};
use sqlx::PgPool;
use taskflow_infra::config::{env_or, ConfigError, KafkaSettings};
use taskflow_infra::feed::{FeedEntry, FeedNotifier};
use taskflow_schemas::{topics, Codec, Event, EventType};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::{
    email::{self, EmailError, EmailPayload},
    plan::webhook_message,
    spawn_sender, DeliveryMetrics, DeliverySettings, SenderError,
};
use crate::runtime::{
    self, Decoded, Decoder, Handler, HandlerError, RuntimeError, RuntimeSettings, SettingsError,
    WorkerHandle,
};
pub use store::{Applied, NotifierStore, NotifierStoreError};

pub const GROUP_ID: &str = "taskflow-notifier";

/// A notification for the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: Uuid,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
}

/// What one event becomes: its feed entry and its inbox notification (a reminder always
/// has one; a task event only reaches the inbox if its owner opted in, which the store
/// decides). Pure: the notification id is an input.
pub fn plan(
    event: &Event,
    notification_id: Uuid,
) -> Result<(FeedEntry, Notification), serde_json::Error> {
    let meta = event.metadata();
    let mut data = serde_json::to_value(event)?;
    let notification = match event {
        Event::ReminderDue(r) => {
            let body = match r.due_at {
                Some(due) => format!(
                    "Reminder: \"{}\" is due {}",
                    r.title,
                    due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => format!("Reminder: \"{}\"", r.title),
            };
            Notification {
                id: notification_id,
                kind: "reminder_due",
                title: r.title.clone(),
                body,
                data: serde_json::json!({
                    "reminder_id": r.reminder_id,
                    "fire_at": r.fire_at,
                    "due_at": r.due_at,
                    "reminder_key": r.reminder_key,
                }),
            }
        }
        other => {
            let (kind, verb) = match other.event_type() {
                EventType::TaskCreated => ("task_created", "created"),
                EventType::TaskUpdated => ("task_updated", "changed"),
                EventType::TaskCompleted => ("task_completed", "completed"),
                EventType::TaskReopened => ("task_reopened", "reopened"),
                EventType::TaskDeleted => ("task_deleted", "deleted"),
                EventType::ReminderSnoozed => ("reminder_snoozed", "snoozed"),
                EventType::ReminderDue => ("reminder_due", "due"),
            };
            let title = other
                .snapshot()
                .map(|t| t.title.clone())
                .unwrap_or_default();
            Notification {
                id: notification_id,
                kind,
                body: format!("\"{title}\" was {verb}"),
                title,
                data: serde_json::json!({"version": meta.version}),
            }
        }
    };
    if let Some(obj) = data.as_object_mut() {
        obj.insert(
            "notification_id".into(),
            serde_json::Value::String(notification_id.hyphenated().to_string()),
        );
    }
    Ok((
        FeedEntry {
            user_id: meta.user_id,
            event_id: meta.event_id,
            kind: event.event_type().as_str().to_owned(),
            task_id: Some(meta.task_id),
            occurred_at: meta.occurred_at,
            data,
        },
        notification,
    ))
}

/// The worker's own metrics (bounded labels: kind, outcome).
#[derive(Clone)]
pub struct NotifierMetrics {
    appended: IntCounterVec,
}

impl NotifierMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let appended = IntCounterVec::new(
            Opts::new(
                "taskflow_notifier_feed_entries_total",
                "Events handled: appended to the user's feed (appended) or already there (duplicate), by event type.",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(appended.clone()))?;
        Ok(Self { appended })
    }
}

/// The notifier's [`Handler`]: a thin adapter over [`NotifierStore::apply`].
pub struct NotifierHandler {
    store: NotifierStore,
    metrics: NotifierMetrics,
    feed: FeedNotifier,
    /// SMTP is configured: reminders are also mailed.
    email: bool,
}

/// The mail an event becomes, when the email channel is on (whether it is sent, and when,
/// is the owner's preferences' call, in the store: by default reminders are mailed and
/// task changes are not). Pure.
pub fn plan_email(event: &Event, email_on: bool) -> Result<Option<EmailPayload>, EmailError> {
    match event {
        _ if !email_on => Ok(None),
        Event::ReminderDue(r) => Ok(Some(email::reminder_email(r)?)),
        other => email::change_email(other),
    }
}

impl Handler for NotifierHandler {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        let (entry, notification) = plan(&msg.event, Uuid::now_v7())
            .map_err(|e| HandlerError::Permanent(format!("event does not serialise: {e}")))?;
        let webhook = webhook_message(&msg.event)
            .map_err(|e| HandlerError::Permanent(format!("event does not serialise: {e}")))?;
        let mail = plan_email(&msg.event, self.email)
            .map_err(|e| HandlerError::Permanent(format!("reminder mail does not render: {e}")))?;
        let reminder = match &msg.event {
            Event::ReminderDue(r) => r.reminder_id,
            _ => None,
        };
        let applied = self
            .store
            .apply(&entry, &notification, &webhook, reminder, mail.as_ref())
            .await?;
        let outcome = match applied {
            Applied::Appended { .. } => {
                self.feed.notify(entry.user_id);
                "appended"
            }
            Applied::Duplicate => "duplicate",
            Applied::NotInFeed => "not_in_feed",
        };
        self.metrics
            .appended
            .with_label_values(&[entry.kind.as_str(), outcome])
            .inc();
        Ok(())
    }
}

impl From<NotifierStoreError> for HandlerError {
    fn from(e: NotifierStoreError) -> Self {
        e.class.handler_error(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Sender(#[from] SenderError),
    #[error(transparent)]
    Email(#[from] EmailError),
}

/// Kafka connection, consumer settings, and how long the feed is kept.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub kafka: KafkaSettings,
    pub runtime: RuntimeSettings,
    /// `TASKFLOW_FEED_RETENTION_HOURS` (default 168): feed entries older than this are
    /// pruned; a stream resuming from before them is told to resync.
    pub feed_retention: Duration,
    /// How webhooks are sent (`TASKFLOW_WEBHOOK_*`) and email (`TASKFLOW_SMTP_*`).
    pub delivery: DeliverySettings,
}

impl NotifierSettings {
    pub fn from_env() -> Result<Self, NotifierError> {
        let task_events: String =
            env_or("TASKFLOW_TOPIC_TASK_EVENTS", topics::TASK_EVENTS.to_owned())?;
        let reminders: String = env_or("TASKFLOW_TOPIC_REMINDERS", topics::REMINDERS.to_owned())?;
        let hours: u64 = env_or("TASKFLOW_FEED_RETENTION_HOURS", 168)?;
        Ok(Self {
            kafka: KafkaSettings::from_env(GROUP_ID)?,
            runtime: RuntimeSettings::from_env(
                GROUP_ID,
                &[task_events.as_str(), reminders.as_str()],
            )?,
            feed_retention: Duration::from_secs(hours.max(1) * 3600),
            delivery: DeliverySettings {
                email: email::EmailSettings::from_env()?,
                ..DeliverySettings::from_env()?
            },
        })
    }

    /// For tests: the given brokers, group and topics, defaults for the rest.
    pub fn new(brokers: &str, group_id: &str, topics: &[&str]) -> Self {
        Self {
            kafka: KafkaSettings::new(brokers, group_id),
            runtime: RuntimeSettings::new(group_id, topics),
            feed_retention: Duration::from_secs(168 * 3600),
            delivery: DeliverySettings::default(),
        }
    }
}

/// Starts the notifier and returns its handle at once; it also prunes the feed hourly.
pub fn spawn_notifier<D: Decoder>(
    settings: NotifierSettings,
    pool: PgPool,
    decoder: D,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<WorkerHandle, NotifierError> {
    let feed = FeedNotifier::spawn(pool.clone());
    let handler = NotifierHandler {
        store: NotifierStore::new(pool.clone()),
        metrics: NotifierMetrics::register(registry)?,
        feed: feed.clone(),
        email: settings.delivery.email.is_some(),
    };
    let retention = TimeDelta::from_std(settings.feed_retention).unwrap_or(TimeDelta::days(7));
    tokio::spawn(prune_feed(pool.clone(), retention, shutdown.clone()));
    // Runs beside the consumer, not inside it: a slow receiver never holds a partition.
    spawn_sender(
        pool.clone(),
        settings.delivery.clone(),
        DeliveryMetrics::register(registry)?,
        feed,
        shutdown.clone(),
    )?;
    Ok(runtime::spawn(
        settings.kafka.client_config(),
        settings.runtime,
        decoder,
        handler,
        registry,
        shutdown,
    )?)
}

async fn prune_feed(pool: PgPool, retention: TimeDelta, shutdown: CancellationToken) {
    loop {
        let before: DateTime<Utc> = Utc::now() - retention;
        match taskflow_infra::feed::prune(&pool, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "feed entries past retention pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning the feed failed; next hour again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// [`spawn_notifier`] with the production decoder, until it stops.
pub async fn run_notifier(
    settings: NotifierSettings,
    pool: PgPool,
    codec: Codec,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), NotifierError> {
    Ok(spawn_notifier(settings, pool, codec, registry, shutdown)?
        .join()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskflow_schemas::{examples, EventType};

    #[test]
    fn a_task_event_is_a_feed_entry_of_its_owner_and_an_inbox_candidate() {
        let e = examples::example(EventType::TaskUpdated);
        let (entry, note) = plan(&e, Uuid::now_v7()).unwrap();
        assert_eq!(entry.user_id, e.metadata().user_id);
        assert_eq!(entry.event_id, e.metadata().event_id);
        assert_eq!(entry.kind, "TaskUpdated");
        assert_eq!(entry.task_id, Some(e.metadata().task_id));
        assert_eq!(entry.data["type"], "TaskUpdated");
        assert_eq!(entry.data["event"]["metadata"]["version"], 2);
        assert_eq!(note.kind, "task_updated");
        assert_eq!(note.title, e.snapshot().unwrap().title);
        assert!(note.body.ends_with("was changed"), "{}", note.body);
    }

    #[test]
    fn a_reminder_is_also_a_notification_named_in_the_entry() {
        let e = examples::example(EventType::ReminderDue);
        let id = Uuid::now_v7();
        let (entry, note) = plan(&e, id).unwrap();
        assert_eq!(note.id, id);
        assert_eq!(note.kind, "reminder_due");
        assert_eq!(note.title, "Water the plants");
        assert!(note.body.contains("Water the plants"), "{}", note.body);
        assert_eq!(entry.data["notification_id"], id.hyphenated().to_string());
        assert_eq!(entry.kind, "ReminderDue");
        assert_eq!(
            note.data["reminder_id"],
            "00000000-0000-0000-0000-000000000044"
        );
    }
}
