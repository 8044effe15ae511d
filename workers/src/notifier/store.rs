//! The notifier's one transaction: the feed entry, the inbox notification and the webhook
//! deliveries, as the owner's preferences say. The reasoning is in the parent module's
//! header.

use chrono::{NaiveTime, Utc};
use sqlx::{PgConnection, PgPool};
use taskflow_infra::feed::{self, FeedEntry};
use taskflow_infra::preferences::{self, Channel, Preferences};
use uuid::Uuid;

use super::Notification;
use crate::db::{classify, ErrorClass};
use crate::delivery::{
    self,
    email::{EmailPayload, PlannedEmail},
    plan::WebhookMessage,
    quiet::QuietHours,
};

#[derive(Debug, thiserror::Error)]
#[error("notifier store ({class:?}): {source}")]
pub struct NotifierStoreError {
    pub class: ErrorClass,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for NotifierStoreError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            class: classify(&source),
            source,
        }
    }
}

/// What handling one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Appended {
        seq: i64,
    },
    /// The user's feed already had this event (a redelivery): nothing written.
    Duplicate,
    /// The user keeps this kind of event off their feed; the other channels were served
    /// (idempotently, by their own unique keys).
    NotInFeed,
}

pub struct NotifierStore {
    pool: PgPool,
}

impl NotifierStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// In one transaction, as the owner's preferences say for this kind of event: appends
    /// `entry` to the feed, inserts `notification` into the inbox, and plans the webhook
    /// deliveries of `webhook` and the mail `email` (if the email channel is on), both
    /// held until the end of quiet hours unless urgent.
    ///
    /// `reminder`: the reminder a `ReminderDue` is about; when it names its own channels,
    /// those replace the owner's preferences for it.
    pub async fn apply(
        &self,
        entry: &FeedEntry,
        notification: &Notification,
        webhook: &WebhookMessage,
        reminder: Option<Uuid>,
        email: Option<&EmailPayload>,
    ) -> Result<Applied, NotifierStoreError> {
        let mut tx = self.pool.begin().await?;
        let mut prefs = load_preferences(&mut tx, entry.user_id).await?;
        if let (Some(reminder), Some(task)) = (reminder, entry.task_id) {
            if let Some(own) = reminder_channels(&mut tx, task, reminder).await? {
                prefs.channels.insert(webhook.kind.to_owned(), own);
            }
        }
        let kind = webhook.kind;
        let inbox = prefs.wants(kind, Channel::Inbox);
        let applied = if prefs.wants(kind, Channel::Live) {
            let mut entry = entry.clone();
            if !inbox {
                // The entry must not name a notification that does not exist.
                if let Some(obj) = entry.data.as_object_mut() {
                    obj.remove("notification_id");
                }
            }
            let Some(seq) = feed::append(&mut tx, &entry).await? else {
                tx.rollback().await?;
                return Ok(Applied::Duplicate);
            };
            Applied::Appended { seq }
        } else {
            Applied::NotInFeed
        };
        if inbox {
            let n = notification;
            sqlx::query(
                "INSERT INTO notifications (id, user_id, event_id, kind, task_id, title, body, \
                     data, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (user_id, event_id) DO NOTHING",
            )
            .bind(n.id)
            .bind(entry.user_id)
            .bind(entry.event_id)
            .bind(n.kind)
            .bind(entry.task_id)
            .bind(&n.title)
            .bind(&n.body)
            .bind(&n.data)
            .bind(entry.occurred_at)
            .execute(&mut *tx)
            .await?;
        }
        let webhook_on = prefs.wants(kind, Channel::Webhook);
        let email = email.filter(|_| prefs.wants(kind, Channel::Email));
        // The push channels wait for the end of quiet hours (one release instant for both).
        let hold = match prefs.quiet {
            Some(q)
                if (webhook_on || email.is_some())
                    && !urgent(&mut tx, kind, entry.task_id).await? =>
            {
                QuietHours {
                    start: q.start,
                    end: q.end,
                    zone: prefs.time_zone,
                }
                .release_at(Utc::now())
            }
            _ => None,
        };
        if webhook_on {
            delivery::store::plan(&mut tx, entry.user_id, entry.event_id, webhook, hold).await?;
        }
        if let Some(payload) = email {
            let planned = PlannedEmail {
                payload: payload.clone(),
                not_before: hold,
            };
            delivery::store::plan_email(&mut tx, entry.user_id, entry.event_id, &planned).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

async fn load_preferences(
    tx: &mut PgConnection,
    user_id: Uuid,
) -> Result<Preferences, sqlx::Error> {
    let row: Option<(
        String,
        Option<NaiveTime>,
        Option<NaiveTime>,
        serde_json::Value,
    )> = sqlx::query_as(
        "SELECT time_zone, quiet_start, quiet_end, channels \
             FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row
        .map(|(tz, start, end, channels)| preferences::from_row(&tz, start, end, &channels))
        .unwrap_or_default())
}

/// The channels a reminder names, as the task row holds it now; `None` when it names none
/// (or is gone).
async fn reminder_channels(
    tx: &mut PgConnection,
    task_id: Uuid,
    reminder_id: Uuid,
) -> Result<Option<Vec<Channel>>, sqlx::Error> {
    let named: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT r->'channels' FROM tasks t, jsonb_array_elements(t.reminders) r \
         WHERE t.id = $1 AND r->>'id' = $2",
    )
    .bind(task_id)
    .bind(reminder_id.hyphenated().to_string())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(named.and_then(|v| {
        v.as_array().map(|items| {
            items
                .iter()
                .filter_map(|c| c.as_str().and_then(Channel::parse))
                .collect()
        })
    }))
}

/// A reminder of an urgent task: delivered at once, even in quiet hours.
async fn urgent(
    tx: &mut PgConnection,
    kind: &str,
    task_id: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let (Some(task_id), "reminder.due") = (task_id, kind) else {
        return Ok(false);
    };
    let priority: Option<String> = sqlx::query_scalar("SELECT priority FROM tasks WHERE id = $1")
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(priority.as_deref() == Some("urgent"))
}
